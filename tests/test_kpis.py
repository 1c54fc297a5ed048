"""KPIs of docs/kpis.md on hand-made event sequences; expected numbers are worked out by hand."""

from __future__ import annotations

import itertools
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from bench.kpi_engine import synthetic_events
from kpis import ALL, KPI_BY_ID, KPIS, KpiEngine, KpiSnapshot, snapshots_by_window

H = 3600.0
D = 86_400.0
_ids = itertools.count()


def ev(kind: str, ts: float, user: str | None = "u1", seg: str | None = "new_grad",
       ch: str = "organic", **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"event_id": f"t{next(_ids)}", "kind": kind, "ts": ts, "channel": ch}
    if user is not None:
        e["user_id"] = user
    if seg is not None:
        e["segment"] = seg
    e.update(extra)
    return e


def signup(ts: float, user: str = "u1", referred_by: str | None = None, **kw: Any) -> dict:
    return ev("signup", ts, user, referred_by=referred_by, **kw)


def pay(ts: float, user: str = "u1", plan: str = "monthly", amount: float = 39.0,
        status: str = "succeeded", first: bool = False, **kw: Any) -> dict:
    return ev("payment", ts, user, plan=plan, amount=amount, status=status, first=first, **kw)


def spend(ts: float, amount: float, ch: str = "paid_search") -> dict:
    return ev("spend", ts, user=None, seg=None, ch=ch, amount=amount)


def run(events: list[dict], window_s: float = H, until: float | None = None,
        lateness_s: float = 0) -> list[KpiSnapshot]:
    """Feed ``events``, then close every window ending at or before ``until``."""
    eng = KpiEngine(window_s=window_s, lateness_s=lateness_s)
    for e in events:
        assert eng.add(e) is None
    end = until if until is not None else max(e["ts"] for e in events) + window_s
    return eng.advance(end + lateness_s)


def value(snaps: list[KpiSnapshot], kpi: str, start: float, seg: str = ALL,
          ch: str = ALL) -> float | None:
    found = [s.value for s in snaps
             if s.kpi == kpi and s.window_start == start and s.segment == seg and s.channel == ch]
    assert len(found) <= 1
    return found[0] if found else None


def n_of(snaps: list[KpiSnapshot], kpi: str, start: float) -> float:
    return next(s.n for s in snaps if s.kpi == kpi and s.window_start == start
                and s.segment == ALL and s.channel == ALL)


# -- catalogue --------------------------------------------------------------------------------

def test_catalogue_matches_docs() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "kpis.md").read_text()
    ids = re.findall(r"^\| `(\w+)` \|", doc, flags=re.M)
    assert [k.id for k in KPIS] == ids
    assert KPI_BY_ID["cac"].target == 50 and not KPI_BY_ID["cac"].per_segment
    assert KPI_BY_ID["churn_rate"].higher_is_better is False
    assert {k.id: k.target for k in KPIS if k.target is not None} == {
        "conversion_rate": 0.15, "arpu": 15, "churn_rate": 0.05, "cac": 50, "ltv": 300,
        "ltv_cac": 3, "daily_active_ratio": 0.40, "viral_coefficient": 1.5}


# -- one KPI at a time ------------------------------------------------------------------------

def test_conversion_rate_three_signups_one_first_payment() -> None:
    snaps = run([signup(10, "a"), signup(20, "b"), signup(30, "c"),
                 pay(40, "a", first=True), pay(50, "z", first=False)])
    assert value(snaps, "signups", 0) == 3
    assert value(snaps, "paid_conversions", 0) == 1
    assert value(snaps, "conversion_rate", 0) == pytest.approx(1 / 3)
    assert n_of(snaps, "conversion_rate", 0) == 3


def test_failed_first_payment_is_no_conversion() -> None:
    snaps = run([signup(10, "a"), pay(40, "a", first=True, status="failed")])
    assert value(snaps, "paid_conversions", 0) == 0
    assert value(snaps, "conversion_rate", 0) == 0.0
    assert value(snaps, "mrr", 0) == 0


