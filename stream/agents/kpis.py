"""KPI windows: events in, one snapshot per KPI per closed event-time window out.

Consumes ``events`` (single events or JSON arrays of them, docs/events.md), validates them,
dead-letters what is bad with its reason, feeds the rest to the KPI engine (kpis/engine.py) and,
when the slowest partition's event time passes a window's end plus the allowed lateness, publishes
that window's KPIs to ``kpis`` — one message per (window, KPI) carrying every series, so the
detector agent sees a KPI's segments and channels together — and sets the ``pulse_kpi`` gauges.
"""

from __future__ import annotations

import base64
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from faust.types import TP

from kpis import KpiEngine, KpiSnapshot
from kpis.messages import group_snapshots, window_closed
from stream import metrics
from stream.app import app, settings
from stream.backfill import fetch_range, start_offsets
from stream.checkpoint import Checkpoint
from stream.events import Rejected, decode_message

__all__ = ["events_topic", "dead_letters_topic", "kpis_topic", "kpi_windows",
           "group_snapshots", "window_closed", "PartitionClock"]

log = logging.getLogger(__name__)

events_topic = app.topic(settings.topic("events"), key_serializer="raw", value_serializer="raw",
                         partitions=settings.events_partitions)
dead_letters_topic = app.topic(settings.topic("dead-letters"), key_serializer="raw",
                               value_serializer="raw", partitions=1)
kpis_topic = app.topic(settings.topic("kpis"), key_serializer="raw", value_serializer="raw",
                       partitions=1)

CHECKPOINT_EVERY_S = 2.0
IDLE_PARTITION_S = 5.0
UNSEEN_WAIT_S = 60.0
MAX_RAW_IN_DEAD_LETTER = 64 << 10


class PartitionClock:
    """Event time per input partition; windows close on the slowest partition.

    Each partition is read in order, but Faust drains partitions in chunks, so one may run hours
    of event time ahead of another. Closing on the minimum keeps the slower partitions' events
    from arriving after their window closed. A partition stops holding the others back only when
    it is caught up (nothing left to read) and has been quiet for ``idle_s`` wall seconds; one
    that has not delivered anything yet holds the others back until it is known to be empty
    (or for ``UNSEEN_WAIT_S`` at most).
    """

    def __init__(self, idle_s: float = IDLE_PARTITION_S) -> None:
        self.idle_s = idle_s
        self.event_time: dict[int, float] = {}
        self.last_seen: dict[int, float] = {}
        self.offset: dict[int, int] = {}
        self.started: float | None = None

    def observe(self, partition: int, offset: int, ts: float | None, now: float) -> None:
        if self.started is None:
            self.started = now   # partitions are waited for from the first message on
        self.last_seen[partition] = now
        self.offset[partition] = offset
        if ts is not None and ts > self.event_time.get(partition, float("-inf")):
            self.event_time[partition] = ts

    def watermark(self, assigned: Iterable[int], now: float, started: float,
                  highwater: Callable[[int], int | None],
                  unread: Callable[[int], bool | None]) -> float | None:
        """The event time every active partition has reached, or None while one is unknown.

        ``unread(p)`` says whether a partition not heard from yet has messages waiting (None:
        not known yet); such a partition holds everything back, for up to ``UNSEEN_WAIT_S``.
        """
        times = []
        for p in assigned:
            seen = self.last_seen.get(p)
            if seen is None:
                if unread(p) is not False and now - started < UNSEEN_WAIT_S:
                    return None  # it may still hold older events
                continue
            if p not in self.event_time:
                continue
            hw = highwater(p)
            caught_up = hw is not None and self.offset[p] + 1 >= hw
            if caught_up and now - seen >= self.idle_s:
                continue
            times.append(self.event_time[p])
        if not times:  # everything quiet: the newest time any partition reached
            return max(self.event_time.values(), default=None)
        return min(times)


