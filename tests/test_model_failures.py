"""Whatever the model does, the template stands in and nothing is lost (issue 19, M1).

The real anthropic client against tests/fakes/anthropic_server.py answering 200 with a body that
is not JSON, with JSON of the wrong shape, a trickle under the client's read timeout, a slow
answer past the timeout, or a 500: the digest is still written (and posted) with the template
summary, and an alert keeps its template explanation.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from alerting.digest_delivery import DigestPublisher
from alerting.digest_words import template_summary
from alerting.evidence import build_evidence
from alerting.explain import make_explainer
from alerting.service import AlertService
from alerting.slack import make_slack_client
from alerting.template import template_explanation
from stream.settings import Settings
from tests.fakes.anomalies import anomaly
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.slack_server import FakeSlack
from tests.test_alerting_explain import GOOD, outage_alert
from tests.test_digest import digest_of_day

KEY = "sk-ant-api03-secret-test-key"
TOKEN = "xoxb-1111-2222-secret-bot-token"
TIMEOUT_S = 0.3

_MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": GOOD}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}

# name -> (the turns the fake answers with, or a delay in seconds past the client's timeout)
FAILURES: dict[str, Any] = {
    "invalid-json": [{"raw": '{"id": "msg_1", "type": "message", "content": ['}] * 2,
    "html": [{"raw": "<html><body>502 Bad Gateway</body></html>"}] * 2,
    "content-not-a-list": [{"body": {**_MESSAGE, "content": GOOD}}] * 2,
    "no-content": [{"body": {"type": "message", "id": "msg_1"}}] * 2,
    "text-not-a-string": [{"body": {**_MESSAGE, "content": [{"type": "text", "text": 5}]}}] * 2,
    "a-list": [{"body": [GOOD]}] * 2,
    "null": [{"body": None}] * 2,
    "trickle": [{"raw": json.dumps(_MESSAGE), "every": 0.15}] * 2,
    "timeout": 3.0,
    "500": [{"status": 500}] * 2,
}


def fake_for(failure: str) -> FakeAnthropic:
    how = FAILURES[failure]
    if isinstance(how, float):
        return FakeAnthropic(reply=GOOD, api_key=KEY, delay=how)
    return FakeAnthropic(reply=GOOD, api_key=KEY, turns=list(how))


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_any_model_failure_gives_the_template_explanation(failure):
    async with fake_for(failure) as api:
        ex = make_explainer(Settings(anthropic_api_key=KEY, anthropic_base_url=api.base_url),
                            timeout=TIMEOUT_S)
        loop = asyncio.get_running_loop()
        started = loop.time()
        evidence = build_evidence(outage_alert())
        result = await ex.explain(evidence)
        elapsed = loop.time() - started
        await ex.close()
    assert (result.text, result.source) == (template_explanation(evidence), "template")
    assert api.requests and elapsed < 2 * TIMEOUT_S + 2.5   # a trickle ends at the deadline


@pytest.mark.parametrize("failure", ["invalid-json", "content-not-a-list", "timeout", "500"])
async def test_any_model_failure_still_writes_and_posts_the_digest(tmp_path, failure):
    outcomes: list[tuple[str, str]] = []
    async with FakeSlack(token=TOKEN) as slack, fake_for(failure) as api:
        s = Settings(slack_token=TOKEN, slack_channel="C0DIGEST", slack_api_url=slack.base_url,
                     anthropic_api_key=KEY, anthropic_base_url=api.base_url,
                     data_dir=str(tmp_path))
        pub = DigestPublisher(s, tmp_path / "digest.jsonl", charts=False,
                              slack_client=make_slack_client(s, timeout=5, backoff_factor=0.01),
                              explainer=make_explainer(s, timeout=TIMEOUT_S),
                              observer=lambda service, outcome, _s: outcomes.append(
                                  (service, outcome)))
        doc = digest_of_day()
        await pub.publish(doc, live=True)
        await pub.close()
    (written,) = [json.loads(x) for x in (tmp_path / "digest.jsonl").read_text().splitlines()]
    assert written["day"] == doc["day"] and api.requests
    assert (written["summary"], written["summary_source"]) == (template_summary(doc),
                                                               "template")
    (post,) = slack.calls("chat.postMessage")
    assert "(template)" in json.dumps(post.params["blocks"])
    assert ("llm", "fallback") in outcomes and ("slack", "ok") in outcomes


@pytest.mark.parametrize("failure", ["invalid-json", "no-content", "timeout", "500"])
async def test_any_model_failure_leaves_the_alert_with_its_template(tmp_path, failure):
    async with FakeSlack(token=TOKEN) as slack, fake_for(failure) as api:
        s = Settings(slack_token=TOKEN, slack_channel="C0ALERTS", slack_api_url=slack.base_url,
                     anthropic_api_key=KEY, anthropic_base_url=api.base_url,
                     data_dir=str(tmp_path))
        svc = AlertService(s, notify=True, console=None, charts=False,
                           slack_client=make_slack_client(s, backoff_factor=0.01),
                           explainer=make_explainer(s, timeout=TIMEOUT_S))
        await svc.handle(anomaly("payment_failure_rate", 0, 0.41, 0.02))
        await svc.wait_idle()
        await svc.close()
    assert api.requests
    (post,) = slack.calls("chat.postMessage")
    assert "(template)" in json.dumps(post.params["blocks"]) and not slack.calls("chat.update")
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(x["status"], x["explanation_source"]) for x in lines] == [("open", "template")]
