"""The numbers behind every answer: a KPI's value over a period, its trend, and where a change
came from, computed from the store's windows by one rule per KPI.

A period's value follows the KPI's definition (the digest's ``daily_rule``): counts and money
are summed over the period's windows; a window ratio is ``Σ value·n / Σ n`` (``n`` is its
denominator, so this is the period's own ratio); levels and trailing KPIs (MRR, churn, CAC,
LTV, ...) take the period's last window. Two KPIs are computed from others, as their
definitions say: the conversion rate of a period is its paid conversions over its signups
(a window without signups has no conversion rate, but its conversions count), and MRR growth
over more than one window is the change of MRR from the period's start to its end.

A change between two periods is split among segments (or channels) so that the parts add up:
a sum's part is the slice's own change; a ratio's part is ``num_i' / N' - num_i / N`` (the
slice's numerator over the overall denominator, after minus before), in the KPI's unit (points
for a rate). LTV, LTV:CAC and MRR growth are not sums or ratios of sums over slices: their
slices' changes are shown, not added up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.periods import Period, day_start
from assistant.store import KpiStore, Point
from kpis.formulas import DAY_S, KPI_BY_ID, KpiDef

__all__ = ["DECOMPOSE", "FUNNEL", "RATIO_OF_COUNTS", "Contribution", "Value", "contributions",
           "coverage", "decompose_kind", "period_value", "rule", "trend"]

SUM, WEIGHTED, LAST = "sum", "weighted", "last"
DECOMPOSE: dict[str, str | None] = {
    "mrr": "sum", "churn_rate": "ratio", "cac": "ratio", "arpu": "ratio",
    "daily_active_ratio": "ratio", "viral_coefficient": "ratio",
    "ltv": None, "ltv_cac": None, "mrr_growth": None,
}
"""How a level or trailing KPI's change splits among slices (window KPIs follow their rule):
``sum`` (the slices add up), ``ratio`` (``value·n`` and ``n`` add up), None (neither)."""
RATIO_OF_COUNTS: dict[str, tuple[str, str]] = {"conversion_rate": ("paid_conversions", "signups")}
"""Window ratios whose numerator is not a part of the denominator's events: over a period they
are the ratio of the two count KPIs' sums (a conversion in a window without signups counts)."""


FUNNEL = frozenset({"funnel_signup_to_scan", "funnel_scan_to_paid", "funnel_signup_to_paid"})
"""Funnel KPIs: each window's value is the share of one earlier window's signups, so a
period's value is their ``n``-weighted mean (the digest takes a day's last window)."""


def rule(kpi: str) -> str:
    """How a KPI's windows make a period's value: ``sum``, ``weighted`` or ``last``.

    >>> [rule(k) for k in ("signups", "revenue", "conversion_rate", "mrr", "churn_rate",
    ...                    "funnel_signup_to_paid")]
    ['sum', 'sum', 'weighted', 'last', 'last', 'weighted']
    """
    k: KpiDef | None = KPI_BY_ID.get(kpi)
    if k is not None and k.id in FUNNEL:
        return WEIGHTED
    if k is None or k.horizon != "window" or kpi == "mrr_growth":
        return LAST
    return WEIGHTED if k.unit.startswith("ratio") else SUM


def decompose_kind(kpi: str) -> str | None:
    """``sum``, ``ratio`` or None: whether and how a change of ``kpi`` adds up over slices."""
    r = rule(kpi)
    if r == SUM:
        return "sum"
    if r == WEIGHTED:
        return "ratio"
    return DECOMPOSE.get(kpi)


@dataclass(frozen=True)
class Value:
    """A series' value over a period.

    ``n`` is the events counted or the ratio's denominator (summed over the windows, or the
    last window's for a level); ``num`` the ratio's numerator (``value·n``) where that adds up;
    ``as_of`` the end of the last window used.
    """

    value: float
    n: float
    num: float
    windows: int
    first_end: float
    as_of: float


def period_value(store: KpiStore, kpi: str, segment: str, channel: str,
                 period: Period) -> Value | None:
    """The value of one series over ``period`` by :func:`rule`; None when it has no window
    there (undefined, or outside the data)."""
    if kpi == "mrr_growth" and period.seconds > store.window_s:
        return _growth(store, segment, channel, period)
    if kpi in RATIO_OF_COUNTS:
        return _ratio_of_counts(store, kpi, segment, channel, period)
    r = rule(kpi)
    if r == LAST:
        p = store.last_at(kpi, segment, channel, period.end, after=period.start)
        if p is None:
            return None
        n = p.n if math.isfinite(p.n) else math.nan
        return Value(p.value, n, p.value * n, 1, p.end, p.end)
    points = store.points(kpi, segment, channel, period.start, period.end)
    if not points:
        return None
    return _aggregate(points, r)


