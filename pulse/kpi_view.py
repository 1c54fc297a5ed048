"""Watch the pipeline's output topics: write ``kpis.jsonl`` and ``anomalies.jsonl``, show the
KPIs as windows close and every alert change as it happens.

On a terminal the overall KPIs of the newest window are redrawn in place as a table, with the
latest alerts under it; elsewhere (CI, a pipe) one concise line per window and per alert change
is printed. During the history phase only a progress bar is shown: hundreds of windows a second
are not for reading.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer

from alerting.change_words import what_changed
from alerting.escape import clean_event_text
from alerting.evidence import abnormal_for, digits_for, format_value, kpi_label, where
from kpis import KPIS
from kpis.formulas import KPI_BY_ID
from kpis.messages import docs_in, is_running
from stream.kpi_state import series_rows

__all__ = ["KpiView", "alert_line"]

_SHORT = {"signups": "signups", "scans": "scans", "match_rate": "match rate",
          "conversion_rate": "conversion", "payment_failure_rate": "payment failures",
          "revenue": "revenue", "mrr": "MRR", "churn_rate": "churn"}
"""The KPIs of a window's one-line summary off a terminal, with the words that name them."""


MIN_SHOWN_N = 20
"""A ratio of fewer events than this is shown with its sample size ("72.0% of 3"), or as the
counts it is made of (:data:`_COUNTS`)."""

_COUNTS = {"conversion_rate": ("paid", "signup"), "payment_failure_rate": ("failed", "payment")}
"""Ratios of two counts, shown as those counts when few: the first payments of a window come
from signups of earlier windows too, so 2 of 1 signup would read "200.0%"."""


