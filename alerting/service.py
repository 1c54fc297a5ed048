"""AlertService: anomalies in; console, alerts.jsonl, Slack and explanations out.

The agent on ``anomalies`` calls :meth:`AlertService.handle` with each message (an anomaly or a
``window_closed`` marker). Each alert change is written to the console and ``alerts.jsonl`` at
once, with the template explanation; if ``notify`` is set and Slack is configured, its Slack
deliveries go to the outbox (persisted) and a background sender posts them, so ``handle`` never
waits on Slack or on the model. When an alert opens, the model is asked once for a better
explanation; if it answers in time and within the rules, the alert is updated (``chat.update``
on the parent) with ``explanation_source="llm"``.

Replays pass ``notify=False``: nothing is posted and the model is not called, so a replay
writes the same alerts.jsonl at any speed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from alerting.drawing import alert_png
from alerting.drawing import preload as preload_charts
from alerting.evidence import build_evidence, kpi_label
from alerting.explain import Explainer, make_explainer
from alerting.feedback import Feedback, FeedbackStore, make_feedback_app
from alerting.feedback_server import FeedbackServer
from alerting.lifecycle import AlertChange, AlertManager
from alerting.outbox import Delivery, DeliveryError, Outbox, observed_call
from alerting.policies import silences_path
from alerting.sender import Sender
from alerting.silence import LiveSilences
from alerting.sink import ConsoleSink, JsonlSink
from alerting.slack import SlackPoster, alert_message, change_reply, make_slack_client
from alerting.template import template_explanation
from core.settings import Settings

__all__ = ["AlertService", "SNOOZE_S"]

log = logging.getLogger(__name__)

SNOOZE_S = 3600.0
FALSE_ALARM_MUTE_S = 24 * 3600.0


class AlertService:
    """Ties the lifecycle to sinks, Slack and the model.

    Parameters
    ----------
    settings
        The one Settings object (Slack token/channel/URL, Grafana URL, Anthropic, data_dir).
    notify
        Post to Slack and ask the model. Off for replays unless asked.
    alerts_path
        The alerts.jsonl file (default ``<data_dir>/alerts.jsonl``).
    console
        Stream for one line per change (``None``: no console output).
    manager
        An :class:`AlertManager` (e.g. restored from the agent's checkpoint, which the agent
        saves: stream/agents/alerts.py); default a new one.
    routes
        Severity → Slack channel id (default: both ``settings.slack_channel``); a severity
        routed to ``""`` stays off Slack (console and alerts.jsonl only).
    slack_client, explainer
        Injected clients (default: built from settings).
    clock
        Wall clock for silences, snoozes and the model budget (event time is in the messages).
    observer
        Called with ``(service, outcome, seconds)`` after every Slack and model call, so the
        stream agent can count them in Prometheus without alerting/ importing metrics.
    """

    def __init__(self, settings: Settings, *, notify: bool = False,
                 alerts_path: str | os.PathLike[str] | None = None,
                 console: TextIO | None = sys.stdout, manager: AlertManager | None = None,
                 routes: Mapping[str, str] | None = None,
                 slack_client: AsyncWebClient | None = None, explainer: Explainer | None = None,
                 clock: Callable[[], float] = time.time, charts: bool = True,
                 observer: Callable[[str, str, float], None] | None = None):
        self.settings = settings
        self.observer = observer  # (service "slack"|"llm", outcome, seconds): the agent's metrics
        self.notify = notify
        self.clock = clock
        self.charts = charts
        data_dir = Path(settings.data_dir)
        self.manager = manager if manager is not None else AlertManager()
        self.sinks: list[ConsoleSink | JsonlSink] = [
            JsonlSink(alerts_path or data_dir / "alerts.jsonl")]
        if console is not None:
            self.sinks.insert(0, ConsoleSink(console))
        self.silences = LiveSilences(silences_path(data_dir))  # bounded, written off the loop
        self.feedback_store = FeedbackStore(data_dir / "feedback.jsonl")
        self.routes = dict(routes) if routes is not None else {
            "critical": settings.slack_channel, "warning": settings.slack_channel}
        self.slack_enabled = bool(notify and settings.slack_token and settings.slack_channel)
        self.poster: SlackPoster | None = None
        if self.slack_enabled:
            self.poster = SlackPoster(slack_client or make_slack_client(settings))
        self.outbox = Outbox(data_dir / "slack_outbox.jsonl")
        self.sender = Sender(self.outbox, self._send)
        self.explainer = explainer if explainer is not None else make_explainer(settings)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: FeedbackServer | None = None
        self.published_before: set[str] = set()
        """Changes (``id:version``) a worker published before it crashed, after its last
        checkpoint: handled again, they update the lifecycle and Slack (keyed: not posted
        twice) but are neither written nor returned again (stream/agents/alerts.py)."""
        if self.slack_enabled and charts:  # import matplotlib now, not before the first chart
            preload_charts()

    # -- what the agent calls -------------------------------------------------------------

    async def handle(self, message: dict) -> list[AlertChange]:
        """Take one message from the ``anomalies`` topic; returns the alert changes it caused
        (but those in :attr:`published_before`)."""
        if message.get("kind") == "window_closed":
            changes = self.manager.on_window_closed(float(message["window_end_ts"]))
        else:
            # an early anomaly is news at the event time of its running counts
            now = message.get("as_of_ts") or message["window_end_ts"]
            changes = self.manager.on_anomaly(message, float(now))
        new: list[AlertChange] = []
        for change in changes:
            key = f"{change.alert['id']}:{change.alert['version']}"
            again = key in self.published_before
            self.published_before.discard(key)
            self._apply(change, write=not again)
            if not again:
                new.append(change)
        if message.get("kind") == "window_closed" and self.slack_enabled:
            self._post_unsilenced({c.alert["id"] for c in changes})
        return new

    def _post_unsilenced(self, done: set[str]) -> None:
        """Post open alerts that a silence kept off Slack once that silence is over."""
        for alert_id, alert in list(self.manager.active.items()):
            if alert.status != "open" or alert_id in done or self.outbox.has_parent(alert_id):
                continue
            change = self.manager.snapshot(alert_id, reason="silence over")
            if change is None or self.silences.match(change.alert, self.clock()) is not None:
                continue
            channel = self.routes.get(change.alert["severity"], self.settings.slack_channel)
            if channel:
                for sink in self.sinks:
                    sink.write(change.alert, silenced=False)
                self._enqueue(change, channel)

    async def flush(self) -> bool:
        """Send pending Slack deliveries now; True when none is left."""
        if self.poster is None:
            return True
        return await self.sender.flush()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait for pending explanations, then flush Slack (tests, ``pulse demo`` at exit)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        await self.flush()

    async def close(self, timeout: float = 5.0) -> None:
        """Finish explanations and deliveries (up to ``timeout``), stop tasks. (The lifecycle
        state is the caller's to save: ``self.manager``.)"""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        if self.poster is not None:
            await self.sender.close(timeout)
        if self._server is not None:
            await self._server.close()
            self._server = None
        await self.silences.flush()
        await self.explainer.close()

    # -- feedback from Slack buttons ------------------------------------------------------

    def feedback_app(self, signing_secret: str | None = None) -> web.Application:
        """The interactivity endpoint (``POST /slack/actions``) bound to this service."""
        return make_feedback_app(self.on_feedback, signing_secret=signing_secret,
                                 clock=self.clock, posted=self.posted)

    def posted(self, alert_id: str) -> bool:
        """Whether Pulse posted this alert to Slack (only those have buttons to click)."""
        return self.outbox.thread_of(alert_id) is not None

    async def serve_feedback(self, host: str = "127.0.0.1", port: int = 3001,
                             signing_secret: str | None = None) -> int:
        """Serve :meth:`feedback_app` until :meth:`close`; returns the bound port."""
        self._server = FeedbackServer(self.feedback_app(signing_secret))
        return await self._server.start(host, port)

    async def on_feedback(self, fb: Feedback) -> None:
        """Store a click and honour it: snooze silences the alert (and its lead series) for
        an hour, a false alarm mutes the alert for a day and is kept for the detectors."""
        alert = self.manager.get(fb.alert_id)
        now = self.clock()
        if alert is not None:
            lead = alert.lead
            fb.kpi, fb.segment, fb.series_channel = lead["kpi"], lead["segment"], lead["channel"]
            fb.window_start_ts = float(lead["window_start_ts"])
            fb.detector = str(lead.get("detector", ""))
        self.feedback_store.append(fb)
        if fb.action == "snooze":
            self.silences.add(now=now, duration_s=SNOOZE_S, alert_id=fb.alert_id,
                              reason="snoozed from Slack", created_by=fb.user)
            if alert is not None:
                self.silences.add(now=now, duration_s=SNOOZE_S, kpi=fb.kpi, segment=fb.segment,
                                  channel=fb.series_channel, reason="snoozed from Slack",
                                  created_by=fb.user)
        elif fb.action == "false_alarm":
            self.silences.add(now=now, duration_s=FALSE_ALARM_MUTE_S, alert_id=fb.alert_id,
                              reason="marked false alarm", created_by=fb.user)
        self.manager.add_feedback(fb.alert_id, fb.action, fb.user)
        change = self.manager.snapshot(fb.alert_id, reason=f"{fb.action} by {fb.user}")
        if change is not None:
            silenced = self.silences.match(change.alert, now) is not None
            for sink in self.sinks:
                sink.write(change.alert, silenced=silenced)
            self._enqueue_parent_update(change.alert)

    # -- internals ------------------------------------------------------------------------

    def _apply(self, change: AlertChange, write: bool = True) -> None:
        alert = change.alert
        evidence = build_evidence(alert)
        if alert["explanation_source"] != "llm":
            text = template_explanation(evidence)
            self.manager.set_explanation(alert["id"], text, "template")
            alert["explanation"], alert["explanation_source"] = text, "template"
        silence = self.silences.match(alert, self.clock())
        for sink in self.sinks if write else ():
            sink.write(alert, silenced=silence is not None)
        if self.slack_enabled:
            channel = self.routes.get(alert["severity"], self.settings.slack_channel)
            if channel and (silence is None or change.status == "resolved"):
                self._enqueue(change, channel)
        if change.status == "open" and self.notify and self.explainer.enabled:
            self._spawn(self._explain(alert["id"], evidence))

    def _enqueue(self, change: AlertChange, channel: str) -> None:
        alert = change.alert
        key = f"{alert['id']}:{alert['version']}"
        if not self.outbox.has_parent(alert["id"]):
            if change.status == "resolved":
                return  # never posted (silenced or off Slack): nothing to resolve in Slack
            text, blocks = alert_message(alert, self.settings.grafana_url)
            self.outbox.add(Delivery(f"{key}:post", "post", alert["id"], channel, text, blocks))
            if self.charts and alert.get("history"):
                self.outbox.add(Delivery(f"{key}:chart", "chart", alert["id"], channel,
                                         chart={k: alert.get(k) for k in (
                                             "kpi", "segment", "channel", "history", "value",
                                             "expected", "lower", "upper", "window_start_ts",
                                             "since_ts", "window_end_ts", "severity", "early",
                                             "as_of_ts", "elapsed_minutes")}))
        else:
            self._enqueue_parent_update(alert)
            self.outbox.add(Delivery(f"{key}:reply", "reply", alert["id"], channel,
                                     change_reply(alert)))
        self._kick()

    def _enqueue_parent_update(self, alert: dict) -> None:
        if not self.slack_enabled or not self.outbox.has_parent(alert["id"]):
            return
        text, blocks = alert_message(alert, self.settings.grafana_url)
        n = len(alert.get("feedback") or [])
        key = f"{alert['id']}:{alert['version']}:{alert['explanation_source']}:{n}:update"
        self.outbox.add(Delivery(key, "update", alert["id"], "", text, blocks))
        self._kick()

    async def _send(self, d: Delivery, thread_ts: str | None) -> str | None:
        return await observed_call(self.observer, "slack", self._deliver(d, thread_ts))

    def _observe(self, service: str, outcome: str, seconds: float) -> None:
        if self.observer is not None:
            self.observer(service, outcome, seconds)

    async def _deliver(self, d: Delivery, thread_ts: str | None) -> str | None:
        assert self.poster is not None
        if d.kind == "post":
            return await self.poster.post(d.channel, d.text, d.blocks, key=d.key,
                                          earlier_attempt=d.earlier_attempt)
        thread = self.outbox.thread_of(d.alert_id)
        assert thread is not None and thread_ts is not None
        channel = thread[0]
        if d.kind == "reply":
            return await self.poster.post(channel, d.text, thread_ts=thread_ts, key=d.key,
                                          earlier_attempt=d.earlier_attempt)
        if d.kind == "update":
            await self.poster.update(channel, thread_ts, d.text, d.blocks or [])
            return None
        if d.kind == "chart" and d.chart is not None:
            png = await alert_png(d.chart)
            if png is None:
                raise DeliveryError("chart could not be drawn", retryable=False)
            await self.poster.upload_png(channel, thread_ts, png, f"pulse-{d.alert_id}.png",
                                         f"{kpi_label(str(d.chart['kpi']))} around the alert",
                                         earlier_attempt=d.earlier_attempt)
            return None
        raise DeliveryError(f"unknown delivery kind {d.kind!r}", retryable=False)

    def _kick(self) -> None:
        self.sender.kick()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _explain(self, alert_id: str, evidence: dict) -> None:
        started = time.monotonic()
        try:
            explanation = await self.explainer.explain(evidence)
        except Exception:  # the template is already out; never let this task crash loudly
            self._observe("llm", "error", time.monotonic() - started)
            log.exception("explanation failed for alert %s", alert_id)
            return
        self._observe("llm", "ok" if explanation.source == "llm" else "fallback",
                      time.monotonic() - started)
        if explanation.source != "llm":
            return
        self.manager.set_explanation(alert_id, explanation.text, "llm")
        change = self.manager.snapshot(alert_id, reason="explanation from Claude")
        if change is None:
            return
        silence = self.silences.match(change.alert, self.clock())
        for sink in self.sinks:
            sink.write(change.alert, silenced=silence is not None)
        self._enqueue_parent_update(change.alert)
