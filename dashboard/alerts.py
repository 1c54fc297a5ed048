"""Alerts: the open ones and the recently resolved, each with its evidence and its chart.

The evidence is worded by ``alerting`` (the Slack message's headline, fields and impact, the
same strings), and the chart is Slack's (:func:`alerting.chart.render_chart`) as an inline PNG.
Alert records on the ``alerts`` topic carry no history (``alerting.sink.alert_record``); the
chart takes it from the anomaly that the alert's newest version came from (the ``anomalies``
topic: :func:`history_key`), or failing that from the KPI values in the store.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from typing import Any

from alerting.chart import chart_points, render_chart
from alerting.escape import clean_event_text
from alerting.evidence import (
    change_words,
    detector_name,
    digits_for,
    format_band,
    format_change,
    format_duration,
    format_value,
    impact_line,
    kpi_label,
    plain_ids,
    scope_words,
    series_label,
    so_far,
)
from alerting.slack import headline
from assistant.store import OPEN_STATUSES, KpiStore
from core.timefmt import human_utc, parse_utc
from dashboard.html import PageInfo, esc, page, pill

__all__ = ["Chart", "alert_png", "alert_snapshot", "alerts_body", "alerts_page", "history_key",
           "recent_alerts"]

Chart = Callable[[dict], "bytes | None"]
HistoryKey = tuple[str, str, str, float]
RECENT_DAYS, RECENT_MAX = 7, 6
_ANOMALY_FIELDS = ("early", "as_of_ts", "elapsed_minutes", "span_start_ts", "n", "calendar")


def _ts(value: Any) -> float:
    try:
        return parse_utc(value)
    except (TypeError, ValueError):
        return math.nan


def history_key(doc: Mapping[str, Any]) -> HistoryKey:
    """(kpi, segment, channel, window start) of an anomaly or an alert: how an alert finds the
    anomaly its numbers came from."""
    start = doc.get("window_start_ts")
    return (str(doc.get("kpi")), str(doc.get("segment", "all")), str(doc.get("channel", "all")),
            float(start) if isinstance(start, (int, float)) else _ts(doc.get("window_start")))


def alert_snapshot(record: dict, anomalies: Mapping[HistoryKey, list[dict]] | None = None,
                   store: KpiStore | None = None) -> dict:
    """An ``alerts`` record made whole for the evidence and the chart: epoch times, and the
    history (and early-look fields) of the anomaly it came from, else the store's values."""
    snap = dict(record)
    snap["window_start_ts"] = _ts(record.get("window_start"))
    snap["window_end_ts"] = _ts(record.get("window_end"))
    snap["since_ts"] = _ts(record.get("since"))
    found = list((anomalies or {}).get(history_key(snap), []))
    same = [a for a in found if a.get("value") == record.get("value")] or found
    if same:
        source = same[-1]
        if source.get("value") == record.get("value"):
            snap.update({k: source[k] for k in _ANOMALY_FIELDS if k in source})
        # the points before the alert's window: the chart ends on the alert's own numbers
        snap["history"] = [p for p in source.get("history") or []
                           if _ts(p.get("window_start_ts")) < snap["window_start_ts"]]
    elif store is not None:
        points = store.points(str(snap["kpi"]), str(snap["segment"]), str(snap["channel"]),
                              end=snap["window_start_ts"], complete_only=False)
        snap["history"] = [{"window_start_ts": p.start, "value": p.value} for p in points[-48:]
                           if p.start < snap["window_start_ts"]]
    return snap


def alert_png(snapshot: dict) -> bytes | None:
    """Slack's chart of the alert (None when there is nothing to draw)."""
    try:
        return render_chart(chart_points(snapshot), str(snapshot["kpi"]), alert=snapshot)
    except (KeyError, TypeError, ValueError):
        return None


def recent_alerts(store: KpiStore, days: float = RECENT_DAYS,
                  limit: int = RECENT_MAX) -> tuple[list[dict], list[dict]]:
    """(open alerts, critical first then oldest first; alerts resolved in the last ``days``
    days before the newest time known, newest first, at most ``limit``)."""
    states = store.alert_states()
    opened = [a for a in states if a.get("status") in OPEN_STATUSES]
    opened.sort(key=lambda a: (a.get("severity") != "critical", _ts(a.get("since"))))
    times = [_ts(a.get("resolved_at") or a.get("window_end")) for a in states]
    known = [t for t in [store.now or math.nan, *times] if math.isfinite(t)]
    now = max(known, default=math.nan)
    resolved = [a for a in states if a.get("status") == "resolved"
                and _ts(a.get("resolved_at") or a.get("window_end")) >= now - days * 86400.0]
    resolved.sort(key=lambda a: _ts(a.get("resolved_at") or a.get("window_end")), reverse=True)
    return opened, resolved[:limit]