def test_match_rate_is_the_mean_score() -> None:
    snaps = run([ev("scan", 1, match_score=0.2), ev("scan", 2, match_score=0.4),
                 ev("scan", 3, match_score=0.9), signup(H + 1)])
    assert value(snaps, "scans", 0) == 3
    assert value(snaps, "match_rate", 0) == pytest.approx(0.5)
    assert n_of(snaps, "match_rate", 0) == 3
    assert value(snaps, "scans", H) == 0
    assert value(snaps, "match_rate", H) is None       # no scans: undefined, absent


def test_payments_revenue_failure_rate() -> None:
    snaps = run([pay(1, "a"), pay(2, "b", amount=10.5), pay(3, "c", plan="annual", amount=348),
                 pay(4, "d", status="failed")])
    assert value(snaps, "payments", 0) == 3
    assert value(snaps, "revenue", 0) == pytest.approx(39 + 10.5 + 348)
    assert value(snaps, "payment_failure_rate", 0) == pytest.approx(1 / 4)
    assert n_of(snaps, "payment_failure_rate", 0) == 4


def test_mrr_counts_annual_as_a_twelfth_and_is_carried() -> None:
    snaps = run([pay(10, "a", first=True), pay(20, "b", plan="annual", amount=348, first=True)],
                until=3 * H)
    assert value(snaps, "mrr", 0) == pytest.approx(39 + 29)
    assert n_of(snaps, "mrr", 0) == 2
    assert value(snaps, "mrr", 2 * H) == pytest.approx(68)    # level carried, no events
    assert value(snaps, "mrr_growth", 0) is None               # mrr_start = 0
    assert value(snaps, "mrr_growth", H) == 0.0


def test_mrr_growth() -> None:
    snaps = run([pay(10, "a", amount=100), pay(H + 10, "b", amount=50)])
    assert value(snaps, "mrr", H) == 150
    assert value(snaps, "mrr_growth", H) == pytest.approx(0.5)


def test_subscription_renewal_expiry_and_cancel() -> None:
    events = [pay(0.5 * D, "m"),                                  # monthly, lapses at day 35.5
              pay(0.5 * D, "r"), pay(30.5 * D, "r"),              # renewed: active to day 65.5
              pay(0.5 * D, "y", plan="annual", amount=120),       # 10 / month for 370 days
              pay(0.5 * D, "c"), ev("cancel", 3.5 * D, "c", plan="monthly"),
              pay(1 * D, "e", amount=1)]                          # active until day 36 exactly
    snaps = run(events, window_s=D, until=40 * D)
    assert value(snaps, "mrr", 0) == 39 * 3 + 10                   # "e" starts at day 1
    assert value(snaps, "mrr", 1 * D) == 39 * 3 + 10 + 1
    assert value(snaps, "mrr", 3 * D) == 39 * 2 + 10 + 1           # cancel ends "c"
    assert value(snaps, "mrr", 34 * D) == 39 * 2 + 10 + 1          # day 35 end: "m" active
    assert value(snaps, "mrr", 35 * D) == 39 + 10                  # day 36 end: "m", "e" gone
    assert n_of(snaps, "mrr", 35 * D) == 2


def test_payment_then_cancel_in_one_window_ends_inactive_whatever_the_arrival_order() -> None:
    p, c = pay(10, "a"), ev("cancel", 20, "a", plan="monthly")
    assert value(run([p, c]), "mrr", 0) == 0
    assert value(run([c, p]), "mrr", 0) == 0


