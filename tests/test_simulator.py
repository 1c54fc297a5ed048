"""The simulator: determinism, the event schema, incident effects and calibration to the seeds."""

from __future__ import annotations

import hashlib
import math
import pickle
import random
import re
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson
import pytest

from detectors.calendar import load_calendar, write_calendar
from kpis import KpiEngine
from simulator import (
    CHANNELS,
    INCIDENT_KINDS,
    SCENARIOS,
    SEGMENTS,
    BusinessModel,
    Incident,
    Simulation,
    plan_incidents,
)
from simulator.benign import BENIGN_KINDS, Benign, plan_benign
from simulator.scenarios import TRACKED_CHANNELS

T0 = 1795219200.0  # 2026-11-21T00:00:00Z
HOUR, DAY = 3600.0, 86400.0
KPI_IDS = {
    "signups", "scans", "match_rate", "paid_conversions", "conversion_rate", "payments", "revenue",
    "payment_failure_rate", "mrr", "mrr_growth", "arpu", "churn_rate", "cac", "ltv", "ltv_cac",
    "daily_active_ratio", "viral_coefficient",
}
COMMON = {"event_id", "kind", "ts", "user_id", "segment", "channel"}
EXTRA = {
    "signup": {"referred_by"}, "scan": {"match_score"}, "cancel": {"plan"},
    "payment": {"plan", "amount", "status", "first"}, "activity": {"session_s"},
}

Event = dict[str, Any]


def run(seed: int = 1, days: float = 3.6, scenario: str = "none", start: float = T0,
        incident_range: tuple[float, float] | None = (T0 + DAY, T0 + 2.5 * DAY),
        ) -> tuple[list[Incident], list[Event]]:
    """The incidents and the events of ``days`` simulated days (``none``: the clean stream)."""
    sim = Simulation(seed, start, scenario, incident_range=incident_range, benign=False)
    return sim.incidents, sim.advance(start + days * DAY)


def between(events: list[Event], a: float, b: float, **match: str) -> list[Event]:
    return [e for e in events if a <= e["ts"] < b and all(e.get(k) == v for k, v in match.items())]


def without_ids(events: list[Event]) -> list[Event]:
    return [{k: v for k, v in e.items() if k != "event_id"} for e in events]


# ------------------------------------------------------------------ determinism and order


def test_same_seed_gives_the_same_stream_and_other_seeds_do_not():
    (_, a), (_, b), (_, c) = run(seed=5, days=1.5), run(seed=5, days=1.5), run(seed=6, days=1.5)
    assert a == b
    assert without_ids(a) != without_ids(c)


def test_step_sizes_do_not_change_the_stream():
    start = T0 + 1234.5678  # not on an hour
    whole = Simulation(9, start, "mixed", incident_range=(start, start + 3 * DAY))
    reference = whole.advance(start + 3 * DAY)
    pieces = Simulation(9, start, "mixed", incident_range=(start, start + 3 * DAY))
    rng, t, got = random.Random(0), start, []
    while t < start + 3 * DAY:
        t = min(t + rng.choice([0.5, 1.0, 7.0, 60.0, 1800.0, 3600.0, 5000.0, 20000.0]),
                start + 3 * DAY)
        got.extend(pieces.advance(t))
        assert pieces.advance(t - 10.0) == []  # going back in time hands out nothing
    assert got == reference
    assert len(reference) > 20000


def test_advance_returns_exactly_the_requested_interval():
    sim, previous = Simulation(2, T0 + 17.25), T0 + 17.25
    for until in (T0 + 17.25, T0 + 100.0, T0 + 3 * HOUR, T0 + 3 * HOUR + 0.001, T0 + DAY):
        events = sim.advance(until)
        assert all(previous <= e["ts"] < until for e in events)
        previous = until
    assert sim.advance(T0 + DAY + 1800.0)


def test_ids_are_unique_and_events_time_ordered():
    _, events = run(seed=3, scenario="mixed", days=4.0)
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert all(x["ts"] <= y["ts"] for x, y in zip(events, events[1:], strict=False))


# ------------------------------------------------------------------------------- schema


