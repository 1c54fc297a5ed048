"""The simulator: determinism, the event schema, incident effects and calibration to the seeds."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

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
    """The incidents and the events of ``days`` simulated days."""
    sim = Simulation(seed, start, scenario, incident_range=incident_range)
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
