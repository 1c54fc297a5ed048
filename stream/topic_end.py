"""Read assigned partitions from their start to where they ended when the reading began.

A reader of a live topic (``pulse record``, ``pulse ask --broker``, the digest, the page) wants
what is there now, not to wait for the topic to go quiet: during a live demo the early looks
write to ``kpis`` several times a second, so "quiet for 1.5 s" never comes. The end of each
partition is fixed when the reading starts. Not by ``end_offsets()`` alone: the embedded Tansu
broker answers ListOffsets(latest) with a count of record batches, not of records, so the end is
the larger of it and the high watermark of the partition's first fetch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

__all__ = ["EndReader"]


class EndReader:
    """Records of ``tps`` from their beginning up to (not including) their end at start."""

    def __init__(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        self.consumer = consumer
        self.tps = tps
        self.first: dict[TopicPartition, int] = {}
        self.last: dict[TopicPartition, int] = {}
        self._fixed: set[TopicPartition] = set()

    @property
    def total(self) -> int:
        """Messages to read (known for sure once every partition has been fetched once)."""
        return sum(self.last[tp] - self.first[tp] for tp in self.tps)

    async def batches(self, *, timeout_ms: int = 1000, max_records: int = 5000,
                      deadline_s: float | None = None,
                      ) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        """The records, a fetch at a time, until every partition is read to its end (or
        ``deadline_s`` seconds have passed)."""
        c = self.consumer
        c.assign(self.tps)
        self.first = await c.beginning_offsets(self.tps)
        self.last = await c.end_offsets(self.tps)
        for tp in self.tps:
            c.seek(tp, self.first[tp])
        todo = {tp for tp in self.tps if self.last[tp] > self.first[tp]}
        until = None if deadline_s is None else time.monotonic() + deadline_s
        while todo and (until is None or time.monotonic() < until):
            batch = await c.getmany(*todo, timeout_ms=timeout_ms, max_records=max_records)
            for tp in todo - self._fixed:
                hw = c.highwater(tp)
                if hw is not None:
                    self.last[tp] = max(self.last[tp], hw)
                    self._fixed.add(tp)
            records = [rec for tp, recs in batch.items() for rec in recs
                       if rec.offset < self.last[tp]]
            for tp in list(todo & self._fixed):
                if await c.position(tp) >= self.last[tp]:
                    todo.discard(tp)
            if records:
                yield records
