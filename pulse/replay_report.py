"""What a replay found, as tables: its alerts, and how they line up with ground-truth incidents.

Matching is ``pulse evaluate``'s (:mod:`evaluation.matching`): a series of an alert (its lead or
one of its related series, in any of its alerts.jsonl records) *matches* an incident when its KPI
is one of the incident's KPIs, it covers affected users (segment ``all`` or the incident's
segment, or the incident is on every segment; the same for channels) and its window starts in
``[start of the window holding the incident's start, incident end + 2 windows)``.

- **Delay** of a detected incident: windows from the one holding its start to the window of the
  first matching series in alerts.jsonl order (0: flagged in the window where it began).
- **Missed**: no alert matches the incident.
- **False alarm**: an alert none of whose series ever matches an incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.timefmt import parse_utc
from evaluation.matching import IncidentScope, delay_windows, scope_of

__all__ = ["AlertRow", "IncidentRow", "ReplaySummary", "compare_table", "load_jsonl",
           "summarize", "summary_text"]

def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file (blank and broken lines skipped)."""
    out: list[dict[str, Any]] = []
    p = Path(path)
    if not p.exists():
        return out
    for raw in p.read_bytes().splitlines():
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _short(iso: str | None) -> str:
    """``2026-11-21T10:00:00Z`` -> ``2026-11-21 10:00``."""
    return (iso or "")[:16].replace("T", " ")


@dataclass
class AlertRow:
    id: str
    kpi: str
    segment: str
    channel: str
    severity: str
    detected: str            # window_start of the lead when the alert opened
    resolved_at: str = ""
    incidents: list[str] = field(default_factory=list)


@dataclass
class IncidentRow:
    id: str
    kind: str
    start: str
    alert: str = ""          # first matching alert id
    detected: str = ""       # window of the first matching series
    delay_windows: int | None = None

    @property
    def missed(self) -> bool:
        return self.delay_windows is None


@dataclass
class ReplaySummary:
    alerts: list[AlertRow]
    incidents: list[IncidentRow] | None   # None: no ground truth came with the file
    changes: int = 0

    @property
    def false_alarms(self) -> list[AlertRow]:
        return [a for a in self.alerts if not a.incidents] if self.incidents is not None else []


