"""Tool results about one series: its value, comparison, target and trend, as JSON-ready dicts.

Every number comes with the string every other surface shows for it (``value_text`` through
:func:`alerting.evidence.format_value`, changes through ``format_change``: points for a rate),
so the parser's sentences and a model's answer quote the same strings. A result that has no
number to give has an ``error`` saying why, in words a person can act on; nothing here raises
on data it cannot answer from.
"""

from __future__ import annotations

import math
import re
from typing import Any

from alerting.evidence import (
    KPIS,
    direction_meaning,
    format_change,
    format_value,
    kpi_label,
    slice_name,
    slice_phrase,
)
from assistant.periods import Period, compare_with, moment_text, span_text
from assistant.query import (
    LAST,
    SUM,
    Value,
    coverage,
    period_value,
    rule,
    trend,
)
from assistant.store import KpiStore
from core.timefmt import iso_utc, parse_utc
from kpis.formulas import KPI_BY_ID
from kpis.formulas import KPIS as KPI_DEFS

__all__ = ["DENOMINATORS", "MEANINGS", "change_fact", "compared", "data_span", "fchange", "fmt",
           "head", "kpi_trend", "kpi_value", "missing", "number", "target_fact", "value_fact"]

MEANINGS: dict[str, str] = {
    "signups": "new accounts",
    "paid_conversions": "users who made their first payment",
    "conversion_rate": "paid conversions per signup",
    "revenue": "succeeded payments",
    "payment_failure_rate": "the share of payment attempts that failed",
    "mrr": "the monthly value of all active subscriptions",
    "mrr_growth": "the change in MRR",
    "arpu": "MRR per user active in the last 30 days",
    "churn_rate": "the share of the last 30 days' subscriptions that were cancelled",
    "cac": "marketing spend per new paying user, over the last 30 days",
    "ltv": "monthly revenue per paying user times their expected lifetime (at most 36 months)",
    "ltv_cac": "lifetime value per dollar spent to acquire a paying user",
    "match_rate": "the mean match score of resume scans",
    "daily_active_ratio": "users active in the last day per user active in the last 30 days",
    "viral_coefficient": "referred signups per referring user, over the last 30 days",
    "scans": "resume scans",
    "payments": "succeeded payments",
    "funnel_signup_to_scan": "the share of signups who ran a first scan within 24 hours (known "
                             "24 hours after they signed up)",
    "funnel_scan_to_paid": "the share of signups who scanned within 24 hours and paid within "
                           "14 days (known 14 days after they signed up)",
    "funnel_signup_to_paid": "the share of signups who paid within 14 days (known 14 days "
                             "after they signed up)",
    "retention_d7": "the share of a week's signups active on day 7",
    "retention_d30": "the share of a week's signups active on day 30",
    "paid_retention_m1": "the share of a week's paying signups still subscribed after a month",
}
"""What a KPI measures, in a finance person's words (the definitions are kpis/formulas.py's)."""
DENOMINATORS: dict[str, tuple[str, str]] = {
    "conversion_rate": ("signup", "signups"), "match_rate": ("scan", "scans"),
    "payment_failure_rate": ("payment attempt", "payment attempts"),
    "funnel_signup_to_scan": ("signup", "signups"), "funnel_signup_to_paid": ("signup", "signups"),
    "funnel_scan_to_paid": ("signup who scanned", "signups who scanned"),
}
"""What a window ratio's ``n`` counts, to say how many events a rate rests on."""
_COHORT = frozenset(k for k, d in KPI_BY_ID.items() if d not in KPI_DEFS)
WEEK = 7 * 86_400.0


def _as(kpi: str) -> str:
    """The KPI to format ``kpi``'s values as: itself, or for a cohort KPI (a 0-1 share that
    alerting.evidence does not catalogue) a window share, so it reads as a percent."""
    return "match_rate" if kpi in _COHORT else kpi


def fmt(value: float, kpi: str) -> str:
    """``format_value`` for any KPI of the catalogue, cohort KPIs too."""
    return format_value(value, _as(kpi))


def fchange(value: float, before: float, kpi: str) -> str:
    """The absolute change as ``format_change`` writes it (``+0.3 pp``, ``-7``, ``+$3,047``);
    a change that rounds to nothing is ``about 0`` rather than ``-0.0 pp``."""
    text = format_change(value, before, _as(kpi))[0]
    if not re.sub(r"[^0-9]", "", text).strip("0"):
        return "about 0 pp" if text.endswith("pp") else "about 0"
    return text


