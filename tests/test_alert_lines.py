"""One-line alert texts (the console sink, `pulse demo`'s terminal): a value that differs from
its expected value reads differently, as in Slack (alerting.evidence.digits_for)."""

from __future__ import annotations

from alerting.sink import console_line
from pulse.kpi_view import alert_line

CHURN = {"id": "a1", "kpi": "churn_rate", "segment": "all", "channel": "all",
         "severity": "critical", "status": "open", "value": 0.02706, "expected": 0.02661,
         "lower": 0.02668, "upper": 0.02690, "score": 9.1, "since": "2026-12-02T03:00:00Z",
         "window_start": "2026-12-02T03:00:00Z"}


def test_the_demo_line_does_not_show_a_critical_value_equal_to_its_expected_one() -> None:
    line = alert_line(CHURN)
    assert "Churn rate: 2.71% (expected 2.66%)" in line, line


def test_the_console_line_shows_the_same_numbers() -> None:
    line = console_line(CHURN)
    assert "2.71% (expected 2.66%, +0.05 pp)" in line, line


def test_the_kinds_own_decimals_when_they_already_differ() -> None:
    alert = dict(CHURN, value=0.041, lower=0.025, upper=0.028)
    assert "4.1% (expected 2.7%)" in alert_line(alert)


PAYMENTS = {"id": "a2", "kpi": "payment_failure_rate", "segment": "all", "channel": "all",
            "severity": "critical", "value": 1.0, "expected": 0.068, "lower": 0.0,
            "upper": 0.3, "score": 12.0, "window_start": "2026-12-03T09:00:00Z",
            "window_start_ts": 1796288400.0, "window_end_ts": 1796292000.0}


def test_an_update_says_what_changed_in_words_as_slack_does() -> None:
    """Recorded from `pulse demo`: the lead moved from a segment to the overall series and a
    channel joined. The line said 'now led by Payment failure rate; joined: Payment failure
    rate, Payment failure rate (all/paid_search)' (the reason's ids)."""
    alert = dict(PAYMENTS, status="open", changes=["lead", "joined"],
                 reason="now led by payment_failure_rate; joined: payment_failure_rate, "
                        "payment_failure_rate (all/paid_search)",
                 joined=[{"kpi": "payment_failure_rate", "segment": "all", "channel": "all"},
                         {"kpi": "payment_failure_rate", "segment": "all",
                          "channel": "paid_search"}],
                 previous={"kpi": "payment_failure_rate", "segment": "experienced",
                           "channel": "all", "value": 1.0})
    alert["status"] = "updated"
    line = alert_line(alert)
    assert line.startswith("[CRITICAL] UPDATED  Payment failure rate: 100.0% (expected 6.8%)")
    assert "Now led by Payment failure rate overall. Now also on paid search" in line, line
    assert "all/paid_search" not in line and "joined:" not in line, line


def test_a_resolved_line_says_its_numbers_are_the_last_abnormal_ones() -> None:
    alert = dict(PAYMENTS, status="resolved", value=0.4, expected=0.066, duration_windows=6,
                 window_start="2026-12-03T13:00:00Z", changes=["resolved"])
    line = alert_line(alert)
    assert ("RESOLVED Payment failure rate: back to normal after 6 h; last abnormal 40.0% "
            "(expected 6.6%) in the window of 2026-12-03 13:00 UTC") in line, line
