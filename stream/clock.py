"""Event time of the KPI stage: the clock over input partitions, and the hold on those ahead.

The KPI agent (stream/agents/kpis.py) closes windows on the slowest partition's event time
(:class:`PartitionClock`, plain Python: wall times are passed in) and stops fetching the
partitions that run too far ahead of it (:class:`FetchHold`, through Faust's consumer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from faust.types import TP

from stream import metrics

__all__ = ["PartitionClock", "FetchHold", "IDLE_PARTITION_S", "UNSEEN_WAIT_S"]

IDLE_PARTITION_S = 5.0
UNSEEN_WAIT_S = 60.0


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

    def __init__(self, topic: str, consumer: Callable[[], Any]) -> None:
        self.topic = topic
        self.consumer = consumer   # Faust's consumer of the app, asked at each update
        self.held: set[int] = set()

    def update(self, ahead: set[int]) -> None:
        consumer = self.consumer()
        for p in ahead:   # every time: a rebalance makes every assigned partition fetched again
            consumer.on_buffer_full(TP(self.topic, p))
        for p in self.held - ahead:
            consumer.on_buffer_drop(TP(self.topic, p))
        if ahead != self.held:
            metrics.FETCH_HELD.labels(self.topic).set(len(ahead))
        self.held = ahead
