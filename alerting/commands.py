"""What Pulse answers in Slack: the ``/pulse`` slash command and @-mentions of the bot.

``/pulse ask <question>``, ``/pulse alerts``, ``/pulse silence kpi=<id> [segment=..]
[channel=..] 2h``, ``/pulse digest`` and ``/pulse help``. :func:`parse_command` reads the text
(a :class:`CommandError` is a usage error, shown only to the user who typed it);
:class:`Commands` does the work and returns a :class:`Reply` (Block Kit, with a top-level
``text``). No Slack connection here: alerting/socket_mode.py acks the envelopes and posts the
replies. Text typed in Slack is data: it is escaped wherever a reply shows it, and a question
goes to :func:`assistant.answer.answer_async` as the question, never into instructions.

Silences are the ones ``pulse silence`` makes (alerting/silence.py, ``<data_dir>/
silences.json``), so ``pulse silence list`` shows them and the worker applies them.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerting.ask import find_kpis
from alerting.escape import clean_event_text, escape_mrkdwn, truncate
from alerting.evidence import KPIS, format_duration, headline_scope, kpi_label
from alerting.lifecycle import AlertManager
from alerting.silence import add_silence
from core.timefmt import human_utc

__all__ = ["Command", "CommandError", "Commands", "HELP", "Reply", "closest_kpi", "help_reply",
           "mention_question", "open_alerts", "parse_command"]

log = logging.getLogger(__name__)

HELP = (
    "*/pulse* — ask Pulse about the KPIs, from any channel it is in\n"
    "• `/pulse ask What's our churn rate?` — an answer from the live KPIs\n"
    "• `/pulse alerts` — the open alerts: age, severity, KPI and where\n"
    "• `/pulse silence kpi=churn_rate [segment=…] [channel=…] 2h` — mute matching alerts "
    "(30m, 2h, 1d); `pulse silence list` on the server shows them\n"
    "• `/pulse digest` — the latest daily digest\n"
    "• `/pulse help` — this message\n"
    "Or mention the bot with a question; it answers in the thread."
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
_MAX_SILENCE_S = 30 * 86400
_SLICE_ID = re.compile(r"^[\w.\-]{1,64}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_MENTION = re.compile(r"<@[UWB][A-Z0-9]+(?:\|[^>]*)?>")
_MAX_ALERTS = 20
_SEVERITY_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:"}


class CommandError(ValueError):
    """A ``/pulse`` text Pulse cannot act on; the message says how to write it (mrkdwn)."""


@dataclass(frozen=True)
class Command:
    """One parsed ``/pulse`` command; ``name`` is ask, alerts, silence, digest or help."""

    name: str
    question: str = ""
    kpi: str | None = None
    segment: str | None = None
    channel: str | None = None
    duration_s: float = 0.0


@dataclass
class Reply:
    """A message for Slack: ``text`` (notifications, screen readers) and its ``blocks``.

    ``headline`` is the short channel message a reply is threaded under when it answers a
    slash command (Slack gives commands no thread); ``ephemeral`` replies (help, usage
    errors) go back in the command's ack, to the user who typed it only.
    """

    text: str
    blocks: list[dict] = field(default_factory=list)
    headline: str = ""
    ephemeral: bool = False

    def response_payload(self) -> dict:
        """The ack (or ``response_url``) body of this reply."""
        return {"response_type": "ephemeral" if self.ephemeral else "in_channel",
                "text": self.text, "blocks": self.blocks}


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}


def _e(text: object, limit: int = 300) -> str:
    return escape_mrkdwn(truncate(clean_event_text(text, 2 * limit), limit))


def help_reply(note: str = "") -> Reply:
    text = f"{note}\n\n{HELP}" if note else HELP
    return Reply(text=truncate(text, 3000), blocks=[_section(text)], ephemeral=True)


# -- parsing --------------------------------------------------------------------------------

def closest_kpi(name: str) -> str:
    """The KPI id nearest to ``name``: a phrase Pulse knows (``churn`` → ``churn_rate``), else
    the most similar id.

    >>> closest_kpi("chrun_rate"), closest_kpi("churn"), closest_kpi("LTV:CAC")
    ('churn_rate', 'churn_rate', 'ltv_cac')
    """
    found = find_kpis(name.replace("_", " "))
    if found:
        return found[0]
    return difflib.get_close_matches(name.lower(), list(KPIS), n=1, cutoff=0.0)[0]


def _duration(word: str) -> float:
    m = _DURATION.match(word.lower())
    if m is None:
        raise CommandError(f"“{_e(word, 40)}” is not a duration: give a number and a unit, "
                           "m, h or d (`30m`, `2h`, `1d`).")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not 0 < seconds <= _MAX_SILENCE_S:
        raise CommandError("A silence lasts more than 0 and at most 30 days.")
    return seconds


def _parse_silence(words: list[str]) -> Command:
    fields: dict[str, str] = {}
    duration_s = 0.0
    for word in words:
        key, eq, value = word.partition("=")
        if eq:
            key = key.lower()
            if key not in ("kpi", "segment", "channel"):
                raise CommandError(f"Unknown filter “{_e(key, 40)}”: use kpi=, segment= and "
                                   "channel=.")
            if not _SLICE_ID.match(value):
                raise CommandError(f"“{_e(value, 40)}” is not a {key} id (letters, digits, "
                                   "`_`, `-` and `.`).")
            fields[key] = value
        elif duration_s:
            raise CommandError(f"Unexpected “{_e(word, 40)}”: one duration only.")
        else:
            duration_s = _duration(word)
    kpi = fields.get("kpi")
    if kpi is None:
        raise CommandError("Name the KPI: `/pulse silence kpi=churn_rate 2h`.")
    if kpi not in KPIS:
        near = closest_kpi(kpi)
        raise CommandError(f"Pulse has no KPI “{_e(kpi, 60)}”. The closest is `{near}` "
                           f"({_e(kpi_label(near), 80)}): `/pulse silence kpi={near} 2h`.")
    if not duration_s:
        raise CommandError("Say for how long: `/pulse silence kpi=churn_rate 2h` (m, h or d).")
    return Command("silence", kpi=kpi, segment=fields.get("segment"),
                   channel=fields.get("channel"), duration_s=duration_s)


def parse_command(text: str) -> Command:
    """The command in a ``/pulse`` text; raises :class:`CommandError` on a usage error.

    >>> parse_command("ask What's our churn rate?").question
    "What's our churn rate?"
    >>> parse_command("silence kpi=churn_rate segment=new_grads 2h").duration_s
    7200.0
    >>> parse_command("silence kpi=chrun 2h")
    Traceback (most recent call last):
    ...
    alerting.commands.CommandError: Pulse has no KPI “chrun”. The closest is `churn_rate` ...
    """
    text = clean_event_text(text, 1000)
    words = text.split()
    if not words or words[0].lower() in ("help", "?"):
        return Command("help")
    name, rest = words[0].lower(), text[len(words[0]):].strip()
    if name == "ask":
        if not rest:
            raise CommandError("Ask a question: `/pulse ask What's our churn rate?`")
        return Command("ask", question=rest)
    if name in ("alerts", "digest"):
        if rest:
            raise CommandError(f"`/pulse {name}` takes nothing after it.")
        return Command(name)
    if name == "silence":
        return _parse_silence(rest.split())
    raise CommandError(f"Pulse knows no command “{_e(name, 40)}”.")


def mention_question(text: str) -> str:
    """The question in an @-mention: the text without the mentions.

    >>> mention_question("<@U0PULSE> what's our churn rate?")
    "what's our churn rate?"
    """
    return clean_event_text(_MENTION.sub(" ", text), 500).strip()


def _user(user_id: object) -> str:
    """A Slack mention of a user id (nothing if it does not look like one)."""
    uid = str(user_id or "")
    return f"<@{uid}>" if _USER_ID.match(uid) else "someone"


# -- the work -------------------------------------------------------------------------------

def open_alerts(manager: AlertManager) -> list[dict]:
    """Snapshots of the open alerts of a lifecycle (pending ones are not news yet)."""
    out = []
    for alert_id, alert in list(manager.active.items()):
        if alert.status != "open":
            continue
        change = manager.snapshot(alert_id)
        if change is not None:
            out.append(change.alert)
    return out


def alerts_reply(alerts: Iterable[dict], now_event_ts: float | None = None) -> Reply:
    """The open alerts, most severe and oldest first: age, severity, KPI and where."""
    rows = sorted(alerts, key=lambda a: (a.get("severity") != "critical",
                                         float(a.get("since_ts") or 0.0)))
    if not rows:
        note = ":white_check_mark: No open alerts."
        return Reply(text="No open alerts.", blocks=[_section(note)])
    lines = []
    for a in rows[:_MAX_ALERTS]:
        severity = str(a.get("severity", "warning"))
        since = float(a.get("since_ts") or 0.0)
        end = max(float(a.get("window_end_ts") or since), now_event_ts or since)
        icon = _SEVERITY_ICON.get(severity, ":white_circle:")
        lines.append(f"{icon} *{_e(severity.title(), 20)}*"
                     f" · {_e(kpi_label(str(a.get('kpi'))), 80)} {_e(headline_scope(a), 160)}"
                     f" · open {format_duration(end - since)} (since {human_utc(since)})"
                     f" · alert `{_e(a.get('id'), 20)}`")
    if len(rows) > _MAX_ALERTS:
        lines.append(f"and {len(rows) - _MAX_ALERTS} more")
    title = f"*{len(rows)} open alert{'s' if len(rows) != 1 else ''}*"
    blocks = [_section(title)]
    chunk: list[str] = []
    for line in lines:   # sections of at most 3,000 characters
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(_section("\n".join(chunk)))
    text = f"{len(rows)} open alert(s): " + "; ".join(
        f"{a.get('severity')} {kpi_label(str(a.get('kpi')))}" for a in rows[:5])
    return Reply(text=_e(text, 2900), blocks=blocks)


def latest_digest(path: str | os.PathLike[str]) -> dict | None:
    """The last readable digest of ``digest.jsonl`` (``None`` when there is none)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "day" in doc:
            return doc
    return None


