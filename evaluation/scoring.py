"""Scoring one run's anomaly events against its incidents (definitions in :mod:`evaluation.run`).

>>> from simulator.scenarios import Incident
>>> inc = Incident("i1", "churn-spike", 7200.0, 10800.0, ("churn_rate",), "all", "all", "")
>>> ev = {"kpi": "churn_rate", "segment": "all", "channel": "all", "window_start_ts": 7200.0,
...       "emitted_ts": 7500.0, "detector": "surprise"}
>>> t = score([inc], [ev], days=1.0)
>>> summary(t)["recall"], summary(t)["median_ttd_minutes"], t.incident_rows[0]["first"]
(1.0, 5.0, 'churn_rate/all/all surprise')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluation.matching import WINDOW, IncidentScope, delay_windows, scope_of
from simulator import Incident

__all__ = ["Tally", "details", "nearest_rank", "score", "summary"]


@dataclass
class Tally:
    """Counts of one or more runs; :meth:`add` sums runs into a scenario's or the overall."""

    incidents: int = 0
    detected: int = 0
    events: int = 0
    true_events: int = 0
    strict_true_events: int = 0
    episodes: int = 0
    false_episodes: int = 0
    days: float = 0.0
    delays: list[int] = field(default_factory=list)
    ttds: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    reachable: int = 0   # incidents whose floor is within their duration
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    incident_rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("incidents", "detected", "events", "true_events", "strict_true_events",
                     "episodes", "false_episodes", "days", "reachable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays.extend(other.delays)
        self.ttds.extend(other.ttds)
        self.floors.extend(other.floors)
        self.false_alarms.extend(other.false_alarms)
        self.incident_rows.extend(other.incident_rows)


def _hit(s: IncidentScope, ev: dict[str, Any]) -> bool:
    return s.matches(ev["kpi"], ev["segment"], ev["channel"], ev["window_start_ts"])


def score(incidents: Sequence[Incident], events: Sequence[dict[str, Any]],
          days: float, floors: dict[str, float | None] | None = None) -> Tally:
    """Recall, delays, true and false events and episodes of one run's evaluation period.

    Time to detect is from an incident's start to the ``emitted_ts`` of its first matching
    anomaly, in minutes; ``floors`` maps incident ids to their floor
    (:mod:`simulator.detectability`).
    """
    t = Tally(incidents=len(incidents), events=len(events), days=days)
    scopes = [scope_of(inc, WINDOW) for inc in incidents]
    for inc, s in zip(incidents, scopes, strict=True):
        hits = sorted((e for e in events if _hit(s, e)), key=lambda e: e["window_start_ts"])
        floor = (floors or {}).get(inc.id)
        row = {"id": inc.id, "start": inc.to_json()["start"], "hours": (inc.end - inc.start) / 3600,
               "segment": inc.segment, "channel": inc.channel, "magnitude": inc.magnitude,
               "delay_windows": None, "ttd_minutes": None,
               "floor_minutes": None if floor is None else round(floor, 1), "first": None}
        if floor is not None:
            t.floors.append(floor)
            # an ideal test gathers evidence while the incident lasts: past its end, no more
            t.reachable += floor <= (inc.end - inc.start) / 60.0
        if hits:
            t.detected += 1
            delay = delay_windows(s, hits[0]["window_start_ts"])
            t.delays.append(delay)
            row["delay_windows"] = delay
            emitted = [e["emitted_ts"] for e in hits if "emitted_ts" in e]
            if emitted:
                ttd = (min(emitted) - inc.start) / 60.0
                t.ttds.append(ttd)
                row["ttd_minutes"] = round(ttd, 1)
            row["first"] = "{kpi}/{segment}/{channel} {detector}".format(**hits[0])
        t.incident_rows.append(row)
    by_series: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for e in events:
        by_series.setdefault((e["kpi"], e["segment"], e["channel"]), []).append(e)
        if any(_hit(s, e) for s in scopes):
            t.strict_true_events += 1
    for series_events in by_series.values():
        series_events.sort(key=lambda e: e["window_start_ts"])
        episode: list[dict[str, Any]] = []
        for ev in [*series_events, None]:
            if episode and (ev is None
                            or ev["window_start_ts"] - episode[-1]["window_start_ts"] > WINDOW):
                t.episodes += 1
                if any(_hit(s, episode[0]) for s in scopes):
                    t.true_events += len(episode)
                else:
                    t.false_episodes += 1
                    first = episode[0]
                    t.false_alarms.append({k: first[k] for k in (
                        "kpi", "segment", "channel", "window_start", "value", "expected",
                        "score", "severity", "detector")} | {"windows": len(episode)})
                episode = []
            if ev is not None:
                episode.append(ev)
    return t


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in (0, 1]); None for no values.

    >>> nearest_rank([0, 1, 1, 2, 9], 0.5), nearest_rank([0, 1, 1, 2, 9], 0.95)
    (1, 9)
    """
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def summary(t: Tally) -> dict[str, Any]:
    """The figures of a tally, as ``pulse evaluate --json`` writes them."""
    return {
        "recall": t.detected / t.incidents if t.incidents else None,
        "precision": t.true_events / t.events if t.events else None,
        "strict_precision": t.strict_true_events / t.events if t.events else None,
        "false_alarms_per_day": t.false_episodes / t.days if t.days else 0.0,
        "false_alarms_per_week": 7 * t.false_episodes / t.days if t.days else 0.0,
        "median_delay_windows": nearest_rank(t.delays, 0.5),
        "p95_delay_windows": nearest_rank(t.delays, 0.95),
        "median_ttd_minutes": _rounded(nearest_rank(t.ttds, 0.5)),
        "p95_ttd_minutes": _rounded(nearest_rank(t.ttds, 0.95)),
        "floor_ttd_minutes": _rounded(nearest_rank(t.floors, 0.5)),
        # the recall of the ideal test of the floor: incidents it detects before they end
        "reachable_recall": t.reachable / t.incidents if t.incidents and t.floors else None,
        "incidents": t.incidents, "detected": t.detected, "anomaly_events": t.events,
        "true_events": t.true_events, "episodes": t.episodes, "false_alarms": t.false_episodes,
        "days": t.days, "delays": sorted(t.delays),
    }


def details(t: Tally) -> dict[str, Any]:
    """Each incident's row and each false alarm's first event."""
    return {"incidents": t.incident_rows, "false_alarms": t.false_alarms}
