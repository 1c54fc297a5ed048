"""Alert lifecycle: grouping, firing rules, flapping, resolution, dedupe, checkpointing."""

import pickle

import pytest

from alerting.lifecycle import AlertManager
from alerting.policies import FiringRule
from tests.fakes.anomalies import anomaly, closed, payment_outage


def feed(manager, messages):
    changes = []
    for m in messages:
        if m.get("kind") == "window_closed":
            changes += manager.on_window_closed(m["window_end_ts"])
        else:
            changes += manager.on_anomaly(m, m["window_end_ts"])
    return changes


def test_payment_outage_is_one_alert_led_by_the_most_significant_kpi():
    m = AlertManager()
    changes = feed(m, payment_outage(0) + [closed(0)])
    opened = [c for c in changes if c.status == "open"]
    assert len(opened) == 1, [c.alert["kpi"] for c in opened]
    updated = [c for c in changes if c.status == "updated"]
    assert len(updated) == 1  # the three joiners reported once, when the window closed
    final = updated[-1].alert
    assert final["kpi"] == "payment_failure_rate"
    assert final["id"] == opened[0].alert["id"]
    assert {r["kpi"] for r in final["related"]} == {"conversion_rate", "payments", "revenue"}
    assert final["severity"] == "critical"


def test_unrelated_kpi_in_the_same_window_is_a_separate_alert():
    m = AlertManager()
    changes = feed(m, payment_outage(0) + [anomaly("scans", 0, 10.0, 500.0)])
    assert len({c.alert["id"] for c in changes if c.status == "open"}) == 2


def test_related_kpis_in_different_windows_do_not_group():
    m = AlertManager(resolve_after=1)
    changes = feed(m, [anomaly("payments", 0, 40.0, 120.0), closed(0), closed(1), closed(2),
                       anomaly("revenue", 3, 1400.0, 4100.0)])
    assert len({c.alert["id"] for c in changes if c.status == "open"}) == 2


def test_segment_and_overall_series_of_one_kpi_group():
    m = AlertManager()
    changes = feed(m, [anomaly("payment_failure_rate", 0, 0.41, 0.02),
                       anomaly("payment_failure_rate", 0, 0.6, 0.02, channel="ads"),
                       closed(0)])
    assert [c.status for c in changes] == ["open", "updated"]
    assert changes[-1].alert["channel"] == "all"  # the overall series leads a tie in severity


def test_warning_needs_two_windows_and_small_changes_are_ignored():
    m = AlertManager(firing=FiringRule(min_windows=2, min_change=0.05, big_change=0.5))
    assert m.on_anomaly(anomaly("signups", 0, 98.0, 100.0, severity="warning")) == []
    assert m.on_anomaly(anomaly("signups", 0, 80.0, 100.0, severity="warning",
                                detector="hst")) == []
    assert m.on_window_closed(closed(0)["window_end_ts"]) == []
    assert m.on_anomaly(anomaly("signups", 1, 79.0, 100.0, severity="warning")) == []
    changes = m.on_window_closed(closed(1)["window_end_ts"])  # warnings open at window close
    assert [c.status for c in changes] == ["open"]
    assert changes[0].alert["duration_windows"] == 2


def test_a_single_window_warning_never_fires():
    m = AlertManager()
    changes = feed(m, [anomaly("signups", 0, 80.0, 100.0, severity="warning"), closed(0),
                       closed(1), anomaly("signups", 2, 80.0, 100.0, severity="warning"),
                       closed(2), closed(3)])
    assert changes == []


def test_resolves_after_n_clean_windows_and_not_before():
    m = AlertManager(resolve_after=3)
    feed(m, payment_outage(0) + [closed(0)])
    assert feed(m, [closed(1), closed(2)]) == []
    changes = feed(m, [closed(3)])
    assert [c.status for c in changes] == ["resolved"]
    assert changes[0].alert["resolved_at"] == "2026-11-21T14:00:00Z"
    assert not m.active


def test_flapping_series_stays_one_alert():
    m = AlertManager(resolve_after=2, reopen_within=3)
    ids, statuses = set(), []
    # abnormal, normal, abnormal, normal, ... (the clean run is never long enough)
    for w in range(0, 8, 2):
        for c in feed(m, [anomaly("payment_failure_rate", w, 0.3, 0.02), closed(w),
                          closed(w + 1)]):
            ids.add(c.alert["id"])
            statuses.append(c.status)
    assert len(ids) == 1
    assert statuses.count("open") == 1
    assert "resolved" not in statuses


def test_reopen_after_resolution_is_the_same_alert_with_a_longer_hold_down():
    m = AlertManager(resolve_after=1, reopen_within=3)
    first = feed(m, [anomaly("payments", 0, 40.0, 120.0), closed(0), closed(1)])
    assert [c.status for c in first] == ["open", "resolved"]
    again = feed(m, [anomaly("payments", 2, 40.0, 120.0)])
    assert [c.status for c in again] == ["updated"]
    assert again[0].alert["id"] == first[0].alert["id"]
    assert "flapping" in again[0].reason
    assert feed(m, [closed(2), closed(3)]) == []  # now needs 2 clean windows
    assert [c.status for c in feed(m, [closed(4)])] == ["resolved"]


