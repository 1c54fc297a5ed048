"""Alerts: ``anomalies`` in; alert changes to the console sinks, ``alerts.jsonl``, Slack and the
``alerts`` topic out.

The lifecycle, Slack delivery and explanations are alerting/ (plain Python); this agent feeds it
and checkpoints its state at every closed window. Slack and the model are used only when
configured (``SLACK_BOT_TOKEN`` + ``PULSE_SLACK_CHANNEL``, ``ANTHROPIC_API_KEY``) and only for
windows after ``PULSE_NOTIFY_AFTER``, so a demo's history or a backfill is recorded, not posted.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

from alerting import AlertService
from alerting.sink import alert_record
from stream import metrics
from stream.agents.detect import anomalies_topic
from stream.app import app, commit, settings

__all__ = ["alerts_topic", "alert_changes"]

log = logging.getLogger(__name__)

alerts_topic = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw",
                         partitions=1)


def make_service() -> AlertService:
    data = Path(settings.data_dir)
    return AlertService(settings, notify=True, console=None,
                        alerts_path=settings.alerts_file or data / "alerts.jsonl",
                        state_path=data / "checkpoints" / f"{settings.app_id}-alerts.pkl",
                        observer=record_call)


def record_call(service: str, outcome: str, seconds: float) -> None:
    """Count and time a Slack or model call (``pulse_slack_calls_total`` and friends)."""
    if service == "slack":
        metrics.SLACK_CALLS.labels(outcome).inc()
        metrics.SLACK_LATENCY.observe(seconds)
    else:
        metrics.LLM_CALLS.labels(outcome).inc()
        metrics.LLM_LATENCY.observe(seconds)


@app.agent(anomalies_topic)
async def alert_changes(stream: Any) -> None:
    """Consumes ``anomalies``; publishes every alert state change to ``alerts``."""
    service = make_service()
    can_post, can_explain = service.slack_enabled, service.notify
    if settings.feedback_port:
        port = await service.serve_feedback("0.0.0.0", settings.feedback_port,
                                            settings.slack_signing_secret or None)
        log.info("Slack interactivity endpoint on port %d: POST /slack/actions", port)
    saved = 0.0
    try:
        async for raw in stream:
            msg = orjson.loads(raw)
            live = float(msg.get("window_end_ts", 0.0)) >= settings.notify_after
            service.slack_enabled, service.notify = can_post and live, can_explain and live
            for change in await service.handle(msg):
                metrics.ALERTS.labels(change.status).inc()
                await alerts_topic.send(key=change.alert["id"].encode(),
                                        value=orjson.dumps(alert_record(change.alert)))
            if msg.get("kind") == "window_closed" and time.monotonic() - saved >= 1.0:
                service.checkpoint()
                await commit(settings.topic("anomalies"))
                saved = time.monotonic()
    finally:
        await service.close()
