"""Labelled incidents: what goes wrong, when, and which KPIs should show it.

The labels are the ground truth for judging detectors, so each incident names the KPI ids of
docs/kpis.md that it moves. Incidents are placed on a quarter-hour grid, never overlap, and (in
``mixed``) leave at least 12 h between them so each one can be told apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from core.timefmt import iso_utc
from core.vocabulary import CHANNELS, SEGMENTS
from simulator.model import BusinessModel

__all__ = [
    "DIFFICULTIES", "INCIDENT_KINDS", "SCENARIOS", "TRACKED_CHANNELS", "Incident",
    "plan_incidents", "iso_utc",
]

_QUARTER = 900  # seconds; incident boundaries fall on this grid
_MIXED_GAP_QUARTERS = 48  # 12 h between incidents of a mixed scenario


@dataclass(frozen=True)
class _KindSpec:
    quarters: tuple[int, int]      # duration range, in quarter hours
    magnitude: tuple[float, float]
    kpis: tuple[str, ...]


_KPIS = {
    "payment-outage": ("payment_failure_rate", "payments", "revenue", "paid_conversions",
                       "conversion_rate"),
    "signup-tracking-drop": ("signups", "conversion_rate"),
    "match-rate-regression": ("match_rate",),
    "channel-traffic-surge": ("signups", "scans", "conversion_rate"),
    "churn-spike": ("churn_rate", "mrr", "mrr_growth", "ltv", "ltv_cac"),
}
_SPECS: dict[str, dict[str, _KindSpec]] = {
    # large, unmistakable incidents
    "normal": {
        "payment-outage": _KindSpec((8, 24), (0.70, 0.90), _KPIS["payment-outage"]),
        # a dead tracking pixel loses (nearly) every signup it should record
        "signup-tracking-drop": _KindSpec((12, 32), (1.0, 1.0), _KPIS["signup-tracking-drop"]),
        "match-rate-regression": _KindSpec((16, 48), (0.15, 0.25), _KPIS["match-rate-regression"]),
        "channel-traffic-surge": _KindSpec((8, 24), (3.0, 6.0), _KPIS["channel-traffic-surge"]),
        "churn-spike": _KindSpec((24, 96), (8.0, 15.0), _KPIS["churn-spike"]),
    },
    # the incidents that hurt quietly: 30 minutes to a few hours, a fraction of the damage
    "subtle": {
        "payment-outage": _KindSpec((2, 12), (0.10, 0.25), _KPIS["payment-outage"]),
        # a pixel broken on one channel's pages: part of its signups unrecorded
        "signup-tracking-drop": _KindSpec((2, 16), (0.30, 0.60), _KPIS["signup-tracking-drop"]),
        "match-rate-regression": _KindSpec((4, 16), (0.04, 0.08), _KPIS["match-rate-regression"]),
        "channel-traffic-surge": _KindSpec((2, 12), (1.5, 2.0), _KPIS["channel-traffic-surge"]),
        "churn-spike": _KindSpec((4, 24), (2.0, 4.0), _KPIS["churn-spike"]),
    },
}
DIFFICULTIES: tuple[str, ...] = tuple(_SPECS)
"""``normal`` (large incidents, the default) or ``subtle`` (small and short ones)."""

INCIDENT_KINDS: tuple[str, ...] = tuple(_SPECS["normal"])
_DEFAULT_SHARES = dict(zip(CHANNELS, BusinessModel().channel_shares, strict=True))
TRACKED_CHANNELS: tuple[str, ...] = tuple(
    sorted(CHANNELS, key=lambda c: -_DEFAULT_SHARES[c])[:2])
"""The two largest channels of the default business (organic, paid_search): a signup tracking drop
on one channel hits one of these, where the signups lost are enough to matter."""
SCENARIOS: tuple[str, ...] = ("none", *INCIDENT_KINDS, "mixed")


@dataclass(frozen=True)
class Incident:
    """One labelled incident over ``[start, end)`` (epoch seconds).

    ``magnitude`` is the kind's knob: failure probability (payment-outage), share of signup events
    lost (signup-tracking-drop), drop of the mean match score (match-rate-regression), traffic
    multiplier (channel-traffic-surge) or cancellation multiplier (churn-spike).

    >>> inc = Incident("inc01-churn-spike", "churn-spike", 1795255200.0, 1795262400.0,
    ...                ("churn_rate",), "all", "all", "Cancellations run 10x above normal.", 10.0)
    >>> inc.to_json()["end"], inc.covers(1795262400.0)
    ('2026-11-21T12:00:00Z', False)
    """

    id: str
    kind: str
    start: float
    end: float
    kpis: tuple[str, ...]
    segment: str
    channel: str
    description: str
    magnitude: float = 0.0

    def covers(self, ts: float) -> bool:
        """Whether event time ``ts`` falls inside the incident."""
        return self.start <= ts < self.end

    def to_json(self) -> dict[str, Any]:
        """The label as written to files and compared with alerts."""
        return {
            "id": self.id, "kind": self.kind,
            "start": iso_utc(self.start), "end": iso_utc(self.end),
            "start_ts": self.start, "end_ts": self.end,
            "kpis": list(self.kpis), "segment": self.segment, "channel": self.channel,
            "description": self.description,
        }


def _describe(kind: str, magnitude: float, segment: str, channel: str) -> str:
    where = "all channels" if channel == "all" else f"the {channel} channel"
    if kind == "payment-outage":
        return f"The payment processor fails {magnitude:.0%} of charge attempts."
    if kind == "signup-tracking-drop":
        return (f"The signup tracking pixel stops firing and {magnitude:.0%} of signups on "
                f"{where} go unrecorded.")
    if kind == "match-rate-regression":
        return (f"A matching-model release lowers the mean match score of {segment} users by "
                f"{magnitude:.2f}.")
    if kind == "channel-traffic-surge":
        return f"Traffic from {where} jumps {magnitude:.1f}x, multiplying its signups and scans."
    return f"Cancellations run {magnitude:.1f}x above normal."


def _draw(kind: str, index: int, start_q: int, dur_q: int, rng: random.Random,
          difficulty: str = "normal") -> Incident:
    spec = _SPECS[difficulty][kind]
    magnitude = round(rng.uniform(*spec.magnitude), 2)
    segment, channel = "all", "all"
    if kind == "match-rate-regression":
        segment = rng.choice(SEGMENTS)
    elif kind == "channel-traffic-surge":
        channel = rng.choice(CHANNELS)
    elif kind == "signup-tracking-drop" and (difficulty == "subtle" or rng.random() < 0.5):
        channel = rng.choice(TRACKED_CHANNELS)
    return Incident(
        id=f"inc{index:02d}-{kind}", kind=kind,
        start=float(start_q * _QUARTER), end=float((start_q + dur_q) * _QUARTER),
        kpis=spec.kpis, segment=segment, channel=channel,
        description=_describe(kind, magnitude, segment, channel), magnitude=magnitude)


def plan_incidents(scenario: str, start_ts: float, end_ts: float,
                   rng: random.Random, difficulty: str = "normal") -> list[Incident]:
    """Place the incidents of ``scenario`` inside ``[start_ts, end_ts]``, sorted by start.

    A single-kind scenario gives one incident; ``mixed`` gives as many different kinds (up to all
    five) as fit with 12 h gaps, in random order. ``difficulty`` is one of :data:`DIFFICULTIES`.

    >>> [round(i.magnitude, 2) <= 0.25 for i in plan_incidents(
    ...     "payment-outage", 0, 5 * 86400, random.Random(1), "subtle")]
    [True]

    >>> [i.kind for i in plan_incidents("churn-spike", 0, 5 * 86400, random.Random(1))]
    ['churn-spike']
    >>> plan_incidents("outage", 0, 86400, random.Random(1))
    Traceback (most recent call last):
    ...
    ValueError: unknown scenario 'outage'; valid: none, payment-outage, signup-tracking-drop, \
