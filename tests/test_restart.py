"""A worker restart (SIGTERM or SIGKILL) resumes from its checkpoint: no event lost or
counted twice in the closed windows."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from pulse.worker_process import WorkerProcess
from simulator import Simulation
from simulator.publisher import EventPublisher, run_clock
from stream.broker import EmbeddedBroker
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic

START = 1_794_000_000 // 3600 * 3600
DAY = 86400.0


async def _publish(p: Pipeline, sim: Simulation, t0: float, t1: float, produced: list) -> None:
    pub = EventPublisher(p.bootstrap, p.topic("events"))
    await pub.start()
    orig = pub.publish

    async def publish(events: list[dict], watermark: float) -> None:
        produced.extend(events)
        await orig(events, watermark)

    pub.publish = publish  # type: ignore[method-assign]
    try:
        await run_clock(sim, pub, t0, t1, speed=None)
    finally:
        await pub.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_resumes_without_loss_or_double_count(broker: EmbeddedBroker, sig: int) -> None:
    p = Pipeline(broker).start()
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    produced: list[dict] = []
    try:
        asyncio.run(_publish(p, sim, START, START + 2 * DAY, produced))
        # stop the worker while it is still working through the backlog
        asyncio.run(read_topic(p.bootstrap, p.topic("kpis"), timeout=60,
                               until=lambda m: len(m) >= 17 * 12))
        time.sleep(2.5)   # at least one checkpoint behind us
        p.worker.stop(sig=sig)
        p.worker = WorkerProcess(p.bootstrap, env=p.env, data_dir=p.worker.data_dir)
        p.worker.start()
        asyncio.run(_publish(p, sim, START + 2 * DAY, START + 3 * DAY, produced))
        end = START + 3 * DAY
        asyncio.run(_publish_final(p, end + 600))
        kpis = asyncio.run(read_topic(
            p.bootstrap, p.topic("kpis"), timeout=120,
            until=lambda m: any(d["window_end_ts"] >= end and d.get("kpi") == "scans" for d in m)))
        dead = asyncio.run(read_topic(p.bootstrap, p.topic("dead-letters"), timeout=3, idle=1))
    finally:
        p.worker.stop()
    # a window closed between the last checkpoint and the kill may be published again, with the
    # same numbers: the last word per window is what counts
    last: dict[tuple[float, str], float] = {}
    for d in kpis:
        if d.get("kpi") == "scans":
            last[(d["window_start_ts"], d["kpi"])] = d["series"][0]["value"]
    missing = sorted({START + h * 3600 for h in range(72)} - {w for w, _ in last})
    assert not missing, (missing, START)
    want: dict[float, int] = {}
    for e in produced:
        if e["kind"] == "scan":
            w = e["ts"] // 3600 * 3600
            want[w] = want.get(w, 0) + 1
    wrong = {w: (v, want.get(w, 0)) for (w, _), v in last.items() if v != want.get(w, 0)}
    assert not wrong, (wrong, START, p.worker.data_dir)
    assert all(d["reason"] == "late" for d in dead)   # at most re-deliveries of closed windows


async def _publish_final(p: Pipeline, ts: float) -> None:
    pub = EventPublisher(p.bootstrap, p.topic("events"))
    await pub.start()
    try:
        await pub.publish([], ts)
    finally:
        await pub.stop()
