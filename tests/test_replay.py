"""`pulse record` and `pulse replay` on the embedded broker (real Kafka protocol, real worker).

- a replay reproduces a `pulse demo --out` run: same KPI windows and values, same alerts;
- two `--max` replays (here: the plain one and configuration A of a `--compare`) write the same
  bytes, and a `--speed` replay of a gzipped copy with corrupt lines gives those bytes too;
- corrupt and foreign lines are reported with their numbers and skipped;
- a replay creates topics only in its own namespace, and its worker gets no Slack credentials;
- `pulse record` writes the events of an event-time range with partition, offset and key.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pulse.record import parse_time, record_range, run_record
from pulse.replay import ReplayOptions, ReplayResult, replay_file, run_compare, worker_env
from pulse.replay_report import summarize
from simulator import BusinessModel, Simulation
from simulator.publisher import ensure_topics, partition_of, publish_simulation
from stream.broker import EmbeddedBroker, free_port
from stream.eventfile import scan_file, sorted_events
from stream.settings import Settings

HOUR, DAY = 3600.0, 86400.0
START = 1_794_000_000 // 3600 * 3600   # 2026-11-06 21:00 UTC
DAYS = 4
SPEED = DAYS * DAY / 12                # the --speed replay takes ~12 s of event-time clock
CORRUPT = {3: b"this is not json", 10: b"[1, 2, 3]", 20: b'{"kind": "scan", "ts": "soon"}',
           30: b'{"hello": "world"}'}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def _kpis(out: Path) -> dict[tuple[str, str, str, str], float]:
    return {(k["kpi"], k["segment"], k["channel"], k["window_start"]): k["value"]
            for k in _lines(out / "kpis.jsonl")}


def _alerts(out: Path) -> list[tuple[str, str, str]]:
    return [(a["id"], a["status"], a["severity"]) for a in _lines(out / "alerts.jsonl")]


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four simulated days (three of warm-up) with a payment outage on the last one."""
    d = tmp_path_factory.mktemp("sim")
    # a business 4 times today's: the outage shows in the running counts, so the replays
    # below compare early alerts too
    sim = Simulation(5, START, "payment-outage",
                     (START + (DAYS - 1) * DAY, START + DAYS * DAY - 3 * HOUR),
                     model=BusinessModel().scaled(4))
    events = sim.advance(START + DAYS * DAY)
    (d / "events.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    (d / "incidents.jsonl").write_bytes(
        b"".join(orjson.dumps(i.to_json()) + b"\n" for i in sim.incidents))
    return d


