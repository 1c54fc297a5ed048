"""The computed facts behind an alert: what the template and the model may talk about.

Numbers and names are formatted here, once, so the Slack message, the template and the prompt
show the same strings (the same band, the same change, the same impact), and
:func:`numbers_in` can check that a text uses no other number. A rate's change is in
percentage points, a large move as a multiple of normal, never a percent of a percent:

>>> format_value(0.412, "payment_failure_rate"), format_value(1234.5, "revenue")
('41.2%', '$1,234')
>>> format_change(0.412, 0.02, "payment_failure_rate")
('+39.2 pp', '21× normal')
>>> format_change(0.05, 0.04, "payment_failure_rate"), format_change(40.0, 120.0, "payments")
(('+1.0 pp', '+1.0 pp'), ('-80', '-67%'))
>>> format_band(-0.43, 0.5, "payment_failure_rate")
'0.0% to 50.0%'
>>> slice_phrase("new_grad", "all"), slice_phrase("all", "paid_search")
('for new grads', 'on paid search')
>>> sorted(numbers_in("MRR fell 12.50% to $1,234 (was 1.2k)"))
['1.2', '12.5', '1234']
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from alerting.escape import clean_event_text
from core.timefmt import clock_utc, human_utc, parse_utc
from kpis.formulas import KPI_BY_ID, KpiDef

__all__ = [
    "CHANNEL_NAMES",
    "KPIS",
    "SEGMENT_NAMES",
    "KpiInfo",
    "Scope",
    "abnormal_for",
    "build_evidence",
    "change_words",
    "detector_name",
    "digits_for",
    "direction_meaning",
    "families_of",
    "feasible_band",
    "feasible_range",
    "format_band",
    "format_change",
    "format_duration",
    "format_value",
    "headline_scope",
    "impact_line",
    "kpi_label",
    "numbers_in",
    "plain_ids",
    "scope_of",
    "scope_words",
    "series_label",
    "series_names",
    "slice_name",
    "slice_phrase",
    "so_far",
    "where",
]


@dataclass(frozen=True)
class KpiInfo:
    """How Pulse talks about one KPI; label, definition and target come from kpis/ (the one
    definition of each KPI), the incident families are alerting's own."""

    label: str
    definition: str
    kind: str  # "percent", "usd", "count" or "number": how values are formatted
    families: tuple[str, ...]  # incident families: anomalies of one family in one window group
    target: str = ""


# Which incident families a KPI belongs to: anomalies of one family in overlapping windows are
# one incident (a payment outage moves payments, revenue, conversion and MRR together).
FAMILIES: dict[str, tuple[str, ...]] = {
    "signups": ("acquisition",), "scans": ("product",), "match_rate": ("product",),
    "paid_conversions": ("payments", "acquisition"),
    "conversion_rate": ("payments", "acquisition"),
    "payments": ("payments",), "revenue": ("payments",), "payment_failure_rate": ("payments",),
    "mrr": ("payments", "retention"), "mrr_growth": ("payments", "retention"),
    "arpu": ("payments", "engagement"), "churn_rate": ("retention",),
    "cac": ("acquisition",), "ltv": ("retention",), "ltv_cac": ("acquisition", "retention"),
    "daily_active_ratio": ("engagement",), "viral_coefficient": ("acquisition",),
}
_NUMBERS = frozenset({"ltv_cac", "viral_coefficient"})

SEGMENT_NAMES: dict[str, str] = {
    "career_changer": "career changers", "new_grad": "new grads",
    "experienced": "experienced hires", "executive": "executives"}
"""Plain words for the segments of core.vocabulary (the closed set the events use)."""
CHANNEL_NAMES: dict[str, str] = {
    "organic": "organic", "paid_search": "paid search", "referral": "referral",
    "social": "social"}
"""Plain words for the acquisition channels of core.vocabulary."""

_CONCENTRATED_SHARE = 0.6   # as alerting.lifecycle.CONCENTRATED_SHARE, for older snapshots


