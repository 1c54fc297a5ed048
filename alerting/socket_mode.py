"""Slack both ways over Socket Mode: button clicks, ``/pulse`` and @-mentions, no public endpoint.

With an app-level token (``SLACK_APP_TOKEN``, ``xapp-``, scope ``connections:write``) the
worker opens a WebSocket to Slack (``apps.connections.open`` hands out its URL) through
slack_sdk's aiohttp :class:`~slack_sdk.socket_mode.aiohttp.SocketModeClient`, and Slack sends
every interaction as an envelope: ``{"envelope_id", "type", "payload",
"accepts_response_payload"}``. Each one is acked at once (``{"envelope_id": ...}``, with a
response payload for slash commands that answer straight away; a click, which takes
milliseconds, is honoured just before its ack) and the slower work runs in a task after it:

* ``interactive`` (``block_actions``): the alert buttons, through the same path as the HTTP
  endpoint: :func:`alerting.feedback.parse_payload`, then ``AlertService.on_feedback``;
* ``slash_commands``: ``/pulse`` (alerting/commands.py); help and usage errors go back in the
  ack (only the user sees them), other answers are posted to the channel as a short message
  with the answer in its thread: Slack gives a slash command no ``thread_ts`` (commands cannot
  be run in threads) and the ``response_url`` cannot open a thread, so it is the fallback when
  the bot may not post in the channel (a DM, a channel it is not in);
* ``events_api`` (``app_mention``): answered in the mention's thread.

Slack redelivers an envelope that was not acked in time, and may send one again after a
reconnect: :class:`Handled` keeps the key of everything acted on (a click's ``trigger_id``, a
command's ``trigger_id``, an event's ``event_id``) in ``<data_dir>/slack_handled.jsonl``, written
before acting, so a click is honoured once, even across a restart (a crash between the write
and the act loses that click; a second click works).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerting.commands import (
    Command,
    CommandError,
    Commands,
    Reply,
    help_reply,
    open_alerts,
    parse_command,
)
from alerting.feedback import E_NO_SIGNING_SECRET, ClickGate, Feedback, parse_payload
from alerting.outbox import DeliveryError
from alerting.service import AlertService
from alerting.slack import SlackPoster, make_slack_client
from core.settings import Settings

__all__ = ["Handled", "SlackInbound", "SlackSocket", "click_key", "start_slack_inbound"]

log = logging.getLogger(__name__)

HANDLED_FILE = "slack_handled.jsonl"
CLICK_BEFORE_ACK_S = 1.0   # longest a click is waited for before its envelope is acked


class Handled:
    """Keys of the Slack interactions Pulse has acted on, in a JSON lines file.

    Keys older than ``horizon_s`` are dropped when the file is read (Slack redelivers within
    minutes; two days is ample).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "handled.jsonl"
    >>> h = Handled(path, clock=lambda: 1000.0)
    >>> h.first_time("click:T1"), h.first_time("click:T1")
    (True, False)
    >>> Handled(path, clock=lambda: 2000.0).first_time("click:T1")   # after a restart
    False
    >>> Handled(path, clock=lambda: 1000.0 + 3 * 86400).first_time("click:T1")   # expired
    True
    """

    def __init__(self, path: str | os.PathLike[str], horizon_s: float = 2 * 86400,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.horizon_s = horizon_s
        self.clock = clock
        self.keys: dict[str, float] = {}
        self._load()

    def first_time(self, key: str) -> bool:
        """Whether ``key`` is new; a new key is written at once (before the caller acts)."""
        if key in self.keys:
            return False
        now = self.clock()
        self.keys[key] = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "ts": now}) + "\n")
        if len(self.keys) % 1000 == 0:   # a long-running worker: drop expired keys now and then
            self._load()
        return True

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        oldest = self.clock() - self.horizon_s
        self.keys = {}
        for line in lines:
            try:
                row = json.loads(line)
                key, ts = str(row["key"]), float(row["ts"])
            except (ValueError, KeyError, TypeError):
                continue   # a line cut short by a crash
            if math.isfinite(ts) and ts >= oldest:
                self.keys[key] = ts
        if len(self.keys) < len(lines):   # rewrite without the expired keys
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".slack_handled.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"key": k, "ts": t}) + "\n" for k, t in self.keys.items())
            os.replace(tmp, self.path)


def click_key(payload: dict, fb: Feedback, envelope_id: str = "") -> str:
    """What identifies one click across redeliveries: the interaction's ``trigger_id`` (else
    its actions' ``action_ts``, else the envelope), the action and the alert."""
    ident = str(payload.get("trigger_id") or "") or ",".join(
        str(a.get("action_ts")) for a in payload.get("actions") or [] if a.get("action_ts")
    ) or f"envelope:{envelope_id}"
    return f"click:{ident}:{fb.action}:{fb.alert_id}"


