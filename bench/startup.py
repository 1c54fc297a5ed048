"""Start-up and restart of a worker against the same broker, to its first processed event.

The clock starts when the worker process is launched and stops when its /metrics endpoint
first reports a consumed message (``pulse_messages_total``); events are waiting in the topic
before each launch, so the number is the worker's own start-up (group join, assignment, fetch).
"""

from __future__ import annotations

import asyncio
import signal
import time

from bench.scrape import metric_value
from simulator import Simulation
from simulator.publisher import EventPublisher, ensure_topics
from stream.topics import SINGLE_PARTITION_TOPICS
from stream.worker_process import WorkerProcess

__all__ = ["measure_startup"]

START = 1_794_000_000 // 3600 * 3600


def _time_to_first_event(worker: WorkerProcess, timeout: float = 180.0) -> float:
    launched = time.monotonic()
    worker.start()
    while time.monotonic() - launched < timeout:
        if metric_value(worker.metrics_port, "pulse_messages_total") >= 1:
            return time.monotonic() - launched
        if not worker.alive:
            raise RuntimeError("worker died:\n" + worker.log_tail())
        time.sleep(0.05)
    raise TimeoutError(f"no event processed within {timeout:.0f} s")


async def _publish(bootstrap: str, topic: str, sim: Simulation, until: float) -> None:
    pub = EventPublisher(bootstrap, topic)
    await pub.start()
    try:
        await pub.publish(sim.advance(until), until)
    finally:
        await pub.stop()


def measure_startup(bootstrap: str, prefix: str = "bench-start-") -> dict[str, float]:
    """``startup_s``, ``restart_s`` (after SIGTERM) and ``restart_kill_s`` (after SIGKILL)."""
    topic = f"{prefix}events"
    asyncio.run(ensure_topics(bootstrap, {topic: 4, **{
        f"{prefix}{t}": 1 for t in SINGLE_PARTITION_TOPICS}}))
    env = {"PULSE_TOPIC_PREFIX": prefix, "PULSE_APP_ID": f"{prefix}app"}
    sim = Simulation(3, START)
    results: dict[str, float] = {}
    data_dir = None
    for name, sig in (("startup_s", None), ("restart_s", signal.SIGTERM),
                      ("restart_kill_s", signal.SIGKILL)):
        asyncio.run(_publish(bootstrap, topic, sim, START + 3600 * (len(results) + 1)))
        worker = WorkerProcess(bootstrap, env=env, data_dir=data_dir)
        data_dir = worker.data_dir
        results[name] = round(_time_to_first_event(worker), 2)
        time.sleep(3)  # let it checkpoint and commit
        worker.stop(sig=sig or signal.SIGTERM)
    return results


if __name__ == "__main__":
    from stream.broker import EmbeddedBroker
    with EmbeddedBroker() as b:
        print(measure_startup(b.bootstrap))
