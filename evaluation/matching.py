"""When a flagged series matches a labelled incident: one rule for evaluate and replay reports.

A series (KPI, segment, channel, window) *matches* an incident when its KPI is one of the
incident's KPIs, it covers affected users (its segment is ``all`` or the incident's segment, or
the incident is on every segment; the same for channels), and its window starts in
``[start of the window holding the incident's start, incident end + 2 windows)``: a KPI that
moves late (a trailing one, a window that closes after the incident) still counts.

>>> inc = {"kpis": ["signups"], "segment": "all", "channel": "paid_search",
...        "start_ts": 1795255200.0 + 600, "end_ts": 1795262400.0}
>>> s = scope_of(inc)
>>> t = 1795255200.0   # the window holding the start
>>> s.matches("signups", "all", "all", t), s.matches("signups", "all", "social", t)
(True, False)
>>> s.matches("signups", "new_grad", "paid_search", 1795262400.0 + 7200)   # 2 W after the end
False
>>> delay_windows(s, 1795255200.0 + 3600)
1
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.vocabulary import ALL
from simulator.scenarios import Incident

__all__ = ["MATCH_AFTER_WINDOWS", "WINDOW", "IncidentScope", "delay_windows", "scope_of"]

WINDOW = 3600.0
"""The KPI window (an hour), the unit of delays."""
MATCH_AFTER_WINDOWS = 2
"""Windows after an incident's end in which a flagged series still matches it."""


@dataclass(frozen=True, slots=True)
class IncidentScope:
    """What one incident touched: its KPIs, its users, and the window starts that match it."""

    kpis: frozenset[str]
    segment: str
    channel: str
    start_ts: float
    lo: float          # start of the window holding the incident's start
    hi: float          # incident end + MATCH_AFTER_WINDOWS windows (excluded)
    window_s: float

    def covers(self, kpi: Any, segment: Any, channel: Any) -> bool:
        """Whether a series of this KPI, segment and channel shows the incident's users."""
        return (kpi in self.kpis
                and (self.segment == ALL or segment in (ALL, self.segment))
                and (self.channel == ALL or channel in (ALL, self.channel)))

    def in_windows(self, window_start_ts: float) -> bool:
        """Whether a window starting at ``window_start_ts`` is one a matching series may be in."""
        return self.lo <= window_start_ts < self.hi

    def matches(self, kpi: Any, segment: Any, channel: Any, window_start_ts: float) -> bool:
        """Whether a flagged series in the window starting at ``window_start_ts`` matches."""
        return self.in_windows(window_start_ts) and self.covers(kpi, segment, channel)


def scope_of(incident: Incident | Mapping[str, Any], window_s: float = WINDOW) -> IncidentScope:
    """The scope of an :class:`~simulator.scenarios.Incident` or of its ``to_json()`` form
    (a line of incidents.jsonl)."""
    if isinstance(incident, Incident):
        kpis, segment, channel = incident.kpis, incident.segment, incident.channel
        start, end = incident.start, incident.end
    else:
        kpis = incident.get("kpis", ())
        segment, channel = incident.get("segment", ALL), incident.get("channel", ALL)
        start, end = float(incident["start_ts"]), float(incident["end_ts"])
    return IncidentScope(frozenset(kpis), segment, channel, start,
                         math.floor(start / window_s) * window_s,
                         end + MATCH_AFTER_WINDOWS * window_s, window_s)


def delay_windows(scope: IncidentScope, window_start_ts: float) -> int:
    """Windows from the one holding the incident's start to ``window_start_ts`` (0: the same)."""
    return int(math.floor(window_start_ts / scope.window_s)
               - math.floor(scope.start_ts / scope.window_s))