def test_churn_over_trailing_30_days_and_ltv() -> None:
    subs = [pay(0.5 * D, f"u{i}", first=True) for i in range(10)]
    cancels = [ev("cancel", 29.5 * D, f"u{i}", plan="monthly") for i in range(2)]
    snaps = run(subs + cancels, window_s=D, until=61 * D)
    # window 0: 10 active at its end, no cancellations: 0 / (10 + 0)
    assert value(snaps, "churn_rate", 0) == 0.0
    assert n_of(snaps, "churn_rate", 0) == 10
    # window 29 (ends day 30): 8 still active + 2 cancelled in the trailing 30 d: 2 / (8 + 2)
    assert value(snaps, "churn_rate", 29 * D) == pytest.approx(0.2)
    assert n_of(snaps, "churn_rate", 29 * D) == 10
    # ltv = (8 * 39 / 8) / 0.2
    assert value(snaps, "ltv", 29 * D) == pytest.approx(195.0)
    assert value(snaps, "mrr", 29 * D) == 8 * 39
    assert value(snaps, "churn_rate", 34 * D) == pytest.approx(0.2)   # day 35: 8 still active
    # day 36: the 8 lapsed at day 35.5 (not cancelled), so are gone from both parts: 2 / (0 + 2)
    assert value(snaps, "churn_rate", 35 * D) == 1.0
    assert value(snaps, "ltv", 35 * D) is None            # no active subscriptions
    # window 58 (trailing 30 d = days 29..58) still holds the cancels; window 59 does not:
    # nothing active, nothing cancelled, so churn is undefined, and so is ltv
    assert value(snaps, "churn_rate", 58 * D) == 1.0
    assert value(snaps, "churn_rate", 59 * D) is None
    assert value(snaps, "ltv", 59 * D) is None


def test_churn_counts_cancellations_of_subscriptions_it_never_saw_paid() -> None:
    # a stream joined mid-life: "old" was paid for before the engine started; its cancellation
    # still counts, in both parts: 1 / (2 active + 1 cancelled)
    events = [pay(0.5 * D, "a", ch="referral"), pay(0.5 * D, "b"),
              ev("cancel", 1.5 * D, "old", plan="monthly", ch="referral")]
    snaps = run(events, window_s=D, until=3 * D)
    assert value(snaps, "churn_rate", 0) == 0.0
    assert value(snaps, "churn_rate", 1 * D) == pytest.approx(1 / 3)
    assert n_of(snaps, "churn_rate", 1 * D) == 3
    assert value(snaps, "churn_rate", 1 * D, ch="referral") == pytest.approx(1 / 2)
    assert value(snaps, "churn_rate", 1 * D, ch="organic") == 0.0


def test_ltv_lifetime_capped_at_36_months() -> None:
    snaps = run([pay(0.5 * D, "a", amount=40), pay(0.5 * D, "b", amount=20)],
                window_s=D, until=31 * D)
    assert value(snaps, "churn_rate", 30 * D) == 0.0
    assert value(snaps, "ltv", 30 * D) == pytest.approx(30 * 36)


def test_cac_over_trailing_30_days_overall_and_per_channel() -> None:
    events = [spend(0.5 * D, 100), spend(10.5 * D, 50),
              pay(5.5 * D, "a", first=True, ch="paid_search"),
              pay(5.5 * D, "b", first=True, ch="paid_search"),
              pay(5.5 * D, "c", first=True, ch="organic")]
    snaps = run(events, window_s=D, until=36 * D)
    w = 10 * D
    assert value(snaps, "cac", w) == pytest.approx(150 / 3)
    assert value(snaps, "cac", w, ch="paid_search") == pytest.approx(75)
    assert value(snaps, "cac", w, ch="organic") == 0.0
    assert value(snaps, "ltv_cac", w, ch="organic") is None           # cac = 0
    assert value(snaps, "cac", w, seg="new_grad") is None             # never per segment
    assert not [s for s in snaps if s.kpi in ("cac", "ltv_cac") and s.segment != ALL]
    assert value(snaps, "cac", 29 * D) == pytest.approx(150 / 3)
    assert value(snaps, "cac", 30 * D) == pytest.approx(50 / 3)       # day 0 spend left
    assert value(snaps, "cac", 34 * D) == pytest.approx(50 / 3)
    assert value(snaps, "cac", 35 * D) is None                        # day 5 conversions left