def alert_line(alert: dict[str, Any], width: int | None = None) -> str:
    """One alert change: severity, status, what moved, by how much, since when; in KPI labels,
    wrapped at words to ``width`` columns (None: one line)."""
    kpi = str(alert.get("kpi"))
    seg, ch = str(alert.get("segment")), str(alert.get("channel"))
    scope = "" if seg == ch == "all" else f" ({where(seg, ch)})"
    value, expected = float(alert.get("value") or 0.0), float(alert.get("expected") or 0.0)
    related = sorted({kpi_label(str(r.get("kpi"))) for r in alert.get("related") or []}
                     - {kpi_label(kpi)})
    when = str(alert.get("window_start") or "").replace("T", " ").replace(":00Z", " UTC")
    d = digits_for(alert)   # 2.71% (expected 2.66%), not 2.7% (expected 2.7%)
    status = str(alert.get("status"))
    numbers = f"{format_value(value, kpi, d)} (expected {format_value(expected, kpi, d)})"
    text = f"[{str(alert.get('severity')).upper()}] {status.upper():<8} {kpi_label(kpi)}{scope}: "
    if status == "resolved":   # the numbers are the last abnormal ones, not today's
        text += (f"back to normal after {abnormal_for(alert)}; last abnormal {numbers} in the "
                 f"window of {when}")
    else:
        text += f"{numbers}, window {when}"
        if related:
            text += f"; with {', '.join(related)}"
        what = what_changed(alert) if status != "open" else []
        if what:   # what changed: two updates differ by it
            text += f" — {clean_event_text('. '.join(what), 200)}"
    lines = [text]
    if alert.get("status") == "open" and alert.get("explanation"):
        lines.append(str(alert["explanation"]))
    if width is None:
        return "\n      ".join(lines)
    out: list[str] = []
    for i, line in enumerate(lines):
        out += textwrap.wrap(line, width=max(width, 40), initial_indent="" if i == 0 else "  ",
                             subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(out)


def shown_value(kpi: str, value: float | None, n: float | None) -> str:
    """A KPI value for the terminal: a ratio of few events with its sample size."""
    text = format_value(value, kpi)
    kdef = KPI_BY_ID.get(kpi)
    if (kdef is not None and kdef.unit.startswith("ratio") and n is not None
            and n < MIN_SHOWN_N and "%" in text):
        if kpi in _COUNTS and value is not None:
            part, whole = _COUNTS[kpi]
            return f"{value * n:,.0f} {part} of {n:,.0f} {whole}{'' if n == 1 else 's'}"
        return f"{text} of {n:,.0f}"
    return text


class KpiView:
    def __init__(self, bootstrap: str, topic: str, *, out_path: Path | None = None,
                 anomalies_topic: str | None = None, anomalies_path: Path | None = None,
                 alerts_topic: str | None = None,
                 quiet: bool = False, started: float | None = None,
                 stream: IO[str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.out_path = out_path
        self.anomalies_topic = anomalies_topic
        self.anomalies_path = anomalies_path
        self.alerts_topic = alerts_topic
        self.anomalies_seen = 0
        self.alert_changes: list[dict[str, Any]] = []
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.started = started or time.monotonic()
        self.live = False
        self.windows_seen = 0
        self.lines_written = 0
        self.first_kpi_after: float | None = None
        self.latest_end = 0.0
        self._current: dict[str, Any] = {}      # kpi -> overall value of the newest window
        self._current_end = 0.0
        self._current_n: dict[str, Any] = {}    # kpi -> its n (sample size)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        topics = [t for t in (self.topic, self.anomalies_topic, self.alerts_topic) if t]
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out = open(self.out_path, "ab") if self.out_path else None  # noqa: SIM115
        anomalies = open(self.anomalies_path, "ab") if self.anomalies_path else None  # noqa: SIM115
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        if rec.topic == self.topic:
                            for doc in docs_in(rec.value):
                                self._on_message(doc, out)
                            continue
                        doc = orjson.loads(rec.value)
                        if rec.topic == self.anomalies_topic:
                            if "kpi" in doc:
                                self.anomalies_seen += 1
                                if anomalies:
                                    anomalies.write(orjson.dumps(doc) + b"\n")
                        else:
                            self._on_alert(doc)
                for f in (out, anomalies):
                    if f:
                        f.flush()
        finally:
            await consumer.stop()
            for f in (out, anomalies):
                if f:
                    f.close()
            self._show_window()

    def _on_message(self, doc: dict[str, Any], out: IO[bytes] | None) -> None:
        if "series" not in doc or is_running(doc):   # a marker / an open window's running values
            return
        if self.first_kpi_after is None:
            self.first_kpi_after = time.monotonic() - self.started
        end = doc["window_end_ts"]
        if end > self._current_end:
            if self._current:
                self._show_window()
            self._current, self._current_end = {}, end
            self._current_n = {}
            self.windows_seen += 1
        self.latest_end = max(self.latest_end, end)
        if "cohort" not in doc:
            for s in doc["series"]:
                if s["segment"] == "all" and s["channel"] == "all":
                    self._current[doc["kpi"]] = s["value"]
                    self._current_n[doc["kpi"]] = s.get("n")
        lines = [orjson.dumps(row) for row in series_rows(doc)]
        self.lines_written += len(lines)
        if out:
            out.write(b"\n".join(lines) + b"\n")

    def _on_alert(self, alert: dict[str, Any]) -> None:
        self.alert_changes.append(alert)
        if self.quiet or not self.live:
            return
        line = alert_line(alert, width=shutil.get_terminal_size((100, 24)).columns - 1)
        if not self.tty:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _show_window(self) -> None:
        if self.quiet or not self.live or not self._current:
            return
        when = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(self._current_end - 3600))
                + time.strftime("–%H:%M UTC", time.gmtime(self._current_end)))
        if self.tty:
            rows = [f"\x1b[2J\x1b[HJobMetrics Pulse — overall KPIs, window ending "
                    f"{time.strftime('%a %Y-%m-%d %H:%M UTC', time.gmtime(self._current_end))}",
                    ""]
            for k in KPIS:
                if k.id in self._current:
                    target = f"  (target {format_value(k.target, k.id)})" if k.target else ""
                    shown = shown_value(k.id, self._current[k.id], self._current_n.get(k.id))
                    rows.append(f"  {k.title:<28} {shown:>22}{target}")   # "12 paid of 19 signups"
            recent = [a for a in self.alert_changes if a.get("status")][-6:]
            if recent:
                cols = shutil.get_terminal_size((100, 24)).columns
                rows.append("\n  Latest alert changes:")
                rows.extend(textwrap.indent(alert_line(a, width=cols - 3), "  ")
                            for a in recent)
            rows.append(f"\n  {self.windows_seen} windows closed, {self.anomalies_seen} "
                        f"anomalies, {len(self.alert_changes)} alert changes; Ctrl-C stops.")
            self.stream.write("\n".join(rows) + "\n")
        else:
            parts = [f"{word} {shown_value(k, self._current[k], self._current_n.get(k))}"
                     for k, word in _SHORT.items() if k in self._current]
            self.stream.write(f"{when}  " + " · ".join(parts) + "\n")
        self.stream.flush()

    async def wait_for_window_end(self, end: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.latest_end >= end:
                await asyncio.sleep(0.5)   # let the last window's other KPIs arrive
                return True
            await asyncio.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
