"""The deterministic explanation: what every alert says before (or without) the model.

It uses only the evidence (``alerting.evidence.build_evidence``), so the same incident always
reads the same, in replays too, and shows the message's own strings (band, change, scope).
Likely causes depend on the KPI and on the direction of the move: a surge of signups is a
campaign, bots or a double-counting tag, not a regression; a drop is broken tracking or an
outage.
"""

from __future__ import annotations

from alerting.evidence import KPIS

__all__ = ["causes_for", "template_explanation"]

# (likely causes, first checks) by KPI, or by incident family, and direction of the move
_CAUSES: dict[tuple[str, str], tuple[str, str]] = {
    ("payment_failure_rate", "up"): (
        "a payment-provider or checkout problem (gateway errors, card declines, a recent "
        "checkout release)",
        "the payment provider's status page and decline codes, recent checkout deploys, and "
        "failed-payment logs by channel"),
    ("payment_failure_rate", "down"): (
        "a provider fix or fewer risky cards, or failed attempts no longer being recorded",
        "that failed-payment events still arrive, and the provider's recent changes"),
    ("payments", "down"): (
        "a payment-provider or checkout outage, or fewer buyers reaching checkout",
        "the payment provider's status page, checkout errors, and the traffic reaching "
        "checkout"),
    ("payments", "up"): (
        "a promotion or a price change, or payments recorded twice (a webhook replay or "
        "retried charges)",
        "running promotions, duplicate payment ids, and the provider's webhook log"),
    ("signups", "down"): (
        "broken tracking (a sign-up pixel or tag that stopped firing), a sign-up flow outage, "
        "or lost traffic on a channel",
        "the sign-up tracking tag and its recent changes, sign-up page errors, and traffic "
        "per channel against sign-ups in the product database"),
    ("signups", "up"): (
        "a campaign, a mention or a partner sending traffic, bot or fake sign-ups, or "
        "sign-ups counted twice (a tag firing twice)",
        "campaigns and spend per channel, sign-up sources and email domains for bots, and "
        "duplicate sign-up events"),
    ("scans", "down"): (
        "a scan service outage or a release that breaks scanning, or less traffic",
        "scan service errors and latency, the latest app release, and active users"),
    ("scans", "up"): (
        "a traffic surge (a campaign or a mention), bots, or clients retrying scans",
        "traffic per channel, scans per user for automated use, and client retry errors"),
    ("match_rate", "down"): (
        "a regression in the matching service (a model or ranking release), or stale job "
        "listings",
        "the latest matching release, match scores by segment before and after it, and "
        "job-feed freshness"),
    ("match_rate", "up"): (
        "a matching improvement, or a change in how match scores are computed",
        "the latest matching release and the score's definition"),
    ("conversion_rate", "down"): (
        "a checkout or paywall problem, or a wave of low-intent (or bot) sign-ups diluting "
        "the rate",
        "checkout errors, the paywall and pricing pages, and sign-ups by channel"),
    ("conversion_rate", "up"): (
        "a successful offer, or sign-ups being under-recorded (the rate's denominator fell)",
        "running offers, and sign-up tracking against the product database"),
    ("churn_rate", "up"): (
        "a cancellation wave (a pricing or plan change, a product issue, a competitor) or "
        "failed renewals",
        "cancellation reasons, recent pricing or plan changes, renewal failures, and support "
        "tickets"),
    ("churn_rate", "down"): (
        "a retention offer working, or cancellations not being recorded",
        "running retention offers, and that cancel events still arrive"),
    ("payments-family", "down"): (
        "a payment-provider or checkout problem (gateway errors, card declines, a recent "
        "checkout release)",
        "the payment provider's status page and decline codes, recent checkout deploys, and "
        "failed-payment logs by channel"),
    ("payments-family", "up"): (
        "a promotion or a price change, or payments recorded twice",
        "running promotions and duplicate payment ids"),
    ("acquisition-family", "down"): (
        "less traffic from a marketing channel, a broken sign-up flow or a tracking change",
        "spend and traffic per channel, the sign-up funnel, and recent landing-page or "
        "tracking changes"),
    ("acquisition-family", "up"): (
        "a campaign or more traffic from a channel, bots, or double-counted tracking",
        "campaigns and spend per channel, and duplicate events"),
    ("retention-family", "down"): (
        "a cancellation wave (a pricing or plan change, a product issue) or failed renewals",
        "cancellation reasons, recent pricing or plan changes, and support tickets"),
    ("retention-family", "up"): (
        "a retention or pricing change working, or cancellations not being recorded",
        "recent pricing and plan changes, and that cancel events still arrive"),
    ("engagement-family", "down"): (
        "a product outage or a change in activity tracking",
        "app error rates, recent releases, and the activity event pipeline"),
    ("engagement-family", "up"): (
        "a re-engagement campaign, or activity counted twice",
        "recent campaigns and duplicate activity events"),
    ("product-family", "down"): (
        "a regression in the scan or matching service, or stale job listings",
        "scan service errors and latency, the latest matching release, and job-feed "
        "freshness"),
    ("product-family", "up"): (
        "more traffic or a product change",
        "traffic per channel and recent releases"),
}
_DEFAULT = ("a data pipeline problem or a genuine shift in behaviour",
            "the raw events behind this KPI and recent releases")


