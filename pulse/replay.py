"""``pulse replay``: run an events file through the real pipeline, isolated, in event time.

A replay gets its own namespace: topic prefix ``replay-<id>-``, Faust app id (consumer group,
tables, changelogs) ``pulse-replay-<id>``, and a fresh data directory, so no state, silence or
checkpoint leaks in from production or from another replay; by default it runs on an embedded
broker of its own. The worker is the production one (``python -m stream.worker``) with the
detector configuration asked for, writing ``alerts.jsonl`` into the output directory. Slack,
the model and the feedback endpoint are switched off unless ``--slack`` is given.

Events go out sorted by event time through :class:`~simulator.publisher.EventPublisher`, with a
watermark on every partition after each step (an hour of event time with ``--max``, or what the
clock reached with ``--speed``) and a last one past the last window plus the lateness, so every
window closes. Windows close on event time only, so the KPIs, anomalies and alerts do not depend
on the speed (tests/test_replay.py checks it).

The replay is complete when (1) the last window's ``window_closed`` marker has been read from
``kpis`` and from ``anomalies`` (all KPI lines and anomalies are in), and (2) the alert agent has
handled that marker: its consumer group's committed offset on ``anomalies`` is past the
marker's (the agent commits right after saving what it handled, stream/resume.py). The replay
appends copies of the marker to ``anomalies`` (a no-op for the lifecycle, which ignores windows
it has closed) so the agent checkpoints and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kpis.messages import docs_in
from pulse.kpi_view import KpiView
from pulse.progress import ProgressBar
from pulse.replay_report import (
    ReplaySummary,
    compare_table,
    load_jsonl,
    summarize,
    summary_text,
)
from simulator.publisher import EventPublisher
from simulator.scenarios import iso_utc
from stream.backfill import start_offsets
from stream.broker import EmbeddedBroker
from stream.eventfile import FileScan, LineProblem, scan_file, sorted_events
from stream.settings import Settings
from stream.topics import ensure_topics, pipeline_topics
from stream.worker_process import WorkerProcess

__all__ = ["ReplayError", "ReplayInputError", "ReplayOptions", "ReplayResult",
           "replay_file", "run_compare", "run_replay"]

TICK_S = 0.25              # --speed: how often the clock publishes
STALL_S = 120.0            # no window closed for this long while events are due: give up
ALERTS_WAIT_S = 60.0       # the alert agent must have handled the last window by then
MAX_PROBLEMS_SHOWN = 20
SLACK_ENV = ("SLACK_BOT_TOKEN", "PULSE_SLACK_CHANNEL", "SLACK_SIGNING_SECRET",
             "ANTHROPIC_API_KEY")
FAR_FUTURE = str(2**62)    # PULSE_NOTIFY_AFTER: nothing is ever "live" for Slack or the model
OUTPUTS = ("kpis.jsonl", "anomalies.jsonl", "alerts.jsonl", "summary.md", "worker.log")


class ReplayError(RuntimeError):
    """The replay could not run or finish; the message says why."""

    exit_code = 1


class ReplayInputError(ReplayError):
    """The file or the configuration cannot be used (exit code 2)."""

    exit_code = 2


@dataclass
class ReplayOptions:
    file: str
    out: str
    speed: float | None = None             # simulated seconds per real second; None: --max
    config: str | None = None              # detector TOML (None: the settings' one)
    slack: bool = False
    chart: str | None = None
    incidents: str | None = None           # default: incidents.jsonl beside the file
    quiet: bool = False
    title: str = ""
    partitions: int = 1                    # of the replay's events topic (see worker_env)
    keep_topics: bool = False              # on --broker: leave the replay's topics there


@dataclass
class ReplayResult:
    out: Path
    replay_id: str
    events: int
    windows: int
    seconds: float
    problems: list[LineProblem]
    alert_changes: list[dict[str, Any]]
    summary: ReplaySummary
    dead_letters: int = 0
    chart: Path | None = None
    details: dict[str, float] = field(default_factory=dict)


class _ReplayView(KpiView):
    """KpiView (kpis.jsonl and anomalies.jsonl lines) that also follows the window markers of
    ``kpis`` and ``anomalies``, which tell when a window's lines are all in."""

    def __init__(self, bootstrap: str, settings: Settings, out: Path) -> None:
        super().__init__(bootstrap, settings.topic("kpis"), out_path=out / "kpis.jsonl",
                         anomalies_topic=settings.topic("anomalies"),
                         anomalies_path=out / "anomalies.jsonl",
                         alerts_topic=settings.topic("alerts"), quiet=True)
        self.kpis_closed = -math.inf
        self.anomalies_closed = -math.inf
        self.anomalies_closed_at = -1    # offset of the marker that reached anomalies_closed
        self.last_alert_at = time.monotonic()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(self.topic, str(self.anomalies_topic),
                                    str(self.alerts_topic), bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        assert self.out_path is not None and self.anomalies_path is not None
        out = open(self.out_path, "ab")  # noqa: SIM115
        anomalies = open(self.anomalies_path, "ab")  # noqa: SIM115
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        for doc in _docs(rec.topic, rec.value, self.topic):
                            self._take(rec.topic, doc, out, anomalies, rec.offset)
                out.flush()
                anomalies.flush()
        finally:
            await consumer.stop()
            out.close()
            anomalies.close()

    def _take(self, topic: str, doc: dict[str, Any], out: IO[bytes],
              anomalies: IO[bytes], offset: int = -1) -> None:
        marker = doc.get("kind") == "window_closed"
        if topic == self.topic:
            if marker:
                self.kpis_closed = max(self.kpis_closed, float(doc["window_end_ts"]))
            else:
                self._on_message(doc, out)
        elif topic == self.anomalies_topic:
            if marker and float(doc["window_end_ts"]) > self.anomalies_closed:
                self.anomalies_closed = float(doc["window_end_ts"])
                self.anomalies_closed_at = offset
            elif not marker and "kpi" in doc:
                self.anomalies_seen += 1
                anomalies.write(orjson.dumps(doc) + b"\n")
        else:
            self.alert_changes.append(doc)
            self.last_alert_at = time.monotonic()


def _docs(topic: str, value: bytes, kpis_topic: str) -> list[dict[str, Any]]:
    """A message's documents: a ``kpis`` message holds a window's."""
    return docs_in(value) if topic == kpis_topic else [orjson.loads(value)]


class _Feed:
    """Hands out the sorted events of a file up to a time."""

    def __init__(self, scan: FileScan) -> None:
        self._it = sorted_events(scan)
        self._head: dict[str, Any] | None = next(self._it, None)

    def until(self, t: float) -> list[dict[str, Any]]:
        out = []
        while self._head is not None and self._head["ts"] < t:
            out.append(self._head)
            self._head = next(self._it, None)
        return out


def worker_env(settings: Settings, rid: str, out: Path, config: str | None,
               slack: bool, partitions: int = 1) -> dict[str, str]:
    """The replay worker's environment over the inherited one (an empty value unsets).

    One events partition by default: the worker then reads the events in exactly the file's
    sorted order on every run, so even float sums that depend on the order of addition within
    a window (``match_rate``'s, kpis/windows.py) come out bit for bit the same.
    """
    env = {"PULSE_TOPIC_PREFIX": f"replay-{rid}-", "PULSE_APP_ID": f"pulse-replay-{rid}",
           "PULSE_EVENTS_PARTITIONS": str(partitions),
           "PULSE_WINDOW_SECONDS": str(settings.window_seconds),
           "PULSE_LATENESS_SECONDS": str(settings.lateness_seconds),
           "PULSE_EARLY_SECONDS": str(settings.early_seconds),
           "PULSE_EARLY_MAX_AGE_SECONDS": "0",   # recorded time is past: look early all the same
           "PULSE_CALENDAR": str(Path(settings.calendar_file).resolve())
           if settings.calendar_file else "",
           "PULSE_ALERTS_FILE": str((out / "alerts.jsonl").resolve()),
           "PULSE_DETECTORS_CONFIG": str(Path(config).resolve()) if config else "",
           "PULSE_FEEDBACK_PORT": "0",
           # recorded event time, a demo's accelerated clock included, may be past today's
           "PULSE_MAX_AHEAD_SECONDS": "0"}
    if slack:
        env["PULSE_NOTIFY_AFTER"] = "0"
    else:
        env["PULSE_NOTIFY_AFTER"] = FAR_FUTURE
        env.update({name: "" for name in SLACK_ENV})
    return env


async def _alerts_committed(bootstrap: str, settings: Settings) -> int:
    """Where the worker's group has committed on ``anomalies``: the alert agent commits there
    right after saving what it handled."""
    return (await start_offsets(bootstrap, settings.app_id, settings.topic("anomalies"),
                                [0]))[0]


async def _wait_done(view: _ReplayView, worker: WorkerProcess, settings: Settings,
                     bootstrap: str, end: float, tick: Any) -> None:
    last, last_change = view.kpis_closed, time.monotonic()
    while not (view.kpis_closed >= end and view.anomalies_closed >= end):
        _check(worker)
        if view.kpis_closed != last:
            last, last_change = view.kpis_closed, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            raise ReplayError(f"no window closed for {STALL_S:.0f} s (reached "
                              f"{iso_utc(max(last, 0.0))}, waiting for {iso_utc(end)}); "
                              f"worker log: {worker.log_path}")
        tick()
        await asyncio.sleep(0.1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    probe = orjson.dumps({"kind": "window_closed", "window_end_ts": end, "probe": "replay"})
    try:
        deadline = time.monotonic() + ALERTS_WAIT_S
        next_probe = 0.0
        while await _alerts_committed(bootstrap, settings) <= view.anomalies_closed_at:
            _check(worker)
            if time.monotonic() > deadline:
                raise ReplayError(f"the alert agent did not finish the last window within "
                                  f"{ALERTS_WAIT_S:.0f} s; worker log: {worker.log_path}")
            if time.monotonic() >= next_probe:
                await producer.send_and_wait(settings.topic("anomalies"), probe, key=b"window")
                next_probe = time.monotonic() + 1.2
            await asyncio.sleep(0.25)
    finally:
        await producer.stop()
    while time.monotonic() - view.last_alert_at < 0.5:   # the alerts topic, for the view
        await asyncio.sleep(0.1)


def _check(worker: WorkerProcess) -> None:
    if not worker.alive:
        raise ReplayError("the replay worker exited; its log ends with:\n" + worker.log_tail())


async def _count_dead_letters(bootstrap: str, topic: str) -> int:
    """Messages on the replay's dead-letter topic: the high watermark of a fetch (Tansu's
    ListOffsets counts record batches, not records; see pulse/record.py)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        consumer.seek(tp, start)
        deadline = time.monotonic() + 5.0
        while consumer.highwater(tp) is None and time.monotonic() < deadline:
            await consumer.getmany(tp, timeout_ms=200, max_records=1)
        return int((consumer.highwater(tp) or start) - start)
    finally:
        await consumer.stop()


async def _drop_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    """Delete a replay's topics from a shared broker (best effort)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def _replay(opts: ReplayOptions, settings: Settings, bootstrap: str, scan: FileScan,
                  shared_broker: bool) -> ReplayResult:
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    rid = uuid.uuid4().hex[:8]
    config = opts.config or settings.detectors_config or None
    env = worker_env(settings, rid, out, config, opts.slack, opts.partitions)
    rs = Settings.from_env(env)   # topic names of the replay's namespace
    window_s, lateness = float(settings.window_seconds), float(settings.lateness_seconds)
    start, end = scan.first_window_start, scan.last_window_end
    windows = round((end - start) / window_s)
    await ensure_topics(bootstrap, {**pipeline_topics(rs), rs.topic("events"): opts.partitions})
    data_dir = tempfile.mkdtemp(prefix=f"pulse-replay-{rid}-")
    worker = WorkerProcess(bootstrap, env=env, data_dir=data_dir, log_path=out / "worker.log")
    publisher = EventPublisher(bootstrap, rs.topic("events"))
    view = _ReplayView(bootstrap, rs, out)
    bar = ProgressBar("replay", quiet=opts.quiet)
    t0 = time.monotonic()
    details: dict[str, float] = {}

    def tick() -> None:
        done = max(0.0, view.kpis_closed - start) / (end - start)
        bar.update(done, publisher.sent, f"windows closed: {view.windows_seen}/{windows}")

    await publisher.start()
    view_task = asyncio.create_task(view.run())
    try:
        # A watermark on every partition before the worker starts: each partition then holds
        # the windows back until the worker has read it (stream/agents/kpis.py PartitionClock).
        await publisher.publish([], start)
        await publisher.flush()
        worker.start()
        feed = _Feed(scan)
        t = start
        wall0 = time.monotonic()
        while t < end:
            if opts.speed is None:
                nxt = min(end, t + window_s)
            else:
                await asyncio.sleep(TICK_S)
                nxt = min(end, start + (time.monotonic() - wall0) * opts.speed)
                if nxt <= t:
                    continue
            await publisher.publish(feed.until(nxt), nxt)
            t = nxt
            _check(worker)
            tick()
        await publisher.publish(feed.until(math.inf), end + lateness)
        await publisher.flush()
        details["publish_s"] = time.monotonic() - t0
        await _wait_done(view, worker, rs, bootstrap, end, tick)
        details["done_s"] = time.monotonic() - t0
        bar.update(1.0, publisher.sent, f"windows closed: {view.windows_seen}/{windows}",
                   force=True)
    finally:
        bar.close()
        await publisher.stop()
        view.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await view_task
        worker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    seconds = time.monotonic() - t0
    dead = await _count_dead_letters(bootstrap, rs.topic("dead-letters"))
    if shared_broker and not opts.keep_topics:
        with contextlib.suppress(Exception):
            await _drop_topics(bootstrap, (rs.topic_prefix, rs.app_id + "-"))
    changes = load_jsonl(out / "alerts.jsonl")
    incidents_path = Path(opts.incidents) if opts.incidents else (
        Path(opts.file).parent / "incidents.jsonl")
    incidents = load_jsonl(incidents_path) if incidents_path.exists() else None
    ignored = 0
    if incidents is not None:   # ground truth about other times is not for this file
        inside = [i for i in incidents
                  if float(i.get("start_ts", 0)) < end and float(i.get("end_ts", 0)) > start]
        ignored, incidents = len(incidents) - len(inside), inside
    summary = summarize(changes, incidents, window_s)
    result = ReplayResult(out, rid, publisher.sent, view.windows_seen, seconds, scan.problems,
                          changes, summary, dead, details=details)
    text = summary_text(summary, opts.title or f"Replay of {opts.file}")
    text += _run_notes(opts, result, scan, config,
                       incidents_path if incidents is not None else None, ignored)
    (out / "summary.md").write_text(text)
    if opts.chart:
        from pulse.replay_chart import render_timeline
        result.chart = render_timeline(opts.chart, load_jsonl(out / "kpis.jsonl"), changes,
                                       incidents, title=opts.title or f"Replay of {opts.file}")
    return result


def _run_notes(opts: ReplayOptions, r: ReplayResult, scan: FileScan, config: str | None,
               incidents: Path | None, ignored: int = 0) -> str:
    speed = "--max" if opts.speed is None else f"--speed {opts.speed:g}"
    lines = ["", "## Run", "",
             f"- file: {opts.file} ({r.events:,} events, {scan.lines:,} lines), "
             f"{iso_utc(scan.first_window_start)} .. {iso_utc(scan.last_window_end)}",
             f"- detector config: {config or 'the defaults (detectors/defaults.toml)'}",
             f"- {speed}: {r.windows} windows in {r.seconds:.1f} s "
             f"({r.events / max(r.seconds, 1e-9):,.0f} events/s); replay id {r.replay_id}",
             f"- ground truth: {incidents or 'none'}"
             + (f" ({ignored} incident(s) outside the file's time range left out)"
                if ignored else ""),
             f"- dead-lettered by the worker: {r.dead_letters}"]
    if scan.problems:
        lines.append(f"- skipped {len(scan.problems)} line problem(s):")
        lines += [f"  - {p}" for p in scan.problems[:MAX_PROBLEMS_SHOWN]]
        if len(scan.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"  - ... and {len(scan.problems) - MAX_PROBLEMS_SHOWN} more")
    return "\n".join(lines) + "\n"


def _scan(path: str, settings: Settings, quiet: bool) -> FileScan:
    if not Path(path).exists():
        raise ReplayInputError(f"no such file: {path}")
    try:
        scan = scan_file(path, settings.window_seconds)
    except (OSError, EOFError) as e:   # e.g. a truncated or non-gzip .gz
        raise ReplayInputError(f"cannot read {path}: {e}") from None
    for p in scan.problems[:MAX_PROBLEMS_SHOWN]:
        print(f"pulse replay: {path}: {p}; skipped", file=sys.stderr)
    if len(scan.problems) > MAX_PROBLEMS_SHOWN:
        print(f"pulse replay: {path}: ... and {len(scan.problems) - MAX_PROBLEMS_SHOWN} more "
              "problems (all listed in summary.md)", file=sys.stderr)
    if not scan.events:
        raise ReplayInputError(f"{path} holds no events")
    if not quiet:
        print(f"pulse replay: {path}: {scan.events:,} events, {iso_utc(scan.first_ts)} .. "
              f"{iso_utc(scan.last_ts)}", file=sys.stderr, flush=True)
    return scan


def _check_config(config: str | None) -> None:
    if not config:
        return
    from detectors import load_config
    try:
        load_config(config)
    except (OSError, ValueError) as e:
        raise ReplayInputError(f"detector config {config}: {e}") from None


def replay_file(opts: ReplayOptions, settings: Settings, broker: str | None = None,
                scan: FileScan | None = None) -> ReplayResult:
    """Replay ``opts.file`` on ``broker`` (None or empty: a fresh embedded broker)."""
    _check_config(opts.config)
    scan = scan or _scan(opts.file, settings, opts.quiet)
    if broker:
        return asyncio.run(_replay(opts, settings, broker, scan, shared_broker=True))
    with EmbeddedBroker() as b:
        return asyncio.run(_replay(opts, settings, b.bootstrap, scan, shared_broker=False))


def run_replay(opts: ReplayOptions, settings: Settings, broker: str = "") -> int:
    """``pulse replay``: exit 0, 1 when the replay failed, 2 on bad input."""
    try:
        _check_config(opts.config)
        scan = _scan(opts.file, settings, opts.quiet)
        r = replay_file(opts, settings, broker or None, scan)
    except ReplayError as e:
        print(f"pulse replay: {e}", file=sys.stderr)
        return e.exit_code
    print((r.out / "summary.md").read_text())
    print(f"pulse replay: wrote {r.out}/kpis.jsonl, anomalies.jsonl, alerts.jsonl, summary.md"
          + (f" and {r.chart}" if r.chart else ""))
    return 0


def run_compare(config_a: str, config_b: str, opts: ReplayOptions, settings: Settings,
                broker: str = "") -> int:
    """``pulse replay --compare A B FILE``: the file under both configurations, side by side."""
    name_a, name_b = Path(config_a).stem, Path(config_b).stem
    if name_a == name_b:
        name_a, name_b = f"A-{name_a}", f"B-{name_b}"
    try:
        _check_config(config_a)
        _check_config(config_b)
        scan = _scan(opts.file, settings, opts.quiet)
        results = []
        for name, config in ((name_a, config_a), (name_b, config_b)):
            chart = None
            if opts.chart:
                c = Path(opts.chart)
                chart = str(c.with_name(f"{c.stem}-{name}{c.suffix or '.png'}"))
            o = ReplayOptions(opts.file, str(Path(opts.out) / name), opts.speed, config,
                              opts.slack, chart, opts.incidents, opts.quiet,
                              f"Replay of {opts.file} with {config}", opts.partitions,
                              opts.keep_topics)
            if not opts.quiet:
                print(f"pulse replay: configuration {name} ({config})", file=sys.stderr)
            results.append(replay_file(o, settings, broker or None, scan))
    except ReplayError as e:
        print(f"pulse replay: {e}", file=sys.stderr)
        return e.exit_code
    table = (f"# {opts.file}: {name_a} vs {name_b}\n\n"
             + compare_table(results[0].summary, results[1].summary, name_a, name_b))
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    (Path(opts.out) / "compare.md").write_text(table)
    print(table)
    print(f"pulse replay: wrote {opts.out}/compare.md and {opts.out}/{name_a}/, "
          f"{opts.out}/{name_b}/")
    return 0
