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
from typing import Any

from alerting.escape import clean_event_text
from core.timefmt import human_utc
from kpis.formulas import KPI_BY_ID, KpiDef
from kpis.formulas import KPIS as KPI_DEFS

__all__ = [
    "KPIS",
    "KpiInfo",
    "build_evidence",
    "families_of",
    "feasible_band",
    "feasible_range",
    "format_change",
    "format_value",
    "kpi_label",
    "numbers_in",
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


KPIS: dict[str, KpiInfo] = {k.id: _info(k) for k in KPI_DEFS}

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


def where(segment: str, channel: str) -> str:
    """Plain words for a series' slice: ``all segments, channel ads``."""
    seg = "all segments" if segment == "all" else f"segment {clean_event_text(segment, 60)}"
    ch = "all channels" if channel == "all" else f"channel {clean_event_text(channel, 60)}"
    return f"{seg}, {ch}"


def series_names(rows: list[dict], limit: int = 6) -> str:
    """``payments, payment_failure_rate (experienced/all)``: KPI plus slice when not the total,
    each series once, for one-line summaries of an alert's related series."""
    names: list[str] = []
    for r in rows:
        name = str(r.get("kpi"))
        if not (r.get("segment") == "all" and r.get("channel") == "all"):
            name += f" ({r.get('segment')}/{r.get('channel')})"
        if name not in names:
            names.append(name)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return clean_event_text(", ".join(names[:limit]) + more, 300)


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
        "normal_band": [format_value(v, kpi) for v in feasible_band(
            _f(alert.get("lower")), _f(alert.get("upper")), kpi)],
        "change": change,
        "relative_change": relative,
        "since": human_utc(_f(alert.get("since_ts"))),
        "abnormal_windows": windows,
        "duration": f"{hours:g} h" if hours >= 1 else f"{hours * 60:.0f} min",
        "detector": clean_event_text(alert.get("detector", ""), 40),
        "recent_values": [
            {"window_start": human_utc(_f(p.get("window_start_ts"))),
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
