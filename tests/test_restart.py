"""A worker restart (SIGTERM or SIGKILL) resumes from its checkpoint: no event lost or
counted twice in the closed windows, and (SIGKILL while alerts and digests are delivered) no
alert or digest lost or posted to Slack twice."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kpis.messages import is_running
from simulator import Simulation
from simulator.publisher import publish_simulation, publish_watermark
from stream.broker import EmbeddedBroker
from stream.worker_process import WorkerProcess
from tests.conftest import Pipeline
from tests.fakes.slack_server import FakeSlack
from tests.kafka_helpers import read_topic

START = 1_794_000_000 // 3600 * 3600
DAY = 86400.0


async def _publish(p: Pipeline, sim: Simulation, t0: float, t1: float, produced: list) -> None:
    await publish_simulation(p.bootstrap, p.topic("events"), sim, t0, t1, keep=produced)


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
            until=lambda m: any(d["window_end_ts"] >= end and d.get("kpi") == "scans"
                                and not is_running(d) for d in m)))
        dead = asyncio.run(read_topic(p.bootstrap, p.topic("dead-letters"), timeout=3, idle=1))
    finally:
        p.worker.stop()
    # a window closed between the last checkpoint and the kill may be published again, with the
    # same numbers: the last word per window is what counts
    last: dict[tuple[float, str], float] = {}
    for d in kpis:
        if d.get("kpi") == "scans" and not is_running(d):   # final values, not running ones
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
    await publish_watermark(p.bootstrap, p.topic("events"), ts)


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


async def _delivery_run(p: Pipeline, slack: FakeSlack) -> tuple[list[Any], list[dict],
                                                             list[str], float]:
    """A worker posting to a fake Slack, SIGKILLed right after its first alert opened, then
    restarted on the same data dir; returns Slack's requests, the alert changes, the days in
    digest.jsonl and the end of the last window."""
    async with slack:
        p.worker.start()
        sim = Simulation(seed=3, start_ts=START, scenario="payment-outage",
                         incident_range=(START + 4 * DAY + 2 * 3600, START + 5 * DAY - 3600))
        end = START + 6 * DAY
        try:
            await _publish(p, sim, START, START + 5 * DAY, [])
            await read_topic(p.bootstrap, p.topic("alerts"), timeout=180,
                             until=lambda m: any(a.get("status") == "open" for a in m))
            p.worker.stop(sig=signal.SIGKILL)   # alerts and digests are being delivered
            p.worker = WorkerProcess(p.bootstrap, env=p.env, data_dir=p.worker.data_dir)
            p.worker.start()
            await _publish(p, sim, START + 5 * DAY, end, [])
            await _publish_final(p, end + 600)
            await read_topic(p.bootstrap, p.topic("kpis"), timeout=180,
                             until=lambda m: any(d.get("window_end_ts", 0) >= end
                                                 and not is_running(d) for d in m))
            digest = Path(p.worker.data_dir) / "digest.jsonl"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _day(end - DAY) not in _days(digest):
                await asyncio.sleep(0.5)
            await asyncio.sleep(5)   # the last deliveries
            changes = await read_topic(p.bootstrap, p.topic("alerts"), timeout=10, idle=2)
        finally:
            await asyncio.to_thread(p.worker.stop)
        return list(slack.requests), changes, _days(digest), end


def _days(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["day"] for line in path.read_text().splitlines()]


def test_sigkill_loses_no_alert_or_digest_and_posts_none_twice(broker: EmbeddedBroker) -> None:
    with socket.socket() as sock:   # the fake Slack's port, known before the worker's env
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slack = FakeSlack(token="xoxb-restart")
    slack.port = port
    p = Pipeline(broker, partitions=2, SLACK_BOT_TOKEN="xoxb-restart",
                 PULSE_SLACK_CHANNEL="C0RESTART", PULSE_SLACK_API_URL=slack.base_url,
                 PULSE_NOTIFY_AFTER="0")
    requests, changes, days, end = asyncio.run(_delivery_run(p, slack))
    posts = [r for r in requests if r.method == "chat.postMessage" and r.ok
             and not r.params.get("thread_ts")]
    alert_posts = Counter(b["block_id"].removeprefix("pulse_actions_") for r in posts
                          for b in r.params.get("blocks") or [] if b.get("type") == "actions")
    digest_posts = Counter(b["text"]["text"].removeprefix("Daily digest · ") for r in posts
                           for b in (r.params.get("blocks") or [])[:1]
                           if b.get("type") == "header"
                           and b["text"]["text"].startswith("Daily digest · "))
    opened = {c["id"] for c in changes if c["status"] == "open"}
    assert opened, p.worker.log_path
    assert set(alert_posts) == opened, (alert_posts, opened, p.worker.log_path)
    assert all(n == 1 for n in alert_posts.values()), alert_posts          # none twice
    published = Counter((c["id"], c["version"]) for c in changes if "id" in c)
    assert [k for k, n in published.items() if n > 1] == [], p.worker.log_path  # nor published
    assert len(days) == len(set(days)) and set(digest_posts) == set(days), (digest_posts, days)
    assert all(n == 1 for n in digest_posts.values()), digest_posts
    want = [_day(t) for t in range(int(START // DAY * DAY + DAY), int(end - DAY) + 1, int(DAY))]
    assert [d for d in want if d not in days] == [], (days, want)          # none lost
