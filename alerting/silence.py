"""What ``pulse silence …`` calls: add, list and remove silences in ``<data_dir>/silences.json``.

The running worker re-reads the file when it changes, so a silence added from the CLI applies
to the next alert change.
"""

from __future__ import annotations

import os
import time

from alerting.policies import Silence, Silences, parse_duration, silences_path
from core.timefmt import human_utc

__all__ = ["add_silence", "describe_silence", "list_silences", "remove_silence"]


def add_silence(data_dir: str | os.PathLike[str], *, duration: str | float,
                kpi: str | None = None, segment: str | None = None, channel: str | None = None,
                alert_id: str | None = None, reason: str = "", created_by: str = "cli",
                now: float | None = None) -> Silence:
    """Silence alerts led by a matching series (``None`` matches any) for ``duration``
    (seconds or ``30m``/``2h``/``1d``). Raises ``ValueError`` on a bad duration or no filter."""
    seconds = parse_duration(duration) if isinstance(duration, str) else float(duration)
    return Silences(silences_path(data_dir)).add(
        now=time.time() if now is None else now, duration_s=seconds, kpi=kpi, segment=segment,
        channel=channel, alert_id=alert_id, reason=reason, created_by=created_by)


def list_silences(data_dir: str | os.PathLike[str], now: float | None = None) -> list[Silence]:
    """Silences that have not expired."""
    return Silences(silences_path(data_dir)).active(time.time() if now is None else now)


def remove_silence(data_dir: str | os.PathLike[str], silence_id: str) -> bool:
    """Remove a silence by id; False if there is none."""
    return Silences(silences_path(data_dir)).remove(silence_id)


def describe_silence(s: Silence) -> str:
    """One line for ``pulse silence list``."""
    match = ", ".join(f"{k}={v}" for k, v in (("kpi", s.kpi), ("segment", s.segment),
                                               ("channel", s.channel), ("alert", s.alert_id))
                      if v is not None)
    why = f" — {s.reason}" if s.reason else ""
    return f"{s.id}  {match}  until {human_utc(s.until_ts)}{why}"