class SlackSocket:
    """One Socket Mode connection and what Pulse does with the envelopes it brings.

    Parameters
    ----------
    app_token
        The app-level ``xapp-`` token (``apps.connections.open``); never logged.
    poster
        Posts replies with the bot token (:class:`alerting.slack.SlackPoster`).
    on_feedback
        Honours a click: ``AlertService.on_feedback``.
    commands
        Runs ``/pulse`` and answers mentions (alerting/commands.py).
    handled
        Keys of what was acted on (:class:`Handled`).
    gate
        What refuses floods and clicks on alerts Pulse did not post, as on the HTTP endpoint
        (:class:`alerting.feedback.ClickGate`; None: nothing is refused).
    api_url
        Base URL of the Slack Web API (``PULSE_SLACK_API_URL``).
    ping_interval
        Seconds between the client's pings (it reconnects when pongs stop).
    """

    def __init__(self, app_token: str, poster: SlackPoster, *,
                 on_feedback: Callable[[Feedback], Awaitable[None]], commands: Commands,
                 handled: Handled, api_url: str = "https://slack.com/api/",
                 clock: Callable[[], float] = time.time, ping_interval: float = 5.0,
                 gate: ClickGate | None = None):
        self.app_token = app_token
        self.poster = poster
        self.on_feedback = on_feedback
        self.commands = commands
        self.handled = handled
        self.gate = gate
        self.api_url = api_url
        self.clock = clock
        self.ping_interval = ping_interval
        self.client: SocketModeClient | None = None
        self._connecting: asyncio.Future[Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect in the background (the client retries until Slack answers)."""
        self.client = SocketModeClient(
            app_token=self.app_token, ping_interval=self.ping_interval,
            web_client=AsyncWebClient(base_url=self.api_url, timeout=10))
        self.client.socket_mode_request_listeners.append(self._on_request)
        self._connecting = asyncio.ensure_future(self.client.connect())

    async def close(self, timeout: float = 5.0) -> None:
        """Disconnect, then let replies in flight finish (up to ``timeout``)."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()

    async def idle(self) -> None:
        """Wait until every envelope received so far is handled (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- envelopes ------------------------------------------------------------------------

    async def _on_request(self, client: AsyncBaseSocketModeClient,
                          req: SocketModeRequest) -> None:
        ack: dict | None = None
        work: Coroutine[Any, Any, None] | None = None
        try:
            payload = req.payload if isinstance(req.payload, dict) else {}
            if req.type == "interactive":
                work = self._clicks(payload, req.envelope_id)
            elif req.type == "slash_commands":
                ack, work = self._command(payload, req.envelope_id)
            elif req.type == "events_api":
                work = self._event(payload, req.envelope_id)
        except Exception:   # whatever happens, the envelope is acked
            log.exception("could not read a Socket Mode %s envelope", req.type)
        if work is not None:
            task = self._spawn(work)
            if req.type == "interactive":
                # a click takes milliseconds: honour it before the ack, so that a crash in
                # between means a redelivery (deduplicated), not a click acked and lost
                await asyncio.wait({task}, timeout=CLICK_BEFORE_ACK_S)
        await client.send_socket_mode_response(SocketModeResponse(req.envelope_id, ack))

    async def _clicks(self, payload: dict, envelope_id: str) -> None:
        clicks = parse_payload(payload, self.clock())
        refused = self.gate.refuse(payload, clicks) if clicks and self.gate else None
        if refused is not None:   # a flood, or an alert Pulse did not post (the gate logs it)
            log.info("Socket Mode click not honoured (%d): %s", refused[0], refused[1])
            return
        for fb in clicks:
            if not self.handled.first_time(click_key(payload, fb, envelope_id)):
                log.info("%s on alert %s was honoured already (redelivered)", fb.action,
                         fb.alert_id)
                continue
            try:
                await self.on_feedback(fb)
            except Exception:   # a click must never break the connection
                log.exception("could not apply %s feedback on alert %s", fb.action, fb.alert_id)

    def _command(self, payload: dict, envelope_id: str
                 ) -> tuple[dict | None, Coroutine[Any, Any, None] | None]:
        """(ack payload, work): help and usage errors answer in the ack."""
        try:
            cmd = parse_command(str(payload.get("text") or ""))
        except CommandError as e:
            return help_reply(str(e)).response_payload(), None
        if cmd.name == "help":
            return help_reply().response_payload(), None
        key = f"command:{payload.get('trigger_id') or 'envelope:' + envelope_id}"
        return None, self._run_command(cmd, payload, key)

    async def _run_command(self, cmd: Command, payload: dict, key: str) -> None:
        if not self.handled.first_time(key):
            return
        try:
            reply = await self.commands.run(cmd, payload)
        except (CommandError, ValueError) as e:
            reply = help_reply(str(e))
        await self._post(str(payload.get("channel_id") or ""), reply,
                         response_url=str(payload.get("response_url") or ""))

    def _event(self, payload: dict, envelope_id: str) -> Coroutine[Any, Any, None] | None:
        event = payload.get("event") or {}
        if event.get("type") != "app_mention" or event.get("bot_id") or not event.get("ts"):
            return None
        return self._mention(event, f"event:{payload.get('event_id') or envelope_id}")

    async def _mention(self, event: dict, key: str) -> None:
        if not self.handled.first_time(key):
            return
        reply = await self.commands.mention(event)
        # a mention inside a thread is answered in that thread, else under the mention
        await self._post(str(event.get("channel") or ""), reply,
                         thread_ts=str(event.get("thread_ts") or event["ts"]))

    # -- replies --------------------------------------------------------------------------

    async def _post(self, channel: str, reply: Reply, *, thread_ts: str | None = None,
                    response_url: str = "") -> None:
        """Post ``reply`` in a thread: ``thread_ts``'s, else under its headline."""
        try:
            if reply.ephemeral and response_url:
                await self._respond(response_url, reply)
                return
            if thread_ts is None:
                thread_ts = await self.poster.post(channel, reply.headline or reply.text)
            await self.poster.post(channel, reply.text, reply.blocks, thread_ts=thread_ts)
            return
        except DeliveryError as e:
            log.warning("could not post Pulse's reply in %s: %s", channel, e)
        if response_url:   # e.g. not_in_channel: the command's own reply still works
            await self._respond(response_url, reply)

    async def _respond(self, url: str, reply: Reply) -> None:
        try:
            body = reply.response_payload()
            response = await AsyncWebhookClient(url, timeout=10).send(
                text=body["text"], blocks=body["blocks"], response_type=body["response_type"])
            if response.status_code != 200:
                log.warning("response_url answered %s", response.status_code)
        except Exception:
            log.exception("could not answer through the response_url")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _logged(coro: Coroutine[Any, Any, None]) -> None:
    try:
        await coro
    except Exception:   # never a silent "Task exception was never retrieved"
        log.exception("could not handle a Slack interaction")


class SlackInbound:
    """What the worker runs for messages from Slack: the HTTP interactivity endpoint (signed
    requests only) and the Socket Mode connection, open while ``active()`` (the worker that
    reads ``anomalies`` now: its service owns the alerts), checked every ``check_every_s``."""

    def __init__(self, socket: SlackSocket | None, active: Callable[[], bool] = lambda: True,
                 check_every_s: float = 2.0):
        self.socket = socket
        self.active = active
        self.check_every_s = check_every_s
        self.connected = False
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.socket is not None:
            self._watch = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.socket is not None and self.connected:
            await self.socket.close()
            self.connected = False

    async def _follow(self) -> None:
        assert self.socket is not None
        while True:
            want = self.active()
            if want and not self.connected:
                await self.socket.start()
                log.info("Slack Socket Mode: connecting (clicks, /pulse and mentions)")
            elif self.connected and not want:
                await self.socket.close()
                log.info("Slack Socket Mode: disconnected (another worker has the alerts)")
            self.connected = want
            await asyncio.sleep(self.check_every_s)


async def start_slack_inbound(service: AlertService, settings: Settings,
                              load_store: Callable[[], Awaitable[Any]], *,
                              active: Callable[[], bool] = lambda: True,
                              feedback_host: str | None = None, feedback_port: int | None = None,
                              answer: Callable[[str, Any], Any] | None = None,
                              ping_interval: float = 5.0) -> SlackInbound:
    """Start what ``settings`` asks for: the interactivity endpoint on ``PULSE_FEEDBACK_PORT``
    of ``PULSE_FEEDBACK_BIND`` (loopback by default; ``feedback_host``/``feedback_port``
    override them; never without ``SLACK_SIGNING_SECRET``) and Socket Mode with
    ``SLACK_APP_TOKEN`` (it needs the bot token too, to post). ``load_store`` returns the
    KPI state questions are answered from, ``answer`` answers them (default
    :func:`assistant.answer.answer_async` with the service's model client); ``active`` says
    whether to be connected now."""
    port = settings.feedback_port if feedback_port is None else feedback_port
    host = settings.feedback_bind if feedback_host is None else feedback_host
    if port and not settings.slack_signing_secret:
        log.error(E_NO_SIGNING_SECRET)
    elif port:
        bound = await service.serve_feedback(host, port, settings.slack_signing_secret)
        log.info("Slack interactivity endpoint on %s port %d: POST /slack/actions", host, bound)
    socket = None
    if settings.slack_app_token and not settings.slack_app_token.startswith("xapp-"):
        log.error("SLACK_APP_TOKEN is not an app-level token (xapp-…): Socket Mode is off. "
                  "Make one with the connections:write scope (docs/slack-app.md).")
    elif settings.slack_app_token and not settings.slack_token:
        log.error("SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: Pulse could not post "
                  "its answers, so Socket Mode is off.")
    elif settings.slack_app_token:
        def now_event_ts() -> float | None:
            closed = service.manager.last_closed_ts   # the lifecycle of now (it is reloaded
            return closed if math.isfinite(closed) else None   # when the alerts move)

        commands = Commands(
            settings.data_dir, load_store, alerts=lambda: open_alerts(service.manager),
            now_event_ts=now_event_ts,
            digest_path=settings.digest_file or None,
            answer=answer or _answerer(service, settings), clock=service.clock)
        socket = SlackSocket(settings.slack_app_token, SlackPoster(make_slack_client(settings)),
                             on_feedback=service.on_feedback, commands=commands,
                             handled=Handled(Path(settings.data_dir) / HANDLED_FILE),
                             api_url=settings.slack_api_url, clock=service.clock,
                             ping_interval=ping_interval, gate=ClickGate(service.posted))
    inbound = SlackInbound(socket, active)
    await inbound.start()
    return inbound


def _answerer(service: AlertService, settings: Settings) -> Callable[[str, Any], Any]:
    """``assistant.answer.answer_async`` with the service's model client (``None``: no key,
    the parser answers)."""
    def answer(question: str, store: Any) -> Any:
        from assistant.answer import answer_async

        return answer_async(question, store, client=service.explainer.client,
                            model=settings.llm_model)
    return answer
