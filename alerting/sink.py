"""Where every alert state change goes, Slack or not: a console line and ``alerts.jsonl``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from alerting.escape import clean_event_text
from alerting.evidence import digits_for, format_change, format_value, series_names

__all__ = ["ALERT_FIELDS", "ConsoleSink", "JsonlSink", "alert_record", "console_line"]

# Fields of one alerts.jsonl line, in order (the first 15 are the documented contract).
ALERT_FIELDS = (
    "id", "status", "kpi", "segment", "channel", "severity", "window_start", "window_end",
    "value", "expected", "score", "explanation", "explanation_source", "related",
    "lower", "upper", "direction", "unit", "detector", "since", "duration_windows", "version",
    "reason", "contributors", "feedback", "silenced", "resolved_at",
    # what readers of the file (pulse ask, the page, the digest) need without the topic
    "since_ts", "window_start_ts", "window_end_ts", "n", "scope", "changes", "joined",
    "previous", "early", "as_of_ts", "elapsed_minutes",
)


def alert_record(alert: dict, silenced: bool = False) -> dict:
    """The alerts.jsonl line of an alert snapshot (no history: the chart has it)."""
    record = {k: alert.get(k) for k in ALERT_FIELDS}
    record["silenced"] = silenced
    if record["resolved_at"] is None:
        del record["resolved_at"]
    for key in ALERT_FIELDS[27:]:   # absent from snapshots of older workers: not written as null
        if key not in alert:
            del record[key]
    return record


def console_line(alert: dict, silenced: bool = False) -> str:
    """One readable line, e.g. ``[CRITICAL] OPEN 1a2b… payment_failure_rate all/all 41.2% ...``."""
    kpi = alert["kpi"]
    value, expected = float(alert["value"]), float(alert["expected"])
    d = digits_for(alert)   # a value that differs from the expected one reads differently
    rel = format_change(value, expected, kpi, d)[1]
    related = series_names(alert.get("related") or [])
    parts = [
        f"[{str(alert['severity']).upper()}]", str(alert["status"]).upper(), alert["id"],
        clean_event_text(f"{kpi} {alert['segment']}/{alert['channel']}", 120),
        f"{format_value(value, kpi, d)} (expected {format_value(expected, kpi, d)}, {rel})",
        f"score {float(alert['score']):.2f}", f"since {alert['since']}",
    ]
    if related:
        parts.append(f"related: {related}")
    if alert.get("reason") and alert["status"] != "open":
        parts.append(f"({clean_event_text(alert['reason'], 120)})")
    if silenced:
        parts.append("[silenced]")
    line = " ".join(parts)
    if alert["status"] == "open" and alert.get("explanation"):
        line += f"\n    {alert['explanation_source']}: {alert['explanation']}"
    return line


class ConsoleSink:
    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, alert: dict, silenced: bool = False) -> None:
        print(console_line(alert, silenced), file=self.stream, flush=True)


class JsonlSink:
    """Appends one JSON line per alert state change to ``path``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, alert: dict, silenced: bool = False) -> None:
        line = json.dumps(alert_record(alert, silenced), ensure_ascii=False, default=str)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
