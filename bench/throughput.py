"""Throughput and memory of one worker, against the ceiling of a plain Python consumer.

The events (simulated days, every segment and channel) are published first; then

- ``raw_consume_per_s``: a plain aiokafka consumer reads the whole topic and decodes every
  event (the ceiling for Python here);
- ``events_per_s``: a worker is launched on the same topic and timed from its first processed
  message until the last window's marker reaches ``anomalies`` (events through KPI windows and
  detectors to the ``kpis`` and ``anomalies`` topics);
- ``peak_rss_mb``: the worker's peak resident memory (VmHWM) over the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from bench.scrape import metric_value
from core.settings import Settings
from simulator import Simulation
from simulator.publisher import ensure_topics, publish_simulation
from stream.topics import SINGLE_PARTITION_TOPICS
from stream.worker_process import WorkerProcess

__all__ = ["measure_throughput", "publish_days", "raw_consume"]

# 84 days ending 2026-09-21, well in the past: a backlog is history. (Until session 9 the days
# began on 2026-09-21 and ran into December; once the calendar reached them, the days less than
# PULSE_EARLY_MAX_AGE_SECONDS old, or ahead of the wall clock, got early looks, so the figure
# fell by itself as the date moved: 12 of the 84 days on 2026-12-02.) The same hour and weekday
# as before, twelve weeks earlier.
START = 1_790_000_000 // 3600 * 3600 - 12 * 7 * 86400
DAY = 86400.0
HOUR = 3600.0


async def publish_days(bootstrap: str, topic: str, days: float, seed: int = 1,
                       batch_size: int = 500) -> tuple[int, float]:
    """Publish ``days`` of simulated events at full speed; (events, end event time)."""
    end = START + days * DAY
    pub = await publish_simulation(bootstrap, topic, Simulation(seed, START), START, end,
                                   watermark=end + 600, batch_size=batch_size)
    return pub.sent, end


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    """Events per second for a plain aiokafka consumer that decodes every message."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    n = 0
    try:
        t0 = time.perf_counter()
        while n < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batch:
                break
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    if isinstance(doc, list):
                        n += sum(1 for e in doc if e.get("kind") != "watermark")
                    elif doc.get("kind") != "watermark":
                        n += 1
        took = time.perf_counter() - t0
    finally:
        await consumer.stop()
    return n / took


def _peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure_throughput(bootstrap: str, days: float = 84.0, prefix: str = "bench-tp-",
                       progress: bool = True) -> dict[str, Any]:
    topic = f"{prefix}events"
    early_from = Settings.from_env().early_from(time.time())
    if 0 < early_from < START + days * DAY:
        raise ValueError(f"{days:g} simulated days from {START:.0f} reach the last "
                         "PULSE_EARLY_MAX_AGE_SECONDS: the worker would take early looks at "
                         "them, and this measures a backlog; ask for fewer days")
    asyncio.run(ensure_topics(bootstrap, {topic: 4, **{
        f"{prefix}{t}": 1 for t in SINGLE_PARTITION_TOPICS}}))
    t0 = time.perf_counter()
    n, end = asyncio.run(publish_days(bootstrap, topic, days))
    publish_s = time.perf_counter() - t0
    if progress:
        print(f"  published {n:,} events ({days:g} simulated days) in {publish_s:.1f} s",
              flush=True)
    raw = asyncio.run(raw_consume(bootstrap, topic, n))
    # a backlog, like the demo's history: digests of its days are written with the template
    # summary and no chart, nothing goes to Slack or the model
    # simulated days that may run past today's wall clock: no bound on event time ahead of it
    worker = WorkerProcess(bootstrap, env={"PULSE_TOPIC_PREFIX": prefix,
                                           "PULSE_MAX_AHEAD_SECONDS": "0",
                                           "PULSE_APP_ID": f"{prefix}app",
                                           "PULSE_NOTIFY_AFTER": str(int(end) + 86_400)}).start()
    assert worker.process is not None
    try:
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            if not worker.alive:
                raise RuntimeError("worker died:\n" + worker.log_tail())
            if metric_value(worker.metrics_port, "pulse_messages_total") >= 1:
                first = time.monotonic()
            else:
                time.sleep(0.1)
        if first is None:
            raise RuntimeError("the worker processed nothing in 30 s:\n" + worker.log_tail())
        # from here the worker is not scraped (Prometheus scrapes every 15 s; a scrape renders
        # a few thousand lines, and once a second cost the worker ~5 % of a short run): the
        # window markers on anomalies give both the progress and the end
        asyncio.run(_wait_for_marker(bootstrap, f"{prefix}anomalies", end, worker,
                                     progress=progress))
        done_at = time.monotonic()
        if progress:
            print()
        rss = _peak_rss_mb(worker.process.pid)
    finally:
        worker.stop()
    eps = n / (done_at - first)
    return {"events": n, "raw_consume_per_s": round(raw), "events_per_s": round(eps),
            "ratio": round(eps / raw, 3), "peak_rss_mb": round(rss, 1)}


async def _wait_for_marker(bootstrap: str, topic: str, end: float, worker: WorkerProcess,
                           progress: bool = True) -> None:
    """Wait until the ``window_closed`` marker of the last window is on ``topic``, printing the
    share of windows closed as the markers arrive.

    Read from the earliest offset: the first markers may be there before this starts. (It used
    to start at the latest offset and seek back, which raced with the consumer's assignment.)
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 900
        shown = -1
        while time.monotonic() < deadline:
            if not worker.alive:
                raise RuntimeError("worker died:\n" + worker.log_tail())
            batch = await consumer.getmany(timeout_ms=500)
            reached = None
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    if doc.get("kind") == "window_closed":
                        reached = doc["window_end_ts"]
                        if reached >= end - 1:
                            return
            if progress and reached is not None:
                done = round((reached - START) / (end - START) * 1000)
                if done != shown:
                    shown = done
                    print(f"\r  worker: {done / 10:5.1f}% of windows closed", end="", flush=True)
    finally:
        await consumer.stop()
    raise RuntimeError(f"the last window's marker did not reach {topic} within 900 s:\n"
                       + worker.log_tail())