def _ratio_of_counts(store: KpiStore, kpi: str, segment: str, channel: str,
                     period: Period) -> Value | None:
    num_kpi, den_kpi = RATIO_OF_COUNTS[kpi]
    den = store.points(den_kpi, segment, channel, period.start, period.end)
    total = sum(p.value for p in den)
    if not den or total <= 0:
        return None
    num = sum(p.value for p in store.points(num_kpi, segment, channel, period.start,
                                            period.end))
    return Value(num / total, total, num, len(den), den[0].end, den[-1].end)


def _growth(store: KpiStore, segment: str, channel: str, period: Period) -> Value | None:
    """MRR growth over a period longer than a window: from the MRR at its start and end."""
    end = store.last_at("mrr", segment, channel, period.end, after=period.start)
    start = store.last_at("mrr", segment, channel, period.start)
    if end is None or start is None or start.value <= 0:
        return None
    return Value((end.value - start.value) / start.value, start.n, math.nan, 2, start.end,
                 end.end)


def _aggregate(points: Sequence[Point], r: str) -> Value:
    first, last = points[0].end, points[-1].end
    if r == SUM:
        total = sum(p.value for p in points)
        n = sum(p.n for p in points if math.isfinite(p.n))
        return Value(total, n, total, len(points), first, last)
    weights = [p.n for p in points]
    if all(math.isfinite(w) for w in weights) and sum(weights) > 0:
        num = sum(p.value * p.n for p in points)
        n = sum(weights)
        return Value(num / n, n, num, len(points), first, last)
    mean = sum(p.value for p in points) / len(points)   # older rows without n
    return Value(mean, math.nan, math.nan, len(points), first, last)


def coverage(store: KpiStore, period: Period) -> str:
    """``full``, ``partial`` or ``none``: how much of ``period`` the data spans."""
    first, now = store.first, store.now
    if first is None or now is None or period.end <= first or period.start >= now:
        return "none"
    return "full" if period.start >= first and period.end <= now else "partial"


# -- trend ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrendPoint:
    """One step of a trend: a day (or a window) and the KPI's value over it."""

    start: float
    end: float
    value: float
    n: float
    partial: bool   # a day the data does not cover in full (today so far)


def trend(store: KpiStore, kpi: str, segment: str, channel: str, period: Period,
          step: str = "day") -> list[TrendPoint]:
    """The KPI over ``period`` day by day (``step="day"``: each UTC day's value by
    :func:`rule`) or window by window (``step="window"``)."""
    points = store.points(kpi, segment, channel, period.start, period.end)
    if step == "window":
        return [TrendPoint(p.start, p.end, p.value, p.n, False) for p in points]
    days: dict[float, list[Point]] = {}
    for p in points:
        days.setdefault(day_start(p.start), []).append(p)
    r = rule(kpi)
    first, now = store.first or -math.inf, store.now or math.inf
    out = []
    for day, ps in sorted(days.items()):
        v = _aggregate(ps, r) if r != LAST else Value(ps[-1].value, ps[-1].n, 0.0, 1,
                                                      ps[-1].end, ps[-1].end)
        partial = day < max(period.start, first) or day + DAY_S > min(period.end, now)
        out.append(TrendPoint(day, ps[-1].end, v.value, v.n, partial))
    return out


# -- where a change came from --------------------------------------------------------------

@dataclass(frozen=True)
class Contribution:
    """One slice's part in the change of the overall value between two periods."""

    segment: str
    channel: str
    now: Value | None
    before: Value | None
    part: float | None   # its contribution to the overall change, in the KPI's unit


def contributions(store: KpiStore, kpi: str, by: str, period: Period, before: Period | None,
                  overall_now: Value | None, overall_before: Value | None
                  ) -> list[Contribution]:
    """Each segment's (``by="segment"``) or channel's part in the overall change from
    ``before`` to ``period``, the largest part (in size) first; ``part`` is None where the
    KPI does not add up over slices (:func:`decompose_kind`), without ``before``, or where a
    period has no overall value."""
    names = store.segments(kpi) if by == "segment" else store.channels(kpi)
    kind = decompose_kind(kpi)
    out = []
    for name in names:
        seg, ch = (name, "all") if by == "segment" else ("all", name)
        now = period_value(store, kpi, seg, ch, period)
        was = period_value(store, kpi, seg, ch, before) if before is not None else None
        out.append(Contribution(seg, ch, now, was,
                                _part(kind, now, was, overall_now, overall_before)))
    return sorted(out, key=lambda c: (c.part is None, -abs(c.part or 0.0)))


def _part(kind: str | None, now: Value | None, was: Value | None, total_now: Value | None,
          total_was: Value | None) -> float | None:
    if kind is None or total_now is None or total_was is None:
        return None
    if kind == "sum":
        return (now.value if now else 0.0) - (was.value if was else 0.0)
    if not (total_now.n > 0 and total_was.n > 0):   # also False for NaN
        return None
    num_now = now.num if now else 0.0
    num_was = was.num if was else 0.0
    if not (math.isfinite(num_now) and math.isfinite(num_was)):
        return None
    return num_now / total_now.n - num_was / total_was.n
