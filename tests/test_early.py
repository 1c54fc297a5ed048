"""Early alerts: an open window's running counts, judged before the window closes.

- the engine's running values are the window's events before each tick, the same for one
  engine and for partitions merged, and the same whatever steps the watermark moves in (a replay
  at any speed);
- running documents are their own ``kpis`` messages, without a window marker, and the
  consumers of final values skip them;
- a count or a ratio that breaks mid-window is flagged by ``SeriesWatcher.peek`` at once and
  ordinary running values are not; nothing is learned from them;
- ``KpiWatch`` gives one early anomaly per series and window; the alert it opens is the one the
  window's final anomaly updates;
- ``pulse evaluate`` measures early alerts in event-time minutes.
"""

from __future__ import annotations

import random

import pytest

from alerting.lifecycle import AlertManager
from detectors import load_config
from detectors.series import SeriesWatcher
from detectors.watch import KpiWatch
from evaluation import run_evaluate
from kpis import KpiEngine
from kpis.merger import EARLY_KPIS, KpiMerger
from kpis.messages import group_snapshots, is_running, window_messages
from kpis.windows import PartitionWindows
from simulator import Simulation
from simulator.publisher import partition_of
from stream.agents.kpis import decode_partials, encode_partials

H = 3600.0
START = 1_767_571_200.0   # 2026-01-05 00:00 UTC, a Monday


def _events(hours: float, seed: int = 3) -> list[dict]:
    return Simulation(seed, START, "none").advance(START + hours * H)


def _running(snaps) -> dict[tuple, float]:
    return {(s.kpi, s.segment, s.channel, s.window_start, s.as_of): s.value
            for s in snaps if s.as_of is not None}


def _step(events: list[dict], engine: KpiEngine, step: float, until: float) -> list:
    out, i, t = [], 0, START
    while t < until:
        t = min(until, t + step)
        while i < len(events) and events[i]["ts"] < t:
            engine.add(events[i])
            i += 1
        out += engine.advance(t)
    return out


def _merged_running(events: list[dict], cut_age: float | None = None) -> tuple[dict, list]:
    """The running values of four partitions reading ``events``, merged through the
    kpi-partials codec. With ``cut_age``, a wall clock moves from 9 h to 11 h into the events
    while they are read, and ticks more than ``cut_age`` behind it are cut: by each partition
    as it reads, and by the merge a moment later (the merge's cuts are returned)."""
    parts = [PartitionWindows(peek_s=300) for _ in range(4)]
    merger = KpiMerger(partitions=4)
    merged, cuts = [], []
    for i, e in enumerate(events):
        now = START + 9 * H + i * (2 * H / len(events))
        p = partition_of(e, 4)
        if cut_age is not None:
            parts[p].peek_from = now - cut_age
        parts[p].add(e)
        if i % 700 == 0 or i + 1 == len(events):
            wm = e["ts"] if i + 1 < len(events) else e["ts"] + 2 * H
            msg = encode_partials([(p, 4, None, [], parts[p].take_peeks()) for p in range(4)]
                                  + [(p, 4, parts[p].closed_before,
                                      parts[p].advance(wm, close_empty=True), [])
                                     for p in reversed(range(4))])
            if cut_age is not None:
                merger.peek_from = now + 1.0 - cut_age
                cuts.append(merger.peek_from)
            for p, _n, closed_before, closed, peeks in decode_partials(msg):
                merged += merger.add(p, closed_before, closed, peeks)
    return _running(merged), cuts


def test_running_values_count_the_windows_events_before_each_tick() -> None:
    events = _events(6)
    snaps = _step(events, KpiEngine(lateness_s=600, peek_s=300), 300, START + 7 * H)
    running = [s for s in snaps if s.as_of is not None]
    assert {s.kpi for s in running} == EARLY_KPIS
    ticks = {s.as_of for s in running}
    assert all((t - START) % 300 == 0 for t in ticks) and len(ticks) >= 4 * 12   # windows 1-5
    for s in running:
        if s.kpi == "signups" and s.segment == s.channel == "all":
            want = sum(1 for e in events if e["kind"] == "signup"
                       and s.window_start <= e["ts"] < s.as_of)
            assert s.value == want, s
        assert s.window_start < s.as_of <= s.window_end
    # the final value of each window follows its running ones, in event-time order
    order = [(s.window_start, s.as_of is None, s.as_of or 0.0) for s in snaps]
    assert order == sorted(order)


