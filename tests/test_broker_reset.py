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
from stream.broker import EmbeddedBroker
from stream.topics import SINGLE_PARTITION_TOPICS
from stream.worker_process import WorkerProcess
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic
from tests.test_restart import _publish, _publish_final

START = 1_794_000_000 // 3600 * 3600
HOUR = 3600.0
RESET_LINE = "broker reset detected"


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
    them again.)"""
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    a = EmbeddedBroker().start()
    p = Pipeline(a)
    log_path = tmp_path / "worker.log"
    p.worker = WorkerProcess(a.bootstrap, env=p.env, data_dir=str(tmp_path / "data"),
                             log_path=log_path)
    b = EmbeddedBroker(port=a.port)
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



def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(c) for c in text.split()}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_pulse_broker_takes_its_broker_along_on_every_exit() -> None:
    """``pulse broker --port N`` on SIGTERM, SIGINT and SIGKILL of itself: no broker is left."""
    import subprocess
    import sys

    from stream.broker import free_port

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        port = free_port()
        owner = subprocess.Popen([sys.executable, "-m", "pulse", "broker", "--port", str(port)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert owner.stdout is not None
            line = owner.stdout.readline().decode()
            assert f"listening on 127.0.0.1:{port}" in line and "nothing kept" in line, line
            brokers = _children(owner.pid)
            assert len(brokers) == 1, brokers
            owner.send_signal(sig)
            owner.wait(timeout=15)
            deadline = time.monotonic() + 10
            while any(_alive(b) for b in brokers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(_alive(b) for b in brokers), (sig, brokers)
        finally:
            if owner.poll() is None:
                owner.kill()
                owner.wait()


def test_the_embedded_broker_memory_is_bounded() -> None:
    """Tansu keeps every message in memory and has no retention: past its limit the broker is
    started again, empty, on the same port, with a new cluster id."""
    from aiokafka import AIOKafkaProducer

    from stream.broker import rss_mb

    async def flood(bootstrap: str, broker: EmbeddedBroker) -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=1 << 20,
                                    linger_ms=5)
        await producer.start()
        peak = 0.0
        try:
            payload = os.urandom(50_000)
            for _ in range(60):   # up to 60 x 2 MB
                if broker.restarts:
                    break
                try:
                    for _ in range(40):
                        await producer.send("flood", payload, partition=0)
                    await asyncio.wait_for(producer.flush(), 10)
                except Exception:   # the broker was started again under the producer
                    await asyncio.sleep(0.5)
                if broker.process is not None:
                    peak = max(peak, rss_mb(broker.process.pid) or 0.0)
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()
        return peak

    with EmbeddedBroker(max_mb=60) as broker:
        first = broker.cluster_id
        peak = asyncio.run(flood(broker.bootstrap, broker))
        deadline = time.monotonic() + 10
        while not broker.restarts and time.monotonic() < deadline:
            time.sleep(0.2)
        assert broker.restarts >= 1 and broker.cluster_id != first
        assert broker.process is not None
        now = rss_mb(broker.process.pid)
        assert now is not None and now < 60, now
        assert peak < 60 + 60, peak   # the limit plus what 0.5 s of flooding adds


# --- without a broker: the pieces --------------------------------------------------------------

def test_resume_starts_over_on_another_cluster_and_on_a_log_shorter_than_its_offsets() -> None:
    from stream.resume import LogIdentity, Resume

    resets: list[str] = []
    started_over: list[int] = []

    async def fetch(topic: str, partition: int, start: int, end: int) -> list:
        from types import SimpleNamespace
        return [SimpleNamespace(offset=i, value=b"", timestamp=0) for i in range(start, end)]

    async def start(topic: str, partition: int) -> int:
        return 0

    async def end(topic: str, partition: int) -> int | None:
        return ends[partition]

    async def handled(resume: Resume, partition: int, offset: int) -> list[int]:
        return [r.offset async for r in resume.records("t", partition, offset, b"", 0.0)]

    ident = LogIdentity("a", on_reset=lambda: resets.append("x"))
    ends = {0: 50, 1: 50}
    r = Resume(fetch=fetch, start=start, flush=lambda: None, save=lambda o: None,
               commit=lambda: None, every_s=1.0, due={("t", 0): 40, ("t", 1): 40}, log=ident,
               end=end, on_reset=lambda: started_over.append(1))
    assert asyncio.run(handled(r, 0, 39)) == []          # a re-delivery: the log reaches 40
    ident.cluster = "b"                                   # the broker is another log now
    assert asyncio.run(handled(r, 1, 0)) == [0]          # read from its start
    assert asyncio.run(handled(r, 0, 0)) == [0]
    assert started_over == [1] and resets == ["x"]
    # same cluster, but the partition now ends before the saved offset (topic made again)
    r2 = Resume(fetch=fetch, start=start, flush=lambda: None, save=lambda o: None,
                commit=lambda: None, every_s=1.0, due={("t", 0): 40}, log=ident, end=end,
                on_reset=lambda: started_over.append(2))
    ends[0] = 3
    assert asyncio.run(handled(r2, 0, 1)) == [0, 1]       # 0 was missing: fetched first
    assert started_over == [1, 2] and resets == ["x"]     # said once per new log


def test_an_outage_is_logged_once_then_every_reminder_and_a_new_cluster_reset_once(
        caplog: object) -> None:
    import logging

    from stream.broker import BrokerWatch
    from stream.resume import LogIdentity

    answers: list[str | None] = ["a"] + [None] * 100 + ["b", "b"]
    now = [0.0]
    up: list[int] = []
    recreated: list[str | None] = []
    resets: list[int] = []
    ident = LogIdentity("a", on_reset=lambda: resets.append(1))

    async def probe(bootstrap: str) -> str | None:
        return answers.pop(0)

    async def recreate() -> None:
        recreated.append(ident.cluster)

    watch = BrokerWatch("x:1", ident, set_up=up.append, recreate=recreate, remind_s=30.0,
                        probe=probe, clock=lambda: now[0])

    async def run() -> None:
        while answers:
            await watch.step()
            now[0] += 1.0

    with caplog.at_level(logging.INFO, logger="stream"):   # type: ignore[attr-defined]
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records]      # type: ignore[attr-defined]
    assert len(lines) <= 7, lines   # down, 3 reminders over 100 s, back, reset
    assert up[0] == 1 and set(up[1:101]) == {0} and up[-1] == 1
    assert resets == [1] and recreated == ["b"] and ident.cluster == "b"
    assert sum(RESET_LINE in line for line in lines) == 1


def test_repeated_kafka_client_errors_are_held_to_one_line_per_period() -> None:
    import logging

    from stream.broker import QuietRepeats

    now = [0.0]
    quiet = QuietRepeats(30.0, clock=lambda: now[0])

    def rec(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)

    shown = []
    for i in range(770):   # 77 a second for 10 s
        now[0] = i / 77
        r = rec("aiokafka.conn", "Unable connect to %r")
        if quiet.filter(r):
            shown.append(r)
    assert len(shown) == 1
    now[0] = 31.0
    r = rec("aiokafka.conn", "Unable connect to %r")
    assert quiet.filter(r) and quiet.filter(r)   # shown, also by the next handler
    assert "769 more like it" in str(r.msg)
    assert quiet.filter(rec("stream.agents.kpis", "x")) and quiet.filter(rec("stream.x", "x"))


def test_the_broker_watch_probe_keeps_one_client_and_sees_a_broker_started_again() -> None:
    """The probe asks on one admin client from one second to the next; a broker stopped, then
    started again empty on the same port (a new cluster), is seen as away, then as the new
    cluster (the watch's reset detection rests on this)."""
    from stream.broker import ClusterProbe

    async def ask(probe: ClusterProbe, bootstrap: str, times: int) -> list[str | None]:
        return [await probe(bootstrap) for _ in range(times)]

    probe = ClusterProbe(timeout_s=2.0)
    broker = EmbeddedBroker().start()
    try:
        loop = asyncio.new_event_loop()
        first = loop.run_until_complete(ask(probe, broker.bootstrap, 3))
        client = probe._admin
        assert first == [broker.cluster_id] * 3 and client is not None
        assert loop.run_until_complete(ask(probe, broker.bootstrap, 1)) == [broker.cluster_id]
        assert probe._admin is client   # the same client, not one per question
        old = broker.cluster_id
        broker.stop()
        assert loop.run_until_complete(ask(probe, broker.bootstrap, 1)) == [None]
        assert probe._admin is None     # closed after a failure
        broker.start()                  # the same port, a new empty log
        assert broker.cluster_id != old
        again = loop.run_until_complete(ask(probe, broker.bootstrap, 2))
        assert again == [broker.cluster_id] * 2
        loop.run_until_complete(probe.close())
        loop.close()
    finally:
        broker.stop()
