"""Issue 19 (H1, "anyone can silence alerts"): what a signed click on the HTTP endpoint may do.

The real aiohttp endpoint (``AlertService.serve_feedback``) and real HTTP requests signed the way
Slack signs them (``slack_sdk.signature.SignatureVerifier``); alerts are posted through the real
slack_sdk client to the local fake Web API, so Pulse's outbox knows which alerts it posted.

- a click on an alert id Pulse never posted makes no silence (404);
- a flood of signed clicks gets 429 past a burst, silences stay bounded, another user's click
  is still answered and the event loop keeps running while the silence file is written;
- the silence file is written off the event loop, atomically;
- every listener binds 127.0.0.1 unless a setting opens it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from slack_sdk.signature import SignatureVerifier

from alerting.feedback import ClickLimits
from alerting.policies import Silence, silences_path
from alerting.service import AlertService
from alerting.silence import (
    LiveSilences,
    SilenceLimitError,
    add_silence,
    list_silences,
    remove_silence,
    write_silences,
)
from alerting.slack import ACTION_ACK, ACTION_FALSE_ALARM, ACTION_SNOOZE, make_slack_client
from alerting.socket_mode import start_slack_inbound
from stream.settings import Settings
from tests.fakes.anomalies import anomaly
from tests.fakes.slack_server import FakeSlack

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "xoxb-1111-2222-secret-bot-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def settings(slack: FakeSlack, tmp_path: Path, **kw: object) -> Settings:
    return Settings(slack_token=TOKEN, slack_channel="C0ALERTS", slack_api_url=slack.base_url,
                    data_dir=str(tmp_path), slack_signing_secret=SECRET, **kw)  # type: ignore


def service(slack: FakeSlack, tmp_path: Path) -> AlertService:
    s = settings(slack, tmp_path)
    return AlertService(s, notify=True, console=None, charts=False,
                        slack_client=make_slack_client(s, timeout=5, backoff_factor=0.01))


async def posted_alert(svc: AlertService, kpi: str = "payments") -> str:
    (opened,) = await svc.handle(anomaly(kpi, 0, 40.0, 120.0))
    await svc.wait_idle()
    assert svc.posted(opened.alert["id"])
    return str(opened.alert["id"])


def signed(alert_id: str, action: str = ACTION_SNOOZE, user: str = "U0ANA",
           n: int = 0) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a click as Slack sends it, signed with the app's secret."""
    payload = {"type": "block_actions", "team": {"id": "T0PULSE"},
               "user": {"id": user, "username": user.lower()}, "trigger_id": f"{n}.1.{user}",
               "container": {"type": "message", "channel_id": "C0ALERTS", "message_ts": "1.2"},
               "channel": {"id": "C0ALERTS"},
               "actions": [{"action_id": action, "value": alert_id, "type": "button"}]}
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    sig = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
    assert sig is not None
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


async def click(http: aiohttp.ClientSession, url: str, alert_id: str, **kw: object
                ) -> tuple[int, str, dict[str, str]]:
    body, headers = signed(alert_id, **kw)  # type: ignore[arg-type]
    async with http.post(url, data=body, headers=headers,
                         timeout=aiohttp.ClientTimeout(total=10)) as r:
        return r.status, await r.text(), dict(r.headers)


def file_silences(tmp_path: Path) -> list[dict]:
    path = silences_path(tmp_path)
    return json.loads(path.read_text())["silences"] if path.exists() else []


class SlowDisk:
    """A silences writer that holds each write until released (``hold``) or for ``delay``
    seconds: the real :func:`write_silences` after it, in whatever thread calls it."""

    def __init__(self, delay: float = 0.0, hold: bool = False):
        self.delay = delay
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.threads: list[str] = []
        self.writes = 0

    def __call__(self, path: Path, items: Sequence[Silence]) -> tuple[int, int, int]:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        self.release.wait(timeout=20)
        time.sleep(self.delay)
        self.writes += 1
        return write_silences(path, items)