def check_event(e: Event, known_users: set[str]) -> None:
    kind = e["kind"]
    assert isinstance(e["event_id"], str) and 1 <= len(e["event_id"]) <= 128
    assert isinstance(e["ts"], float) and T0 <= e["ts"] < T0 + 400 * DAY
    assert e["channel"] in CHANNELS
    if kind == "spend":
        assert set(e) == {"event_id", "kind", "ts", "channel", "amount"}
        assert isinstance(e["amount"], float) and 0 <= e["amount"] <= 100_000
        assert e["channel"] in ("paid_search", "social")
        return
    assert set(e) == COMMON | EXTRA[kind], e
    assert isinstance(e["user_id"], str) and 1 <= len(e["user_id"]) <= 128
    assert e["segment"] in SEGMENTS
    if kind == "signup":
        if e["channel"] == "referral":
            assert e["referred_by"] in known_users
        else:
            assert e["referred_by"] is None
        known_users.add(e["user_id"])
    elif kind == "scan":
        assert isinstance(e["match_score"], float) and 0.0 <= e["match_score"] <= 1.0
    elif kind == "payment":
        assert e["plan"] in ("monthly", "annual") and e["status"] in ("succeeded", "failed")
        assert isinstance(e["amount"], float) and 0 <= e["amount"] <= 100_000
        assert isinstance(e["first"], bool)
    elif kind == "cancel":
        assert e["plan"] in ("monthly", "annual")
    else:
        assert kind == "activity", kind
        assert isinstance(e["session_s"], float) and e["session_s"] >= 0


def test_every_event_follows_the_schema():
    _, events = run(seed=4, scenario="mixed", days=4.0)
    known = {f"u{i}" for i in range(BusinessModel().initial_users)}
    for e in events:
        check_event(e, known)
        assert len(orjson.dumps(e)) < 16 * 1024
    kinds = Counter(e["kind"] for e in events)
    assert set(kinds) == {"signup", "scan", "payment", "cancel", "spend", "activity"}
    assert kinds["spend"] == 4 * 24 * 2  # one per paid channel per hour
    assert any(e["kind"] == "signup" and e["referred_by"] for e in events)


# ---------------------------------------------------------------------------- incidents


def test_unknown_scenario_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: none, payment-outage.*mixed"):
        Simulation(1, T0, "meteor-strike")
    assert SCENARIOS == ("none", *INCIDENT_KINDS, "mixed") and len(INCIDENT_KINDS) == 5


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_single_kind_scenarios_place_one_labelled_incident_in_range(kind: str):
    lo, hi = T0 + DAY, T0 + 4 * DAY
    for seed in range(20):
        (inc,) = plan_incidents(kind, lo, hi, random.Random(seed))
        assert inc.kind == kind and lo <= inc.start < inc.end <= hi
        assert set(inc.kpis) <= KPI_IDS and inc.kpis
        assert inc.segment in ("all", *SEGMENTS) and inc.channel in ("all", *CHANNELS)
        assert inc.description.endswith(".") and "\n" not in inc.description


def test_signup_tracking_drop_is_near_total_on_all_or_a_large_channel():
    lo, hi = T0 + DAY, T0 + 4 * DAY
    incs = [plan_incidents("signup-tracking-drop", lo, hi, random.Random(seed))[0]
            for seed in range(40)]
    assert TRACKED_CHANNELS == ("organic", "paid_search")
    assert all(0.9 <= i.magnitude <= 1.0 and 3 * HOUR <= i.end - i.start <= 8 * HOUR
               for i in incs)
    assert {i.channel for i in incs} == {"all", *TRACKED_CHANNELS}


def test_mixed_gives_several_kinds_apart_by_at_least_12_hours():
    lo, hi = T0, T0 + 21 * DAY
    for seed in range(20):
        incs = plan_incidents("mixed", lo, hi, random.Random(seed))
        assert len(incs) >= 3 and len({i.kind for i in incs}) == len(incs)
        assert all(lo <= i.start < i.end <= hi for i in incs)
        assert all(b.start - a.end >= 12 * HOUR for a, b in zip(incs, incs[1:], strict=False))
    assert plan_incidents("none", lo, hi, random.Random(0)) == []
    with pytest.raises(ValueError, match="too short"):
        plan_incidents("churn-spike", lo, lo + HOUR, random.Random(0))


def test_incident_json_label():
    inc = Incident("inc01-payment-outage", "payment-outage", T0 + 10 * HOUR, T0 + 13 * HOUR,
                   ("payments",), "all", "all", "The payment processor fails 80% of attempts.")
    label = inc.to_json()
    assert label == {
        "id": "inc01-payment-outage", "kind": "payment-outage",
        "start": "2026-11-21T10:00:00Z", "end": "2026-11-21T13:00:00Z",
        "start_ts": T0 + 10 * HOUR, "end_ts": T0 + 13 * HOUR, "kpis": ["payments"],
        "segment": "all", "channel": "all",
        "description": "The payment processor fails 80% of attempts.",
    }
    assert orjson.loads(orjson.dumps(label)) == label


