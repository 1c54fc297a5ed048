"""The one resume protocol of every agent: the next offset due per (topic, partition).

Agents checkpoint their state together with the offsets it covers, then commit (stream/app.py
``commit``). On a restart or a rebalance Kafka re-delivers from the last commit, and Faust
0.15 may also skip a range (faust-streaming/faust#596). :class:`Resume` turns whatever Faust
delivers into exactly the records the state has not taken yet, in order:

- offset < due: a re-delivery, already in the state: skipped;
- offset > due: a gap Faust skipped: fetched (``fetch``) and handed out first, in order;
- after each record is handled, its partition's due offset moves past it;
- a log that is not the one the offsets were saved on (a broker reset: another cluster id,
  or a partition that now ends before its due offset) is a **reset**: every due offset is
  dropped, the agent's ``on_reset`` starts its state over, and the new log is read from the
  group's start. :class:`LogIdentity` says so once per new log (one line, a counter).

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

__all__ = ["Record", "Resume", "Key", "Offsets", "Step", "LogIdentity", "LOG"]

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
End = Callable[[str, int], Awaitable[int | None]]
"""``(topic, partition)`` -> the offset after the partition's last message (None: unknown)."""


class LogIdentity:
    """Which log the worker reads now: the broker's cluster id (None: not asked yet).

    State saved with offsets names the cluster they belong to (stream/checkpoint.py); when the
    broker the worker talks to has another id (an embedded broker started again, a cluster
    rebuilt), those offsets mean nothing there. :meth:`reset` says so once per new log (one
    WARNING, ``on_reset`` called once: the ``pulse_broker_resets_total`` counter), however many
    agents and partitions notice it.
    """

    def __init__(self, cluster: str | None = None,
                 on_reset: Callable[[], None] | None = None,
                 refresh: Callable[[], Awaitable[str | None]] | None = None) -> None:
        self.cluster = cluster
        self.on_reset = on_reset
        self.refresh = refresh   # asks the broker its cluster id now (None: no answer)
        self.unsure = False      # the broker was away or the group rebalanced: ask again
        self.epoch = 0   # broker reconnections seen: each asks the agents to check offsets again
        self._reported: set[str | None] = set()

    def reconnected(self, cluster: str | None) -> None:
        """The broker answers again (after an outage), as ``cluster``."""
        self.cluster = cluster if cluster is not None else self.cluster
        self.epoch += 1

    async def ask(self) -> None:
        """Learn the cluster id from the broker now (an agent saw a log shorter than its
        offsets before the broker watch saw the new cluster)."""
        if self.refresh is not None:
            cluster = await self.refresh()
            if cluster is not None:
                self.cluster, self.unsure = cluster, False

    def moved(self, saved: str | None) -> bool:
        """Whether offsets saved on cluster ``saved`` belong to another log than this one."""
        return saved is not None and self.cluster is not None and saved != self.cluster

    def reset(self, why: str) -> None:
        """A reset was noticed (``why``: what showed it); reported once per log."""
        if self.cluster in self._reported:
            log.info("broker reset (%s)", why)
            return
        self._reported.add(self.cluster)
        log.warning("broker reset detected: %s. The saved offsets belong to a log that is "
                    "gone; the topics are read again from their start on this broker, and the "
                    "state built from the old log starts over", why)
        if self.on_reset is not None:
            self.on_reset()


