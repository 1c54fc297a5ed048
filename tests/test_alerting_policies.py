"""Policies, escaping, chart, and `pulse ask`."""

import json

import pytest

from alerting.ask import answer_question, find_kpis, lookup
from alerting.chart import chart_points, render_chart
from alerting.escape import escape_mrkdwn
from alerting.explain import make_explainer
from alerting.policies import CallBudget, Silences, parse_duration
from stream.settings import Settings
from tests.fakes.anomalies import T0, anomaly
from tests.fakes.anthropic_server import FakeAnthropic

KEY = "sk-ant-api03-secret-test-key"


@pytest.mark.parametrize("text", ["<!channel>", "<!here|here>", "@channel", "@everyone hi",
                                  "<@U123>", "<https://x.test|y>", "*bold*", "`code`", "~s~"])
def test_escape_neutralises_mentions_links_and_formatting(text):
    escaped = escape_mrkdwn(text)
    assert "<" not in escaped and ">" not in escaped
    assert "@channel" not in escaped and "@everyone" not in escaped
    assert not any(c in escaped for c in "*`~")


def test_escape_keeps_kpi_ids_readable():
    assert escape_mrkdwn("payment_failure_rate") == "payment_failure_rate"


def test_silences_persist_expire_and_are_reloaded(tmp_path):
    path = tmp_path / "silences.json"
    worker, cli = Silences(path), Silences(path)
    alert = {"id": "a1", "kpi": "churn_rate", "segment": "pro", "channel": "all"}
    assert worker.match(alert, now=0.0) is None
    cli.add(now=0.0, duration_s=60, kpi="churn_rate", segment="pro")
    assert worker.match(alert, now=30.0) is not None  # the worker re-read the file
    assert worker.match({**alert, "segment": "free"}, now=30.0) is None
    assert worker.match(alert, now=60.0) is None  # expired
    cli.add(now=100.0, duration_s=60, alert_id="a2")
    assert len(json.loads(path.read_text())["silences"]) == 1  # the expired one was dropped
    with pytest.raises(ValueError):
        cli.add(now=0.0, duration_s=60)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_call_budget_slides():
    b = CallBudget(per_hour=3)
    assert [b.allow(t) for t in (0, 1, 2, 3, 3600, 3601)] == [True, True, True, False, True, True]


def test_chart_is_a_png_of_the_history_with_the_anomaly():
    a = anomaly("payment_failure_rate", 0, 0.41, 0.02)
    points = chart_points(a)
    assert points[-1]["value"] == 0.41 and len(points) == 25
    png = render_chart(points, "payment_failure_rate")
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    with pytest.raises(ValueError):
        render_chart([], "payments")


def _row(kpi, value, start_hour, segment="all", channel="all"):
    return {"kpi": kpi, "segment": segment, "channel": channel,
            "window_start": f"2026-11-21T{start_hour:02d}:00:00Z",
            "window_end": f"2026-11-21T{start_hour + 1:02d}:00:00Z", "value": value}


STATE = [
    _row("churn_rate", 0.051, 9),
    _row("churn_rate", 0.048, 10),
    _row("churn_rate", 0.02, 10, segment="pro"),
    _row("mrr", 125000.0, 10),
    _row("ltv_cac", 3.4, 10, channel="ads"),
]


async def test_ask_answers_from_the_state_without_a_key():
    answer = await answer_question("What's our churn rate?", STATE)
    assert answer == ("Churn rate (all segments, all channels): 4.8% for the window ending "
                      "2026-11-21 11:00 UTC (target at most 5% per month).")
    assert "2.0%" in await answer_question("churn for pro users?", STATE)
    assert "$125,000" in await answer_question("How is MRR doing", STATE)
    assert "3.40" in await answer_question("LTV:CAC on ads?", STATE)
    assert "did not recognise" in await answer_question("How's the weather?", STATE)
    assert "no current value" in await answer_question("What is CAC?", STATE)
    assert find_kpis("ltv and cac") == ["ltv", "cac"]
    assert (await answer_question("churn?", STATE, Settings())).startswith("Churn rate")
    assert [r["value"] for r in lookup("churn", STATE)] == [0.048]


async def test_ask_uses_the_model_only_for_words_around_the_numbers():
    replies = iter(["Churn is within its target, so retention looks healthy.",
                    "Churn is 9.9%, which is alarming."])
    async with FakeAnthropic(reply=lambda body: next(replies), api_key=KEY) as api:
        ex = make_explainer(Settings(anthropic_api_key=KEY, anthropic_base_url=api.base_url))
        worded = await answer_question("What's our churn rate?", STATE, ex)
        rejected = await answer_question("What's our churn rate?", STATE, ex)
        await ex.close()
    assert worded.startswith("Churn rate (all segments, all channels): 4.8%")
    assert worded.endswith("retention looks healthy.")
    assert "9.9" not in rejected and rejected.startswith("Churn rate")
    user = api.requests[0]["json"]["messages"][0]["content"]
    assert "<facts>" in user and "4.8%" in user


def test_t0_is_a_window_boundary():
    assert T0 % 3600 == 0
