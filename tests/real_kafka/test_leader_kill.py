"""A 3-broker Kafka cluster loses its leader under load: every topic has replication factor 3
and min.insync.replicas 2, node 1 leads every partition of ``events`` (and the pipeline's
one-partition topics) and is SIGKILLed while the simulator publishes; every event is still
counted once, in every window."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kpis.messages import is_running
from simulator import Simulation
from simulator.publisher import EventPublisher, run_clock
from stream.topics import SINGLE_PARTITION_TOPICS
from stream.worker_process import WorkerProcess
from tests.real_kafka.conftest import KAFKA_VERSION, KafkaCluster, read_committed

START = 1_794_000_000 // 3600 * 3600
DAY = 86400.0
END = START + 3 * DAY
PARTITIONS = 4
PREFIX = "lk-"
APP_ID = "pulse-leader-kill"
# Faust's own topics for this app: the assignor's and the detector table's changelog
FAUST_TOPICS = (f"{APP_ID}-__assignor-__leader", f"{APP_ID}-detector-state-changelog")
SAFE = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    t0 = time.monotonic()
    c = KafkaCluster(3).start()
    print(f"\nApache Kafka {KAFKA_VERSION}: 3 nodes at {c.bootstrap}, up in "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    yield c
    c.stop()


async def _create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        led_by_1 = {p: [1, 2, 3] for p in range(PARTITIONS)}
        await admin.create_topics(
            [NewTopic(PREFIX + "events", -1, -1, replica_assignments=led_by_1,
                      topic_configs=SAFE)]
            + [NewTopic(PREFIX + t, -1, -1, replica_assignments={0: [1, 2, 3]},
                        topic_configs=SAFE) for t in SINGLE_PARTITION_TOPICS]
            + [NewTopic(t, 1, 3, topic_configs=SAFE) for t in FAUST_TOPICS])
    finally:
        await admin.close()


async def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(50):
            (meta,) = await admin.describe_topics([topic])
            got = {p["partition"]: p["leader"] for p in meta["partitions"]}
            if len(got) == PARTITIONS and all(v >= 0 for v in got.values()):
                return got
            await asyncio.sleep(0.2)
        return got
    finally:
        await admin.close()


async def _publish(c: Any, sim: Simulation, t0: float, t1: float, produced: list[dict],
                   kill_at: float | None = None, killed: list[float] | None = None) -> None:
    pub = EventPublisher(c.bootstrap, PREFIX + "events")   # the simulator's own producer
    await pub.start()
    assert pub.idempotent, "real Kafka takes idempotent produce: the publisher must use it"
    orig = pub.publish

    async def publish(events: list[dict], watermark: float) -> None:
        await orig(events, watermark)
        produced.extend(events)

    def on_tick(t: float) -> None:
        if kill_at is not None and killed is not None and not killed and t >= kill_at:
            killed.append(time.monotonic())   # the leader dies, publishing goes on
            c.kill(1, signal.SIGKILL)

    pub.publish = publish  # type: ignore[method-assign]
    try:
        await run_clock(sim, pub, t0, t1, speed=None, on_tick=on_tick)
        if t1 >= END:
            await orig([], END + 600)
    finally:
        await pub.stop()


def _finals(docs: list[dict]) -> dict[tuple[float, str], dict]:
    return {(d["window_start_ts"], d["kpi"]): d for d in docs if "kpi" in d and not is_running(d)}


def test_leader_killed_under_load_loses_and_doubles_nothing(cluster: Any) -> None:
    asyncio.run(_create_topics(cluster.bootstrap))
    leaders = asyncio.run(_leaders(cluster.bootstrap, PREFIX + "events"))
    assert set(leaders.values()) == {1}, leaders
    env = {"PULSE_TOPIC_PREFIX": PREFIX, "PULSE_APP_ID": APP_ID,
           "PULSE_EVENTS_PARTITIONS": str(PARTITIONS)}
    worker = WorkerProcess(cluster.bootstrap, env=env,
                           data_dir=tempfile.mkdtemp(prefix="pulse-lk-")).start()
    produced: list[dict] = []
    killed: list[float] = []
    sim = Simulation(seed=11, start_ts=START, scenario="none")
    t0 = time.monotonic()
    try:
        # a day first, until the worker is consuming and publishing windows
        asyncio.run(_publish(cluster, sim, START, START + DAY, produced))
        asyncio.run(read_committed(cluster.bootstrap, PREFIX + "kpis", timeout=180, idle=0,
                                   until=lambda m: (START + 12 * 3600, "scans") in _finals(m)))
        # two more days, node 1 SIGKILLed six hours (of event time) into them
        t1 = time.monotonic()
        asyncio.run(_publish(cluster, sim, START + DAY, END, produced,
                             kill_at=START + DAY + 6 * 3600, killed=killed))
        published = time.monotonic() - t1
        after = asyncio.run(_leaders(cluster.address(2), PREFIX + "events"))
        assert killed and 1 not in after.values(), after
        kpis = asyncio.run(read_committed(
            cluster.address(2), PREFIX + "kpis", timeout=300, idle=2,
            until=lambda m: any(w >= END - 3600 for w, k in _finals(m) if k == "scans")))
        assert worker.alive, worker.log_tail()
    finally:
        worker.stop()
    print(f"\nleader kill: {len(produced)} events; the last two days published in "
          f"{published:.0f} s, node 1 killed {killed[0] - t1:.0f} s into them (leaders after: "
          f"nodes {sorted(set(after.values()))}); all windows {time.monotonic() - t0:.0f} s "
          f"after the start")
    last = _finals(kpis)
    want: Counter = Counter()
    for e in produced:
        want[(e["ts"] // 3600 * 3600, e["kind"])] += 1
    hours = [START + h * 3600 for h in range(int((END - START) // 3600))]
    missing = [h for h in hours if (h, "scans") not in last]
    assert not missing, (missing[:5], worker.log_tail())
    wrong = {h: (last[(h, "scans")]["series"][0]["value"], want[(h, "scan")]) for h in hours
             if last[(h, "scans")]["series"][0]["value"] != want[(h, "scan")]}
    assert not wrong, (json.dumps(wrong)[:500], worker.log_path)
    assert sum(want[(h, "scan")] for h in hours) > 1000