def dead_letter_doc(rej: Rejected, topic: str, partition: int, offset: int) -> dict[str, Any]:
    raw = rej.raw[:MAX_RAW_IN_DEAD_LETTER]
    doc: dict[str, Any] = {"reason": rej.reason, "detail": rej.detail, "topic": topic,
                           "partition": partition, "offset": offset, "at": time.time(),
                           "truncated": len(rej.raw) > len(raw)}
    try:
        doc["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        doc["raw"], doc["raw_encoding"] = base64.b64encode(raw).decode(), "base64"
    return doc


def _checkpoint() -> Checkpoint:
    name = f"{settings.app_id}-{settings.topic('events')}-kpis.ckpt"
    return Checkpoint(Path(settings.data_dir) / "checkpoints" / name)


class WindowState:
    """What the KPI agent checkpoints: the engine, and the next offset due from each partition."""

    def __init__(self, engine: KpiEngine) -> None:
        self.engine = engine
        self.next_offset: dict[int, int] = {}


@app.agent(events_topic)
async def kpi_windows(stream: Any) -> None:
    """Consumes events; publishes each closed window's KPIs to ``kpis``, bad input to
    ``dead-letters``."""
    checkpoint = _checkpoint()
    state = checkpoint.load()
    if isinstance(state, WindowState):
        log.info("resumed KPI windows from %s (event time %s)", checkpoint.path,
                 state.engine.watermark)
    else:
        state = WindowState(KpiEngine(window_s=settings.window_seconds,
                                      lateness_s=settings.lateness_seconds))
    clock = PartitionClock()   # wall-clock bookkeeping of this process only
    last_save = time.monotonic()
    try:
        async for event in stream.events():
            if time.monotonic() - last_save >= CHECKPOINT_EVERY_S:
                # Everything before this message is in the state; its offset is not acked yet.
                checkpoint.save(state)
                await app.consumer.commit()
                last_save = time.monotonic()
            msg = event.message
            due = state.next_offset.get(msg.partition)
            if due is None:   # no checkpoint for it: due from where the group starts
                assigned = sorted({tp.partition for tp in app.consumer.assignment()
                                   if tp.topic == msg.topic} | {msg.partition})
                starts = await start_offsets(settings.kafka_bootstrap, settings.app_id,
                                             msg.topic, assigned)
                for p, offset in starts.items():
                    state.next_offset.setdefault(p, offset)
                due = state.next_offset[msg.partition]
            if due is not None and msg.offset < due:
                metrics.REDELIVERED.inc()      # already in the state: a re-delivery
                continue
            if due is not None and msg.offset > due:
                missing = await fetch_range(settings.kafka_bootstrap, msg.topic, msg.partition,
                                            due, msg.offset)
                metrics.OFFSET_GAPS.inc(msg.offset - due)
                log.warning("refetched %d of %d messages Faust skipped on %s[%d] (%d..%d)",
                            len(missing), msg.offset - due, msg.topic, msg.partition, due,
                            msg.offset - 1)
                for rec in missing:
                    await _consume(state, clock, rec.value, msg.topic, msg.partition,
                                   rec.offset, rec.timestamp / 1000.0)
            await _consume(state, clock, event.value, msg.topic, msg.partition, msg.offset,
                           msg.timestamp)
    finally:
        checkpoint.save(state)
        log.info("KPI windows saved to %s at event time %s", checkpoint.path,
                 state.engine.watermark)


async def _consume(state: WindowState, clock: PartitionClock, payload: bytes | None,
                   topic: str, partition: int, offset: int, appended: float) -> None:
    """Everything one message of ``events`` does: count, dead-letter, close windows."""
    engine = state.engine
    now, now_mono = time.time(), time.monotonic()
    metrics.MESSAGES.inc()
    metrics.PROCESSING_LAG.set(max(0.0, now - appended))
    decoded = decode_message(payload, engine.watermark, now)
    kinds: Counter[str] = Counter()
    rejected = list(decoded.rejected)
    newest = max(decoded.watermarks, default=None)
    for ev in decoded.events:
        outcome = engine.add(ev)
        if outcome is None:
            kinds[ev["kind"]] += 1
            if newest is None or ev["ts"] > newest:
                newest = ev["ts"]
        elif outcome == "duplicate":
            metrics.DUPLICATES.inc()
        else:
            rejected.append(Rejected("late", f"window of ts {ev['ts']} already closed",
                                     orjson.dumps(ev)))
    for kind, n in kinds.items():
        metrics.EVENTS.labels(kind).inc(n)
    for rej in rejected:
        metrics.DEAD_LETTERS.labels(rej.reason).inc()
        await dead_letters_topic.send(
            key=rej.reason.encode(),
            value=orjson.dumps(dead_letter_doc(rej, topic, partition, offset)))
    state.next_offset[partition] = offset + 1
    clock.observe(partition, offset, newest, now_mono)
    assigned = [tp.partition for tp in app.consumer.assignment() if tp.topic == topic]
    wm = clock.watermark(assigned or [partition], now_mono, clock.started or now_mono,
                         functools.partial(_highwater, topic), functools.partial(_unread, topic))
    if wm is not None:
        snaps = engine.advance(wm)
        if snaps and log.isEnabledFor(logging.DEBUG):
            log.debug("closing up to %s: partitions %s, seen %s, assigned %s", wm,
                      clock.event_time, clock.last_seen, assigned)
        await publish(snaps)


def _highwater(topic: str, partition: int) -> int | None:
    try:
        return app.consumer.highwater(TP(topic, partition))
    except Exception:  # not fetched yet, or the assignment just changed
        return None


def _unread(topic: str, partition: int) -> bool | None:
    """Whether a partition has messages after the position the consumer started from."""
    tp = TP(topic, partition)
    hw = _highwater(topic, partition)
    if hw is None:
        return None
    start = getattr(app.consumer, "_read_offset", {}).get(tp)   # faust 0.15: set by the seek
    return hw > (start or 0)


async def publish(snaps: list[KpiSnapshot]) -> None:
    """Send closed windows to ``kpis``: each window's KPI messages, then a ``window_closed``
    marker, so the next stages know the window is complete without waiting for the next one."""
    if not snaps:
        return
    docs = group_snapshots(snaps)
    for i, doc in enumerate(docs):
        await kpis_topic.send(key=doc["kpi"].encode(), value=orjson.dumps(doc))
        for s in doc["series"]:
            metrics.KPI.labels(doc["kpi"], s["segment"], s["channel"]).set(s["value"])
        if i + 1 == len(docs) or docs[i + 1]["window_start_ts"] != doc["window_start_ts"]:
            await kpis_topic.send(key=b"window", value=orjson.dumps(window_closed(doc)))
            metrics.WINDOWS_CLOSED.inc()
            metrics.WATERMARK.set(doc["window_end_ts"])
