"""Tool results across slices: a KPI per segment and channel (with each one's part in a
change), the channels' acquisition economics, the targets and what the data holds.

Same conventions as :mod:`assistant.facts`: every number with its ``*_text``, an ``error``
instead of a number Pulse does not have.
"""

from __future__ import annotations

import math
from typing import Any

from alerting.evidence import CHANNEL_NAMES, KPIS, SEGMENT_NAMES, kpi_label, slice_name
from assistant.facts import (
    MEANINGS,
    change_fact,
    compared,
    data_span,
    fchange,
    fmt,
    head,
    missing,
    number,
    target_fact,
    value_fact,
)
from assistant.periods import Period, compare_with, moment_text, previous
from assistant.query import SUM, contributions, coverage, decompose_kind, period_value, rule
from assistant.store import KpiStore
from core.timefmt import iso_utc
from kpis.formulas import KPI_BY_ID
from kpis.formulas import KPIS as KPI_DEFS

__all__ = ["SCORECARD_KPIS", "breakdown", "catalogue", "channels", "targets"]

SCORECARD_KPIS = ("signups", "paid_conversions", "conversion_rate", "cac", "ltv", "ltv_cac")
"""What ``compare_channels`` shows per channel."""


def _slice_row(kpi: str, c: Any, total_change: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"segment": c.segment, "channel": c.channel,
                           "slice": slice_name(c.segment, c.channel)}
    if c.now is not None:
        row.update(value=c.now.value, value_text=fmt(c.now.value, kpi),
                   n=number(c.now.n))
    if c.before is not None:
        row.update(before=c.before.value, before_text=fmt(c.before.value, kpi))
    if c.now is not None and c.before is not None:
        ch = change_fact(kpi, c.now.value, c.before.value)
        row.update(change=ch["change"], change_text=ch["change_text"])
    if c.part is not None:
        row.update(contribution=c.part, contribution_text=fchange(c.part, 0.0, kpi))
        if total_change:
            row["share_of_change"] = c.part / total_change
            row["share_text"] = f"{c.part / total_change:.0%}"
    return row


def breakdown(store: KpiStore, kpi: str, by: str, period: Period, compare: str,
              sort: str) -> dict[str, Any]:
    """The KPI per segment and/or channel over ``period``; with a comparison, each slice's
    part in the overall change (largest first), else ranked by value."""
    base = {**head(kpi), "period": period.to_json(), "by": by}
    now = period_value(store, kpi, "all", "all", period)
    if now is None:
        return {**base, "error": missing(store, kpi, "all", "all", period)}
    other = compare_with(period, compare) if compare != "target" else None
    was = period_value(store, kpi, "all", "all", other) if other is not None else None
    if other is not None and coverage(store, other) != "full" and rule(kpi) == SUM:
        was = None
    out: dict[str, Any] = {**base, "overall": value_fact(kpi, now)}
    if other is not None:
        out["compared_with"] = other.to_json()
        if was is None:
            out["comparison_error"] = missing(store, kpi, "all", "all", other)
        else:
            out["overall"].update(before=was.value,
                                  before_text=fmt(was.value, kpi),
                                  before_as_of_text=moment_text(was.as_of),
                                  **change_fact(kpi, now.value, was.value))
    kind = decompose_kind(kpi) if was is not None else None
    out["adds_up"] = kind is not None
    total = now.value - was.value if was is not None else None
    for dim in (("segment", "channel") if by == "both" else (by,)):
        if dim == "segment" and not KPI_BY_ID[kpi].per_segment:
            out["by_segment_error"] = (f"{kpi_label(kpi)} has no per-segment values: marketing "
                                       "spend is known per channel only")
            continue
        rows = contributions(store, kpi, dim, period, other, now, was)
        items = [_slice_row(kpi, c, total) for c in rows]
        if sort == "value" or was is None:
            items.sort(key=lambda r: -r.get("value", -math.inf))
            for i, r in enumerate(items, 1):
                r["rank"] = i
        out[f"by_{dim}"] = items
        if kind is not None and total is not None:
            rest = total - sum(r.get("contribution", 0.0) for r in items)
            out[f"{dim}_unexplained_text"] = fchange(rest, 0.0, kpi)
            out[f"{dim}_unexplained"] = rest
    return out