LOG = LogIdentity()
"""The log this process reads (set by the worker at start and by its broker watch)."""


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
    log, cluster, end, on_reset
        Reset detection: the log read now, the cluster the ``due`` offsets were saved on
        (None: unknown, the offsets are checked against ``end`` only), each partition's end
        offset, and what starts the agent's state over after a reset (sync or async).
    """

    def __init__(self, *, fetch: Fetch, start: Start, flush: Step,
                 save: Callable[[Offsets], Any], commit: Step, every_s: float,
                 due: Offsets | None = None, clock: Callable[[], float] = time.monotonic,
                 on_redelivered: Callable[[int], None] | None = None,
                 on_gap: Callable[[int], None] | None = None,
                 log: LogIdentity | None = None, cluster: str | None = None,
                 end: End | None = None, on_reset: Step | None = None) -> None:
        self.fetch, self.start = fetch, start
        self.flush, self.save, self.commit = flush, save, commit
        self.every_s = every_s
        self.due: Offsets = dict(due or {})
        self.clock = clock
        self.on_redelivered = on_redelivered
        self.on_gap = on_gap
        self.last_save = clock()
        self.log = log
        self.cluster = cluster if cluster is not None else (log.cluster if log else None)
        self.end = end
        self.on_reset = on_reset
        self.checked: set[Key] = set()   # partitions whose due offset was checked against the log
        self.epoch = log.epoch if log else 0
        self.last_record = clock()   # when this agent last finished a message or checkpoint
        self.busy = 0

    def resumed(self, key: Key, next_offset: int | None) -> None:
        """A partition's state was (re)loaded: it covers everything before ``next_offset``
        (None: unknown, the group's start offset is asked at its first message)."""
        if next_offset is None:
            self.due.pop(key, None)
        else:
            self.due[key] = next_offset
        self.checked.discard(key)

    def forget(self, key: Key) -> None:
        """The partition went to another worker: its state here is stale from now on."""
        self.due.pop(key, None)

    async def records(self, topic: str, partition: int, offset: int, value: bytes | None,
                      timestamp: float) -> AsyncIterator[Record]:
        """The records one delivered message stands for: none (a re-delivery), or the gap
        before it and then itself. A partition's due offset moves past each record when the
        caller asks for the next one (or the loop ends), so a record is done once handled."""
        self.busy += 1   # not idle while a record is handled, however long that takes
        try:
            key = (topic, partition)
            if self.log is not None and self.log.unsure:   # a broker back from an outage?
                await self.log.ask()
            if self.log is not None and self.log.cluster != self.cluster:
                if self.log.moved(self.cluster) and self.due:
                    await self._reset(f"the broker's cluster id is {self.log.cluster!r}, the saved "
                                      f"offsets belong to {self.cluster!r}")
                self.cluster = self.log.cluster
            if self.log is not None and self.log.epoch != self.epoch:
                # the broker was away: check again
                self.epoch, self.checked = self.log.epoch, set()
            due = self.due.get(key)
            if due is not None and offset < due and key not in self.checked and \
                    self.end is not None:
                self.checked.add(key)   # once per partition and load: a re-delivery, or a reset?
                end = await self.end(topic, partition)
                if end is not None and end < due:
                    if self.log is not None:
                        await self.log.ask()   # the reset is said once per new log, so: which?
                    await self._reset(f"{topic}[{partition}] ends at offset {end}, before the "
                                      f"saved offset {due}")
                    due = None
            if due is None:
                due = self.due[key] = await self.start(topic, partition)
                self.checked.add(key)
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
        finally:
            self.busy -= 1
            self.last_record = self.clock()

    async def _reset(self, why: str) -> None:
        """The log is not the one the due offsets were saved on: start over on this one."""
        if self.log is not None:
            self.log.reset(why)
        else:
            log.warning("broker reset detected: %s", why)
        self.due.clear()
        self.checked.clear()
        self.cluster = self.log.cluster if self.log is not None else None
        if self.on_reset is not None:
            await _call(self.on_reset)

    async def undelivered(self, assigned: Iterable[Key],
                          highwater: Callable[[str, int], int | None],
                          idle_s: float) -> Offsets:
        """Where to read again the partitions whose log holds messages this agent was never
        handed: none came for ``idle_s`` seconds, yet the log ends past the offset due.

        Faust 0.15 drops the records it fetched when a rebalance stops its flow mid-batch and
        seeks back to the committed offsets, but aiokafka (0.14 ``seek_to_committed``) seeks
        only to a committed offset above 0. On a log with nothing committed yet (a broker
        reset, a new group) those records are gone from the consumer; the next message would
        show the gap and fetch them, but on a quiet log the next one may never come. A
        partition of a log that moved (another cluster) since this agent's last record is read
        from the group's start on the new log.
        """
        if self.busy or self.clock() - self.last_record < idle_s:
            return {}
        moved = self.log is not None and self.log.moved(self.cluster)
        out: Offsets = {}
        for topic, partition in assigned:
            key = (topic, partition)
            end = highwater(topic, partition)
            due = None if moved else self.due.get(key)
            if end is None or end <= 0 or (due is None and not moved):
                continue   # nothing there, or never read here: the first message asks
            if due is None:
                due = await self.start(topic, partition)
            if end > due:
                out[key] = due
        return out

    def checkpoint_due(self) -> bool:
        """Whether ``every_s`` has passed since the last checkpoint."""
        return self.clock() - self.last_save >= self.every_s

    async def checkpoint(self, force: bool = False) -> bool:
        """Flush, save, commit, if ``every_s`` has passed (or ``force``); True if it did."""
        if not force and not self.checkpoint_due():
            return False
        self.busy += 1
        try:
            await _call(self.flush)
            await _call(self.save, dict(self.due))
            await _call(self.commit)
        finally:
            self.busy -= 1
            self.last_record = self.last_save = self.clock()
        return True
