"""Daily digest: ``kpis`` and ``alerts`` in; one digest per UTC day to ``digest.jsonl`` and Slack.

The digest is alerting/digest.py (plain Python); this agent feeds it both topics through one
channel and hands finished days to :class:`alerting.digest_delivery.DigestPublisher`. A day is
finished when the ``window_closed`` marker one window after its end arrives on ``kpis``: by then
the alert changes of the day's last window (published by the alerts agent right after it sees
that window's marker) have arrived on ``alerts``. Days ending before ``PULSE_NOTIFY_AFTER``
(the demo's history, a backfill) are written with the template summary and never posted.
The builder is checkpointed to the data dir (stream/checkpoint.py, with the next offset due of
both topics) and resumed through stream/resume.py, so a restart neither loses the week of daily
values nor posts a day twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alerting.digest import DIGEST_KPIS, DigestBuilder
from alerting.digest_delivery import DigestPublisher
from stream.agents.alerts import record_call
from stream.agents.merge import dead_letter
from stream.app import app, make_resume, owns, settings
from stream.checkpoint import Checkpoint, Resumable
from stream.custody import Custody
from stream.internal import alert_in, kpi_docs_in
from stream.resume import Resume

__all__ = ["digest_inputs", "daily_digest"]

log = logging.getLogger(__name__)

digest_inputs = app.topic(settings.topic("kpis"), settings.topic("alerts"), key_serializer="raw",
                          value_serializer="raw", partitions=1)

SAVE_EVERY_S = 2.0


def _saved(checkpoint: Checkpoint) -> Resumable:
    saved = checkpoint.load()
    if isinstance(saved, Resumable) and isinstance(saved.state, DigestBuilder) and \
            saved.state.window_s == settings.window_seconds:
        return saved
    return Resumable(DigestBuilder(window_s=settings.window_seconds))


async def on_kpis(builder: DigestBuilder, publisher: DigestPublisher, resume: Resume,
                  raw: bytes) -> bool:
    """One ``kpis`` message into the builder, each day it finishes written (and the live ones
    posted); True if it closed a window."""
    docs, bad = kpi_docs_in(raw, running=False)   # the detect agent dead-letters bad ones
    if bad:
        log.warning("skipped %d kpis documents the digest cannot use (%s)", len(bad),
                    bad[0].detail)
    closed = False
    for doc in docs:
        closed = closed or doc.get("kind") == "window_closed"
        if doc.get("kind") != "window_closed" and doc.get("kpi") not in DIGEST_KPIS:
            continue   # a KPI the digest does not show
        for digest in builder.add_message(doc):
            live = digest["day_end_ts"] >= settings.notify_after
            await publisher.publish(digest, live=live)
            if live:   # never post a day twice; a backlog's days are saved on the cadence
                await resume.checkpoint(force=True)
            log.info("daily digest for %s written%s", digest["day"],
                     " and sent" if live and publisher.slack_enabled else "")
    return closed


@app.agent(digest_inputs)
async def daily_digest(stream: Any) -> None:
    """Consumes ``kpis`` and ``alerts``; writes each day's digest to ``digest.jsonl`` and posts
    the live ones to Slack."""
    data = Path(settings.data_dir)
    kpis_name, alerts_name = settings.topic("kpis"), settings.topic("alerts")
    kpis_key, alerts_key = (kpis_name, 0), (alerts_name, 0)
    checkpoint = Checkpoint(data / "checkpoints" / f"{settings.app_id}-digest.ckpt",
                            app_id=settings.app_id, topics=(kpis_name, alerts_name))
    saved = _saved(checkpoint)
    builder: DigestBuilder = saved.state
    publisher = DigestPublisher(settings, settings.digest_file or data / "digest.jsonl",
                                observer=record_call)

    def start_over() -> None:   # a broker reset: the week of daily values starts over
        nonlocal builder
        builder = saved.state = DigestBuilder(window_s=settings.window_seconds)

    resume = make_resume((kpis_name, alerts_name),
                         lambda offsets: checkpoint.save(saved.at(offsets)), SAVE_EVERY_S,
                         due=saved.offsets, on_reset=start_over)
    custody = Custody(kpis_name)   # the alerts topic goes with it (both have one partition)
    try:
        async for event in stream.events():
            msg, closed = event.message, False
            if custody.gained():   # (again) this worker's: the last reader's days
                saved = _saved(checkpoint)
                builder = saved.state
                for key in (kpis_key, alerts_key):
                    resume.resumed(key, saved.offsets.get(key))
            async for rec in resume.records(msg.topic, msg.partition, msg.offset, event.value,
                                            msg.timestamp):
                if rec.topic == alerts_name:
                    alert, bad = alert_in(rec.value)
                    if alert is not None:
                        builder.add_alert(alert)
                    elif bad is not None and not rec.replayed:
                        await dead_letter(bad, rec.topic, rec.partition, rec.offset)
                else:
                    closed = await on_kpis(builder, publisher, resume, rec.value or b"") or closed
            if closed:
                await resume.checkpoint()
    finally:
        if owns(kpis_name):   # not if another worker builds the digests now
            checkpoint.save(saved.at(resume.due))
        await publisher.close()
