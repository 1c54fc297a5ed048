"""What every fault row shares: a rig of topics, workers and a local Slack, and the measures.

The exact-window comparison is the one of tests/test_restart.py, as library code here: every
event the rig publishes is kept, and each closed ``kpis`` window of the count KPIs (``scans``,
``signups``, ``payments``: succeeded payments) is compared with the events of that hour. Every
final publication of a window counts (a window published again after a restart must carry the
same numbers), so a window that was ever short is loss and ever over is double counting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kpis.messages import docs_in, is_running
from simulator import Simulation
from simulator.publisher import publish_simulation, publish_watermark
from stream.topics import SINGLE_PARTITION_TOPICS, ensure_topics
from stream.worker_process import WorkerProcess
from tests.fakes.slack_server import FakeSlack, Recorded

__all__ = ["COUNTED", "DAY", "HOUR", "INCIDENT_END", "START", "FaultySlack", "Rec", "Rig",
           "alert_id", "digest_day", "first_after", "incident_sim", "rss_mb"]

START = 1_794_000_000 // 3600 * 3600
DAY, HOUR = 86400.0, 3600.0
TOKEN = "xoxb-faults"

COUNTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "scans": lambda e: e.get("kind") == "scan",
    "signups": lambda e: e.get("kind") == "signup",
    "payments": lambda e: e.get("kind") == "payment" and e.get("status") == "succeeded",
}
"""The count KPIs and the events each one counts: what "events produced / counted" compares."""

INCIDENT_END = START + 7 * DAY
_names = itertools.count(1)


def incident_sim(seed: int = 3) -> Simulation:
    """Four quiet days of history, then three days of ``mixed`` incidents (as many kinds as fit
    12 h apart): several alerts for the Slack and model rows to deliver."""
    return Simulation(seed=seed, start_ts=START, scenario="mixed",
                      incident_range=(START + 4 * DAY + 2 * HOUR, INCIDENT_END - HOUR))


def rss_mb(pid: int | None, field_name: str = "VmRSS") -> float | None:
    """Resident memory of ``pid`` in MB (``VmHWM`` for the peak), from /proc."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@dataclass
class Rec:
    """One record read back: its append time (wall seconds), partition, offset and value."""
    ts: float
    partition: int
    offset: int
    value: bytes

    def docs(self) -> list[dict[str, Any]]:
        try:
            return docs_in(self.value)
        except ValueError:
            return []


class FaultySlack(FakeSlack):
    """tests/fakes/slack_server.py's Slack, with a storm: while :attr:`storm_until` (wall time)
    is ahead, every Web API call gets ``mode``: ``5xx`` (500/502/503 in turn), ``429``
    (Retry-After 1-3 s), ``slow`` (the call is carried out, its answer comes ``slow_s`` late),
    ``nonjson`` (the call is carried out, the answer is a 200 HTML page). The storm starts at the
    first ``chat.postMessage`` of an alert and lasts ``storm_s``."""

    def __init__(self, mode: str = "", storm_s: float = 0.0, slow_s: float = 15.0) -> None:
        super().__init__(token=TOKEN)
        self.mode, self.storm_s, self.slow_s = mode, storm_s, slow_s
        self.storm_from = self.storm_until = 0.0
        self.injected = 0
        self.alert_of: dict[str, str] = {}   # message ts -> the alert it was posted for
        self.digest_of: dict[str, str] = {}  # message ts -> the day of the digest it holds
        self._turn = itertools.count()

    async def __aenter__(self) -> FaultySlack:
        await self.start()
        return self

    def storming(self) -> bool:
        return bool(self.mode) and time.time() < self.storm_until

    async def _api(self, request: web.Request) -> web.Response:
        if (self.mode and not self.storm_from
                and request.match_info["method"] == "chat.postMessage"
                and alert_id(await _params(request))):
            self.storm_from = time.time()
            self.storm_until = self.storm_from + self.storm_s
        if not self.storming():
            return await super()._api(request)
        self.injected += 1
        if self.mode == "5xx":
            status = (500, 502, 503)[next(self._turn) % 3]
            self.fail_next(1, status, retry_after=None)
        elif self.mode == "429":
            self.fail_next(1, 429, retry_after=1 + next(self._turn) % 3)
        elif self.mode == "slow":   # Slack did it; the answer comes after the client gave up
            answer = await super()._api(request)
            await asyncio.sleep(self.slow_s)
            return answer
        elif self.mode == "nonjson":
            await super()._api(request)   # Slack did it; the answer is a proxy's page
            return web.Response(status=200, text="<html><body>upstream ok</body></html>",
                                content_type="text/html")
        return await super()._api(request)

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = super()._chat_postMessage(p)
        alert = alert_id(p)
        if body.get("ok") and alert and not p.get("thread_ts"):
            self.alert_of[body["ts"]] = alert   # its blocks change when it is updated
        day = digest_day(p)
        if body.get("ok") and day and not p.get("thread_ts"):
            self.digest_of[body["ts"]] = day
        return body

    def digest_posts(self) -> Counter[str]:
        """Day -> how many top-level digest messages the channel holds for it."""
        return Counter(self.digest_of[ts] for ts in list(self.messages) if ts in self.digest_of)

    def alert_posts(self) -> Counter[str]:
        """Alert id -> how many top-level messages the channel holds for it."""
        return Counter(self.alert_of[ts] for ts in list(self.messages) if ts in self.alert_of)

    def posts_ok(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "chat.postMessage" and r.ok]


