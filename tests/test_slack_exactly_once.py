"""Each alert exactly once in Slack, whatever Slack does (issue 19, M2 and M3).

The real slack_sdk client against tests/fakes/slack_server.py, which can store a post and answer
it after the client's timeout, answer a 200 that is an HTML page, or store a post and answer 500:
a client that cannot know whether its message is in the channel. A message is done only with its
``ts``; before posting again the outbox looks for it by the key in its metadata.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from alerting.digest_delivery import DigestPublisher
from alerting.outbox import DeliveryError, Outbox
from alerting.service import AlertService
from alerting.slack import SlackPoster, make_slack_client
from stream.settings import Settings
from tests.fakes.anomalies import anomaly, closed, payment_outage
from tests.fakes.slack_server import FakeSlack

TOKEN = "xoxb-1111-2222-secret-bot-token"
CLIENT_TIMEOUT_S = 0.5
LATE_S = 1.5   # the fake answers a stored post this late: after the client gave up


def settings(slack: FakeSlack, tmp_path, channel: str = "C0ALERTS") -> Settings:
    return Settings(slack_token=TOKEN, slack_channel=channel, slack_api_url=slack.base_url,
                    grafana_url="http://grafana.test:3000", data_dir=str(tmp_path))


def service(slack: FakeSlack, tmp_path, **kw) -> AlertService:
    s = settings(slack, tmp_path)
    client = make_slack_client(s, timeout=CLIENT_TIMEOUT_S, backoff_factor=0.01)
    svc = AlertService(s, notify=True, console=None, slack_client=client, charts=False, **kw)
    svc.sender.retry_delays = (0.05,)
    return svc


async def settle(svc: AlertService, timeout: float = 20.0) -> None:
    """Flush until nothing is pending (the sender loop also runs), at most ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await svc.flush() and loop.time() < deadline:
        await asyncio.sleep(0.05)


def by_key(slack: FakeSlack) -> dict[str, int]:
    """How many stored messages carry each delivery key (messages without one count as '?')."""
    counts: dict[str, int] = {}
    for m in slack.posted():
        key = (m.get("metadata") or {}).get("event_payload", {}).get("key", "?")
        counts[key] = counts.get(key, 0) + 1
    return counts


def two_alerts_opened_updated_resolved() -> list[dict]:
    """A payment outage (open, joined by more KPIs, resolved) and then a signups drop on one
    channel (open, resolved): two parents, three thread replies, their updates."""
    signups = [anomaly("signups", w, v, 80.0, channel="paid_search", history=False)
               for w, v in ((6, 20.0), (7, 5.0))]
    return (payment_outage(0)[:2] + [closed(0)] + payment_outage(1)
            + [closed(1), closed(2), closed(3), signups[0], closed(6), signups[1]]
            + [closed(w) for w in range(7, 11)])


async def run_alerts(slack: FakeSlack, tmp_path, within: float = 20.0) -> AlertService:
    """Handle the two alerts, letting each change go out before the next, ``within`` seconds
    in all."""
    svc = service(slack, tmp_path)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    for m in two_alerts_opened_updated_resolved():
        await svc.handle(m)
        await settle(svc, max(deadline - loop.time(), 0.0))
    await svc.close(timeout=0.1)
    return svc


async def test_late_answers_leave_one_post_per_alert_one_of_each_reply_and_updates_on_it(
        tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_late(LATE_S)   # every post is stored, and answered after the timeout
        svc = await run_alerts(slack, tmp_path)
    counts = by_key(slack)
    parents = slack.parents()
    assert len(parents) == 2, counts
    assert all(n == 1 for n in counts.values()), counts
    replies = [m for m in slack.posted() if m.get("thread_ts")]
    assert len(replies) == 3 and {m["thread_ts"] for m in replies} == {p["ts"] for p in parents}
    # the outbox learnt each parent's ts by looking: updates and resolutions land on it
    updates = slack.calls("chat.update")
    assert updates and {u.params["ts"] for u in updates} == {p["ts"] for p in parents}
    for p in parents:
        assert "Resolved" in slack.messages[p["ts"]]["text"]
    assert svc.poster is not None and svc.poster.found == 5   # every message was found
    assert not svc.outbox.pending


async def test_a_slack_outage_of_late_answers_then_recovery_posts_each_message_once(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_late(LATE_S, n=5)   # the first five posts: stored, answered late
        await run_alerts(slack, tmp_path)
    counts = by_key(slack)
    assert len(slack.parents()) == 2 and len(counts) == 5, counts
    assert all(n == 1 for n in counts.values()), counts


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
@pytest.mark.parametrize("store", [False, True], ids=["not-stored", "stored"])
async def test_a_200_that_is_not_json_is_retried_and_posted_exactly_once(tmp_path, store,
                                                                        content_type):
    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_html(2, store=store, content_type=content_type)
        svc = service(slack, tmp_path)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0, history=False))
        await settle(svc)
        await svc.close()
    (parent,) = slack.parents()
    assert "Payments" in parent["text"]
    assert len(slack.calls("chat.postMessage", ok_only=False)) == (1 if store else 3)
    log = (tmp_path / "slack_outbox.jsonl").read_text()
    assert '"op":"drop"' not in log and '"op":"done"' in log


