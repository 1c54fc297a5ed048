"""Publish simulated events to Kafka in batch envelopes, paced by a simulated clock.

One Kafka message carries up to ``batch_size`` events of one partition as a JSON array
(docs/events.md): Faust's cost is per message, so batching is what lets one worker carry tens of
thousands of events a second (shared/DESIGN.md). A user's events always go to the same partition
(CRC-32 of the user id), in time order, and every send round ends with a ``watermark`` on every
partition, so workers can close windows even where a partition is quiet.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.protocol.metadata import MetadataRequest

from simulator.generator import Simulation
from stream.topics import ensure_topics

__all__ = ["EventPublisher", "ensure_topics", "partition_of", "publish_simulation",
           "publish_watermark", "run_clock"]

HOUR = 3600.0
_NO_IDEMPOTENCE = "tansu"   # cluster ids of brokers that refuse idempotent produce requests


async def _cluster_id(bootstrap: str) -> str:
    """The cluster id the broker reports in its metadata ("" if it reports none)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = next(iter(client.cluster.brokers())).nodeId
        response = await client.send(node, MetadataRequest([]))
        return str(getattr(response, "cluster_id", "") or "")
    finally:
        await client.close()


def partition_of(ev: dict[str, Any], partitions: int) -> int:
    """The partition an event belongs to: by user, or by channel for spend."""
    key = ev.get("user_id") or ev.get("channel") or ""
    return zlib.crc32(key.encode()) % partitions


class EventPublisher:
    """Sends events to the ``events`` topic in per-partition JSON-array batches."""

    def __init__(self, bootstrap: str, topic: str, *, batch_size: int = 500,
                 sink: IO[bytes] | None = None,
                 keep: list[dict[str, Any]] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.batch_size = batch_size
        self.sink = sink           # events.jsonl: every event produced, in order
        self.keep = keep           # the same as dicts (tests and make faults compare with them)
        self.sent = 0
        self.partitions = 1
        self.idempotent = False
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        """Connect with the safest producer the broker takes.

        Every send waits for all in-sync replicas (``acks="all"``), so a leader lost under load
        loses nothing it acknowledged; idempotence, so that the retries after it write nothing
        twice, is on wherever the broker supports it. The embedded Tansu broker (0.6) advertises
        InitProducerId but answers idempotent produce requests with UnknownError, so there it is
        off: a capability of the broker, read from its cluster id, not an assumption about the
        address.
        """
        idempotent = not (await _cluster_id(self.bootstrap)).startswith(_NO_IDEMPOTENCE)
        self.idempotent = idempotent
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, max_request_size=4 << 20,
            max_batch_size=1 << 20, acks="all", enable_idempotence=idempotent)
        await self._producer.start()
        parts = await self._producer.partitions_for(self.topic)
        self.partitions = max(1, len(parts))

    async def stop(self) -> None:
        if self._producer is not None:
            await self.flush()
            await self._producer.flush()
            await self._producer.stop()
            self._producer = None

    async def publish(self, events: list[dict[str, Any]], watermark: float) -> None:
        """Send ``events`` (time-ordered) and then a watermark at ``watermark`` everywhere.

        Each event is encoded once (the same bytes go to ``events.jsonl`` and into the batch);
        sends are not awaited one by one, only when many are in flight, and on ``flush``.
        """
        assert self._producer is not None, "start() first"
        by_part: list[list[bytes]] = [[] for _ in range(self.partitions)]
        encoded = [orjson.dumps(ev) for ev in events]
        for ev, raw in zip(events, encoded, strict=True):
            by_part[partition_of(ev, self.partitions)].append(raw)
        if self.sink is not None and encoded:
            self.sink.write(b"\n".join(encoded) + b"\n")
        if self.keep is not None:
            self.keep.extend(events)
        mark = orjson.dumps({"kind": "watermark", "ts": watermark})
        for p, raws in enumerate(by_part):
            for i in range(0, max(len(raws), 1), self.batch_size):
                chunk = raws[i:i + self.batch_size]
                if i + self.batch_size >= len(raws):
                    chunk.append(mark)
                self._pending.append(await self._producer.send(
                    self.topic, b"[" + b",".join(chunk) + b"]", key=f"batch-{p}".encode(),
                    partition=p))
        self.sent += len(events)
        if len(self._pending) >= 256:
            await self.flush()

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged by the broker."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


async def run_clock(sim: Simulation, publisher: EventPublisher, start: float, end: float, *,
                    speed: float | None, tick_s: float = 0.25,
                    on_tick: Callable[[float], Awaitable[None] | None] | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> float:
    """Advance the simulation from ``start`` to ``end`` (event time) and publish as it goes.

    ``speed`` is simulated seconds per real second (None: as fast as possible, an hour of event
    time per round). Returns the event time reached (``end`` unless stopped early).
    """
    t = start
    wall0 = time.monotonic()
    while t < end and not should_stop():
        if speed is None:
            nxt = min(end, (t // HOUR + 1) * HOUR)
        else:
            await asyncio.sleep(tick_s)
            nxt = min(end, start + (time.monotonic() - wall0) * speed)
            if nxt <= t:
                continue
        await publisher.publish(sim.advance(nxt), nxt)
        t = nxt
        if on_tick is not None:
            res = on_tick(t)
            if asyncio.iscoroutine(res):
                await res
    return t


async def publish_simulation(bootstrap: str, topic: str, sim: Simulation, start: float,
                             end: float, *, speed: float | None = None,
                             watermark: float | None = None, batch_size: int = 500,
                             sink: IO[bytes] | None = None,
                             keep: list[dict[str, Any]] | None = None) -> EventPublisher:
    """Run ``sim`` from ``start`` to ``end`` through a publisher of its own, then (if given) a
    last ``watermark`` on every partition, e.g. ``end`` plus the lateness to close every window.

    Returns the stopped publisher: ``sent`` events, ``idempotent`` or not. ``sink`` and ``keep``
    get every event, as :class:`EventPublisher` gives them.
    """
    pub = EventPublisher(bootstrap, topic, batch_size=batch_size, sink=sink, keep=keep)
    await pub.start()
    try:
        await run_clock(sim, pub, start, end, speed=speed)
        if watermark is not None:
            await pub.publish([], watermark)
    finally:
        await pub.stop()
    return pub


async def publish_watermark(bootstrap: str, topic: str, ts: float) -> None:
    """Only a watermark at ``ts`` on every partition of ``topic`` (closes the windows before it)."""
    pub = EventPublisher(bootstrap, topic)
    await pub.start()
    try:
        await pub.publish([], ts)
    finally:
        await pub.stop()