def test_ltv_cac_is_ltv_over_cac() -> None:
    old = [pay(0.5 * D, f"o{i}", amount=30, ch="paid_search") for i in range(4)]
    new = [pay(10.5 * D, f"n{i}", amount=30, first=True, ch="paid_search") for i in range(4)]
    events = old + new + [spend(10.5 * D, 200),
                          ev("cancel", 20.5 * D, "o0", plan="monthly", ch="paid_search")]
    snaps = run(events, window_s=D, until=31 * D)
    # window 30: churn 1 / (7 active + 1 cancelled) = 0.125; ltv = (7 * 30 / 7) / 0.125 = 240;
    # cac = 200 / 4 = 50
    for ch in (ALL, "paid_search"):
        assert value(snaps, "churn_rate", 30 * D, ch=ch) == pytest.approx(0.125)
        assert value(snaps, "ltv", 30 * D, ch=ch) == pytest.approx(240)
        assert value(snaps, "cac", 30 * D, ch=ch) == pytest.approx(50)
        assert value(snaps, "ltv_cac", 30 * D, ch=ch) == pytest.approx(4.8)
    assert value(snaps, "ltv", 0) == pytest.approx(30 * 36)   # churn 0: capped lifetime
    assert value(snaps, "ltv_cac", 0) is None            # cac undefined: no conversions yet
    assert value(snaps, "ltv_cac", 30 * D, seg="new_grad") is None


def test_daily_active_ratio_and_arpu() -> None:
    events = [ev("activity", 0.5 * H, "a", session_s=60), ev("scan", 0.5 * H, "b", match_score=1),
              ev("activity", 30.5 * H, "b", session_s=60), pay(0.5 * H, "a", amount=30),
              ev("activity", 6.5 * H, "c", session_s=1), ev("activity", 7.0 * H, "d", session_s=1)]
    snaps = run(events, until=31 * H)
    assert value(snaps, "daily_active_ratio", 0) == 1.0
    # window 30 = [30 h, 31 h); trailing 24 h = [7 h, 31 h): b and d, not a (0 h) nor c (6.5 h)
    assert value(snaps, "daily_active_ratio", 30 * H) == pytest.approx(2 / 4)
    assert n_of(snaps, "daily_active_ratio", 30 * H) == 4
    # window 29: trailing 24 h = [6 h, 30 h): c and d
    assert value(snaps, "daily_active_ratio", 29 * H) == pytest.approx(2 / 4)
    assert value(snaps, "arpu", 30 * H) == pytest.approx(30 / 4)


def test_active_users_leave_after_30_days() -> None:
    snaps = run([ev("activity", 0.5 * D, "a", session_s=1)], window_s=D, until=31 * D)
    assert value(snaps, "daily_active_ratio", 29 * D) == 0.0
    assert value(snaps, "daily_active_ratio", 30 * D) is None    # nobody active in 30 d


def test_viral_coefficient() -> None:
    events = [signup(10, "x2", referred_by="r1", ch="referral"),
              signup(20, "x3", referred_by="r1", ch="referral", seg="executive"),
              signup(30, "x4", referred_by="r2", ch="referral"),
              signup(40, "x5")]
    snaps = run(events, until=2 * H)
    assert value(snaps, "viral_coefficient", 0) == pytest.approx(1.5)
    assert n_of(snaps, "viral_coefficient", 0) == 2
    assert value(snaps, "viral_coefficient", 0, ch="referral") == pytest.approx(1.5)
    assert value(snaps, "viral_coefficient", 0, seg="new_grad") == pytest.approx(1.0)
    assert value(snaps, "viral_coefficient", 0, seg="executive") == pytest.approx(1.0)
    assert value(snaps, "viral_coefficient", 0, ch="organic") is None
    assert value(snaps, "viral_coefficient", H) == pytest.approx(1.5)   # trailing 30 d


def test_viral_coefficient_trailing_distinct_referrers() -> None:
    events = [signup(0.5 * D, "x1", referred_by="r1", ch="referral"),
              signup(20.5 * D, "x2", referred_by="r1", ch="referral")]
    snaps = run(events, window_s=D, until=52 * D)
    assert value(snaps, "viral_coefficient", 20 * D) == 2.0
    assert value(snaps, "viral_coefficient", 30 * D) == 1.0   # day 0 signup left
    assert value(snaps, "viral_coefficient", 49 * D) == 1.0
    assert value(snaps, "viral_coefficient", 50 * D) is None


# -- series -----------------------------------------------------------------------------------