def test_duplicate_delivery_is_ignored():
    m = AlertManager()
    a = anomaly("payments", 0, 40.0, 120.0)
    assert len(m.on_anomaly(a)) == 1
    assert m.on_anomaly(dict(a)) == []
    assert [c.status for c in m.on_window_closed(closed(0)["window_end_ts"])] == []


def test_repeated_window_closed_marker_counts_once():
    m = AlertManager(resolve_after=2)
    feed(m, [anomaly("payments", 0, 40.0, 120.0), closed(0)])
    assert feed(m, [closed(1), closed(1), closed(1)]) == []
    assert [c.status for c in feed(m, [closed(2)])] == ["resolved"]


def test_critical_anomaly_opens_at_once_and_leads_a_pending_warning():
    m = AlertManager(firing=FiringRule(big_change=0.3))
    assert feed(m, [anomaly("signups", 0, 60.0, 100.0, severity="warning")]) == []
    (opened,) = feed(m, [anomaly("cac", 0, 120.0, 50.0, severity="critical")])
    assert opened.status == "open" and opened.alert["kpi"] == "cac"
    assert [r["kpi"] for r in opened.alert["related"]] == ["signups"]
    assert feed(m, [closed(0)]) == []


def test_escalation_to_critical_is_reported():
    m = AlertManager(firing=FiringRule(big_change=0.3))
    feed(m, [anomaly("signups", 0, 60.0, 100.0, severity="warning")])
    assert [c.alert["severity"] for c in feed(m, [closed(0)])] == ["warning"]
    changes = feed(m, [anomaly("cac", 1, 120.0, 50.0, severity="critical"), closed(1)])
    assert changes[-1].status == "updated"
    assert "severity now critical" in changes[-1].reason
    assert changes[-1].alert["kpi"] == "cac"


def test_an_open_alert_does_not_calm_down_while_its_incident_goes_on():
    """Critical at 89 % failing, then a window of a few payments all failing is only a warning
    by its evidence: the alert stays critical and says nothing of a lower severity."""
    m = AlertManager()
    (opened,) = feed(m, [anomaly("payment_failure_rate", 0, 0.889, 0.045), closed(0)])
    assert opened.alert["severity"] == "critical"
    later = feed(m, [anomaly("payment_failure_rate", 1, 1.0, 0.045, severity="warning"),
                     closed(1), anomaly("payment_failure_rate", 2, 1.0, 0.045,
                                        severity="warning"), closed(2)])
    assert all(c.alert["severity"] == "critical" for c in later)
    assert not any("severity now" in c.reason for c in later)
    resolved = feed(m, [closed(w) for w in range(3, 10)])
    assert [c.status for c in resolved] == ["resolved"]
    assert resolved[0].alert["severity"] == "critical"


def test_a_critical_alert_is_not_led_by_a_weaker_series_that_joined_later():
    """Critical on payment failures; later its failures are only a warning and a payment count
    scored higher (as warning) joins: the alert stays critical and stays led by the failures,
    not by "1 payment (expected 19)" inside its normal band (the demo's case)."""
    m = AlertManager()
    (opened,) = feed(m, [anomaly("payment_failure_rate", 0, 0.889, 0.045), closed(0)])
    later = feed(m, [anomaly("payment_failure_rate", 1, 0.944, 0.045, severity="warning",
                             score=0.9),
                     anomaly("payments", 1, 1.0, 19.0, severity="warning", score=0.99,
                             spread=1.1),
                     closed(1)])
    assert later and all(c.alert["severity"] == "critical" for c in later)
    assert {c.alert["kpi"] for c in later} == {"payment_failure_rate"}
    assert [r["kpi"] for r in later[-1].alert["related"]] == ["payments"]
    lead = later[-1].alert
    assert not lead["lower"] <= lead["value"] <= lead["upper"]
    # once a series is as severe as the alert again, the most significant one leads as before
    again = feed(m, [anomaly("payments", 2, 1.0, 19.0, score=0.999, spread=0.5), closed(2)])
    assert again[-1].alert["kpi"] == "payments"


def test_state_pickles_and_continues():
    m = AlertManager()
    opened = feed(m, payment_outage(0))
    m2 = pickle.loads(pickle.dumps(m))
    changes = feed(m2, [closed(0)])
    assert changes[0].alert["id"] == opened[0].alert["id"]
    assert m2.on_anomaly(payment_outage(0)[0]) == []  # dedupe state survived


