"""End to end on the embedded broker: simulator -> Kafka -> Faust worker -> kpis topic."""

from __future__ import annotations

import asyncio
import collections
import re

from kpis.messages import is_running
from simulator import Simulation
from simulator.publisher import publish_simulation
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic

HOUR, DAY = 3600.0, 86400.0
START = 1_794_000_000 // 3600 * 3600   # 2026-11-08
DAYS = 3


def _expected(events: list[dict]) -> dict[tuple[float, str, str, str], float]:
    """Hand count of the count KPIs per window and series, straight from the events."""
    out: collections.Counter[tuple[float, str, str, str]] = collections.Counter()
    for e in events:
        w = e["ts"] // HOUR * HOUR
        kpis = []
        if e["kind"] == "signup":
            kpis.append("signups")
        elif e["kind"] == "scan":
            kpis.append("scans")
        elif e["kind"] == "payment" and e["status"] == "succeeded":
            kpis.append("payments")
            if e["first"]:
                kpis.append("paid_conversions")
        for k in kpis:
            for seg, ch in (("all", "all"), (e["segment"], "all"), ("all", e["channel"])):
                out[(w, k, seg, ch)] += 1
    return out


async def _run(p: Pipeline) -> tuple[list[dict], list[dict], list[dict]]:
    sim = Simulation(seed=11, start_ts=START, scenario="none")
    produced: list[dict] = []
    end = START + DAYS * DAY
    pub = await publish_simulation(p.bootstrap, p.topic("events"), sim, START, end,
                                   watermark=end + 600, keep=produced)
    # The embedded Tansu refuses idempotent produce requests, so the capability probe turns it
    # off there (on Kafka tests/real_kafka/test_leader_kill.py asserts it is on).
    assert not pub.idempotent
    kpis = await read_topic(
        p.bootstrap, p.topic("kpis"), timeout=180,
        until=lambda m: sum(d.get("kind") == "window_closed" for d in m) >= DAYS * 24)
    dead = await read_topic(p.bootstrap, p.topic("dead-letters"), timeout=3, idle=1)
    return produced, kpis, dead


def test_closed_windows_count_every_event_once(pipeline: Pipeline) -> None:
    produced, kpis, dead = asyncio.run(_run(pipeline))
    assert dead == []
    closed = [d for d in kpis if d.get("kind") == "window_closed"]
    assert len(closed) == DAYS * 24   # one marker per window, after its KPIs
    assert len(produced) > 20_000
    got = {(d["window_start_ts"], d["kpi"], s["segment"], s["channel"]): s["value"]
           for d in kpis for s in d.get("series", ())
           if d.get("kpi") in ("signups", "scans", "payments", "paid_conversions")
           and not is_running(d)}   # final values, not an open window's running ones
    want = _expected(produced)
    windows = {w for (w, *_rest) in got}
    assert len(windows) == DAYS * 24
    # every count in every closed window equals the hand count (zeros included)
    for key, value in got.items():
        assert value == want.get(key, 0), key
    assert sum(v for (w, k, s, c), v in got.items() if k == "scans" and s == c == "all") == \
        sum(e["kind"] == "scan" for e in produced)

    # the same numbers reached Prometheus
    text = pipeline.metrics_text()
    for kind in ("scan", "signup", "payment", "activity"):
        m = re.search(rf'^pulse_events_total{{kind="{kind}"}} (\S+)$', text, re.M)
        assert m and float(m.group(1)) == sum(e["kind"] == kind for e in produced)
    last = max(windows)
    last_scans = got[(last, "scans", "all", "all")]
    m = re.search(r'^pulse_kpi{channel="all",kpi="scans",segment="all"} (\S+)$', text, re.M)
    assert m and float(m.group(1)) == last_scans
    assert "pulse_processing_lag_seconds" in text
