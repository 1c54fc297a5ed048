"""Slack through slack_sdk: a configured async client, Block Kit messages, a poster.

The client retries connection errors, 429 (it sleeps ``Retry-After``) and 500/503 with backoff,
except where a repeat could post a message twice: a ``chat.postMessage`` whose outcome is
unknown (a timeout, a dropped connection, a 5xx, a 200 that is not JSON) is not repeated by the
client but raised as an ambiguous :class:`DeliveryError`; the outbox then has
:meth:`SlackPoster.post` look for it (its key is in the message's ``metadata``) before posting
again, so each message is posted once whatever Slack does. Reading channel history needs the
``channels:history`` scope (``groups:history`` for a private channel); without it a repeat is
posted without looking (logged).

Every message carries a top-level ``text`` (notifications, screen readers) with its blocks, and
every piece of text that came from events or from the model is escaped
(``alerting.escape``). Block limits are respected: header 150 characters, section text 3,000,
field 2,000, at most 10 fields.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from alerting.change_words import what_changed
from alerting.escape import escape_mrkdwn, truncate
from alerting.evidence import (
    abnormal_for,
    change_words,
    detector_name,
    digits_for,
    direction_meaning,
    format_band,
    format_change,
    format_value,
    headline_scope,
    impact_line,
    kpi_label,
    scope_words,
    series_label,
    so_far,
)
from alerting.outbox import DeliveryError
from core.settings import Settings
from core.timefmt import human_utc, parse_utc

__all__ = [
    "ACTION_ACK",
    "ACTION_FALSE_ALARM",
    "ACTION_SNOOZE",
    "GRAFANA_DASHBOARD_PATH",
    "DeliveryError",
    "SlackPoster",
    "alert_message",
    "change_reply",
    "grafana_link",
    "headline",
    "METADATA_EVENT",
    "is_ambiguous",
    "is_retryable",
    "make_slack_client",
]

log = logging.getLogger(__name__)

ACTION_ACK = "pulse_ack"
ACTION_SNOOZE = "pulse_snooze_1h"
ACTION_FALSE_ALARM = "pulse_false_alarm"
GRAFANA_DASHBOARD_PATH = "/d/pulse-kpis/jobmetrics-pulse"
_ICON = {"critical": ":red_circle:", "warning": ":large_yellow_circle:"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
METADATA_EVENT = "pulse_delivery"
"""``metadata.event_type`` of Pulse's messages; ``event_payload.key`` is the delivery's key."""
_LOOKBACK_S = 120.0   # a message is looked for from this long before the first attempt (skew)
_LOOKUP_PAGES = 20    # of 200 messages each
_CREATES_MESSAGE = ("/chat.postMessage",)


class ProportionalJitter(Jitter):
    """Adds up to ``duration`` again at random (the SDK's default adds up to a whole second,
    whatever the backoff)."""

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng if rng is not None else random.Random()

    def recalculate(self, duration: float) -> float:
        return duration * (1 + self.rng.random())


class _NoBlindRepost:
    """Mixin for a retry handler: no repeat of a ``chat.postMessage`` whose outcome is unknown
    (the outbox looks for the message first, then posts it again if it is not there)."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None,
                               error: Exception | None = None) -> bool:
        if request.url.endswith(_CREATES_MESSAGE) and _outcome_unknown(response, error):
            return False
        return bool(await super()._can_retry_async(  # type: ignore[misc]
            state=state, request=request, response=response, error=error))


class _ConnectionErrorRetryHandler(_NoBlindRepost, AsyncConnectionErrorRetryHandler):
    pass


class _ServerErrorRetryHandler(_NoBlindRepost, AsyncServerErrorRetryHandler):
    pass


def _outcome_unknown(response: HttpResponse | None, error: BaseException | None) -> bool:
    """Whether a request may have taken effect although it failed: a 5xx, or an error after
    the connection was made (not a refused connection)."""
    if response is not None and response.status_code >= 500:
        return True
    if error is None or isinstance(error, aiohttp.ClientConnectorError):
        return False
    return isinstance(error, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                              aiohttp.ServerConnectionError, asyncio.TimeoutError))


