"""Open alerts as facts: what is wrong, where, how bad, for how long, and where to look.

Ages count in event time, up to the newest time the store knows (its last KPI window or
alert), so a demo's files read the same on any day. Links come from the caller (the CLI passes
``alerting.slack.grafana_link`` bound to the settings' Grafana URL; this module stays free of
the Slack SDK) or from a Slack permalink the alert record carries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from alerting.escape import clean_event_text
from alerting.evidence import change_words, format_duration, format_value, kpi_label, scope_words
from assistant.periods import moment_text
from assistant.store import KpiStore
from core.timefmt import iso_utc, parse_utc

__all__ = ["alert_fact", "alerts_lines", "open_alerts"]

Link = Callable[[dict[str, Any]], str]
_SLACK_FIELDS = ("slack_permalink", "permalink", "slack_url")


def _ts(a: dict[str, Any], field: str) -> float:
    value = a.get(f"{field}_ts")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return parse_utc(a.get(field))
    except (TypeError, ValueError):
        return math.nan


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _now(store: KpiStore) -> float:
    times = [store.now or -math.inf]
    for a in store.alerts:
        times += [_ts(a, "window_end"), _f(a.get("event_ts"))]
    return max((t for t in times if math.isfinite(t)), default=math.nan)


def alert_fact(a: dict[str, Any], now: float, link: Link | None = None) -> dict[str, Any]:
    """One alert snapshot in words and numbers (event-derived names cleaned, not escaped)."""
    kpi = str(a.get("kpi", ""))
    since, end = _ts(a, "since"), _ts(a, "window_end")
    snapshot = {**a, "since_ts": since, "window_end_ts": end}
    value, expected = _f(a.get("value")), _f(a.get("expected"))
    out: dict[str, Any] = {
        "id": clean_event_text(a.get("id", ""), 40), "status": str(a.get("status")),
        "severity": "critical" if a.get("severity") == "critical" else "warning",
        "kpi": clean_event_text(kpi, 60), "label": kpi_label(kpi),
        "segment": clean_event_text(a.get("segment", "all"), 60),
        "channel": clean_event_text(a.get("channel", "all"), 60),
        "scope": scope_words(snapshot),
        "value_text": format_value(value, kpi), "expected_text": format_value(expected, kpi),
        "change_text": change_words(value, expected, kpi),
    }
    if math.isfinite(since):
        out.update(since=iso_utc(since), since_text=moment_text(since))
        if math.isfinite(now):
            out["age_text"] = format_duration(max(now - since, 0.0))
    links: dict[str, str] = {}
    if link is not None and math.isfinite(since) and math.isfinite(end):
        links["grafana"] = link(snapshot)
    for field in _SLACK_FIELDS:
        if isinstance(a.get(field), str) and a[field].startswith("https://"):
            links["slack"] = a[field]
            break
    if links:
        out["links"] = links
    return out


def open_alerts(store: KpiStore, kpi: str | None = None, severity: str | None = None,
                link: Link | None = None) -> dict[str, Any]:
    """The alerts still open, critical first then oldest first, optionally one KPI's or one
    severity's."""
    now = _now(store)
    rows = [alert_fact(a, now, link) for a in store.open_alerts()
            if (kpi is None or a.get("kpi") == kpi)
            and (severity is None or (a.get("severity") == "critical") == (severity == "critical"))]
    rows.sort(key=lambda r: (r["severity"] != "critical", r.get("since", "")))
    out: dict[str, Any] = {"alerts": rows, "count": len(rows),
                           "resolved": sum(1 for a in store.alert_states()
                                           if a.get("status") == "resolved")}
    if math.isfinite(now):
        out["as_of_text"] = moment_text(now)
    if not store.alerts:
        out["note"] = "no alert records were given (alerts.jsonl or the alerts topic)"
    return out


def alerts_lines(result: dict[str, Any]) -> list[str]:
    """``pulse alerts``: a line per open alert, its links indented below it."""
    as_of = f" (as of {result['as_of_text']})" if result.get("as_of_text") else ""
    if not result["alerts"]:
        resolved = result.get("resolved", 0)
        tail = f"; {resolved} resolved" if resolved else ""
        return [f"No open alerts{as_of}{tail}."]
    n = result["count"]
    lines = [f"{n} open alert{'s' if n != 1 else ''}{as_of}:"]
    for r in result["alerts"]:
        age = f" Open for {r['age_text']}, since {r['since_text']}." if r.get("age_text") else ""
        lines.append(f"  {r['severity'].upper():<8} {r['label']}: {r['change_text']}; "
                     f"expected {r['expected_text']}. {r['scope']}.{age}")
        for name, url in r.get("links", {}).items():
            lines.append(f"           {name.capitalize()}: {url}")
    return lines
