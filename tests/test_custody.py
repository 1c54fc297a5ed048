"""Partitions moving between workers (stream/custody.py): an agent learns which partitions it
was given, and reads its state again for them; and which were taken away, and drops them.

``make faults`` row ``kill-one-of-two`` lost events when a worker took the merge stage over
with the state it had read at its own start, long before: these check the bookkeeping that
tells the agents to read it again, without a broker (the signal is called as Faust calls it).
"""

from __future__ import annotations

import pytest
from faust.types import TP

from stream import custody
from stream.custody import Custody


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(custody, "_moves", [])
    monkeypatch.setattr(custody, "_held", set())


def _assign(*tps: tuple[str, int]) -> None:
    custody._on_assigned(object(), {TP(t, p) for t, p in tps}, signal=None)


def test_the_first_assignment_gives_every_partition() -> None:
    merge, kpis = Custody("kpi-partials"), Custody("events")
    _assign(("kpi-partials", 0), ("events", 0), ("events", 1))
    assert merge.moved() == ({0}, set())
    assert kpis.moved() == ({0, 1}, set())
    assert merge.moved() == (set(), set())   # asked again: nothing new


def test_a_partition_kept_across_a_rebalance_is_not_given_again() -> None:
    c = Custody("events")
    _assign(("events", 0), ("events", 1), ("events", 2), ("events", 3))
    c.moved()
    _assign(("events", 0), ("events", 1))          # a second worker joined
    assert c.moved() == (set(), {2, 3})
    _assign(("events", 0), ("events", 1), ("events", 2), ("events", 3))   # it died
    assert c.moved() == ({2, 3}, set())


def test_a_partition_taken_and_given_back_between_two_messages_is_given() -> None:
    """Away and back before the agent's next message: another worker may have moved it on,
    so the state is read again."""
    c = Custody("kpi-partials")
    _assign(("kpi-partials", 0))
    c.moved()
    _assign(("events", 0))
    _assign(("kpi-partials", 0))
    assert c.moved() == ({0}, set())


def test_given_then_taken_before_the_next_message_is_only_taken() -> None:
    c = Custody("events")
    _assign(("events", 0))
    c.moved()
    _assign(("events", 0), ("events", 1))
    _assign(("events", 0))
    assert c.moved() == (set(), {1})


def test_each_agent_keeps_its_own_place() -> None:
    """The detect and digest agents both read ``kpis``: each is told once."""
    detect, digest = Custody("kpis"), Custody("kpis")
    _assign(("kpis", 0))
    assert detect.gained() == {0}
    _assign()
    _assign(("kpis", 0))
    assert detect.gained() == {0}
    assert digest.gained() == {0}
    assert digest.gained() == set()