def _info(k: KpiDef) -> KpiInfo:
    if "USD" in k.unit:
        kind = "usd"
    elif k.unit.startswith("ratio") and k.id not in _NUMBERS:
        kind = "percent"
    elif k.unit.startswith("ratio"):
        kind = "number"
    else:
        kind = "count"
    target = ""
    if k.target is not None:
        value = {"percent": f"{k.target * 100:g}%", "usd": f"{k.target:g} USD"}.get(
            kind, f"{k.target:g}")
        per = " per month" if "per month" in k.unit else ""
        target = f"{'at least' if k.higher_is_better else 'at most'} {value}{per}"
    return KpiInfo(k.title, k.doc, kind, FAMILIES.get(k.id, (f"kpi:{k.id}",)), target)


KPIS: dict[str, KpiInfo] = {k.id: _info(k) for k in KPI_BY_ID.values()}   # cohort KPIs too

_NUMBER = re.compile(r"(?<![A-Za-z_])\d[\d,]*(?:\.\d+)?")
_IDS = re.compile(r"\b(" + "|".join(sorted((re.escape(k) for k in KPI_BY_ID if "_" in k),
                                           key=len, reverse=True)) + r")\b")


def kpi_label(kpi: str) -> str:
    """``Payment failure rate`` for ``payment_failure_rate``: what people read, never the id."""
    info = KPI_BY_ID.get(kpi)
    return info.title if info else clean_event_text(kpi, 60)


def plain_ids(text: str) -> str:
    """``text`` with every KPI id written as its label (for old reasons and model answers).

    >>> plain_ids("joined: payment_failure_rate and match_rate")
    'joined: Payment failure rate and Match rate'
    """
    return _IDS.sub(lambda m: kpi_label(m.group(1)), text)


def families_of(kpi: str) -> frozenset[str]:
    """Incident families of a KPI; an unknown KPI is its own family."""
    info = KPIS.get(kpi)
    return frozenset(info.families) if info else frozenset({f"kpi:{kpi}"})


def _kind(kpi: str) -> str:
    info = KPIS.get(kpi)
    return info.kind if info else "number"


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


# -- values, changes, bands ----------------------------------------------------------------

def _decimals(value: float, kind: str) -> int:
    if kind == "percent":
        return 1
    if kind == "usd":
        return 0 if abs(value) >= 100 else 2
    return 0 if kind == "count" else 2


