"""Which partitions this worker was given at a rebalance that it did not hold just before.

An agent reads its state (a checkpoint file in the shared ``PULSE_DATA_DIR``, or a table) for
the partitions it reads. Workers of one group hand partitions to each other at every rebalance,
so a worker given a partition back holds a state another worker has moved on since (or, read
when the agent started, one from before the partition was processed at all). Used as it is,
that state is behind the offsets the other worker committed, and what it held is lost (``make
faults`` row ``kill-one-of-two``: a merge stage that took ``kpi-partials`` over with the empty
state it had started with republished windows short). And a KPI stage that keeps a partition
taken away from it could go on closing that partition's windows with the events it had read.

So before each message an agent asks :meth:`Custody.moved`: it reads its state again for the
partitions it was given (a saved state and its due offsets are consistent, stream/resume.py,
whoever wrote them) and drops what it holds of those taken away.

Faust's eager rebalances hand out every partition again; a partition this worker kept across a
rebalance was processed by nobody else meanwhile, so it is not "gained" and nothing is read.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP

from stream.app import app

__all__ = ["Custody"]

_moves: list[tuple[TP, bool]] = []   # (partition, given: True / taken away: False), in order
_held: set[TP] = set()               # the assignment after the last rebalance


def _on_assigned(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    """Faust's ``on_partitions_assigned`` signal (``send(assigned)``): the whole new
    assignment, the previous one's partitions not in it revoked."""
    global _held
    new = set(args[0] if args else kwargs.get("assigned", ()))
    _moves.extend((tp, False) for tp in sorted(_held - new))
    _moves.extend((tp, True) for tp in sorted(new - _held))
    _held = new


app.on_partitions_assigned.connect(_on_assigned)


class Custody:
    """One agent's view of the partitions of ``topic`` that moved since it last asked."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._read = 0

    def moved(self) -> tuple[set[int], set[int]]:
        """(given, taken away): partitions of the topic given to this worker, and those it no
        longer holds, since the last call (at the first call: since the worker started)."""
        given: set[int] = set()
        taken: set[int] = set()
        for tp, gained in _moves[self._read:]:
            if tp.topic == self.topic:
                (given if gained else taken).add(tp.partition)
                (taken if gained else given).discard(tp.partition)
        self._read = len(_moves)
        return given, taken

    def gained(self) -> set[int]:
        """The partitions of :meth:`moved` given to this worker (and still held)."""
        return self.moved()[0]