@pytest.fixture(scope="module")
def first_max(broker: EmbeddedBroker, sim_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[ReplayResult, set[str]]:
    """A --max replay; also the topics it left behind it (its namespace only)."""
    before = asyncio.run(_topics(broker.bootstrap))
    out = tmp_path_factory.mktemp("max1")
    r = replay_file(ReplayOptions(str(sim_dir / "events.jsonl"), str(out), quiet=True,
                                  chart=str(out / "timeline.png"), keep_topics=True),
                    Settings.from_env({}), broker.bootstrap)
    return r, asyncio.run(_topics(broker.bootstrap)) - before


def test_replay_finds_the_incident_and_writes_its_files(
        first_max: tuple[ReplayResult, set[str]], sim_dir: Path) -> None:
    r, _ = first_max
    events = len((sim_dir / "events.jsonl").read_bytes().splitlines())
    assert r.events == events and r.problems == [] and r.dead_letters == 0
    assert r.windows == DAYS * 24
    for name in ("kpis.jsonl", "anomalies.jsonl", "alerts.jsonl", "summary.md"):
        assert (r.out / name).stat().st_size > 0, name
    # every window of the file is in kpis.jsonl, and every scan counted once
    kpis = _kpis(r.out)
    assert len({k[3] for k in kpis}) == DAYS * 24
    scans = sum(e["kind"] == "scan" for e in _lines(sim_dir / "events.jsonl"))
    assert sum(v for (kpi, s, c, _), v in kpis.items()
               if kpi == "scans" and s == c == "all") == scans
    # the outage is found; the summary says when, against the ground truth
    assert r.summary.incidents is not None and len(r.summary.incidents) == 1
    inc = r.summary.incidents[0]
    assert not inc.missed and inc.delay_windows is not None and 0 <= inc.delay_windows <= 2
    text = (r.out / "summary.md").read_text()
    assert inc.id in text and f"{inc.delay_windows} window" in text and "false alarms" in text
    assert r.chart is not None and r.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_stays_in_its_namespace(first_max: tuple[ReplayResult, set[str]]) -> None:
    r, new_topics = first_max
    mine = (f"replay-{r.replay_id}-", f"pulse-replay-{r.replay_id}-")
    assert new_topics and all(t.startswith(mine) for t in new_topics), new_topics
    env = worker_env(Settings.from_env({}), "abc", r.out, None, slack=False)
    assert env["PULSE_TOPIC_PREFIX"] == "replay-abc-" and env["PULSE_APP_ID"] == "pulse-replay-abc"
    assert env["SLACK_BOT_TOKEN"] == env["PULSE_SLACK_CHANNEL"] == env["ANTHROPIC_API_KEY"] == ""
    assert int(env["PULSE_NOTIFY_AFTER"]) > 4e9   # nothing is ever live: no Slack, no model
    with_slack = worker_env(Settings.from_env({}), "abc", r.out, None, slack=True)
    assert with_slack["PULSE_NOTIFY_AFTER"] == "0" and "SLACK_BOT_TOKEN" not in with_slack


def test_max_replays_and_a_speed_replay_write_the_same_bytes(
        broker: EmbeddedBroker, first_max: tuple[ReplayResult, set[str]], sim_dir: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _ = first_max
    assert _alerts(first.out), "the test file should raise alerts"
    # the outage is caught early too: those anomalies are in every replay's bytes below
    assert any(a.get("early") for a in _lines(first.out / "anomalies.jsonl"))
    # --compare: A is the defaults (an empty file), B raises the bar for a critical alert
    (tmp_path / "defaults.toml").write_text("# nothing changed\n")
    (tmp_path / "strict.toml").write_text("[alert]\ncritical_score = 0.95\n")
    cmp_out = tmp_path / "compare"
    code = run_compare(str(tmp_path / "defaults.toml"), str(tmp_path / "strict.toml"),
                       ReplayOptions(str(sim_dir / "events.jsonl"), str(cmp_out), quiet=True),
                       Settings.from_env({}), broker.bootstrap)
    assert code == 0
    table = (cmp_out / "compare.md").read_text()
    assert "| alerts opened |" in table and "false alarms" in table and "strict" in table
    for name in ("kpis.jsonl", "anomalies.jsonl", "alerts.jsonl"):
        assert (cmp_out / "defaults" / name).read_bytes() == (first.out / name).read_bytes(), name

    # --speed on a gzipped copy with corrupt and foreign lines (and a watermark, not an event)
    lines = (sim_dir / "events.jsonl").read_bytes().splitlines()
    for n, bad in sorted(CORRUPT.items()):
        lines.insert(n - 1, bad)
    lines.insert(40, orjson.dumps({"kind": "watermark", "ts": START + HOUR}))
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    with gzip.open(copy_dir / "events.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    capsys.readouterr()
    r = replay_file(ReplayOptions(str(copy_dir / "events.jsonl.gz"), str(tmp_path / "speed"),
                                  speed=SPEED, quiet=True,
                                  incidents=str(sim_dir / "incidents.jsonl")),
                    Settings.from_env({}), broker.bootstrap)
    assert [p.line for p in r.problems] == sorted(CORRUPT)
    err = capsys.readouterr().err
    assert all(f"line {n}:" in err for n in CORRUPT), err
    assert "line 3: not JSON" in (r.out / "summary.md").read_text()
    assert r.events == first.events
    assert _kpis(r.out) == _kpis(first.out)
    assert _alerts(r.out) == _alerts(first.out)
    for name in ("kpis.jsonl", "anomalies.jsonl", "alerts.jsonl"):
        assert (r.out / name).read_bytes() == (first.out / name).read_bytes(), name


def test_replay_reproduces_a_demo_run(broker: EmbeddedBroker, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = dict(os.environ, PULSE_METRICS_PORT=str(free_port()))
    proc = subprocess.run(
        [sys.executable, "-m", "pulse.cli", "demo", "--duration", "45", "--history-days", "3",
         "--scenario", "payment-outage", "--out", str(demo), "--quiet"],
        env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = replay_file(ReplayOptions(str(demo / "events.jsonl"), str(tmp_path / "replay"),
                                  quiet=True), Settings.from_env({}), broker.bootstrap)
    want, got = _kpis(demo), _kpis(r.out)
    assert got.keys() == want.keys()          # the same series and windows
    for key, value in want.items():
        # Exact, except match_rate: its window sum of match scores is a float added up in the
        # order the worker reads the events (kpis/windows.py, `c[_MATCH_SUM] += ...`), and the
        # demo's worker interleaves 4 partitions as fetches arrive: the last bit may differ.
        if key[0] == "match_rate":
            assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-15), key
        else:
            assert got[key] == value, key
    assert _alerts(r.out) == _alerts(demo)    # same alerts, changes and severities, in order
    assert _alerts(demo), "the demo's outage should raise an alert"
    anomalies = [(a["kpi"], a["segment"], a["channel"], a["window_start"], a["severity"])
                 for a in _lines(demo / "anomalies.jsonl")]
    assert [(a["kpi"], a["segment"], a["channel"], a["window_start"], a["severity"])
            for a in _lines(r.out / "anomalies.jsonl")] == anomalies


def test_record_writes_the_range_with_partition_offset_and_key(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    topic = "rec1-events"
    asyncio.run(ensure_topics(broker.bootstrap, {topic: 4}))
    sim = Simulation(3, START)
    produced: list[dict[str, Any]] = []

    async def publish() -> None:
        await publish_simulation(broker.bootstrap, topic, sim, START, START + DAY,
                                 keep=produced)

    asyncio.run(publish())
    lo, hi = START + 6 * HOUR + 1800, START + 18 * HOUR
    out = tmp_path / "rec.jsonl.gz"
    stats = asyncio.run(record_range(broker.bootstrap, topic, lo, hi, out))
    want = [e for e in produced if lo <= e["ts"] < hi]
    assert stats.events == len(want) > 1000
    lines = [orjson.loads(x) for x in gzip.decompress(out.read_bytes()).splitlines()]
    assert lines[0]["pulse_record"]["from_ts"] == lo and lines[0]["pulse_record"]["to_ts"] == hi
    for line in lines[1:]:
        assert {"partition", "offset", "timestamp", "key", "value"} <= line.keys()
        assert line["key"] == f"batch-{line['partition']}"
        for ev in line["value"]:
            assert ev["kind"] != "watermark" and lo <= ev["ts"] < hi
            assert partition_of(ev, 4) == line["partition"]
    offsets = [(x["partition"], x["offset"]) for x in lines[1:]]
    assert len(set(offsets)) == len(offsets)
    # the replay reader gets exactly those events back, in event-time order
    scan = scan_file(out, 3600)
    assert scan.problems == [] and scan.events == len(want)
    got = list(sorted_events(scan))
    assert [e["ts"] for e in got] == sorted(e["ts"] for e in want)
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in want)


def test_record_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Settings.from_env({})
    assert run_record("yesterday", "2026-11-09", str(tmp_path / "x"), "127.0.0.1:1", s) == 2
    assert "not a time" in capsys.readouterr().err
    assert run_record("2026-11-09", "2026-11-08", str(tmp_path / "x"), "127.0.0.1:1", s) == 2
    assert "must be before" in capsys.readouterr().err
    assert run_record("2026-11-08", "2026-11-09", str(tmp_path / "x"), "", s) == 2
    assert "--broker" in capsys.readouterr().err
    assert run_record("2026-11-08", "2026-11-09", str(tmp_path / "x"),
                      f"127.0.0.1:{free_port()}", s) == 2
    assert "cannot reach Kafka" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert parse_time("2026-11-08T01:00:00+01:00") == parse_time("2026-11-08T00:00:00Z") \
        == parse_time("1794096000")


def test_summary_matches_alerts_to_incidents() -> None:
    t0 = parse_time("2026-11-08T00:00:00Z")
    inc = {"id": "inc01", "kind": "payment-outage", "start": "2026-11-08T01:30:00Z",
           "start_ts": t0 + 5400, "end_ts": t0 + 4 * HOUR, "kpis": ["payments"],
           "segment": "all", "channel": "all"}

    def rec(aid: str, status: str, kpi: str, hour: int, **kw: Any) -> dict[str, Any]:
        ws = f"2026-11-08T{hour:02d}:00:00Z"
        return {"id": aid, "status": status, "kpi": kpi, "segment": "all", "channel": "all",
                "severity": "warning", "window_start": ws, "related": [], **kw}

    s = summarize([rec("a1", "open", "churn_rate", 0),
                   rec("a2", "open", "payments", 3, severity="critical"),
                   rec("a2", "resolved", "payments", 3, resolved_at="2026-11-08T07:00:00Z")],
                  [inc])
    assert [a.id for a in s.false_alarms] == ["a1"]
    assert s.incidents is not None and s.incidents[0].alert == "a2"
    assert s.incidents[0].delay_windows == 2       # window 01:00 holds the start; found at 03:00
    assert s.alerts[1].resolved_at == "2026-11-08 07:00" and s.alerts[1].severity == "critical"
    missed = summarize([rec("a1", "open", "churn_rate", 0)], [inc])
    assert missed.incidents is not None and missed.incidents[0].missed