def test_replay_speed_and_partitions_do_not_change_the_running_values() -> None:
    events = _events(10)
    fine = _running(_step(events, KpiEngine(lateness_s=600, peek_s=300), 60, START + 11 * H))
    coarse = _running(_step(events, KpiEngine(lateness_s=600, peek_s=300), 1800, START + 11 * H))
    assert fine and fine == coarse
    # four partitions, merged through the kpi-partials codec
    got, _cuts = _merged_running(events)
    common = got.keys() & fine.keys()
    assert len(common) > 0.5 * len(fine)
    assert all(got[k] == fine[k] for k in common)


def test_no_early_look_at_a_backlogs_old_windows_and_the_ones_kept_are_exact() -> None:
    """A live stage keeps only ticks at most ``PULSE_EARLY_MAX_AGE_SECONDS`` behind the wall
    clock (``peek_from``), each partition when it reads its events and the merge later; with
    the wall clock moving while the backlog is read, the partitions cut at different ticks,
    yet every tick merged has the exact running values and none is older than the cut."""
    events = _events(10)
    fine = _running(_step(events, KpiEngine(lateness_s=600, peek_s=300), 60, START + 11 * H))
    got, cuts = _merged_running(events, cut_age=3 * H)
    assert got and all(got[k] == fine[k] for k in got)
    assert min(k[4] for k in got) >= cuts[0] and START + 8 * H <= min(k[4] for k in got)
    newest = {k for k in fine if k[4] >= START + 8.5 * H}   # young enough when they were read
    assert newest <= got.keys()
    # a replay (no age limit) keeps every tick, as before
    assert KpiMerger.peek_from == PartitionWindows.peek_from == float("-inf")


def test_running_documents_are_their_own_messages_without_a_marker() -> None:
    snaps = _step(_events(3), KpiEngine(lateness_s=600, peek_s=300), 300, START + 4 * H)
    messages = window_messages(group_snapshots(snaps))
    running = [m for m in messages if is_running(m[0])]
    final = [m for m in messages if not is_running(m[0])]
    assert running and final
    assert all(d.get("kind") != "window_closed" and d["as_of_ts"] == m[0]["as_of_ts"]
               for m in running for d in m)
    assert all(m[-1]["kind"] == "window_closed" and not any(is_running(d) for d in m)
               for m in final)


def _count_watcher() -> SeriesWatcher:
    w = SeriesWatcher("signups", kind="count", direction="both", min_abs_change=4.0,
                      min_rel_change=0.25, forecast={"grace_period": 48}, early_looks=12)
    rng = random.Random(2)
    for h in range(24 * 14):
        w.update(START + h * H, float(sum(rng.random() < 0.4 for _ in range(100))))
    return w


def test_a_count_that_stops_mid_window_is_critical_early_and_nothing_is_learned() -> None:
    w = _count_watcher()
    before = (w.model.level, w.model.n, w.model.var)
    ts = START + 24 * 14 * H
    quiet = w.peek(ts, 0.0, 0.0, 0.5)        # nothing in half an hour where ~20 are due
    assert quiet.is_anomaly and quiet.severity == "critical" and quiet.direction == "down"
    assert quiet.detector == "early" and 15 < quiet.expected < 25
    normal = [w.peek(ts, float(k), float(k), 0.5) for k in (14, 20, 27)]
    assert not any(v.is_anomaly for v in normal)
    assert not w.peek(ts, 3.0, 3.0, 1 / 12).is_anomaly   # 3 where ~3.3 are due in 5 minutes
    assert (w.model.level, w.model.n, w.model.var) == before
    assert not SeriesWatcher("signups", kind="count").peek(ts, 0.0, 0.0, 0.5).is_anomaly


