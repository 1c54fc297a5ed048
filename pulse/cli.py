"""The ``pulse`` command: one entry point, a subcommand per job.

Settings come from the environment once (``Settings.from_env``); flags override them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
from collections.abc import Callable

from core.settings import Settings, SettingsError, describe_settings

__all__ = ["main", "build_parser"]


def _settings_epilog() -> str:
    rows = [f"  {env:<24} {doc} (default: {default or 'empty'})"
            for env, default, doc in describe_settings()]
    return "environment:\n" + "\n".join(rows)


def _scale(text: str) -> float:
    """``--scale``: a number that ``BusinessModel.scaled`` takes (its check, its message)."""
    from simulator import BusinessModel
    try:
        value = float(text)
        BusinessModel().scaled(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            str(e) if "scale" in str(e) else f"{text!r} is not a number") from None
    return value


def _one_of(what: str, names: tuple[str, ...]) -> Callable[[str], str]:
    """An argparse type: one of ``names``, else an error naming the closest one."""
    def check(text: str) -> str:
        if text in names:
            return text
        close = difflib.get_close_matches(text, names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; {hint}one of: "
                                         f"{', '.join(names)}")
    return check


def _scenario(text: str) -> str:
    from simulator.scenarios import SCENARIOS
    return _one_of("scenario", SCENARIOS)(text)


def _eval_scenario(text: str) -> str:
    from evaluation import SCENARIOS
    return _one_of("scenario", tuple(SCENARIOS))(text)


def _kpi(text: str) -> str:
    from kpis.formulas import KPI_BY_ID
    return _one_of("KPI", tuple(KPI_BY_ID))(text)


def _segment(text: str) -> str:
    from core.vocabulary import SEGMENTS
    return _one_of("segment", SEGMENTS)(text)


def _channel(text: str) -> str:
    from core.vocabulary import CHANNELS
    return _one_of("channel", CHANNELS)(text)


def _duration(text: str) -> str:
    from alerting.policies import parse_duration
    try:
        parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_kpi_sources(p: argparse.ArgumentParser) -> None:
    """Where ``ask`` and ``digest`` read the KPI state: files, or a broker's topics."""
    p.add_argument("--kpis", metavar="FILE", help="a kpis.jsonl (e.g. a demo's --out DIR)")
    p.add_argument("--alerts", metavar="FILE", help="alerts.jsonl (default: beside --kpis, "
                   "or the alerts topic)")
    p.add_argument("--broker", default="", help="read the kpis and alerts topics of this "
                   "broker (default: PULSE_KAFKA_BOOTSTRAP)")


