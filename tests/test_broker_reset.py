"""A broker reset (the embedded broker started again, which keeps nothing) is detected from the
log identity saved with the state: said once, counted (``pulse_broker_resets_total``), the topics
read again from their start, and the next events counted (issue 19, H3)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

from kpis.messages import is_running
from simulator import Simulation
from stream.agents.detect import SAVE_EVERY_S
from stream.broker import EmbeddedBroker
from stream.topics import SINGLE_PARTITION_TOPICS
from stream.worker_process import WorkerProcess
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic
from tests.test_restart import _publish, _publish_final

START = 1_794_000_000 // 3600 * 3600
HOUR = 3600.0
RESET_LINE = "broker reset detected"
CHANGELOG_FROM_START = "detector-state-changelog[0] ends at offset"


def metric(p: Pipeline, name: str) -> float:
    """The sum of every series of ``name`` the worker exports."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in p.metrics_text().splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def wait_metric(p: Pipeline, name: str, ok: object, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = metric(p, name)
        if ok(value) or time.monotonic() > deadline:   # type: ignore[operator]
            return value
        time.sleep(0.5)


def scans_per_window(produced: list[dict]) -> Counter[float]:
    return Counter(e["ts"] // HOUR * HOUR for e in produced if e["kind"] == "scan")


def closed_scans(kpis: list[dict]) -> dict[float, float]:
    return {d["window_start_ts"]: d["series"][0]["value"] for d in kpis
            if d.get("kpi") == "scans" and not is_running(d)}


def test_after_a_broker_reset_the_next_events_are_counted(tmp_path: Path) -> None:
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    data = str(tmp_path / "data")
    with EmbeddedBroker() as a:
        p = Pipeline(a)
        p.worker = WorkerProcess(a.bootstrap, env=p.env, data_dir=data,
                                 log_path=tmp_path / "worker-a.log")
        p.start()
        try:
            asyncio.run(_publish(p, sim, START, START + 6 * HOUR, []))
            asyncio.run(_publish_final(p, START + 6 * HOUR + 600))
            asyncio.run(read_topic(p.bootstrap, p.topic("kpis"), timeout=90,
                                   until=lambda m: len(closed_scans(m)) >= 5))
            assert wait_metric(p, "pulse_events_total", lambda v: v > 0) > 0
        finally:
            p.stop()   # SIGTERM: every agent saves its state with its offsets
    assert list((Path(data) / "checkpoints").glob("*.ckpt")), "no state saved on broker A"

    with EmbeddedBroker() as b:   # a fresh broker: empty, another cluster id
        p.bootstrap = b.bootstrap
        p.worker = WorkerProcess(b.bootstrap, env=p.env, data_dir=data,
                                 log_path=tmp_path / "worker-b.log")
        p.start()
        produced: list[dict] = []
        try:
            t0, t1 = START + 6 * HOUR, START + 12 * HOUR
            asyncio.run(_publish(p, sim, t0, t1, produced))
            asyncio.run(_publish_final(p, t1 + 600))
            kpis = asyncio.run(read_topic(
                p.bootstrap, p.topic("kpis"), timeout=90,
                until=lambda m: any(w >= t1 - HOUR for w in closed_scans(m))))
            events = wait_metric(p, "pulse_events_total", lambda v: v >= len(produced))
            resets = metric(p, "pulse_broker_resets_total")
            up = metric(p, "pulse_broker_up")
        finally:
            p.stop()
    log = (tmp_path / "worker-b.log").read_text(errors="replace")
    assert events == len(produced) > 0, (events, len(produced))
    want = scans_per_window(produced)
    got = {w: v for w, v in closed_scans(kpis).items() if w >= t0}
    assert got == {w: want.get(w, 0) for w in got} and len(got) == 6, (got, want)
    assert log.count(RESET_LINE) == 1, log[-3000:]
    assert resets == 1 and up == 1


def _broker_and_successor(tmp_path: Path) -> tuple[EmbeddedBroker, EmbeddedBroker, Pipeline,
                                                   Path]:
    """Broker A (started), B to start later on A's port, and a worker on A logging to the
    returned path."""
    a = EmbeddedBroker().start()
    p = Pipeline(a)
    log_path = tmp_path / "worker.log"
    p.worker = WorkerProcess(a.bootstrap, env=p.env, data_dir=str(tmp_path / "data"),
                             log_path=log_path)
    return a, EmbeddedBroker(port=a.port), p, log_path


async def _topics(bootstrap: str) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(await admin.list_topics())
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


def test_a_broker_that_dies_under_a_worker_is_waited_out_and_its_successor_read(
        tmp_path: Path) -> None:
    """SIGKILL of the broker under a running worker, then a new empty one on the same port: the
    outage is logged a few lines (not dozens a second), ``pulse_broker_up`` goes 0 then 1, the
    topics are created again with their partition counts, the reset is said and counted once,
    and every new event is counted, in its window.

    (Before: a seek inside the consumer's own rebalance deadlocked it; the old log's acks
    committed on the new one skipped a third of the events; and in about half the runs the
    records fetched from the new log were dropped by Faust when the rejoin's rebalance stopped
    its flow, never to be read again: nothing is committed on a new log, and aiokafka seeks
    back only to a committed offset above 0. ``reread_undelivered`` in stream/app.py reads
    them again. And 1 CI run in 8 counted nothing after the reset: the detectors' table
    recovery waited for ever, every stream paused, for changelog records it never received;
    stream/app.py ``unstall_table_recovery`` stops it waiting.)"""
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    a, b, p, log_path = _broker_and_successor(tmp_path)
    produced: list[dict] = []
    try:
        p.start()
        asyncio.run(_publish(p, sim, START, START + 6 * HOUR, []))
        asyncio.run(read_topic(p.bootstrap, p.topic("kpis"), timeout=90,
                               until=lambda m: len(closed_scans(m)) >= 5))
        assert wait_metric(p, "pulse_broker_up", lambda v: v == 1) == 1
        counted_on_a = metric(p, "pulse_events_total")
        assert a.process is not None
        os.killpg(a.process.pid, signal.SIGKILL)
        a.stop()
        lines_before = len(log_path.read_text(errors="replace").splitlines())
        down = wait_metric(p, "pulse_broker_up", lambda v: v == 0, timeout=10)
        time.sleep(12)   # an outage of some seconds
        outage_lines = len(log_path.read_text(errors="replace").splitlines()) - lines_before
        b.start()
        assert wait_metric(p, "pulse_broker_up", lambda v: v == 1, timeout=30) == 1
        t0, t1 = START + 6 * HOUR, START + 12 * HOUR
        asyncio.run(_publish(p, sim, t0, t1, produced))
        asyncio.run(_publish_final(p, t1 + 600))
        kpis = asyncio.run(read_topic(
            p.bootstrap, p.topic("kpis"), timeout=120,
            until=lambda m: any(w >= t1 - HOUR for w in closed_scans(m))))
        resets = wait_metric(p, "pulse_broker_resets_total", lambda v: v >= 1)
        counted = metric(p, "pulse_events_total") - counted_on_a
        topics = asyncio.run(_topics(b.bootstrap))
    finally:
        p.stop()
        a.stop()
        b.stop()
    assert down == 0
    assert outage_lines <= 20, log_path.read_text(errors="replace")[-4000:]
    want_topics = {p.topic("events"): p.partitions,
                   **{p.topic(t): 1 for t in SINGLE_PARTITION_TOPICS}}
    assert {t: topics.get(t) for t in want_topics} == want_topics, topics
    assert any(t.endswith("detector-state-changelog") for t in topics), topics
    assert resets == 1
    assert log_path.read_text(errors="replace").count(RESET_LINE) == 1
    want = scans_per_window(produced)
    got = {w: v for w, v in closed_scans(kpis).items() if w >= t0}
    assert counted == len(produced), (counted, len(produced))
    assert got == {w: want.get(w, 0) for w in got} and len(got) == 6, (got, want)


def test_a_worker_that_recovered_its_table_before_a_broker_reset_goes_on_after_it(
        tmp_path: Path) -> None:
    """A worker restarted once on broker A recovered the detectors' table from A's changelog;
    A dies under it and an empty B takes its port. Faust kept the offset it had read A's
    changelog up to, past the end of B's: its recovery raised ``ConsistencyError`` and the
    worker, every stream paused, never counted another event (stream/faust_internals.py
    ``forget_offsets_past_the_log`` reads B's changelog from its start). Every event sent to B
    is counted, and the old offset is said dropped, once."""
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    a, b, p, log_path = _broker_and_successor(tmp_path)
    produced: list[dict] = []
    try:
        p.start()
        first: list[dict] = []
        asyncio.run(_publish(p, sim, START, START + 3 * HOUR, first))
        asyncio.run(read_topic(p.bootstrap, p.topic("kpis"), timeout=90,
                               until=lambda m: len(closed_scans(m)) >= 2))
        time.sleep(SAVE_EVERY_S + 0.5)   # the next closed window saves the detectors' table
        asyncio.run(_publish(p, sim, START + 3 * HOUR, START + 6 * HOUR, first))
        assert wait_metric(p, "pulse_events_total", lambda v: v >= len(first)) == len(first)
        changelog = f"{p.env['PULSE_APP_ID']}-detector-state-changelog"
        assert asyncio.run(read_topic(p.bootstrap, changelog, timeout=60,
                                      until=lambda m: len(m) >= 1))
        p.stop()
        p.start()   # its table recovered from A's changelog
        again: list[dict] = []   # counted by the restarted worker: its recovery is done
        asyncio.run(_publish(p, sim, START + 6 * HOUR, START + 7 * HOUR, again))
        assert wait_metric(p, "pulse_events_total", lambda v: v >= len(again)) == len(again)
        assert a.process is not None
        os.killpg(a.process.pid, signal.SIGKILL)
        a.stop()
        assert wait_metric(p, "pulse_broker_up", lambda v: v == 0, timeout=10) == 0
        time.sleep(5)
        counted_on_a = metric(p, "pulse_events_total")
        b.start()
        assert wait_metric(p, "pulse_broker_up", lambda v: v == 1, timeout=30) == 1
        asyncio.run(_publish(p, sim, START + 7 * HOUR, START + 10 * HOUR, produced))
        counted = wait_metric(p, "pulse_events_total",
                              lambda v: v - counted_on_a >= len(produced),
                              timeout=180) - counted_on_a
        resets = metric(p, "pulse_broker_resets_total")
    finally:
        p.stop()
        a.stop()
        b.stop()
    log = log_path.read_text(errors="replace")
    assert counted == len(produced) > 0, (counted, len(produced), log[-3000:])
    assert resets == 1
    assert log.count(CHANGELOG_FROM_START) == 1, log[-3000:]