def format_value(value: float | None, kpi: str, digits: int | None = None) -> str:
    """A KPI value as Pulse shows it everywhere (percent, dollars, counts); ``digits``: more
    decimals than the kind's own (:func:`digits_for`)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    kind = _kind(kpi)
    d = _decimals(value, kind) if digits is None else digits
    if kind == "percent":
        return f"{value * 100:.{d}f}%"
    if kind == "usd":
        return f"${value:,.{d}f}"
    return f"{value:,.{d}f}"


def digits_for(alert: dict) -> int | None:
    """Decimals for the lead's numbers so that a value that differs from its expected value or
    its band's edges also reads differently (``2.53%`` outside ``2.30% to 2.49%``, not ``2.5%``
    against ``2.3% to 2.5%``); None when the kind's own decimals already do.

    >>> digits_for({"kpi": "churn_rate", "value": 0.02529, "expected": 0.02397,
    ...             "lower": 0.02303, "upper": 0.02491})
    2
    >>> digits_for({"kpi": "payment_failure_rate", "value": 0.75, "expected": 0.0325,
    ...             "lower": -0.63, "upper": 0.6955}) is None
    True
    """
    kpi = str(alert.get("kpi"))
    kind = _kind(kpi)
    if kind == "count":   # whole numbers against a band of whole numbers (format_band)
        return None
    value, expected = _f(alert.get("value")), _f(alert.get("expected"))
    lower, upper = _f(alert.get("lower")), _f(alert.get("upper"))
    others = [expected]
    if math.isfinite(lower) and math.isfinite(upper):
        others += list(feasible_band(lower, upper, kpi))
    others = [x for x in others if math.isfinite(x) and abs(x - value) > 1e-12]
    if not math.isfinite(value) or not others:
        return None
    base = min(_decimals(x, kind) for x in [value, *others])
    for d in range(base, base + 3):
        shown = format_value(value, kpi, d)
        if all(format_value(x, kpi, d) != shown for x in others):
            return None if d == base else d
    return base + 2


def _times(value: float, expected: float) -> str:
    """``23× normal`` when ``value`` is at least twice ``expected`` (both positive), else ''."""
    if not (expected > 1e-12 and value >= 2 * expected):
        return ""
    ratio = value / expected
    return f"{ratio:,.0f}× normal" if ratio >= 10 else f"{ratio:.1f}× normal"


def format_change(value: float, expected: float, kpi: str,
                  digits: int | None = None) -> tuple[str, str]:
    """(absolute change, the change as a headline says it) of ``value`` against ``expected``.

    The absolute change is in the KPI's unit, percentage points for a rate. The second is a
    multiple of normal for a large rise (``21× normal``), else a relative change for counts
    and money (``-67%``) and the points again for a rate: a percent of a percent
    (``+1960%``) is not a number anyone can repeat.
    """
    if not (math.isfinite(value) and math.isfinite(expected)):
        return "n/a", "n/a"
    diff = value - expected
    sign = "+" if diff >= 0 else "-"
    kind = _kind(kpi)
    if kind == "percent":
        # the points between the two numbers as shown: 2.71% against 2.66% is 0.05 pp, though
        # 2.706 - 2.661 is 0.045 (a reader subtracts what is printed)
        d = 1 if digits is None else digits
        points = round(value * 100, d) - round(expected * 100, d)
        absolute = f"{'+' if points >= 0 else '-'}{abs(points):.{d}f} pp"
    else:
        absolute = sign + format_value(abs(diff), kpi, digits)
    times = _times(value, expected)
    if times:
        return absolute, times
    if kind == "percent":
        return absolute, absolute
    if abs(expected) < 1e-12:
        return absolute, "n/a"
    return absolute, f"{sign}{abs(diff) / abs(expected) * 100:.0f}%"


def change_words(value: float, expected: float, kpi: str, digits: int | None = None) -> str:
    """The change for a headline: ``up 71.8 pp to 75.0% (23× normal)``, ``down 67% to 40``.

    >>> change_words(0.75, 0.0325, "payment_failure_rate")
    'up 71.8 pp to 75.0% (23× normal)'
    >>> change_words(40.0, 120.0, "payments"), change_words(412.0, 105.0, "signups")
    ('down 67% to 40', 'at 3.9× normal (412)')
    """
    now = format_value(value, kpi, digits)
    if not (math.isfinite(value) and math.isfinite(expected)):
        return f"at {now}"
    verb = "up" if value >= expected else "down"
    absolute, relative = format_change(value, expected, kpi, digits)
    times = _times(value, expected)
    if _kind(kpi) == "percent":
        return f"{verb} {absolute.lstrip('+-')} to {now}" + (f" ({times})" if times else "")
    if times:
        return f"at {times} ({now})"
    if relative == "n/a":
        return f"at {now} (expected {format_value(expected, kpi, digits)})"
    return f"{verb} {relative.lstrip('+-')} to {now}"


def feasible_range(kpi: str) -> tuple[float, float]:
    """(lowest, highest) value the KPI can take: 0..1 for a share, >= 0 for counts and money,
    unbounded for growth (which can be negative) and unknown KPIs."""
    info = KPI_BY_ID.get(kpi)
    if info is None or info.id == "mrr_growth":
        return -math.inf, math.inf
    if "0-1" in info.unit:
        return 0.0, 1.0
    return 0.0, math.inf


def feasible_band(lower: float, upper: float, kpi: str) -> tuple[float, float]:
    """The detector's band cut to the values the KPI can take: a count or a failure rate is
    never below 0 (a band of -45%..48% reads as nonsense), a 0-1 ratio never above 1. Every
    field, sentence and chart shows the band through this."""
    lo, hi = feasible_range(kpi)
    return min(max(lower, lo), hi), max(min(upper, hi), lo)


def format_band(lower: Any, upper: Any, kpi: str, digits: int | None = None) -> str:
    """The normal band as every field, sentence and prompt shows it: ``0.0% to 50.0%``,
    through :func:`feasible_band`; a count's band as the whole numbers it holds; ``n/a``
    without one.

    >>> format_band(0.2, 26.2, "signups"), format_band(-3.5, 1200.4, "revenue")
    ('1 to 26', '$0 to $1,200')
    """
    lo, hi = _f(lower), _f(upper)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    lo, hi = feasible_band(lo, hi, kpi)
    if _kind(kpi) == "count" and digits is None and math.ceil(lo) <= math.floor(hi):
        # whole numbers: [0.2, 26.2] holds exactly the counts 1 to 26 (a count of 0 is out)
        lo, hi = math.ceil(lo), math.floor(hi)
    if _kind(kpi) == "usd" and digits is None:   # one precision for both ends: $0 to $1,200
        digits = _decimals(max(abs(lo), abs(hi)), "usd")
    return f"{format_value(lo, kpi, digits)} to {format_value(hi, kpi, digits)}"


def direction_meaning(kpi: str, direction: str) -> str:
    """``worse``, ``better`` or ``neither``: what a move ``up`` or ``down`` means for the KPI
    (``KpiDef.higher_is_better``)."""
    info = KPI_BY_ID.get(kpi)
    if info is None or info.higher_is_better is None:
        return "neither"
    return "better" if (direction == "up") == info.higher_is_better else "worse"


def abnormal_for(alert: dict, windows: int | None = None) -> str:
    """How long an alert has been abnormal, ``windows`` (default its ``duration_windows``) times
    its window's length: ``3 h``."""
    window_s = max(float(alert["window_end_ts"]) - float(alert["window_start_ts"]), 1.0)
    return format_duration(int(windows or alert.get("duration_windows") or 1) * window_s)


