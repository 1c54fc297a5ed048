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

from kpis import KPI_BY_ID, KpiEngine, KpiSnapshot
from stream import metrics
from stream.app import app, settings
from stream.checkpoint import Checkpoint
from stream.events import Rejected, decode_message

__all__ = ["events_topic", "dead_letters_topic", "kpis_topic", "kpi_windows",
           "group_snapshots", "PartitionClock"]

log = logging.getLogger(__name__)

events_topic = app.topic(settings.topic("events"), key_serializer="raw", value_serializer="raw",
                         partitions=settings.events_partitions)
dead_letters_topic = app.topic(settings.topic("dead-letters"), key_serializer="raw",
                               value_serializer="raw", partitions=1)
kpis_topic = app.topic(settings.topic("kpis"), key_serializer="raw", value_serializer="raw",
                       partitions=1)

CHECKPOINT_EVERY_S = 2.0
IDLE_PARTITION_S = 5.0
MAX_RAW_IN_DEAD_LETTER = 64 << 10


class PartitionClock:
    """Event time per input partition; windows close on the slowest partition.

    Each partition is read in order, but Faust drains partitions in chunks, so one may run hours
    of event time ahead of another. Closing on the minimum keeps the slower partitions' events
    from arriving after their window closed. A partition stops holding the others back only when
    it is caught up (nothing left to read) and has been quiet for ``idle_s`` wall seconds, or
    when it has not delivered anything within ``idle_s`` of the start.
    """

    def __init__(self, idle_s: float = IDLE_PARTITION_S) -> None:
        self.idle_s = idle_s
        self.event_time: dict[int, float] = {}
        self.last_seen: dict[int, float] = {}
        self.offset: dict[int, int] = {}

    def observe(self, partition: int, offset: int, ts: float | None, now: float) -> None:
        self.last_seen[partition] = now
        self.offset[partition] = offset
        if ts is not None and ts > self.event_time.get(partition, float("-inf")):
            self.event_time[partition] = ts

    def watermark(self, assigned: Iterable[int], now: float, started: float,
                  highwater: Callable[[int], int | None]) -> float | None:
        """The event time every active partition has reached, or None while one is unknown."""
        times = []
        for p in assigned:
            seen = self.last_seen.get(p)
            if seen is None:
                if now - started < self.idle_s:
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


def group_snapshots(snaps: Iterable[KpiSnapshot]) -> list[dict[str, Any]]:
    """One ``kpis`` message per (window, KPI), series listed inside, in window then KPI order."""
    grouped: dict[tuple[float, str], dict[str, Any]] = {}
    for s in snaps:
        key = (s.window_start, s.kpi)
        doc = grouped.get(key)
        if doc is None:
            j = s.to_json()
            kdef = KPI_BY_ID.get(s.kpi)
            doc = grouped[key] = {
                "kpi": s.kpi, "unit": kdef.unit if kdef else "",
                "window_start": j["window_start"], "window_end": j["window_end"],
                "window_start_ts": s.window_start, "window_end_ts": s.window_end,
                "series": [],
            }
        doc["series"].append({"segment": s.segment, "channel": s.channel,
                              "value": s.value, "n": s.n})
    return list(grouped.values())


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


@app.agent(events_topic)
async def kpi_windows(stream: Any) -> None:
    """Consumes events; publishes each closed window's KPIs to ``kpis``, bad input to
    ``dead-letters``."""
    checkpoint = _checkpoint()
    saved = checkpoint.load()
    if saved is not None:
        engine, clock = saved
        log.info("resumed KPI windows from %s (event time %s)", checkpoint.path, engine.watermark)
    else:
        engine = KpiEngine(window_s=settings.window_seconds, lateness_s=settings.lateness_seconds)
        clock = PartitionClock()
    started: float | None = None   # first message: partitions are waited for from then
    last_save = time.monotonic()
    try:
        async for event in stream.events():
            now_mono = time.monotonic()
            if now_mono - last_save >= CHECKPOINT_EVERY_S:
                # Everything before this message is in the state; its offset is not acked yet.
                checkpoint.save((engine, clock))
                await app.consumer.commit()
                last_save = now_mono
            msg = event.message
            now = time.time()
            if started is None:
                started = now_mono
            metrics.MESSAGES.inc()
            metrics.PROCESSING_LAG.set(max(0.0, now - msg.timestamp))
            decoded = decode_message(event.value, engine.watermark, now)
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
                    value=orjson.dumps(dead_letter_doc(rej, msg.topic, msg.partition,
                                                       msg.offset)))
            clock.observe(msg.partition, msg.offset, newest, now_mono)
            topic = msg.topic
            assigned = [tp.partition for tp in app.consumer.assignment() if tp.topic == topic]
            wm = clock.watermark(assigned or [msg.partition], now_mono, started,
                                 functools.partial(_highwater, topic))
            if wm is not None:
                await publish(engine.advance(wm))
    finally:
        checkpoint.save((engine, clock))


def _highwater(topic: str, partition: int) -> int | None:
    try:
        return app.consumer.highwater(TP(topic, partition))
    except Exception:  # not fetched yet, or the assignment just changed
        return None


async def publish(snaps: list[KpiSnapshot]) -> None:
    if not snaps:
        return
    for doc in group_snapshots(snaps):
        await kpis_topic.send(key=doc["kpi"].encode(), value=orjson.dumps(doc))
        for s in doc["series"]:
            metrics.KPI.labels(doc["kpi"], s["segment"], s["channel"]).set(s["value"])
    windows = {s.window_end for s in snaps}
    metrics.WINDOWS_CLOSED.inc(len(windows))
    metrics.WATERMARK.set(max(windows))
