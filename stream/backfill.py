"""Read a range of offsets of one partition directly, outside Faust's consumer.

Faust 0.15 can skip messages when a worker with tables restarts: its recovery clears the stream
queues after the fetcher has moved on, and the offsets it never delivered count as a gap that is
treated as processed (faust-streaming/faust#596, open). The KPI agent knows the next offset it
expects from each partition, so when Faust hands it a later one it fetches the missing range
itself with this plain aiokafka consumer and processes it first: nothing is lost.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from stream.broker import stop_client

__all__ = ["fetch_range", "partition_count", "start_offsets"]


async def fetch_range(bootstrap: str, topic: str, partition: int, start: int,
                      end: int, timeout_s: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Messages with ``start <= offset < end`` of ``topic``/``partition``, in order."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while (not out or out[-1].offset < end - 1) and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for rec in batch.get(tp, []):
                if start <= rec.offset < end:
                    out.append(rec)
            if out and out[-1].offset >= end - 1:
                break
    finally:
        await stop_client(consumer)
    return out


async def start_offsets(bootstrap: str, group_id: str, topic: str,
                        partitions: list[int]) -> dict[int, int]:
    """Where a consumer of ``group_id`` starts on each partition: its committed offset, or the
    earliest one (``auto_offset_reset=earliest``) when the group has none.

    Asked once when no checkpoint says which offset is due next, so even the very first
    messages Faust might skip are noticed and fetched.
    """
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        earliest = await consumer.beginning_offsets(tps)
        out = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            out[tp.partition] = int(committed if committed is not None and committed >= 0
                                    else earliest[tp])
        return out
    finally:
        await consumer.stop()


async def partition_count(bootstrap: str, topic: str) -> int | None:
    """How many partitions ``topic`` has (None: the broker does not know the topic)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        parts = await producer.partitions_for(topic)
        return len(parts) if parts else None
    except Exception:
        return None
    finally:
        await producer.stop()