def test_a_failure_rate_that_jumps_mid_window_is_critical_early() -> None:
    w = SeriesWatcher("payment_failure_rate", kind="ratio", direction="up", min_n=3,
                      min_abs_change=0.2, forecast={"slots": 0, "weekly": False},
                      early_looks=12)
    rng = random.Random(4)
    for h in range(24 * 10):
        n = 60
        w.update(START + h * H, sum(rng.random() < 0.035 for _ in range(n)) / n, float(n))
    ts = START + 24 * 10 * H
    assert w.peek(ts, 8 / 10, 10.0, 1 / 6).is_anomaly       # 8 of 10 attempts failed
    assert not w.peek(ts, 1 / 10, 10.0, 1 / 6).is_anomaly   # 1 of 10: unlucky, not an outage
    assert not w.peek(ts, 1.0, 2.0, 1 / 12).is_anomaly      # 2 attempts: below min_n
    # 2 of 3: a z of 6 under the normal approximation, but once in ~300 hours (binomial)
    assert not w.peek(ts, 2 / 3, 3.0, 1 / 12).is_anomaly


def _doc(h: int, value: float, as_of: float | None = None) -> dict:
    doc = {"kpi": "signups", "unit": "users", "window_start": f"h{h}", "window_end": f"h{h + 1}",
           "window_start_ts": START + h * H, "window_end_ts": START + (h + 1) * H,
           "series": [{"segment": "all", "channel": "all", "value": value, "n": value}]}
    if as_of is not None:
        doc.update(as_of="t", as_of_ts=START + h * H + as_of)
    return doc


def test_one_early_anomaly_per_window_and_the_final_one_updates_its_alert() -> None:
    watch = KpiWatch(load_config())
    rng = random.Random(5)
    for h in range(24 * 14):
        watch.observe(_doc(h, float(sum(rng.random() < 0.4 for _ in range(100)))))
    h = 24 * 14
    state = watch.state_for("signups")
    early = [a for t in (300, 600, 900, 1200) for a in watch.observe(_doc(h, 0.0, t))]
    assert len(early) == 1
    e = early[0]
    assert e["early"] and e["detector"] == "early" and e["severity"] == "critical"
    assert 5.0 <= e["elapsed_minutes"] <= 20.0       # 0 of ~40 an hour: clear within minutes
    assert e["as_of_ts"] == START + h * H + e["elapsed_minutes"] * 60
    assert 0.0 < e["expected"] < 40.0 * e["elapsed_minutes"] / 60 + 5   # the count due so far
    # nothing learned: the saved state differs only by the map of early anomalies, the running
    # totals of the ticks seen, and the forecaster's cached forecast of the open window
    again = KpiWatch(load_config())
    again.restore("signups", watch.state_for("signups"))
    again.kpis["signups"].early = {}
    again.kpis["signups"].__dict__.pop("ticks")   # running totals of the ticks seen
    again.kpis["signups"].watchers[("all", "all")].model.__dict__.pop("_window_forecast")
    before = KpiWatch(load_config())
    before.restore("signups", state)
    assert again.state_for("signups") == before.state_for("signups")
    final = watch.observe(_doc(h, 0.0))
    assert final and not final[0].get("early")

    manager = AlertManager()
    opened = manager.on_anomaly(e)
    assert [c.status for c in opened] == ["open"]
    assert opened[0].alert["event_ts"] == e["as_of_ts"] and opened[0].alert["early"]
    assert manager.on_anomaly(final[0]) == []
    closed = manager.on_window_closed(final[0]["window_end_ts"])
    assert [c.status for c in closed] == ["updated"]
    assert closed[0].alert["id"] == opened[0].alert["id"]
    assert "final numbers" in closed[0].reason and not closed[0].alert["early"]


@pytest.mark.parametrize("scenario", ["payment-outage"])
def test_evaluate_reports_early_alerts_in_minutes(scenario: str) -> None:
    r = run_evaluate(1, progress=False, warmup_days=21, eval_days=2, scenarios=[scenario],
                     scale=10.0)
    s = r["scenarios"][scenario]
    assert s["recall"] == 1.0
    # the window of the outage's start closes at least 10 minutes after its end: sooner is early
    row = r["details"][scenario]["incidents"][0]
    assert row["ttd_minutes"] < 45.0, row
    assert s["median_ttd_minutes"] == row["ttd_minutes"]