def number(x: float) -> float | None:
    """``x`` when it is a finite number, else None (JSON has no NaN)."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def head(kpi: str, segment: str = "all", channel: str = "all") -> dict[str, Any]:
    """What every result about one series starts with: ids and their words."""
    return {"kpi": kpi, "label": kpi_label(kpi), "unit": KPI_BY_ID[kpi].unit,
            "meaning": MEANINGS.get(kpi, KPI_BY_ID[kpi].doc.rstrip(".")), "segment": segment,
            "channel": channel, "slice": slice_name(segment, channel)}


def value_fact(kpi: str, v: Value) -> dict[str, Any]:
    return {"value": v.value, "value_text": fmt(v.value, kpi), "n": number(v.n),
            "windows": v.windows, "as_of": iso_utc(v.as_of), "as_of_text": moment_text(v.as_of)}


def change_fact(kpi: str, now: float, before: float) -> dict[str, Any]:
    """The change from ``before`` to ``now``: in the KPI's unit (points for a rate) and, for
    counts and money, relative."""
    diff = now - before
    absolute = fchange(now, before, kpi)
    direction = "up" if diff > 0 else "down" if diff < 0 else "flat"
    out: dict[str, Any] = {"change": diff, "change_text": absolute, "direction": direction,
                           "meaning": direction_meaning(kpi, direction)
                           if direction != "flat" else "neither"}
    if KPIS[_as(kpi)].kind != "percent" and before:
        out["relative_text"] = f"{'+' if diff >= 0 else '-'}{abs(diff) / abs(before):.0%}"
    return out


def target_fact(kpi: str, value: float) -> dict[str, Any] | None:
    """The KPI's target (seed 000 / 002) and whether ``value`` meets it."""
    k = KPI_BY_ID[kpi]
    if k.target is None:
        return None
    met = value <= k.target if k.higher_is_better is False else value >= k.target
    return {"target": k.target, "target_text": fmt(k.target, kpi),
            "rule_text": KPIS[kpi].target if kpi in KPIS else "", "met": met,
            "gap_text": fchange(value, k.target, kpi)}


def data_span(store: KpiStore, years: bool = False) -> str:
    first, now = store.first, store.now
    if first is None or now is None:
        return "nothing"
    return span_text(first, now, years)


def missing(store: KpiStore, kpi: str, segment: str, channel: str, period: Period) -> str:
    """Why a series has no value in ``period``, in words."""
    where = slice_phrase(segment, channel)
    if coverage(store, period) == "none":
        return (f"Pulse's data covers {data_span(store, True)}, so it has nothing for "
                f"{span_text(period.start, period.end, True)}")
    if store.warming_up(kpi, segment, channel):
        return ("it is still filling up: it needs 30 days of data before its value means what "
                "it says")
    if not store.has(kpi, segment, channel):
        return f"Pulse's data has no {kpi_label(kpi)} {where}"
    return (f"it is undefined for {period.text()}: there was nothing to divide by (no "
            "signups, payments or paying users)")


def compared(store: KpiStore, kpi: str, segment: str, channel: str, period: Period,
              how: str, now: Value) -> dict[str, Any] | None:
    other = compare_with(period, how)
    if other is None:
        return None
    out: dict[str, Any] = {"how": how, "period": other.to_json()}
    cov = coverage(store, other)
    if cov == "none" or (cov == "partial" and rule(kpi) == SUM):
        first = store.first
        out["error"] = (f"the data starts {moment_text(first)}, so it does not cover all of "
                        f"{other.text()}" if first is not None else "no data")
        return out
    was = period_value(store, kpi, segment, channel, other)
    if was is None:
        out["error"] = missing(store, kpi, segment, channel, other)
        return out
    return {**out, **value_fact(kpi, was), **change_fact(kpi, now.value, was.value)}


