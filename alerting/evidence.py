"""The computed facts behind an alert: what the template and the model may talk about.

Numbers are formatted here, once, so the Slack message, the template and the prompt show the
same strings, and :func:`numbers_in` can check that a text uses no other number.

>>> format_value(0.412, "payment_failure_rate"), format_value(1234.5, "revenue")
('41.2%', '$1,234')
>>> format_change(0.412, 0.02, "payment_failure_rate")
('+39.2 pp', '+1960%')
>>> sorted(numbers_in("MRR fell 12.50% to $1,234 (was 1.2k)"))
['1.2', '12.5', '1234']
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alerting.escape import clean_event_text

__all__ = [
    "KPIS",
    "KpiInfo",
    "build_evidence",
    "families_of",
    "format_change",
    "format_ts",
    "format_value",
    "kpi_label",
    "numbers_in",
    "where",
]


@dataclass(frozen=True)
class KpiInfo:
    """How Pulse talks about one KPI (the formulas themselves live in kpis/, docs/kpis.md)."""

    label: str
    definition: str
    kind: str  # "percent", "usd", "count" or "number": how values are formatted
    families: tuple[str, ...]  # incident families: anomalies of one family in one window group
    target: str = ""


KPIS: dict[str, KpiInfo] = {
    "signups": KpiInfo("Sign-ups", "count of sign-up events in the window", "count",
                       ("acquisition",)),
    "scans": KpiInfo("Scans", "count of resume/job scans in the window", "count", ("product",)),
    "match_rate": KpiInfo("Match rate", "mean match score of the window's scans (0 to 1)",
                          "percent", ("product",)),
    "paid_conversions": KpiInfo(
        "Paid conversions", "first successful payments (new paying users) in the window",
        "count", ("payments", "acquisition")),
    "conversion_rate": KpiInfo(
        "Conversion rate", "paid conversions divided by sign-ups in the window", "percent",
        ("payments", "acquisition"), "0.15"),
    "payments": KpiInfo("Payments", "count of successful payments in the window", "count",
                        ("payments",)),
    "revenue": KpiInfo("Revenue", "sum of successful payment amounts in the window (USD)", "usd",
                       ("payments",)),
    "payment_failure_rate": KpiInfo(
        "Payment failure rate", "failed divided by all payment attempts in the window", "percent",
        ("payments",)),
    "mrr": KpiInfo("MRR", "monthly recurring revenue of active subscriptions at window end",
                   "usd", ("payments", "retention")),
    "mrr_growth": KpiInfo("MRR growth", "relative change of MRR over the window", "percent",
                          ("payments", "retention")),
    "arpu": KpiInfo("ARPU", "MRR divided by monthly active users", "usd",
                    ("payments", "engagement"), "15 USD per user per month"),
    "churn_rate": KpiInfo(
        "Churn rate", "cancellations in the trailing 30 days divided by subscriptions active "
        "30 days before", "percent", ("retention",), "at most 0.05 per month"),
    "cac": KpiInfo("CAC", "marketing spend divided by paid conversions, trailing 30 days", "usd",
                   ("acquisition",), "50 USD"),
    "ltv": KpiInfo("LTV", "average monthly revenue per paying user times expected lifetime",
                   "usd", ("retention",), "300 USD"),
    "ltv_cac": KpiInfo("LTV:CAC", "LTV divided by CAC", "number", ("acquisition", "retention"),
                       "at least 3"),
    "daily_active_ratio": KpiInfo(
        "Daily active ratio", "users active in the trailing 24 h divided by users active in "
        "the trailing 30 days", "percent", ("engagement",), "0.40"),
    "viral_coefficient": KpiInfo(
        "Viral coefficient", "referred sign-ups divided by distinct referrers, trailing 30 days",
        "number", ("acquisition",), "1.5"),
}

_NUMBER = re.compile(r"(?<![A-Za-z_])\d[\d,]*(?:\.\d+)?")


def kpi_label(kpi: str) -> str:
    info = KPIS.get(kpi)
    return info.label if info else clean_event_text(kpi, 60)


def families_of(kpi: str) -> frozenset[str]:
    """Incident families of a KPI; an unknown KPI is its own family."""
    info = KPIS.get(kpi)
    return frozenset(info.families) if info else frozenset({f"kpi:{kpi}"})


def _kind(kpi: str) -> str:
    info = KPIS.get(kpi)
    return info.kind if info else "number"


def format_value(value: float | None, kpi: str) -> str:
    """A KPI value as Pulse shows it everywhere (percent, dollars, counts)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    kind = _kind(kpi)
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "usd":
        return f"${value:,.0f}" if abs(value) >= 100 else f"${value:,.2f}"
    if kind == "count":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def format_change(value: float, expected: float, kpi: str) -> tuple[str, str]:
    """(absolute change in the KPI's unit, relative change) of ``value`` against ``expected``."""
    diff = value - expected
    sign = "+" if diff >= 0 else "-"
    kind = _kind(kpi)
    if kind == "percent":
        absolute = f"{sign}{abs(diff) * 100:.1f} pp"
    else:
        absolute = sign + format_value(abs(diff), kpi)
    if abs(expected) < 1e-12:
        return absolute, "n/a"
    return absolute, f"{sign}{abs(diff) / abs(expected) * 100:.0f}%"