def format_duration(seconds: float) -> str:
    """``45 min``, ``3 h``, ``1 h 30 min``, ``2 d 4 h``.

    >>> format_duration(2700), format_duration(5400), format_duration(3 * 86400 + 7200)
    ('45 min', '1 h 30 min', '3 d 2 h')
    """
    minutes = max(round(seconds / 60), 1)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours >= 48:
        days, hours = divmod(hours, 24)
        return f"{days} d" + (f" {hours} h" if hours else "")
    return f"{hours} h" + (f" {rest} min" if rest else "")


def detector_name(detector: object) -> str:
    """The detector in words (``rule:churn_rate`` is the KPI's target rule)."""
    name = str(detector or "")
    if name.startswith("rule:"):
        return "target rule"
    return {"sustained": "sustained shift", "early": "early look",
            "forecast": "forecast"}.get(name, clean_event_text(name.replace("_", " "), 40))


# -- slices and scope ----------------------------------------------------------------------

def where(segment: str, channel: str) -> str:
    """The slice in the digest's and ``pulse ask``'s words: ``all segments, channel ads``."""
    seg = "all segments" if segment == "all" else f"segment {clean_event_text(segment, 60)}"
    ch = "all channels" if channel == "all" else f"channel {clean_event_text(channel, 60)}"
    return f"{seg}, {ch}"


def _segment(segment: str) -> str:
    return SEGMENT_NAMES.get(segment) or f"segment {clean_event_text(segment, 60)}"


def _channel(channel: str) -> str:
    return CHANNEL_NAMES.get(channel) or f"channel {clean_event_text(channel, 60)}"


