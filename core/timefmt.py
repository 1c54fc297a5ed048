"""How Pulse writes an event time (epoch seconds) as text and reads it back: always UTC.

One place for the formats, so a message, an alert and a report say the same instant the same way.

>>> iso_utc(1795255200.25), iso_utc(1795255200.25, fraction="milliseconds")
('2026-11-21T10:00:00Z', '2026-11-21T10:00:00.250Z')
>>> human_utc(1795255200)
'2026-11-21 10:00 UTC'
>>> parse_utc("2026-11-21T10:00:00Z"), parse_utc(7)
(1795255200.0, 7.0)
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

__all__ = ["clock_utc", "human_utc", "iso_utc", "parse_utc"]


@lru_cache(maxsize=4096)   # a window's bounds are written on every one of its 13 messages
def iso_utc(ts: float, *, fraction: Literal["milliseconds", "microseconds"] | None = None) -> str:
    """ISO-8601 UTC with a ``Z``: to the second, or with ``fraction`` digits when there are some.

    >>> iso_utc(1795255200), iso_utc(1795255200.5, fraction="microseconds")
    ('2026-11-21T10:00:00Z', '2026-11-21T10:00:00.500000Z')
    """
    dt = datetime.fromtimestamp(ts, UTC)
    if fraction is not None and dt.microsecond:
        return dt.isoformat(timespec=fraction).replace("+00:00", "Z")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def human_utc(ts: float) -> str:
    """``2026-11-21 10:00 UTC``: for people (Slack, the terminal), to the minute."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def clock_utc(ts: float) -> str:
    """``10:00``: the UTC time of day, to the minute (a span inside a day already named).

    >>> clock_utc(1795255200)
    '10:00'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def parse_utc(value: Any) -> float:
    """Epoch seconds of an ISO-8601 time (``Z`` or an offset; none means UTC) or of a number.

    Raises ``ValueError`` for text that is not ISO-8601.
    """
    if isinstance(value, (int, float)):
        return float(value)
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
