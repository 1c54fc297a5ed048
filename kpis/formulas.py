"""The KPI catalogue of docs/kpis.md and the formulas behind it, each written once.

:data:`KPIS` holds one :class:`KpiDef` per KPI (same id, unit and horizon as the doc);
:func:`evaluate` turns the aggregates of one series in one window (:class:`KpiInputs`) into the
KPI values that are defined there. The small pure functions (:func:`ratio`, :func:`growth`,
:func:`ltv`, ...) are the formulas themselves; the engine only counts.

>>> x = KpiInputs(signups=3, conversions=1, payments=1, revenue=39.0, mrr=39.0, subs=1)
>>> values = evaluate(x)
>>> values["conversion_rate"], values["mrr"]
((0.333..., 3.0), (39.0, 1.0))
>>> "match_rate" in values  # no scans: undefined, so absent
False

The signup funnel and the weekly cohorts are counted per user by :class:`kpis.funnel.FunnelTracker`
and :class:`kpis.cohorts.CohortTracker`; the funnel KPIs are evaluated per window like the others
(from the ``funnel_*`` inputs), the cohort KPIs (:data:`COHORT_KPIS`) once per cohort with
:func:`cohort_value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "COHORT_KPIS",
    "DAY_S",
    "FUNNEL_INPUTS",
    "FUNNEL_PAID_S",
    "FUNNEL_SCAN_S",
    "KPIS",
    "KPI_BY_ID",
    "LIFETIME_CAP_MONTHS",
    "TRAILING_ACTIVE_S",
    "TRAILING_DAILY_S",
    "KpiDef",
    "KpiInputs",
    "cohort_value",
    "evaluate",
    "growth",
    "ltv",
    "ltv_cac",
    "mean",
    "monthly_value",
    "ratio",
    "subscription_days",
]

DAY_S = 86_400.0
TRAILING_ACTIVE_S = 30 * DAY_S
"""Horizon of "trailing 30 d" (churn, cac, viral coefficient, monthly active users)."""
TRAILING_DAILY_S = DAY_S
"""Horizon of "trailing 24 h" (daily active users)."""
LIFETIME_CAP_MONTHS = 36
"""LTV assumes a customer stays at most this many months (churn floored at 1/36)."""
FUNNEL_SCAN_S = DAY_S
"""A signup "scanned" when its first scan came less than this after the signup (24 h)."""
FUNNEL_PAID_S = 14 * DAY_S
"""A signup "paid" (converted) when its first succeeded payment came less than this after the
signup (14 d): the funnel's last step, and who counts in ``paid_retention_m1``."""


@dataclass(frozen=True)
class KpiDef:
    """One KPI of docs/kpis.md.

    Parameters
    ----------
    id
        Stable name, as in the doc and on the ``kpis`` topic.
    title, unit, horizon, doc
        Human text for dashboards and alerts.
    higher_is_better
        Direction of a good change (None: neither).
    target
        Business target from seeds 000, when there is one.
    per_segment
        False when the KPI has no per-segment series (spend has no segment).
    warmup_s
        Event time a stream must have covered before the value means what it says: a trailing
        30-day KPI computed over 5 days of stream, or an MRR that has not yet seen every
        subscription renew, is still filling up. Snapshots before that are marked incomplete.
    early
        Whether the KPI is also judged on an open window's running counts (``kpis`` documents
        with ``as_of``): a count or a share of the window's own events, whose value so far says
        something before the window closes (not a level or a trailing KPI).
    """

    id: str
    title: str
    unit: str
    horizon: str
    doc: str
    higher_is_better: bool | None = True
    target: float | None = None
    per_segment: bool = True
    warmup_s: float = 0.0
    early: bool = False