def test_per_segment_and_per_channel_series() -> None:
    events = [signup(1, "a", seg="new_grad", ch="organic"),
              signup(2, "b", seg="new_grad", ch="social"),
              signup(3, "c", seg="executive", ch="social"),
              pay(4, "c", first=True, seg="executive", ch="social", amount=100)]
    snaps = run(events)
    assert value(snaps, "signups", 0) == 3
    assert value(snaps, "signups", 0, seg="new_grad") == 2
    assert value(snaps, "signups", 0, seg="executive") == 1
    assert value(snaps, "signups", 0, seg="experienced") == 0
    assert value(snaps, "signups", 0, ch="social") == 2
    assert value(snaps, "conversion_rate", 0, ch="social") == 0.5
    assert value(snaps, "conversion_rate", 0, seg="executive") == 1.0
    assert value(snaps, "mrr", 0, seg="executive") == 100
    assert value(snaps, "mrr", 0, seg="new_grad") == 0
    assert value(snaps, "conversion_rate", 0, seg="experienced") is None
    series = {(s.segment, s.channel) for s in snaps}
    assert len(series) == 9
    assert not [s for s in snaps if s.segment != ALL and s.channel != ALL]


def test_unknown_segment_and_channel_get_their_own_series() -> None:
    snaps = run([signup(1, "a", seg="student", ch="tiktok")])
    assert value(snaps, "signups", 0, seg="student") == 1
    assert value(snaps, "signups", 0, ch="tiktok") == 1
    assert value(snaps, "signups", 0) == 1


def test_undefined_values_are_absent() -> None:
    snaps = run([signup(1)])
    assert {s.kpi for s in snaps} == {"signups", "scans", "paid_conversions", "conversion_rate",
                                      "payments", "revenue", "mrr"}
    for s in snaps:
        assert s.value == s.value   # never NaN
    assert value(snaps, "conversion_rate", 0, seg="executive") is None


# -- windows, duplicates, lateness --------------------------------------------------------------

def test_duplicates_are_ignored() -> None:
    eng = KpiEngine(lateness_s=0)
    e = signup(10)
    assert eng.add(e) is None
    assert eng.add(dict(e)) == "duplicate"
    assert eng.count_by_kind == {"signup": 1}
    snaps = eng.advance(H)
    assert value(snaps, "signups", 0) == 1


def test_late_events_are_reported_and_change_nothing() -> None:
    eng, ref = KpiEngine(), KpiEngine()
    for engine in (eng, ref):
        engine.add(signup(10, "a"))
        engine.add(signup(H + 10, "b"))
        first = engine.advance(H + 600)
        assert [s.window_start for s in first] and {s.window_start for s in first} == {0.0}
    assert eng.add(signup(3599, "c")) == "late"
    assert eng.add(pay(3599, "c")) == "late"
    assert eng.count_by_kind == ref.count_by_kind == {"signup": 2}
    assert eng.advance(10 * H) == ref.advance(10 * H)


def test_out_of_order_within_lateness_is_counted() -> None:
    eng = KpiEngine(lateness_s=600)
    assert eng.add(signup(H + 300, "b")) is None
    assert eng.advance(eng.watermark) == []          # window 0 waits until 4200
    assert eng.add(signup(H - 1, "a")) is None       # 300 s out of order: still counted
    assert eng.watermark == H + 300
    snaps = eng.advance(H + 600)
    assert value(snaps, "signups", 0) == 1
    assert {s.window_start for s in snaps} == {0.0}


def test_late_before_first_event_is_not_late() -> None:
    eng = KpiEngine(lateness_s=0)
    assert eng.advance(100 * H) == []                # nothing has started: nothing closes
    assert eng.add(signup(10)) is None
    assert value(eng.advance(H), "signups", 0) == 1


def test_empty_windows_close_with_zero_counts_and_carried_levels() -> None:
    snaps = run([pay(10, "a", first=True), signup(5 * H + 1)], until=6 * H)
    starts = sorted(snapshots_by_window(snaps))
    assert starts == [i * H for i in range(6)]
    for i in range(1, 5):
        assert value(snaps, "signups", i * H) == 0
        assert value(snaps, "payments", i * H) == 0
        assert value(snaps, "mrr", i * H) == 39
        assert value(snaps, "mrr_growth", i * H) == 0.0
        assert value(snaps, "conversion_rate", i * H) is None