class LoopLag:
    """The worst lateness of a 10 ms sleep on the running loop while it is measured."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - t - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._probe())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


# -- only alerts Pulse posted -------------------------------------------------------------------


async def test_a_signed_click_on_an_alert_pulse_never_posted_makes_no_silence(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        svc = service(slack, tmp_path)
        real = await posted_alert(svc)
        # an alert the worker knows but never posted (Slack off for it, as during a replay)
        svc.slack_enabled = False
        (unposted,) = await svc.handle(anomaly("signups", 30, 10.0, 500.0, segment="new"))
        svc.slack_enabled = True
        unposted_id = unposted.alert["id"]
        assert svc.manager.get(unposted_id) is not None and not svc.posted(unposted_id)
        port = await svc.serve_feedback(port=0, signing_secret=SECRET)
        url = f"http://127.0.0.1:{port}/slack/actions"
        async with aiohttp.ClientSession() as http:
            forged = [await click(http, url, aid, action=action, n=i)
                      for i, (aid, action) in enumerate([
                          ("0" * 16, ACTION_FALSE_ALARM), (unposted_id, ACTION_FALSE_ALARM),
                          (unposted_id, ACTION_SNOOZE), (real + "x", ACTION_SNOOZE)])]
            await svc.silences.flush()
            assert [status for status, _, _ in forged] == [404] * 4
            assert "was posted by Pulse" in forged[0][1]
            assert svc.silences.active(time.time()) == []
            assert not (tmp_path / "feedback.jsonl").exists()
            status, _, _ = await click(http, url, real, action=ACTION_SNOOZE, n=9)
        await svc.close()
    assert status == 200
    assert {s["alert_id"] for s in file_silences(tmp_path)} == {real, None}  # alert + its series


# -- a flood ------------------------------------------------------------------------------------


async def test_a_click_flood_gets_429s_with_bounded_silences_and_a_live_loop(tmp_path):
    flood = 300
    async with FakeSlack(token=TOKEN) as slack:
        svc = service(slack, tmp_path)
        alert_id = await posted_alert(svc)
        disk = SlowDisk(delay=1.0)   # every write of silences.json takes a second
        svc.silences = LiveSilences(silences_path(tmp_path), write=disk)
        port = await svc.serve_feedback(port=0, signing_secret=SECRET)
        url = f"http://127.0.0.1:{port}/slack/actions"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
            with LoopLag() as lag:
                actions = (ACTION_SNOOZE, ACTION_FALSE_ALARM)
                eve = [asyncio.ensure_future(click(http, url, alert_id, user="U0EVE", n=i,
                                                   action=actions[i % 2]))
                       for i in range(flood)]
                await asyncio.sleep(0.05)
                # another user's click in the middle of the flood, while silences are written
                async with aiohttp.ClientSession() as other:
                    ana = await click(other, url, alert_id, user="U0ANA", action=ACTION_ACK)
                answered_during_flood = not all(f.done() for f in eve)
                statuses = [s for s, _, _ in await asyncio.gather(*eve)]
                replies = [f.result() for f in eve]
            await svc.silences.flush()
        await svc.close()
    ok, limited = statuses.count(200), statuses.count(429)
    print(f"flood of {flood} signed clicks: {ok} honoured, {limited} refused (429); "
          f"worst loop lag {lag.worst * 1000:.0f} ms with 1 s silence writes, "
          f"{disk.writes} writes")
    assert ana[0] == 200 and answered_during_flood
    assert ok + limited == flood and ok <= ClickLimits().user_burst + 1 and limited >= flood - 11
    assert all(h.get("Retry-After", "").isdigit() for s, _, h in replies if s == 429)
    # repeated snoozes and false alarms of one alert extend their silences, never pile up
    silences = file_silences(tmp_path)
    assert len(silences) <= 3, silences   # alert snooze, series snooze, alert false alarm
    feedback = (tmp_path / "feedback.jsonl").read_text().splitlines()
    assert len(feedback) == ok + 1
    # writes ran in worker threads, never on the loop: it never stalled for a write
    assert disk.writes >= 1 and "MainThread" not in disk.threads
    assert lag.worst < 0.5, f"the event loop stalled {lag.worst:.2f} s"


# -- off the loop, atomically -------------------------------------------------------------------


async def test_the_silence_file_is_written_off_the_event_loop(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        svc = service(slack, tmp_path)
        alert_id = await posted_alert(svc)
        disk = SlowDisk(hold=True)   # a disk that does not answer until released
        svc.silences = LiveSilences(silences_path(tmp_path), write=disk)
        port = await svc.serve_feedback(port=0, signing_secret=SECRET)
        url = f"http://127.0.0.1:{port}/slack/actions"
        try:
            async with aiohttp.ClientSession() as http:
                status, _, _ = await click(http, url, alert_id, action=ACTION_FALSE_ALARM)
                # the click is answered and in effect while its write is still stuck
                assert status == 200
                assert await asyncio.to_thread(disk.started.wait, 5)
                assert not disk.release.is_set() and disk.writes == 0
                alert = svc.manager.get(alert_id)
                assert alert is not None
                assert svc.silences.match({"id": alert_id, **alert.lead}, time.time())
                assert not silences_path(tmp_path).exists()   # nothing half-written either
                # the loop still serves: a second click, while the first write is stuck
                status2, _, _ = await click(http, url, alert_id, action=ACTION_ACK, user="U0B")
                assert status2 == 200
        finally:
            disk.release.set()
        await svc.close()   # flushes
    (silence,) = file_silences(tmp_path)
    assert silence["alert_id"] == alert_id and silence["reason"] == "marked false alarm"
    assert sorted(p.name for p in tmp_path.glob(".silences.*")) == []   # no temp file left


async def test_cli_and_worker_silences_merge_when_written_behind(tmp_path):
    """``pulse silence`` writing while the worker's writes are pending loses neither side."""
    path = silences_path(tmp_path)
    old = add_silence(tmp_path, duration="2h", kpi="revenue")
    disk = SlowDisk(hold=True)
    live = LiveSilences(path, write=disk)
    mine = live.add(now=time.time(), duration_s=3600, kpi="payments", reason="snooze")
    assert await asyncio.to_thread(disk.started.wait, 5)   # the worker's write is stuck
    live.add(now=time.time(), duration_s=600, kpi="scans")    # and one more is due after it
    # meanwhile the CLI (no event loop: another process) adds one, then removes the old one
    cli = asyncio.ensure_future(asyncio.to_thread(add_silence, tmp_path, duration="1h",
                                                  kpi="signups"))
    await asyncio.sleep(0.2)
    assert not cli.done()   # it waits for the worker's write (silences.json.lock)
    disk.release.set()
    theirs = await cli
    await live.flush()
    assert await asyncio.to_thread(remove_silence, tmp_path, old.id)
    live.add(now=time.time(), duration_s=60, kpi="checkouts")
    await live.flush()
    on_disk = {s.id: s.kpi for s in list_silences(tmp_path)}
    assert sorted(map(str, on_disk.values())) == ["checkouts", "payments", "scans", "signups"]
    assert {s.id for s in live.items} == set(on_disk)
    assert mine.id in on_disk and theirs.id in on_disk


