"""The one resume protocol (stream/resume.py), without a broker: the Kafka calls are fakes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from stream.checkpoint import Checkpoint, Resumable
from stream.resume import Offsets, Record, Resume

T = "events"


@dataclass
class Rec:   # what aiokafka's fetch gives: offset, value, timestamp in ms
    offset: int
    value: bytes
    timestamp: int = 5000


class FakeKafka:
    """A partition's log, the group's committed offset, and what the checkpoint steps did."""

    def __init__(self, n: int = 20, committed: int = 0) -> None:
        self.log = [Rec(i, b"m%d" % i) for i in range(n)]
        self.committed = committed
        self.calls: list[str] = []
        self.saved: list[Offsets] = []
        self.fetched: list[tuple[int, int]] = []
        self.now = 0.0

    async def fetch(self, topic: str, partition: int, start: int, end: int) -> list[Rec]:
        self.fetched.append((start, end))
        return [r for r in self.log if start <= r.offset < end]

    async def start(self, topic: str, partition: int) -> int:
        return self.committed

    async def flush(self) -> None:
        self.calls.append("flush")

    def save(self, offsets: Offsets) -> None:
        self.calls.append("save")
        self.saved.append(offsets)

    async def commit(self) -> None:
        self.calls.append("commit")
        self.committed = self.saved[-1][(T, 0)]

    def resume(self, every_s: float = 2.0, due: Offsets | None = None, **kw) -> Resume:
        return Resume(fetch=self.fetch, start=self.start, flush=self.flush, save=self.save,
                      commit=self.commit, every_s=every_s, due=due, clock=lambda: self.now,
                      **kw)


async def deliver(resume: Resume, offsets: list[int], kafka: FakeKafka) -> list[Record]:
    """Faust delivering ``offsets`` of partition 0, handled one record at a time."""
    out = []
    for o in offsets:
        async for rec in resume.records(T, 0, o, kafka.log[o].value, 5.0):
            out.append(rec)
    return out


def run(coro):
    return asyncio.run(coro)


def test_redelivery_is_skipped_and_counted() -> None:
    kafka = FakeKafka()
    redelivered: list[int] = []
    resume = kafka.resume(due={(T, 0): 5}, on_redelivered=redelivered.append)
    got = run(deliver(resume, [3, 4, 5, 6], kafka))
    assert [r.offset for r in got] == [5, 6]
    assert redelivered == [1, 1] and resume.due == {(T, 0): 7}


def test_unknown_partition_starts_at_the_groups_offset() -> None:
    kafka = FakeKafka(committed=4)
    resume = kafka.resume()
    got = run(deliver(resume, [4, 5], kafka))
    assert [r.offset for r in got] == [4, 5] and kafka.fetched == []


def test_gap_is_fetched_in_order_before_the_message() -> None:
    kafka = FakeKafka(committed=2)
    gaps: list[int] = []
    resume = kafka.resume(due={(T, 0): 2}, on_gap=gaps.append)
    got = run(deliver(resume, [2, 7, 8], kafka))   # Faust skipped 3..6 (faust#596)
    assert [r.offset for r in got] == [2, 3, 4, 5, 6, 7, 8]
    assert [r.fetched for r in got] == [False, True, True, True, True, False, False]
    assert [r.value for r in got] == [b"m%d" % i for i in range(2, 9)]
    assert got[1].timestamp == 5.0 and kafka.fetched == [(3, 7)] and gaps == [4]
    assert not any(r.replayed for r in got)


def test_gap_before_the_committed_offset_is_marked_replayed() -> None:
    # a state saved at 2, the group committed 5 (another copy of the state got further): the
    # records before 5 were handled before the restart
    kafka = FakeKafka(committed=5)
    resume = kafka.resume(due={(T, 0): 2})
    got = run(deliver(resume, [6], kafka))
    assert [(r.offset, r.replayed) for r in got] == [
        (2, True), (3, True), (4, True), (5, False), (6, False)]


def test_a_record_is_done_only_once_handled() -> None:
    kafka = FakeKafka()
    resume = kafka.resume(due={(T, 0): 0})

    async def crash_while_handling() -> None:
        async for _rec in resume.records(T, 0, 0, b"m0", 5.0):
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        run(crash_while_handling())
    assert resume.due == {(T, 0): 0}


def test_save_cadence_and_flush_save_commit_order() -> None:
    kafka = FakeKafka()
    resume = kafka.resume(every_s=2.0, due={(T, 0): 0})

    async def go() -> list[bool]:
        done = []
        for o in range(6):
            async for _ in resume.records(T, 0, o, b"", 5.0):
                pass
            kafka.now += 1.0
            done.append(await resume.checkpoint())
        return done

    assert run(go()) == [False, True, False, True, False, True]
    assert kafka.calls == ["flush", "save", "commit"] * 3
    assert [s[(T, 0)] for s in kafka.saved] == [2, 4, 6]
    assert run(resume.checkpoint(force=True)) and kafka.calls[-3:] == ["flush", "save", "commit"]


def test_async_save_is_awaited_before_commit() -> None:
    kafka = FakeKafka()
    order: list[str] = []

    async def save(offsets: Offsets) -> None:
        await asyncio.sleep(0)
        order.append("save")

    async def commit() -> None:
        order.append("commit")

    resume = Resume(fetch=kafka.fetch, start=kafka.start, flush=kafka.flush, save=save,
                    commit=commit, every_s=0.0)
    run(resume.checkpoint())
    assert order == ["save", "commit"]


def test_crash_between_save_and_commit_loses_nothing_and_handles_nothing_twice(
        tmp_path) -> None:
    """The state is saved at 6, the commit never happens (SIGKILL): Kafka re-delivers from the
    old commit, the saved offsets skip what the state holds, and the rest is handled once."""
    checkpoint = Checkpoint(tmp_path / "agent.ckpt")
    kafka = FakeKafka(n=10)
    handled: list[int] = []
    state = Resumable(handled)

    def save(offsets: Offsets) -> None:
        checkpoint.save(state.at(offsets))

    async def crash() -> None:
        raise SystemExit("killed")

    first = Resume(fetch=kafka.fetch, start=kafka.start, flush=kafka.flush, save=save,
                   commit=crash, every_s=0.0)

    async def until_killed() -> None:
        for o in range(6):
            async for rec in first.records(T, 0, o, b"", 5.0):
                handled.append(rec.offset)
        await first.checkpoint()

    with pytest.raises(SystemExit):
        run(until_killed())
    assert kafka.committed == 0   # the commit did not happen
    saved = checkpoint.load()
    assert saved.offsets == {(T, 0): 6} and saved.state == [0, 1, 2, 3, 4, 5]
    again = kafka.resume(due=saved.offsets)
    got = run(deliver(again, list(range(10)), kafka))   # re-delivered from the old commit
    assert saved.state + [r.offset for r in got] == list(range(10))


def test_a_partition_handed_over_is_forgotten_and_resumed_from_its_state() -> None:
    kafka = FakeKafka(committed=3)
    resume = kafka.resume(due={(T, 0): 8})
    resume.forget((T, 0))
    assert resume.due == {}
    resume.resumed((T, 0), None)   # no saved state: from the group's offset
    got = run(deliver(resume, [3], kafka))
    assert [r.offset for r in got] == [3]
    resume.resumed((T, 0), 9)
    assert run(deliver(resume, [4], kafka)) == []


def test_records_fetched_and_dropped_are_asked_for_again_only_when_the_agent_is_idle() -> None:
    """Faust drops what it fetched when a rebalance stops its flow, and seeks back only to a
    committed offset above 0: an idle agent whose log ends past its due offset is sought back
    to that offset; a busy one, or one given messages recently, is left alone."""
    kafka = FakeKafka()
    resume = kafka.resume(due={(T, 0): 4})
    run(deliver(resume, [4, 5], kafka))             # due 6; the log holds 20
    ends = {0: 20, 1: 0}

    def end(topic: str, partition: int) -> int | None:
        return ends.get(partition)

    assigned = [(T, 0), (T, 1), (T, 2)]   # 1: empty; 2: end unknown
    kafka.now += 5.0
    assert run(resume.undelivered(assigned, end, idle_s=10.0)) == {}      # given one 5 s ago
    kafka.now += 6.0
    assert run(resume.undelivered(assigned, end, idle_s=10.0)) == {(T, 0): 6}
    ends[0] = 6
    assert run(resume.undelivered(assigned, end, idle_s=10.0)) == {}      # read to its end

    async def while_handling() -> Offsets:
        ends[0] = 20
        async for _rec in resume.records(T, 0, 6, b"m6", 5.0):
            kafka.now += 60.0                 # a record handled for a minute
            return await resume.undelivered(assigned, end, idle_s=10.0)
        return {}
    assert run(while_handling()) == {}


def test_after_a_broker_reset_an_idle_agent_is_sought_to_the_start_of_the_new_log() -> None:
    from stream.resume import LogIdentity
    ident = LogIdentity(cluster="old")
    kafka = FakeKafka(committed=0)
    resume = kafka.resume(due={(T, 0): 40}, log=ident)   # 40: an offset of the old log
    ident.cluster = "new"                                 # the broker watch saw another cluster
    kafka.now += 30.0

    def end(topic: str, partition: int) -> int | None:
        return 7

    # the new log ends at 7, before the old due offset 40: read from the group's start there
    assert run(resume.undelivered([(T, 0), (T, 1)], end, idle_s=10.0)) == {(T, 0): 0, (T, 1): 0}
    got = run(deliver(resume, [0, 1], kafka))
    assert [r.offset for r in got] == [0, 1] and resume.cluster == "new"


async def test_a_question_the_broker_cannot_answer_is_asked_again_not_raised(caplog):
    # make_resume asks start offsets and gap fetches through until_answered: an agent whose
    # first message came as the broker died crashed on the failed question (issue 15)
    from stream.broker import until_answered

    tries = []

    async def ask() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("Unable to bootstrap")
        return 42

    with caplog.at_level("WARNING", logger="stream.broker"):
        assert await until_answered(ask, "where t[0] starts", every_s=0.01) == 42
    assert len(tries) == 3
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "asking again" in said[0] and "after 2 failed" in said[1], said


async def test_a_client_stopped_while_its_broker_is_away_does_not_cancel_its_caller():
    from stream.broker import stop_client

    class Dying:   # aiokafka 0.14's consumer.stop() with its fetch task cancelled under it
        async def stop(self) -> None:
            raise asyncio.CancelledError

    await stop_client(Dying())   # not raised: the caller was not cancelled

    async def cancelled_caller() -> None:
        asyncio.current_task().cancel()
        await stop_client(Dying())

    with pytest.raises(asyncio.CancelledError):   # a caller being cancelled is
        await asyncio.ensure_future(cancelled_caller())
