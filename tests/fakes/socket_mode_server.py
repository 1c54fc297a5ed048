"""A local Slack that speaks Socket Mode, for the real ``slack_sdk.socket_mode`` client.

:class:`FakeSlackApp` is :class:`~tests.fakes.slack_server.FakeSlack` (the Web API) plus what a
Socket Mode app talks to:

* ``apps.connections.open`` on the same Web API URL, with the app-level token, returns a
  ``ws://`` URL (Slack's are ``wss://wss-primary.slack.com/link/?ticket=…``);
* that WebSocket greets with ``hello``; :meth:`FakeSlackApp.deliver` sends an envelope
  (``{"envelope_id", "type", "payload", "accepts_response_payload"}``) and waits for its ack
  (``{"envelope_id", "payload"?}``); the same envelope can be delivered again, as Slack
  redelivers one it thinks was not acked; :meth:`FakeSlackApp.refresh` sends ``disconnect``
  (``refresh_requested``), so the client reconnects through ``apps.connections.open``;
* response URLs for slash commands (``response_url``), recorded in ``responses``.

    async with FakeSlackApp(token="xoxb-test", app_token="xapp-test") as slack:
        ...  # point the client at slack.base_url, then
        await slack.wait_connected()
        ack = await slack.deliver(slack.slash_command("ask What's our churn rate?"))
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.slack_server import FakeSlack

TEAM, APP_ID, BOT_USER = "T0PULSE", "A0PULSE", "U0PULSE"


@dataclass
class FakeSlackApp(FakeSlack):
    app_token: str = "xapp-1-A0PULSE-1-test"
    ack_timeout: float = 5.0
    acks: list[dict] = field(default_factory=list)  # every message the app sent back
    envelopes: list[dict] = field(default_factory=list)  # every envelope sent
    responses: list[dict] = field(default_factory=list)  # bodies posted to response URLs
    connections: int = 0  # WebSockets opened so far

    def __post_init__(self) -> None:
        super().__post_init__()
        self._sockets: list[web.WebSocketResponse] = []
        self._acked: dict[str, list[asyncio.Future[dict]]] = {}
        self._ws_runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.ws_port = 0
        self._seq = itertools.count(1)

    # -- control --------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FakeSlackApp:
        await super().start(port)
        if self._ws_runner is None:
            app = web.Application()
            app.router.add_get("/link/", self._link)
            app.router.add_post("/commands/{hook}", self._response_url)
            self._ws_runner = web.AppRunner(app)
            await self._ws_runner.setup()
            site = web.TCPSite(self._ws_runner, "127.0.0.1", 0)
            await site.start()
            self.ws_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._ws_runner is not None:
            await self._ws_runner.cleanup()
            self._ws_runner = None
        await super().stop()

    async def __aenter__(self) -> FakeSlackApp:
        return await self.start()

    @property
    def open_sockets(self) -> int:
        return sum(1 for ws in self._sockets if not ws.closed)

    async def wait_connected(self, connections: int = 1, timeout: float = 10.0) -> None:
        """Until ``connections`` WebSockets were opened and one is open."""
        async with asyncio.timeout(timeout):
            while self.connections < connections or not self.open_sockets:
                self._changed.clear()
                await self._changed.wait()

    async def deliver(self, envelope: dict, timeout: float | None = None) -> dict:
        """Send ``envelope`` on the newest open WebSocket; returns the app's ack."""
        ws = next(ws for ws in reversed(self._sockets) if not ws.closed)
        waiter = asyncio.get_running_loop().create_future()
        self._acked.setdefault(envelope["envelope_id"], []).append(waiter)
        self.envelopes.append(envelope)
        await ws.send_str(json.dumps(envelope))
        async with asyncio.timeout(timeout or self.ack_timeout):
            return await waiter

    async def refresh(self) -> None:
        """Ask the app to reconnect, as Slack does every few hours; returns once it has."""
        before = self.connections
        ws = next(ws for ws in reversed(self._sockets) if not ws.closed)
        await ws.send_str(json.dumps({"type": "disconnect", "reason": "refresh_requested",
                                      "debug_info": {"host": "fake-socket-mode"}}))
        await self.wait_connected(before + 1)

    # -- envelopes (the shapes Slack sends) -----------------------------------------------

    def envelope(self, type_: str, payload: dict, accepts_response_payload: bool = False,
                 retry_attempt: int | None = None) -> dict:
        env: dict[str, Any] = {"envelope_id": f"env-{next(self._seq):04d}-fake", "type": type_,
                               "payload": payload,
                               "accepts_response_payload": accepts_response_payload}
        if retry_attempt is not None:
            env["retry_attempt"], env["retry_reason"] = retry_attempt, ""
        return env

    def click(self, action_id: str, alert_id: str, user: str = "U0ANA",
              channel: str = "C0ALERTS", message_ts: str = "1763719200.000001") -> dict:
        """An ``interactive`` envelope: one button of an alert message clicked."""
        n = next(self._seq)
        payload = {
            "type": "block_actions", "team": {"id": TEAM, "domain": "pulse"},
            "user": {"id": user, "username": "ana", "team_id": TEAM},
            "api_app_id": APP_ID, "token": "verification-token-unused",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False},
            "trigger_id": f"{n}.1111.{n:08x}", "channel": {"id": channel, "name": "alerts"},
            "message": {"type": "message", "ts": message_ts, "text": "alert"},
            "response_url": self._hook(n),
            "actions": [{"action_id": action_id, "block_id": "pulse_actions",
                         "text": {"type": "plain_text", "text": "button"}, "value": alert_id,
                         "type": "button", "action_ts": f"1763719300.{n:06d}"}],
        }
        return self.envelope("interactive", payload)

    def slash_command(self, text: str, user: str = "U0ANA", channel: str = "C0ALERTS",
                      command: str = "/pulse") -> dict:
        """A ``slash_commands`` envelope (Slack's form fields as JSON)."""
        n = next(self._seq)
        payload = {
            "token": "verification-token-unused", "team_id": TEAM, "team_domain": "pulse",
            "channel_id": channel, "channel_name": "alerts", "user_id": user,
            "user_name": "ana", "command": command, "text": text, "api_app_id": APP_ID,
            "is_enterprise_install": "false", "response_url": self._hook(n),
            "trigger_id": f"{n}.2222.{n:08x}",
        }
        return self.envelope("slash_commands", payload, accepts_response_payload=True)

    def mention(self, text: str, user: str = "U0ANA", channel: str = "C0ALERTS",
                thread_ts: str | None = None) -> dict:
        """An ``events_api`` envelope with an ``app_mention``; the user's message is added
        to the channel, so a reply can thread under it."""
        n = next(self._seq)
        ts = self._ts()
        self.messages[ts] = {"type": "message", "ts": ts, "text": text, "user": user,
                             "channel": channel, "thread_ts": thread_ts, "blocks": []}
        event = {"client_msg_id": f"msg-{n}", "type": "app_mention", "text": text,
                 "user": user, "ts": ts, "team": TEAM, "channel": channel, "event_ts": ts}
        if thread_ts:
            event["thread_ts"] = thread_ts
        payload = {"token": "verification-token-unused", "team_id": TEAM, "api_app_id": APP_ID,
                   "event": event, "type": "event_callback", "event_id": f"Ev{n:08d}",
                   "event_time": 1763719300 + n, "is_ext_shared_channel": False,
                   "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}
        return self.envelope("events_api", payload, retry_attempt=0)

    def _hook(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ws_port}/commands/{TEAM}-{n}"

    # -- handlers -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["method"] != "apps.connections.open":
            return await super()._api(request)
        rec = await self._record(request, "apps.connections.open")
        rec.status = 200
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "not_allowed_token_type"})
        if auth != f"Bearer {self.app_token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        rec.ok = True
        ticket = f"ticket-{next(self._seq)}"
        return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.ws_port}/link/"
                                                     f"?ticket={ticket}&app_id={APP_ID}"})

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connections += 1
        await ws.send_str(json.dumps({
            "type": "hello", "num_connections": self.open_sockets,
            "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID}}))
        self._changed.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    ack = json.loads(msg.data)
                    self.acks.append(ack)
                    waiters = self._acked.get(str(ack.get("envelope_id")), [])
                    while waiters:
                        w = waiters.pop(0)
                        if not w.done():
                            w.set_result(ack)
                            break
        finally:
            self._changed.set()
        return ws

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append({"hook": request.match_info["hook"], **body})
        return web.Response(text="ok")