# -- bounded ------------------------------------------------------------------------------------


def test_silences_are_capped_and_a_repeat_extends_instead_of_adding(tmp_path):
    path = silences_path(tmp_path)
    live = LiveSilences(path, max_silences=3)
    now = 1_800_000_000.0
    for kpi in ("a", "b", "c"):
        live.add(now=now, duration_s=600, kpi=kpi)
    again = live.add(now=now + 10, duration_s=3600, kpi="a")   # same target: extended
    assert again.until_ts == now + 10 + 3600 and len(live.active(now + 10)) == 3
    with pytest.raises(SilenceLimitError, match="3 silences are live"):
        live.add(now=now + 20, duration_s=600, kpi="d")
    assert sorted(str(s.kpi) for s in LiveSilences(path).active(now + 20)) == ["a", "b", "c"]
    # once b and c expired, room again; expired ones leave the file
    live.add(now=now + 700, duration_s=600, kpi="d")
    assert sorted(str(s["kpi"]) for s in file_silences(tmp_path)) == ["a", "d"]


async def test_a_click_beyond_the_silence_cap_is_refused_with_a_reason(tmp_path):
    async with FakeSlack(token=TOKEN) as slack:
        svc = service(slack, tmp_path)
        alert_id = await posted_alert(svc)
        svc.silences = LiveSilences(silences_path(tmp_path), max_silences=1)
        add_silence(tmp_path, duration="2h", kpi="revenue")   # the one allowed
        port = await svc.serve_feedback(port=0, signing_secret=SECRET)
        async with aiohttp.ClientSession() as http:
            status, text, _ = await click(http, f"http://127.0.0.1:{port}/slack/actions",
                                          alert_id, action=ACTION_FALSE_ALARM)
        await svc.close()
    assert status == 503 and "1 silences are live" in text and "NOT added" in text
    assert [s["kpi"] for s in file_silences(tmp_path)] == ["revenue"]


# -- loopback by default ------------------------------------------------------------------------


