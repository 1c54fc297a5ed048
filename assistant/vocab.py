"""The words people use for KPIs and slices, mapped to Pulse's ids: written once, here.

Matching is on whole words, longest phrase first, so "LTV:CAC" is not "LTV" and "paid search"
is a channel while "paid conversions" is a KPI:

>>> find_kpis("What's our churn rate?"), find_kpis("LTV:CAC and MRR growth please")
(['churn_rate'], ['ltv_cac', 'mrr_growth'])
>>> find_slices("Signups from new grads on paid search")
('new_grad', 'paid_search')
>>> closest_kpi("what about churm?")
'churn_rate'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from alerting.evidence import CHANNEL_NAMES, SEGMENT_NAMES, kpi_label, slice_name
from core.vocabulary import CHANNELS, SEGMENTS
from kpis.formulas import KPI_BY_ID

__all__ = ["CHANNEL_WORDS", "KPI_WORDS", "PLAN_WORDS", "SEGMENT_WORDS", "closest_kpi",
           "find_kpis", "find_slices", "kpi_names", "known_names", "matches", "slice_label"]

KPI_WORDS: dict[str, tuple[str, ...]] = {
    "churn_rate": ("churn rate", "churn", "churning", "cancellation rate", "cancellations"),
    "mrr_growth": ("mrr growth", "revenue growth", "growth of mrr"),
    "mrr": ("mrr", "monthly recurring revenue", "recurring revenue"),
    "arpu": ("arpu", "revenue per user", "average revenue per user", "average revenue"),
    "ltv_cac": ("ltv:cac", "ltv/cac", "ltv to cac", "ltv cac", "ltv-to-cac", "ltv-cac",
                "ltv:cac ratio"),
    "ltv": ("ltv", "lifetime value", "customer lifetime value", "clv"),
    "cac": ("cac", "acquisition cost", "customer acquisition cost", "cost per acquisition",
            "cost to acquire", "cost per customer"),
    "conversion_rate": ("conversion rate", "conversion", "converting",
                        "free to paid", "free-to-paid"),
    "paid_conversions": ("paid conversions", "new paying", "new customers", "new subscribers",
                         "conversions"),
    "payment_failure_rate": ("payment failure rate", "payment failure", "payment failures",
                             "failure rate", "failed payments", "failed payment", "declines"),
    "payments": ("payments",),
    "revenue": ("revenue", "sales", "income"),
    "signups": ("signups", "sign-ups", "sign ups", "signup", "sign-up", "registrations",
                "new users"),
    "scans": ("scans", "scan volume", "resume scans"),
    "match_rate": ("match rate", "match score", "matching", "match rates"),
    "daily_active_ratio": ("daily active ratio", "daily active", "dau", "active usage",
                           "stickiness"),
    "viral_coefficient": ("viral coefficient", "viral", "virality", "k-factor", "k factor"),
    "funnel_signup_to_scan": ("signup to scan", "signup to first scan", "first scan"),
    "funnel_scan_to_paid": ("scan to paid",),
    "funnel_signup_to_paid": ("signup to paid",),
    "retention_d7": ("day-7 retention", "day 7 retention", "d7 retention", "7-day retention",
                     "retention", "week-one retention"),
    "retention_d30": ("day-30 retention", "day 30 retention", "d30 retention",
                      "30-day retention"),
    "paid_retention_m1": ("paid retention", "month-1 retention", "month 1 retention"),
}
"""Phrases for each KPI id (lower case). Every KPI's own title counts too."""

SEGMENT_WORDS: dict[str, tuple[str, ...]] = {
    "career_changer": ("career changers", "career changer", "career-changers",
                       "career-changer", "career switchers", "changers"),
    "new_grad": ("new grads", "new grad", "new graduates", "recent grads", "graduates",
                 "grads", "students"),
    "experienced": ("experienced hires", "experienced", "experienced professionals",
                    "mid-career"),
    "executive": ("executives", "executive", "execs", "exec"),
}
CHANNEL_WORDS: dict[str, tuple[str, ...]] = {
    "organic": ("organic", "seo", "organic search"),
    "paid_search": ("paid search", "paid-search", "search ads", "google ads", "ppc", "sem",
                    "ads", "paid ads"),
    "referral": ("referral", "referrals", "referred", "referral channel", "word of mouth"),
    "social": ("social", "social media"),
}
PLAN_WORDS: tuple[str, ...] = ("annual plan", "monthly plan", "annual plans", "monthly plans",
                               "annual subscribers", "monthly subscribers", "plan", "plans",
                               "premium", "pro plan", "tier", "enterprise")