def digest_reply(path: str | os.PathLike[str]) -> Reply:
    doc = latest_digest(path)
    if doc is None:
        note = "No daily digest yet: the first comes once a full UTC day of KPIs is in."
        return Reply(text=note, blocks=[_section(note)])
    from alerting.digest_delivery import digest_message  # its message, word for word

    try:
        text, blocks = digest_message(doc)
    except (KeyError, TypeError, ValueError):
        log.exception("could not show the digest of %s", doc.get("day"))
        note = f"The digest of {_e(doc.get('day'), 20)} could not be read."
        return Reply(text=note, blocks=[_section(note)])
    return Reply(text=text, blocks=blocks)


AnswerFn = Callable[[str, Any], Any]


class Commands:
    """Runs ``/pulse`` commands and answers mentions.

    Parameters
    ----------
    data_dir
        Pulse's data directory: the silences (the ones ``pulse silence`` makes).
    load_store
        Returns the KPI state a question is answered from (an ``assistant.store.KpiStore``);
        the worker reads the ``kpis`` and ``alerts`` topics. Kept ``store_ttl_s`` seconds.
    alerts
        Returns the open alerts' snapshots (:func:`open_alerts` of the service's lifecycle).
    digest_path
        The ``digest.jsonl`` file (default ``<data_dir>/digest.jsonl``).
    answer
        ``answer(question, store)`` returning an ``assistant.answer.Answer`` (``text``,
        ``blocks``), sync or async; default :func:`assistant.answer.answer_async` without a
        model.
    clock
        Wall clock of silences and of the store's cache.
    """

    def __init__(self, data_dir: str | os.PathLike[str],
                 load_store: Callable[[], Awaitable[Any]], *,
                 alerts: Callable[[], list[dict]] = list,
                 now_event_ts: Callable[[], float | None] = lambda: None,
                 digest_path: str | os.PathLike[str] | None = None,
                 answer: AnswerFn | None = None, store_ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.data_dir = data_dir
        self.load_store = load_store
        self.alerts = alerts
        self.now_event_ts = now_event_ts
        self.digest_path = digest_path or Path(data_dir) / "digest.jsonl"
        self.answer_fn = answer
        self.store_ttl_s = store_ttl_s
        self.clock = clock
        self._store: tuple[float, Any] | None = None
        self._lock = asyncio.Lock()

    async def run(self, cmd: Command, payload: dict) -> Reply:
        """The reply to a parsed command (``payload``: the slash command's fields)."""
        who = _user(payload.get("user_id"))
        if cmd.name == "help":
            return help_reply()
        if cmd.name == "ask":
            reply = await self.ask(cmd.question)
            reply.headline = f"{who} asked: “{_e(cmd.question, 500)}”"
        elif cmd.name == "alerts":
            reply = alerts_reply(self.alerts(), self.now_event_ts())
            reply.headline = f"Open alerts, for {who}"
        elif cmd.name == "digest":
            reply = digest_reply(self.digest_path)
            reply.headline = f"The latest daily digest, for {who}"
        elif cmd.name == "silence":
            # the silences file is written in a thread: never on the event loop
            reply = await asyncio.to_thread(self.silence, cmd, str(payload.get("user_id") or ""))
            reply.headline = f"{who} silenced {_e(kpi_label(cmd.kpi or ''), 80)} alerts"
        else:
            raise CommandError(f"unknown command {cmd.name!r}")
        return reply

    def silence(self, cmd: Command, user: str) -> Reply:
        s = add_silence(self.data_dir, duration=cmd.duration_s, kpi=cmd.kpi,
                        segment=cmd.segment, channel=cmd.channel,
                        reason=f"from Slack (/pulse) by {clean_event_text(user, 32) or '?'}",
                        created_by=clean_event_text(user, 32) or "slack", now=self.clock())
        scope = ", ".join((f"segment {cmd.segment}" if cmd.segment else "any segment",
                           f"channel {cmd.channel}" if cmd.channel else "any channel"))
        text = (f":mute: Silenced *{_e(kpi_label(s.kpi or ''), 80)}* (`{s.kpi}`, "
                f"{_e(scope, 160)}) for {format_duration(s.until_ts - s.created_ts)}, until "
                f"{human_utc(s.until_ts)}. Alerts it matches stay in alerts.jsonl and off Slack."
                f"\nSilence `{s.id}`: `pulse silence list` shows it, "
                f"`pulse silence remove {s.id}` ends it.")
        return Reply(text=escape_mrkdwn(f"Silenced {kpi_label(s.kpi or '')} until "
                                        f"{human_utc(s.until_ts)}"), blocks=[_section(text)])

    async def ask(self, question: str) -> Reply:
        """The answer to a question, from the current KPI state."""
        if not question:
            return help_reply("Ask Pulse a question about the KPIs.")
        try:
            store = await self._current_store()
            result = await self._answer(question, store)
        except Exception:   # a question must never break the connection
            log.exception("could not answer a question from Slack")
            note = ":warning: Pulse could not read the KPIs just now; try again in a minute."
            return Reply(text=note, blocks=[_section(note)])
        text = str(getattr(result, "text", "") or "")
        blocks = list(getattr(result, "blocks", None) or [])
        if not blocks:
            blocks = [_section(escape_mrkdwn(text) or "No answer.")]
        return Reply(text=truncate(text or "Pulse's answer", 3000), blocks=blocks)

    async def mention(self, event: dict) -> Reply:
        """The answer to an @-mention (``event``: the ``app_mention`` event)."""
        question = mention_question(str(event.get("text") or ""))
        if not question:
            note = "Ask me about the KPIs, e.g. _What's our churn rate?_ (`/pulse help`)."
            return Reply(text=note, blocks=[_section(note)])
        return await self.ask(question)

    async def _current_store(self) -> Any:
        async with self._lock:   # questions at once share one read of the topics
            now = self.clock()
            if self._store is None or not math.isfinite(self._store[0]) or (
                    now - self._store[0] > self.store_ttl_s):
                self._store = (now, await self.load_store())
            return self._store[1]

    async def _answer(self, question: str, store: Any) -> Any:
        if self.answer_fn is not None:
            result = self.answer_fn(question, store)
        else:
            from assistant.answer import answer_async  # the assistant, inside the event loop

            result = answer_async(question, store)
        if inspect.isawaitable(result):
            result = await result
        return result
