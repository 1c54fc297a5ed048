"""Daily digest: ``kpis`` and ``alerts`` in; one digest per UTC day to ``digest.jsonl`` and Slack.

The digest is alerting/digest.py (plain Python); this agent feeds it both topics through one
channel and hands finished days to :class:`alerting.digest_delivery.DigestPublisher`. A day is
finished when the ``window_closed`` marker one window after its end arrives on ``kpis``: by then
the alert changes of the day's last window (published by the alerts agent right after it sees
that window's marker) have arrived on ``alerts``. Days ending before ``PULSE_NOTIFY_AFTER``
(the demo's history, a backfill) are written with the template summary and never posted.
The builder is checkpointed to the data dir (our own pickle file), so a restart neither loses
the week of daily values nor posts a day twice.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

from alerting.digest import HEADLINE_KPIS, DigestBuilder
from alerting.digest_delivery import DigestPublisher
from kpis.messages import docs_in
from stream.agents.alerts import record_call
from stream.app import app, commit, owns, settings
from stream.checkpoint import Checkpoint

__all__ = ["digest_inputs", "daily_digest"]

log = logging.getLogger(__name__)

digest_inputs = app.topic(settings.topic("kpis"), settings.topic("alerts"), key_serializer="raw",
                          value_serializer="raw", partitions=1)

SAVE_EVERY_S = 2.0
RETRY_SLACK_EVERY_S = 30.0


def _builder(checkpoint: Checkpoint) -> DigestBuilder:
    saved = checkpoint.load()
    if isinstance(saved, DigestBuilder) and saved.window_s == settings.window_seconds:
        return saved
    return DigestBuilder(window_s=settings.window_seconds)


@app.agent(digest_inputs)
async def daily_digest(stream: Any) -> None:
    """Consumes ``kpis`` and ``alerts``; writes each day's digest to ``digest.jsonl`` and posts
    the live ones to Slack."""
    data = Path(settings.data_dir)
    checkpoint = Checkpoint(data / "checkpoints" / f"{settings.app_id}-digest.pkl")
    builder = _builder(checkpoint)
    publisher = DigestPublisher(settings, settings.digest_file or data / "digest.jsonl",
                                observer=record_call)
    alerts_name = settings.topic("alerts")
    saved = retried = time.monotonic()
    try:
        async for event in stream.events():
            if event.message.topic == alerts_name:
                builder.add_alert(orjson.loads(event.value))
                continue
            try:
                docs = docs_in(event.value)
            except Exception as exc:   # not ours: say so, keep building
                log.error("skipped a kpis message that is not KPI documents (%s)", exc)
                continue
            for doc in docs:
                closed = doc.get("kind") == "window_closed"
                if not closed and doc.get("kpi") not in HEADLINE_KPIS:
                    continue   # a KPI the digest does not show
                for digest in builder.add_message(doc):
                    live = digest["day_end_ts"] >= settings.notify_after
                    await publisher.publish(digest, live=live)
                    if live:   # never post a day twice; a backlog's days are saved below
                        checkpoint.save(builder)
                        saved = time.monotonic()
                    log.info("daily digest for %s written%s", digest["day"],
                             " and sent" if live and publisher.slack_enabled else "")
                if not closed:
                    continue
                now = time.monotonic()
                if now - saved >= SAVE_EVERY_S:
                    checkpoint.save(builder)
                    await commit(settings.topic("kpis"), alerts_name)
                    saved = now
                if publisher.outbox.pending and now - retried >= RETRY_SLACK_EVERY_S:
                    retried = now
                    await publisher.flush()
    finally:
        if owns(settings.topic("kpis")):   # not if another worker builds the digests now
            checkpoint.save(builder)
        await publisher.close()
