"""KpiWatch on hand-made ``kpis`` messages, and a tiny ``pulse evaluate`` run."""

from __future__ import annotations

import json
import math
import pickle
import random
from datetime import datetime

import pytest

from detectors import KpiWatch, load_config
from detectors.watch import HISTORY_POINTS
from evaluation.report import format_table
from evaluation.run import SCENARIOS, START, _fork, _Run, run_evaluate
from kpis import KpiEngine
from simulator import Simulation

HOUR = 3600.0
DOC_FIELDS = {"kpi", "segment", "channel", "window_start", "window_end", "window_start_ts",
              "window_end_ts", "value", "expected", "lower", "upper", "score", "severity",
              "direction", "detector", "unit", "n", "contributors", "history"}
# signups per hour of each (segment, channel) cell: segment "career_changer" is 3/4 of them
CELLS = {("career_changer", "organic"): 20.0, ("career_changer", "social"): 10.0,
         ("new_grad", "organic"): 5.0, ("new_grad", "social"): 5.0}
STEP_HOUR = 24 * 10


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def messages(hours: int = STEP_HOUR + 3, seed: int = 3) -> list[dict]:
    """Hourly ``signups`` messages; from STEP_HOUR on, career_changer signups stop."""
    rng = random.Random(seed)
    out = []
    for h in range(hours):
        counts = {cell: float(_poisson(rng, lam * (0.0 if h >= STEP_HOUR and
                                                   cell[0] == "career_changer" else 1.0)))
                  for cell, lam in CELLS.items()}
        series = {("all", "all"): sum(counts.values())}
        for (seg, ch), v in counts.items():
            series[(seg, "all")] = series.get((seg, "all"), 0.0) + v
            series[("all", ch)] = series.get(("all", ch), 0.0) + v
        ts = START + h * HOUR
        out.append({"kpi": "signups", "unit": "users", "window_start": f"w{h}",
                    "window_end": f"w{h + 1}", "window_start_ts": ts, "window_end_ts": ts + HOUR,
                    "series": [{"segment": s, "channel": c, "value": v, "n": v}
                               for (s, c), v in series.items()]})
    return out


def run(watch: KpiWatch, msgs: list[dict]) -> list[dict]:
    return [e for m in msgs for e in watch.observe(m)]


def test_step_gives_one_overall_anomaly_with_every_field():
    msgs = messages()
    watch = KpiWatch(load_config())
    assert run(watch, msgs[:STEP_HOUR]) == []
    events = watch.observe(msgs[STEP_HOUR])
    overall = [e for e in events if (e["segment"], e["channel"]) == ("all", "all")]
    assert len(overall) == 1
    e = overall[0]
    assert set(e) == DOC_FIELDS
    assert e["direction"] == "down" and e["severity"] in ("warning", "critical")
    assert e["value"] < e["lower"] <= e["expected"] <= e["upper"] and 0.5 <= e["score"] <= 1.0
    assert e["unit"] == "users" and e["n"] == e["value"] and e["window_start"] == f"w{STEP_HOUR}"
    json.dumps(e)  # JSON-ready
    top = e["contributors"][0]
    assert (top["segment"], top["channel"]) == ("career_changer", "all")
    assert set(top) == {"segment", "channel", "value", "expected", "delta", "share"}
    assert top["delta"] < 0 and top["share"] > 0.8
    shares = [c["share"] for c in e["contributors"]]
    assert shares == sorted(shares, reverse=True)
    seg_total = sum(c["share"] for c in e["contributors"] if c["channel"] == "all")
    assert seg_total == pytest.approx(1.0, abs=0.1)  # additive KPI: the deltas add up
    assert len(e["history"]) == HISTORY_POINTS
    assert e["history"][-1]["window_start_ts"] == e["window_start_ts"]
    assert e["history"][-1]["value"] == e["value"]
    assert all(x["window_start_ts"] < y["window_start_ts"]
               for x, y in zip(e["history"], e["history"][1:], strict=False))
    for seg_event in (x for x in events if x is not e):
        assert seg_event["contributors"] == []


def test_replayed_window_is_skipped():
    msgs = messages(hours=30)
    watch = KpiWatch(load_config())
    run(watch, msgs)
    before = watch.state_for("signups")
    assert watch.observe(msgs[-1]) == []
    assert watch.state_for("signups") == before


def test_pickle_round_trip_mid_stream_gives_identical_output():
    msgs = messages(hours=STEP_HOUR + 6)
    cut = STEP_HOUR - 30
    whole = KpiWatch(load_config())
    expected = run(whole, msgs)
    assert expected
    first = KpiWatch(load_config())
    run(first, msgs[:cut])
    copied = pickle.loads(pickle.dumps(first))
    restored = KpiWatch(load_config())
    state = first.state_for("signups")
    assert len(state) < 64_000  # a Faust table value, not a blob
    restored.restore("signups", state)
    assert run(copied, msgs[cut:]) == expected
    assert run(restored, msgs[cut:]) == expected
    with pytest.raises(ValueError, match="not a saved KpiSeriesWatch"):
        restored.restore("scans", state)


def test_fork_replays_the_scenario_own_stream():
    """The evaluation's shared warm-up is the scenario's own stream (event ids aside)."""
    lo, hi = START + 26 * HOUR, START + 46 * HOUR
    base = _Run(sim=Simulation(2, START, "none"), engine=KpiEngine(window_s=HOUR, lateness_s=0),
                reached=START, watch=KpiWatch(load_config()))
    warm = base.sim.advance(START + 24 * HOUR)
    fork = _fork(pickle.dumps(base), 2, "payment-outage", lo, hi)
    fresh = Simulation(2, START, "payment-outage", (lo, hi))
    assert fork.sim.incidents == fresh.incidents

    def strip(events: list[dict]) -> list[dict]:
        return [{k: v for k, v in ev.items() if k != "event_id"} for ev in events]

    assert strip(fresh.advance(START + 24 * HOUR)) == strip(warm)
    assert strip(fresh.advance(START + 48 * HOUR)) == strip(fork.sim.advance(START + 48 * HOUR))