def test_input_is_not_mutated_or_aliased():
    m = AlertManager()
    a = anomaly("payments", 0, 40.0, 120.0)
    before = pickle.dumps(a)
    m.on_anomaly(a)
    a["value"] = 0.0
    assert pickle.loads(before)["value"] == 40.0
    assert next(iter(m.active.values())).lead["value"] == 40.0


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        AlertManager(resolve_after=0)
    with pytest.raises(ValueError):
        FiringRule(min_windows=0)


def test_a_long_incident_is_not_an_update_per_window():
    m = AlertManager()
    msgs = []
    for w in range(13):
        msgs += [anomaly("payment_failure_rate", w, 0.8, 0.04), closed(w)]
    changes = feed(m, msgs)
    assert [c.status for c in changes] == ["open", "updated", "updated"]
    assert all("still abnormal after" in c.alert["reason"] for c in changes[1:])


def _spread(share_new_grad: float) -> list[dict]:
    """Contributors of an overall failure rate of 0.6 against 0.03: new grads are a quarter of
    the attempts; ``share_new_grad`` of the change is theirs, the rest spread on the others."""
    rest = (1 - share_new_grad) / 3
    rows = [{"segment": "new_grad", "channel": "all", "value": 0.03 + 0.57 * share_new_grad * 4,
             "expected": 0.03, "delta": 0.57 * share_new_grad * 4, "share": share_new_grad}]
    rows += [{"segment": s, "channel": "all", "value": 0.03 + 0.57 * rest * 4,
              "expected": 0.03, "delta": 0.57 * rest * 4, "share": rest}
             for s in ("experienced", "executive", "career_changer")]
    return rows


def test_an_outage_that_hits_everyone_is_led_by_the_overall_series_not_its_top_slice():
    m = AlertManager()
    overall = anomaly("payment_failure_rate", 0, 0.6, 0.03, score=0.97, contributors=_spread(0.25))
    slice_ = anomaly("payment_failure_rate", 0, 0.7, 0.03, score=0.99, segment="new_grad")
    changes = feed(m, [slice_, overall, closed(0)])
    final = changes[-1].alert
    assert (final["segment"], final["channel"]) == ("all", "all")
    assert final["scope"] == {"segment": "all", "channel": "all", "share": None, "spread": True}


def test_a_change_concentrated_on_one_slice_is_led_by_that_slice_with_its_share():
    m = AlertManager()
    overall = anomaly("payment_failure_rate", 0, 0.6, 0.03, score=0.99, contributors=_spread(0.82))
    slice_ = anomaly("payment_failure_rate", 0, 0.7, 0.03, score=0.9, segment="new_grad")
    final = feed(m, [overall, slice_, closed(0)])[-1].alert
    assert (final["segment"], final["channel"]) == ("new_grad", "all")
    assert final["scope"] == {"segment": "new_grad", "channel": "all", "share": 0.82,
                              "spread": False}


def test_an_update_carries_what_changed_as_data():
    m = AlertManager()
    opened = feed(m, [anomaly("payment_failure_rate", 0, 0.41, 0.02)])
    assert opened[0].alert["changes"] == ["opened"] and opened[0].alert["previous"] is None
    changes = feed(m, [anomaly("payment_failure_rate", 0, 0.5, 0.02, score=0.97,
                               channel="organic"),
                       anomaly("payment_failure_rate", 1, 0.78, 0.02, score=0.99), closed(1)])
    update = [c for c in changes if c.status == "updated"][-1].alert
    assert update["changes"] == ["joined"]
    assert update["joined"] == [{"kpi": "payment_failure_rate", "segment": "all",
                                 "channel": "organic"}]
    assert update["previous"]["value"] == 0.41 and update["value"] == 0.78
    resolved = feed(m, [closed(2), closed(3), closed(4)])[-1].alert
    assert resolved["changes"] == ["resolved"] and resolved["joined"] == []


def test_a_big_slice_with_its_share_of_a_spread_change_is_not_a_concentration():
    m = AlertManager()
    rows = [{"segment": "organic", "channel": "all", "value": 300.0, "expected": 700.0,
             "delta": -400.0, "share": 0.7},
            {"segment": "social", "channel": "all", "value": 129.0, "expected": 300.0,
             "delta": -171.0, "share": 0.3}]
    overall = anomaly("signups", 0, 429.0, 1000.0, contributors=rows)
    final = feed(m, [overall, closed(0)])[-1].alert
    assert final["scope"]["spread"] and final["segment"] == "all"


def test_a_concentration_on_a_handful_of_events_is_not_believed():
    m = AlertManager()
    overall = anomaly("payment_failure_rate", 0, 0.6, 0.03, score=0.99, contributors=_spread(0.82))
    overall["n"] = 5   # five payment attempts: all of one channel's by chance
    slice_ = anomaly("payment_failure_rate", 0, 0.7, 0.03, score=0.9, segment="new_grad")
    final = feed(m, [overall, slice_, closed(0)])[-1].alert
    assert (final["segment"], final["channel"]) == ("all", "all")