async def _params(request: web.Request) -> dict[str, Any]:
    """A Web API call's arguments (JSON or form body), read ahead of the fake's handler."""
    body = await request.read()   # aiohttp keeps it: the handler reads it again
    with contextlib.suppress(ValueError):
        if request.content_type == "application/json" and body:
            return dict(orjson.loads(body))
        if request.content_type == "application/x-www-form-urlencoded":
            return {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()}
    return {}


def alert_id(params: dict[str, Any]) -> str | None:
    """The alert a ``chat.postMessage`` is for: its buttons' block id (``pulse_actions_<id>``),
    as tests/test_restart.py reads it."""
    blocks = params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = orjson.loads(blocks)
    for b in blocks:
        block_id = str(b.get("block_id", "")) if isinstance(b, dict) else ""
        if b.get("type") == "actions" and block_id.startswith("pulse_actions_"):
            return block_id.removeprefix("pulse_actions_")
    return None


def digest_day(params: dict[str, Any]) -> str | None:
    """The day of a digest's ``chat.postMessage`` (its header, ``Daily digest · <day>``)."""
    blocks = params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = orjson.loads(blocks)
    head = blocks[0] if blocks and isinstance(blocks[0], dict) else {}
    text = str((head.get("text") or {}).get("text", "")) if head.get("type") == "header" else ""
    return text.removeprefix("Daily digest · ") if text.startswith("Daily digest · ") else None