def make_slack_client(settings: Settings, *, timeout: float = 10,
                      backoff_factor: float = 0.5) -> AsyncWebClient:
    """An ``AsyncWebClient`` for ``settings`` with retries for connection errors, 429 and 5xx.

    Connection errors and 500/503 are retried twice with exponential backoff (``backoff_factor``
    × 2^attempt, plus jitter); 429 up to three times after its ``Retry-After``. A
    ``chat.postMessage`` is repeated only when Slack cannot have stored it (a refused
    connection, a 429); other failures of it are left to the outbox (see the module).
    """
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor,
                                             jitter=ProportionalJitter())
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else (
        settings.slack_api_url + "/")
    return AsyncWebClient(token=settings.slack_token, base_url=base_url,
                          timeout=timeout,  # type: ignore[arg-type]  # aiohttp takes a float
                          retry_handlers=[
                              _ConnectionErrorRetryHandler(max_retry_count=2,
                                                           interval_calculator=backoff),
                              AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                              _ServerErrorRetryHandler(max_retry_count=2,
                                                       interval_calculator=backoff),
                          ])


def _answer(error: SlackApiError) -> tuple[int, dict | None]:
    """(HTTP status, the JSON object of the answer or ``None`` when it was not JSON)."""
    response = error.response
    status = getattr(response, "status_code", None) or getattr(response, "status", 0)
    data = getattr(response, "data", None)
    # slack_sdk makes an empty answer of a body that is not JSON (HTML from a proxy); a body
    # that claims to be JSON but is not leaves the aiohttp response itself, without data
    return int(status or 0), data if isinstance(data, dict) and "ok" in data else None


def is_ambiguous(error: BaseException) -> bool:
    """Whether a failed call may have taken effect all the same: a timeout, a connection lost
    after the request went out, a 5xx, a 200 that is not a Slack answer."""
    if isinstance(error, SlackApiError):
        status, data = _answer(error)
        return status >= 500 or (status < 400 and data is None)
    return _outcome_unknown(None, error)


def is_retryable(error: BaseException) -> bool:
    """Whether a failed Slack call may succeed later (outage, rate limit, an answer that is not
    Slack's) or never will."""
    if isinstance(error, SlackApiError):
        status, data = _answer(error)
        if data is None:
            return status < 400 or status == 429 or status >= 500
        return status == 429 or status >= 500 or data.get("error") in (
            "ratelimited", "service_unavailable", "fatal_error", "internal_error",
            "request_timeout")
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, OSError))


def grafana_link(grafana_url: str, alert: dict) -> str:
    """The Grafana dashboard for the alert's KPI and slice, around its windows."""
    query = urlencode({
        "var-kpi": alert["kpi"], "var-segment": alert["segment"],
        "var-channel": alert["channel"],
        "from": int((float(alert["since_ts"]) - 24 * 3600) * 1000),
        "to": int((float(alert["window_end_ts"]) + 6 * 3600) * 1000),
    })
    return f"{grafana_url.rstrip('/')}{GRAFANA_DASHBOARD_PATH}?{query}"


def _e(text: object, limit: int = 300) -> str:
    return escape_mrkdwn(truncate(str(text), limit))


def headline(alert: dict) -> str:
    """``Critical: Payment failure rate up 71.8 pp to 75.0% (23× normal) across all segments
    and channels``: KPI label, the change as a person says it, and the scope (unescaped)."""
    kpi = str(alert["kpi"])
    scope = headline_scope(alert)
    if alert["status"] == "resolved":
        return f"Resolved: {kpi_label(kpi)} back to normal {scope}"
    words = change_words(float(alert["value"]), float(alert["expected"]), kpi,
                         digits_for(alert))
    early = " (so far)" if so_far(alert) else ""
    return f"{str(alert['severity']).capitalize()}: {kpi_label(kpi)} {words} {scope}{early}"


def _meaning(alert: dict) -> str:
    """A sentence when the move is the good way (signups up): good news, or counted twice."""
    direction = "up" if alert.get("direction") == "up" else "down"
    if direction_meaning(str(alert["kpi"]), direction) != "better":
        return ""
    move = "rise" if direction == "up" else "fall"
    return (f" A {move} is the good direction for {kpi_label(str(alert['kpi']))}: good news if "
            "it is real, so check it is not a tracking or counting error first.")


