"""Time from a window's close to the Slack post it causes, through the whole pipeline.

A worker runs with Slack pointed at the test suite's local Slack Web API server
(tests/fakes/slack_server.py, the real ``slack_sdk`` client on the worker's side) and no model
key, so nothing waits for an explanation. After two clean weeks of history the simulator runs
several incidents at 2 simulated days a minute. For every ``chat.postMessage`` (new alerts and
thread updates) the latency is the post's arrival minus the append time of the latest
``window_closed`` marker on ``kpis`` before it: the close of the window that caused it.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from aiokafka import AIOKafkaConsumer

from kpis.messages import docs_in
from simulator import Simulation
from simulator.publisher import EventPublisher, ensure_topics, run_clock
from stream.topics import SINGLE_PARTITION_TOPICS
from stream.worker_process import WorkerProcess
from tests.fakes.slack_server import FakeSlack

__all__ = ["measure_alert_latency"]

DAY, HOUR = 86400.0, 3600.0
START = 1_792_000_000 // 3600 * 3600


async def _markers(bootstrap: str, topic: str) -> list[float]:
    """Append times (wall seconds) of the window_closed markers on ``kpis``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                break
            for records in batch.values():
                for rec in records:
                    if any(d.get("kind") == "window_closed" for d in docs_in(rec.value)):
                        out.append(rec.timestamp / 1000.0)
    finally:
        await consumer.stop()
    return sorted(out)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def _run(bootstrap: str, live_s: float, prefix: str) -> dict[str, Any]:
    topics = {f"{prefix}events": 4, **{f"{prefix}{t}": 1 for t in SINGLE_PARTITION_TOPICS}}
    await ensure_topics(bootstrap, topics)
    async with FakeSlack(token="xoxb-bench") as slack:
        live_start = START + 14 * DAY
        worker = WorkerProcess(bootstrap, env={
            "PULSE_TOPIC_PREFIX": prefix, "PULSE_APP_ID": f"{prefix}app",
            "SLACK_BOT_TOKEN": "xoxb-bench", "PULSE_SLACK_CHANNEL": "C0BENCH",
            "PULSE_SLACK_API_URL": slack.base_url, "PULSE_NOTIFY_AFTER": str(int(live_start)),
        }).start()
        sim = Simulation(7, START)
        pub = EventPublisher(bootstrap, f"{prefix}events")
        await pub.start()
        try:
            await run_clock(sim, pub, START, live_start, speed=None)
            speed = 2 * 1440.0
            span = live_s * speed
            sim.plan("mixed", (live_start + 2 * HOUR, live_start + span - HOUR))
            await run_clock(sim, pub, live_start, live_start + span, speed=speed)
            await pub.publish([], live_start + span + 600)
        finally:
            await pub.stop()
        await asyncio.sleep(5)
        worker.stop()
        closes = await _markers(bootstrap, f"{prefix}kpis")
        posts = [r.wall for r in slack.calls("chat.postMessage")]
    latencies = []
    for t in posts:
        before = [c for c in closes if c <= t]
        if before:
            latencies.append(t - before[-1])
    if not latencies:
        raise RuntimeError("no alert reached Slack; see " + str(worker.log_path))
    return {"alert_posts": len(latencies),
            "alert_latency_p50_s": round(statistics.median(latencies), 3),
            "alert_latency_p95_s": round(_pct(latencies, 0.95), 3),
            "alert_latency_max_s": round(max(latencies), 3)}


def measure_alert_latency(bootstrap: str, live_s: float = 120.0,
                          prefix: str = "bench-alert-") -> dict[str, Any]:
    return asyncio.run(_run(bootstrap, live_s, prefix))


if __name__ == "__main__":
    from stream.broker import EmbeddedBroker
    with EmbeddedBroker() as b:
        print(measure_alert_latency(b.bootstrap))
