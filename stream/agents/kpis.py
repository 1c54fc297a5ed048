"""KPI windows, first stage: events in, each partition's closed windows out.

Consumes ``events`` (single events or JSON arrays of them, docs/events.md), validates them,
dead-letters what is bad with its reason, and counts the rest into one
:class:`~kpis.windows.PartitionWindows` per input partition (stream/partitions.py). When the
slowest partition's event time (stream/clock.py) passes a window's end plus the allowed
lateness, every partition's window is closed and its integer sums are published to
``kpi-partials`` (kpis/partials.py); stream/agents/merge.py adds up the partitions (which may be
read by several workers) and publishes the KPIs. A user's events are all in one partition (the
producer keys them by user), which is what makes the partitions' sums add up.

Each partition's windows are checkpointed to their own file under ``PULSE_DATA_DIR`` with the
next offset due (stream/resume.py), so whichever worker is assigned the partition next resumes
it (workers of one deployment share that directory). After a broker reset (stream/resume.py)
every partition's windows start over empty: their events went with the old log.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from collections import Counter
from typing import Any

import orjson
from faust.types import TP

from kpis.partials import Partial, decode_partials, encode_partials
from kpis.windows import PartitionWindows
from stream import metrics
from stream.app import app, highwater, make_resume, settings
from stream.backfill import partition_count
from stream.clock import FetchHold, PartitionClock
from stream.custody import Custody
from stream.events import Rejected, decode_message
from stream.faust_internals import read_offset
from stream.partitions import Partitions

__all__ = ["events_topic", "dead_letters_topic", "kpi_partials_topic", "kpi_windows",
           "PartitionClock", "FetchHold", "Partial", "encode_partials", "decode_partials"]

log = logging.getLogger(__name__)

events_topic = app.topic(settings.topic("events"), key_serializer="raw", value_serializer="raw",
                         partitions=settings.events_partitions)
dead_letters_topic = app.topic(settings.topic("dead-letters"), key_serializer="raw",
                               value_serializer="raw", partitions=1)
kpi_partials_topic = app.topic(settings.topic("kpi-partials"), key_serializer="raw",
                               value_serializer="raw", partitions=1)

# Pickling every partition's state took ~6% of a busy worker's time at one save per 2 s; a
# crash re-reads at most this many seconds of events.
CHECKPOINT_EVERY_S = 10.0
MAX_RAW_IN_DEAD_LETTER = 64 << 10
AHEAD_WINDOWS = 2            # a partition further ahead of the slowest one stops being fetched


@app.agent(events_topic)
async def kpi_windows(stream: Any) -> None:
    """Consumes events; publishes closed windows to ``kpi-partials``, bad input to
    ``dead-letters``."""
    topic = settings.topic("events")
    clock = PartitionClock()   # wall-clock bookkeeping of this process only
    hold = FetchHold(topic, lambda: app.consumer)

    def start_over() -> None:   # a broker reset: the windows' events are gone with the old log
        nonlocal clock
        clock = PartitionClock()
        hold.update(set())
        _start_over(parts)

    resume = make_resume((topic,), lambda offsets: parts.save(offsets), CHECKPOINT_EVERY_S,
                         on_reset=start_over)
    parts = Partitions(topic, settings, resume, functools.partial(_assigned, topic),
                       functools.partial(_partitions_of, topic), _send_partials)
    custody = Custody(topic)
    try:
        async for event in stream.events():
            msg = event.message
            for p in set.union(*custody.moved()):   # read again / another worker's now
                parts.release(p)
            await parts.ensure_open(parts.assigned(also=msg.partition))
            async for rec in resume.records(msg.topic, msg.partition, msg.offset, event.value,
                                            msg.timestamp):
                await _consume(parts, clock, hold, rec.value, rec.topic, rec.partition,
                               rec.offset, rec.timestamp)
            await resume.checkpoint()
    finally:
        parts.save(resume.due)
        log.info("KPI windows of partitions %s saved", sorted(parts.open))


def _start_over(parts: Partitions) -> None:
    """Every open partition's windows empty, as with no checkpoint."""
    for p in parts.open:
        parts.open[p] = PartitionWindows(window_s=settings.window_seconds,
                                         lateness_s=settings.lateness_seconds,
                                         peek_s=settings.early_seconds)
    parts.reported.clear()


async def _send_partials(value: bytes) -> None:
    await kpi_partials_topic.send(key=b"partials", value=value)


def _assigned(topic: str) -> set[int]:
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


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


async def _consume(parts: Partitions, clock: PartitionClock, hold: FetchHold,
                   payload: bytes | None, topic: str, partition: int, offset: int,
                   appended: float) -> None:
    """Everything one message of ``events`` does: count, dead-letter, close windows."""
    windows, now, now_mono = parts.open[partition], time.time(), time.monotonic()
    windows.peek_from = settings.early_from(now)   # no early look at a backlog's windows
    metrics.MESSAGES.inc()
    metrics.PROCESSING_LAG.set(max(0.0, now - appended))
    decoded = decode_message(payload, windows.watermark, now,
                             max_ahead_s=settings.max_ahead_seconds)
    kinds: Counter[str] = Counter()
    rejected = list(decoded.rejected)
    newest = max(decoded.watermarks, default=None)
    for ev in decoded.events:
        outcome = windows.add(ev)
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
    clock.observe(partition, offset, newest, now_mono)
    hw = highwater(topic, partition)
    if hw is not None:
        metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(0, hw - offset - 1))
    assigned = list(parts.open)
    wm = clock.watermark(assigned, now_mono, clock.started or now_mono,
                         functools.partial(highwater, topic), functools.partial(_unread, topic))
    if wm is not None:
        await parts.close_windows(wm)
        hold.update(clock.ahead(wm, AHEAD_WINDOWS * settings.window_seconds) & set(assigned))


async def _partitions_of(topic: str) -> int:
    """Partitions of the input topic: from the consumer's metadata, else asked of the broker,
    else ``PULSE_EVENTS_PARTITIONS`` (the merge waits for this many partitions)."""
    try:
        known = app.consumer.topic_partitions(topic)
    except Exception:
        known = None
    if known:
        return int(known)
    try:
        asked = await asyncio.wait_for(partition_count(settings.kafka_bootstrap, topic), 10.0)
    except Exception:
        asked = None
    if asked:
        return asked
    log.warning("could not learn how many partitions %s has; assuming PULSE_EVENTS_PARTITIONS=%d",
                topic, settings.events_partitions)
    return settings.events_partitions


def _unread(topic: str, partition: int) -> bool | None:
    """Whether a partition has messages after the position the consumer started from."""
    hw = highwater(topic, partition)
    if hw is None:
        return None
    return hw > (read_offset(app.consumer, TP(topic, partition)) or 0)
