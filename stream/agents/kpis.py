"""KPI windows, first stage: events in, each partition's closed windows out.

Consumes ``events`` (single events or JSON arrays of them, docs/events.md), validates them,
dead-letters what is bad with its reason, and counts the rest into one
:class:`~kpis.engine.PartitionWindows` per input partition. When the slowest partition's event
time passes a window's end plus the allowed lateness, every partition's window is closed and its
integer sums are published to ``kpi-partials``; stream/agents/merge.py adds up the partitions
(which may be read by several workers) and publishes the KPIs. A user's events are all in one
partition (the producer keys them by user), which is what makes the partitions' sums add up.

Each partition's state is checkpointed to its own file under ``PULSE_DATA_DIR`` together with
the next offset due, so whichever worker is assigned the partition next resumes it (workers of
one deployment share that directory).
"""

from __future__ import annotations

import asyncio
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

from kpis.engine import PartitionWindows, Peek, WindowInputs
from stream import metrics
from stream.app import app, commit, settings
from stream.backfill import fetch_range, partition_count, start_offsets
from stream.checkpoint import Checkpoint
from stream.events import Rejected, decode_message

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
IDLE_PARTITION_S = 5.0
UNSEEN_WAIT_S = 60.0
MAX_RAW_IN_DEAD_LETTER = 64 << 10
WINDOWS_PER_MESSAGE = 48     # closed windows per ``kpi-partials`` message (a backlog closes many)
AHEAD_WINDOWS = 2            # a partition further ahead of the slowest one stops being fetched


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

    def ahead(self, watermark: float, by: float) -> set[int]:
        """Partitions whose event time is more than ``by`` seconds past ``watermark``.

        >>> clock = PartitionClock()
        >>> for p, ts in ((0, 100.0), (1, 9000.0), (2, 7300.0)):
        ...     clock.observe(p, offset=5, ts=ts, now=0.0)
        >>> sorted(clock.ahead(100.0, by=7200.0))
        [1]
        """
        return {p for p, t in self.event_time.items() if t > watermark + by}


class FetchHold:
    """Stops fetching the partitions that run far ahead of the slowest one in event time.

    Reading a backlog, the broker and client hand out partitions unevenly: on the embedded
    broker one partition ran 24 days of event time ahead of another. Windows close on the
    slowest partition, so everything the fast ones read meanwhile waits in open windows and
    held funnel steps (memory, and checkpoints ten times larger). Fetching them again once the
    others caught up keeps the partitions within a few windows of each other.

    It uses Faust's own back-pressure switch (``Consumer.on_buffer_full`` /
    ``on_buffer_drop``, what Faust calls when a stream's buffer fills), not
    ``pause_partitions``: Faust drops records of a paused partition that were already fetched,
    while a buffer-full partition keeps delivering those and is only no longer fetched.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.held: set[int] = set()

    def update(self, ahead: set[int]) -> None:
        consumer = app.consumer
        for p in ahead:   # every time: a rebalance makes every assigned partition fetched again
            consumer.on_buffer_full(TP(self.topic, p))
        for p in self.held - ahead:
            consumer.on_buffer_drop(TP(self.topic, p))
        if ahead != self.held:
            metrics.FETCH_HELD.labels(self.topic).set(len(ahead))
        self.held = ahead


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


def _checkpoint(partition: int) -> Checkpoint:
    name = f"{settings.app_id}-{settings.topic('events')}-p{partition}.ckpt"
    return Checkpoint(Path(settings.data_dir) / "checkpoints" / name)


class PartitionState:
    """What the KPI agent checkpoints per partition: its windows, and the next offset due."""

    def __init__(self, windows: PartitionWindows, next_offset: int | None) -> None:
        self.windows = windows
        self.next_offset = next_offset


class Partitions:
    """The partitions this worker reads, with what it last told the merge about each."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.open: dict[int, PartitionState] = {}
        self.reported: dict[int, int | None] = {}   # closed_before last sent to kpi-partials
        self.total: int | None = None               # partitions of the topic

    def assigned(self, also: int | None = None) -> list[int]:
        parts = {tp.partition for tp in app.consumer.assignment() if tp.topic == self.topic}
        if also is not None:
            parts.add(also)
        return sorted(parts)

    async def ensure_open(self, assigned: list[int]) -> None:
        """Resume (or start) the state of every assigned partition not open yet."""
        new = [p for p in assigned if p not in self.open]
        if not new:
            return
        if self.total is None:
            self.total = await _partitions_of(self.topic)
        for p in new:
            saved = _checkpoint(p).load()
            if isinstance(saved, PartitionState):
                log.info("resumed KPI windows of %s[%d] from its checkpoint (event time %s)",
                         self.topic, p, saved.windows.watermark)
                saved.windows.peek_s = float(settings.early_seconds)   # as configured now
                self.open[p] = saved
            else:
                self.open[p] = PartitionState(PartitionWindows(
                    window_s=settings.window_seconds, lateness_s=settings.lateness_seconds,
                    peek_s=settings.early_seconds), None)
        unknown = [p for p in new if self.open[p].next_offset is None]
        if unknown:   # no checkpoint: due from where the group starts
            starts = await start_offsets(settings.kafka_bootstrap, settings.app_id, self.topic,
                                         unknown)
            for p, offset in starts.items():
                self.open[p].next_offset = offset

    def save(self) -> None:
        """Checkpoint the assigned partitions; forget those this worker no longer reads (their
        new reader resumes them from their last checkpoint)."""
        assigned = set(self.assigned())
        for p in list(self.open):
            if p in assigned:
                _checkpoint(p).save(self.open[p])
            else:
                del self.open[p]
                self.reported.pop(p, None)

    async def close_windows(self, watermark: float) -> None:
        """Close every open partition's windows up to ``watermark``; report them to the merge,
        all partitions in one message (Faust's cost is per message), at most
        ``WINDOWS_PER_MESSAGE`` windows in each."""
        total = self.total or max(self.open, default=0) + 1
        message: list[Partial] = []
        room = WINDOWS_PER_MESSAGE
        for p, st in self.open.items():
            closed = st.windows.advance(watermark, close_empty=True)
            closed_before = st.windows.closed_before
            peeks = st.windows.take_peeks()   # running counts of the open window, every tick
            if not closed and not peeks and closed_before == self.reported.get(p):
                continue
            self.reported[p] = closed_before
            i = 0
            while True:
                chunk = closed[i:i + room]
                i += len(chunk)
                done = i >= len(closed)
                message.append((p, total, closed_before if done else chunk[-1].window + 1, chunk,
                                peeks if done else []))
                room -= len(chunk)
                if room <= 0:
                    await kpi_partials_topic.send(key=b"partials", value=encode_partials(message))
                    message, room = [], WINDOWS_PER_MESSAGE
                if done:
                    break
        if message:
            await kpi_partials_topic.send(key=b"partials", value=encode_partials(message))


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