def test_tiny_evaluate_run(tmp_path):
    path = tmp_path / "eval.json"
    result = run_evaluate(seeds=1, json_path=str(path), progress=False, warmup_days=4,
                          eval_days=2, scenarios=("payment-outage", "none"))
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    keys = {"recall", "precision", "false_alarms_per_day", "median_delay_windows",
            "p95_delay_windows"}
    assert keys <= set(result["overall"])
    assert set(result["scenarios"]) == {"payment-outage", "none"}
    for s in [result["overall"], *result["scenarios"].values()]:
        assert keys <= set(s) and s["days"] > 0
        for k in ("recall", "precision"):
            assert s[k] is None or 0.0 <= s[k] <= 1.0
        assert s["false_alarms_per_day"] >= 0.0
        assert s["median_delay_windows"] is None or s["median_delay_windows"] >= 0
    assert result["scenarios"]["payment-outage"]["incidents"] == 1
    assert result["scenarios"]["none"]["incidents"] == 0
    table = format_table(result)
    assert table.splitlines()[-1].startswith("overall") and "payment-outage" in table


def test_evaluate_reports_time_to_detect_in_minutes_and_its_floor():
    result = run_evaluate(seeds=1, progress=False, warmup_days=14, eval_days=3,
                          scenarios=("payment-outage", "signup-tracking-drop", "none"))
    keys = {"median_ttd_minutes", "p95_ttd_minutes", "floor_ttd_minutes"}
    for s in [result["overall"], *result["scenarios"].values()]:
        assert keys <= set(s)
    assert result["scenarios"]["none"]["floor_ttd_minutes"] is None
    rows = [r for name in ("payment-outage", "signup-tracking-drop")
            for r in result["details"][name]["incidents"]]
    assert len(rows) == 2 and all(r["floor_minutes"] > 0 for r in rows)
    caught = [r for r in rows if r["delay_windows"] is not None]
    assert caught, rows
    for r in caught:
        start = datetime.fromisoformat(r["start"].replace("Z", "+00:00")).timestamp()
        emitted = start + 60 * r["ttd_minutes"]
        # emitted at a 5-minute tick of event time (an early look, or a window's close 10
        # minutes after its end), after the incident began
        assert r["ttd_minutes"] > 0
        assert emitted % 300 < 1e-6
        assert r["ttd_minutes"] <= 60 * (r["delay_windows"] + 1) + 10
    overall = result["overall"]
    assert overall["median_ttd_minutes"] <= overall["p95_ttd_minutes"]


def test_evaluate_rejects_unknown_scenario():
    assert "none" in SCENARIOS
    with pytest.raises(ValueError, match="unknown scenario"):
        run_evaluate(seeds=1, progress=False, scenarios=("outage",))
    with pytest.raises(ValueError, match="unknown difficulty"):
        run_evaluate(seeds=1, progress=False, difficulty="hard")
    with pytest.raises(ValueError, match="scale must be > 0"):
        run_evaluate(seeds=1, progress=False, scale=0.0)


def test_json_state_round_trip_mid_stream_gives_identical_anomalies() -> None:
    """What the detector agent keeps in its Faust table (detectors/state.py JSON) rebuilds a
    watch that flags exactly what the uninterrupted one does."""
    from detectors import load_config, state
    from detectors.watch import KpiWatch
    from kpis import KpiEngine
    from kpis.messages import group_snapshots
    from simulator import Simulation

    start, day = 1_794_000_000 // 3600 * 3600, 86400.0
    sim = Simulation(seed=3, start_ts=start, scenario="match-rate-regression",
                     incident_range=(start + 4 * day + 2 * 3600, start + 5 * day - 3600))
    engine = KpiEngine()
    messages = []
    for h in range(5 * 24):
        for ev in sim.advance(start + (h + 1) * 3600):
            engine.add(ev)
        messages += group_snapshots(engine.advance(start + (h + 1) * 3600 + 600))
    split = next(i for i, m in enumerate(messages) if m["window_start_ts"] >= start + 4 * day)
    whole, first = KpiWatch(load_config()), KpiWatch(load_config())
    expected = [a for m in messages for a in whole.observe(m)]
    before = [a for m in messages[:split] for a in first.observe(m)]
    restored = KpiWatch(load_config())
    for kpi, watch in first.kpis.items():
        restored.kpis[kpi] = state.loads(state.dumps(watch))
    after = [a for m in messages[split:] for a in restored.observe(m)]
    assert any(a["kpi"] == "match_rate" for a in after)
    assert before + after == expected


def test_reachable_recall_counts_incidents_an_ideal_test_catches_before_they_end():
    from evaluation.scoring import score, summary
    from simulator.scenarios import Incident
    short = Incident("a", "payment-outage", START, START + 3600.0, ("payment_failure_rate",),
                     "all", "all", "", 0.2)
    long = Incident("b", "payment-outage", START + 86400, START + 86400 + 4 * 3600.0,
                    ("payment_failure_rate",), "all", "all", "", 0.2)
    t = score([short, long], [], 7.0, {"a": 75.0, "b": 75.0})
    assert summary(t)["reachable_recall"] == 0.5 and summary(t)["recall"] == 0.0
    assert summary(score([short], [], 7.0))["reachable_recall"] is None   # no floors known
