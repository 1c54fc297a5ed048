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