def _related_text(related: list[dict]) -> str:
    parts = [f"{series_label(str(r['kpi']), str(r['segment']), str(r['channel']))} "
             f"{change_words(float(r['value']), float(r['expected']), str(r['kpi']))}"
             for r in related[:6]]
    return "; ".join(parts) + (f"; and {len(related) - 6} more" if len(related) > 6 else "")


def alert_message(alert: dict, grafana_url: str) -> tuple[str, list[dict]]:
    """(top-level text, blocks) of an alert's parent message.

    Impact first, then what moved where; the band, change and impact strings are those of
    ``alerting.evidence`` (the template and the model see the same ones).
    """
    kpi = str(alert["kpi"])
    label = kpi_label(kpi)
    value, expected = float(alert["value"]), float(alert["expected"])
    d = digits_for(alert)
    change, rel = format_change(value, expected, kpi, d)
    now, then = format_value(value, kpi, d), format_value(expected, kpi, d)
    resolved = alert["status"] == "resolved"
    icon = ":white_check_mark:" if resolved else _ICON.get(alert["severity"], ":warning:")
    title = headline(alert)
    early = so_far(alert)
    scope = headline_scope(alert)
    scope_in = f"{scope}," if "," in scope else scope   # "overall, mostly on organic, is"
    impact = impact_line(alert)
    duration = abnormal_for(alert)
    observed = f"{now}{early} (expected {then})"
    text = _e(f"{title}. Impact: {impact}. {label} {now}{early} vs expected {then}.", 2900)
    if resolved:
        lead = (f"{icon} *Resolved* after {duration}. *In all:* {_e(impact, 1200)}.\n"
                f"*{_e(label, 100)}* {_e(scope_in)} is back to normal; its last abnormal value "
                f"was {now} against an expected {then}.")
    else:
        lead = (f"{icon} *Impact:* {_e(impact, 1200)}.\n"
                f"*{_e(label, 100)}* {_e(scope_in)} is *{now}*{_e(early)} against an expected "
                f"{then}.{_meaning(alert)}")
    fields = [
        ("Observed" if not resolved else "Last abnormal", observed),
        ("Change", change if rel in (change, "n/a") else f"{change} ({rel})"),
        ("Normal band", format_band(alert.get("lower"), alert.get("upper"), kpi, d)),
        ("Where", scope_words(alert)),
        ("Since", f"{human_utc(float(alert['since_ts']))} · {duration}"),
        ("Confidence", f"{float(alert['score']) * 100:.0f}% · {alert['severity']} · "
                       f"{detector_name(alert.get('detector'))}"),
    ]
    related = alert.get("related") or []
    if related:
        fields.append(("Related (same windows)", _related_text(related)))
    if alert.get("calendar"):   # the calendar's words, from the operators' own file: escaped
        fields.append(("During a known event", "; ".join(str(c) for c in alert["calendar"][:3])))
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _e(title, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(lead, 3000)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": truncate(f"*{name}*\n{_e(val, 1900)}", 2000)}
            for name, val in fields[:10]]},
    ]
    if alert.get("explanation"):
        source = "Claude" if alert.get("explanation_source") == "llm" else "template"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            f"*Why it may be happening* _({source})_\n{_e(alert['explanation'], 2800)}", 3000)}})
    status_bits = []
    for fb in alert.get("feedback") or []:
        user = fb.get("user", "")
        who = f"<@{user}>" if _USER_ID.match(user) else _e(user, 40)
        word = {"ack": "Acknowledged", "snooze": "Snoozed 1 h",
                "false_alarm": "Marked false alarm"}.get(fb.get("action", ""), "Feedback")
        status_bits.append(f"{word} by {who}")
    if resolved:
        status_bits.append(f"Resolved at {human_utc(parse_utc(alert['resolved_at']))}"
                           if alert.get("resolved_at") else "Resolved")
    context = [f"<{grafana_link(grafana_url, alert)}|Open in Grafana>",
               f"alert `{_e(alert['id'], 20)}`", f"v{alert.get('version', 1)}"]
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": truncate(" · ".join(context + status_bits), 3000)}]})
    if not resolved:
        short = _e(label, 60)
        blocks.append({"type": "actions", "block_id": f"pulse_actions_{alert['id']}",
                       "elements": [
                           _button("Acknowledge", ACTION_ACK, alert["id"], "primary"),
                           _button("Snooze 1 h", ACTION_SNOOZE, alert["id"], confirm=(
                               "Snooze for an hour?",
                               f"Updates of this {short} alert stay out of Slack for an hour; "
                               "they are still written to alerts.jsonl.", "Snooze 1 h")),
                           _button("False alarm", ACTION_FALSE_ALARM, alert["id"], "danger",
                                   confirm=(
                               "Mark as a false alarm?",
                               f"This {short} alert is muted for 24 h, and the detectors "
                               "learn that this departure was normal.", "False alarm")),
                       ]})
    return text, blocks


