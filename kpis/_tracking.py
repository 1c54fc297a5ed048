"""What the per-user trackers (:mod:`kpis.funnel`, :mod:`kpis.cohorts`) share.

Both follow the users whose ``signup`` they saw, key every count by that signup's
(segment, channel), and hold the steps of users not (yet) known while their signup may still
arrive out of order: a step with ``ts >= t`` can belong to a signup not seen yet only while
``close(t)`` has not been called (every event before ``t`` has been seen by then).
"""

from __future__ import annotations

from kpis.formulas import DAY_S

__all__ = ["Key", "key_order", "windows_per_day"]

Key = tuple[str | None, str | None]
"""(segment, channel) of a user's signup event."""


def windows_per_day(window_s: float) -> int:
    """Windows of ``window_s`` seconds in a day; ValueError unless ``window_s`` divides a day.

    >>> windows_per_day(3600), windows_per_day(86_400)
    (24, 1)
    >>> windows_per_day(7 * 3600)
    Traceback (most recent call last):
    ...
    ValueError: window_s must be > 0 and divide a day (86400 s), got 25200
    """
    n = round(DAY_S / window_s) if window_s > 0 else 0
    if n < 1 or n * window_s != DAY_S:
        raise ValueError(f"window_s must be > 0 and divide a day (86400 s), got {window_s!r}")
    return n


def key_order(key: Key) -> tuple[str, str]:
    """Sort key of a (segment, channel) key that may hold None."""
    return (key[0] or "", key[1] or "")
