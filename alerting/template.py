"""The deterministic explanation: what every alert says before (or without) the model.

It uses only the evidence (``alerting.evidence.build_evidence``), so the same incident always
reads the same, in replays too.
"""

from __future__ import annotations

from alerting.evidence import KPIS

__all__ = ["template_explanation"]

_CAUSES: dict[str, tuple[str, str]] = {
    "payments": (
        "a payment-provider or checkout problem (gateway errors, card declines, a recent "
        "checkout release)",
        "the payment provider's status page and decline codes, recent checkout deploys, and "
        "failed-payment logs by channel"),
    "acquisition": (
        "a change in traffic from a marketing channel, a broken sign-up flow or a tracking change",
        "spend and traffic per channel, the sign-up funnel, and recent landing-page or "
        "tracking changes"),
    "retention": (
        "a cancellation wave (a pricing or plan change, a product issue) or expiring plans",
        "cancellation reasons, recent pricing or plan changes, and support tickets"),
    "engagement": (
        "a product outage or a change in activity tracking",
        "app error rates, recent releases, and the activity event pipeline"),
    "product": (
        "a regression in the scan or matching service, or stale job listings",
        "scan service errors and latency, the latest matching release, and job-feed freshness"),
}
_DEFAULT = ("a data pipeline problem or a genuine shift in behaviour",
            "the raw events behind this KPI and recent releases")


def template_explanation(evidence: dict) -> str:
    """Two to four sentences from the evidence: what moved, with what, likely causes, checks.

    >>> ev = {"kpi": "payment_failure_rate", "kpi_name": "Payment failure rate",
    ...       "where": "all segments, all channels", "direction": "up", "value": "41.2%",
    ...       "expected": "2.0%", "normal_band": ["1.0%", "3.5%"], "relative_change": "+1960%",
    ...       "duration": "1 h", "since": "2026-11-21 10:00 UTC", "confidence": "99%",
    ...       "related_kpis_same_windows": [{"kpi": "payments"}], "top_contributors": []}
    >>> print(template_explanation(ev))
    Payment failure rate (all segments, all channels) rose to 41.2% against an expected 2.0% \
(normal 1.0%–3.5%, +1960%) for 1 h since 2026-11-21 10:00 UTC. It moved together with \
payments in the same windows, which points to one shared cause. Likely causes: a \
payment-provider or checkout problem (gateway errors, card declines, a recent checkout \
release). First checks: the payment provider's status page and decline codes, recent \
checkout deploys, and failed-payment logs by channel.
    """
    verb = "rose to" if evidence.get("direction") == "up" else "fell to"
    low, high = evidence["normal_band"]
    sentences = [
        f"{evidence['kpi_name']} ({evidence['where']}) {verb} {evidence['value']} against an "
        f"expected {evidence['expected']} (normal {low}–{high}, {evidence['relative_change']}) "
        f"for {evidence['duration']} since {evidence['since']}."
    ]
    related = evidence.get("related_kpis_same_windows") or []
    contributors = evidence.get("top_contributors") or []
    if related:
        names = sorted({r["kpi"] for r in related})
        sentences.append(f"It moved together with {_join(names[:4])} in the same windows, "
                         "which points to one shared cause.")
    elif contributors:
        top = contributors[0]
        sentences.append(f"The largest share of the change ({top['share_of_change']}) comes "
                         f"from {top['where']}.")
    info = KPIS.get(evidence["kpi"])
    causes, checks = _CAUSES.get(info.families[0], _DEFAULT) if info else _DEFAULT
    try:
        unsure = float(str(evidence.get("confidence", "100")).rstrip("%")) < 60
    except ValueError:
        unsure = False
    if unsure:
        sentences.append(f"The signal is weak, so the cause is inconclusive; first checks: "
                         f"{checks}.")
    else:
        sentences.append(f"Likely causes: {causes}. First checks: {checks}.")
    return " ".join(sentences)


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