def _outside_address() -> str | None:
    """An address of this machine other than loopback, if it has one (no packet is sent)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))   # TEST-NET-1: only picks the outgoing interface
        addr = s.getsockname()[0]
        return None if addr.startswith("127.") or addr == "0.0.0.0" else str(addr)
    return None


def test_every_listener_defaults_to_loopback():
    s = Settings()
    assert (s.metrics_bind, s.feedback_bind, s.web_bind) == ("127.0.0.1",) * 3
    opened = Settings.from_env({"PULSE_METRICS_BIND": "0.0.0.0", "PULSE_FEEDBACK_BIND": "::"})
    assert (opened.metrics_bind, opened.feedback_bind) == ("0.0.0.0", "::")
    # the worker passes the setting to prometheus_client (whose own default is 0.0.0.0)
    tree = ast.parse((ROOT / "stream" / "worker.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "start_http_server"]
    assert calls and all(ast.unparse(k.value) == "settings.metrics_bind"
                         for c in calls for k in c.keywords if k.arg == "addr")
    assert all(any(k.arg == "addr" for k in c.keywords) for c in calls)
    server, thread = start_http_server(0, addr=s.metrics_bind, registry=CollectorRegistry())
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.status == 200
        outside = _outside_address()
        if outside is not None:
            with pytest.raises(OSError):
                socket.create_connection((outside, port), timeout=2).close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_the_feedback_endpoint_listens_on_loopback_unless_opened(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    async def load_store() -> None:
        return None

    async with FakeSlack(token=TOKEN) as slack:
        s = settings(slack, tmp_path, feedback_port=port)
        svc = AlertService(s, notify=True, console=None, charts=False)
        inbound = await start_slack_inbound(svc, s, load_store)   # no feedback_host given
        try:
            assert svc._server is not None and svc._server._runner is not None
            assert [a[:2] for a in svc._server._runner.addresses] == [("127.0.0.1", port)]
            outside = _outside_address()
            if outside is not None:
                with pytest.raises(OSError):
                    socket.create_connection((outside, port), timeout=2).close()
        finally:
            await inbound.close()
            await svc.close()


def test_compose_opens_metrics_to_its_prometheus_container():
    from tests.test_deploy import _env, load_yaml

    services = load_yaml(ROOT / "docker-compose.yml")["services"]
    for worker in ("worker-1", "worker-2"):
        env = _env(services[worker])
        assert env["PULSE_METRICS_BIND"] == "0.0.0.0", worker  # scraped from another container
        assert "ports" not in services[worker]   # exposed on the compose network only


async def test_a_request_the_headers_refuse_is_answered_before_its_body_is_read():
    """A flood of large forged bodies once took a worker to 1 GB (make faults): each was read
    before its signature was checked. A stale or unsigned request, or one over the size limit,
    is now answered from its headers alone: here no body is ever sent, and the answer comes."""
    from alerting.feedback import MAX_BODY, make_feedback_app
    from alerting.feedback_server import FeedbackServer

    async def on_feedback(fb: object) -> None:
        raise AssertionError("no click may get through")

    server = FeedbackServer(make_feedback_app(on_feedback, posted=lambda _: True,
                                              signing_secret=SECRET))
    port = await server.start("127.0.0.1", 0)
    try:
        cases = [(int(time.time()) - 3600, 200_000, b"401"),         # stale
                 (int(time.time()), MAX_BODY + 1, b"413")]            # too large to be a click
        for stamp, length, status in cases:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /slack/actions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"X-Slack-Request-Timestamp: " + str(stamp).encode() + b"\r\n"
                         b"X-Slack-Signature: v0=" + b"0" * 64 + b"\r\n"
                         b"Content-Length: " + str(length).encode() + b"\r\n\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)   # the body never comes
            assert line.split()[1] == status, line
            writer.close()
    finally:
        await server.close()


async def test_a_signed_request_sent_again_is_refused(tmp_path):
    """A signature is valid for 5 minutes: the same signed request copied and sent again in that
    time (a replay) is refused with 409 and silences nothing more."""
    async with FakeSlack(token=TOKEN) as slack:
        svc = service(slack, tmp_path)
        real = await posted_alert(svc)
        port = await svc.serve_feedback(port=0, signing_secret=SECRET)
        url = f"http://127.0.0.1:{port}/slack/actions"
        body, headers = signed(real, action=ACTION_SNOOZE)
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(3):
                async with http.post(url, data=body, headers=headers) as r:
                    statuses.append(r.status)
            status, _, _ = await click(http, url, real, action=ACTION_ACK, n=2)  # a new click
        await svc.silences.flush()
        await svc.close()
    assert statuses == [200, 409, 409]
    assert status == 200
    feedback = [json.loads(x) for x in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [f["action"] for f in feedback] == ["snooze", "ack"]
