"""Slack both ways through Socket Mode, with the real slack_sdk clients against local fakes.

The Socket Mode client (``slack_sdk.socket_mode.aiohttp``) connects to tests/fakes/
socket_mode_server.py through ``apps.connections.open``; replies go through the real
``AsyncWebClient`` to the fake Web API, and ``pulse silence list`` runs as the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from alerting.commands import Command, Commands, alerts_reply, open_alerts, parse_command
from alerting.feedback import E_NO_SIGNING_SECRET
from alerting.service import AlertService
from alerting.slack import ACTION_ACK, ACTION_SNOOZE, make_slack_client
from alerting.socket_mode import SlackSocket, start_slack_inbound
from assistant.answer import Answer, parser_answer
from assistant.store import KpiStore
from stream.settings import Settings
from tests.fakes.anomalies import T0, anomaly, closed
from tests.fakes.socket_mode_server import FakeSlackApp

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "xoxb-1111-2222-secret-bot-token"
APP_TOKEN = "xapp-1-A0PULSE-3333-secret-app-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHURN = 0.0423   # the KPI state questions are answered from


ROWS = [{"kpi": "churn_rate", "segment": segment, "channel": "all", "value": value, "n": 1000,
         "window_start": f"2026-11-21T{h:02d}:00:00Z",
         "window_end": f"2026-11-21T{h + 1:02d}:00:00Z", "complete": True}
        for h in range(8, 12) for segment, value in (("all", CHURN + 0.001 * (h - 11)),
                                                     ("new_grads", 0.061))]


async def load_store() -> KpiStore:
    return KpiStore.from_rows(ROWS)


def expected_answer(question: str) -> Answer:
    """What the assistant answers from the same store (no model key: the parser)."""
    return parser_answer(question, KpiStore.from_rows(ROWS))


def settings(slack: FakeSlackApp, tmp_path: Path, **kw: object) -> Settings:
    values: dict = {"slack_token": TOKEN, "slack_app_token": APP_TOKEN,
                    "slack_channel": "C0ALERTS", "slack_api_url": slack.base_url,
                    "data_dir": str(tmp_path), **kw}
    return Settings(**values)


def make_service(s: Settings, manager: object = None) -> AlertService:
    client = make_slack_client(s, timeout=5, backoff_factor=0.01)
    return AlertService(s, notify=True, console=None, slack_client=client, charts=False,
                        manager=manager)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def connected(slack: FakeSlackApp, svc: AlertService, s: Settings
                    ) -> AsyncIterator[SlackSocket]:
    before = slack.connections
    inbound = await start_slack_inbound(svc, s, load_store)
    assert inbound.socket is not None
    await slack.wait_connected(before + 1)
    try:
        yield inbound.socket
    finally:
        await inbound.socket.idle()
        await inbound.close()


def replies(slack: FakeSlackApp) -> list:
    return [r for r in slack.calls("chat.postMessage") if r.params.get("thread_ts")]


async def test_a_click_is_honoured_once_across_redelivery_reconnect_and_restart(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        s = settings(slack, tmp_path)
        svc = make_service(s)
        (opened,) = await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        alert_id = opened.alert["id"]
        await svc.wait_idle()

        snooze = slack.click(ACTION_SNOOZE, alert_id)
        async with connected(slack, svc, s) as sock:
            ack = await slack.deliver(snooze)
            assert ack == {"envelope_id": snooze["envelope_id"]}   # acked at once, no payload
            await slack.deliver({**snooze, "retry_attempt": 1, "retry_reason": "timeout"})
            await sock.idle()
            await slack.refresh()   # Slack asks for a new connection, then sends it again
            await slack.deliver(snooze)
            await sock.idle()
        await svc.wait_idle()
        await svc.close()

        # a restart: a new service on the saved lifecycle and the same data directory
        svc = make_service(s, manager=svc.manager)
        async with connected(slack, svc, s) as sock:
            await slack.deliver(snooze)
            ack_click = slack.click(ACTION_ACK, alert_id)   # a new click still counts
            await slack.deliver(ack_click)
            await sock.idle()
        await svc.wait_idle()
        await svc.close()

    assert slack.connections == 3
    assert {a["envelope_id"] for a in slack.acks} == {snooze["envelope_id"],
                                                     ack_click["envelope_id"]}
    assert len(slack.acks) == 5   # every delivery acked
    feedback = [json.loads(x) for x in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [f["action"] for f in feedback] == ["snooze", "ack"]
    assert feedback[0]["kpi"] == "payments" and feedback[0]["user"] == "U0ANA"
    silences = json.loads((tmp_path / "silences.json").read_text())["silences"]
    assert len(silences) == 2   # the alert and its lead series, once
    assert [f["action"] for f in svc.manager.get(alert_id).feedback] == ["snooze", "ack"]
    assert len(slack.calls("chat.update")) == 2   # the parent updated once per click


async def test_pulse_ask_is_answered_in_a_thread(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        s = settings(slack, tmp_path)
        svc = make_service(s)
        async with connected(slack, svc, s) as sock:
            env = slack.slash_command("ask What's our churn rate? <!channel> *now*")
            ack = await slack.deliver(env)
            await slack.deliver(env)   # redelivered: answered once
            await sock.idle()
        await svc.close()

    assert ack == {"envelope_id": env["envelope_id"]}
    posts = slack.calls("chat.postMessage")
    (parent,) = [p for p in posts if not p.params.get("thread_ts")]
    (reply,) = replies(slack)
    assert parent.params["channel"] == reply.params["channel"] == "C0ALERTS"
    assert reply.params["thread_ts"] == slack.messages[reply.params["thread_ts"]]["ts"]
    assert reply.params["thread_ts"] in [m["ts"] for m in slack.messages.values()
                                         if m["text"] == parent.params["text"]]
    assert "<@U0ANA> asked" in parent.params["text"]
    assert "<!channel>" not in parent.params["text"] and "&lt;!channel&gt;" in parent.params[
        "text"]   # the user's text is escaped
    answer = expected_answer("What's our churn rate?")
    assert answer.facts[0]["value_text"] == "4.2%"   # the answer's numbers, in the thread
    assert "4.2%" in reply.params["text"] and "4.2%" in json.dumps(reply.params["blocks"])
    assert reply.params["blocks"][0]["text"]["text"].startswith("Churn rate is 4.2%")


async def test_pulse_silence_is_the_silence_pulse_silence_lists(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        s = settings(slack, tmp_path)
        svc = make_service(s)
        async with connected(slack, svc, s) as sock:
            await slack.deliver(slack.slash_command("silence kpi=churn_rate 2h"))
            unknown = await slack.deliver(slack.slash_command("silence kpi=chrun_rate 2h"))
            no_unit = await slack.deliver(slack.slash_command("silence kpi=churn_rate 2"))
            helped = await slack.deliver(slack.slash_command("help"))
            await sock.idle()
        await svc.close()

    for ack in (unknown, no_unit, helped):
        assert ack["payload"]["response_type"] == "ephemeral"   # only the user sees these
    assert "`churn_rate` (Churn rate)" in unknown["payload"]["text"]
    assert "m, h or d" in no_unit["payload"]["text"]
    assert "/pulse ask" in helped["payload"]["text"]
    (reply,) = replies(slack)
    assert "Silenced *Churn rate*" in reply.params["blocks"][0]["text"]["text"]

    out = subprocess.run([sys.executable, "-m", "pulse.cli", "silence", "list"], cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "PULSE_DATA_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=60, check=True).stdout
    (line,) = out.splitlines()
    assert "kpi=churn_rate" in line and "from Slack (/pulse) by U0ANA" in line
    (silence,) = json.loads((tmp_path / "silences.json").read_text())["silences"]
    assert silence["until_ts"] - silence["created_ts"] == 7200
    assert silence["segment"] is None and silence["created_by"] == "U0ANA"


async def test_a_mention_is_answered_in_its_thread(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        s = settings(slack, tmp_path)
        svc = make_service(s)
        async with connected(slack, svc, s) as sock:
            env = slack.mention("<@U0PULSE> what's our churn rate?")
            await slack.deliver(env)
            await slack.deliver({**env, "retry_attempt": 1, "retry_reason": "http_timeout"})
            await sock.idle()
        await svc.close()

    (reply,) = replies(slack)
    assert reply.params["thread_ts"] == env["payload"]["event"]["ts"]
    assert reply.params["blocks"] == expected_answer("what's our churn rate?").blocks
    assert "4.2%" in reply.params["text"]


async def test_a_command_where_the_bot_may_not_post_answers_through_the_response_url(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        # the bot is in no channel: chat.postMessage fails as Slack's does
        slack._chat_postMessage = lambda p: {"ok": False, "error": "not_in_channel"}
        s = settings(slack, tmp_path)
        svc = make_service(s)
        async with connected(slack, svc, s) as sock:
            await slack.deliver(slack.slash_command("ask churn?", channel="C0ELSEWHERE"))
            await sock.idle()
        await svc.close()
    (response,) = slack.responses
    assert response["response_type"] == "in_channel" and "4.2%" in response["text"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signed(body: bytes, ts: str, secret: str = SECRET) -> str:
    base = b"v0:" + ts.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


async def test_http_clicks_need_a_valid_signature_and_the_endpoint_a_secret(tmp_path, caplog):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        port = _free_port()
        s = settings(slack, tmp_path, slack_app_token="", feedback_port=port,
                     slack_signing_secret=SECRET)
        svc = make_service(s)
        (opened,) = await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        await svc.wait_idle()
        inbound = await start_slack_inbound(svc, s, load_store, feedback_host="127.0.0.1")
        payload = {"type": "block_actions", "user": {"id": "U0EVE"}, "trigger_id": "1.2.3",
                   "container": {"channel_id": "C0ALERTS", "message_ts": "1.2"},
                   "actions": [{"action_id": ACTION_SNOOZE, "value": opened.alert["id"]}]}
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        now = str(int(time.time()))
        old = str(int(time.time()) - 600)
        forged = [{}, {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=00"},
                  {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": _signed(body, now,
                                                                                  "guess")},
                  {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": _signed(body, old)},
                  {"X-Slack-Request-Timestamp": "nan", "X-Slack-Signature": _signed(body,
                                                                                    "nan")}]
        url = f"http://127.0.0.1:{port}/slack/actions"
        statuses = []
        async with aiohttp.ClientSession() as http:
            for headers in forged:
                async with http.post(url, data=body, headers={
                        "Content-Type": "application/x-www-form-urlencoded", **headers}) as r:
                    statuses.append(r.status)
            assert statuses == [401] * len(forged)
            assert not (tmp_path / "feedback.jsonl").exists()
            assert not (tmp_path / "silences.json").exists()
        await inbound.close()
        await svc.close()

        # no secret: the endpoint is not started, and the log says why
        s = settings(slack, tmp_path, slack_app_token="", feedback_port=port)
        svc = make_service(s)
        with caplog.at_level(logging.ERROR, logger="alerting.socket_mode"):
            inbound = await start_slack_inbound(svc, s, load_store, feedback_host="127.0.0.1")
        assert E_NO_SIGNING_SECRET in caplog.text
        async with aiohttp.ClientSession() as http:
            try:
                async with http.post(url, data=body) as r:
                    refused = r.status
            except aiohttp.ClientConnectionError:
                refused = None
        assert refused is None
        await inbound.close()
        await svc.close()
    assert not (tmp_path / "feedback.jsonl").exists()


async def test_a_signed_http_click_is_still_honoured(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        port = _free_port()
        s = settings(slack, tmp_path, slack_app_token="", feedback_port=port,
                     slack_signing_secret=SECRET)
        svc = make_service(s)
        (opened,) = await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        await svc.wait_idle()   # posted: only alerts Pulse posted take clicks
        inbound = await start_slack_inbound(svc, s, load_store)   # PULSE_FEEDBACK_BIND: loopback
        payload = {"type": "block_actions", "user": {"id": "U0ANA"},
                   "actions": [{"action_id": ACTION_ACK, "value": opened.alert["id"]}]}
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        now = str(int(time.time()))
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{port}/slack/actions", data=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Slack-Request-Timestamp": now,
                    "X-Slack-Signature": _signed(body, now)}) as r:
            status = r.status
        await svc.wait_idle()
        await inbound.close()
        await svc.close()
    assert status == 200
    assert [json.loads(x)["action"] for x in
            (tmp_path / "feedback.jsonl").read_text().splitlines()] == ["ack"]


async def test_alerts_and_digest_replies(tmp_path):
    s = Settings(data_dir=str(tmp_path))
    svc = AlertService(s, console=None, charts=False)
    await svc.handle(anomaly("payments", 0, 40.0, 120.0, segment="new<grads>"))
    await svc.handle(anomaly("signups", 0, 90.0, 40.0, severity="warning"))
    await svc.handle(closed(0))   # a warning opens when its window closes
    commands = Commands(tmp_path, load_store, alerts=lambda: open_alerts(svc.manager),
                        now_event_ts=lambda: T0 + 3 * 3600)
    reply = await commands.run(parse_command("alerts"), {"user_id": "U0ANA"})
    text = json.dumps(reply.blocks)
    assert "2 open alerts" in text and text.index("Critical") < text.index("Warning")
    assert "Payments" in text and "open 3 h" in text and "<grads>" not in text
    assert "Open alerts, for <@U0ANA>" == reply.headline
    assert alerts_reply([]).text == "No open alerts."

    digest = await commands.run(Command("digest"), {})
    assert "No daily digest yet" in digest.text
    await svc.close()


async def test_no_app_token_no_connection_and_bad_tokens_are_refused(tmp_path, caplog):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        svc = make_service(settings(slack, tmp_path))
        with caplog.at_level(logging.ERROR, logger="alerting.socket_mode"):
            for s in (settings(slack, tmp_path, slack_app_token=""),
                      settings(slack, tmp_path, slack_app_token=TOKEN),
                      settings(slack, tmp_path, slack_token="")):
                inbound = await start_slack_inbound(svc, s, load_store)
                assert inbound.socket is None
                await inbound.close()
        await asyncio.sleep(0)
        await svc.close()
    assert "not an app-level token" in caplog.text and "SLACK_BOT_TOKEN is not" in caplog.text
    assert APP_TOKEN not in caplog.text and TOKEN not in caplog.text
    assert slack.connections == 0


async def test_socket_mode_follows_who_reads_the_alerts(tmp_path):
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        s = settings(slack, tmp_path)
        svc = make_service(s)
        owner = {"now": False}
        inbound = await start_slack_inbound(svc, s, load_store, active=lambda: owner["now"])
        inbound.check_every_s = 0.05
        await asyncio.sleep(0.2)
        assert slack.connections == 0   # another worker has the alerts
        owner["now"] = True
        await slack.wait_connected(1)
        owner["now"] = False
        async with asyncio.timeout(5):
            while slack.open_sockets:
                await asyncio.sleep(0.05)
        await inbound.close()
        await svc.close()


async def test_socket_mode_clicks_are_gated_like_http_ones(tmp_path):
    """Socket Mode honours a click only on an alert Pulse posted, and floods of them as the
    HTTP endpoint does: 10 from one user at once (the refused one among them), the rest
    refused."""
    async with FakeSlackApp(token=TOKEN, app_token=APP_TOKEN) as slack:
        s = settings(slack, tmp_path)
        svc = make_service(s)
        (opened,) = await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        await svc.wait_idle()
        alert_id = opened.alert["id"]
        async with connected(slack, svc, s) as sock:
            await slack.deliver(slack.click(ACTION_SNOOZE, "0" * 16))   # never posted
            await sock.idle()
            assert not (tmp_path / "feedback.jsonl").exists()
            for _ in range(15):
                await slack.deliver(slack.click(ACTION_ACK, alert_id))
            await sock.idle()
        await svc.wait_idle()
        await svc.close()
    assert len(slack.acks) == 16   # every envelope acked, honoured or not
    feedback = (tmp_path / "feedback.jsonl").read_text().splitlines()
    assert len(feedback) == 9   # the burst of 10, less the click on the alert never posted