def kpi_value(store: KpiStore, kpi: str, segment: str, channel: str, period: Period,
              compare: str) -> dict[str, Any]:
    """One series over one period, compared as asked, with its target."""
    base = {**head(kpi, segment, channel), "period": period.to_json()}
    if kpi in _COHORT:
        return {**base, **_cohort(store, kpi, segment, channel)}
    v = period_value(store, kpi, segment, channel, period)
    if v is None:
        return {**base, "error": missing(store, kpi, segment, channel, period)}
    out = {**base, **value_fact(kpi, v), "rule": rule(kpi),
           "latest": period.end >= (store.now or period.end)}
    if kpi in DENOMINATORS and rule(kpi) != LAST and math.isfinite(v.n):
        one, many = DENOMINATORS[kpi]
        out["basis_text"] = f"{v.n:,.0f} {one if v.n == 1 else many}"
    if kpi == "mrr_growth" and v.windows > 1:
        out["rule"] = "growth"
    if coverage(store, period) == "partial" and store.first is not None:
        out["note"] = (f"the data starts {moment_text(store.first)}, so this covers only part "
                       f"of {period.label}")
    comparison = compared(store, kpi, segment, channel, period, compare, v)
    if comparison is not None:
        out["comparison"] = comparison
    target = target_fact(kpi, v.value)
    if target is not None:
        out["target"] = target
    return out


def _cohort(store: KpiStore, kpi: str, segment: str, channel: str) -> dict[str, Any]:
    values = store.cohort_values(kpi, segment, channel)
    if not values:
        return {"error": f"the data has no {kpi_label(kpi)} {slice_phrase(segment, channel)} "
                         "yet: a weekly cohort's value comes once its horizon has passed"}
    (week, p), *_ = values[-1:]
    out: dict[str, Any] = {"cohort": week, "cohort_text": f"signups of the week of {week}",
                           "value": p.value, "value_text": fmt(p.value, kpi),
                           "n": number(p.n), "as_of": iso_utc(p.end),
                           "as_of_text": moment_text(p.end)}
    if len(values) > 1:
        week0, p0 = values[-2]
        out["comparison"] = {"how": "previous_cohort", "cohort": week0,
                             "value": p0.value, "value_text": fmt(p0.value, kpi),
                             **change_fact(kpi, p.value, p0.value)}
    return out


def kpi_trend(store: KpiStore, kpi: str, segment: str, channel: str, period: Period,
              step: str) -> dict[str, Any]:
    """The series over ``period`` step by step, where it started and where it is now."""
    base = {**head(kpi, segment, channel), "period": period.to_json(), "step": step}
    points = trend(store, kpi, segment, channel, period, step)
    if not points:
        return {**base, "error": missing(store, kpi, segment, channel, period)}
    steps = [{"start": iso_utc(p.start), "end": iso_utc(p.end),
              "text": span_text(p.start, p.start + 86_400.0) if step == "day"
              else span_text(p.start, p.end),
              "value": p.value, "value_text": fmt(p.value, kpi),
              "partial": p.partial} for p in points]
    if rule(kpi) == LAST:   # a level: from the period's first window to its last
        windows = store.points(kpi, segment, channel, period.start, period.end)
        start, end = _at(windows[0], kpi), _at(windows[-1], kpi)
        latest_first = windows[::-1]   # of equal values, the latest
        low, high = (_at(min(latest_first, key=lambda w: w.value), kpi),
                     _at(max(latest_first, key=lambda w: w.value), kpi))
    else:   # counts and window ratios: the last full step against the same step a week
        # before (weekdays differ: a Sunday has fewer signups), else the first full step
        full = [s for s in steps if not s["partial"]] or steps
        week = [s for s in full if s["start"] == iso_utc(parse_utc(full[-1]["start"]) - WEEK)]
        start = {k: (week or full)[0][k] for k in ("value", "value_text", "text")}
        start["basis"] = "same_weekday" if week else "first_day"
        end = {k: full[-1][k] for k in ("value", "value_text", "text")}
        low = min(full, key=lambda s: s["value"])
        high = max(full, key=lambda s: s["value"])
    out = {**base, "points": steps, "from": start, "to": end,
           **change_fact(kpi, end["value"], start["value"]),
           "low": {"value_text": low["value_text"], "text": low["text"]},
           "high": {"value_text": high["value_text"], "text": high["text"]}}
    total = period_value(store, kpi, segment, channel, period)
    if total is not None and rule(kpi) != LAST:
        out["period_value"] = value_fact(kpi, total)
    return out


def _at(p: Any, kpi: str) -> dict[str, Any]:
    """A window's value and when it was (a level's start, end, low or high)."""
    return {"value": p.value, "value_text": fmt(p.value, kpi), "as_of": iso_utc(p.end),
            "as_of_text": moment_text(p.end), "text": moment_text(p.end)}