def failure_share(events: list[Event]) -> float:
    pays = [e for e in events if e["kind"] == "payment"]
    return sum(e["status"] == "failed" for e in pays) / len(pays)


def count(kind: str) -> Callable[[list[Event]], float]:
    return lambda events: float(sum(e["kind"] == kind for e in events))


def mean_match(events: list[Event]) -> float:
    scores = [e["match_score"] for e in events if e["kind"] == "scan"]
    return sum(scores) / len(scores)


def series_filter(inc: Incident) -> dict[str, str]:
    out = {}
    if inc.segment != "all":
        out["segment"] = inc.segment
    if inc.channel != "all":
        out["channel"] = inc.channel
    return out


# kind -> (KPI over a list of events, check inside the incident, check after it), each check
# comparing the incident run's value with the clean run's value over the same interval
EFFECTS: dict[str, tuple[Callable[[list[Event]], float],
                         Callable[[float, float], bool], Callable[[float, float], bool]]] = {
    "payment-outage": (failure_share, lambda x, clean: x >= 0.4 and x >= clean + 0.3,
                       lambda x, clean: x <= 0.1),
    "signup-tracking-drop": (count("signup"), lambda x, clean: x <= 0.3 * clean,
                             lambda x, clean: abs(x - clean) <= 3 * (x + clean)**0.5 + 3),
    "match-rate-regression": (mean_match, lambda x, clean: x <= clean - 0.1,
                              lambda x, clean: abs(x - clean) <= 0.03),
    "channel-traffic-surge": (count("scan"), lambda x, clean: x >= 2.0 * clean,
                              lambda x, clean: 0.75 * clean <= x <= 1.4 * clean),
    "churn-spike": (count("cancel"), lambda x, clean: x >= max(clean + 3, 2 * clean),
                    lambda x, clean: x <= clean + 3 * clean**0.5 + 4),
}


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_each_incident_moves_its_kpi_inside_its_window_only(kind: str):
    ((inc,), events), (_, reference) = run(seed=11, scenario=kind), run(seed=11)
    # before the hour the incident starts in, the stream is the clean one, event for event
    hour = inc.start // HOUR * HOUR
    assert without_ids(between(events, T0, hour)) == without_ids(between(reference, T0, hour))
    kpi, inside, after = EFFECTS[kind]
    where = series_filter(inc)
    value, base = (kpi(between(ev, inc.start, inc.end, **where)) for ev in (events, reference))
    assert inside(value, base), (inc, value, base)
    a, b = inc.end + HOUR, inc.end + 25 * HOUR
    value, base = (kpi(between(ev, a, b, **where)) for ev in (events, reference))
    assert after(value, base), (inc, value, base)
    if kind == "channel-traffic-surge":
        signups = count("signup")
        assert signups(between(events, inc.start, inc.end, **where)) >= 2 * max(
            1.0, signups(between(reference, inc.start, inc.end, **where)))


def test_payment_outage_also_cuts_paid_conversions_and_revenue():
    (inc,), events = run(seed=12, scenario="payment-outage")
    inside = between(events, inc.start, inc.end)
    pays = [e for e in inside if e["kind"] == "payment"]
    ok = [e for e in pays if e["status"] == "succeeded"]
    assert pays and len(ok) <= 0.4 * len(pays)


# ------------------------------------------------------------------------- model and calibration


def test_model_rejects_inconsistent_rates():
    with pytest.raises(ValueError, match="channel_shares must sum to 1"):
        BusinessModel(channel_shares=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="one value per segment"):
        BusinessModel(segment_match_means=(0.7,))
    with pytest.raises(ValueError, match="monthly_churn"):
        BusinessModel(monthly_churn=1.5)


def test_a_different_model_changes_the_business():
    events = Simulation(1, T0, model=BusinessModel(signups_per_day=600.0)).advance(T0 + DAY)
    assert sum(e["kind"] == "signup" for e in events) > 400


