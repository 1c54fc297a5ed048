"""Pending Slack deliveries, persisted as JSON lines so no alert is lost while Slack is down.

Every delivery has an idempotency key (alert id, version, kind). ``add`` ignores a key it has
seen; ``flush`` sends pending deliveries in order (charts last) and records each one as done
right after Slack accepted it, so after an outage (or a restart) each is sent once. A
retryable failure (network, 429, 5xx) stops the flush and keeps the order; a permanent one
(e.g. ``channel_not_found``) is recorded as failed and skipped. A newer parent update for an alert
replaces a pending older one. The parent message's ``ts`` of each alert is kept, so replies and
updates find their thread.

A message (``post``, ``reply``) is done only with its ``ts``. Each attempt to send one (or a
chart) is recorded first (``try``, on disk), because an attempt that failed ambiguously (a
timeout, a 5xx, a 200 that is not JSON, a crash while the request was out) may still have been
posted: the next attempt has :attr:`Delivery.earlier_attempt` set, and the send function looks
for the message by its key (Slack message metadata) before posting again
(``alerting.slack.SlackPoster.post``), or for the chart by its file name in the thread.

File format, one JSON object a line: ``{"op": "add", "delivery": {...}}``,
``{"op": "try", "key": k, "at": wall_time}``,
``{"op": "done", "key": k, "thread": [alert_id, channel, ts] | null}``,
``{"op": "drop", "key": k, "why": "..."}``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Delivery", "DeliveryError", "Observer", "Outbox", "SendFn", "observed_call"]

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A delivery failed; ``retryable`` says whether waiting may help (outage, rate limit),
    ``ambiguous`` that the call may have taken effect all the same (a timeout, a 5xx, a 200
    that is not JSON)."""

    def __init__(self, message: str, retryable: bool, ambiguous: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.ambiguous = ambiguous


@dataclass
class Delivery:
    """One Slack call to make.

    ``kind``: ``post`` (parent), ``reply`` (thread reply), ``update`` (``chat.update`` of the
    parent) or ``chart`` (PNG in the thread; ``chart`` holds what to draw). ``tries`` counts
    the attempts to send a message or a chart (``post``, ``reply``, ``chart``) and
    ``tried_at`` is the wall time of the first one.
    """

    key: str
    kind: str
    alert_id: str
    channel: str
    text: str = ""
    blocks: list[dict] | None = None
    chart: dict | None = field(default=None)
    tries: int = 0
    tried_at: float = 0.0

    @property
    def earlier_attempt(self) -> float | None:
        """The wall time of the first attempt when this is not the first one (an earlier
        attempt may have been posted: look for it before posting again), else ``None``."""
        return self.tried_at if self.tries > 1 else None


MESSAGE_KINDS = frozenset({"post", "reply"})
"""Kinds that create a Slack message: done only with its ts."""
TRIED_KINDS = MESSAGE_KINDS | {"chart"}
"""Kinds whose every attempt is recorded before it is made (a repeat would show twice)."""

# Sends one delivery; gets the parent's ts (None for a post); returns the new message's ts.
SendFn = Callable[[Delivery, str | None], Awaitable[str | None]]


class Outbox:
    """Pending deliveries and known threads, in ``path`` (JSON lines)."""

    def __init__(self, path: str | os.PathLike[str], max_threads: int = 2000,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.max_threads = max_threads
        self.clock = clock
        self.pending: list[Delivery] = []
        self.threads: OrderedDict[str, tuple[str, str]] = OrderedDict()  # alert -> (channel, ts)
        self.keys: dict[str, None] = {}  # recent idempotency keys, oldest first
        self.sent = 0
        self._inflight: str | None = None  # key of the delivery being sent
        self._lines = 0
        self._load()

    def add(self, delivery: Delivery) -> bool:
        """Queue ``delivery`` (persisted before returning); False if its key is known."""
        if delivery.key in self.keys:
            return False
        if delivery.kind == "update":
            for old in [d for d in self.pending if d.kind == "update" and d.key != self._inflight
                        and d.alert_id == delivery.alert_id]:
                self.pending.remove(old)
                self._append({"op": "drop", "key": old.key, "why": "superseded"})
        self._seen(delivery.key)
        self.pending.append(delivery)
        # without tries/tried_at (0 here; "try" records carry them): a build before them
        # still reads this file
        record = {k: v for k, v in asdict(delivery).items() if k not in ("tries", "tried_at")}
        self._append({"op": "add", "delivery": record}, sync=True)
        return True

    def thread_of(self, alert_id: str) -> tuple[str, str] | None:
        return self.threads.get(alert_id)

    def has_parent(self, alert_id: str) -> bool:
        """Whether the alert's parent message is posted or queued."""
        return alert_id in self.threads or any(
            d.kind == "post" and d.alert_id == alert_id for d in self.pending)

    async def flush(self, send: SendFn) -> bool:
        """Send what is pending, in order. True when nothing is left pending."""
        while self.pending:
            # Charts wait for every other pending delivery: a new alert is not held up by a
            # chart being drawn. Each alert's own post still goes before its chart.
            d = next((x for x in self.pending if x.kind != "chart"), self.pending[0])
            thread = self.threads.get(d.alert_id)
            if d.kind != "post" and thread is None:
                self._finish(d, None, drop="parent message was never posted")
                continue
            self._inflight = d.key
            if d.kind in TRIED_KINDS:
                self._tried(d)
            try:
                ts = await send(d, thread[1] if thread else None)
            except DeliveryError as e:
                if e.retryable:
                    log.warning("Slack unavailable (%s)%s; %d deliveries pending", e,
                                ": it may have been posted, it is looked for before the next "
                                "attempt" if e.ambiguous else "", len(self.pending))
                    return False
                log.error("Slack refused a %s for alert %s (%s); skipped", d.kind, d.alert_id, e)
                self._finish(d, None, drop=str(e))
                continue
            finally:
                self._inflight = None
            if d.kind in MESSAGE_KINDS and not ts:  # done only with its ts
                log.warning("Slack answered a %s for alert %s without a ts; it is looked for "
                            "before the next attempt", d.kind, d.alert_id)
                return False
            self.sent += 1
            self._finish(d, (d.alert_id, d.channel, ts) if d.kind == "post" and ts else None)
        self._compact()
        return True

    def _tried(self, d: Delivery) -> None:
        """Record an attempt to send ``d`` before it is made (it may land unanswered)."""
        d.tries += 1
        if not d.tried_at:
            d.tried_at = self.clock()
        self._append({"op": "try", "key": d.key, "at": d.tried_at}, sync=True)

    def _finish(self, d: Delivery, thread: tuple[str, str, str] | None, drop: str = "") -> None:
        self.pending.remove(d)
        if drop:
            self._append({"op": "drop", "key": d.key, "why": drop})
            return
        if thread is not None:
            self._remember(*thread)
        self._append({"op": "done", "key": d.key, "thread": list(thread) if thread else None},
                     sync=True)

    def _remember(self, alert_id: str, channel: str, ts: str) -> None:
        self.threads[alert_id] = (channel, ts)
        self.threads.move_to_end(alert_id)
        while len(self.threads) > self.max_threads:
            self.threads.popitem(last=False)

    def _seen(self, key: str, max_keys: int = 20000) -> None:
        self.keys[key] = None
        if len(self.keys) > max_keys:
            del self.keys[next(iter(self.keys))]

    def _append(self, record: dict, sync: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
            if sync:
                f.flush()
                os.fsync(f.fileno())
        self._lines += 1

    def _load(self) -> None:
        if not self.path.exists():
            return
        by_key: dict[str, Delivery] = {}
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                self._lines += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a torn last line after a crash
                    continue
                op = record.get("op")
                if op == "add":
                    d = Delivery(**record["delivery"])
                    self._seen(d.key)
                    by_key[d.key] = d
                elif op == "try" and record.get("key") in by_key:
                    tried = by_key[record["key"]]
                    tried.tries += 1
                    tried.tried_at = tried.tried_at or float(record.get("at") or 0.0)
                elif op in ("done", "drop"):
                    self._seen(record["key"])
                    by_key.pop(record["key"], None)
                    if record.get("thread"):
                        self._remember(*record["thread"])
                elif op == "thread":
                    self._remember(*record["thread"])
                elif op == "keys":
                    for key in record["keys"]:
                        self._seen(key)
        self.pending = list(by_key.values())

    def _compact(self, max_lines: int = 1000) -> None:
        if self.pending or self._lines <= max_lines:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".outbox.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for alert_id, (channel, ts) in self.threads.items():
                f.write(json.dumps({"op": "thread", "thread": [alert_id, channel, ts]}) + "\n")
            # Keys of recent deliveries, so a re-handled change is still not sent twice.
            f.write(json.dumps({"op": "keys", "keys": list(self.keys)}) + "\n")
        os.replace(tmp, self.path)
        self._lines = len(self.threads) + 1


Observer = Callable[[str, str, float], None]
"""``(service, outcome, seconds)`` of one outside call ("slack"/"llm"; "ok"/"error"/...)."""


async def observed_call(observer: Observer | None, service: str,
                        call: Awaitable[str | None]) -> str | None:
    """Await ``call``, telling ``observer`` how it went and how long it took."""
    started = time.monotonic()
    try:
        result = await call
    except Exception:
        if observer is not None:
            observer(service, "error", time.monotonic() - started)
        raise
    if observer is not None:
        observer(service, "ok", time.monotonic() - started)
    return result