def _add_business_flags(p: argparse.ArgumentParser) -> None:
    from simulator import DIFFICULTIES
    p.add_argument("--difficulty", default="normal", choices=DIFFICULTIES,
                   help="normal: large incidents (default); subtle: 10-25%% payment failures, "
                        "part of one channel's signups lost, small match drops, 30 min-3 h")
    p.add_argument("--scale", type=_scale, default=1.0, metavar="X",
                   help="a business X times bigger: users, signups, subscriptions (default 1)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pulse", description="JobMetrics Pulse: real-time business-KPI anomaly monitor.",
        epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="broker, worker and simulator in one command")
    demo.add_argument("--duration", type=float, default=None,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--scenario", default="mixed", type=_scenario,
                      help="incident scenario: none, payment-outage, signup-tracking-drop, "
                           "match-rate-regression, channel-traffic-surge, churn-spike, mixed")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--out", metavar="DIR", help="write events.jsonl, incidents.jsonl, "
                      "kpis.jsonl here (a new or empty directory)")
    demo.add_argument("--force", action="store_true",
                      help="with --out: remove a previous demo's files there first")
    demo.add_argument("--broker", default="", help="host:port of a Kafka to use instead of "
                      "the embedded broker")
    demo.add_argument("--history-days", type=float, default=42.0,
                      help="days of clean history published before the live part")
    demo.add_argument("--speed", type=float, default=1440.0,
                      help="simulated seconds per real second in the live part (1440: a day "
                           "per minute)")
    demo.add_argument("--quiet", action="store_true", help="no live KPI table")
    _add_business_flags(demo)

    worker = sub.add_parser("worker", help="run a stream worker (embedded broker if none set)")
    worker.add_argument("--broker", default="")

    brk = sub.add_parser(
        "broker", help="run an embedded Kafka-API broker until Ctrl-C or SIGTERM",
        description="Run an embedded Kafka-API broker (Tansu) on 127.0.0.1. It keeps "
        "everything in memory and nothing when it stops: every start is an empty broker with "
        "a new cluster id, and workers that saved state on an earlier one detect the reset "
        "and read the new one from its start. Past --max-mb of memory it is started again, "
        "empty, on the same port (Tansu has no retention of its own).")
    brk.add_argument("--port", type=int, default=0,
                     help="port to listen on (default: a free one)")
    brk.add_argument("--max-mb", type=int, default=None,
                     help="resident memory (MB) past which the broker starts again empty; "
                     "0: no limit (default: PULSE_BROKER_MAX_MB, else 1024)")

    sim = sub.add_parser("simulate", help="publish simulated events to a broker")
    sim.add_argument("--broker", default="")
    sim.add_argument("--scenario", default="none", type=_scenario)
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--days", type=float, default=7.0, help="simulated days to publish")
    sim.add_argument("--max", action="store_true", help="as fast as possible (load mode)")
    sim.add_argument("--speed", type=float, default=1440.0)
    sim.add_argument("--out", metavar="DIR", help="also write events.jsonl, incidents.jsonl")
    _add_business_flags(sim)

    detect = sub.add_parser("detect", help="score a timestamp,value CSV for anomalies")
    detect.add_argument("input", metavar="IN.csv")
    detect.add_argument("output", metavar="OUT.csv")
    detect.add_argument("--detector", default=None, help="detector name (default: the default)")
    bm = sub.add_parser("benchmark", help="score detectors on a folder of labelled CSVs "
                        "(timestamp,value,label): point-adjusted F1 and NAB score")
    bm.add_argument("dir", metavar="DIR", help="folder of labelled CSVs, searched recursively")
    bm.add_argument("--detector", action="append", default=[], metavar="NAME",
                    help="detector to score (repeat for several; 'all' for every one; "
                         "default: the default detector)")
    bm.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bm.add_argument("--totals", action="store_true", help="only the total lines, no per-file table")
    bm.add_argument("--quiet", action="store_true", help="no progress bar")
    ev = sub.add_parser("evaluate", help="score the detectors on every incident scenario")
    ev.add_argument("--seeds", type=int, default=5, help="seeds per scenario")
    ev.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ev.add_argument("--config", metavar="FILE", help="detector configuration (TOML)")
    ev.add_argument("--no-calendar", action="store_true",
                    help="do not tell the detectors the none scenario's known events")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--scenario", action="append", metavar="NAME", type=_eval_scenario,
                    help="only this scenario (repeatable; default all)")
    _add_business_flags(ev)

    sil = sub.add_parser("silence", help="mute alerts by KPI, segment or channel for a while")
    sil_sub = sil.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sil_sub.add_parser("add", help="add a silence")
    add.add_argument("--kpi", type=_kpi, help="a KPI id (docs/kpis.md), e.g. churn_rate")
    add.add_argument("--segment", type=_segment)
    add.add_argument("--channel", type=_channel)
    add.add_argument("--alert", dest="alert_id", help="an alert id from alerts.jsonl")
    add.add_argument("--duration", default="1h", type=_duration,
                     help="how long, with a unit: 30m, 2h, 1d (default 1h)")
    add.add_argument("--reason", default="")
    sil_sub.add_parser("list", help="list active silences")
    rm = sil_sub.add_parser("remove", help="remove a silence")
    rm.add_argument("id")

    rec = sub.add_parser("record", help="dump the events of an event-time range to a file")
    rec.add_argument("--from", dest="start", required=True, metavar="TIME",
                     help="first event time kept: ISO-8601 (2026-11-21T10:00:00Z) or epoch s")
    rec.add_argument("--to", dest="end", required=True, metavar="TIME",
                     help="event time where the range stops (excluded)")
    rec.add_argument("out", metavar="OUT", help="JSON Lines file (gzip when it ends in .gz)")
    rec.add_argument("--broker", default="", help="host:port (default: PULSE_KAFKA_BOOTSTRAP)")

    rep = sub.add_parser("replay", help="replay an events file through an isolated pipeline")
    rep.add_argument("file", metavar="FILE", help="events.jsonl or a `pulse record` file "
                     "(.gz too); incidents.jsonl beside it is the ground truth")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, metavar="X",
                      help="simulated seconds per real second")
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    rep.add_argument("--config", metavar="FILE", help="detector configuration (TOML)")
    rep.add_argument("--compare", nargs=2, metavar=("CONFIG_A", "CONFIG_B"),
                     help="replay under two detector configurations, side by side")
    rep.add_argument("--out", metavar="DIR", default=None,
                     help="output directory (default: replay-<file name>)")
    rep.add_argument("--broker", default="", help="host:port of a Kafka to replay on "
                     "(default: an embedded broker of its own)")
    rep.add_argument("--slack", action="store_true", help="post the replay's alerts to Slack")
    rep.add_argument("--chart", metavar="FILE.png", help="timeline of the main KPIs")
    rep.add_argument("--incidents", metavar="FILE", help="ground truth (default: "
                     "incidents.jsonl beside FILE)")
    rep.add_argument("--keep-topics", action="store_true", help="with --broker: leave the "
                     "replay's topics there (default: deleted at the end)")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")

    ask = sub.add_parser("ask", help="answer a question about the KPIs, from Pulse's numbers")
    ask.add_argument("question", help='e.g. "What\'s driving our churn rate?"')
    _add_kpi_sources(ask)
    alerts = sub.add_parser("alerts", help="list the open alerts: age, severity, KPI, scope")
    alerts.add_argument("--alerts", metavar="FILE", help="an alerts.jsonl (e.g. a demo's "
                        "--out DIR)")
    alerts.add_argument("--broker", default="", help="read the alerts topic of this broker "
                        "(default: PULSE_KAFKA_BOOTSTRAP)")
    dig = sub.add_parser("digest", help="print the daily digest of a day from the KPI state")
    dig.add_argument("--day", metavar="DATE", help="UTC day, YYYY-MM-DD (default: the last "
                     "day that has ended)")
    _add_kpi_sources(dig)
    dig.add_argument("--json", action="store_true", help="the digest document as JSON")
    dig.add_argument("--chart", metavar="FILE.png", help="also draw the seven-day chart")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        sys.exit(f"pulse: {e}")
    handler = _COMMANDS[args.command]
    sys.exit(handler(args, settings))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.demo import DemoOptions, run_demo
    return run_demo(DemoOptions(duration=args.duration, scenario=args.scenario, seed=args.seed,
                                out=args.out, broker=args.broker,
                                history_days=args.history_days, speed=args.speed,
                                quiet=args.quiet, difficulty=args.difficulty,
                                scale=args.scale, force=args.force), settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream.broker import EmbeddedBroker, embedded_worker_env
    from stream.worker_process import die_with_parent
    bootstrap = args.broker or settings.kafka_bootstrap
    broker = None
    if not bootstrap:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
        print(f"pulse worker: embedded broker at {bootstrap}", flush=True)
    env = dict(os.environ, PULSE_KAFKA_BOOTSTRAP=bootstrap)
    if broker is not None:
        embedded_worker_env(env)
    import subprocess
    proc = subprocess.Popen([sys.executable, "-m", "stream.worker"], env=env,
                            preexec_fn=die_with_parent)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        return proc.wait()
    finally:
        if broker is not None:
            broker.stop()


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from stream.broker import BrokerError, EmbeddedBroker

    # SIGTERM stops it like Ctrl-C. The handler only sets a flag: an exception raised from a
    # signal handler can land between a lock's acquire and its release (the broker's lock, in
    # ``running``) and leave it held, so ``stop`` would wait for it forever.
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.set())
    broker = EmbeddedBroker(port=args.port or None, max_mb=args.max_mb)
    try:
        broker.start()
    except BrokerError as e:
        print(f"pulse broker: error: {e}", file=sys.stderr)
        return 1
    try:
        print(f"pulse broker: listening on {broker.bootstrap}, cluster {broker.cluster_id}; "
              "memory only, nothing kept when it stops (Ctrl-C stops it)", flush=True)
        while not stopping.wait(0.5):
            if not broker.running:
                print("pulse broker: the broker exited", file=sys.stderr)
                return 1
        return 0
    finally:
        broker.stop()


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.simulate import run_simulate
    return run_simulate(args, settings)