def channels(store: KpiStore, period: Period) -> dict[str, Any]:
    """Every channel's acquisition economics over ``period`` against the period before,
    ranked by LTV:CAC (channels without marketing spend after, by their volume)."""
    names = store.channels()
    if not names:
        return {"error": "the data has no per-channel values"}
    before = previous(period)
    rows = []
    for ch in names:
        row: dict[str, Any] = {"channel": ch, "slice": slice_name("all", ch)}
        for kpi in SCORECARD_KPIS:
            v = period_value(store, kpi, "all", ch, period)
            if v is None:
                row[kpi] = {"label": kpi_label(kpi),
                            "error": missing(store, kpi, "all", ch, period)}
                continue
            fact = {"label": kpi_label(kpi), **value_fact(kpi, v)}
            cmp = compared(store, kpi, "all", ch, period, "previous_period", v)
            if cmp is not None and "error" not in cmp:
                fact["trend"] = {k: cmp[k] for k in ("value_text", "change_text", "direction",
                                                     "meaning", "as_of_text")
                                 if k in cmp}
            target = target_fact(kpi, v.value)
            if target is not None:
                fact["target_met"] = target["met"]
            row[kpi] = fact
        cac = row["cac"]
        row["no_spend"] = "value" in cac and cac["value"] == 0
        if "n" in cac and cac.get("n") is not None:
            row["paying_users_30d"] = cac["n"]
        rows.append(row)
    paid = [r for r in rows if "value" in r["ltv_cac"]]
    paid.sort(key=lambda r: -r["ltv_cac"]["value"])
    rest = [r for r in rows if "value" not in r["ltv_cac"]]
    rest.sort(key=lambda r: -(r.get("paying_users_30d") or 0))
    for i, r in enumerate(paid, 1):
        r["rank"] = i
    return {"period": period.to_json(), "compared_with": before.to_json(),
            "ranked_by": "LTV:CAC", "channels": paid + rest,
            "targets": {k: KPIS[k].target for k in SCORECARD_KPIS if KPIS[k].target},
            "as_of_text": moment_text(store.now) if store.now else ""}


def targets(store: KpiStore, period_for: Any) -> dict[str, Any]:
    """Every KPI with a target: its current overall value (``period_for(kpi)``) against it."""
    rows = []
    for k in KPI_DEFS:
        if k.target is None:
            continue
        period = period_for(k.id)
        v = period_value(store, k.id, "all", "all", period)
        row: dict[str, Any] = {"kpi": k.id, "label": k.title, "rule_text": KPIS[k.id].target,
                               "period": period.to_json()}
        if v is None:
            row["error"] = missing(store, k.id, "all", "all", period)
        else:
            row.update(value_fact(k.id, v))
            row.update(target_fact(k.id, v.value) or {})
        rows.append(row)
    return {"targets": rows, "met": sum(1 for r in rows if r.get("met") is True),
            "missed": sum(1 for r in rows if r.get("met") is False)}


def catalogue(store: KpiStore) -> dict[str, Any]:
    """What the data can answer about: KPIs, slices and the time it covers."""
    return {
        "kpis": [{"kpi": k, "label": kpi_label(k), "unit": KPI_BY_ID[k].unit,
                  "meaning": MEANINGS.get(k, KPI_BY_ID[k].doc),
                  "per_segment": KPI_BY_ID[k].per_segment,
                  "target_text": KPIS[k].target if k in KPIS else ""}
                 for k in store.kpis() if k in KPI_BY_ID],
        "segments": [{"segment": s, "name": SEGMENT_NAMES.get(s, s)} for s in store.segments()],
        "channels": [{"channel": c, "name": CHANNEL_NAMES.get(c, c)} for c in store.channels()],
        "plans": "KPIs are not split by plan",
        "data_from": iso_utc(store.first) if store.first is not None else None,
        "data_to": iso_utc(store.now) if store.now is not None else None,
        "data_text": data_span(store),
        "window_minutes": store.window_s / 60,
    }
