"""Questions into tool calls, without a model: KPI, slice, period, comparison and intent.

The parser only reads words; every number comes from the tools it calls. When a question
names a slice the data does not have (a plan, an unknown segment) or nothing Pulse tracks,
the plan carries a ``problem`` and no call that would answer for everyone instead.

>>> from assistant.store import KpiStore
>>> p = plan("Signups on referral compared to last week", KpiStore())
>>> p.intent, p.calls
('value', [('kpi_value', {'kpi': 'signups', 'channel': 'referral', 'period': 'this_week', \
'compare': 'previous_period'})])
>>> plan("What's driving our churn rate?", KpiStore()).calls
[('breakdown', {'kpi': 'churn_rate', 'by': 'both', 'compare': 'previous_period'})]
>>> plan("How's the weather?", KpiStore()).intent
'unknown'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from assistant.store import KpiStore
from assistant.vocab import closest_kpi, matches
from core.vocabulary import CHANNELS, SEGMENTS
from kpis.formulas import KPI_BY_ID

__all__ = ["Plan", "find_comparison", "find_period", "plan"]

Call = tuple[str, dict[str, Any]]


@dataclass
class Plan:
    """What the parser understood and the tool calls that answer it.

    ``problem``: why the question cannot be answered as asked (shown instead of numbers);
    ``suggestion``: the KPI it probably meant, when it named none.
    """

    intent: str
    calls: list[Call] = field(default_factory=list)
    kpis: list[str] = field(default_factory=list)
    segment: str = "all"
    channel: str = "all"
    problem: str | None = None
    suggestion: str | None = None
    prefixes: dict[int, str] = field(default_factory=dict)
    """Words to open the answer of call ``i`` with (``For comparison, …``)."""


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}})\b|\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b"
    rf"|\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:\s+(\d{{4}}))?\b")
_IN_MONTH = re.compile(rf"\b(?:in|during|for)\s+{_MONTH}(?:\s+(\d{{4}}))?\b")
_UNIT = r"(?:week|month|day|period)"
_COMPARISONS: tuple[tuple[re.Pattern[str], str, str | None], ...] = (
    (re.compile(r"\bsame day (?:last|a) week\b|\bsame time last week\b"), "week_earlier", None),
    (re.compile(r"\b(?:compared? (?:to|with)|vs\.?|versus|than|against|relative to|over)\s+"
                r"(?:the\s+)?(?:last|previous|prior|a)\s+week\b|\bweek[- ](?:over|on)[- ]week\b"
                r"|\bwow\b"), "previous_period", "this_week"),
    (re.compile(r"\b(?:compared? (?:to|with)|vs\.?|versus|than|against|relative to)\s+"
                r"yesterday\b|\bday[- ](?:over|on)[- ]day\b"), "previous_period", "today"),
    (re.compile(r"\b(?:compared? (?:to|with)|vs\.?|versus|than|against|relative to|over)\s+"
                r"(?:the\s+)?(?:last|previous|prior|a)\s+month\b|\bmonth[- ](?:over|on)[- ]month\b"
                r"|\bmom\b"), "previous_period", "this_month"),
    (re.compile(r"\b(?:compared? (?:to|with)|vs\.?|versus|against|relative to)\s+"
                r"(?:the\s+|our\s+|its\s+)?(?:target|goal|benchmark)s?\b|\bon track\b"),
     "target", None),
    (re.compile(rf"\b(?:compared? (?:to|with)|vs\.?|versus)\s+(?:the\s+)?(?:previous|prior|last)"
                rf"\s+{_UNIT}\b|\bchanged?\b|\bchanges\b"), "previous_period", None),
)
_PERIODS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:right now|at the moment|last hour|this hour|past hour|latest hour)\b"),
     "last_window"),
    (re.compile(r"\btoday\b"), "today"),
    (re.compile(r"\byesterday\b"), "yesterday"),
    (re.compile(r"\bthis week\b|\bweek to date\b|\bwtd\b"), "this_week"),
    (re.compile(r"\b(?:last|past|previous|trailing) (?:7|seven) days\b|\bpast week\b"
                r"|\blast 7d\b"), "last_7_days"),
    (re.compile(r"\b(?:last|past|previous|trailing) (?:30|thirty) days\b|\bpast month\b"),
     "last_30_days"),
    (re.compile(r"\blast week\b|\bprevious week\b"), "last_week"),
    (re.compile(r"\bthis month\b|\bmonth to date\b|\bmtd\b"), "this_month"),
    (re.compile(r"\blast month\b|\bprevious month\b"), "last_month"),
)
_LAST_N = re.compile(r"\b(?:last|past|previous|trailing) (\d{1,3}) days\b")
_WHY = re.compile(r"\bwhy\b|\bdriv(?:ing|es|en|er|ers)\b|\bbehind\b|\bcaus(?:e|ed|es|ing)\b"
                  r"|\bexplain\b|\breasons?\b|\bcontribut")
_INVEST = re.compile(r"\binvest|\bspend\b|\bbudget|\ballocat|\bdouble down\b|\bput (?:more )?money"
                     r"|\bprioriti|\bfocus\b|\bworth\b|\bbest\b|\bscale\b")
_ALERTS = re.compile(r"\balerts?\b|\bincidents?\b|\banything (?:wrong|broken)\b"
                     r"|\bwhat'?s (?:wrong|broken)\b|\bon fire\b|\bopen issues\b|\banomal")
_TARGETS = re.compile(r"\btargets?\b|\bgoals?\b|\bon track\b|\bbenchmarks?\b")
_TREND = re.compile(r"\btrend|\bover time\b|\btrajector|\bday by day\b|\bdaily\b|\bevolv")
_BREAKDOWN = re.compile(r"\b(?:by|per|each|every|across) (?:segments?|channels?)\b"
                        r"|\bbreak ?(?:it )?down\b|\bbreakdown\b|\bsplit\b")
_RANK = re.compile(r"\b(?:which|what) (?:segments?|channels?)\b|\b(?:best|worst|highest|lowest"
                   r"|top|bottom|most|least|rank)")
_LOW = re.compile(r"\b(?:worst|lowest|bottom|least)\b")
_CATALOGUE = re.compile(r"\bwhat can (?:you|i|pulse)\b|\b(?:which|what) (?:kpis|metrics)\b"
                        r"|^\s*help\b")
_SLICE_ASK = re.compile(
    r"\b(?:for|among|from|on|in|of|by)\s+(?:the\s+|our\s+)?([a-z][a-z_-]+)\s+"
    r"(?:users|customers|subscribers|segment|channel|accounts|people|plan)\b")
_NOT_SLICES = frozenset({"all", "our", "the", "paying", "active", "these", "those", "every",
                         "each", "total", "overall", "existing", "current", "more", "most",
                         "which", "what", "new", "this", "that", "any", "other", "top", "best",
                         "worst", "same"})


def _year_for(month: int, day: int, now: float) -> int:
    """The most recent year in which ``month``/``day`` is not after ``now``."""
    ref = datetime.fromtimestamp(now, UTC)
    return ref.year if (month, day) <= (ref.month, ref.day) else ref.year - 1


def _dates(q: str, now: float | None) -> list[str]:
    out = []
    for m in _DATE.finditer(q):
        if m.group(1):
            out.append(m.group(1))
            continue
        if m.group(2):
            mon, day, year = m.group(2), int(m.group(3)), m.group(4)
        else:
            day, mon, year = int(m.group(5)), m.group(6), m.group(7)
        month = _MONTHS.index(mon[:3]) + 1
        if not 1 <= day <= 31:
            continue
        y = int(year) if year else _year_for(month, day, now) if now else 2000
        out.append(f"{y:04d}-{month:02d}-{day:02d}")
    return out


def find_period(question: str, now: float | None) -> dict[str, Any]:
    """The period a question names as tool arguments (``{}`` when it names none).

    >>> find_period("signups between Feb 2 and Feb 5", 1770811200.0)
    {'period': 'range', 'start': '2026-02-02', 'end': '2026-02-05'}
    >>> find_period("churn in March 2025", 1770811200.0)
    {'period': 'range', 'start': '2025-03-01', 'end': '2025-03-31'}
    >>> find_period("MRR over the last 14 days", None)
    {'period': 'last_n_days', 'days': 14}
    """
    q = question.lower()
    dates = _dates(q, now)
    if len(dates) >= 2:
        return {"period": "range", "start": min(dates[:2]), "end": max(dates[:2])}
    if len(dates) == 1:
        if re.search(r"\bsince\b|\bfrom\b|\bafter\b", q):
            return {"period": "range", "start": dates[0]}
        return {"period": "range", "start": dates[0], "end": dates[0]}
    m = _IN_MONTH.search(q)
    if m:
        month = _MONTHS.index(m.group(1)[:3]) + 1
        year = int(m.group(2)) if m.group(2) else _year_for(month, 1, now) if now else 2000
        last = (datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC).timestamp()
                - 86_400)
        end = datetime.fromtimestamp(last, UTC).date().isoformat()
        return {"period": "range", "start": f"{year:04d}-{month:02d}-01", "end": end}
    n = _LAST_N.search(q)
    if n and int(n.group(1)) not in (7, 30):
        return {"period": "last_n_days", "days": int(n.group(1))}
    for pattern, name in _PERIODS:
        if pattern.search(q):
            return {"period": name}
    return {}


def find_comparison(question: str) -> tuple[str | None, str | None, str]:
    """``(comparison, default period, question without the comparison's words)``."""
    q = question.lower()
    for pattern, how, period in _COMPARISONS:
        m = pattern.search(q)
        if m:
            return how, period, q[:m.start()] + " " + q[m.end():]
    return None, None, q


def _unknown_slice(question: str, spans: list[tuple[int, int]]) -> str | None:
    q = question.lower()
    for m in _SLICE_ASK.finditer(q):
        word, start = m.group(1), m.start(1)
        if word in _NOT_SLICES or any(a <= start < b for a, b in spans):
            continue
        return word
    return None


def plan(question: str, store: KpiStore) -> Plan:
    """The tool calls that answer ``question`` from ``store`` (:mod:`assistant.tools`)."""
    extra = [(kind, name, name.replace("_", " ")) for kind, names in
             (("segment", store.segments()), ("channel", store.channels()))
             for name in names if name not in SEGMENTS + CHANNELS]
    found = matches(question, extra)
    kpis = list(dict.fromkeys(i for _, _, k, i in found if k == "kpi"))
    segments = list(dict.fromkeys(i for _, _, k, i in found if k == "segment"))
    channels = list(dict.fromkeys(i for _, _, k, i in found if k == "channel"))
    p = Plan("value", kpis=kpis, segment=segments[0] if segments else "all",
             channel=channels[0] if channels else "all")
    q = question.lower()
    if any(k == "plan" for _, _, k, _ in found):
        p.intent, p.problem = "no_slice", "plan"
        return p
    unknown = _unknown_slice(question, [(a, b) for a, b, _, _ in found])
    if unknown is not None:
        p.intent, p.problem = "no_slice", f"slice:{unknown}"
        return p
    how, compare_period, rest = find_comparison(question)
    period = find_period(rest, store.now)
    if _CATALOGUE.search(q) and not kpis:
        p.intent, p.calls = "catalogue", [("kpi_catalogue", {})]
        return p
    if _ALERTS.search(q):
        p.intent = "alerts"
        p.calls = [("open_alerts", {"kpi": k}) for k in kpis[:3]] or [("open_alerts", {})]
        return p
    if re.search(r"\bchannels?\b", q) and (_INVEST.search(q) or not kpis) and not segments:
        p.intent, p.calls = "channels", [("compare_channels", period)]
        return p
    if not kpis:
        if _TARGETS.search(q):
            p.intent, p.calls = "targets", [("targets", {})]
            return p
        p.intent, p.suggestion = "unknown", closest_kpi(question)
        return p
    if len(segments) + len(channels) > 1:
        p.intent, p.problem = "no_slice", "cross"
        return p
    where = {"segment": p.segment} if p.segment != "all" else (
        {"channel": p.channel} if p.channel != "all" else {})
    if not period and (compare_period or how == "week_earlier"):
        period = {"period": compare_period or "today"}
    if _WHY.search(q):
        p.intent = "why"
        p.calls = [("breakdown", {"kpi": k, "by": "both", **period,
                                  "compare": "week_earlier" if how == "week_earlier"
                                  else "previous_period"}) for k in kpis[:2]]
        return p
    dim = "segment" if re.search(r"\bsegments?\b", q) else (
        "channel" if re.search(r"\bchannels?\b", q) else None)
    if (_BREAKDOWN.search(q) or (_RANK.search(q) and dim)) and not where:
        p.intent = "rank" if _RANK.search(q) else "breakdown"
        p.calls = [("breakdown", {"kpi": k, "by": dim or "both", **period, "compare": "none",
                                  "sort": "value"}) for k in kpis[:2]]
        if _LOW.search(q):
            p.intent = "rank_low"
        return p
    if _TREND.search(q):
        p.intent = "trend"
        p.calls = [("kpi_trend", {"kpi": k, **where, **(period or {"period": "this_month"})})
                   for k in kpis[:2]]
        return p
    if how is None and _TARGETS.search(q):
        how = "target"
    calls: list[Call] = []
    for k in kpis[:4]:
        args: dict[str, Any] = {"kpi": k, **where, **period}
        if how is not None:
            args["compare"] = how
        if p.segment != "all" and not KPI_BY_ID[k].per_segment:
            p.intent = "no_segment"
            calls.append(("kpi_value", args))
            if k == "ltv_cac":
                calls.append(("kpi_value", {**args, "kpi": "ltv"}))
            p.prefixes[len(calls)] = "For comparison, across all segments and channels, "
            calls.append(("kpi_value", {key: v for key, v in args.items() if key != "segment"}))
            continue
        calls.append(("kpi_value", args))
    p.calls = calls
    return p