def _fields(a: dict, now: float) -> list[tuple[str, str]]:
    kpi = str(a["kpi"])
    d = digits_for(a)
    value, expected = float(a["value"]), float(a["expected"])
    change, rel = format_change(value, expected, kpi, d)
    resolved = a.get("status") == "resolved"
    window_s = max(a["window_end_ts"] - a["window_start_ts"], 1.0)
    windows = int(a.get("duration_windows") or 1)
    if resolved or not math.isfinite(a["since_ts"]):
        duration = format_duration(windows * window_s)
    else:
        duration = "open for " + format_duration(max(now - a["since_ts"], window_s))
    since = human_utc(a["since_ts"]) if math.isfinite(a["since_ts"]) else "n/a"
    fields = [
        ("Last abnormal" if resolved else "Value",
         format_value(value, kpi, d) + so_far(a)),
        ("Expected", format_value(expected, kpi, d)),
        ("Normal band", format_band(a.get("lower"), a.get("upper"), kpi, d)),
        ("Change", change if rel in (change, "n/a") else f"{change} ({rel})"),
        ("Since", f"{since} · {duration}"),
        ("Scope", scope_words(a)),
        ("Impact", impact_line(a)),
        ("Confidence", f"{float(a.get('score') or 0) * 100:.0f}% · {a.get('severity')} · "
                       f"{detector_name(a.get('detector'))}"),
    ]
    related = a.get("related") or []
    if related:
        fields.append(("Related", "; ".join(
            f"{series_label(str(r['kpi']), str(r['segment']), str(r['channel']))} "
            f"{change_words(float(r['value']), float(r['expected']), str(r['kpi']))}"
            for r in related[:4]) + (f"; and {len(related) - 4} more" if len(related) > 4
                                     else "")))
    if resolved and a.get("resolved_at"):
        fields.append(("Resolved", human_utc(_ts(a["resolved_at"]))))
    return fields


def _card(a: dict, now: float, chart: Chart) -> str:
    kpi = str(a["kpi"])
    resolved = a.get("status") == "resolved"
    severity = "critical" if a.get("severity") == "critical" else "warning"
    badges = (pill("Resolved", "resolved") if resolved else pill("Open", "open")) + " " + pill(
        severity.capitalize(), severity)
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _fields(a, now))
    why = ""
    if a.get("explanation"):
        source = "Claude" if a.get("explanation_source") == "llm" else "template"
        why = (f'<div class="why"><b>Why it may be happening</b> <span class="muted">({source})'
               f"</span><br>{esc(clean_event_text(plain_ids(str(a['explanation'])), 1500))}</div>")
    png = chart(a)
    img = (f'<img alt="{esc(kpi_label(kpi))} around the alert" '
           f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
           if png else '<p class="muted">No chart: the alert carries no history.</p>')
    attrs = (f'class="card alert" data-alert="{esc(a.get("id", ""))}" data-kpi="{esc(kpi)}" '
             f'data-status="{esc(a.get("status", ""))}"')
    return (f'<div {attrs}><div>{badges}<h3>{esc(headline(a))}</h3>'
            f'<dl class="ev">{rows}</dl>{why}</div><div>{img}</div></div>')


def alerts_body(store: KpiStore, anomalies: Mapping[HistoryKey, list[dict]] | None = None,
                chart: Chart = alert_png) -> str:
    """The Alerts tab's HTML (inside the frame)."""
    opened, resolved = recent_alerts(store)
    now = store.now or math.nan
    snaps = [alert_snapshot(a, anomalies, store) for a in opened + resolved]
    if snaps:
        now = max([now, *(s["window_end_ts"] for s in snaps if math.isfinite(s["window_end_ts"]))])
    open_html = "".join(_card(s, now, chart) for s in snaps[:len(opened)]) or (
        '<p class="card">No open alert: every watched KPI is within its normal band.</p>')
    done_html = "".join(_card(s, now, chart) for s in snaps[len(opened):]) or (
        f'<p class="muted">None resolved in the last {RECENT_DAYS} days.</p>')
    note = "" if store.alerts else (
        '<p class="muted">No alert record has been read (the alerts topic is empty).</p>')
    return (f'<h1>Alerts</h1><p class="lede">What the detectors flagged, with the numbers '
            "behind each alert, as posted to Slack. Charts: the KPI around its anomaly, the "
            "normal band in blue, the abnormal period shaded.</p>"
            f"{note}<h2>Open ({len(opened)})</h2>{open_html}"
            f"<h2>Resolved in the last {RECENT_DAYS} days</h2>{done_html}")


def alerts_page(store: KpiStore, info: PageInfo,
                anomalies: Mapping[HistoryKey, list[dict]] | None = None,
                chart: Chart = alert_png) -> str:
    """The Alerts tab as a whole HTML document."""
    return page("alerts", alerts_body(store, anomalies, chart), info)
