"""Small objects that each answer one question about an alert; the clock is passed in.

- :class:`Deduper` — have I seen this anomaly before (at-least-once delivery)?
- :class:`FiringRule` — is this anomaly worth keeping, and does the incident fire yet
  (minimum change, minimum duration for warnings)?
- :class:`Silences` — is this alert silenced now? (JSON file under ``data_dir``, with expiry,
  shared with ``pulse silence``)
- :class:`CallBudget` — may Pulse call the model once more this hour?

Event-time policies (dedupe, firing) take event timestamps; silences and the call budget are
about people and money, so they take wall-clock ``now`` from the caller.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "CallBudget",
    "Deduper",
    "FiringRule",
    "Silence",
    "Silences",
    "parse_duration",
    "relative_change",
    "silences_path",
]

SEVERITY_RANK = {"warning": 1, "critical": 2}


def relative_change(anomaly: dict) -> float:
    """``|value - expected| / |expected|`` (infinite when nothing was expected)."""
    value, expected = float(anomaly["value"]), float(anomaly["expected"])
    if abs(expected) < 1e-12:
        return 0.0 if abs(value) < 1e-12 else float("inf")
    return abs(value - expected) / abs(expected)


class Deduper:
    """Remembers anomaly keys for ``horizon_s`` of event time.

    >>> d = Deduper(horizon_s=3600)
    >>> d.first_time("k", 0.0), d.first_time("k", 10.0)
    (True, False)
    >>> d.prune(now_ts=5000.0); d.first_time("k", 5000.0)
    True
    """

    def __init__(self, horizon_s: float = 7 * 86400):
        if horizon_s <= 0:
            raise ValueError("horizon_s must be positive")
        self.horizon_s = horizon_s
        self.seen: dict[str, float] = {}

    def first_time(self, key: str, ts: float) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = ts
        return True

    def prune(self, now_ts: float) -> None:
        cutoff = now_ts - self.horizon_s
        self.seen = {k: t for k, t in self.seen.items() if t >= cutoff}


@dataclass
class FiringRule:
    """When an anomaly counts, and when an incident is worth a message.

    Critical anomalies fire at once. A warning fires when its series has been abnormal for
    ``min_windows`` consecutive windows, or when it moved by at least ``big_change`` (relative).
    Non-critical anomalies that moved less than ``min_change`` are ignored as noise.

    >>> rule = FiringRule(min_windows=2, min_change=0.05, big_change=0.5)
    >>> a = {"severity": "warning", "value": 103.0, "expected": 100.0}
    >>> rule.keeps(a)
    False
    >>> b = {"severity": "warning", "value": 80.0, "expected": 100.0}
    >>> rule.keeps(b), rule.fires(b, streak=1), rule.fires(b, streak=2)
    (True, False, True)
    """

    min_windows: int = 2
    min_change: float = 0.05
    big_change: float = 0.5

    def __post_init__(self) -> None:
        if self.min_windows < 1:
            raise ValueError("min_windows must be at least 1")
        if self.min_change < 0 or self.big_change < 0:
            raise ValueError("min_change and big_change must not be negative")

    def keeps(self, anomaly: dict) -> bool:
        return anomaly.get("severity") == "critical" or relative_change(anomaly) >= self.min_change

    def fires(self, anomaly: dict, streak: int) -> bool:
        return (anomaly.get("severity") == "critical" or streak >= self.min_windows
                or relative_change(anomaly) >= self.big_change)


class CallBudget:
    """At most ``per_hour`` model calls in any sliding hour of wall-clock time.

    >>> b = CallBudget(per_hour=2)
    >>> b.allow(0.0), b.allow(1.0), b.allow(2.0), b.allow(3601.0)
    (True, True, False, True)
    """

    def __init__(self, per_hour: int = 30):
        if per_hour < 0:
            raise ValueError("per_hour must not be negative")
        self.per_hour = per_hour
        self.calls: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self.calls and self.calls[0] <= now - 3600:
            self.calls.popleft()
        if len(self.calls) >= self.per_hour:
            return False
        self.calls.append(now)
        return True


@dataclass
class Silence:
    """Mutes alerts whose lead series matches every field set (``None`` matches anything)."""

    id: str
    until_ts: float
    kpi: str | None = None
    segment: str | None = None
    channel: str | None = None
    alert_id: str | None = None
    reason: str = ""
    created_ts: float = 0.0
    created_by: str = ""

    def matches(self, alert: dict, now: float) -> bool:
        if now >= self.until_ts:
            return False
        if self.alert_id is not None and self.alert_id != alert.get("id"):
            return False
        return all(want is None or want == alert.get(field)
                   for field, want in (("kpi", self.kpi), ("segment", self.segment),
                                       ("channel", self.channel)))


def silences_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "silences.json"


class Silences:
    """The silences in one JSON file; re-read when another process (``pulse silence``) wrote it.

    An alert is silenced when a live silence matches its lead series (KPI, segment, channel)
    or its id. Expired silences are dropped on the next write.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.items: list[Silence] = []
        self._mtime: float | None = None
        self.reload()

    def reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self.items, self._mtime = [], None
            return
        if mtime == self._mtime:
            return
        data = json.loads(self.path.read_text() or "{}")
        self.items = [Silence(**s) for s in data.get("silences", [])]
        self._mtime = mtime

    def match(self, alert: dict, now: float) -> Silence | None:
        """The live silence that mutes ``alert``, if any."""
        self.reload()
        return next((s for s in self.items if s.matches(alert, now)), None)

    def active(self, now: float) -> list[Silence]:
        self.reload()
        return [s for s in self.items if s.until_ts > now]

    def add(self, *, now: float, duration_s: float, kpi: str | None = None,
            segment: str | None = None, channel: str | None = None,
            alert_id: str | None = None, reason: str = "", created_by: str = "") -> Silence:
        if duration_s <= 0:
            raise ValueError("a silence needs a positive duration")
        if kpi is segment is channel is alert_id is None:
            raise ValueError("a silence needs a KPI, segment, channel or alert id")
        silence = Silence(id=secrets.token_hex(4), until_ts=now + duration_s, kpi=kpi,
                          segment=segment, channel=channel, alert_id=alert_id, reason=reason,
                          created_ts=now, created_by=created_by)
        self.reload()
        self._write([s for s in self.items if s.until_ts > now] + [silence])
        return silence

    def remove(self, silence_id: str) -> bool:
        self.reload()
        kept = [s for s in self.items if s.id != silence_id]
        if len(kept) == len(self.items):
            return False
        self._write(kept)
        return True

    def _write(self, items: list[Silence]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".silences.")
        with os.fdopen(fd, "w") as f:
            json.dump({"silences": [asdict(s) for s in items]}, f, indent=1)
        os.replace(tmp, self.path)
        self.items = items
        self._mtime = self.path.stat().st_mtime


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``2h``, ``1d``, ``1w``: the unit is required (a bare
    ``2`` meant two seconds where people meant hours).

    >>> parse_duration("2h"), parse_duration("30m"), parse_duration("90s")
    (7200.0, 1800.0, 90.0)
    """
    m = _DURATION.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        hint = f" ({text.strip()}h? {text.strip()}m?)" if re.fullmatch(r"\s*\d+(\.\d+)?\s*",
                                                                     text) else ""
        raise ValueError(f"{text!r} is not a duration{hint}; give a number and a unit: "
                         "30m, 2h, 1d (s, m, h, d, w)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]