def causes_for(kpi: str, direction: str) -> tuple[str, str]:
    """(likely causes, first checks) for a move of ``kpi`` in ``direction`` (``up``/``down``).

    >>> causes_for("signups", "up")[0].split(",")[0]
    'a campaign'
    >>> causes_for("signups", "down")[0].split(" (")[0]
    'broken tracking'
    """
    direction = "up" if direction == "up" else "down"
    hit = _CAUSES.get((kpi, direction))
    if hit is not None:
        return hit
    info = KPIS.get(kpi)
    for family in info.families if info else ():
        hit = _CAUSES.get((f"{family}-family", direction))
        if hit is not None:
            return hit
    return _DEFAULT


def template_explanation(evidence: dict) -> str:
    """Two to four sentences from the evidence: what moved, with what, likely causes, checks.

    >>> ev = {"kpi": "payment_failure_rate", "kpi_name": "Payment failure rate",
    ...       "where": "all segments and channels", "direction": "up", "value": "41.2%",
    ...       "expected": "2.0%", "normal_band": "1.0% to 3.5%", "change": "+39.2 pp",
    ...       "duration": "1 h", "since": "2026-11-21 10:00 UTC", "confidence": "99%",
    ...       "direction_meaning": "worse", "scope": "All segments and channels",
    ...       "related_kpis_same_windows": [{"kpi": "Payments"}], "top_contributors": []}
    >>> print(template_explanation(ev))
    Payment failure rate (all segments and channels) rose to 41.2% against an expected 2.0% \
(+39.2 pp; normal range 1.0% to 3.5%) for 1 h since 2026-11-21 10:00 UTC. It moved together \
with Payments in the same windows, which points to one shared cause. Likely causes: a \
payment-provider or checkout problem (gateway errors, card declines, a recent checkout \
release). First checks: the payment provider's status page and decline codes, recent \
checkout deploys, and failed-payment logs by channel.
    """
    up = evidence.get("direction") == "up"
    verb = "rose to" if up else "fell to"
    change = evidence.get("change", "")
    if evidence.get("relative_change"):
        change += f", {evidence['relative_change']}"
    so_far = f" {evidence['so_far']}" if evidence.get("so_far") else ""
    sentences = [
        f"{evidence['kpi_name']} ({evidence['where']}) {verb} {evidence['value']}{so_far} "
        f"against an expected {evidence['expected']} ({change}; normal range "
        f"{evidence['normal_band']}) for {evidence['duration']} since {evidence['since']}."
    ]
    if evidence.get("direction_meaning") == "better":
        sentences.append(f"That is the good direction for {evidence['kpi_name']}, so the "
                         "question is whether it is real.")
    related = evidence.get("related_kpis_same_windows") or []
    contributors = evidence.get("top_contributors") or []
    scope = str(evidence.get("scope") or "")
    names = sorted({str(r["kpi"]) for r in related} - {evidence["kpi_name"]})
    if names:
        sentences.append(f"It moved together with {_join(names[:4])} in the same windows, "
                         "which points to one shared cause.")
    elif "of the overall" in scope:
        sentences.append(f"{scope}.")
    elif scope.startswith("Spread"):
        sentences.append("The change is spread across all segments and channels alike, so no "
                         "single slice explains it.")
    elif related:
        sentences.append("It moved in other segments or channels too.")
    elif contributors and evidence.get("where") == "all segments and channels":
        top = contributors[0]
        sentences.append(f"The largest share of the change ({top['share_of_change']}) comes "
                         f"from {top['where']}.")
    causes, checks = causes_for(str(evidence["kpi"]), "up" if up else "down")
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
