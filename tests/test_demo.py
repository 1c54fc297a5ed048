"""`pulse demo` as a user runs it: one command, files filled, exit 0, no process left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from stream.broker import EmbeddedBroker, free_port


def _pids(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_demo_runs_and_stops_cleanly(tmp_path: Path, broker: EmbeddedBroker) -> None:
    before = _pids("tansu") | _pids("stream.worker")
    out = tmp_path / "out"
    env = dict(os.environ, PULSE_METRICS_PORT=str(free_port()))
    proc = subprocess.run(
        [sys.executable, "-m", "pulse.cli", "demo", "--duration", "50", "--history-days", "3",
         "--scenario", "payment-outage", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "first KPIs" in proc.stdout
    events = [orjson.loads(x) for x in (out / "events.jsonl").read_bytes().splitlines()]
    kpis = [orjson.loads(x) for x in (out / "kpis.jsonl").read_bytes().splitlines()]
    incidents = [orjson.loads(x) for x in (out / "incidents.jsonl").read_bytes().splitlines()]
    assert len(events) > 30_000
    assert incidents and incidents[0]["kind"] == "payment-outage"
    assert {"kpi", "segment", "channel", "window_start", "window_end", "value"} <= kpis[0].keys()
    assert kpis[0]["window_start"].endswith("Z")
    assert {k["kpi"] for k in kpis} >= {"signups", "scans", "match_rate", "mrr", "arpu",
                                        "payment_failure_rate"}
    # every scan produced is in a closed window (the demo closes the last one before it stops)
    scans = sum(k["value"] for k in kpis
                if k["kpi"] == "scans" and k["segment"] == "all" and k["channel"] == "all")
    assert scans == sum(e["kind"] == "scan" for e in events)
    digests = [orjson.loads(x) for x in (out / "digest.jsonl").read_bytes().splitlines()]
    assert len(digests) >= 2   # the history's days: template summary, no chart, not posted
    assert all(d["summary_source"] == "template" for d in digests)
    assert len({d["day"] for d in digests}) == len(digests)
    after = _pids("tansu") | _pids("stream.worker")
    assert after <= before, "the demo left a broker or worker running"