def test_thirty_clean_days_match_the_seed_business():
    days = 30
    end = T0 + days * DAY
    events = Simulation(21, T0).advance(end)
    kinds = Counter(e["kind"] for e in events)
    assert 120 <= kinds["signup"] / days <= 200
    assert 5000 <= kinds["scan"] / days <= 7000
    # subscriptions and MRR as docs/kpis.md defines them, from the events alone
    last: dict[str, Event] = {}
    for e in events:
        if e["kind"] == "payment" and e["status"] == "succeeded":
            last[e["user_id"]] = e
        elif e["kind"] == "cancel":
            last.pop(e["user_id"], None)
    active = [e for e in last.values()
              if end - e["ts"] < (35 if e["plan"] == "monthly" else 370) * DAY]
    mrr = sum(e["amount"] if e["plan"] == "monthly" else e["amount"] / 12 for e in active)
    assert 2100 <= len(active) <= 2900
    assert 80_000 <= mrr <= 105_000
    assert 2000 <= len({e["user_id"] for e in events if e["kind"] == "payment"
                        and not e["first"] and e["ts"] < T0 + 30 * DAY})
    assert 0.02 <= kinds["cancel"] / 2100 <= 0.05  # monthly churn
    assert 0.02 <= failure_share(events) <= 0.045
    assert 0.70 <= mean_match(events) <= 0.74
    # conversion in steady state (signups of the first days have had time to convert)
    late = between(events, T0 + 16 * DAY, end)
    conversions = sum(e["kind"] == "payment" and e["first"] and e["status"] == "succeeded"
                      for e in late)
    assert 0.11 <= conversions / count("signup")(late) <= 0.19
    # daily active users over monthly active users, averaged over the last week
    users = [e["user_id"] for e in events if e["kind"] in ("scan", "activity")]
    monthly = len(set(users))
    daily = [len({e["user_id"] for e in between(events, end - (d + 1) * DAY, end - d * DAY)
                  if e["kind"] in ("scan", "activity")}) for d in range(7)]
    assert 0.32 <= sum(daily) / 7 / monthly <= 0.50
    assert min(daily) <= 0.8 * max(daily)  # weekends are quieter
    # daily seasonality: the 03:00 UTC hours are quieter than the 15:00 UTC ones
    night = sum(1 for e in events if int(e["ts"] % DAY // HOUR) == 3)
    noon = sum(1 for e in events if int(e["ts"] % DAY // HOUR) == 15)
    assert night < 0.5 * noon
    assert re.fullmatch(r"[0-9a-f]{8}-\d+-\d+", events[0]["event_id"])


# ------------------------------------------------------------ bigger business, subtle incidents


def test_scale_multiplies_the_business_and_keeps_its_rates():
    small = Counter(e["kind"] for e in Simulation(5, T0).advance(T0 + 2 * DAY))
    big = Counter(e["kind"] for e in Simulation(5, T0, model=BusinessModel().scaled(4))
                  .advance(T0 + 2 * DAY))
    for kind in ("signup", "scan", "activity", "payment"):
        assert 3.0 <= big[kind] / small[kind] <= 5.0, (kind, small[kind], big[kind])
    assert big["spend"] == small["spend"]   # one spend event per paid channel and hour, 4x bigger
    with pytest.raises(ValueError, match="scale must be > 0"):
        BusinessModel().scaled(-1)


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_subtle_incidents_are_small_and_short(kind: str):
    limits = {"payment-outage": (0.10, 0.25), "signup-tracking-drop": (0.30, 0.60),
              "match-rate-regression": (0.04, 0.08), "channel-traffic-surge": (1.5, 2.0),
              "churn-spike": (2.0, 4.0)}
    for seed in range(12):
        (inc,) = plan_incidents(kind, T0, T0 + 5 * DAY, random.Random(seed), "subtle")
        lo, hi = limits[kind]
        assert lo <= inc.magnitude <= hi
        assert 30 * 60 <= inc.end - inc.start <= 6 * HOUR
        if kind == "signup-tracking-drop":
            assert inc.channel in TRACKED_CHANNELS   # one channel's pages, not the whole site


def test_normal_difficulty_is_todays_stream_and_subtle_differs():
    default = Simulation(9, T0, "payment-outage", (T0 + DAY, T0 + 2 * DAY))
    normal = Simulation(9, T0, "payment-outage", (T0 + DAY, T0 + 2 * DAY), difficulty="normal")
    subtle = Simulation(9, T0, "payment-outage", (T0 + DAY, T0 + 2 * DAY), difficulty="subtle")
    end = T0 + 3 * DAY
    assert default.incidents == normal.incidents
    assert default.advance(end) == normal.advance(end)
    assert subtle.incidents[0].magnitude <= 0.25 < normal.incidents[0].magnitude
    with pytest.raises(ValueError, match="unknown difficulty 'hard'"):
        Simulation(9, T0, "payment-outage", difficulty="hard")


# ------------------------------------------------------- benign events of the none scenario

# sha256 (first 16 hex digits) of seed 3's first three days, generated before benign events
# existed: (scenario, difficulty) -> digest; incident range (T0 + 1 d, T0 + 2.5 d)
STREAMS_BEFORE_BENIGN = {
    ("none", "normal"): "0572a216a92f992e",
    ("payment-outage", "normal"): "19895eb8f805091a",
    ("signup-tracking-drop", "normal"): "b866cb246da0a881",
    ("match-rate-regression", "normal"): "d133cda1141c6fe6",
    ("channel-traffic-surge", "normal"): "3686a29192fd3498",
    ("churn-spike", "normal"): "7e5bdcd0444d77e0",
    ("mixed", "normal"): "d2ec888a69c436f5",
    ("payment-outage", "subtle"): "1d3e83d5eeb8e809",
}
NONE_DEFAULT_RANGE_16_DAYS = "aef528a1a0a2b02f"  # Simulation(3, T0): no range given
LO, HI = T0 + 8 * DAY, T0 + 14 * DAY  # the benign run's range: a clean week before it


def digest(events: list[Event]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n")
    return h.hexdigest()[:16]


def test_other_scenarios_streams_are_byte_for_byte_what_they_were():
    for (scenario, difficulty), expected in STREAMS_BEFORE_BENIGN.items():
        sim = Simulation(3, T0, scenario, (T0 + DAY, T0 + 2.5 * DAY), difficulty=difficulty,
                         benign=False if scenario == "none" else None)
        assert sim.benign == []
        assert digest(sim.advance(T0 + 3 * DAY)) == expected, scenario
    clean = Simulation(3, T0)  # no range given: no benign events, even in the default range
    assert clean.benign == [] and digest(clean.advance(T0 + 16 * DAY)) == \
        NONE_DEFAULT_RANGE_16_DAYS
    benign = Simulation(3, T0, "none", (T0 + DAY, T0 + 2.5 * DAY))
    assert benign.benign and digest(benign.advance(T0 + 3 * DAY)) != \
        STREAMS_BEFORE_BENIGN[("none", "normal")]


def test_plan_benign_places_every_kind_inside_the_range_from_the_seed():
    lo, hi = T0 + 0.5 * DAY, T0 + 6.5 * DAY
    plans = [plan_benign(seed, lo, hi) for seed in range(12)]
    assert plans[0] == plan_benign(0, lo, hi)
    assert len({tuple(p) for p in plans}) == len(plans)
    for plan in plans:
        by = {b.kind: b for b in plan}
        assert sorted(by) == sorted(BENIGN_KINDS) and len(plan) == 5
        assert [b.start for b in plan] == sorted(b.start for b in plan)
        hol, camp, gap, trend, late = (by[k] for k in ("holiday", "campaign", "gap", "trend",
                                                       "late"))
        for day in (hol, camp):  # whole UTC days, apart, inside the range
            assert day.start % DAY == 0 and day.end - day.start == DAY
            assert lo <= day.start and day.end <= hi
        assert hol.start != camp.start and hol.magnitude == 0.6 and camp.magnitude == 2.0
        assert camp.channel in CHANNELS and hol.channel == "all"
        assert gap.end - gap.start == 20 * 60 and lo <= gap.start and gap.end <= hi
        assert gap.start % 300 == 0
        assert not any(b.covers(gap.start) or b.covers(gap.end - 1) for b in (hol, camp))
        assert lo <= trend.start < lo + DAY and trend.start % HOUR == 0
        assert trend.end - trend.start == 28 * DAY and trend.magnitude == 1.2
        assert (late.start, late.end) == (lo, hi) and 0.01 <= late.magnitude <= 0.02
    # switching kinds off leaves the others where they were
    assert plan_benign(4, lo, hi, kinds=("gap", "holiday")) == [
        b for b in plan_benign(4, lo, hi) if b.kind in ("gap", "holiday")]
    with pytest.raises(ValueError, match="unknown benign kind.*valid: holiday, campaign"):
        plan_benign(4, lo, hi, kinds=("eclipse",))
    # a short range holds what fits, an empty one nothing
    short = {b.kind for b in plan_benign(4, T0 + 2 * HOUR, T0 + 8 * HOUR)}
    assert short == {"trend", "late", "gap"}
    assert plan_benign(4, T0 + 2 * HOUR, T0 + 2 * HOUR) == []
    assert plan_benign(4, T0 + 3 * HOUR, T0 + 2 * HOUR) == []


def test_only_the_none_scenario_with_a_range_gets_benign_events():
    rng = (T0 + DAY, T0 + 3 * DAY)
    assert {b.kind for b in Simulation(1, T0, "none", rng).benign} == set(BENIGN_KINDS)
    assert Simulation(1, T0, "none", rng).benign == plan_benign(1, *rng)
    assert Simulation(1, T0, "none", rng, benign=False).benign == []
    assert Simulation(1, T0).benign == []
    assert Simulation(1, T0, "churn-spike", rng).benign == []
    assert Simulation(1, T0, benign=True).benign == plan_benign(1, T0 + 14 * DAY, T0 + 35 * DAY)
    with pytest.raises(ValueError, match="benign events are for the none scenario"):
        Simulation(1, T0, "churn-spike", rng, benign=True)
    sim = Simulation(1, T0)
    sim.advance(T0 + HOUR)
    sim.plan("none", rng)
    assert sim.benign == plan_benign(1, *rng) and sim.incidents == []
    sim.plan("payment-outage", rng)
    assert sim.benign == [] and len(sim.incidents) == 1


class BenignRun:
    """Seed 3 with every benign event in [LO, HI], advanced hour by hour (call by call kept),
    and the same seed's clean stream."""

    def __init__(self) -> None:
        self.sim = Simulation(3, T0, "none", (LO, HI))
        self.clean = Simulation(3, T0, "none", (LO, HI), benign=False)
        self.calls: list[tuple[float, float, list[Event]]] = []
        self.reference: list[Event] = []
        t = T0
        while t < T0 + 15 * DAY:
            self.calls.append((t, t + HOUR, self.sim.advance(t + HOUR)))
            self.reference += self.clean.advance(t + HOUR)
            t += HOUR
        self.events = [e for _, _, evs in self.calls for e in evs]
        self.by = {b.kind: b for b in self.sim.benign}


@pytest.fixture(scope="module")
def benign_run() -> BenignRun:
    return BenignRun()


def kinds_between(events: list[Event], a: float, b: float) -> Counter[str]:
    return Counter(e["kind"] for e in between(events, a, b))


def test_benign_events_begin_inside_their_range_only(benign_run: BenignRun):
    assert min(b.start for b in benign_run.sim.benign) >= LO
    assert without_ids(between(benign_run.events, T0, LO)) == without_ids(
        between(benign_run.reference, T0, LO))
    ids = [e["event_id"] for e in benign_run.events]
    assert len(ids) == len(set(ids))


def test_holiday_cuts_all_traffic_to_about_60_percent(benign_run: BenignRun):
    hol = benign_run.by["holiday"]
    day = kinds_between(benign_run.events, hol.start, hol.end)
    week_before = kinds_between(benign_run.events, hol.start - 7 * DAY, hol.end - 7 * DAY)
    clean = kinds_between(benign_run.reference, hol.start, hol.end)
    assert 0.45 <= day["signup"] / week_before["signup"] <= 0.75
    for kind in ("scan", "activity"):
        assert 0.54 <= day[kind] / week_before[kind] <= 0.68, kind
        assert 0.54 <= day[kind] / clean[kind] <= 0.66, kind
    assert day["payment"] >= 0.8 * clean["payment"]  # renewals are due anyway
    # hour by hour: the median hour against the same hour a week before, every busy hour
    # against the clean run's
    hours = [hol.start + h * HOUR for h in range(24)]
    ratios = sorted(kinds_between(benign_run.events, a, a + HOUR)["scan"]
                    / kinds_between(benign_run.events, a - 7 * DAY, a - 7 * DAY + HOUR)["scan"]
                    for a in hours)
    assert 0.5 <= ratios[12] <= 0.72
    assert all(kinds_between(benign_run.events, a, a + HOUR)["scan"]
               < 0.75 * kinds_between(benign_run.reference, a, a + HOUR)["scan"]
               for a in hours[10:21])


def test_campaign_doubles_its_channel_signups() -> None:
    """Summed over six seeds: the campaign channel's signups on its day, against the clean run's,
    and the other channels'."""
    tally: Counter[tuple[str, bool]] = Counter()
    rng = (T0 + DAY, T0 + 3 * DAY)
    for seed in range(1, 7):
        sim = Simulation(seed, T0, "none", rng)
        (camp,) = [b for b in sim.benign if b.kind == "campaign"]
        runs = {"benign": sim, "clean": Simulation(seed, T0, "none", rng, benign=False)}
        for name, s in runs.items():
            for e in between(s.advance(T0 + 3 * DAY), camp.start, camp.end):
                if e["kind"] == "signup":
                    tally[name, e["channel"] == camp.channel] += 1
    assert 1.6 <= tally["benign", True] / tally["clean", True] <= 2.5
    assert 0.8 <= tally["benign", False] / tally["clean", False] <= 1.25


def test_trend_ramps_signups_up_and_stays_there():
    clean = Simulation(5, T0).advance(T0 + 4 * DAY)
    sim = Simulation(5, T0)
    sim.benign = [Benign("trend", T0 + DAY, T0 + 2 * DAY, 3.0)]  # x3 after a one-day ramp
    events = sim.advance(T0 + 4 * DAY)
    assert events[:len(between(clean, T0, T0 + DAY))] == between(clean, T0, T0 + DAY)
    signups = count("signup")
    ramp = signups(between(events, T0 + DAY, T0 + 2 * DAY)) / signups(
        between(clean, T0 + DAY, T0 + 2 * DAY))
    after = signups(between(events, T0 + 2 * DAY, T0 + 4 * DAY)) / signups(
        between(clean, T0 + 2 * DAY, T0 + 4 * DAY))
    assert 1.6 <= ramp <= 2.4 and 2.5 <= after <= 3.5
    # the planned one: +20 % over four weeks from inside the range; a week in, about +5 %
    trend = plan_benign(5, LO, HI, kinds=("trend",))[0]
    assert trend.magnitude == 1.2 and trend.end - trend.start == 28 * DAY


def test_gap_has_no_events_for_20_minutes(benign_run: BenignRun):
    gap = benign_run.by["gap"]
    assert gap.end - gap.start == 20 * 60
    assert between(benign_run.events, gap.start, gap.end) == []
    assert between(benign_run.reference, gap.start, gap.end)  # there would have been some
    assert between(benign_run.events, gap.start - 300, gap.start)
    assert between(benign_run.events, gap.end, gap.end + 300)


def test_gap_delays_billing_events_to_just_after_it_and_loses_tracking_events():
    clean = Simulation(6, T0).advance(T0 + 2 * DAY)
    # the 20 minutes of day 1 with the most payments (on the 5-minute grid)
    g0 = max((T0 + DAY + 300 * k for k in range(284)),
             key=lambda a: count("payment")(between(clean, a, a + 1200)))
    g1 = g0 + 1200
    sim = Simulation(6, T0)
    sim.benign = [Benign("gap", g0, g1)]
    events = sim.advance(T0 + 2 * DAY)
    assert events[:len(between(clean, T0, g0))] == between(clean, T0, g0)
    assert between(events, g0, g1) == []
    billing = [e for e in between(clean, g0, g1) if e["kind"] in ("payment", "cancel")]
    assert sum(e["kind"] == "payment" for e in billing) >= 3
    after = [e for e in between(events, g1, g1 + 1.0) if e["kind"] in ("payment", "cancel")]
    key = itemgetter("kind", "user_id", "plan")
    assert [key(e) for e in after] == [key(e) for e in billing]  # same attempts, same order
    lost = Counter(e["kind"] for e in between(clean, g0, g1)) - Counter(
        e["kind"] for e in between(events, g1, g1 + 1.0))
    assert set(lost) <= {"signup", "scan", "activity"} and lost["scan"] > 0


def test_late_events_arrive_out_of_order_within_8_minutes(benign_run: BenignRun):
    late = benign_run.by["late"]
    out_of_order, newest = [], -math.inf
    for prev, until, events in benign_run.calls:
        assert all(prev - 480 <= e["ts"] < until for e in events)
        for e in events:
            if e["ts"] < newest:
                out_of_order.append(e)
            newest = max(newest, e["ts"])
    crossed = [e for prev, _, evs in benign_run.calls for e in evs if e["ts"] < prev]
    assert crossed  # some arrive in the next hour's call, still within lateness
    assert all(late.covers(e["ts"]) for e in out_of_order)
    in_range = len(between(benign_run.events, late.start, late.end))
    assert 0.6 * late.magnitude <= len(out_of_order) / in_range <= 1.2 * late.magnitude
    # lateness moves events, it changes none: the same run without it has the same events
    sim = Simulation(3, T0, "none", (LO, HI))
    sim.benign = [b for b in sim.benign if b.kind != "late"]
    on_time = sim.advance(T0 + 15 * DAY)
    def by_time(e: Event) -> tuple[float, int, int]:  # ts, then the hour and index of the id
        _, hour, index = e["event_id"].split("-")
        return e["ts"], int(hour), int(index)

    assert on_time == sorted(benign_run.events, key=by_time) != benign_run.events
    assert on_time == sorted(on_time, key=itemgetter("ts"))


@pytest.mark.parametrize(("lateness", "dropped"), [(600.0, False), (0.0, True)])
def test_late_events_fit_the_kpi_engine_lateness(lateness: float, dropped: bool):
    """Fed in 5-minute steps, as the worker and pulse evaluate do, a 10-minute lateness loses
    none of the late events; no lateness loses some."""
    sim = Simulation(3, T0, "none", (T0 + DAY, T0 + 3 * DAY))
    engine = KpiEngine(window_s=HOUR, lateness_s=lateness)
    sim.advance(T0 + DAY - HOUR)
    results: Counter[str | None] = Counter()
    for step in range(1, 12 * 50 + 1):
        until = T0 + DAY - HOUR + 300.0 * step
        results.update(engine.add(e) for e in sim.advance(until))
        engine.advance(until)
    assert (results["late"] > 0) is dropped and results["duplicate"] == 0
    assert results[None] > 10_000


def test_step_sizes_do_not_change_a_benign_stream():
    start, rng_ = T0 + 1234.5678, (T0 + DAY, T0 + 3 * DAY)
    reference = Simulation(9, start, "none", rng_).advance(T0 + 3.2 * DAY)
    pieces, got, t = Simulation(9, start, "none", rng_), [], start
    draw = random.Random(1)
    while t < T0 + 3.2 * DAY:
        t = min(t + draw.choice([0.5, 7.0, 60.0, 400.0, 1800.0, 3600.0, 20000.0]),
                T0 + 3.2 * DAY)
        got.extend(pieces.advance(t))
    assert got == reference and reference != sorted(reference, key=itemgetter("ts"))


def test_benign_plan_set_after_a_pickled_warm_up_gives_the_fresh_run():
    """As pulse evaluate forks its clean warm-up: set ``.benign`` and go on."""
    lo, hi = T0 + 3.5 * DAY, T0 + 5.5 * DAY
    base = Simulation(2, T0, "none")
    warm = base.advance(T0 + 3 * DAY)
    fork = pickle.loads(pickle.dumps(base))
    fork.benign = plan_benign(2, lo, hi)
    fresh = Simulation(2, T0, "none", (lo, hi))
    assert without_ids(fresh.advance(T0 + 3 * DAY)) == without_ids(warm)
    assert without_ids(fresh.advance(T0 + 6 * DAY)) == without_ids(fork.advance(T0 + 6 * DAY))
    assert fresh.calendar() == fork.calendar() and fresh.calendar()


def test_calendar_lists_what_was_placed_and_reads_back(benign_run: BenignRun, tmp_path):
    by, entries = benign_run.by, benign_run.sim.calendar()
    hol, camp, gap = by["holiday"], by["campaign"], by["gap"]
    assert {e.kind for e in entries} == {"holiday", "campaign", "maintenance"}
    assert [(e.start, e.end) for e in entries if e.kind == "maintenance"] == [
        (gap.start, gap.end)]
    assert all(e.start == hol.start for e in entries if e.kind == "holiday")
    assert all((e.start, e.end, e.channel) == (camp.start, camp.end, camp.channel)
               for e in entries if e.kind == "campaign")
    path = tmp_path / "calendar.toml"
    write_calendar(path, entries)
    cal = load_calendar(path)
    assert list(cal) == entries
    noon = hol.start + 12 * HOUR
    assert cal.effect(noon, "signups") == cal.effect(noon, "scans") == 0.6
    assert cal.effect(noon, "conversion_rate") == pytest.approx(1 / 0.6, rel=1e-3)
    assert cal.effect(noon, "payments") == 1.0 and cal.active(noon, "payments") == []
    assert [e.kind for e in cal.active(noon, "daily_active_ratio")] == ["holiday"]
    assert cal.effect(camp.start + HOUR, "signups", "all", camp.channel) == 2.0
    assert [e.kind for e in cal.active(gap.start, "scans", until=gap.end)] == ["maintenance"]
    assert cal.effect(gap.start, "signups", until=gap.end) == 0.0      # nothing arrives
    hour = gap.start // HOUR * HOUR
    assert cal.effect(hour, "scans", until=hour + HOUR) == pytest.approx(
        1 - (min(gap.end, hour + HOUR) - gap.start) / HOUR)
    assert cal.active(gap.start, "mrr", until=gap.end) == []
    assert cal.active(LO - DAY, "signups", until=LO) == []
    # the calendar's factor is the one measured on the holiday (scans vs the clean run)
    measured = kinds_between(benign_run.events, hol.start, hol.end)["scan"] / kinds_between(
        benign_run.reference, hol.start, hol.end)["scan"]
    assert measured == pytest.approx(cal.effect(noon, "scans"), abs=0.05)
