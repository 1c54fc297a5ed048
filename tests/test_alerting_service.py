"""AlertService without Slack or a key, alerts.jsonl, silences, replays, secrets in logs."""

import io
import json
import logging

from alerting.service import AlertService
from alerting.silence import add_silence, describe_silence, list_silences, remove_silence
from alerting.slack import make_slack_client
from stream.checkpoint import Checkpoint, Resumable
from stream.settings import Settings
from tests.fakes.anomalies import T0, anomaly, closed, payment_outage
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.slack_server import FakeSlack

TOKEN = "xoxb-1111-2222-secret-bot-token"
KEY = "sk-ant-api03-secret-test-key"
REQUIRED = ("id", "status", "kpi", "segment", "channel", "severity", "window_start",
            "window_end", "value", "expected", "score", "explanation", "explanation_source",
            "related")


def read_lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


async def test_without_slack_or_key_alerts_go_to_console_and_jsonl(tmp_path):
    out = io.StringIO()
    svc = AlertService(Settings(data_dir=str(tmp_path)), notify=True, console=out)
    for m in payment_outage(0) + [closed(w) for w in range(4)]:
        await svc.handle(m)
    await svc.close()
    lines = read_lines(tmp_path / "alerts.jsonl")
    assert [x["status"] for x in lines] == ["open", "updated", "resolved"]
    for line in lines:
        assert all(k in line for k in REQUIRED), set(REQUIRED) - set(line)
        assert line["explanation_source"] == "template" and len(line["explanation"]) > 40
    assert len({x["id"] for x in lines}) == 1
    updated = lines[1]
    assert updated["kpi"] == "payment_failure_rate" and updated["severity"] == "critical"
    assert updated["window_start"] == "2026-11-21T10:00:00Z"
    assert updated["window_end"] == "2026-11-21T11:00:00Z"
    assert (updated["value"], updated["expected"], updated["score"]) == (0.41, 0.02, 0.99)
    assert {r["kpi"] for r in updated["related"]} == {"conversion_rate", "payments", "revenue"}
    console = out.getvalue().splitlines()
    assert console[0].startswith("[CRITICAL] OPEN ") and "payment_failure_rate" in console[0]
    assert "related: conversion_rate" in console[0]  # published before it, same window
    assert any(x.startswith("[CRITICAL] UPDATED") and "joined: payments, revenue" in x
               for x in console)
    assert any("RESOLVED" in x for x in console)