def slice_name(segment: str, channel: str) -> str:
    """``all segments and channels``, ``new grads``, ``paid search``, ``new grads on paid
    search``: a series' slice in plain words (escape it before Slack: it comes from events)."""
    if segment == "all" and channel == "all":
        return "all segments and channels"
    if channel == "all":
        return _segment(segment)
    if segment == "all":
        return _channel(channel)
    return f"{_segment(segment)} on {_channel(channel)}"


def slice_phrase(segment: str, channel: str) -> str:
    """The slice with its preposition: ``across all segments and channels``, ``for new
    grads``, ``on paid search``."""
    if segment == "all" and channel == "all":
        return "across all segments and channels"
    if channel == "all":
        return f"for {_segment(segment)}"
    if segment == "all":
        return f"on {_channel(channel)}"
    return f"for {_segment(segment)} on {_channel(channel)}"


@dataclass(frozen=True)
class Scope:
    """Where the change is: the snapshot's ``scope`` (alerting.lifecycle), or for older
    snapshots the lead's slice and its contribution analysis."""

    segment: str
    channel: str
    share: float | None  # of the overall change on this slice
    spread: bool  # the change is spread across slices alike

    @property
    def overall(self) -> bool:
        return self.segment == "all" and self.channel == "all"


def scope_of(alert: dict) -> Scope:
    """The scope an alert's headline names (overall unless the change is concentrated)."""
    given = alert.get("scope")
    if isinstance(given, dict) and given.get("segment") is not None:
        share = _f(given.get("share"))
        return Scope(str(given["segment"]), str(given.get("channel", "all")),
                     share if math.isfinite(share) else None, bool(given.get("spread")))
    segment, channel = str(alert.get("segment", "all")), str(alert.get("channel", "all"))
    if not (segment == "all" and channel == "all"):
        return Scope(segment, channel, None, False)
    rows = [c for c in alert.get("contributors") or [] if math.isfinite(_f(c.get("share")))]
    top = max(rows, key=lambda c: _f(c.get("share")), default=None)
    if top is not None and _f(top.get("share")) >= _CONCENTRATED_SHARE:
        return Scope(str(top.get("segment", "all")), str(top.get("channel", "all")),
                     _f(top.get("share")), False)
    return Scope("all", "all", None, bool(rows))


def _share_words(share: float) -> str:
    return "nearly all" if share >= 0.95 else f"{share * 100:.0f}%"


def scope_words(alert: dict) -> str:
    """Where the change is, in a sentence: ``Spread across all segments and channels alike``,
    ``82% of the overall drop is on paid search``."""
    scope = scope_of(alert)
    change = "rise" if alert.get("direction") == "up" else "drop"
    if scope.overall:
        if scope.spread:
            return "Spread across all segments and channels alike"
        return "All segments and channels"
    name = slice_name(scope.segment, scope.channel)
    if scope.share is not None and scope.share > 0:
        verb = "is among" if scope.channel == "all" else "is on"
        return f"{_share_words(scope.share).capitalize()} of the overall {change} {verb} {name}"
    return name[0].upper() + name[1:]


def headline_scope(alert: dict) -> str:
    """The scope as the headline names it: ``across all segments and channels``, ``on paid
    search``, or ``overall, mostly on paid search`` when the numbers are overall ones."""
    scope = scope_of(alert)
    lead = (str(alert.get("segment", "all")), str(alert.get("channel", "all")))
    if lead == (scope.segment, scope.channel):
        return slice_phrase(*lead)
    if lead == ("all", "all"):
        return f"overall, mostly {slice_phrase(scope.segment, scope.channel)}"
    return slice_phrase(*lead)   # the numbers shown are the slice's


def series_names(rows: list[dict], limit: int = 6) -> str:
    """``payments, payment_failure_rate (experienced/all)``: KPI plus slice when not the total,
    each series once, for one-line summaries of an alert's related series (console)."""
    names: list[str] = []
    for r in rows:
        name = str(r.get("kpi"))
        if not (r.get("segment") == "all" and r.get("channel") == "all"):
            name += f" ({r.get('segment')}/{r.get('channel')})"
        if name not in names:
            names.append(name)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return clean_event_text(", ".join(names[:limit]) + more, 300)