def format_ts(ts: float) -> str:
    """Epoch seconds as ``2026-11-21 10:00 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def where(segment: str, channel: str) -> str:
    """Plain words for a series' slice: ``all segments, channel ads``."""
    seg = "all segments" if segment == "all" else f"segment {clean_event_text(segment, 60)}"
    ch = "all channels" if channel == "all" else f"channel {clean_event_text(channel, 60)}"
    return f"{seg}, {ch}"


def numbers_in(text: str) -> set[str]:
    """Numbers written in ``text``, normalised (no thousands separators or trailing zeros)."""
    found = set()
    for token in _NUMBER.findall(text):
        token = token.replace(",", "")
        if "." in token:
            token = token.rstrip("0").rstrip(".")
        found.add(token.lstrip("0") or "0")
    return found


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def build_evidence(alert: dict) -> dict:
    """The facts of an alert snapshot (see ``alerting.lifecycle``), formatted, bounded, clean."""
    kpi = str(alert["kpi"])
    info = KPIS.get(kpi)
    value, expected = _f(alert.get("value")), _f(alert.get("expected"))
    change, relative = format_change(value, expected, kpi)
    window_s = max(_f(alert.get("window_end_ts")) - _f(alert.get("window_start_ts")), 1.0)
    windows = int(alert.get("duration_windows") or 1)
    hours = windows * window_s / 3600
    evidence: dict[str, Any] = {
        "kpi": clean_event_text(kpi, 60),
        "kpi_name": kpi_label(kpi),
        "definition": info.definition if info else "",
        "unit": clean_event_text(alert.get("unit", ""), 30),
        "target": info.target if info else "",
        "where": where(str(alert["segment"]), str(alert["channel"])),
        "direction": "up" if alert.get("direction") == "up" else "down",
        "severity": "critical" if alert.get("severity") == "critical" else "warning",
        "confidence": f"{_f(alert.get('score')) * 100:.0f}%",
        "value": format_value(value, kpi),
        "expected": format_value(expected, kpi),
        "normal_band": [format_value(_f(alert.get("lower")), kpi),
                        format_value(_f(alert.get("upper")), kpi)],
        "change": change,
        "relative_change": relative,
        "since": format_ts(_f(alert.get("since_ts"))),
        "abnormal_windows": windows,
        "duration": f"{hours:g} h" if hours >= 1 else f"{hours * 60:.0f} min",
        "detector": clean_event_text(alert.get("detector", ""), 40),
        "recent_values": [
            {"window_start": format_ts(_f(p.get("window_start_ts"))),
             "value": format_value(_f(p.get("value")), kpi),
             "expected": format_value(_f(p.get("expected")), kpi)}
            for p in (alert.get("history") or [])[-8:]
        ],
        "related_kpis_same_windows": [
            {"kpi": clean_event_text(r["kpi"], 60), "where": where(r["segment"], r["channel"]),
             "direction": r.get("direction", ""),
             "value": format_value(_f(r.get("value")), r["kpi"]),
             "expected": format_value(_f(r.get("expected")), r["kpi"]),
             "change": format_change(_f(r.get("value")), _f(r.get("expected")), r["kpi"])[1]}
            for r in (alert.get("related") or [])[:8]
        ],
        "top_contributors": [
            {"where": where(str(c.get("segment", "all")), str(c.get("channel", "all"))),
             "value": format_value(_f(c.get("value")), kpi),
             "expected": format_value(_f(c.get("expected")), kpi),
             "share_of_change": f"{_f(c.get('share')) * 100:.0f}%"}
            for c in (alert.get("contributors") or [])[:3]
        ],
    }
    return evidence
