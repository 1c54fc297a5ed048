"""Button clicks on alert messages: Slack's interactivity endpoint, and the feedback file.

Slack POSTs ``application/x-www-form-urlencoded`` with one ``payload`` field (JSON) to the
Request URL of the app's Interactivity settings. For ``block_actions`` from Pulse's buttons the
endpoint answers 200 at once and hands a :class:`Feedback` to the service, which stores it in
``feedback.jsonl`` (the detectors read false alarms from there: :func:`load_feedback`) and
honours it (a snooze is a one-hour silence). With a signing secret, requests are verified
(``X-Slack-Signature``, ``v0`` HMAC-SHA256, at most five minutes old) and refused with 401
otherwise; the worker does not start the endpoint without one (:data:`E_NO_SIGNING_SECRET`),
and Socket Mode (alerting/socket_mode.py) needs no endpoint at all.

A signed click is still checked before anything is silenced: its alert id must be one Pulse
posted (``posted``, the service's outbox threads; else 404), each Slack user and the endpoint
as a whole have a token bucket (:class:`ClickLimits`; over it, 429 with ``Retry-After``), and a
click that would pass the cap of live silences gets 503 (alerting/silence.py). None of these
refusals stores feedback or makes a silence.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiohttp import web

from alerting.silence import SilenceLimitError
from alerting.slack import ACTION_ACK, ACTION_FALSE_ALARM, ACTION_SNOOZE

__all__ = [
    "ACTIONS",
    "ClickLimits",
    "E_NO_SIGNING_SECRET",
    "Feedback",
    "FeedbackStore",
    "TokenBucket",
    "load_feedback",
    "make_feedback_app",
    "parse_payload",
    "verify_signature",
]

log = logging.getLogger(__name__)

ACTIONS = {ACTION_ACK: "ack", ACTION_SNOOZE: "snooze", ACTION_FALSE_ALARM: "false_alarm"}
MAX_BODY = 256 << 10
"""Largest request body read (a click's payload carries the message's blocks: tens of KB)."""
MAX_READING = 8
"""Request bodies read at once: a flood of large forged bodies waits its turn instead of
being held in memory together (833 bodies of 1 MB took a worker to 1 GB)."""


@dataclass
class Feedback:
    """One click: ``action`` is ``ack``, ``snooze`` or ``false_alarm``."""

    alert_id: str
    action: str
    user: str
    ts: float
    channel: str = ""
    message_ts: str = ""
    # Filled in by the service from the alert, for the detectors.
    kpi: str = ""
    segment: str = ""
    series_channel: str = ""
    window_start_ts: float | None = None
    detector: str = ""


def parse_payload(payload: dict, now: float) -> list[Feedback]:
    """Pulse's button clicks in a ``block_actions`` payload (others are ignored)."""
    if payload.get("type") != "block_actions":
        return []
    user = payload.get("user") or {}
    container = payload.get("container") or {}
    channel = (payload.get("channel") or {}).get("id") or container.get("channel_id", "")
    found = []
    for action in payload.get("actions") or []:
        kind = ACTIONS.get(action.get("action_id", ""))
        if kind is None or not action.get("value"):
            continue
        found.append(Feedback(alert_id=str(action["value"])[:64], action=kind,
                              user=str(user.get("id") or user.get("username") or "")[:64],
                              ts=now, channel=str(channel)[:32],
                              message_ts=str(container.get("message_ts", ""))[:32]))
    return found