def _button(label: str, action_id: str, value: str, style: str = "",
            confirm: tuple[str, str, str] | None = None) -> dict:
    """A Block Kit button; ``confirm``: (title, text, confirm label) of its dialog (plain text,
    within Slack's limits of 100, 300 and 30 characters)."""
    button: dict = {"type": "button", "text": {"type": "plain_text", "text": label},
                    "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    if confirm is not None:
        title, text, yes = confirm
        button["confirm"] = {
            "title": {"type": "plain_text", "text": truncate(title, 100)},
            "text": {"type": "plain_text", "text": truncate(text, 300)},
            "confirm": {"type": "plain_text", "text": truncate(yes, 30)},
            "deny": {"type": "plain_text", "text": "Cancel"}}
    return button


def _now_words(alert: dict) -> str:
    """``Payment failure rate 78.0% (expected 3.3%), was 66.7%``: the lead now, and at the
    last message."""
    kpi, segment, channel = str(alert["kpi"]), str(alert["segment"]), str(alert["channel"])
    name = kpi_label(kpi) if segment == channel == "all" else series_label(kpi, segment, channel)
    d = digits_for(alert)
    value = format_value(float(alert["value"]), kpi, d)
    now = (f"{name} {value}{so_far(alert)} "
           f"(expected {format_value(float(alert['expected']), kpi, d)})")
    prev = alert.get("previous") or {}
    if not prev or prev.get("value") is None:
        return now
    was = format_value(float(prev["value"]), str(prev.get("kpi")), d)
    before = (str(prev.get("kpi")), str(prev.get("segment", segment)),
              str(prev.get("channel", channel)))
    if before == (kpi, segment, channel):
        return now if was == value else f"{now}, was {was}"
    return f"{now}; {series_label(*before)} was {was}"


def change_reply(alert: dict) -> str:
    """The thread reply for an ``updated`` or ``resolved`` change (escaped mrkdwn): what
    changed, in words, then where the lead stands."""
    kpi = str(alert["kpi"])
    label = kpi_label(kpi)
    if alert["status"] == "resolved":
        duration = abnormal_for(alert)
        scope = headline_scope(alert)
        d = digits_for(alert)
        return _e(f"Resolved: {label} {scope}{',' if ',' in scope else ''} is back to normal "
                  f"after {duration}. In all: {impact_line(alert)}. Last abnormal value "
                  f"{format_value(float(alert['value']), kpi, d)} (expected "
                  f"{format_value(float(alert['expected']), kpi, d)}).", 2900)
    what = what_changed(alert) or ["Still abnormal"]
    return _e(f"Update: {'. '.join(what)}. {_now_words(alert)}.", 2900)


class SlackPoster:
    """The Slack calls Pulse makes; errors become :class:`DeliveryError`.

    ``found`` counts the messages that :meth:`post` found already posted instead of posting
    them again.
    """

    def __init__(self, client: AsyncWebClient):
        self.client = client
        self.found = 0

    async def post(self, channel: str, text: str, blocks: list[dict] | None = None,
                   thread_ts: str | None = None, *, key: str | None = None,
                   earlier_attempt: float | None = None) -> str:
        """Post a message (a thread reply when ``thread_ts``); returns its ``ts``.

        With ``key``, the message carries it in its ``metadata``; with ``earlier_attempt``
        too (the wall time of an attempt that may have been posted unanswered), the channel (or
        the thread) is first searched for a message with that key since then, and its ``ts``
        returned instead of posting again.
        """
        if key is not None and earlier_attempt is not None:
            try:
                ts = await self.find(channel, key, earlier_attempt, thread_ts)
            except DeliveryError as e:
                if e.retryable:
                    raise   # not known whether it is there: not posted again yet
                log.warning("could not look for an earlier post (%s): posting it again", e)
                ts = None
            if ts is not None:
                self.found += 1
                log.info("message %s was already posted (ts %s): not posted again", key, ts)
                return ts
        metadata = ({"event_type": METADATA_EVENT, "event_payload": {"key": key}}
                    if key is not None else None)
        async with _delivery("chat.postMessage"):
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False, metadata=metadata)
        ts = response.get("ts")
        if not ts:
            raise DeliveryError("chat.postMessage answered without a ts", retryable=True,
                                ambiguous=True)
        return str(ts)

    async def find(self, channel: str, key: str, since: float,
                   thread_ts: str | None = None) -> str | None:
        """The ``ts`` of the message with ``key`` in its metadata posted to ``channel`` (in the
        thread of ``thread_ts``) since ``since`` (wall time, less a margin for clock skew), or
        ``None``."""
        return await self._search(channel, since, thread_ts, lambda m: _key_of(m) == key, key)

    async def _search(self, channel: str, since: float, thread_ts: str | None,
                      match: Callable[[dict], bool], what_for: str) -> str | None:
        oldest = f"{max(since - _LOOKBACK_S, 0.0):.6f}"
        cursor: str | None = None
        for _ in range(_LOOKUP_PAGES):
            what = "conversations.replies" if thread_ts else "conversations.history"
            async with _delivery(what):
                if thread_ts:
                    page = await self.client.conversations_replies(
                        channel=channel, ts=thread_ts, oldest=oldest, limit=200, cursor=cursor,
                        include_all_metadata=True)
                else:
                    page = await self.client.conversations_history(
                        channel=channel, oldest=oldest, limit=200, cursor=cursor,
                        include_all_metadata=True)
            for message in page.get("messages") or []:
                if isinstance(message, dict) and message.get("ts") and match(message):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        log.warning("%s not found in %d pages of %s: sending it again", what_for,
                    _LOOKUP_PAGES, channel)
        return None

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        async with _delivery("chat.update"):
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    async def upload_png(self, channel: str, thread_ts: str, data: bytes, filename: str,
                         title: str, *, earlier_attempt: float | None = None) -> None:
        """Upload a PNG into the thread of ``thread_ts``; with ``earlier_attempt`` (an upload
        that may have been shared unanswered), not if the thread already has a file of that
        name since then."""
        if earlier_attempt is not None:
            try:
                found = await self._search(channel, earlier_attempt, thread_ts, lambda m: any(
                    isinstance(f, dict) and f.get("name") == filename
                    for f in m.get("files") or []), filename)
            except DeliveryError as e:
                if e.retryable:
                    raise
                log.warning("could not look for an earlier upload (%s): uploading again", e)
                found = None
            if found is not None:
                self.found += 1
                log.info("%s is already in the thread: not uploaded again", filename)
                return
        async with _delivery("files_upload_v2"):
            await self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=data,
                                              filename=filename, title=title,
                                              alt_txt=title)


def _key_of(message: Any) -> str | None:
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT:
        return None
    payload = metadata.get("event_payload")
    return str(payload.get("key")) if isinstance(payload, dict) else None


class _delivery:
    """Turns SDK and network errors into :class:`DeliveryError`, keeping the API's error code."""

    def __init__(self, what: str):
        self.what = what

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> bool:
        if exc is None:
            return False
        if isinstance(exc, SlackApiError):
            status, data = _answer(exc)
            detail = f"{status} {data.get('error') if data else 'answer that is not JSON'}"
        elif isinstance(exc, (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError,
                              OSError)):
            detail = type(exc).__name__
        else:
            return False
        raise DeliveryError(f"{self.what} failed: {detail}", is_retryable(exc),
                            is_ambiguous(exc)) from exc