async def test_a_post_stored_then_answered_500_is_not_posted_again(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.fail_after_storing(1, status=500)
        svc = service(slack, tmp_path)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0, history=False))
        await settle(svc)
        for w in range(4):   # resolved: a reply and an update on the one parent
            await svc.handle(closed(w))
        await settle(svc)
        await svc.close()
    (parent,) = slack.parents()
    assert [r.status for r in slack.calls("chat.postMessage", ok_only=False)] == [500, 200]
    assert [u.params["ts"] for u in slack.calls("chat.update")] == [parent["ts"]]
    assert len(slack.thread_replies(parent["ts"])) == 1


async def test_the_client_does_not_repeat_a_post_whose_outcome_is_unknown(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        poster = SlackPoster(make_slack_client(settings(slack, tmp_path), backoff_factor=0.01))
        slack.fail_next(1, status=500)
        with pytest.raises(DeliveryError) as failed:
            await poster.post("C0ALERTS", "hello", key="k1")
        assert failed.value.retryable and failed.value.ambiguous
        # the next attempt looks first, then posts: one copy
        ts = await poster.post("C0ALERTS", "hello", key="k1", earlier_attempt=0.0)
        again = await poster.post("C0ALERTS", "hello", key="k1", earlier_attempt=0.0)
    assert ts == again and len(slack.posted("k1")) == 1 and poster.found == 1
    assert [r.status for r in slack.calls("chat.postMessage", ok_only=False)] == [500, 200]
    (history, _) = slack.calls("conversations.history")
    assert history.params["include_all_metadata"] in ("1", "true")


async def test_while_slack_cannot_be_searched_nothing_is_posted_again(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_late(LATE_S, n=1)
        svc = service(slack, tmp_path)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0, history=False))
        assert not await svc.flush()   # timed out: may be posted
        slack.down = True               # the lookup fails too: not posted blindly
        assert not await svc.flush()
        assert not await svc.flush()
        slack.down = False
        await settle(svc)
        await svc.close()
    assert len(slack.parents()) == 1
    assert len(slack.calls("chat.postMessage", ok_only=False)) == 1
    searches = slack.calls("conversations.history", ok_only=False)
    assert len([r for r in searches if r.status == 503]) >= 2 and searches[-1].ok


async def test_without_the_history_scope_a_failed_post_is_posted_again_not_stuck(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.history_scope = False
        slack.fail_next(1, status=500)   # not stored: nothing to find, and no way to look
        svc = service(slack, tmp_path)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0, history=False))
        await settle(svc)
        await svc.close()
    assert len(slack.parents()) == 1 and not svc.outbox.pending
    assert [r.status for r in slack.calls("chat.postMessage", ok_only=False)] == [500, 200]
    (search,) = slack.calls("conversations.history", ok_only=False)
    assert search.status == 200 and not search.ok   # missing_scope


async def test_a_restart_after_an_unanswered_post_does_not_post_it_again(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_late(LATE_S, n=1)
        svc = service(slack, tmp_path)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0, history=False))
        await asyncio.sleep(0.1)        # the post is out (stored, not yet answered)...
        svc.sender._task.cancel()       # ...when the worker dies  # type: ignore[union-attr]
        svc.sender._task = None
        pending = Outbox(tmp_path / "slack_outbox.jsonl").pending
        assert [(d.kind, d.tries) for d in pending] == [("post", 1)]

        svc2 = service(slack, tmp_path, manager=svc.manager)   # as from its checkpoint
        await settle(svc2)
        for w in range(4):
            await svc2.handle(closed(w))
        await settle(svc2)
        await svc2.close()
        await svc.close(timeout=0.1)
    (parent,) = slack.parents()
    assert len(slack.calls("chat.postMessage", ok_only=False)) == 2   # the post, the reply
    assert [u.params["ts"] for u in slack.calls("chat.update")] == [parent["ts"]]


async def test_a_digest_answered_late_is_posted_once(tmp_path):
    from tests.test_digest import digest_of_day

    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_late(LATE_S, n=2)
        s = settings(slack, tmp_path, channel="C0DIGEST")
        pub = DigestPublisher(s, tmp_path / "digest.jsonl", charts=False, slack_client=(
            make_slack_client(s, timeout=CLIENT_TIMEOUT_S, backoff_factor=0.01)))
        pub.sender.retry_delays = (0.05,)
        doc = await pub.publish(digest_of_day(), live=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not await pub.flush() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await pub.close()
    (parent,) = slack.parents()
    assert parent["text"].startswith(f"Pulse daily digest for {doc['day']}")
    assert len(slack.calls("chat.postMessage", ok_only=False)) == 1
    assert json.loads((tmp_path / "digest.jsonl").read_text())["day"] == doc["day"]


async def test_a_chart_shared_but_answered_late_is_not_uploaded_again(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        slack.answer_late(LATE_S, n=1, method="files.completeUploadExternal")
        s = settings(slack, tmp_path)
        svc = AlertService(s, notify=True, console=None, slack_client=make_slack_client(
            s, timeout=CLIENT_TIMEOUT_S, backoff_factor=0.01))
        svc.sender.retry_delays = (0.05,)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0))   # with history: a chart
        await settle(svc)
        await svc.close()
    (parent,) = slack.parents()
    shared = [m for m in slack.posted() if m.get("files")]
    assert len(shared) == 1 and shared[0]["thread_ts"] == parent["ts"]
    alert_id = parent["metadata"]["event_payload"]["key"].split(":")[0]
    assert shared[0]["files"][0]["name"] == f"pulse-{alert_id}.png"
    assert len(slack.calls("files.completeUploadExternal", ok_only=False)) == 1
    assert slack.calls("conversations.replies")   # looked in the thread