match-rate-regression, channel-traffic-surge, churn-spike, mixed
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; valid: {', '.join(DIFFICULTIES)}")
    specs = _SPECS[difficulty]
    if scenario == "none":
        return []
    lo_q, hi_q = math.ceil(start_ts / _QUARTER), math.floor(end_ts / _QUARTER)
    kinds = rng.sample(INCIDENT_KINDS, len(INCIDENT_KINDS)) if scenario == "mixed" else [scenario]
    durations = [rng.randint(*specs[k].quarters) for k in kinds]

    def needed(n: int) -> int:
        return sum(durations[:n]) + _MIXED_GAP_QUARTERS * (n - 1)

    n = len(kinds)
    while n > 0 and needed(n) > hi_q - lo_q:
        n -= 1
    if n == 0:
        raise ValueError(f"incident range of {end_ts - start_ts:.0f} s is too short for "
                         f"scenario {scenario!r}")
    slack = hi_q - lo_q - needed(n)
    cuts = sorted(rng.randint(0, slack) for _ in range(n))
    incidents, offset = [], lo_q
    for i in range(n):
        incidents.append(_draw(kinds[i], i + 1, offset + cuts[i], durations[i], rng, difficulty))
        offset += durations[i] + _MIXED_GAP_QUARTERS
    return incidents
