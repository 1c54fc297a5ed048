"""Alerts: ``anomalies`` in; alert changes to the console sinks, ``alerts.jsonl``, Slack and the
``alerts`` topic out.

The lifecycle, Slack delivery and explanations are alerting/ (plain Python); this agent feeds it
and checkpoints the lifecycle (stream/checkpoint.py, with the next offset due) after closed
windows, resuming through stream/resume.py like every agent. Slack and the model are used only
when configured (``SLACK_BOT_TOKEN`` + ``PULSE_SLACK_CHANNEL``, ``ANTHROPIC_API_KEY``) and only
for windows after ``PULSE_NOTIFY_AFTER``, so a demo's history or a backfill is recorded, not
posted. Changes handled again after a crash are the same changes (alert ids come from the
series and window): Slack deliveries are keyed by them, so none is posted twice, and the
checkpoint keeps where ``alerts`` ended when it was saved, so those found on the topic after
that are not published again (``Published``). Clicks, ``/pulse`` and @-mentions come in
through alerting/socket_mode.py (Socket Mode with
``SLACK_APP_TOKEN``; the HTTP endpoint only with ``SLACK_SIGNING_SECRET``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson

from alerting import AlertManager, AlertService
from alerting.sink import alert_record
from alerting.socket_mode import start_slack_inbound
from stream import metrics
from stream.agents.detect import anomalies_topic
from stream.agents.merge import dead_letter
from stream.app import app, make_resume, owns, settings
from stream.backfill import fetch_range
from stream.broker import log_end
from stream.checkpoint import Checkpoint, Resumable
from stream.custody import Custody
from stream.internal import anomaly_in
from stream.kpi_state import docs_from_topic

__all__ = ["alerts_topic", "alert_changes", "record_call"]

log = logging.getLogger(__name__)

alerts_topic = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw",
                         partitions=1)

SAVE_EVERY_S = 1.0


def _saved() -> tuple[Checkpoint, Resumable]:
    """The agent's checkpoint and what it holds (a fresh lifecycle when there is none, or it is
    refused: stream/checkpoint.py)."""
    folder = Path(settings.data_dir) / "checkpoints"
    checkpoint = Checkpoint(folder / f"{settings.app_id}-alerts.ckpt", app_id=settings.app_id,
                            topics=(settings.topic("anomalies"),))
    saved = checkpoint.load()
    if isinstance(saved, Resumable) and isinstance(saved.state, AlertManager):
        return checkpoint, saved
    return checkpoint, Resumable(AlertManager())


def make_service(manager: AlertManager) -> AlertService:
    alerts_path = settings.alerts_file or Path(settings.data_dir) / "alerts.jsonl"
    return AlertService(settings, notify=True, console=None, manager=manager,
                        alerts_path=alerts_path, observer=record_call)


async def load_store() -> Any:
    """The KPI state a question from Slack is answered from: the ``kpis`` and ``alerts``
    topics read from the start (``assistant.store.KpiStore``)."""
    from assistant.store import KpiStore  # only when a question comes

    kpis, alerts = await asyncio.gather(
        docs_from_topic(settings.kafka_bootstrap, settings.topic("kpis")),
        docs_from_topic(settings.kafka_bootstrap, settings.topic("alerts")))
    return await asyncio.to_thread(KpiStore.from_docs, kpis, alerts)


def record_call(service: str, outcome: str, seconds: float) -> None:
    """Count and time a Slack or model call (``pulse_slack_calls_total`` and friends)."""
    if service == "slack":
        metrics.SLACK_CALLS.labels(outcome).inc()
        metrics.SLACK_LATENCY.observe(seconds)
    else:
        metrics.LLM_CALLS.labels(outcome).inc()
        metrics.LLM_LATENCY.observe(seconds)


class Published:
    """The alerts agent's last send to ``alerts``, whose offset the next checkpoint keeps
    (``Resumable.outputs``), and what a worker that takes over finds published after it."""

    def __init__(self) -> None:
        self.topic = settings.topic("alerts")
        self.last: Awaitable[Any] | None = None   # the last send, its offset not read yet

    async def settled(self, outputs: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """``outputs`` after the last send (called after the producer's flush)."""
        if self.last is not None:
            last, self.last = self.last, None
            outputs = {**outputs, (self.topic, 0): (await last).offset + 1}
        return outputs

    async def since(self, outputs: dict[tuple[str, int], int]) -> set[str]:
        """The changes (``id:version``) on ``alerts`` after ``outputs``: sent after the last
        checkpoint, and sent again if not told (stream/checkpoint.py ``Resumable.outputs``).
        Under exactly_once the writes after the last commit were aborted: none."""
        self.last = None   # a send of the state being replaced
        if settings.processing_guarantee == "exactly_once":
            return set()
        start = outputs.get((self.topic, 0), 0)
        end = await log_end(settings.kafka_bootstrap, self.topic, 0)
        if end is None or end <= start:   # not known, nothing after, or another log
            return set()
        try:
            records = await fetch_range(settings.kafka_bootstrap, self.topic, 0, start, end,
                                        timeout_s=10.0)
        except Exception as exc:   # the broker away: at worst a change is published twice
            log.warning("could not read %s from offset %d (%s): alert changes published "
                        "after the last checkpoint may be published again", self.topic, start,
                        exc)
            return set()
        keys = set()
        for rec in records:
            try:
                doc = orjson.loads(rec.value or b"")
                keys.add(f"{doc['id']}:{doc['version']}")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue   # not an alert change: nothing this agent sent
        if keys:
            log.info("%d alert changes published after the last checkpoint (offsets %d-%d of "
                     "%s) are handled again and not published twice", len(keys), start,
                     end - 1, self.topic)
        return keys


async def handle(service: AlertService, msg: dict, can_post: bool, can_explain: bool,
                 published: Published) -> None:
    """One ``anomalies`` message: its alert changes to the sinks, Slack and ``alerts``."""
    live = float(msg.get("window_end_ts", 0.0)) >= settings.notify_after
    service.slack_enabled, service.notify = can_post and live, can_explain and live
    for change in await service.handle(msg):
        metrics.ALERTS.labels(change.status).inc()
        published.last = await alerts_topic.send(
            key=change.alert["id"].encode(), value=orjson.dumps(alert_record(change.alert)))


@app.agent(anomalies_topic)
async def alert_changes(stream: Any) -> None:
    """Consumes ``anomalies``; publishes every alert state change to ``alerts``."""
    topic = settings.topic("anomalies")
    checkpoint, saved = _saved()
    service = make_service(saved.state)
    custody = Custody(topic)
    published = Published()

    def start_over() -> None:   # a broker reset: the lifecycle starts over, as with no file
        saved.state = service.manager = AlertManager()
        saved.outputs, published.last = {}, None
        service.published_before.clear()

    async def save(offsets: dict[tuple[str, int], int]) -> None:
        checkpoint.save(saved.at(offsets, await published.settled(saved.outputs)))

    resume = make_resume((topic,), save, SAVE_EVERY_S, due=saved.offsets, on_reset=start_over)
    can_post, can_explain = service.slack_enabled, service.notify
    # clicks (HTTP endpoint with SLACK_SIGNING_SECRET, or Socket Mode with SLACK_APP_TOKEN),
    # /pulse and mentions; Socket Mode connects only while this worker reads the alerts
    inbound = await start_slack_inbound(service, settings, load_store,
                                        active=lambda: owns(topic))
    try:
        async for event in stream.events():
            msg, closed = event.message, False
            if custody.gained():   # (again) this worker's: the last reader's lifecycle
                checkpoint, saved = _saved()
                service.manager = saved.state
                service.published_before = await published.since(saved.outputs)
                resume.resumed((topic, 0), saved.offsets.get((topic, 0)))
            async for rec in resume.records(msg.topic, msg.partition, msg.offset, event.value,
                                            msg.timestamp):
                doc, bad = anomaly_in(rec.value)
                if doc is None:   # not an anomaly nor a marker: to dead-letters, once
                    if bad is not None and not rec.replayed:
                        await dead_letter(bad, rec.topic, rec.partition, rec.offset)
                    continue
                await handle(service, doc, can_post, can_explain, published)
                closed = closed or doc.get("kind") == "window_closed"
            if closed:
                await resume.checkpoint()
    finally:
        await inbound.close()
        await service.close()
        if owns(topic):   # not if another worker alerts now
            checkpoint.save(saved.at(resume.due))   # outputs as last saved (earlier: safe)