def _detect(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.csvscore import describe_stats, score_csv
    try:
        stats = score_csv(args.input, args.output, args.detector)
    except (ValueError, OSError) as e:
        print(f"pulse detect: error: {e}", file=sys.stderr)
        return 2
    print(describe_stats(stats), file=sys.stderr)
    return 0


def _benchmark(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.benchmark import run
    return run(args.dir, args.detector, args.json, per_file=not args.totals, quiet=args.quiet)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from evaluation import SCENARIOS
    from pulse.evaluate import run
    return run(args.seeds, args.json, args.config, not args.quiet,
               scenarios=args.scenario or SCENARIOS, difficulty=args.difficulty,
               scale=args.scale, calendar=not args.no_calendar)


def _silence(args: argparse.Namespace, settings: Settings) -> int:
    from alerting.silence import add_silence, describe_silence, list_silences, remove_silence
    if args.action == "add":
        try:
            s = add_silence(settings.data_dir, duration=args.duration, kpi=args.kpi,
                            segment=args.segment, channel=args.channel, alert_id=args.alert_id,
                            reason=args.reason)
        except ValueError as e:
            print(f"pulse silence: {e}", file=sys.stderr)
            return 2
        print(f"silenced: {describe_silence(s)}")
    elif args.action == "list":
        active = list_silences(settings.data_dir)
        for s in active:
            print(describe_silence(s))
        if not active:
            print(f"no active silences in {settings.data_dir}")
    else:
        if not remove_silence(settings.data_dir, args.id):
            print(f"pulse silence: no silence {args.id!r}; `pulse silence list` shows them",
                  file=sys.stderr)
            return 2
        print(f"removed {args.id}")
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.ask import run_ask
    return run_ask(args.question, args.kpis, args.alerts, args.broker, settings)


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.ask import run_alerts
    return run_alerts(args.alerts, args.broker, settings)


def _digest(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.digest import run_digest
    return run_digest(args.day, args.kpis, args.alerts, args.broker, args.json, args.chart,
                      settings)


def _record(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.record import run_record
    return run_record(args.start, args.end, args.out, args.broker, settings)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from pulse.replay import ReplayOptions, run_compare, run_replay
    if args.speed is not None and not args.speed > 0:
        print("pulse replay: --speed must be > 0", file=sys.stderr)
        return 2
    name = Path(args.file).name.split(".")[0]
    out = args.out or f"replay-{name}"
    opts = ReplayOptions(args.file, out, speed=args.speed, config=args.config,
                         slack=args.slack, chart=args.chart, incidents=args.incidents,
                         quiet=args.quiet, keep_topics=args.keep_topics)
    if args.compare:
        if args.config:
            print("pulse replay: give --config or --compare, not both", file=sys.stderr)
            return 2
        return run_compare(args.compare[0], args.compare[1], opts, settings, args.broker)
    return run_replay(opts, settings, args.broker)


_COMMANDS = {"demo": _demo, "worker": _worker, "broker": _broker, "simulate": _simulate,
             "detect": _detect, "benchmark": _benchmark, "evaluate": _evaluate,
             "silence": _silence, "ask": _ask, "alerts": _alerts,
             "record": _record, "replay": _replay, "digest": _digest}


if __name__ == "__main__":
    main()
