"""The KPI stage's state per input partition: its windows, checkpointed one file a partition.

Whichever worker is assigned a partition resumes it from that file (workers of one deployment
share ``PULSE_DATA_DIR``); the next offset due is kept by the agent's
:class:`~stream.resume.Resume` and saved beside the windows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from kpis.partials import Partial, encode_partials
from kpis.windows import PartitionWindows
from stream.checkpoint import Checkpoint
from stream.resume import Offsets, Resume
from stream.settings import Settings

__all__ = ["PartitionState", "Partitions", "WINDOWS_PER_MESSAGE", "MAX_CLOSE_PER_STEP"]

log = logging.getLogger(__name__)

WINDOWS_PER_MESSAGE = 48     # closed windows per ``kpi-partials`` message (a backlog closes many)
MAX_CLOSE_PER_STEP = 14 * 24  # windows a partition closes per message at most (the rest: later)


class PartitionState:
    """What the KPI agent checkpoints per partition: its windows, and the next offset due."""

    def __init__(self, windows: PartitionWindows, next_offset: int | None) -> None:
        self.windows = windows
        self.next_offset = next_offset


class Partitions:
    """The partitions this worker reads, with what it last told the merge about each.

    ``assigned()`` lists the partitions of ``topic`` the consumer holds now, ``count()`` how
    many the topic has, ``send(value)`` publishes a ``kpi-partials`` message.
    """

    def __init__(self, topic: str, settings: Settings, resume: Resume,
                 assigned: Callable[[], set[int]], count: Callable[[], Awaitable[int]],
                 send: Callable[[bytes], Awaitable[object]]) -> None:
        self.topic = topic
        self.settings = settings
        self.resume = resume
        self._assigned, self._count, self._send = assigned, count, send
        self.open: dict[int, PartitionWindows] = {}
        self.reported: dict[int, int | None] = {}   # closed_before last sent to kpi-partials
        self.total: int | None = None               # partitions of the topic

    def assigned(self, also: int | None = None) -> list[int]:
        parts = set(self._assigned())
        if also is not None:
            parts.add(also)
        return sorted(parts)

    def checkpoint(self, partition: int) -> Checkpoint:
        s = self.settings
        name = f"{s.app_id}-{s.topic('events')}-p{partition}.ckpt"
        return Checkpoint(Path(s.data_dir) / "checkpoints" / name, app_id=s.app_id,
                          topics=(self.topic,), partition=partition)

    async def ensure_open(self, assigned: list[int]) -> None:
        """Resume (or start) the state of every assigned partition not open yet."""
        new = [p for p in assigned if p not in self.open]
        if not new:
            return
        if self.total is None:
            self.total = await self._count()
        s = self.settings
        for p in new:
            saved = self.checkpoint(p).load()
            if isinstance(saved, PartitionState):
                log.info("resumed KPI windows of %s[%d] from its checkpoint (event time %s)",
                         self.topic, p, saved.windows.watermark)
                saved.windows.peek_s = float(s.early_seconds)   # as configured now
                self.open[p] = saved.windows
                self.resume.resumed((self.topic, p), saved.next_offset)
            else:   # no checkpoint: due from where the group starts
                self.open[p] = PartitionWindows(window_s=s.window_seconds,
                                                lateness_s=s.lateness_seconds,
                                                peek_s=s.early_seconds)
                self.resume.resumed((self.topic, p), None)

    def save(self, offsets: Offsets) -> None:
        """Checkpoint the assigned partitions; forget those this worker no longer reads (their
        new reader resumes them from their last checkpoint)."""
        assigned = set(self.assigned())
        for p in list(self.open):
            if p in assigned:
                self.checkpoint(p).save(PartitionState(self.open[p],
                                                       offsets.get((self.topic, p))))
            else:
                self.release(p)

    def release(self, partition: int) -> None:
        """Drop what this worker holds of ``partition``: it went to another worker, or came
        back from one (its windows are read again from the checkpoint at the next message)."""
        self.open.pop(partition, None)
        self.reported.pop(partition, None)
        self.resume.forget((self.topic, partition))

    def step_limit(self, windows: PartitionWindows, watermark: float) -> float:
        """``watermark``, or less: the time that closes ``MAX_CLOSE_PER_STEP`` more windows of
        ``windows``, so one message never makes a worker close months of empty windows (the
        rest close with the next messages)."""
        first = windows.closed_before
        if first is None:
            return watermark
        s = self.settings
        return min(watermark, (first + MAX_CLOSE_PER_STEP) * float(s.window_seconds)
                   + s.lateness_seconds)

    async def close_windows(self, watermark: float) -> None:
        """Close every open partition's windows up to ``watermark``; report them to the merge,
        all partitions in one message (Faust's cost is per message), at most
        ``WINDOWS_PER_MESSAGE`` windows in each."""
        total = self.total or max(self.open, default=0) + 1
        message: list[Partial] = []
        room = WINDOWS_PER_MESSAGE
        for p, windows in self.open.items():
            upto = self.step_limit(windows, watermark)
            closed = windows.advance(upto, close_empty=True)
            closed_before = windows.closed_before
            # running counts of the open window, every tick, once the slowest partition has
            # reached the tick too: the merge needs them all for it, so waiting costs no time,
            # and every partition's peek of a tick travels in one message (not one each)
            peeks = windows.take_peeks(until=upto)
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
                    await self._send(encode_partials(message))
                    message, room = [], WINDOWS_PER_MESSAGE
                if done:
                    break
        if message:
            await self._send(encode_partials(message))