KPIS: tuple[KpiDef, ...] = (
    KpiDef("signups", "Signups", "users", "window", "Count of signup events.", early=True),
    KpiDef("scans", "Scans", "scans", "window", "Count of scan events.", early=True),
    KpiDef("match_rate", "Match rate", "ratio 0-1", "window",
           "Mean match_score of the window's scans; undefined without scans.", early=True),
    KpiDef("paid_conversions", "Paid conversions", "users", "window",
           "Count of succeeded first payments (free-to-paid conversions)."),
    KpiDef("conversion_rate", "Conversion rate", "ratio", "window",
           "paid_conversions / signups; undefined without signups.", target=0.15),
    KpiDef("payments", "Payments", "payments", "window", "Count of succeeded payments.",
           early=True),
    KpiDef("revenue", "Revenue", "USD", "window", "Sum of amount of succeeded payments."),
    KpiDef("payment_failure_rate", "Payment failure rate", "ratio 0-1", "window",
           "failed / (failed + succeeded) payment attempts; undefined without attempts.",
           higher_is_better=False, early=True),
    KpiDef("mrr", "MRR", "USD / month", "level at window end",
           "Sum of the monthly value of active subscriptions at window end "
           "(annual plans count amount / 12).", warmup_s=TRAILING_ACTIVE_S),
    KpiDef("mrr_growth", "MRR growth", "ratio per window", "window",
           "(mrr_end - mrr_start) / mrr_start; undefined when mrr_start = 0.",
           warmup_s=TRAILING_ACTIVE_S),
    KpiDef("arpu", "Revenue per user", "USD / user / month", "level at window end",
           "mrr / users active (scan or activity) in the trailing 30 d.", target=15.0,
           warmup_s=TRAILING_ACTIVE_S),
    KpiDef("churn_rate", "Churn rate", "ratio 0-1 per month", "trailing 30 d",
           "Cancellations in the trailing 30 d / (subscriptions active at window end + those "
           "cancellations): the share of the last 30 d's subscriptions that cancelled.",
           higher_is_better=False, target=0.05, warmup_s=TRAILING_ACTIVE_S),
    KpiDef("cac", "CAC", "USD / paying user", "trailing 30 d",
           "Marketing spend / paid conversions over the trailing 30 d; no per-segment series.",
           higher_is_better=False, target=50.0, per_segment=False, warmup_s=TRAILING_ACTIVE_S),
    KpiDef("ltv", "LTV", "USD / paying user", "level at window end",
           "(mrr / active subscriptions) / max(churn_rate, 1/36).", target=300.0,
           warmup_s=TRAILING_ACTIVE_S),
    KpiDef("ltv_cac", "LTV:CAC", "ratio", "as its parts",
           "ltv / cac (healthy >= 3); no per-segment series.", per_segment=False, target=3.0,
           warmup_s=TRAILING_ACTIVE_S),
    KpiDef("daily_active_ratio", "Daily active ratio", "ratio 0-1", "trailing 24 h / 30 d",
           "Users active in the trailing 24 h / users active in the trailing 30 d.", target=0.40,
           warmup_s=TRAILING_ACTIVE_S),
    KpiDef("viral_coefficient", "Viral coefficient", "ratio", "trailing 30 d",
           "Referred signups / distinct referrers over the trailing 30 d.", target=1.5,
           warmup_s=TRAILING_ACTIVE_S),
    KpiDef("funnel_signup_to_scan", "Signup to first scan", "ratio 0-1", "24 h after signup",
           "Share of the signups of the window that ended 24 h earlier whose first scan came "
           "within 24 h of their signup.", warmup_s=FUNNEL_SCAN_S),
    KpiDef("funnel_scan_to_paid", "Scan to paid", "ratio 0-1", "14 d after signup",
           "Of the signups of the window that ended 14 d earlier that scanned within 24 h, the "
           "share that also paid (first succeeded payment) within 14 d of signup.",
           warmup_s=FUNNEL_PAID_S),
    KpiDef("funnel_signup_to_paid", "Signup to paid", "ratio 0-1", "14 d after signup",
           "Share of the signups of the window that ended 14 d earlier that paid (first "
           "succeeded payment) within 14 d of signup.", warmup_s=FUNNEL_PAID_S),
)
COHORT_KPIS: tuple[KpiDef, ...] = (
    KpiDef("retention_d7", "Day-7 retention", "ratio 0-1", "day 7 after signup",
           "Share of a weekly signup cohort active (scan or activity) on day 7 after signup, "
           "in [signup + 7 d, signup + 8 d)."),
    KpiDef("retention_d30", "Day-30 retention", "ratio 0-1", "day 30 after signup",
           "Share of a weekly signup cohort active (scan or activity) on day 30 after signup, "
           "in [signup + 30 d, signup + 31 d)."),
    KpiDef("paid_retention_m1", "Paid retention, month 1", "ratio 0-1",
           "35 d after the first payment",
           "Of a weekly cohort's users who paid within 14 d of signup, the share whose "
           "subscription is still active 35 d (a monthly renewal and its retries) after the "
           "first payment: no cancel before then, and renewed unless the plan is annual."),
)
"""KPIs of weekly signup cohorts (:class:`kpis.cohorts.CohortTracker`): one value per cohort
once its horizon has passed, not one per window, so :func:`evaluate` leaves them out."""
KPI_BY_ID: dict[str, KpiDef] = {k.id: k for k in KPIS + COHORT_KPIS}


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or None when the denominator is not positive (the KPI is undefined).

    >>> ratio(1, 3)
    0.333...
    >>> ratio(5, 0) is None
    True
    """
    return num / den if den > 0 else None


def mean(total: float, n: float) -> float | None:
    """Mean of ``n`` values summing to ``total``; None without values.

    >>> mean(0.5 + 0.7 + 0.9, 3)
    0.7
    """
    return ratio(total, n)


def growth(start: float, end: float) -> float | None:
    """Relative change ``(end - start) / start``; None when ``start`` is 0.

    >>> growth(100.0, 110.0)
    0.1
    >>> growth(0.0, 39.0) is None
    True
    """
    return (end - start) / start if start else None


def monthly_value(plan: str, amount: float) -> float:
    """Monthly value of a subscription charged ``amount`` on ``plan``.

    >>> monthly_value("monthly", 39.0), monthly_value("annual", 348.0)
    (39.0, 29.0)
    """
    return amount / 12 if plan == "annual" else amount


def subscription_days(plan: str) -> int:
    """Days a subscription stays active after its last succeeded payment.

    >>> subscription_days("monthly"), subscription_days("annual")
    (35, 370)
    """
    return 370 if plan == "annual" else 35


def ltv(mrr: float, active_subs: float, churn: float | None) -> float | None:
    """Lifetime value: revenue per paying user per month times expected lifetime in months.

    Lifetime is ``1 / churn`` months, capped at :data:`LIFETIME_CAP_MONTHS`. None without active
    subscriptions, or while churn is itself undefined.

    >>> ltv(300.0, 10, 0.10)      # 30 USD / month for 10 months
    300.0
    >>> ltv(300.0, 10, 0.0)       # no churn: capped at 36 months
    1080.0
    >>> ltv(300.0, 0, 0.1) is None, ltv(300.0, 10, None) is None
    (True, True)
    """
    per_user = ratio(mrr, active_subs)
    if per_user is None or churn is None:
        return None
    return per_user / max(churn, 1 / LIFETIME_CAP_MONTHS)


def ltv_cac(ltv_value: float | None, cac_value: float | None) -> float | None:
    """LTV:CAC; None when either part is undefined or CAC is 0.

    >>> ltv_cac(300.0, 50.0)
    6.0
    >>> ltv_cac(300.0, 0.0) is None, ltv_cac(None, 50.0) is None
    (True, True)
    """
    if ltv_value is None or not cac_value:
        return None
    return ltv_value / cac_value


def cohort_value(numerator: int, denominator: int) -> float | None:
    """Value of a cohort KPI from the summed counts of :class:`kpis.cohorts.CohortTracker`.

    >>> cohort_value(3, 12)
    0.25
    >>> cohort_value(0, 0) is None     # no member (no converted user, for paid retention)
    True
    """
    return ratio(numerator, denominator)


class KpiInputs(NamedTuple):
    """Aggregates of one series (segment, channel) for one closed window.

    Window counts cover ``[window_start, window_end)``; ``mrr``/``subs`` are levels at
    ``window_end``, ``mrr_start``/``subs_start`` at ``window_start``; ``*_30d`` cover the
    trailing 30 d. ``funnel_*_24h`` count the signups of the window that ended 24 h before
    ``window_end``, ``funnel_*_14d`` those of the window that ended 14 d before (see
    :data:`FUNNEL_INPUTS`).
    """

    signups: int = 0
    scans: int = 0
    match_sum: float = 0.0
    conversions: int = 0
    payments: int = 0
    revenue: float = 0.0
    failed: int = 0
    mrr: float = 0.0
    subs: int = 0
    mrr_start: float = 0.0
    subs_start: int = 0
    mau: int = 0
    dau: int = 0
    cancels_30d: int = 0
    spend_30d: float = 0.0
    conversions_30d: int = 0
    referred_30d: int = 0
    referrers_30d: int = 0
    funnel_signups_24h: int = 0
    funnel_scanned_24h: int = 0
    funnel_signups_14d: int = 0
    funnel_scanned_14d: int = 0
    funnel_paid_scanned_14d: int = 0
    funnel_paid_14d: int = 0


FUNNEL_INPUTS: tuple[str, ...] = (
    "funnel_signups_24h", "funnel_scanned_24h", "funnel_signups_14d", "funnel_scanned_14d",
    "funnel_paid_scanned_14d", "funnel_paid_14d")
"""The :class:`KpiInputs` fields counted by :class:`kpis.funnel.FunnelTracker`, in the order of
its rows: signups (reported 24 h late), those of them that scanned within 24 h; signups
(reported 14 d late), those that scanned within 24 h, those that scanned and paid within 14 d,
those that paid within 14 d."""


def evaluate(x: KpiInputs, window_only: bool = False) -> dict[str, tuple[float, float]]:
    """``{kpi_id: (value, n)}`` for every KPI defined on ``x``, in :data:`KPIS` order.
    ``window_only``: only the KPIs of the window's own events (the 8 of aggregation
    ``"window"`` that come first, which hold every early KPI): an open window's 12 running
    ticks need no trailing state.

    ``n`` is the sample size behind the value: the events counted, or the ratio's denominator.
    Undefined KPIs are left out. Per-segment filtering (``KpiDef.per_segment``) is the caller's.

    >>> x = KpiInputs(mrr=68.0, subs=2, mau=4, dau=1, cancels_30d=1, spend_30d=100.0,
    ...               conversions_30d=4)
    >>> v = evaluate(x)
    >>> v["arpu"], v["churn_rate"], v["cac"], v["ltv"], v["ltv_cac"]
    ((17.0, 4.0), (0.333..., 3.0), (25.0, 4.0), (102.0..., 2.0), (4.08..., 4.0))
    >>> v["daily_active_ratio"], "viral_coefficient" in v
    ((0.25, 4.0), False)
    >>> v = evaluate(KpiInputs(funnel_signups_24h=4, funnel_scanned_24h=3))
    >>> v["funnel_signup_to_scan"], "funnel_signup_to_paid" in v
    ((0.75, 4.0), False)
    """
    attempts = x.payments + x.failed
    values: dict[str, tuple[float | None, float]] = {
        "signups": (x.signups, x.signups),
        "scans": (x.scans, x.scans),
        "match_rate": (mean(x.match_sum, x.scans), x.scans),
        "paid_conversions": (x.conversions, x.conversions),
        "conversion_rate": (ratio(x.conversions, x.signups), x.signups),
        "payments": (x.payments, x.payments),
        "revenue": (x.revenue, x.payments),
        "payment_failure_rate": (ratio(x.failed, attempts), attempts),
    }
    if not window_only:
        values.update(_trailing_values(x))
    return {k: (float(v), float(n)) for k, (v, n) in values.items() if v is not None}


def _trailing_values(x: KpiInputs) -> dict[str, tuple[float | None, float]]:
    """The KPIs of :func:`evaluate` that need more than the window's own events."""
    # the subscriptions of the last 30 d: those still active at window end and those cancelled
    subs_30d = x.subs + x.cancels_30d
    churn = ratio(x.cancels_30d, subs_30d)
    cac = ratio(x.spend_30d, x.conversions_30d)
    life = ltv(x.mrr, x.subs, churn)
    return {
        "mrr": (x.mrr, x.subs),
        "mrr_growth": (growth(x.mrr_start, x.mrr), x.subs_start),
        "arpu": (ratio(x.mrr, x.mau), x.mau),
        "churn_rate": (churn, subs_30d),
        "cac": (cac, x.conversions_30d),
        "ltv": (life, x.subs),
        "ltv_cac": (ltv_cac(life, cac), x.conversions_30d),
        "daily_active_ratio": (ratio(x.dau, x.mau), x.mau),
        "viral_coefficient": (ratio(x.referred_30d, x.referrers_30d), x.referrers_30d),
        "funnel_signup_to_scan": (ratio(x.funnel_scanned_24h, x.funnel_signups_24h),
                                  x.funnel_signups_24h),
        "funnel_scan_to_paid": (ratio(x.funnel_paid_scanned_14d, x.funnel_scanned_14d),
                                x.funnel_scanned_14d),
        "funnel_signup_to_paid": (ratio(x.funnel_paid_14d, x.funnel_signups_14d),
                                  x.funnel_signups_14d),
    }
