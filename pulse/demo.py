"""``pulse demo``: broker, worker, simulator and a live KPI view in one command.

The demo starts from history (shared/DESIGN.md): it first publishes several weeks of clean
simulated events as fast as it can — through the same topic, windows and detectors — so that the
KPIs are mature and the detectors have learned a normal week; then it switches to the accelerated
live clock (default one simulated day per real minute) and places the scenario's incidents there.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from core.timefmt import human_utc
from detectors.calendar import write_calendar
from pulse.kpi_view import KpiView
from pulse.progress import ProgressBar
from simulator import BusinessModel, Simulation
from simulator.publisher import EventPublisher, run_clock
from stream.broker import EmbeddedBroker
from stream.settings import Settings
from stream.topics import ensure_topics, pipeline_topics
from stream.worker_process import WorkerProcess

__all__ = ["DemoOptions", "run_demo"]

HOUR, DAY = 3600.0, 86400.0
STOP_MARGIN_S = 6.0   # wall seconds kept at the end of --duration to close windows and stop
_CALENDAR_HEADER = ("Known events the demo's simulator placed (docs/calendar.md); the worker reads "
                    "this file\n(PULSE_CALENDAR) and re-reads it when it changes.")


@dataclass
class DemoOptions:
    duration: float | None = None      # wall seconds; None runs until interrupted
    scenario: str = "mixed"
    seed: int = 42
    out: str | None = None
    broker: str = ""
    history_days: float = 42.0
    speed: float = 1440.0              # simulated seconds per real second
    start_ts: float | None = None      # event time where history starts (default: 42 d ago)
    quiet: bool = False
    difficulty: str = "normal"         # simulator.DIFFICULTIES
    scale: float = 1.0                 # size of the business (BusinessModel.scaled)
    force: bool = False                # --out: remove a previous run's files first


OUT_FILES = ("events.jsonl", "incidents.jsonl", "calendar.toml", "kpis.jsonl", "anomalies.jsonl",
             "alerts.jsonl", "digest.jsonl", "worker.log")
"""What a demo writes to ``--out DIR`` (plus ``digest-<day>.png``)."""


class OutDirError(ValueError):
    """``--out DIR`` cannot take this run."""


def prepare_out(out: Path, force: bool = False) -> None:
    """Make ``out`` ready for a new run that never mixes with an old one: a new or empty
    directory, or (``force``) one whose Pulse files are removed first. Anything else in it is
    left alone, and refused without ``force``."""
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out {out} is a file; give a directory")
    if not out.exists():
        out.mkdir(parents=True)
        return
    ours = [p for p in out.iterdir() if p.name in OUT_FILES
            or (p.name.startswith("digest-") and p.suffix == ".png")]
    if not force:
        if any(out.iterdir()):
            raise OutDirError(
                f"--out {out} is not empty ({len(list(out.iterdir()))} entries"
                + (", a previous demo's files" if ours else "")
                + "); give a new or empty directory, or add --force to remove Pulse's files "
                  "there first")
        return
    for p in ours:
        p.unlink()


def _say(msg: str) -> None:
    """A status line; on a terminal wrapped at words to its width."""
    if sys.stdout.isatty():
        cols = shutil.get_terminal_size((100, 24)).columns - 1
        msg = "\n".join(textwrap.fill(ln, cols, subsequent_indent="  ",
                                       break_on_hyphens=False) for ln in msg.splitlines())
    print(msg, flush=True)


async def _wait_for_worker(view: KpiView, worker: WorkerProcess, until: float) -> None:
    while time.monotonic() < until:
        _check_worker(worker)
        if view.windows_seen:
            return
        await asyncio.sleep(0.2)


async def _demo(opts: DemoOptions, settings: Settings, bootstrap: str) -> int:
    out = Path(opts.out) if opts.out else None
    t_launch = time.monotonic()
    deadline = None if opts.duration is None else t_launch + opts.duration
    await ensure_topics(bootstrap, pipeline_topics(settings))
    now = time.time()
    history_start = opts.start_ts if opts.start_ts is not None else (
        (now - opts.history_days * DAY) // HOUR * HOUR)
    live_start = history_start + opts.history_days * DAY
    # the calendar of the known events the simulator places (scenario none); empty until then,
    # the worker re-reads it when it changes
    cal_dir = out if out else Path(tempfile.mkdtemp(prefix="pulse-demo-"))
    calendar_path = cal_dir / "calendar.toml"
    write_calendar(calendar_path, [], _CALENDAR_HEADER)
    worker = WorkerProcess(bootstrap, metrics_port=settings.metrics_port or None,
                           log_path=(out / "worker.log") if out else None,
                           env={"PULSE_TOPIC_PREFIX": settings.topic_prefix,
                                "PULSE_EVENTS_PARTITIONS": str(settings.events_partitions),
                                "PULSE_WINDOW_SECONDS": str(settings.window_seconds),
                                "PULSE_LATENESS_SECONDS": str(settings.lateness_seconds),
                                "PULSE_EARLY_SECONDS": str(settings.early_seconds),
                                "PULSE_CALENDAR": str(calendar_path),
                                "PULSE_NOTIFY_AFTER": str(int(live_start)),
                                # the live phase runs simulated days a minute, ahead of the clock
                                "PULSE_MAX_AHEAD_SECONDS": "0",
                                **({"PULSE_ALERTS_FILE": str(out / "alerts.jsonl"),
                                    "PULSE_DIGEST_FILE": str(out / "digest.jsonl")}
                                   if out else {})})
    worker.start()
    _say(f"pulse demo: broker {bootstrap}, metrics http://127.0.0.1:{worker.metrics_port}/metrics")
    _say(f"page: http://127.0.0.1:{worker.web_port}/ (Overview, Funnel, Cohorts, Alerts, Ask)")
    sim = Simulation(opts.seed, history_start, "none", model=BusinessModel().scaled(opts.scale),
                     difficulty=opts.difficulty)
    events_file: IO[bytes] | None = open(out / "events.jsonl", "wb") if out else None  # noqa: SIM115
    view = KpiView(bootstrap, settings.topic("kpis"),
                   out_path=(out / "kpis.jsonl") if out else None,
                   anomalies_topic=settings.topic("anomalies"),
                   anomalies_path=(out / "anomalies.jsonl") if out else None,
                   alerts_topic=settings.topic("alerts"), quiet=opts.quiet, started=t_launch)
    publisher = EventPublisher(bootstrap, settings.topic("events"), sink=events_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await publisher.start()
    view_task = asyncio.create_task(view.run())
    reached = history_start
    try:
        _say(f"history: {opts.history_days:g} clean days from {human_utc(history_start)}, "
             "at full speed ...")
        t_hist = time.monotonic()

        bar = ProgressBar("history", stream=sys.stdout, quiet=opts.quiet)

        def history_tick(t: float) -> None:
            bar.update((t - history_start) / (live_start - history_start), publisher.sent,
                       f"windows closed: {view.windows_seen}")

        reached = await run_clock(sim, publisher, history_start, live_start, speed=None,
                                  on_tick=history_tick, should_stop=stop.is_set)
        bar.close()
        _say(f"history: {publisher.sent:,} events in {time.monotonic() - t_hist:.1f} s; "
             f"live now, {opts.speed / 1440:g} simulated day(s) a minute")
        await _wait_for_worker(view, worker, time.monotonic() + 60)
        if deadline is None:
            live_end = float("inf")
            live_span = 14 * DAY
        else:
            live_span = max(0.0, deadline - time.monotonic() - STOP_MARGIN_S) * opts.speed
            live_end = live_start + live_span
        _plan_incidents(sim, opts.scenario, live_start, live_span)
        if sim.benign:
            write_calendar(calendar_path, sim.calendar(), _CALENDAR_HEADER)
            for b in sim.benign:
                doc = b.to_json()
                what = f"{b.name or b.kind}" + (f" on {b.channel}" if b.channel != "all" else "")
                _say(f"  not an incident, ahead: {b.kind} {what} ({doc['start']} .. {doc['end']})")
        view.live = True
        reached = await run_clock(
            sim, publisher, live_start, live_end, speed=opts.speed,
            should_stop=lambda: stop.is_set() or (deadline is not None
                                                  and time.monotonic() > deadline - STOP_MARGIN_S),
            on_tick=lambda t: _check_worker(worker))
        # close every window: end on a window boundary and announce it with the lateness
        end = -(-reached // settings.window_seconds) * settings.window_seconds
        await publisher.publish(sim.advance(end), end + settings.lateness_seconds)
        reached = end
        await view.wait_for_window_end(end, timeout=15)
        await asyncio.sleep(1.0)   # the last window's anomalies and alert changes
    finally:
        await publisher.stop()
        view.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await view_task
        code = worker.stop()
        if events_file:
            events_file.close()
        if out:
            with open(out / "incidents.jsonl", "wb") as f:
                for inc in sim.incidents:
                    if inc.start < reached:
                        f.write(orjson.dumps(inc.to_json()) + b"\n")
    _say(f"pulse demo: {publisher.sent:,} events, {view.windows_seen} windows closed, "
         f"{view.lines_written:,} KPI values, {view.anomalies_seen} anomalies, "
         f"{len(view.alert_changes)} alert changes; worker exited with {code}; "
         f"first KPIs {view.first_kpi_after:.1f} s after start." if view.first_kpi_after
         else f"pulse demo: {publisher.sent:,} events; no KPI window closed.")
    if out:
        _say(f"pulse demo: wrote {out}/events.jsonl, incidents.jsonl, calendar.toml, kpis.jsonl, "
             "anomalies.jsonl, alerts.jsonl, digest.jsonl")
    return 0 if view.windows_seen else 1


def _plan_incidents(sim: Simulation, scenario: str, live_start: float, live_span: float) -> None:
    """Incidents go in the live part, after two clean hours and an hour before its end; so do
    the ``none`` scenario's things that look like incidents but are not (a holiday, a campaign,
    a trend, a gap, late events)."""
    if scenario == "none":
        if live_span > 3 * HOUR:
            sim.plan("none", (live_start + 2 * HOUR, live_start + live_span - HOUR))
        return
    try:
        incidents = sim.plan(scenario, (live_start + 2 * HOUR, live_start + live_span - HOUR))
    except ValueError as e:
        _say(f"pulse demo: no incident placed ({e}); give a longer --duration.")
        return
    for inc in incidents:
        doc = inc.to_json()
        _say(f"  incident ahead: {inc.description} ({doc['start']} .. {doc['end']})")


def _check_worker(worker: WorkerProcess) -> None:
    if not worker.alive:
        raise RuntimeError("the stream worker exited; its log ends with:\n" + worker.log_tail())


def run_demo(opts: DemoOptions, settings: Settings) -> int:
    bootstrap = opts.broker or settings.kafka_bootstrap
    broker: EmbeddedBroker | None = None
    if opts.out:   # before anything starts
        try:
            prepare_out(Path(opts.out), opts.force)
        except (OutDirError, OSError) as e:
            print(f"pulse demo: {e}", file=sys.stderr)
            return 2
    try:
        if not bootstrap:
            broker = EmbeddedBroker().start()
            bootstrap = broker.bootstrap
        return asyncio.run(_demo(opts, settings, bootstrap))
    except RuntimeError as e:
        print(f"pulse demo: {e}", file=sys.stderr)
        return 1
    finally:
        if broker is not None:
            broker.stop()
