"""Slack through slack_sdk: a configured async client, Block Kit messages, a poster.

The client retries connection errors, 429 (it sleeps ``Retry-After``) and 500/503 with backoff.
Every message carries a top-level ``text`` (notifications, screen readers) with its blocks, and
every piece of text that came from events or from the model is escaped
(``alerting.escape``). Block limits are respected: header 150 characters, section text 3,000,
field 2,000, at most 10 fields.
"""

from __future__ import annotations

import asyncio
import random
import re
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
from slack_sdk.web.async_client import AsyncWebClient

from alerting.escape import escape_mrkdwn, truncate
from alerting.evidence import format_change, format_value, kpi_label, where
from alerting.outbox import DeliveryError
from core.settings import Settings
from core.timefmt import clock_utc, human_utc

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
    "is_retryable",
    "make_slack_client",
]

ACTION_ACK = "pulse_ack"
ACTION_SNOOZE = "pulse_snooze_1h"
ACTION_FALSE_ALARM = "pulse_false_alarm"
GRAFANA_DASHBOARD_PATH = "/d/pulse-kpis/jobmetrics-pulse"
_ICON = {"critical": ":red_circle:", "warning": ":large_yellow_circle:"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class ProportionalJitter(Jitter):
    """Adds up to ``duration`` again at random (the SDK's default adds up to a whole second,
    whatever the backoff)."""

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng if rng is not None else random.Random()

    def recalculate(self, duration: float) -> float:
        return duration * (1 + self.rng.random())


def make_slack_client(settings: Settings, *, timeout: int = 10,
                      backoff_factor: float = 0.5) -> AsyncWebClient:
    """An ``AsyncWebClient`` for ``settings`` with retries for connection errors, 429 and 5xx.

    Connection errors and 500/503 are retried twice with exponential backoff (``backoff_factor``
    × 2^attempt, plus jitter); 429 up to three times after its ``Retry-After``.
    """
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor,
                                             jitter=ProportionalJitter())
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else (
        settings.slack_api_url + "/")
    return AsyncWebClient(token=settings.slack_token, base_url=base_url, timeout=timeout,
                          retry_handlers=[
                              AsyncConnectionErrorRetryHandler(max_retry_count=2,
                                                               interval_calculator=backoff),
                              AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                              AsyncServerErrorRetryHandler(max_retry_count=2,
                                                           interval_calculator=backoff),
                          ])