E_NO_SIGNING_SECRET = (
    "PULSE_FEEDBACK_PORT is set but SLACK_SIGNING_SECRET is not: the interactivity endpoint "
    "would honour unsigned clicks from anyone who reaches the port, so it is NOT started. Set "
    "SLACK_SIGNING_SECRET (Basic Information > App Credentials of the Slack app), or use "
    "Socket Mode instead (SLACK_APP_TOKEN, no public endpoint: docs/slack-app.md).")


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, now: float,
                     max_age_s: float = 300) -> bool:
    """Slack's request signature check (``v0=`` HMAC-SHA256 of ``v0:timestamp:body``).

    An empty secret, a missing or non-``v0=`` signature, and a timestamp that is not a whole
    number of seconds within ``max_age_s`` of ``now`` all fail.

    >>> body, ts = b"payload=%7B%7D", "1763719200"
    >>> sig = "v0=" + hmac.new(b"s3cr3t", b"v0:" + ts.encode() + b":" + body,
    ...                        hashlib.sha256).hexdigest()
    >>> verify_signature("s3cr3t", ts, body, sig, now=1763719260.0)
    True
    >>> verify_signature("s3cr3t", ts, body + b"x", sig, now=1763719260.0)
    False
    >>> verify_signature("s3cr3t", "nan", body, sig, now=1763719260.0)
    False
    """
    if not (secret and signature.startswith("v0=") and timestamp.isascii()
            and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > max_age_s:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


class FeedbackStore:
    """Appends feedback to a JSON lines file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def append(self, feedback: Feedback) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(feedback)) + "\n")


def load_feedback(path: str | os.PathLike[str], action: str | None = None) -> list[dict]:
    """Stored feedback (e.g. ``action="false_alarm"`` for the detectors), oldest first."""
    p = Path(path)
    if not p.exists():
        return []
    rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if action is None or r.get("action") == action]


@dataclass(frozen=True)
class ClickLimits:
    """How many clicks the endpoint honours: a burst, then a steady rate, per Slack user
    (team and user id) and in all. A person clicks a few buttons a minute during an
    incident; a flood (a script, a replayed request) gets 429 after the burst."""

    user_burst: int = 10
    user_per_s: float = 1 / 6      # 10 a minute
    total_burst: int = 60
    total_per_s: float = 1.0


class TokenBucket:
    """``burst`` tokens per key, refilled at ``per_s`` a second; the clock is passed in.

    >>> b = TokenBucket(burst=2, per_s=0.5)
    >>> b.take("u", 0.0), b.take("u", 0.0), b.take("u", 0.0), b.take("u", 2.0)
    (0.0, 0.0, 2.0, 0.0)
    """

    def __init__(self, burst: int, per_s: float, max_keys: int = 10_000):
        if burst < 1 or per_s <= 0:
            raise ValueError("a token bucket needs burst >= 1 and per_s > 0")
        self.burst, self.per_s, self.max_keys = burst, per_s, max_keys
        self.levels: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is."""
        tokens, at = self.levels.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_s)
        if tokens < 1.0:
            self.levels[key] = (tokens, now)
            return (1.0 - tokens) / self.per_s
        self.levels[key] = (tokens - 1.0, now)
        if len(self.levels) > self.max_keys:  # forget buckets that have refilled
            full = self.burst / self.per_s
            self.levels = {k: v for k, v in self.levels.items() if now - v[1] < full}
        return 0.0