def series_label(kpi: str, segment: str, channel: str) -> str:
    """``Payment failure rate on organic``, ``Revenue overall``: a series in plain words."""
    if segment == "all" and channel == "all":
        return f"{kpi_label(kpi)} overall"
    return f"{kpi_label(kpi)} {slice_phrase(segment, channel)}"


# -- business impact -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    """How a KPI's departure turns into something countable.

    ``mode``: ``count`` (the value counts things), ``money``, ``share`` (a rate: the change
    times its sample ``n`` counts the rate's numerator), ``exposure`` (``n`` counts what the
    change affected). ``summed``: a per-window KPI, summed over the abnormal windows; else the
    latest point (a trailing or level KPI holds the earlier windows already)."""

    mode: str
    fewer: str
    more: str
    summed: bool = True


_RULES: dict[str, _Rule] = {
    "signups": _Rule("count", "{x} signups missing (unrecorded or lost)",
                     "{x} more signups than expected"),
    "scans": _Rule("count", "{x} fewer scans than expected", "{x} more scans than expected"),
    "payments": _Rule("count", "{x} payments missing", "{x} more payments than expected"),
    "paid_conversions": _Rule("count", "{x} fewer paid conversions than expected",
                              "{x} more paid conversions than expected"),
    "revenue": _Rule("money", "{x} of revenue short", "{x} more revenue than expected"),
    "payment_failure_rate": _Rule("share", "{x} fewer failed payments than usual",
                                  "{x} more failed payments than usual"),
    "conversion_rate": _Rule("share", "{x} fewer paid conversions than expected",
                             "{x} more paid conversions than expected"),
    "match_rate": _Rule("exposure", "{x} scans matched worse than usual",
                        "{x} scans matched better than usual"),
    "funnel_signup_to_scan": _Rule("share", "{x} fewer signups scanned within 24 h",
                                   "{x} more signups scanned within 24 h"),
    "funnel_signup_to_paid": _Rule("share", "{x} fewer signups paid within 14 days",
                                   "{x} more signups paid within 14 days"),
    "churn_rate": _Rule("share", "{x} fewer cancellations than usual in the last 30 days",
                        "{x} more cancellations than usual in the last 30 days", False),
    "daily_active_ratio": _Rule("share", "{x} fewer daily active users than usual",
                                "{x} more daily active users than usual", False),
    "mrr": _Rule("money", "{x} of monthly recurring revenue below expected",
                 "{x} of monthly recurring revenue above expected", False),
}
_PAYMENT_KPIS = frozenset({"payment_failure_rate", "payments", "paid_conversions",
                           "conversion_rate"})


def _amount(x: float, money: bool) -> str:
    if money:
        return f"≈ {format_value(x, 'revenue')}"
    return f"≈ {x:,.0f}" if x >= 0.5 else "< 1"


def _points(alert: dict, rule: _Rule) -> list[dict]:
    """The lead's points the impact adds up: every window since the alert began (its part in
    the alert's direction counts; the detector judged the run, not each point) and its own
    (latest) point."""
    ws = _f(alert.get("window_start_ts"))
    current = {"value": alert.get("value"), "expected": alert.get("expected"),
               "n": alert.get("n")}
    if not rule.summed:
        return [current]
    since = _f(alert.get("since_ts"))
    past = [p for p in alert.get("history") or []
            if since <= _f(p.get("window_start_ts")) < ws]
    return [*past, current]


def _lead_impact(alert: dict) -> str | None:
    kpi = str(alert.get("kpi"))
    rule = _RULES.get(kpi)
    if rule is None:
        return None
    up = alert.get("direction") == "up"
    lead_n = _f(alert.get("n"))
    total, windows = 0.0, 0
    for p in _points(alert, rule):
        value, expected = _f(p.get("value")), _f(p.get("expected"))
        n = _f(p.get("n"))
        n = n if math.isfinite(n) and n > 0 else lead_n   # history before it carried n
        diff = (value - expected) if up else (expected - value)
        if rule.mode == "exposure":
            part = n if diff > 0 else 0.0
        elif rule.mode == "share":
            part = max(diff, 0.0) * n
        else:
            part = max(diff, 0.0)
        if math.isfinite(part):
            total, windows = total + part, windows + 1
    if windows == 0:
        return None
    text = (rule.more if up else rule.fewer).format(x=_amount(total, rule.mode == "money"))
    if not (alert.get("segment") == "all" and alert.get("channel") == "all"):
        text += f" {slice_phrase(str(alert['segment']), str(alert['channel']))}"
    if rule.summed:
        window_s = max(_f(alert.get("window_end_ts")) - _f(alert.get("window_start_ts")), 1.0)
        span = (windows - 1) * window_s
        if alert.get("early") and alert.get("elapsed_minutes") is not None:
            text += f" in {format_duration(span + 60 * _f(alert['elapsed_minutes']))} so far"
        else:
            text += f" in {format_duration(span + window_s)}"
    return text


def _related_money(alert: dict) -> str | None:
    """Revenue short in the same windows, from a related revenue anomaly (overall first)."""
    rows = [r for r in alert.get("related") or []
            if r.get("kpi") == "revenue" and _f(r.get("expected")) > _f(r.get("value"))]
    if not rows or alert.get("kpi") == "revenue":
        return None
    r = min(rows, key=lambda r: (not (r.get("segment") == r.get("channel") == "all"),
                                 _f(r.get("value")) - _f(r.get("expected"))))
    text = f"{_amount(_f(r['expected']) - _f(r['value']), True)} of revenue at risk"
    if not (r.get("segment") == "all" and r.get("channel") == "all"):
        text += f" {slice_phrase(str(r['segment']), str(r['channel']))}"
    try:
        start = parse_utc(r.get("window_start"))
    except (TypeError, ValueError):
        return text
    if start == _f(alert.get("window_start_ts")):
        return text + " in the same window"
    return text + f" in the {clock_utc(start)} UTC window"


def impact_line(alert: dict) -> str:
    """What the incident costs, from the alert's own numbers only: ``≈ 23 more failed
    payments than usual in 3 h; ≈ $1,100 of revenue at risk in the same window``. Money only
    from a related revenue anomaly; without a countable KPI it says so rather than guess."""
    parts = [x for x in (_lead_impact(alert),
                         _related_money(alert) if alert.get("kpi") in _PAYMENT_KPIS else None)
             if x]
    if not parts:
        for r in alert.get("related") or []:   # a level KPI led: count from a related one
            rule = _RULES.get(str(r.get("kpi")))
            if rule is None or rule.mode not in ("count", "money"):
                continue
            up = r.get("direction") == "up"
            diff = _f(r.get("value")) - _f(r.get("expected"))
            if math.isfinite(diff) and (diff > 0) == up and diff != 0:
                text = (rule.more if up else rule.fewer).format(
                    x=_amount(abs(diff), rule.mode == "money"))
                name = series_label(str(r["kpi"]), str(r["segment"]), str(r["channel"]))
                parts.append(f"{text} in the latest window ({name})")
                break
    if not parts:
        return f"not countable from {kpi_label(str(alert.get('kpi')))} alone"
    return "; ".join(parts)


# -- the evidence --------------------------------------------------------------------------

def numbers_in(text: str) -> set[str]:
    """Numbers written in ``text``, normalised (no thousands separators or trailing zeros)."""
    found = set()
    for token in _NUMBER.findall(text):
        token = token.replace(",", "")
        if "." in token:
            token = token.rstrip("0").rstrip(".")
        found.add(token.lstrip("0") or "0")
    return found


def so_far(alert: dict) -> str:
    """`` in the first 25 min of the 10:00–11:00 UTC window (so far)`` for an early alert's
    running numbers, or ''."""
    if not alert.get("early") or alert.get("elapsed_minutes") is None:
        return ""
    minutes = f"{_f(alert['elapsed_minutes']):g} min"
    start, end = _f(alert["window_start_ts"]), _f(alert["window_end_ts"])
    span = _f(alert.get("span_start_ts") or start)
    if span == start:
        return (f" in the first {minutes} of the {clock_utc(start)}–{clock_utc(end)} UTC window "
                "(so far)")
    return (f" in the last {minutes}, {clock_utc(span)}–{clock_utc(_f(alert['as_of_ts']))} UTC "
            "(so far)")


def build_evidence(alert: dict) -> dict:
    """The facts of an alert snapshot (see ``alerting.lifecycle``), formatted, bounded, clean.

    Every string here is what the message shows (the same band, change and impact), so the
    template and the model talk about exactly the numbers on screen.
    """
    kpi = str(alert["kpi"])
    info = KPIS.get(kpi)
    value, expected = _f(alert.get("value")), _f(alert.get("expected"))
    digits = digits_for(alert)
    change, relative = format_change(value, expected, kpi, digits)
    window_s = max(_f(alert.get("window_end_ts")) - _f(alert.get("window_start_ts")), 1.0)
    windows = int(alert.get("duration_windows") or 1)
    direction = "up" if alert.get("direction") == "up" else "down"
    evidence: dict[str, Any] = {
        "kpi": clean_event_text(kpi, 60),
        "kpi_name": kpi_label(kpi),
        "definition": info.definition if info else "",
        "unit": clean_event_text(alert.get("unit", ""), 30),
        "target": info.target if info else "",
        "where": slice_name(str(alert["segment"]), str(alert["channel"])),
        "scope": scope_words(alert),
        "direction": direction,
        "direction_meaning": direction_meaning(kpi, direction),
        "severity": "critical" if alert.get("severity") == "critical" else "warning",
        "confidence": f"{_f(alert.get('score')) * 100:.0f}%",
        "value": format_value(value, kpi, digits),
        "expected": format_value(expected, kpi, digits),
        "so_far": so_far(alert).strip(),
        "normal_band": format_band(alert.get("lower"), alert.get("upper"), kpi, digits),
        "change": change,
        "relative_change": relative if relative != change else "",
        "impact": impact_line(alert),
        "since": human_utc(_f(alert.get("since_ts"))),
        "abnormal_windows": windows,
        "duration": format_duration(windows * window_s),
        "detector": detector_name(alert.get("detector")),
        "recent_values": [
            {"window_start": human_utc(_f(p.get("window_start_ts"))),
             "value": format_value(_f(p.get("value")), kpi),
             "expected": format_value(_f(p.get("expected")), kpi)}
            for p in (alert.get("history") or [])[-8:]
        ],
        "related_kpis_same_windows": [
            {"kpi": kpi_label(str(r["kpi"])),
             "where": slice_name(str(r["segment"]), str(r["channel"])),
             "direction": "up" if r.get("direction") == "up" else "down",
             "value": format_value(_f(r.get("value")), r["kpi"]),
             "expected": format_value(_f(r.get("expected")), r["kpi"]),
             "change": format_change(_f(r.get("value")), _f(r.get("expected")), r["kpi"])[1]}
            for r in (alert.get("related") or [])[:8]
        ],
        "top_contributors": [
            {"where": slice_name(str(c.get("segment", "all")), str(c.get("channel", "all"))),
             "value": format_value(_f(c.get("value")), kpi),
             "expected": format_value(_f(c.get("expected")), kpi),
             "share_of_change": f"{_f(c.get('share')) * 100:.0f}%"}
            for c in (alert.get("contributors") or [])[:3]
        ],
    }
    return evidence