"""Words asking for a split by plan, which Pulse's KPI series do not have."""


def _phrases() -> list[tuple[str, str, str]]:
    out = [("kpi", k, p) for k, ps in KPI_WORDS.items() for p in ps]
    out += [("kpi", k.id, k.title.lower()) for k in KPI_BY_ID.values()]
    out += [("segment", s, p) for s, ps in SEGMENT_WORDS.items() for p in ps]
    out += [("segment", s, s.replace("_", " ")) for s in SEGMENTS]
    out += [("channel", c, p) for c, ps in CHANNEL_WORDS.items() for p in ps]
    out += [("channel", c, c.replace("_", " ")) for c in CHANNELS]
    out += [("plan", "plan", p) for p in PLAN_WORDS]
    return out


_PHRASES = _phrases()


def matches(question: str, extra: Iterable[tuple[str, str, str]] = ()
            ) -> list[tuple[int, int, str, str]]:
    """``(start, end, kind, id)`` of the phrases in ``question``: whole words, longest first,
    never overlapping, in reading order. ``extra`` adds ``(kind, id, phrase)`` triples (slice
    names found in the data)."""
    q = question.lower()
    hits: list[tuple[int, int, str, str]] = []
    for kind, ident, phrase in [*_PHRASES, *extra]:
        for m in re.finditer(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", q):
            hits.append((m.start(), m.end(), kind, ident))
    hits.sort(key=lambda h: (-(h[1] - h[0]), h[0]))
    taken: list[tuple[int, int, str, str]] = []
    for h in hits:
        if all(h[1] <= t[0] or h[0] >= t[1] for t in taken):
            taken.append(h)
    return sorted(taken)


def find_kpis(question: str) -> list[str]:
    """KPI ids the question names, in reading order, each once.

    >>> find_kpis("ltv and cac"), find_kpis("Signups on referral"), find_kpis("weather?")
    (['ltv', 'cac'], ['signups'], [])
    """
    out: list[str] = []
    for _, _, kind, ident in matches(question):
        if kind == "kpi" and ident not in out:
            out.append(ident)
    return out


def find_slices(question: str) -> tuple[str, str]:
    """``(segment, channel)`` the question names (``all`` when none); the first of each."""
    segment = channel = "all"
    for _, _, kind, ident in matches(question):
        if kind == "segment" and segment == "all":
            segment = ident
        elif kind == "channel" and channel == "all":
            channel = ident
    return segment, channel


def closest_kpi(question: str) -> str | None:
    """The KPI whose words come closest to a word or pair of words of the question (a typo,
    a near name), or None when nothing is close."""
    words = re.findall(r"[a-z0-9:/-]+", question.lower())
    grams = words + [" ".join(p) for p in zip(words, words[1:], strict=False)]
    names = {p: k for _, k, p in (x for x in _PHRASES if x[0] == "kpi") if len(p) > 3}
    best: tuple[float, str] | None = None
    for g in grams:
        if len(g) < 4:
            continue
        for hit in difflib.get_close_matches(g, names, n=1, cutoff=0.75):
            score = difflib.SequenceMatcher(None, g, hit).ratio()
            if best is None or score > best[0]:
                best = (score, names[hit])
    return best[1] if best else None


def slice_label(segment: str, channel: str) -> str:
    """The slice in plain words (``new grads``, ``paid search``), as alerts say it."""
    return slice_name(segment, channel)


def known_names() -> str:
    """The segments and channels in words, for "the data has …" sentences."""
    segs = ", ".join(SEGMENT_NAMES[s] for s in SEGMENTS)
    chans = ", ".join(CHANNEL_NAMES[c] for c in CHANNELS)
    return f"segments {segs}; channels {chans}"


def kpi_names(kpis: Iterable[str]) -> str:
    """``Signups, Churn rate and MRR``: labels, never ids."""
    labels = [kpi_label(k) for k in kpis]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
