"""KPI windows, second stage: every partition's closed windows in, the KPIs out.

Consumes ``kpi-partials`` (stream/agents/kpis.py: each input partition's closed windows as
integer sums, from whichever workers read those partitions), adds the partitions up in a
:class:`~kpis.merger.KpiMerger` and, once every partition has closed a window, publishes its
KPIs to ``kpis`` — one message per window: a document per KPI carrying every series, so the
detector agent sees a KPI's segments and channels together, then a ``window_closed`` marker
(kpis/messages.py) — and sets the
``pulse_kpi`` gauges. ``kpi-partials`` has one partition, so one worker of the group merges;
its state is checkpointed with the next offset due and resumed through stream/resume.py, like
every agent's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

from kpis.merger import KpiMerger, KpiSnapshot
from kpis.messages import group_snapshots, is_running, window_messages
from kpis.partials import Partial
from stream import metrics
from stream.agents.kpis import dead_letter_doc, dead_letters_topic, kpi_partials_topic
from stream.app import app, make_resume, owns, settings
from stream.checkpoint import Checkpoint
from stream.custody import Custody
from stream.events import Rejected
from stream.internal import partials_in
from stream.resume import Offsets

__all__ = ["kpis_topic", "merge_windows", "publish", "MergeState", "dead_letter"]

log = logging.getLogger(__name__)

kpis_topic = app.topic(settings.topic("kpis"), key_serializer="raw", value_serializer="raw",
                       partitions=1)

CHECKPOINT_EVERY_S = 2.0


class MergeState:
    """What the merge agent checkpoints: the merger, and the next ``kpi-partials`` offset."""

    def __init__(self) -> None:
        self.merger: KpiMerger | None = None
        self.next_offset: int | None = None

    def start_over(self) -> None:
        """After a broker reset: the partitions' windows start over, so does their sum."""
        self.merger, self.next_offset = None, None

    def offsets(self, topic: str) -> Offsets:
        return {} if self.next_offset is None else {(topic, 0): self.next_offset}

    def at(self, offsets: Offsets, topic: str) -> MergeState:
        """Itself, saying it covers ``kpi-partials`` up to the due offset of ``offsets``."""
        self.next_offset = offsets.get((topic, 0), self.next_offset)
        return self

    def add(self, partials: list[Partial]) -> list[KpiSnapshot]:
        out: list[KpiSnapshot] = []
        early_from = settings.early_from(time.time())   # as the KPI stage did, a moment later
        for partition, partitions, closed_before, windows, peeks in partials:
            if self.merger is None:
                self.merger = KpiMerger(settings.window_seconds, partitions)
            elif partitions != self.merger.partitions:
                log.error("the events topic now has %d partitions, the KPI windows were built "
                          "for %d: users moved partitions, so per-user KPIs are wrong until the "
                          "state is rebuilt; start from an empty PULSE_DATA_DIR and new topics",
                          partitions, self.merger.partitions)
                self.merger.partitions = max(partitions, self.merger.partitions)
            self.merger.peek_from = early_from
            out += self.merger.add(partition, closed_before, windows, peeks)
        return out


def _checkpoint() -> Checkpoint:
    name = f"{settings.app_id}-{settings.topic('kpi-partials')}-merge.ckpt"
    return Checkpoint(Path(settings.data_dir) / "checkpoints" / name, app_id=settings.app_id,
                      topics=(settings.topic("kpi-partials"),))


@app.agent(kpi_partials_topic)
async def merge_windows(stream: Any) -> None:
    """Consumes ``kpi-partials``; publishes complete windows' KPIs to ``kpis``."""
    topic = settings.topic("kpi-partials")
    checkpoint, custody = _checkpoint(), Custody(topic)
    state = MergeState()

    def start_over() -> None:
        state.start_over()

    resume = make_resume((topic,), lambda offsets: checkpoint.save(state.at(offsets, topic)),
                         CHECKPOINT_EVERY_S, on_reset=start_over)
    try:
        async for event in stream.events():
            msg = event.message
            if custody.gained():   # (again) this worker's: the last reader's state, not ours
                saved = checkpoint.load()
                state = saved if isinstance(saved, MergeState) else MergeState()
                resume.resumed((topic, 0), state.next_offset)
            async for rec in resume.records(msg.topic, msg.partition, msg.offset, event.value,
                                            msg.timestamp):
                partials, bad = partials_in(rec.value, _events_partitions(),
                                            settings.window_seconds)
                if bad is not None and not rec.replayed:
                    await dead_letter(bad, rec.topic, rec.partition, rec.offset)
                await publish(state.add(partials))
            await resume.checkpoint()
    finally:
        if owns(topic):   # not if another worker merges now
            checkpoint.save(state.at(resume.due, topic))


def _events_partitions() -> int | None:
    """The ``events`` topic's partition count, as the consumer's metadata knows it."""
    try:
        return app.consumer.topic_partitions(settings.topic("events")) or None
    except Exception:   # no metadata yet
        return None


async def dead_letter(rej: Rejected, topic: str, partition: int, offset: int) -> None:
    """A message of an internal topic that the agent cannot use, to ``dead-letters``
    (stream/internal.py says why)."""
    log.error("dead-lettered %s message %d (%s: %s)", topic, offset, rej.reason, rej.detail)
    metrics.DEAD_LETTERS.labels(rej.reason).inc()
    await dead_letters_topic.send(key=rej.reason.encode(),
                                  value=orjson.dumps(dead_letter_doc(rej, topic, partition,
                                                                     offset)))


async def publish(snaps: list[KpiSnapshot]) -> None:
    """Send closed windows to ``kpis``: one message per window, its KPI documents then a
    ``window_closed`` marker, so the next stages know the window is complete without waiting
    for the next one."""
    if not snaps:
        return
    messages = window_messages(group_snapshots(snaps))
    newest = max((m[-1]["window_start_ts"] for m in messages if not is_running(m[-1])),
                 default=None)
    for docs in messages:
        await kpis_topic.send(key=b"window", value=orjson.dumps(docs))
        if is_running(docs[-1]):
            continue   # an open window's running values: for the detectors, not the gauges
        marker = docs[-1]
        for doc in docs[:-1]:
            cohort = doc.get("cohort")
            # a backlog closes many windows at once: the gauges show the newest one's values
            if cohort is None and doc["window_start_ts"] != newest:
                continue
            for s in doc["series"]:
                if cohort is None:
                    metrics.KPI.labels(doc["kpi"], s["segment"], s["channel"]).set(s["value"])
                else:
                    metrics.COHORT_KPI.labels(doc["kpi"], cohort, s["segment"],
                                              s["channel"]).set(s["value"])
        metrics.WINDOWS_CLOSED.inc()
        metrics.WATERMARK.set(marker["window_end_ts"])
