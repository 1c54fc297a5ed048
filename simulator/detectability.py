"""How fast any detector could catch a simulated incident: the floor of time to detect.

For an incident that changes the distribution of some events from ``f0`` to ``f1``, the fastest
sequential test with a given false-alarm budget (CUSUM is optimal, Lorden 1971) needs on average

    delay ~ ln(N) / KL(f1 || f0)

events, where ``N`` is the expected number of normal events between false alarms and ``KL`` the
Kullback-Leibler divergence per event. Divided by the affected events' rate, that is minutes. The
budget here is one false alarm a week (what ``pulse evaluate`` allows on ``none``), so ``N`` is a
week of the affected events at their normal rate.

Per incident kind, what is affected and how (the simulator's own rates, ``simulator/generator.py``):

- ``payment-outage``: every payment attempt fails with probability ``magnitude`` instead of
  ``payment_failure_rate`` (Bernoulli KL per attempt; the attempts are counted in the incident);
- ``signup-tracking-drop``: signups of the affected channels, a Poisson process of known rate,
  lose ``magnitude`` of their events (Poisson KL per minute);
- ``channel-traffic-surge``: the channel's signups (known rate) and scans (counted in the
  incident) run ``magnitude`` times faster (two Poisson processes: their KLs add);
- ``match-rate-regression``: each scan of the segment has its mean match score lowered by
  ``magnitude`` (Beta scores, Gaussian KL per scan; the scans are counted in the incident);
- ``churn-spike``: cancellations run ``magnitude`` times faster (Poisson; counted in the incident).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from core.vocabulary import CHANNELS, SEGMENTS
from simulator.model import BusinessModel, diurnal_weights, weekly_factor
from simulator.scenarios import Incident

__all__ = ["IncidentCounts", "floor_minutes", "WEEK_MINUTES"]

WEEK_MINUTES = 7 * 24 * 60.0
_HOUR = 3600.0
_DAY = 86400.0


class IncidentCounts:
    """Counts, inside each incident, of the events whose rate the floor needs.

    >>> inc = Incident("i", "churn-spike", 0.0, 3600.0, ("churn_rate",), "all", "all", "", 10.0)
    >>> c = IncidentCounts([inc])
    >>> c.add([{"kind": "cancel", "ts": 10.0}, {"kind": "cancel", "ts": 4000.0}])
    >>> c.counts["i"]
    1
    """

    def __init__(self, incidents: Iterable[Incident]):
        self.incidents = list(incidents)
        self.counts: dict[str, int] = {i.id: 0 for i in self.incidents}

    def add(self, events: Iterable[dict[str, Any]]) -> None:
        for e in events:
            for inc in self.incidents:
                if inc.start <= e["ts"] < inc.end and _counted(inc, e):
                    self.counts[inc.id] += 1


def _counted(inc: Incident, e: dict[str, Any]) -> bool:
    kind = e.get("kind")
    if inc.kind == "payment-outage":
        return kind == "payment"
    if inc.kind == "match-rate-regression":
        return kind == "scan" and e.get("segment") == inc.segment
    if inc.kind == "churn-spike":
        return kind == "cancel"
    if inc.kind == "channel-traffic-surge":
        return kind == "scan" and e.get("channel") == inc.channel
    return False


def _bernoulli_kl(p1: float, p0: float) -> float:
    p1 = min(max(p1, 1e-12), 1 - 1e-12)
    p0 = min(max(p0, 1e-12), 1 - 1e-12)
    return p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))


def _poisson_kl_rate(lam1: float, lam0: float) -> float:
    """KL per unit time between Poisson processes of rates ``lam1`` (incident) and ``lam0``."""
    return (lam1 * math.log(lam1 / lam0) if lam1 > 0 else 0.0) - lam1 + lam0


def _signups_per_minute(model: BusinessModel, inc: Incident) -> float:
    """Mean normal signup rate of the incident's channels over its span (the generator's)."""
    diurnal = diurnal_weights(model.diurnal_amplitude, model.peak_hour_utc)
    shares = dict(zip(CHANNELS, model.channel_shares, strict=True))
    share = 1.0 if inc.channel == "all" else shares[inc.channel]
    total, t = 0.0, inc.start
    while t < inc.end:
        step = min(inc.end, (math.floor(t / _HOUR) + 1) * _HOUR) - t
        day = int(t // _DAY)
        level = diurnal[int((t - day * _DAY) // _HOUR)] * weekly_factor(day, model.weekend_factor)
        total += model.signups_per_day / 24 * level * share * step / _HOUR
        t += step
    return total / ((inc.end - inc.start) / 60.0)


def floor_minutes(inc: Incident, model: BusinessModel, counted: int) -> float | None:
    """Lorden's approximate delay of an optimal test for ``inc``, in minutes (None: unknown).

    ``counted`` is :class:`IncidentCounts`' count of the incident's affected events (payment
    attempts, scans of the segment or channel, cancellations; signups have a known rate).

    >>> m = BusinessModel()
    >>> drop = Incident("d", "signup-tracking-drop", 0.0, 4 * 3600.0, ("signups",), "all", "all",
    ...                 "", 1.0)
    >>> round(floor_minutes(drop, m, 0), 1)   # all lost at night (0.05 a minute): ln(N) / rate
    117.7
    >>> out = Incident("o", "payment-outage", 0.0, 3600.0, ("payments",), "all", "all", "", 0.8)
    >>> round(floor_minutes(out, m, 6), 1)    # 6 attempts in the hour, 80 % failing: 3 of them
    29.9
    >>> floor_minutes(out, m, 0) is None      # nothing to see
    True
    """
    minutes = (inc.end - inc.start) / 60.0
    if minutes <= 0:
        return None
    if inc.kind == "signup-tracking-drop":
        lam0 = _signups_per_minute(model, inc)
        kl = _poisson_kl_rate(lam0 * (1.0 - inc.magnitude), lam0)
        return math.log(lam0 * WEEK_MINUTES) / kl if kl > 0 else None
    if inc.kind == "channel-traffic-surge":
        lam0 = _signups_per_minute(model, inc)
        scans0 = counted / minutes / inc.magnitude
        kl = _poisson_kl_rate(lam0 * inc.magnitude, lam0)
        if scans0 > 0:
            kl += _poisson_kl_rate(scans0 * inc.magnitude, scans0)
        normal = lam0 + scans0
        return math.log(normal * WEEK_MINUTES) / kl if kl > 0 else None
    if counted <= 0:
        return None
    rate = counted / minutes  # affected events a minute during the incident
    if inc.kind == "payment-outage":
        kl = rate * _bernoulli_kl(inc.magnitude, model.payment_failure_rate)
        normal = rate
    elif inc.kind == "match-rate-regression":
        mu = model.segment_match_means[SEGMENTS.index(inc.segment)]
        var = mu * (1 - mu) / (model.match_concentration + 1)
        kl = rate * inc.magnitude ** 2 / (2 * var)
        normal = rate
    elif inc.kind == "churn-spike":
        normal = rate / inc.magnitude
        kl = _poisson_kl_rate(rate, normal)
    else:
        return None
    return math.log(normal * WEEK_MINUTES) / kl if kl > 0 else None
