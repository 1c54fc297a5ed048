"""Where a finished daily digest goes: ``digest.jsonl``, a PNG beside it, and Slack.

:class:`DigestPublisher` takes the documents :class:`alerting.digest.DigestBuilder` makes. A
*live* day (its end at or after ``PULSE_NOTIFY_AFTER``) gets the model's summary when a key is
set (template otherwise), its seven-day chart drawn to ``digest-<day>.png`` beside
``digest.jsonl``, and — when Slack is configured — one message with the chart in its thread,
through the same client, retries and persisted outbox as alerts (``digest_outbox.jsonl`` in the
data dir, keyed by day, so a digest is posted once even across an outage or a restart). Days
before it (a demo's history, a backfill) are only written to ``digest.jsonl``, with the template
summary and no chart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from alerting.digest import CHART_KPIS
from alerting.digest_words import format_pct, summarise
from alerting.drawing import week_png
from alerting.escape import escape_mrkdwn, truncate
from alerting.evidence import format_value, kpi_label, where
from alerting.explain import Explainer, make_explainer
from alerting.outbox import Delivery, DeliveryError, Outbox, observed_call
from alerting.sender import Sender
from alerting.slack import SlackPoster, make_slack_client
from core.settings import Settings

__all__ = ["DigestPublisher", "digest_message"]

log = logging.getLogger(__name__)

_MET = {True: ":white_check_mark: met", False: ":x: missed", None: ""}


def _e(text: object, limit: int = 300) -> str:
    return escape_mrkdwn(truncate(str(text), limit))


def digest_message(doc: dict) -> tuple[str, list[dict]]:
    """(top-level text, Block Kit blocks) of a digest; event text and the model's words are
    escaped, and block limits kept (10 fields a section, 2,000 characters a field)."""
    targeted = [r for r in doc["headline"] if r["met"] is not None]
    met = sum(1 for r in targeted if r["met"])
    text = _e(f"Pulse daily digest for {doc['day']}: {met} of {len(targeted)} targets met, "
              f"{len(doc['alerts'])} alert(s) during the day. {doc['summary']}", 2900)
    fields = []
    for r in doc["headline"]:
        kpi = r["kpi"]
        line = f"*{_e(r['title'], 80)}*\n{format_value(r['value'], kpi)}"
        if r["target"] is not None:
            line += f" · target {r['target_is']} {format_value(r['target'], kpi)} {_MET[r['met']]}"
        line += f"\nlast week {format_value(r['last_week'], kpi)} ({format_pct(r['change'])})"
        fields.append({"type": "mrkdwn", "text": truncate(line, 2000)})
    source = "Claude" if doc["summary_source"] == "llm" else "template"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": truncate(f"Daily digest · {doc['day']}", 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            f"*Summary* _({source})_\n{_e(doc['summary'], 2800)}", 3000)}},
    ]
    blocks += [{"type": "section", "fields": fields[i:i + 10]} for i in range(0, len(fields), 10)]
    movers = [f"• {_e(kpi_label(m['kpi']), 80)} ({_e(where(m['segment'], m['channel']), 140)}): "
              f"{format_value(m['value'], m['kpi'])} vs {format_value(m['last_week'], m['kpi'])}"
              f" ({format_pct(m['change'])})" for m in doc["movers"]]
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(
        "*Top movers vs the same day last week*\n" + ("\n".join(movers) or "none"), 3000)}})
    alerts = [f"• {_e(str(a['severity']).capitalize(), 20)} · {_e(a['status'], 20)} · "
              f"{_e(kpi_label(str(a['kpi'])), 80)} "
              f"({_e(where(str(a['segment']), str(a['channel'])), 140)}) · "
              f"alert `{_e(a['id'], 20)}`"
              for a in doc["alerts"][:15]]
    if len(doc["alerts"]) > 15:
        alerts.append(f"and {len(doc['alerts']) - 15} more")
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(
        "*Alerts of the day*\n" + ("\n".join(alerts) or "none"), 3000)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(
        f"{doc['day_start']} – {doc['day_end']} · {doc['windows']} windows · "
        "values per UTC day; chart of the last seven days in the thread", 3000)}]})
    return text, blocks


class DigestPublisher:
    """Writes digests to ``path`` (JSON lines) and posts the live ones to Slack.

    Parameters
    ----------
    settings
        Slack token, channel and URL, Anthropic settings, ``data_dir`` (the outbox).
    path
        The ``digest.jsonl`` file; charts are written in its directory.
    notify
        Post to Slack and ask the model (live days only, see :meth:`publish`).
    slack_client, explainer
        Injected clients (default: built from settings, as alerts do).
    observer
        Called with ``(service, outcome, seconds)`` after each Slack and model call.
    """

    def __init__(self, settings: Settings, path: str | os.PathLike[str], *, notify: bool = True,
                 slack_client: AsyncWebClient | None = None, explainer: Explainer | None = None,
                 charts: bool = True,
                 observer: Callable[[str, str, float], None] | None = None):
        self.settings = settings
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.notify = notify
        self.charts = charts
        self.observer = observer
        self.slack_enabled = bool(notify and settings.slack_token and settings.slack_channel)
        self.poster = SlackPoster(slack_client or make_slack_client(settings)) if (
            self.slack_enabled) else None
        self.outbox = Outbox(Path(settings.data_dir) / "digest_outbox.jsonl")
        self.sender = Sender(self.outbox, self._send)   # the send loop alerts use too
        self._written: set[str] | None = None   # days in the file (read at the first publish)
        self.explainer = explainer if explainer is not None else make_explainer(settings)

    async def publish(self, doc: dict, live: bool) -> dict:
        """Summarise and chart a live day, append ``doc`` to ``digest.jsonl``, queue and send
        its Slack message; returns the document as written. A day already in the file is not
        written again (a worker restarted from a checkpoint older than its last digest makes
        that day again)."""
        if self._written is None:
            self._written = _days_in(self.path)
        written = self._written
        if doc["day"] in written:
            return doc
        if live and self.notify:
            started = time.monotonic()
            try:
                doc["summary"], doc["summary_source"] = await summarise(doc, self.explainer)
            except Exception:  # the template summary is already in doc: the day is not lost
                self._observe("llm", "error", time.monotonic() - started)
                log.exception("digest summary failed for %s; keeping the template", doc["day"])
            else:
                if self.explainer.enabled:
                    self._observe("llm", "ok" if doc["summary_source"] == "llm" else "fallback",
                                  time.monotonic() - started)
        if live and self.charts:
            doc["chart"] = await self._draw(doc)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        written.add(doc["day"])
        if live and self.slack_enabled:
            text, blocks = digest_message(doc)
            key, channel = f"digest:{doc['day']}", self.settings.slack_channel
            self.outbox.add(Delivery(f"{key}:post", "post", key, channel, text, blocks))
            if doc["chart"]:
                self.outbox.add(Delivery(f"{key}:chart", "chart", key, channel, chart={
                    "path": str(self.path.parent / doc["chart"]), "day": doc["day"]}))
            if not await self.flush():
                self.sender.kick()   # Slack unavailable: the send loop retries
        return doc

    async def _draw(self, doc: dict) -> str | None:
        """The week chart of ``doc``, written beside digest.jsonl; its file name, or None."""
        png = await week_png(doc["week"], CHART_KPIS, f"Daily KPIs, week to {doc['day']} (UTC)")
        if png is None:
            return None
        name = f"digest-{doc['day']}.png"
        await asyncio.to_thread((self.path.parent / name).write_bytes, png)
        return name

    async def flush(self) -> bool:
        """Send pending Slack deliveries; True when none is left (False: Slack unavailable,
        they stay in the outbox for the next call)."""
        if self.poster is None:
            return True
        return await self.sender.flush()

    async def _send(self, d: Delivery, thread_ts: str | None) -> str | None:
        return await observed_call(self.observer, "slack", self._deliver(d, thread_ts))

    async def _deliver(self, d: Delivery, thread_ts: str | None) -> str | None:
        assert self.poster is not None
        if d.kind == "post":
            return await self.poster.post(d.channel, d.text, d.blocks, key=d.key,
                                          earlier_attempt=d.earlier_attempt)
        if d.kind == "chart" and d.chart is not None and thread_ts is not None:
            try:
                png = Path(d.chart["path"]).read_bytes()
            except OSError as e:
                raise DeliveryError(f"digest chart unreadable: {e}", retryable=False) from e
            await self.poster.upload_png(d.channel, thread_ts, png, Path(d.chart["path"]).name,
                                         f"Daily KPIs, week to {d.chart['day']}",
                                         earlier_attempt=d.earlier_attempt)
            return None
        raise DeliveryError(f"unknown digest delivery kind {d.kind!r}", retryable=False)

    def _observe(self, service: str, outcome: str, seconds: float) -> None:
        if self.observer is not None:
            self.observer(service, outcome, seconds)

    async def close(self, timeout: float = 5.0) -> None:
        if self.poster is not None:
            await self.sender.close(timeout)
        await self.explainer.close()


def _days_in(path: Path) -> set[str]:
    """The days of the digests already in ``path`` (unreadable lines are skipped)."""
    days: set[str] = set()
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    days.add(str(json.loads(line)["day"]))
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return days