def _entries(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The series an alerts.jsonl record shows: its lead, then its related series."""
    lead = {k: rec.get(k) for k in ("kpi", "segment", "channel", "window_start")}
    return [lead, *(r for r in rec.get("related") or () if isinstance(r, dict))]


def _matches(scope: IncidentScope, entry: dict[str, Any]) -> bool:
    # the series first: a lead's window_start is only read when its series covers the incident
    return (scope.covers(entry.get("kpi"), entry.get("segment"), entry.get("channel"))
            and scope.in_windows(parse_utc(entry.get("window_start"))))


def summarize(alert_changes: Iterable[dict[str, Any]], incidents: list[dict[str, Any]] | None,
              window_s: float = 3600.0) -> ReplaySummary:
    """Alerts (one row per alert id, in order of opening) and incidents matched to them."""
    rows: dict[str, AlertRow] = {}
    firsts: dict[str, tuple[str, str]] = {}  # incident id -> (alert id, its window)
    changes = list(alert_changes)
    rank = {"warning": 1, "critical": 2}
    scopes = [(inc, scope_of(inc, window_s)) for inc in incidents or ()]
    for rec in changes:
        aid = str(rec.get("id"))
        row = rows.get(aid)
        if row is None:
            row = rows[aid] = AlertRow(aid, str(rec.get("kpi")), str(rec.get("segment")),
                                       str(rec.get("channel")), str(rec.get("severity")),
                                       _short(rec.get("window_start")))
        if rank.get(str(rec.get("severity")), 0) > rank.get(row.severity, 0):
            row.severity = str(rec.get("severity"))
        if rec.get("status") == "resolved":
            row.resolved_at = _short(rec.get("resolved_at"))
        elif rec.get("status") == "updated" and row.resolved_at:
            row.resolved_at = ""   # reopened
        for inc, scope in scopes:
            for entry in _entries(rec):
                if not _matches(scope, entry):
                    continue
                if inc["id"] not in row.incidents:
                    row.incidents.append(inc["id"])
                if inc["id"] not in firsts:
                    firsts[inc["id"]] = (aid, str(entry.get("window_start")))
                break
    inc_rows = None
    if incidents is not None:
        inc_rows = []
        for inc, scope in scopes:
            r = IncidentRow(str(inc["id"]), str(inc.get("kind", "")), _short(inc.get("start")))
            if inc["id"] in firsts:
                aid, window = firsts[inc["id"]]
                r.alert, r.detected = aid, _short(window)
                r.delay_windows = delay_windows(scope, parse_utc(window))
            inc_rows.append(r)
    return ReplaySummary(list(rows.values()), inc_rows, len(changes))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_text(s: ReplaySummary, title: str = "Replay") -> str:
    """The summary as Markdown (also readable as plain text)."""
    parts = [f"# {title}", ""]
    if s.alerts:
        parts.append(f"## Alerts ({len(s.alerts)} opened, {s.changes} changes)\n")
        parts.append(_table(
            ["alert", "KPI", "segment/channel", "severity", "first detection (window)",
             "resolved at", "incident"],
            [[a.id, a.kpi, f"{a.segment}/{a.channel}", a.severity, a.detected,
              a.resolved_at or "open", ", ".join(a.incidents) or
              ("FALSE ALARM" if s.incidents is not None else "")] for a in s.alerts]))
    else:
        parts.append("## Alerts\n\nNo alert opened.")
    if s.incidents is not None:
        found = sum(not i.missed for i in s.incidents)
        parts.append(f"\n## Incidents ({found} of {len(s.incidents)} detected, "
                     f"{len(s.false_alarms)} false alarms)\n")
        if s.incidents:
            parts.append(_table(
                ["incident", "kind", "start", "first matching alert", "detected (window)",
                 "delay"],
                [[i.id, i.kind, i.start, i.alert or "-", i.detected or "-",
                  "MISSED" if i.missed else _windows(i.delay_windows)]
                 for i in s.incidents]))
        else:
            parts.append("No incident in the ground truth.")
    else:
        parts.append("\nNo incidents.jsonl beside the file: no delays or false alarms.")
    return "\n".join(parts) + "\n"


def compare_table(a: ReplaySummary, b: ReplaySummary, name_a: str, name_b: str) -> str:
    """Side by side: alerts, severities, false alarms, and each incident's delay."""
    def count(s: ReplaySummary, sev: str) -> str:
        return str(sum(x.severity == sev for x in s.alerts))

    rows = [["alerts opened", str(len(a.alerts)), str(len(b.alerts))],
            ["critical", count(a, "critical"), count(b, "critical")],
            ["warning", count(a, "warning"), count(b, "warning")],
            ["alert changes", str(a.changes), str(b.changes)]]
    if a.incidents is not None and b.incidents is not None:
        rows.append(["false alarms", str(len(a.false_alarms)), str(len(b.false_alarms))])
        rows.append(["incidents detected",
                     f"{sum(not i.missed for i in a.incidents)} of {len(a.incidents)}",
                     f"{sum(not i.missed for i in b.incidents)} of {len(b.incidents)}"])
        for ia, ib in zip(a.incidents, b.incidents, strict=True):
            rows.append([f"delay: {ia.id} ({ia.kind}, {ia.start})", _delay(ia), _delay(ib)])
    return _table(["", name_a, name_b], rows) + "\n"


def _delay(i: IncidentRow) -> str:
    return "MISSED" if i.missed else f"{_windows(i.delay_windows)} ({i.alert})"


def _windows(n: int | None) -> str:
    return f"{n} window" if n == 1 else f"{n} windows"