def is_retryable(error: BaseException) -> bool:
    """Whether a failed Slack call may succeed later (outage, rate limit) or never will."""
    if isinstance(error, SlackApiError):
        status = error.response.status_code
        return status == 429 or status >= 500 or error.response.get("error") in (
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


def _headline(alert: dict) -> str:
    kpi = alert["kpi"]
    verb = "up" if alert.get("direction") == "up" else "down"
    rel = format_change(float(alert["value"]), float(alert["expected"]), kpi)[1]
    head = f"{kpi_label(kpi)} {verb} {rel.lstrip('+-')}" if rel != "n/a" else (
        f"{kpi_label(kpi)} {verb}")
    if alert["status"] == "resolved":
        return f"Resolved: {head}"
    return f"{str(alert['severity']).capitalize()}: {head}"


def _so_far(alert: dict) -> str:
    """`` so far (first 25 min of the window)`` for an early alert's running numbers."""
    if not alert.get("early") or alert.get("elapsed_minutes") is None:
        return ""

    hhmm = clock_utc
    minutes = f"{float(alert['elapsed_minutes']):g} min"
    start, end = float(alert["window_start_ts"]), float(alert["window_end_ts"])
    span = float(alert.get("span_start_ts") or start)
    if span == start:
        return f" in the first {minutes} of the {hhmm(start)}–{hhmm(end)} UTC window (so far)"
    return (f" in the last {minutes}, {hhmm(span)}–{hhmm(float(alert['as_of_ts']))} UTC "
            "(so far)")


def alert_message(alert: dict, grafana_url: str) -> tuple[str, list[dict]]:
    """(top-level text, blocks) of an alert's parent message."""
    kpi = alert["kpi"]
    value, expected = float(alert["value"]), float(alert["expected"])
    change, rel = format_change(value, expected, kpi)
    slice_ = where(alert["segment"], alert["channel"])
    resolved = alert["status"] == "resolved"
    icon = ":white_check_mark:" if resolved else _ICON.get(alert["severity"], ":warning:")
    headline = _headline(alert)
    so_far = _so_far(alert)
    text = _e(f"{headline} ({slice_}): {format_value(value, kpi)}{so_far} vs expected "
              f"{format_value(expected, kpi)}", 2900)
    lower, upper = alert.get("lower"), alert.get("upper")
    band = (f"{format_value(float(lower), kpi)} – {format_value(float(upper), kpi)}"
            if lower is not None and upper is not None else "n/a")
    related = alert.get("related") or []
    related_text = ", ".join(
        f"{r['kpi']} {'up' if r.get('direction') == 'up' else 'down'}"
        + ("" if r["segment"] == r["channel"] == "all" else f" ({r['segment']}/{r['channel']})")
        for r in related[:6]) + (f" and {len(related) - 6} more" if len(related) > 6 else "")
    fields = [
        ("Observed", f"{format_value(value, kpi)}{so_far} (expected "
                     f"{format_value(expected, kpi)})"),
        ("Change", f"{change} ({rel})"),
        ("Normal band", band),
        ("Since", f"{human_utc(float(alert['since_ts']))} · {alert['duration_windows']} window(s)"),
        ("Where", slice_),
        ("Confidence", f"{float(alert['score']) * 100:.0f}% · {alert['severity']} · "
                       f"{alert.get('detector') or 'detector'}"),
    ]
    if related:
        fields.append(("Related (same windows)", related_text))
    if alert.get("calendar"):   # the calendar's words, from the operators' own file: escaped
        fields.append(("During a known event", "; ".join(str(c) for c in alert["calendar"][:3])))
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": truncate(f"{headline}", 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            f"{icon} *{_e(kpi_label(kpi), 100)}* ({_e(slice_)}) is "
            f"*{format_value(value, kpi)}*{_e(so_far)} against an expected "
            f"{format_value(expected, kpi)}.",
            3000)}},
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
        label = {"ack": "Acknowledged", "snooze": "Snoozed 1 h",
                 "false_alarm": "Marked false alarm"}.get(fb.get("action", ""), "Feedback")
        status_bits.append(f"{label} by {who}")
    if resolved:
        status_bits.append(f"Resolved at {alert.get('resolved_at', '')}")
    context = [f"<{grafana_link(grafana_url, alert)}|Open in Grafana>",
               f"alert `{_e(alert['id'], 20)}`", f"v{alert.get('version', 1)}"]
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": truncate(" · ".join(context + status_bits), 3000)}]})
    if not resolved:
        blocks.append({"type": "actions", "block_id": f"pulse_actions_{alert['id']}",
                       "elements": [
                           _button("Acknowledge", ACTION_ACK, alert["id"], "primary"),
                           _button("Snooze 1 h", ACTION_SNOOZE, alert["id"]),
                           _button("False alarm", ACTION_FALSE_ALARM, alert["id"], "danger"),
                       ]})
    return text, blocks


def _button(label: str, action_id: str, value: str, style: str = "") -> dict:
    button: dict = {"type": "button", "text": {"type": "plain_text", "text": label},
                    "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button


def change_reply(alert: dict) -> str:
    """The thread reply for an ``updated`` or ``resolved`` change (escaped mrkdwn)."""
    kpi = alert["kpi"]
    now = (f"{format_value(float(alert['value']), kpi)} vs expected "
           f"{format_value(float(alert['expected']), kpi)}")
    if alert["status"] == "resolved":
        return _e(f"Resolved: {kpi_label(kpi)} ({where(alert['segment'], alert['channel'])}) "
                  f"is back to normal ({alert.get('reason', '')}). Last abnormal value {now}.",
                  2900)
    return _e(f"Update: {alert.get('reason') or 'still abnormal'}. Lead {kpi}: {now}; "
              f"{len(alert.get('related') or [])} related series.", 2900)


class SlackPoster:
    """The Slack calls Pulse makes; errors become :class:`DeliveryError`."""

    def __init__(self, client: AsyncWebClient):
        self.client = client

    async def post(self, channel: str, text: str, blocks: list[dict] | None = None,
                   thread_ts: str | None = None) -> str:
        """Post a message (a thread reply when ``thread_ts``); returns its ``ts``."""
        async with _delivery("chat.postMessage"):
            response = await self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                unfurl_links=False, unfurl_media=False)
        return str(response["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        async with _delivery("chat.update"):
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    async def upload_png(self, channel: str, thread_ts: str, data: bytes, filename: str,
                         title: str) -> None:
        async with _delivery("files_upload_v2"):
            await self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=data,
                                              filename=filename, title=title,
                                              alt_txt=title)


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
            detail = f"{exc.response.status_code} {exc.response.get('error')}"
        elif isinstance(exc, (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError,
                              OSError)):
            detail = type(exc).__name__
        else:
            return False
        raise DeliveryError(f"{self.what} failed: {detail}", is_retryable(exc)) from exc