def test_snapshots_come_in_time_order() -> None:
    snaps = run([signup(i * H + 1) for i in range(5)])
    starts = [s.window_start for s in snaps]
    assert starts == sorted(starts)


def test_counts_in_closed_windows_equal_events_added() -> None:
    events = synthetic_events(20_000, seed=3, spacing_s=30)
    eng = KpiEngine()
    snaps = []
    for e in events:
        assert eng.add(e) is None
    snaps = eng.advance(eng.watermark + 2 * H)
    overall = [s for s in snaps if s.segment == ALL and s.channel == ALL]

    def total(kpi: str) -> float:
        return sum(s.value for s in overall if s.kpi == kpi)

    ok = [e for e in events if e["kind"] == "payment" and e["status"] == "succeeded"]
    assert total("signups") == sum(e["kind"] == "signup" for e in events)
    assert total("scans") == sum(e["kind"] == "scan" for e in events)
    assert total("payments") == len(ok)
    assert total("paid_conversions") == sum(bool(e["first"]) for e in ok)
    assert total("revenue") == pytest.approx(sum(e["amount"] for e in ok))
    for seg in ("new_grad", "executive"):
        assert sum(s.value for s in snaps if s.kpi == "signups" and s.segment == seg) == sum(
            e["kind"] == "signup" and e["segment"] == seg for e in events)
    assert sum(eng.count_by_kind.values()) == len(events)


def test_results_do_not_depend_on_how_advance_is_called() -> None:
    events = synthetic_events(6_000, seed=5, spacing_s=40)
    results = []
    for every in (1, 97, 1000, len(events)):
        eng = KpiEngine()
        snaps: list[KpiSnapshot] = []
        for i, e in enumerate(events, 1):
            eng.add(e)
            if i % every == 0:
                snaps += eng.advance(eng.watermark)
        snaps += eng.advance(eng.watermark + D)
        results.append(snaps)
    assert len(results[0]) > 1000
    assert all(r == results[0] for r in results[1:])


def test_pickle_round_trip_mid_stream() -> None:
    events = synthetic_events(8_000, seed=7, spacing_s=40)
    eng = KpiEngine()
    for e in events[:4_000]:
        eng.add(e)
    eng.advance(eng.watermark)
    copy = pickle.loads(pickle.dumps(eng))
    outs = []
    for engine in (eng, copy):
        snaps = []
        for e in events[4_000:]:
            engine.add(e)
        snaps += engine.advance(engine.watermark + D)
        outs.append(snaps)
    assert outs[0] == outs[1] and len(outs[0]) > 100
    assert eng.count_by_kind == copy.count_by_kind


def test_state_stays_bounded() -> None:
    events = synthetic_events(5_000, seed=9, spacing_s=60)
    eng = KpiEngine()
    for e in events:
        eng.add(e)
    eng.advance(eng.watermark)
    win, merge = eng.windows, eng.merger
    assert len(win._open) <= 2                       # dedupe ids only for open windows
    assert sum(len(w.ids) for w in win._open.values()) < 200
    eng.advance(eng.watermark + 31 * D)
    assert not win._last_active and not win._mau and not win._trail and not merge._ref_last
    assert not merge._pending                        # nothing held back once emitted
    eng = KpiEngine(window_s=D)                      # same with fewer windows to close
    win, merge = eng.windows, eng.merger
    for e in events:
        eng.add(e)
    eng.advance(eng.watermark + 400 * D)             # everything expires
    assert not win._open and not win._subs and not win._expiries
    assert not win._last_active and not win._active_buckets and not win._trail
    assert not merge._ref_last and not merge._ref_buckets and not win._mau


def test_unknown_kind_is_rejected() -> None:
    eng = KpiEngine()
    with pytest.raises(ValueError, match="watermark"):
        eng.add({"event_id": "x", "kind": "watermark", "ts": 1.0})
    assert eng.count_by_kind == {} and not eng.windows._open


def test_snapshot_to_json() -> None:
    s = KpiSnapshot("mrr", ALL, "organic", 1_795_773_600.0, 1_795_777_200.0, 68.0, 2.0)
    assert s.to_json() == {
        "kpi": "mrr", "segment": "all", "channel": "organic",
        "window_start": "2026-11-27T10:00:00Z", "window_end": "2026-11-27T11:00:00Z",
        "window_start_ts": 1_795_773_600.0, "window_end_ts": 1_795_777_200.0,
        "value": 68.0, "n": 2.0, "complete": True}


