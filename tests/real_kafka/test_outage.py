"""A single broker that is down for 60 s under a running worker: when it is back, the worker
carries on by itself and every event (published before, and after, the outage) is counted
once, in every window."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from kpis.messages import is_running
from simulator import Simulation
from simulator.publisher import publish_simulation
from tests.conftest import Pipeline
from tests.real_kafka.conftest import KAFKA_VERSION, KafkaCluster, as_broker, read_committed

START = 1_794_000_000 // 3600 * 3600
DAY = 86400.0
END = START + 3 * DAY
OUTAGE_S = 60.0


@pytest.fixture(scope="module")
def broker() -> Iterator[Any]:
    """A broker of this module's own: the test stops it."""
    c = KafkaCluster(1).start()
    print(f"\nApache Kafka {KAFKA_VERSION}: 1 node at {c.bootstrap}", flush=True)
    yield c
    c.stop()


async def _publish(p: Pipeline, sim: Simulation, t0: float, t1: float,
                   produced: list[dict]) -> None:
    await publish_simulation(p.bootstrap, p.topic("events"), sim, t0, t1, keep=produced,
                             watermark=END + 600 if t1 >= END else None)


def _finals(docs: list[dict]) -> dict[tuple[float, str], dict]:
    return {(d["window_start_ts"], d["kpi"]): d for d in docs if "kpi" in d and not is_running(d)}


def test_worker_rides_out_a_60_s_broker_outage(broker: Any) -> None:
    p = Pipeline(as_broker(broker.bootstrap), partitions=2).start()
    sim = Simulation(seed=7, start_ts=START, scenario="none")
    produced: list[dict] = []
    try:
        asyncio.run(_publish(p, sim, START, START + DAY, produced))
        asyncio.run(read_committed(p.bootstrap, p.topic("kpis"), timeout=180, idle=0,
                                   until=lambda m: (START + 20 * 3600, "scans") in _finals(m)))
        broker.kill(1, signal.SIGKILL)          # the broker crashes under the running worker
        time.sleep(OUTAGE_S)
        assert p.worker.alive, p.worker.log_tail()
        t_back = time.monotonic()
        broker.start_node(1)
        print(f"\nbroker back {time.monotonic() - t_back:.1f} s after its restart", flush=True)
        asyncio.run(_publish(p, sim, START + DAY, END, produced))
        kpis = asyncio.run(read_committed(
            p.bootstrap, p.topic("kpis"), timeout=300, idle=2,
            until=lambda m: any(w >= END - 3600 for w, k in _finals(m) if k == "scans")))
        print(f"all windows {time.monotonic() - t_back:.0f} s after the broker came back")
        assert p.worker.alive, p.worker.log_tail()
    finally:
        p.stop()
    last = _finals(kpis)
    want: Counter = Counter(e["ts"] // 3600 * 3600 for e in produced if e["kind"] == "scan")
    hours = [START + h * 3600 for h in range(int((END - START) // 3600))]
    missing = [h for h in hours if (h, "scans") not in last]
    assert not missing, (missing[:5], p.worker.log_tail())
    wrong = {h: (last[(h, "scans")]["series"][0]["value"], want[h]) for h in hours
             if last[(h, "scans")]["series"][0]["value"] != want[h]}
    assert not wrong, (wrong, p.worker.log_path)
