"""Signup funnel and weekly cohorts (kpis/funnel.py, kpis/cohorts.py) on hand-made event
sequences, expected counts worked out by hand; then a simulated stream against a naive
reference, split over partitions, out of order, pickled mid-stream."""

from __future__ import annotations

import itertools
import pickle
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from kpis import (
    COHORT_KPIS,
    FUNNEL_INPUTS,
    KPI_BY_ID,
    KPIS,
    CohortTracker,
    FunnelTracker,
    KpiInputs,
    cohort_of,
    cohort_value,
    evaluate,
)

H = 3600.0
D = 86_400.0
T0 = 1_791_158_400.0          # Monday 2026-10-05 00:00 UTC
K1 = ("new_grad", "organic")
K2 = ("executive", "social")
_ids = itertools.count()


def ev(kind: str, ts: float, user: str, key: tuple[str, str] = K1, **extra: Any) -> dict:
    return {"event_id": f"t{next(_ids)}", "kind": kind, "ts": ts, "user_id": user,
            "segment": key[0], "channel": key[1], **extra}


def signup(ts: float, user: str, key: tuple[str, str] = K1) -> dict:
    return ev("signup", ts, user, key, referred_by=None)


def scan(ts: float, user: str, key: tuple[str, str] = K1) -> dict:
    return ev("scan", ts, user, key, match_score=0.5)


def pay(ts: float, user: str, first: bool = False, plan: str = "monthly",
        status: str = "succeeded") -> dict:
    return ev("payment", ts, user, plan=plan, amount=39.0 if plan == "monthly" else 349.0,
              status=status, first=first)


def closes(tracker: FunnelTracker | CohortTracker, ends: Iterable[float]) -> dict[float, Any]:
    """``close`` at every end in order; the non-empty results by window end."""
    out = {}
    for end in ends:
        got = tracker.close(end)
        if got:
            out[end] = got
    return out


