"""Benign events of the ``none`` scenario: things that look like incidents but are not.

A public holiday, a marketing campaign, a slow growth trend, a short outage of the event pipe and
late events all move the KPIs, yet nobody should be paged for them. They are placed from their
own ``Random(f"benign:{seed}")``, so neither the incidents nor the normal event stream draw
differently, and only inside the range they are given: the stream before it stays the clean one
(the trend starts inside the range too, so a forked warm-up is the fresh run's own). What
people would know about them is :func:`benign_calendar`, for :mod:`detectors.calendar`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.timefmt import iso_utc
from core.vocabulary import CHANNELS
from detectors.calendar import CalendarEvent

__all__ = ["BENIGN_KINDS", "Benign", "HourEffects", "after_gap", "benign_calendar",
           "hour_effects", "plan_benign"]

BENIGN_KINDS: tuple[str, ...] = ("holiday", "campaign", "trend", "gap", "late")
HOLIDAY_FACTOR = 0.6      # every kind of traffic on the holiday, vs a normal day
CAMPAIGN_FACTOR = 2.0     # the campaign channel's signups
TREND_FACTOR = 1.2        # signups once the trend has ramped up ...
TREND_RAMP_S = 28 * 86400.0  # ... linearly over four weeks, then staying there
GAP_S = 20 * 60.0         # no events at all for this long
LATE_SHARE = (0.01, 0.02)  # share of events that arrive late ...
LATE_DELAY_S = (60.0, 480.0)  # ... by this much: inside the KPI engine's 10 min lateness
DELAYED_KINDS = ("payment", "cancel", "spend")
"""Events the gap delays to just after it (billing and ad platforms resend); the tracking events
(signup, scan, activity) sent during the gap are lost."""

_DAY = 86400.0
_HOUR = 3600.0
_GAP_GRID = 300.0  # gaps start on a 5-minute grid


@dataclass(frozen=True)
class Benign:
    """One benign event over ``[start, end)`` (epoch seconds).

    ``magnitude`` is the kind's knob: traffic factor (holiday), signup factor of ``channel``
    (campaign), signup factor reached at ``end`` and kept after it (trend), share of events that
    arrive late (late); unused for a gap.

    >>> Benign("holiday", 86400.0, 172800.0, 0.6, name="Public holiday").to_json()["end"]
    '1970-01-03T00:00:00Z'
    """

    kind: str
    start: float
    end: float
    magnitude: float = 1.0
    channel: str = "all"
    name: str = ""

    def covers(self, ts: float) -> bool:
        """Whether event time ``ts`` falls inside the event (a trend: inside its ramp)."""
        return self.start <= ts < self.end

    def to_json(self) -> dict[str, Any]:
        """What was placed, as written beside the stream."""
        return {"kind": self.kind, "name": self.name, "start": iso_utc(self.start),
                "end": iso_utc(self.end), "start_ts": self.start, "end_ts": self.end,
                "magnitude": self.magnitude, "channel": self.channel}


def plan_benign(seed: int, start_ts: float, end_ts: float,
                kinds: Iterable[str] = BENIGN_KINDS) -> list[Benign]:
    """The benign events of seed ``seed`` inside ``[start_ts, end_ts]``, sorted by start.

    The holiday and the campaign each take a whole UTC day, the gap lies in a third one when
    there is one; ``kinds`` keeps only some kinds, and the others stay where they were. What
    does not fit in a short range is left out, never an error.

    >>> [b.kind for b in plan_benign(1, 0.0, 7 * 86400.0)]
    ['trend', 'late', 'gap', 'holiday', 'campaign']
    >>> [b.kind for b in plan_benign(1, 0.0, 7 * 86400.0, kinds=("gap",))]
    ['gap']
    """
    chosen = set(kinds)
    unknown = chosen - set(BENIGN_KINDS)
    if unknown:
        raise ValueError(f"unknown benign kind(s) {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(BENIGN_KINDS)}")
    rng = random.Random(f"benign:{seed}")
    first, last = math.ceil(start_ts / _DAY), math.floor(end_ts / _DAY)
    days = rng.sample(range(first, last), max(0, last - first))
    channel = rng.choice(CHANNELS)
    trend_at = rng.random()
    late_share = round(rng.uniform(*LATE_SHARE), 4)
    gap_at = rng.random()
    out: list[Benign] = []
    if len(days) >= 1:
        d = days[0] * _DAY
        out.append(Benign("holiday", d, d + _DAY, HOLIDAY_FACTOR,
                          name=f"Public holiday {iso_utc(d)[:10]}"))
    if len(days) >= 2:
        d = days[1] * _DAY
        out.append(Benign("campaign", d, d + _DAY, CAMPAIGN_FACTOR, channel,
                          name=f"{channel} campaign {iso_utc(d)[:10]}"))
    if end_ts > start_ts:
        hours = math.floor(min(_DAY, end_ts - start_ts) / _HOUR)
        t = math.ceil(start_ts / _HOUR) * _HOUR + _HOUR * math.floor(trend_at * hours)
        if t < end_ts:
            out.append(Benign("trend", t, t + TREND_RAMP_S, TREND_FACTOR, name="Growth trend"))
        out.append(Benign("late", start_ts, end_ts, late_share, name="Late events"))
    lo, hi = ((days[2] * _DAY, days[2] * _DAY + _DAY) if len(days) >= 3
              else (start_ts, end_ts))
    slots = math.floor((hi - GAP_S - math.ceil(lo / _GAP_GRID) * _GAP_GRID) / _GAP_GRID) + 1
    if slots > 0:
        g = math.ceil(lo / _GAP_GRID) * _GAP_GRID + _GAP_GRID * math.floor(gap_at * slots)
        out.append(Benign("gap", g, g + GAP_S, name="Event pipeline maintenance"))
    return sorted((b for b in out if b.kind in chosen), key=lambda b: b.start)


GAP_KPIS = ("signups", "scans", "payments", "paid_conversions", "revenue")
"""The counts a pipeline gap empties while it lasts (the calendar's effect 0 on them)."""


def benign_calendar(benign: Iterable[Benign]) -> list[CalendarEvent]:
    """The calendar entries people would have for ``benign``: holidays, campaigns, gaps.

    A trend is no event and late events are the pipe's normal life: neither is written.
    A holiday gives three entries (counts at its factor, conversion rate at the inverse, the
    trailing-24 h daily active ratio with no known factor, a day longer); a campaign two; a gap
    one, effect 0 on the counts it empties (:data:`GAP_KPIS`).
    """
    out: list[CalendarEvent] = []
    for b in benign:
        if b.kind == "holiday":
            out += [
                CalendarEvent(b.name, "holiday", b.start, b.end, ("signups", "scans"),
                              effect=b.magnitude),
                CalendarEvent(b.name, "holiday", b.start, b.end, ("conversion_rate",),
                              effect=round(1.0 / b.magnitude, 4)),
                CalendarEvent(b.name, "holiday", b.start, b.end + _DAY, ("daily_active_ratio",)),
            ]
        elif b.kind == "campaign":
            channel = None if b.channel == "all" else b.channel
            out += [
                CalendarEvent(b.name, "campaign", b.start, b.end, ("signups",),
                              channel=channel, effect=b.magnitude),
                CalendarEvent(b.name, "campaign", b.start, b.end, ("conversion_rate",),
                              channel=channel, effect=round(1.0 / b.magnitude, 4)),
            ]
        elif b.kind == "gap":   # nothing arrives: signups and scans lost, payments held back
            out.append(CalendarEvent(b.name, "maintenance", b.start, b.end, GAP_KPIS,
                                     effect=0.0))
    return sorted(out, key=lambda e: e.start)


def _ramp_area(b: Benign, t: float) -> float:
    """Integral of the trend's extra signup factor from its start to ``t`` (seconds)."""
    gain, ramp = b.magnitude - 1.0, b.end - b.start
    x = t - b.start
    if x <= 0:
        return 0.0
    if x <= ramp:
        return gain * x * x / (2.0 * ramp)
    return gain * (ramp / 2.0 + x - ramp)


@dataclass(frozen=True)
class HourEffects:
    """What the benign events do to one generated interval ``[t0, t1)`` of an hour."""

    holidays: tuple[tuple[float, float, float], ...]   # (from, to, traffic factor)
    campaigns: tuple[tuple[str, float, float, float], ...]  # (channel, from, to, factor)
    trend_s: float  # integral of the trends' extra signup factor over the interval
    gaps: tuple[tuple[float, float], ...]   # every gap, not only this hour's: late arrivals
    late: tuple[tuple[float, float, float], ...]   # (from, to, share)

    def traffic(self, ts: float) -> float:
        """Traffic factor at ``ts`` (1.0 outside holidays)."""
        f = 1.0
        for a, b, m in self.holidays:
            if a <= ts < b:
                f *= m
        return f

    def in_gap(self, ts: float) -> tuple[float, float] | None:
        """The gap holding ``ts``, if any."""
        for a, b in self.gaps:
            if a <= ts < b:
                return a, b
        return None

    def late_share(self, ts: float) -> float:
        """Share of events of ``ts`` that arrive late."""
        return next((s for a, b, s in self.late if a <= ts < b), 0.0)


def after_gap(ts: float, gap: tuple[float, float]) -> float:
    """Where an event of ``ts`` inside ``gap`` lands: within a second after it, in order."""
    a, b = gap
    return round(b + (ts - a) / (b - a), 3)


def hour_effects(benign: Sequence[Benign], t0: float, t1: float) -> HourEffects | None:
    """The effects of ``benign`` on ``[t0, t1)``; None when they leave it alone."""
    def clip(b: Benign) -> tuple[float, float]:
        return max(t0, b.start), min(t1, b.end)

    touching = [b for b in benign if b.start < t1 and (b.end > t0 or b.kind == "trend")]
    if not touching:
        return None
    return HourEffects(
        holidays=tuple((*clip(b), b.magnitude) for b in touching if b.kind == "holiday"),
        campaigns=tuple((b.channel, *clip(b), b.magnitude) for b in touching
                        if b.kind == "campaign"),
        trend_s=sum(_ramp_area(b, t1) - _ramp_area(b, t0) for b in touching
                    if b.kind == "trend"),
        gaps=tuple((b.start, b.end) for b in benign if b.kind == "gap"),
        late=tuple((*clip(b), b.magnitude) for b in touching if b.kind == "late"))
