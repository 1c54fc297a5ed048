"""Scale-out: two workers of one group share the ``events`` partitions; the KPI windows they
publish together equal those of a single worker on the same events."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from kpis.messages import is_running
from simulator import Simulation
from simulator.publisher import publish_simulation
from stream.broker import EmbeddedBroker
from stream.worker_process import WorkerProcess
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic

START = 1_794_000_000 // 3600 * 3600
DAY = 86400.0
END = START + 3 * DAY


async def _publish(p: Pipeline) -> None:
    sim = Simulation(seed=11, start_ts=START, scenario="payment-outage",
                     incident_range=(START + DAY, END - 3600))
    await publish_simulation(p.bootstrap, p.topic("events"), sim, START, END,
                             watermark=END + 600)


def _windows(p: Pipeline) -> dict[tuple[float, str], list]:
    """The last word on every (window, KPI) of the ``kpis`` topic."""
    docs = asyncio.run(read_topic(
        p.bootstrap, p.topic("kpis"), timeout=180,
        until=lambda m: any(d.get("window_end_ts", 0) >= END and not is_running(d) for d in m)))
    out = {}
    for d in docs:
        if "kpi" in d and not is_running(d):   # final values (running ones come and go)
            out[(d["window_start_ts"], d["kpi"])] = [d["complete"], d["series"]]
    return out


def _worker_partitions(w: WorkerProcess) -> str:
    return w.log_path.read_text(errors="replace")[-3000:]


def test_two_workers_share_partitions_and_match_one(broker: EmbeddedBroker) -> None:
    single = Pipeline(broker, partitions=4).start()
    try:
        asyncio.run(_publish(single))
        one = _windows(single)
        single_metrics = single.metrics_text()
    finally:
        single.stop()

    pair = Pipeline(broker, partitions=4, PULSE_LOG_LEVEL="info")
    shared = tempfile.mkdtemp(prefix="pulse-shared-")   # the volume workers share
    workers = [WorkerProcess(pair.bootstrap, env=pair.env, data_dir=shared,
                             log_path=str(Path(shared) / f"worker{i}.log")) for i in range(2)]
    try:
        for w in workers:
            w.start()
        asyncio.run(_publish(pair))
        two = _windows(pair)
        scraped = [_metrics(w) for w in workers]
    finally:
        for w in workers:
            w.stop()
    # both workers read events: each one's messages counter is positive
    consumed = [_counter(text, "pulse_messages_total") for text in scraped]
    assert all(c > 0 for c in consumed), (consumed, [_worker_partitions(w) for w in workers])
    assert sum(consumed) >= _counter(single_metrics, "pulse_messages_total")
    assert len(one) >= 3 * 24 * 15   # hours x KPIs defined in them
    assert two.keys() == one.keys()
    diff = [k for k in one if one[k] != two[k]]
    assert not diff, diff[:5]


def _metrics(w: WorkerProcess) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{w.metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _counter(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