def hours(start: float, stop: float) -> list[float]:
    return [start + i * H for i in range(int((stop - start) // H) + 1)]


# -- catalogue ----------------------------------------------------------------------------------

def test_funnel_inputs_end_kpi_inputs_and_evaluate_their_ratios() -> None:
    assert KpiInputs._fields[-6:] == FUNNEL_INPUTS
    x = KpiInputs(funnel_signups_24h=5, funnel_scanned_24h=3, funnel_signups_14d=5,
                  funnel_scanned_14d=3, funnel_paid_scanned_14d=2, funnel_paid_14d=3)
    v = evaluate(x)
    assert v["funnel_signup_to_scan"] == (0.6, 5.0)
    assert v["funnel_scan_to_paid"] == pytest.approx((2 / 3, 3.0))
    assert v["funnel_signup_to_paid"] == (0.6, 5.0)
    absent = evaluate(KpiInputs(funnel_signups_14d=2))
    assert "funnel_signup_to_scan" not in absent and "funnel_scan_to_paid" not in absent
    assert absent["funnel_signup_to_paid"] == (0.0, 2.0)


def test_cohort_kpis_are_catalogued_apart_and_documented() -> None:
    ids = [k.id for k in COHORT_KPIS]
    assert ids == ["retention_d7", "retention_d30", "paid_retention_m1"]
    assert not set(ids) & {k.id for k in KPIS}
    assert all(KPI_BY_ID[i] is k for i, k in zip(ids, COHORT_KPIS, strict=True))
    assert KPI_BY_ID["funnel_signup_to_scan"].warmup_s == D
    assert KPI_BY_ID["funnel_scan_to_paid"].warmup_s == 14 * D
    doc = (Path(__file__).parents[1] / "docs" / "kpis.md").read_text()
    assert re.findall(r"^\| \*\*`(\w+)`\*\* \|", doc, flags=re.M) == ids
    assert cohort_value(1, 4) == 0.25 and cohort_value(0, 0) is None


@pytest.mark.parametrize("cls", [FunnelTracker, CohortTracker])
def test_window_must_divide_a_day(cls: type) -> None:
    with pytest.raises(ValueError, match="divide a day"):
        cls(window_s=7 * H)
    with pytest.raises(ValueError, match="divide a day"):
        cls(window_s=0)
    cls(window_s=15 * 60)


# -- funnel -------------------------------------------------------------------------------------

def funnel_events() -> list[dict]:
    """Five signups in [T0, T0 + 1 h); c under another key (its later events say otherwise)."""
    return [
        signup(T0 + 10, "a"), scan(T0 + 10 + D - 60, "a"),              # scan at 23 h 59 min
        pay(T0 + 10 + 13 * D, "a", first=True),                          # paid on day 13
        signup(T0 + 20, "b"), scan(T0 + 20 + D + 60, "b"),               # scan at 24 h 01 min
        pay(T0 + 20 + 13 * D, "b", first=True),                          # paid, never scanned
        signup(T0 + 30, "c", K2), scan(T0 + 30 + H, "c"),                # never pays
        signup(T0 + 40, "d"), pay(T0 + 40 + 15 * D, "d", first=True),    # paid on day 15
        signup(T0 + 50, "e"), scan(T0 + 50 + 300, "e"),
        pay(T0 + 50 + D, "e", first=True, status="failed"),              # the retry succeeds
        pay(T0 + 50 + 2 * D, "e", first=True), pay(T0 + 50 + 9 * D, "e"),
        scan(T0 + 5, "f"), signup(T0 + 100, "f"),                        # scan before signup
        scan(T0 + 60, "old"), pay(T0 + 70, "old", first=True),          # no signup: ignored
        ev("activity", T0 + 80, "a", session_s=60.0), pay(T0 + 90, "c", status="failed"),
    ]


def test_funnel_counts_at_their_horizons_and_never_before() -> None:
    f = FunnelTracker(window_s=H)
    for e in funnel_events():
        f.observe(e)
    got = closes(f, hours(T0 + H, T0 + 20 * D))
    assert got == {
        T0 + H + D: {K2: [1, 1, 0, 0, 0, 0], K1: [5, 2, 0, 0, 0, 0]},        # a, e scanned
        T0 + H + 14 * D: {K2: [0, 0, 1, 1, 0, 0], K1: [0, 0, 5, 2, 2, 3]},   # a, b, e paid
    }
    assert list(got[T0 + H + D]) == [K2, K1]                                  # sorted keys
    assert f.users == 0 and f._windows == {} and len(f._held) == 0


def test_funnel_does_not_depend_on_arrival_order() -> None:
    events = funnel_events()
    ref = FunnelTracker(window_s=H)
    for e in events:
        ref.observe(e)
    expected = closes(ref, hours(T0 + H, T0 + 16 * D))
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        f = FunnelTracker(window_s=H)
        for e in shuffled + shuffled[:4]:                     # and some duplicates
            f.observe(e)
        assert closes(f, hours(T0 + H, T0 + 16 * D)) == expected


def test_funnel_ignores_late_steps_and_signups() -> None:
    f = FunnelTracker(window_s=H)
    f.observe(signup(T0 + 10, "a"))
    assert f.close(T0 + H) == {}
    f.observe(scan(T0 + 20, "a"))                 # late: its window is closed
    f.observe(signup(T0 + 30, "b"))               # late too
    f.observe(scan(T0 + 2 * H, "a"))              # on time
    got = closes(f, hours(T0 + 2 * H, T0 + H + D))
    assert got == {T0 + H + D: {K1: [1, 1, 0, 0, 0, 0]}}


def test_funnel_daily_windows() -> None:
    f = FunnelTracker(window_s=D)
    for e in funnel_events():
        f.observe(e)
    got = closes(f, [T0 + i * D for i in range(1, 20)])
    assert got == {T0 + 2 * D: {K2: [1, 1, 0, 0, 0, 0], K1: [5, 2, 0, 0, 0, 0]},
                   T0 + 15 * D: {K2: [0, 0, 1, 1, 0, 0], K1: [0, 0, 5, 2, 2, 3]}}


# -- cohorts ------------------------------------------------------------------------------------

def cohort_events() -> list[dict]:
    act = "activity"
    s = {"a": T0 + 10, "b": T0 + 7 * D - 1, "c": T0 + 7 * D, "d": T0 + 3 * D, "e": T0 + 4 * D,
         "f": T0 + 5 * D, "g": T0 + 6 * D}
    return [
        # a: active on day 7 and day 30; monthly, renewed on day 30 of the subscription
        signup(s["a"], "a"), ev(act, s["a"] + 7 * D + 100, "a", session_s=1.0),
        scan(s["a"] + 30 * D + 5, "a"), pay(s["a"] + D, "a", first=True),
        pay(s["a"] + 31 * D, "a"),
        # b: Sunday 23:59:59, same cohort as a; active on day 6 and day 8 only; never renews
        signup(s["b"], "b"), scan(s["b"] + 7 * D - 1, "b"), scan(s["b"] + 8 * D, "b"),
        pay(s["b"] + 2 * D, "b", first=True),
        # c: Monday 00:00, the next cohort; active at exactly day 7; annual on day 13
        signup(s["c"], "c"), ev(act, s["c"] + 7 * D, "c", session_s=1.0),
        pay(s["c"] + 13 * D, "c", first=True, plan="annual"),
        # d (other key): renewed, but cancelled on day 20 of the subscription
        signup(s["d"], "d", K2), pay(s["d"] + 5 * D, "d", first=True),
        pay(s["d"] + 35 * D, "d"), ev("cancel", s["d"] + 25 * D, "d", plan="monthly"),
        # e: converts on day 15: not in paid retention
        signup(s["e"], "e"), pay(s["e"] + 15 * D, "e", first=True),
        pay(s["e"] + 45 * D, "e"),
        # f: annual, cancelled on day 34 of the subscription
        signup(s["f"], "f"), pay(s["f"] + D, "f", first=True, plan="annual"),
        ev("cancel", s["f"] + 35 * D, "f", plan="annual"),
        # g: renewal fails on day 30 and 31, the second retry (day 32) succeeds
        signup(s["g"], "g"), pay(s["g"] + D, "g", first=True),
        pay(s["g"] + 31 * D, "g", status="failed"), pay(s["g"] + 32 * D, "g", status="failed"),
        pay(s["g"] + 33 * D, "g"),
        # someone from before the stream
        scan(T0 + 8 * D, "old"), pay(T0 + 9 * D, "old"), ev("cancel", T0 + 10 * D, "old",
                                                              plan="monthly"),
    ]


COHORT_EXPECTED = {
    T0 + 15 * D: [("retention_d7", "2026-10-05", K2, 0, 1),
                  ("retention_d7", "2026-10-05", K1, 1, 5)],
    T0 + 22 * D: [("retention_d7", "2026-10-12", K1, 1, 1)],
    T0 + 38 * D: [("retention_d30", "2026-10-05", K2, 0, 1),
                  ("retention_d30", "2026-10-05", K1, 1, 5)],
    T0 + 45 * D: [("retention_d30", "2026-10-12", K1, 0, 1)],
    T0 + 56 * D: [("paid_retention_m1", "2026-10-05", K2, 0, 1),      # d cancelled
                  ("paid_retention_m1", "2026-10-05", K1, 2, 4)],     # a, g of a, b, f, g
    T0 + 63 * D: [("paid_retention_m1", "2026-10-12", K1, 1, 1)],
}


def test_cohort_of_weeks() -> None:
    assert cohort_of(T0) == cohort_of(T0 + 7 * D - 0.001) == "2026-10-05"
    assert cohort_of(T0 + 7 * D) == "2026-10-12"
    assert cohort_of(T0 - 1) == "2026-09-28"


def test_cohorts_at_their_horizons_exactly_once() -> None:
    c = CohortTracker(window_s=H)
    for e in cohort_events():
        c.observe(e)
    got = closes(c, hours(T0 + H, T0 + 70 * D))
    assert got == COHORT_EXPECTED
    assert c.users == 0 and c._weeks == {} and len(c._held) == 0


@pytest.mark.parametrize("seed", range(4))
def test_cohorts_do_not_depend_on_arrival_order(seed: int) -> None:
    events = cohort_events()
    random.Random(seed).shuffle(events)
    c = CohortTracker(window_s=D)
    for e in events + events[:5]:
        c.observe(e)
    assert closes(c, [T0 + i * D for i in range(1, 70)]) == COHORT_EXPECTED


def test_skipped_closes_report_at_the_next_one() -> None:
    c, f = CohortTracker(window_s=H), FunnelTracker(window_s=H)
    for e in cohort_events():
        c.observe(e)
    for e in funnel_events():
        f.observe(e)
    by_cohort = sorted((x for xs in COHORT_EXPECTED.values() for x in xs),
                       key=lambda x: (x[1], [k.id for k in COHORT_KPIS].index(x[0]), x[2]))
    assert c.close(T0 + 100 * D) == by_cohort
    assert f.close(T0 + 100 * D) == {K2: [1, 1, 1, 1, 0, 0], K1: [5, 2, 5, 2, 2, 3]}


# -- a simulated stream: reference, partitions, order, pickling, memory ---------------------------

@pytest.fixture(scope="module")
def stream() -> list[dict]:
    from simulator import Simulation
    from simulator.model import BusinessModel

    model = BusinessModel(initial_users=2_000, initial_subscriptions=400, signups_per_day=60)
    start = T0 - 3 * D + 5 * H
    return Simulation(seed=11, start_ts=start, model=model).advance(start + 72 * D)


def reference(events: list[dict]) -> tuple[dict, dict]:
    """The definitions of docs/kpis.md, user by user: {(report end, key): row} of the funnel and
    {(report end, kpi, cohort, key): [num, den]} of the cohorts (hourly windows)."""
    by_user: dict[str, list[dict]] = {}
    for e in events:
        if "user_id" in e:
            by_user.setdefault(e["user_id"], []).append(e)
    funnel: dict[tuple, list[int]] = {}
    cohorts: dict[tuple, list[int]] = {}
    for evs in by_user.values():
        signups = [e for e in evs if e["kind"] == "signup"]
        if not signups:
            continue
        s = min(e["ts"] for e in signups)
        key = (signups[0]["segment"], signups[0]["channel"])
        times = {kind: sorted(e["ts"] for e in evs if e["kind"] in kinds)
                 for kind, kinds in (("active", ("scan", "activity")), ("scan", ("scan",)),
                                     ("cancel", ("cancel",)))}
        ok = [e for e in evs if e["kind"] == "payment" and e["status"] == "succeeded"]
        scanned = any(s <= t < s + D for t in times["scan"])
        firsts = sorted((e["ts"], e["plan"]) for e in ok if e["first"] and e["ts"] >= s)
        paid = bool(firsts) and firsts[0][0] < s + 14 * D
        window_end = (s // H + 1) * H
        for end, row in ((window_end + D, [1, scanned, 0, 0, 0, 0]),
                         (window_end + 14 * D, [0, 0, 1, scanned, scanned and paid, paid])):
            acc = funnel.setdefault((end, key), [0] * 6)
            for i, v in enumerate(row):
                acc[i] += v
        week_start = T0 + (s - T0) // (7 * D) * 7 * D
        cohort, week_end = cohort_of(week_start), week_start + 7 * D
        for kpi, lag, day in (("retention_d7", 8, 7), ("retention_d30", 31, 30)):
            acc = cohorts.setdefault((week_end + lag * D, kpi, cohort, key), [0, 0])
            acc[0] += any(s + day * D <= t < s + (day + 1) * D for t in times["active"])
            acc[1] += 1
        acc = cohorts.setdefault((week_end + 49 * D, "paid_retention_m1", cohort, key), [0, 0])
        if paid:
            p, plan = firsts[0]
            renewed = plan == "annual" or any(p < e["ts"] < p + 35 * D for e in ok)
            cancelled = any(p <= t < p + 35 * D for t in times["cancel"])
            acc[0] += renewed and not cancelled
            acc[1] += 1
    return funnel, cohorts


def run_partitions(events: list[dict], partitions: int, jitter_s: float, seed: int,
                   until: float, pickle_at: float | None = None) -> tuple[dict, dict, list]:
    """Events arrive up to ``jitter_s`` late, split over partitions by user; each partition's
    trackers close every hour once every event before its end has arrived; summed."""
    from simulator.publisher import partition_of

    rng = random.Random(seed)
    arrivals = sorted((e["ts"] + rng.uniform(0, jitter_s), i, e) for i, e in enumerate(events))
    trackers = [(FunnelTracker(window_s=H), CohortTracker(window_s=H))
                for _ in range(partitions)]
    funnel: dict[tuple, list[int]] = {}
    cohorts: dict[tuple, list[int]] = {}
    next_end = (min(e["ts"] for e in events) // H + 1) * H

    def close_to(limit: float) -> None:
        nonlocal next_end, trackers
        while next_end <= limit:
            if pickle_at is not None and next_end == pickle_at:
                trackers = pickle.loads(pickle.dumps(trackers))
            for f, c in trackers:
                for key, row in f.close(next_end).items():
                    acc = funnel.setdefault((next_end, key), [0] * 6)
                    for i, v in enumerate(row):
                        acc[i] += v
                for kpi, cohort, key, num, den in c.close(next_end):
                    acc = cohorts.setdefault((next_end, kpi, cohort, key), [0, 0])
                    acc[0] += num
                    acc[1] += den
            next_end += H

    for arrival, _, e in arrivals:
        close_to(arrival - jitter_s)      # every event before that time has arrived
        f, c = trackers[partition_of(e, partitions)]
        f.observe(e)
        c.observe(e)
    close_to(until)
    return funnel, cohorts, trackers


def test_simulated_stream_matches_the_reference_over_partitions_out_of_order(
        stream: list[dict]) -> None:
    until = stream[-1]["ts"] + 60 * D
    funnel, cohorts = reference(stream)
    got_f, got_c, trackers = run_partitions(stream, partitions=3, jitter_s=1800, seed=1,
                                            until=until)
    assert got_f == funnel
    assert got_c == cohorts
    assert sum(row[5] for row in funnel.values()) > 100            # conversions were seen
    assert sum(v[1] for k, v in cohorts.items() if k[1] == "paid_retention_m1") > 100
    assert 0 < sum(v[0] for k, v in cohorts.items() if k[1] == "paid_retention_m1")
    assert 0 < sum(v[0] for k, v in cohorts.items() if k[1] == "retention_d30")
    for f, c in trackers:                                           # memory: nothing left
        assert f.users == 0 and not f._windows and len(f._held) == 0
        assert c.users == 0 and not c._weeks and len(c._held) == 0


def test_pickle_round_trip_mid_stream_gives_identical_output(stream: list[dict]) -> None:
    until = stream[0]["ts"] + 80 * D
    middle = (stream[len(stream) // 2]["ts"] // H) * H
    plain = run_partitions(stream, 1, 900, 2, until)[:2]
    assert run_partitions(stream, 1, 900, 2, until, pickle_at=middle)[:2] == plain


def test_memory_follows_the_horizons(stream: list[dict]) -> None:
    f, c = FunnelTracker(window_s=H), CohortTracker(window_s=H)
    end = (stream[0]["ts"] // H + 1) * H
    peak = 0
    for e in stream:
        while end <= e["ts"]:
            f.close(end)
            c.close(end)
            end += H
        f.observe(e)
        c.observe(e)
        # unknown users' steps are held only until the next close
        assert (f._held.oldest() or end) >= end - H
        assert (c._held.oldest() or end) >= end - H
        peak = max(peak, c.users)
    signups = sum(e["kind"] == "signup" for e in stream)
    assert f.users < 16 * 60 * 1.5 < signups              # about 15 days of signups, not all
    assert peak < 8 * 7 * 60 * 1.5 and peak < signups     # about 7 weeks of them