Partial = tuple[int, int, int | None, list[WindowInputs], list[Peek]]
"""(partition, partitions of the topic, closed_before, closed windows, peeks of its open
window) of one input partition."""


def encode_partials(partials: list[Partial]) -> bytes:
    """One ``kpi-partials`` message: a JSON array with, per partition, its closed windows, how
    far it has closed, and the running counts of its open window (``peeks``)."""
    return orjson.dumps([
        {"partition": partition, "partitions": partitions, "closed_before": closed_before,
         "windows": [{"window": w.window,
                      "rows": [[seg, ch, row] for (seg, ch), row in w.rows.items()],
                      "referrals": [[ref, seg, ch] for ref, (seg, ch) in w.referrals],
                      "cohorts": [[kpi, cohort, seg, ch, num, den]
                                  for kpi, cohort, (seg, ch), num, den in w.cohorts]}
                     for w in windows],
         "peeks": [{"window": pk.window, "as_of": pk.as_of,
                    "rows": [[seg, ch, row] for (seg, ch), row in pk.rows.items()]}
                   for pk in peeks]}
        for partition, partitions, closed_before, windows, peeks in partials])


def decode_partials(raw: bytes) -> list[Partial]:
    """The partials of a ``kpi-partials`` message (an array; one object is read as one)."""
    doc = orjson.loads(raw)
    out = []
    for d in doc if isinstance(doc, list) else [doc]:
        windows = [WindowInputs(w["window"], {(seg, ch): row for seg, ch, row in w["rows"]},
                                [(ref, (seg, ch)) for ref, seg, ch in w["referrals"]],
                                [(kpi, cohort, (seg, ch), num, den)
                                 for kpi, cohort, seg, ch, num, den in w.get("cohorts", ())])
                   for w in d["windows"]]
        peeks = [Peek(int(pk["window"]), float(pk["as_of"]),
                      {(seg, ch): row for seg, ch, row in pk["rows"]})
                 for pk in d.get("peeks", ())]
        out.append((d["partition"], d["partitions"], d["closed_before"], windows, peeks))
    return out


@app.agent(events_topic)
async def kpi_windows(stream: Any) -> None:
    """Consumes events; publishes closed windows to ``kpi-partials``, bad input to
    ``dead-letters``."""
    parts = Partitions(settings.topic("events"))
    clock = PartitionClock()   # wall-clock bookkeeping of this process only
    hold = FetchHold(parts.topic)
    last_save = time.monotonic()
    try:
        async for event in stream.events():
            if time.monotonic() - last_save >= CHECKPOINT_EVERY_S:
                # Everything before this message is in the state; its offset is not acked yet.
                # What the state has sent must be on the broker before the state says so.
                await app.producer.flush()
                parts.save()
                await commit(parts.topic)
                last_save = time.monotonic()
            msg = event.message
            assigned = parts.assigned(also=msg.partition)
            await parts.ensure_open(assigned)
            st = parts.open[msg.partition]
            due = st.next_offset
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
                    await _consume(parts, clock, hold, rec.value, msg.topic, msg.partition,
                                   rec.offset, rec.timestamp / 1000.0)
            await _consume(parts, clock, hold, event.value, msg.topic, msg.partition,
                           msg.offset, msg.timestamp)
    finally:
        parts.save()
        log.info("KPI windows of partitions %s saved", sorted(parts.open))


async def _consume(parts: Partitions, clock: PartitionClock, hold: FetchHold,
                   payload: bytes | None, topic: str, partition: int, offset: int,
                   appended: float) -> None:
    """Everything one message of ``events`` does: count, dead-letter, close windows."""
    st = parts.open[partition]
    windows = st.windows
    now, now_mono = time.time(), time.monotonic()
    metrics.MESSAGES.inc()
    metrics.PROCESSING_LAG.set(max(0.0, now - appended))
    decoded = decode_message(payload, windows.watermark, now)
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
    st.next_offset = offset + 1
    clock.observe(partition, offset, newest, now_mono)
    hw = _highwater(topic, partition)
    if hw is not None:
        metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(0, hw - offset - 1))
    assigned = list(parts.open)
    wm = clock.watermark(assigned, now_mono, clock.started or now_mono,
                         functools.partial(_highwater, topic), functools.partial(_unread, topic))
    if wm is not None:
        await parts.close_windows(wm)
        hold.update(clock.ahead(wm, AHEAD_WINDOWS * settings.window_seconds) & set(assigned))


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