class ClickGate:
    """What both ways clicks come in (the HTTP endpoint, Socket Mode) refuse before one is
    honoured: a flood (:class:`ClickLimits`, logged once per user until they slow down) and a
    click on an alert Pulse did not post (``posted``)."""

    def __init__(self, posted: Callable[[str], bool], limits: ClickLimits = ClickLimits(),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.posted = posted
        self.per_user = TokenBucket(limits.user_burst, limits.user_per_s)
        self.overall = TokenBucket(limits.total_burst, limits.total_per_s)
        self.monotonic = monotonic
        self.limited: set[str] = set()   # users refused since their last honoured click

    def refuse(self, payload: dict, clicks: list[Feedback]) -> tuple[int, str, float] | None:
        """None to honour ``clicks``; else (HTTP status, why, seconds to wait): 429 for a
        flood, 404 for an alert id Pulse never posted."""
        who = _who(payload)
        now = self.monotonic()
        wait = self.per_user.take(who, now) or self.overall.take("*", now)
        if wait:
            if who not in self.limited:
                self.limited.add(who)
                log.warning("too many clicks from Slack user %s: refused (429) until they "
                            "slow down", who)
            return 429, f"too many clicks: try again in {math.ceil(wait)} s", wait
        self.limited.discard(who)
        unknown = sorted({fb.alert_id for fb in clicks if not self.posted(fb.alert_id)})
        if unknown:
            log.warning("click from Slack user %s on alert %s, which Pulse did not post: "
                        "refused", who, unknown[0])
            return 404, f"no alert {unknown[0]} was posted by Pulse: click ignored", 0.0
        return None


class SeenSignatures:
    """Signatures of the requests honoured in the last ``horizon_s`` seconds: Slack signs a
    request with its timestamp, so a signed request copied and sent again within the 5 minutes
    a signature is valid is the same signature, and is refused."""

    def __init__(self, horizon_s: float = 300.0, max_kept: int = 10_000) -> None:
        self.horizon_s, self.max_kept = horizon_s, max_kept
        self.seen: dict[str, float] = {}   # signature -> when first seen (clock seconds)

    def first_time(self, signature: str, now: float) -> bool:
        oldest = next(iter(self.seen.values()), now)
        if oldest < now - self.horizon_s or len(self.seen) >= self.max_kept:
            kept = [(k, t) for k, t in self.seen.items() if t >= now - self.horizon_s]
            self.seen = dict(kept[-(self.max_kept // 2):] if len(kept) >= self.max_kept else kept)
        if signature in self.seen:
            return False
        self.seen[signature] = now
        return True


def make_feedback_app(on_feedback: Callable[[Feedback], Awaitable[None]], *,
                      posted: Callable[[str], bool], signing_secret: str | None = None,
                      path: str = "/slack/actions", clock: Callable[[], float] = time.time,
                      limits: ClickLimits = ClickLimits(),
                      monotonic: Callable[[], float] = time.monotonic) -> web.Application:
    """An aiohttp app with Slack's interactivity endpoint at ``path``.

    ``posted(alert_id)`` says whether Pulse posted that alert to Slack: a click on any other
    id is refused (404). ``limits`` bounds the clicks honoured (429 beyond, see
    :class:`ClickLimits`), timed by ``monotonic``; ``clock`` checks signature ages.
    """
    gate = ClickGate(posted, limits, monotonic)
    replays = SeenSignatures()
    reading = asyncio.Semaphore(MAX_READING)

    async def actions(request: web.Request) -> web.Response:
        # what the headers already refuse is refused before the body is read
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413, text=f"a click is at most {MAX_BODY} bytes")
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if signing_secret and not (
                request.headers.get("X-Slack-Signature", "").startswith("v0=")
                and stamp.isascii() and stamp.isdigit() and abs(clock() - int(stamp)) <= 300):
            return web.Response(status=401, text="bad signature")
        async with reading:
            body = await request.read()
        signature = request.headers.get("X-Slack-Signature", "")
        if signing_secret and not verify_signature(
                signing_secret, request.headers.get("X-Slack-Request-Timestamp", ""), body,
                signature, clock()):
            return web.Response(status=401, text="bad signature")
        if signing_secret and not replays.first_time(signature, clock()):
            log.warning("a signed click request was sent again (a replay): refused")
            return web.Response(status=409, text="this request was received already")
        form = await request.post()
        raw = form.get("payload")
        if not isinstance(raw, str):
            return web.Response(status=400, text="no payload")
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError:
            return web.Response(status=400, text="payload is not JSON")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="payload is not a JSON object")
        clicks = parse_payload(payload, clock())
        if not clicks:
            return web.Response(status=200, text="")
        refused = gate.refuse(payload, clicks)
        if refused is not None:
            status, why, wait = refused
            headers = {"Retry-After": str(math.ceil(wait))} if status == 429 else None
            return web.Response(status=status, headers=headers, text=why)
        for fb in clicks:
            try:
                await on_feedback(fb)
            except SilenceLimitError as e:
                log.error("%s feedback on alert %s: %s", fb.action, fb.alert_id, e)
                return web.Response(status=503, text=str(e))
            except Exception:  # a click must never break the endpoint
                log.exception("could not apply %s feedback on alert %s", fb.action, fb.alert_id)
        return web.Response(status=200, text="")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(path, actions)
    return app


def _who(payload: dict) -> str:
    """``team:user`` of a click, the key of its rate limit."""
    user, team = payload.get("user"), payload.get("team")
    user = user if isinstance(user, dict) else {}
    team = team if isinstance(team, dict) else {}
    uid = str(user.get("id") or user.get("username") or "?")[:64]
    return f"{str(team.get('id') or user.get('team_id') or '')[:32]}:{uid}"
