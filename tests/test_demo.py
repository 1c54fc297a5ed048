"""`pulse demo` as a user runs it: one command, files filled, exit 0, no process left."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from stream.broker import EmbeddedBroker, free_port
from tests.fakes.slack_server import FakeSlack, Recorded
from tests.test_alert_messages import check_message, check_severity

TOKEN = "xoxb-demo-test-token"
_ALERT_REF = re.compile(r"alert `([0-9a-f]+)` · v(\d+)")


def _pids(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _left_by_demo(stdout: str, out: Path) -> set[int]:
    """The demo's own broker (by the address it printed) and worker (by the alerts file it was
    given) if either still runs; other runs on the machine (a CI beside a benchmark) are not
    this demo's."""
    bootstrap = re.search(r"pulse demo: broker (\S+),", stdout)
    assert bootstrap, stdout[-2000:]
    left = {p for p in _pids("tansu") if f"tcp://{bootstrap.group(1)}" in _cmdline(p)}
    mine = f"PULSE_ALERTS_FILE={out / 'alerts.jsonl'}".encode()
    for p in _pids("stream.worker"):
        try:
            if mine in Path(f"/proc/{p}/environ").read_bytes().split(b"\0"):
                left.add(p)
        except OSError:   # gone meanwhile
            pass
    return left


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@contextmanager
def _slack_in_a_thread() -> Iterator[FakeSlack]:
    """The local Slack Web API on its own event loop, for a demo in another process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    slack = FakeSlack(token=TOKEN)
    asyncio.run_coroutine_threadsafe(slack.start(), loop).result(10)
    try:
        yield slack
    finally:
        asyncio.run_coroutine_threadsafe(slack.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _blocks(call: Recorded) -> list[dict]:
    blocks = call.params.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def check_posted_messages(slack: FakeSlack, alerts_file: Path) -> int:
    """Every alert message the demo posted passes tests/test_alert_messages.py's checks,
    against its alerts.jsonl record (same id and version); returns how many were checked."""
    records = [orjson.loads(x) for x in alerts_file.read_bytes().splitlines()]
    by_version = {(r["id"], r["version"]): r for r in records}
    checked = 0
    for call in slack.calls("chat.postMessage") + slack.calls("chat.update"):
        if call.params.get("thread_ts"):
            continue
        blocks = _blocks(call)
        ref = _alert_ref(blocks)
        if ref is None:
            continue   # the daily digest
        record = by_version[ref]
        check_message(record, call.params["text"], blocks)
        check_severity(record)
        checked += 1
    for ts, message in slack.messages.items():
        if message["thread_ts"]:
            continue
        ref = _alert_ref(message["blocks"])
        if ref is None:
            continue
        alert_id = ref[0]
        changes = [r for r in records if r["id"] == alert_id and r["status"] != "open"]
        for i, reply in enumerate(slack.thread_replies(ts)):
            record = changes[min(i, len(changes) - 1)]
            check_message(record, reply=reply.params["text"])
            checked += 1
    return checked


def _alert_ref(blocks: list[dict]) -> tuple[str, int] | None:
    """(alert id, version) an alert message names in its context line; None for others."""
    context = " ".join(e.get("text", "") for b in blocks if b["type"] == "context"
                       for e in b.get("elements", []))
    ref = _ALERT_REF.search(context)
    return (ref.group(1), int(ref.group(2))) if ref else None


def test_demo_runs_and_stops_cleanly(tmp_path: Path, broker: EmbeddedBroker) -> None:
    out = tmp_path / "out"
    with _slack_in_a_thread() as slack:
        env = {k: v for k, v in os.environ.items()
               if k not in ("ANTHROPIC_API_KEY", "PULSE_FEEDBACK_PORT")}
        env.update(PULSE_METRICS_PORT=str(free_port()), SLACK_BOT_TOKEN=TOKEN,
                   PULSE_SLACK_CHANNEL="C0DEMO", PULSE_SLACK_API_URL=slack.base_url)
        proc = subprocess.run(
            [sys.executable, "-m", "pulse.cli", "demo", "--duration", "50", "--history-days",
             "3", "--scenario", "payment-outage", "--out", str(out)],
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
    # the incident's alerts as Slack got them: plain words and numbers (issue 16)
    posted = [p for p in slack.calls("chat.postMessage")
              if not p.params.get("thread_ts") and _alert_ref(_blocks(p))]
    assert posted, "the demo's payment outage posted no alert to Slack"
    print("posted:", *(p.params["text"] for p in posted), sep="\n  ")
    print("replies:", *(r.params["text"] for r in slack.calls("chat.postMessage")
                        if r.params.get("thread_ts")), sep="\n  ")
    assert check_posted_messages(slack, out / "alerts.jsonl") >= len(posted)
    assert not _left_by_demo(proc.stdout + proc.stderr, out), \
        "the demo left a broker or worker running"