def test_an_early_alert_says_in_slack_that_its_numbers_are_so_far() -> None:
    from alerting.slack import alert_message

    anomaly = {"kpi": "payment_failure_rate", "segment": "all", "channel": "all",
               "window_start": "2026-02-20T12:00:00Z", "window_end": "2026-02-20T13:00:00Z",
               "window_start_ts": 1771588800.0, "window_end_ts": 1771592400.0, "value": 0.6,
               "expected": 0.035, "lower": 0.0, "upper": 0.2, "score": 0.9,
               "severity": "critical", "direction": "up", "detector": "early",
               "unit": "ratio 0-1", "n": 20.0, "contributors": [], "history": [],
               "early": True, "as_of": "2026-02-20T12:15:00Z", "as_of_ts": 1771589700.0,
               "elapsed_minutes": 15.0, "calendar": ["release 'v2 checkout' (...)"]}
    [change] = AlertManager().on_anomaly(anomaly)
    text, blocks = alert_message(change.alert, "http://grafana")
    assert "in the first 15 min of the 12:00–13:00 UTC window (so far)" in text
    fields = [f["text"] for b in blocks if b["type"] == "section" for f in b.get("fields", [])]
    assert any("During a known event" in f and "v2 checkout" in f for f in fields)


def test_the_last_minutes_are_judged_too_so_a_late_start_is_not_diluted() -> None:
    watch = KpiWatch(load_config())
    rng = random.Random(6)
    for h in range(24 * 14):
        watch.observe(_doc(h, float(sum(rng.random() < 0.6 for _ in range(1000)))))
    h = 24 * 14
    out = []
    for t in range(300, 3601, 300):   # 10 a minute, then nothing after minute 45
        out += watch.observe(_doc(h, 10.0 * min(t, 2700) / 60, t))
    [e] = out
    assert e["as_of_ts"] == START + h * H + 3300       # 10 quiet minutes: 50 in the last 15
    assert e["span_start_ts"] == e["as_of_ts"] - 900 and e["elapsed_minutes"] == 15.0
    assert e["value"] == 50.0 and 130 < e["expected"] < 170   # ~150 due in 15 minutes
    # the window so far (450 of ~550 due) is no alert on its own: a fresh watch sees the same
    # totals without the earlier ticks, so only the whole-window look is possible
    fresh = KpiWatch(load_config())
    fresh.restore("signups", watch.state_for("signups"))
    fresh.kpis["signups"].ticks = {}
    fresh.kpis["signups"].early = {}
    assert fresh.observe(_doc(h, 450.0, 3300)) == []


def test_an_offline_run_takes_each_tick_when_its_watermark_reaches_it() -> None:
    events = _events(4)
    late, now = KpiEngine(lateness_s=600, peek_s=300), KpiEngine(lateness_s=600, peek_s=300)
    i, t, lag = 0, START, []
    while t < START + 4 * H:
        t += 300
        while i < len(events) and events[i]["ts"] < t:
            late.add(events[i])
            now.add(events[i])
            i += 1
        a = [s.as_of for s in late.advance(t) if s.as_of is not None]
        b = [s.as_of for s in now.advance(t, complete=True) if s.as_of is not None]
        lag += [t - x for x in b if x > START + H]   # the first window waits for the first close
        assert set(a) <= set(b) | {t - 300}
    # with complete=True a tick comes out at its own watermark (or when the window before
    # closes, 10 minutes into the window), never a step late
    assert max(lag) <= 600 and min(lag) == 0


def test_every_early_kpi_is_a_window_kpi_that_running_ticks_evaluate() -> None:
    """A tick evaluates only the window's own KPIs (``evaluate(window_only=True)``): an early
    KPI outside them would never be judged early, and they are the same values as a full
    evaluation."""
    from kpis.formulas import KpiInputs, evaluate

    x = KpiInputs(signups=7, scans=30, match_sum=21.0, conversions=2, payments=5, revenue=90.0,
                  failed=1, mrr=400.0, subs=10, mau=40, dau=9, cancels_30d=1, spend_30d=50.0,
                  conversions_30d=3)
    window, full = evaluate(x, window_only=True), evaluate(x)
    assert EARLY_KPIS <= set(window)
    assert window == {k: v for k, v in full.items() if k in window}
    assert set(full) - set(window) >= {"mrr", "churn_rate", "ltv"}
