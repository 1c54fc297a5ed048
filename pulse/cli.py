"""The ``pulse`` command: one entry point, a subcommand per job.

Settings come from the environment once (``Settings.from_env``); flags override them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from stream.settings import Settings, SettingsError, describe_settings

__all__ = ["main", "build_parser"]


def _settings_epilog() -> str:
    rows = [f"  {env:<24} {doc} (default: {default or 'empty'})"
            for env, default, doc in describe_settings()]
    return "environment:\n" + "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pulse", description="JobMetrics Pulse: real-time business-KPI anomaly monitor.",
        epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="broker, worker and simulator in one command")
    demo.add_argument("--duration", type=float, default=None,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--scenario", default="mixed",
                      help="incident scenario: none, payment-outage, signup-tracking-drop, "
                           "match-rate-regression, channel-traffic-surge, churn-spike, mixed")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--out", metavar="DIR", help="write events.jsonl, incidents.jsonl, "
                      "kpis.jsonl here")
    demo.add_argument("--broker", default="", help="host:port of a Kafka to use instead of "
                      "the embedded broker")
    demo.add_argument("--history-days", type=float, default=35.0,
                      help="days of clean history published before the live part")
    demo.add_argument("--speed", type=float, default=1440.0,
                      help="simulated seconds per real second in the live part (1440: a day "
                           "per minute)")
    demo.add_argument("--quiet", action="store_true", help="no live KPI table")

    worker = sub.add_parser("worker", help="run a stream worker (embedded broker if none set)")
    worker.add_argument("--broker", default="")

    sub.add_parser("broker", help="run an embedded Kafka-API broker until Ctrl-C")

    sim = sub.add_parser("simulate", help="publish simulated events to a broker")
    sim.add_argument("--broker", default="")
    sim.add_argument("--scenario", default="none")
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--days", type=float, default=7.0, help="simulated days to publish")
    sim.add_argument("--max", action="store_true", help="as fast as possible (load mode)")
    sim.add_argument("--speed", type=float, default=1440.0)
    sim.add_argument("--out", metavar="DIR", help="also write events.jsonl, incidents.jsonl")

    detect = sub.add_parser("detect", help="score a timestamp,value CSV for anomalies")
    detect.add_argument("input", metavar="IN.csv")
    detect.add_argument("output", metavar="OUT.csv")
    detect.add_argument("--detector", default=None, help="detector name (default: the default)")
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
                                quiet=args.quiet), settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.worker_process import die_with_parent
    from stream.broker import EmbeddedBroker
    bootstrap = args.broker or settings.kafka_bootstrap
    broker = None
    if not bootstrap:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
        print(f"pulse worker: embedded broker at {bootstrap}", flush=True)
    env = dict(os.environ, PULSE_KAFKA_BOOTSTRAP=bootstrap)
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
    from stream.broker import EmbeddedBroker
    with EmbeddedBroker() as broker:
        print(f"pulse broker: listening on {broker.bootstrap} (Ctrl-C stops it)", flush=True)
        try:
            while broker.process and broker.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from pulse.simulate import run_simulate
    return run_simulate(args, settings)


def _detect(args: argparse.Namespace, settings: Settings) -> int:
    from detectors import csvscore
    argv = [args.input, args.output] + (["--detector", args.detector] if args.detector else [])
    return int(csvscore.main(argv) or 0)


_COMMANDS = {"demo": _demo, "worker": _worker, "broker": _broker, "simulate": _simulate,
             "detect": _detect}


if __name__ == "__main__":
    main()
