"""The one resume protocol of every agent: the next offset due per (topic, partition).

Agents checkpoint their state together with the offsets it covers, then commit (stream/app.py
``commit``). On a restart or a rebalance Kafka re-delivers from the last commit, and Faust
0.15 may also skip a range (faust-streaming/faust#596). :class:`Resume` turns whatever Faust
delivers into exactly the records the state has not taken yet, in order:

- offset < due: a re-delivery, already in the state: skipped;
- offset > due: a gap Faust skipped: fetched (``fetch``) and handed out first, in order;
- after each record is handled, its partition's due offset moves past it.

Every ``every_s`` seconds (at the boundaries the agent chooses) :meth:`Resume.checkpoint`
flushes what the state has sent (``flush``), saves the state with the due offsets (``save``)
and commits (``commit``), in that order: what a saved state says it sent is on the broker, and
Kafka never moves past a state that is not saved. A crash between save and commit re-delivers
what the saved state covers, which the due offsets then skip.

Plain Python: the Kafka calls are injected, so tests/test_resume.py runs it without a broker.

    resume = Resume(fetch=..., start=..., flush=..., save=..., commit=..., every_s=2.0)
    async for event in stream.events():
        async for rec in resume.records(event.message.topic, event.message.partition,
                                        event.message.offset, event.value,
                                        event.message.timestamp):
            handle(rec)
        await resume.checkpoint()
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Record", "Resume", "Key", "Offsets"]

log = logging.getLogger(__name__)

Key = tuple[str, int]
"""(topic, partition)."""
Offsets = dict[Key, int]
"""The next offset due of each (topic, partition)."""


@dataclass(frozen=True)
class Record:
    """One message to handle. ``replayed``: fetched from before the group's committed offset,
    so it was handled before a restart whose state did not keep it (learn it, do not re-emit)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: float             # seconds (Kafka's append time)
    fetched: bool = False        # from a gap, not delivered by Faust
    replayed: bool = False


Fetch = Callable[[str, int, int, int], Awaitable[Iterable[Any]]]
"""``(topic, partition, start, end)`` -> aiokafka records with ``start <= offset < end``."""
Start = Callable[[str, int], Awaitable[int]]
"""``(topic, partition)`` -> where the consumer group starts (committed, else earliest)."""
Step = Callable[[], Any]
"""A step of the checkpoint (sync or async)."""


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


class Resume:
    """Next offsets due, gap fetching and the flush → save → commit cadence of one agent.

    Parameters
    ----------
    fetch, start
        Read a range of a partition, and the group's start offset (stream/backfill.py).
    flush, save, commit
        The checkpoint steps: ``save(offsets)`` gets a copy of the due offsets to store
        with the state. Each may be sync or async.
    every_s
        Least seconds between two checkpoints (``clock`` seconds).
    due
        Offsets restored from a saved state (more can be added with :meth:`resumed`).
    on_redelivered, on_gap
        Called with a count (the agent's metrics).
    """

    def __init__(self, *, fetch: Fetch, start: Start, flush: Step,
                 save: Callable[[Offsets], Any], commit: Step, every_s: float,
                 due: Offsets | None = None, clock: Callable[[], float] = time.monotonic,
                 on_redelivered: Callable[[int], None] | None = None,
                 on_gap: Callable[[int], None] | None = None) -> None:
        self.fetch, self.start = fetch, start
        self.flush, self.save, self.commit = flush, save, commit
        self.every_s = every_s
        self.due: Offsets = dict(due or {})
        self.clock = clock
        self.on_redelivered = on_redelivered
        self.on_gap = on_gap
        self.last_save = clock()

    def resumed(self, key: Key, next_offset: int | None) -> None:
        """A partition's state was (re)loaded: it covers everything before ``next_offset``
        (None: unknown, the group's start offset is asked at its first message)."""
        if next_offset is None:
            self.due.pop(key, None)
        else:
            self.due[key] = next_offset

    def forget(self, key: Key) -> None:
        """The partition went to another worker: its state here is stale from now on."""
        self.due.pop(key, None)

    async def records(self, topic: str, partition: int, offset: int, value: bytes | None,
                      timestamp: float) -> AsyncIterator[Record]:
        """The records one delivered message stands for: none (a re-delivery), or the gap
        before it and then itself. A partition's due offset moves past each record when the
        caller asks for the next one (or the loop ends), so a record is done once handled."""
        key = (topic, partition)
        due = self.due.get(key)
        if due is None:
            due = self.due[key] = await self.start(topic, partition)
        if offset < due:
            if self.on_redelivered is not None:
                self.on_redelivered(1)
            return
        if offset > due:
            committed = await self.start(topic, partition)
            missing = list(await self.fetch(topic, partition, due, offset))
            if self.on_gap is not None:
                self.on_gap(offset - due)
            log.warning("fetched %d of %d messages Faust skipped on %s[%d] (%d..%d)",
                        len(missing), offset - due, topic, partition, due, offset - 1)
            for rec in missing:
                if rec.offset < self.due[key]:
                    continue
                yield Record(topic, partition, rec.offset, rec.value, rec.timestamp / 1000.0,
                             fetched=True, replayed=rec.offset < committed)
                self.due[key] = rec.offset + 1
        yield Record(topic, partition, offset, value, timestamp)
        self.due[key] = offset + 1

    def checkpoint_due(self) -> bool:
        """Whether ``every_s`` has passed since the last checkpoint."""
        return self.clock() - self.last_save >= self.every_s

    async def checkpoint(self, force: bool = False) -> bool:
        """Flush, save, commit, if ``every_s`` has passed (or ``force``); True if it did."""
        if not force and not self.checkpoint_due():
            return False
        await _call(self.flush)
        await _call(self.save, dict(self.due))
        await _call(self.commit)
        self.last_save = self.clock()
        return True