@pytest.mark.parametrize("bad", [{"window_s": 0}, {"lateness_s": -1}])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        KpiEngine(**bad)


def test_trailing_kpis_are_incomplete_until_the_stream_covers_their_horizon() -> None:
    eng = KpiEngine()
    day = 86_400.0
    out = []
    for d in range(31):
        eng.add({"event_id": f"s{d}", "kind": "spend", "ts": d * day + 10, "channel": "social",
                 "amount": 10.0})
        eng.add({"event_id": f"p{d}", "kind": "payment", "ts": d * day + 20, "user_id": f"u{d}",
                 "segment": "new_grad", "channel": "social", "plan": "monthly", "amount": 39.0,
                 "status": "succeeded", "first": True})
        out += eng.advance((d + 1) * day + 600)
    cac = [s for s in out if s.kpi == "cac" and s.segment == s.channel == ALL]
    payments = [s for s in out if s.kpi == "payments" and s.segment == s.channel == ALL]
    assert all(s.complete for s in payments)           # window KPIs: complete at once
    assert not any(s.complete for s in cac if s.window_end <= 30 * day - 3600)
    assert all(s.complete for s in cac if s.window_end >= 30 * day)


@pytest.mark.parametrize("partitions", [2, 4])
def test_partitions_merged_equal_one_engine(partitions: int) -> None:
    """Users split over partitions (as the publisher splits them), each partition closing its
    own windows, sent through the ``kpi-partials`` codec and merged: the same snapshots as one
    engine over every event, viral coefficient (distinct referrers across partitions) included."""
    from kpis.merger import KpiMerger
    from kpis.windows import PartitionWindows
    from simulator import Simulation
    from simulator.publisher import partition_of
    from stream.agents.kpis import decode_partials, encode_partials

    start = 1_794_000_000 // 3600 * 3600
    events = Simulation(seed=4, start_ts=start).advance(start + 35 * D)
    assert sum(1 for e in events if e.get("referred_by")) > 50
    one = KpiEngine()
    parts = [PartitionWindows() for _ in range(partitions)]
    merger = KpiMerger(partitions=partitions)
    merged: list[KpiSnapshot] = []
    for i, e in enumerate(events):
        one.add(e)
        parts[partition_of(e, partitions)].add(e)
        if i % 5000 == 0 or i + 1 == len(events):
            wm = e["ts"] if i + 1 < len(events) else e["ts"] + 2 * H
            sent = [(p, partitions, parts[p].advance(wm, close_empty=True))
                    for p in reversed(range(partitions))]   # partitions report in any order
            message = encode_partials([(p, n, parts[p].closed_before, closed, [])
                                       for p, n, closed in sent])
            for p, n, closed_before, closed, peeks in decode_partials(message):
                assert n == partitions and peeks == []
                merged += merger.add(p, closed_before, closed, peeks)
    expected = one.advance(events[-1]["ts"] + 2 * H)
    assert len(expected) > 17 * 9 * 24 * 30
    assert merged == expected
    assert any(s.kpi == "viral_coefficient" and s.complete for s in merged)


def test_merger_waits_for_every_partition_and_counts_a_window_once() -> None:
    from kpis.merger import KpiMerger
    from kpis.windows import PartitionWindows

    a, b = PartitionWindows(lateness_s=0), PartitionWindows(lateness_s=0)
    merger = KpiMerger(partitions=2)
    a.add(signup(10))
    b.add(ev("signup", 20, user="u2"))
    closed_a = a.advance(H)
    assert merger.add(0, a.closed_before, closed_a) == []        # partition 1 not closed yet
    assert merger.add(0, a.closed_before, closed_a) == []        # the same window again
    closed_b = b.advance(H)
    snaps = merger.add(1, b.closed_before, closed_b)
    assert value(snaps, "signups", 0) == 2
    assert merger.add(1, b.closed_before, b.advance(H)) == []    # nothing new to emit