@dataclass
class Rig:
    """One row's topics (own prefix), its workers, the events it published and its Slack."""
    bootstrap: str
    name: str
    partitions: int = 4
    slack: FaultySlack | None = None
    env_extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = next(_names)
        self.prefix = f"f{os.getpid() % 10000}-{n}-{self.name}-"
        self.data_dir = tempfile.mkdtemp(prefix=f"pulse-faults-{self.name}-")
        # event time here is days behind the clock; early looks are taken as in a live stream
        self.env = {"PULSE_TOPIC_PREFIX": self.prefix, "PULSE_APP_ID": f"{self.prefix}app",
                    "PULSE_EVENTS_PARTITIONS": str(self.partitions),
                    "PULSE_EARLY_MAX_AGE_SECONDS": "0", **self.env_extra}
        if self.slack is not None:
            self.env.update(SLACK_BOT_TOKEN=TOKEN, PULSE_SLACK_CHANNEL="C0FAULTS",
                            PULSE_SLACK_API_URL=self.slack.base_url, PULSE_NOTIFY_AFTER="0")
        self.workers: list[WorkerProcess] = []
        self.produced: list[dict[str, Any]] = []
        self.events_end = 0.0
        self._seq = itertools.count()

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def setup(self) -> Rig:
        await ensure_topics(self.bootstrap, {
            **{self.topic(t): 1 for t in SINGLE_PARTITION_TOPICS},
            self.topic("events"): self.partitions})
        return self

    # -- workers ---------------------------------------------------------------------------

    def start_worker(self, env: dict[str, str] | None = None) -> WorkerProcess:
        """A worker on the rig's shared data folder (the volume workers share)."""
        i = next(self._seq)
        w = WorkerProcess(self.bootstrap, env={**self.env, **(env or {})},
                          data_dir=self.data_dir,
                          log_path=str(Path(self.data_dir) / f"worker{i}.log"))
        w.start()
        self.workers.append(w)
        return w

    def kill(self, w: WorkerProcess) -> float:
        """SIGKILL ``w``; the wall time of the kill."""
        at = time.time()
        w.stop(sig=signal.SIGKILL)
        return at

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive]

    async def stop(self) -> None:
        for w in self.workers:
            await asyncio.to_thread(w.stop)

    def rss(self) -> float | None:
        """Peak resident memory (VmHWM, MB) of the live workers: the largest."""
        values = [rss_mb(w.process.pid, "VmHWM") for w in self.alive() if w.process]
        return max((v for v in values if v is not None), default=None)

    def logs(self) -> str:
        return " ".join(str(w.log_path) for w in self.workers)

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, sim: Simulation, t0: float, t1: float) -> None:
        """Run ``sim`` from ``t0`` to ``t1`` at full speed; every event is kept."""
        await publish_simulation(self.bootstrap, self.topic("events"), sim, t0, t1,
                                 keep=self.produced)
        self.events_end = max(self.events_end, t1)

    async def watermark(self, ts: float) -> None:
        await publish_watermark(self.bootstrap, self.topic("events"), ts)

    async def send_raw(self, topic: str, payloads: list[bytes | None],
                       partition: int | Callable[[int], int] = 0) -> None:
        """Send raw messages to one of the rig's topics, a window of sends in flight."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5,
                                    max_request_size=4 << 20, max_batch_size=1 << 20)
        await producer.start()
        try:
            pending = []
            for i, p in enumerate(payloads):
                part = partition(i) if callable(partition) else partition
                pending.append(await producer.send(self.topic(topic), p, key=b"k",
                                                   partition=part))
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    # -- reading back ------------------------------------------------------------------------

    async def records(self, topic: str, *, until: Callable[[list[Rec]], bool] | None = None,
                      timeout: float = 60.0, idle: float = 3.0) -> list[Rec]:
        """Every record of ``topic`` from the start, until ``until(records)`` holds (or the
        topic has been quiet ``idle`` seconds)."""
        consumer = AIOKafkaConsumer(self.topic(topic), bootstrap_servers=self.bootstrap,
                                    group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        await consumer.start()
        out: list[Rec] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300, max_records=5000)
                for records in batch.values():
                    for r in records:
                        out.append(Rec(r.timestamp / 1000.0, r.partition, r.offset,
                                       r.value or b""))
                        last_new = time.monotonic()
                if until is not None and until(out):
                    break
                if until is None and time.monotonic() - last_new > idle:
                    break
        finally:
            await consumer.stop()
        return out

    async def kpis_until_closed(self, end: float, timeout: float = 180.0) -> list[Rec]:
        """The ``kpis`` records until the window ending at ``end`` is closed for every counted
        KPI (or ``timeout``)."""
        seen: set[str] = set()
        looked = [0]

        def done(recs: list[Rec]) -> bool:
            for r in recs[looked[0]:]:
                for d in r.docs():
                    if (d.get("kpi") in COUNTED and not is_running(d)
                            and d.get("window_end_ts", 0) >= end):
                        seen.add(d["kpi"])
            looked[0] = len(recs)
            return seen == set(COUNTED)

        return await self.records("kpis", until=done, timeout=timeout)

    async def json_docs(self, topic: str, *,
                        until: Callable[[list[dict[str, Any]]], bool] | None = None,
                        **kw: Any) -> list[dict[str, Any]]:
        """The JSON objects of ``topic`` (what is not JSON is skipped), as :meth:`records`;
        ``until`` is given the objects."""
        out: list[dict[str, Any]] = []
        seen = [0]

        def decode(recs: list[Rec]) -> list[dict[str, Any]]:
            for r in recs[seen[0]:]:
                with contextlib.suppress(orjson.JSONDecodeError):
                    doc = orjson.loads(r.value)
                    out.extend(d for d in (doc if isinstance(doc, list) else [doc])
                               if isinstance(d, dict))
            seen[0] = len(recs)
            return out

        recs = await self.records(topic, until=None if until is None
                                  else lambda m: until(decode(m)), **kw)
        return decode(recs)

    # -- the measures ------------------------------------------------------------------------

    def count_windows(self, kpis: list[Rec], end: float | None = None,
                      begin: float | None = None) -> dict[str, Any]:
        """Events produced and counted, lost and counted twice, over the windows from
        ``begin`` to ``end`` (default: every hour the rig published)."""
        end = self.events_end if end is None else end
        want: Counter[tuple[str, float]] = Counter()
        for e in self.produced:
            w = e["ts"] // HOUR * HOUR
            if (begin is None or w >= begin) and w + HOUR <= end:
                for kpi, counts in COUNTED.items():
                    if counts(e):
                        want[kpi, w] += 1
        got: dict[tuple[str, float], list[float]] = {}
        for r in kpis:
            for d in r.docs():
                if d.get("kpi") not in COUNTED or is_running(d) or "window_start_ts" not in d:
                    continue
                w = d["window_start_ts"]
                if (begin is not None and w < begin) or d["window_end_ts"] > end:
                    continue
                total = [s["value"] for s in d.get("series", [])
                         if s.get("segment") == "all" and s.get("channel") == "all"]
                if total:
                    got.setdefault((d["kpi"], w), []).append(float(total[0]))
        lost = twice = republished = 0
        wrong: list[list[Any]] = []
        for key in sorted(set(want) | set(got), key=lambda k: (k[1], k[0])):
            values = got.get(key) or [0.0]
            short, over = max(0, want[key] - int(min(values))), max(0, int(max(values)) - want[key])
            lost, twice = lost + short, twice + over
            republished += max(0, len(got.get(key, [])) - 1)
            if short or over:
                wrong.append([key[0], time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(key[1])),
                              want[key], got.get(key, [])])
        produced = sum(want.values())
        return {"events_produced": produced, "events_counted": produced - lost + twice,
                "events_lost": lost, "events_twice": twice,
                "windows_republished": republished,
                "windows_wrong": len(wrong), "windows_wrong_first": wrong[:12]}

    async def outcome(self, kpis: list[Rec], alerts_timeout: float = 30.0,
                      survivors: list[WorkerProcess] | None = None,
                      begin: float | None = None) -> dict[str, Any]:
        """A row's measures: events counted (:meth:`count_windows`), alerts posted (with a
        Slack), whether ``survivors`` (default: the newest worker) are alive, and peak RSS."""
        out = self.count_windows(kpis, begin=begin)
        if self.slack is not None:
            out.update(await self.alerts(timeout=alerts_timeout))
        alive = self.workers[-1:] if survivors is None else survivors
        out["worker_alive"] = bool(alive) and all(w.alive for w in alive)
        out["worker_rss_mb"] = self.rss()
        return out

    async def alerts(self, timeout: float = 90.0) -> dict[str, Any]:
        """Alerts opened on ``alerts`` against the messages Slack holds, once every opened
        alert is in the channel (or ``timeout``)."""
        assert self.slack is not None
        changes = await self.json_docs("alerts", timeout=15, idle=2)
        opened = {c["id"] for c in changes if c.get("status") == "open" and "id" in c}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not opened <= set(self.slack.alert_posts()):
            await asyncio.sleep(0.5)
            changes = await self.json_docs("alerts", timeout=5, idle=1)
            opened = {c["id"] for c in changes if c.get("status") == "open" and "id" in c}
        await asyncio.sleep(3)   # a late second copy would land now
        posts = self.slack.alert_posts()
        days = self.slack.digest_posts()
        return {"digests_posted": len(days),
                "digest_duplicates": sum(n - 1 for n in days.values()),
                "alerts_expected": len(opened), "alerts_posted": len(set(posts) & opened),
                "alerts_lost": len(opened - set(posts)),
                "alert_duplicates": sum(n - 1 for n in posts.values()),
                "alerts_unknown_posted": len(set(posts) - opened)}


def first_after(recs: list[Rec], at: float) -> float | None:
    """Seconds from ``at`` to the first record appended after it."""
    later = [r.ts for r in recs if r.ts > at]
    return round(min(later) - at, 1) if later else None