async def test_replay_with_a_token_never_posts(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        s = Settings(slack_token=TOKEN, slack_channel="C1", slack_api_url=slack.base_url,
                     data_dir=str(tmp_path))
        svc = AlertService(s, notify=False, console=None)
        for m in payment_outage(0) + [closed(0)]:
            await svc.handle(m)
        await svc.wait_idle()
        await svc.close()
    assert slack.requests == []
    assert len(read_lines(tmp_path / "alerts.jsonl")) == 2


async def test_replays_give_the_same_alerts(tmp_path):
    messages = payment_outage(0) + [closed(0), anomaly("scans", 1, 10.0, 500.0)] + [
        closed(w) for w in range(1, 6)]
    outputs = []
    for run in ("a", "b"):
        svc = AlertService(Settings(data_dir=str(tmp_path / run)), console=None)
        for m in messages:
            await svc.handle(m)
        await svc.close()
        outputs.append((tmp_path / run / "alerts.jsonl").read_text())
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 5


async def test_silence_by_kpi_with_expiry(tmp_path):
    now = [T0]
    async with FakeSlack(token=TOKEN) as slack:
        s = Settings(slack_token=TOKEN, slack_channel="C1", slack_api_url=slack.base_url,
                     data_dir=str(tmp_path))
        svc = AlertService(s, notify=True, console=None, charts=False, clock=lambda: now[0],
                           slack_client=make_slack_client(s, backoff_factor=0.01))
        sil = add_silence(tmp_path, duration="2h", kpi="payments", reason="maintenance", now=T0)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        await svc.handle(anomaly("scans", 0, 10.0, 500.0, segment="pro"))
        await svc.wait_idle()
        assert [p.params["text"].split(":")[1].split()[0]
                for p in slack.calls("chat.postMessage")] == ["Scans"]
        now[0] = T0 + 2 * 3600 + 1  # expired: the next change of the alert is posted
        await svc.handle(anomaly("payments", 1, 30.0, 120.0))
        await svc.handle(closed(1))
        await svc.wait_idle()
        await svc.close()
    parents = [p.params["text"] for p in slack.calls("chat.postMessage")
               if not p.params.get("thread_ts")]
    assert len(parents) == 2 and parents[1].startswith("Critical: Payments")
    lines = read_lines(tmp_path / "alerts.jsonl")
    assert [x["silenced"] for x in lines if x["kpi"] == "payments"] == [True, False]
    assert [x.id for x in list_silences(tmp_path, now=T0)] == [sil.id]
    assert "kpi=payments" in describe_silence(sil)
    assert list_silences(tmp_path, now=T0 + 3 * 3600) == []
    assert remove_silence(tmp_path, sil.id) and not remove_silence(tmp_path, sil.id)


async def test_silence_by_segment_and_channel(tmp_path):
    svc = AlertService(Settings(data_dir=str(tmp_path)), console=None, clock=lambda: T0)
    add_silence(tmp_path, duration=3600, segment="free", now=T0)
    add_silence(tmp_path, duration=3600, channel="ads", kpi="signups", now=T0)
    await svc.handle(anomaly("payments", 0, 40.0, 120.0, segment="free"))
    await svc.handle(anomaly("signups", 0, 10.0, 100.0, channel="ads"))
    await svc.handle(anomaly("scans", 0, 10.0, 500.0, channel="ads"))
    await svc.close()
    silenced = {x["kpi"]: x["silenced"] for x in read_lines(tmp_path / "alerts.jsonl")}
    assert silenced == {"payments": True, "signups": True, "scans": False}


async def test_checkpoint_restores_open_alerts(tmp_path):
    # the alert agent saves the lifecycle through the checkpoint class every agent uses
    state = Checkpoint(tmp_path / "alerting.ckpt")
    svc = AlertService(Settings(data_dir=str(tmp_path)), console=None)
    (opened,) = await svc.handle(anomaly("payments", 0, 40.0, 120.0))
    await svc.close()
    state.save(Resumable(svc.manager, {("anomalies", 0): 1}))
    saved = state.load()
    assert saved.offsets == {("anomalies", 0): 1}
    svc2 = AlertService(Settings(data_dir=str(tmp_path)), console=None, manager=saved.state)
    assert await svc2.handle(anomaly("payments", 0, 40.0, 120.0)) == []  # redelivered: deduped
    changes = []
    for w in range(4):  # the anomaly's own window, then three clean ones
        changes += await svc2.handle(closed(w))
    await svc2.close()
    assert [(c.status, c.alert["id"]) for c in changes] == [("resolved", opened.alert["id"])]


async def test_changes_published_before_a_crash_are_neither_written_nor_returned_again(
        tmp_path):
    # a worker killed after publishing changes, before its next checkpoint: its successor
    # handles the same anomalies again from the checkpoint; the changes it finds already on
    # the alerts topic (published_before) update its lifecycle but are not written or
    # returned (the agent publishes what is returned), the ones after them are
    messages = payment_outage(0) + [closed(w) for w in range(4)]
    state = Checkpoint(tmp_path / "alerts.ckpt")
    first = AlertService(Settings(data_dir=str(tmp_path / "a")), console=None)
    state.save(Resumable(first.manager, {("anomalies", 0): 0}, {("alerts", 0): 0}))
    published = [c for m in messages[:-2] for c in await first.handle(m)]
    await first.close()
    assert [c.status for c in published] == ["open", "updated"]   # then killed
    saved = state.load()
    assert saved.outputs == {("alerts", 0): 0}
    again = AlertService(Settings(data_dir=str(tmp_path / "b")), console=None,
                         manager=saved.state)
    again.published_before = {f"{c.alert['id']}:{c.alert['version']}" for c in published}
    changes = [c for m in messages for c in await again.handle(m)]
    await again.close()
    assert [c.status for c in changes] == ["resolved"]
    assert [x["status"] for x in read_lines(tmp_path / "b" / "alerts.jsonl")] == ["resolved"]
    assert again.published_before == set()   # each is taken once
    assert again.manager.resolved and not again.manager.active


def test_a_checkpoint_saved_before_outputs_existed_loads_with_none(tmp_path):
    old = Resumable({"x": 1}, {("anomalies", 0): 3})
    del old.outputs   # what a file saved before session 15 holds
    state = Checkpoint(tmp_path / "old.ckpt")
    state.save(old)
    assert state.load().outputs == {}


async def test_no_secret_in_any_log_line_or_output(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    async with FakeSlack(token=TOKEN) as slack, FakeAnthropic(api_key=KEY) as api:
        api.fail_next(1, status=500)
        slack.fail_next(1, status=500)
        s = Settings(slack_token=TOKEN, slack_channel="C1", slack_api_url=slack.base_url,
                     anthropic_api_key=KEY, anthropic_base_url=api.base_url,
                     data_dir=str(tmp_path))
        sdk_logger = logging.getLogger("slack_sdk")
        level = sdk_logger.level
        sdk_logger.setLevel(logging.DEBUG)
        svc = AlertService(s, notify=True, console=out,
                           slack_client=make_slack_client(s, backoff_factor=0.01))
        logging.getLogger("pulse").debug("settings: %r", s)
        for m in payment_outage(0) + [closed(0)]:
            await svc.handle(m)
        await svc.wait_idle()
        await svc.close()
        sdk_logger.setLevel(level)
    assert slack.calls("chat.postMessage") and api.requests  # both were really used
    assert len(caplog.records) > 10  # debug logging of both SDKs was captured
    logged = "\n".join(r.getMessage() for r in caplog.records)
    written = "\n".join([out.getvalue()] + [p.read_text(errors="replace")
                                           for p in tmp_path.iterdir() if p.is_file()])
    for secret in (TOKEN, KEY, "1111-2222", "api03"):
        assert secret not in logged and secret not in written


async def test_every_slack_call_is_reported_to_the_observer(tmp_path):
    calls = []
    async with FakeSlack(token=TOKEN) as slack:
        s = Settings(slack_token=TOKEN, slack_channel="C1", slack_api_url=slack.base_url,
                     data_dir=str(tmp_path))
        svc = AlertService(s, notify=True, console=None, charts=False, clock=lambda: T0,
                           slack_client=make_slack_client(s, backoff_factor=0.01),
                           observer=lambda service, outcome, secs: calls.append(
                               (service, outcome, secs)))
        await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        await svc.wait_idle()
        await svc.close()
    assert len(slack.calls("chat.postMessage")) == 1
    assert [(c[0], c[1]) for c in calls] == [("slack", "ok")] and calls[0][2] >= 0
