"""``make bench``: measure one worker and write bench/results.json.

On the embedded broker by default; ``--broker kafka`` measures the same on a single-node Apache
Kafka (deploy/kafka/cluster.py, the version ``make test-kafka`` runs), ``--broker both`` on each,
side by side (``make bench ARGS="--broker both"``). The embedded numbers stay at the top level of
results.json; Kafka's are under ``"kafka"``.

Not part of ``make test``: numbers depend on the machine, so they are reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.alert_latency import measure_alert_latency
from bench.detect import measure_detect
from bench.kafka import single_node
from bench.replay import measure_replay
from bench.startup import measure_startup
from bench.throughput import measure_throughput
from stream.broker import EmbeddedBroker

TARGETS: dict[str, tuple[str, float]] = {"events_per_s": (">=", 30_000), "ratio": (">=", 0.5),
           "alert_latency_p95_s": ("<=", 2.0), "startup_s": ("<=", 10.0),
           "restart_s": ("<=", 15.0), "peak_rss_mb": ("<=", 400.0),
           "detect_rows_per_s": (">=", 20_000)}


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, CPython {platform.python_version()}")


NOT_METRICS = ("machine", "date", "kafka", "kafka_version")


def _verdict(key: str, value: Any) -> str:
    if key not in TARGETS or not isinstance(value, int | float):
        return ""
    op, target = TARGETS[key]
    ok = value >= target if op == ">=" else value <= target
    return "met" if ok else "MISSED"


def table(results: dict[str, Any]) -> str:
    """The README's bench table: one column per broker measured, the target, and a verdict
    per column."""
    kafka: dict[str, Any] = results.get("kafka") or {}
    embedded = any(k not in NOT_METRICS and k != "detect_rows_per_s" for k in results)
    heads = [*(["embedded"] if embedded else []),
             *([f"Kafka {results.get('kafka_version', '')}".strip()] if kafka else [])]
    rows = [f"| metric | {' | '.join(heads)} | target |", "|---|" + "---|" * (len(heads) + 1)]
    keys = [k for k in results if k not in NOT_METRICS]
    keys += [k for k in kafka if k not in results]
    for key in keys:
        cells = []
        for column in ([results] if embedded else []) + ([kafka] if kafka else []):
            # the detectors need no broker: measured once, shown in the first column
            value = column.get(key, None if embedded else results.get(key))
            cells.append("" if value is None else f"{value:,} {_verdict(key, value)}".strip())
        goal = f"{TARGETS[key][0]} {TARGETS[key][1]:,}" if key in TARGETS else ""
        rows.append(f"| `{key}` | {' | '.join(cells)} | {goal} |")
    return "\n".join(rows)


def _measure_on(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything measured against a broker (the detectors alone need none)."""
    out: dict[str, Any] = {}
    print("throughput and memory ...", flush=True)
    out.update(measure_throughput(bootstrap, days=args.days))
    print("start-up and restart ...", flush=True)
    out.update(measure_startup(bootstrap))
    print("alert latency (window close -> Slack post) ...", flush=True)
    out.update(measure_alert_latency(bootstrap, live_s=args.live_s))
    print(f"pulse replay --max of {args.replay_events:,} events ...", flush=True)
    out["replay_events_per_s"] = round(measure_replay(bootstrap, args.replay_events))
    return out


@contextlib.contextmanager
def _kafka() -> Iterator[tuple[str, str]]:
    """A single-node Apache Kafka from deploy/kafka/cluster.py: (bootstrap, version)."""
    with single_node() as c:
        yield c.bootstrap, c.version


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--days", type=float, default=84.0,
                   help="simulated days for the throughput run (84 is ~1,000,000 events)")
    p.add_argument("--live-s", type=float, default=120.0, help="live seconds for alert latency")
    p.add_argument("--replay-events", type=int, default=1_000_000)
    p.add_argument("--out", default="bench/results.json")
    p.add_argument("--broker", choices=["embedded", "kafka", "both"], default="embedded",
                   help="which broker to measure on (kafka: a single-node Apache Kafka from "
                        "Maven Central, needs java 17+ and mvn as for make test-kafka)")
    args = p.parse_args()
    results: dict[str, Any] = {"machine": machine(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print("pulse detect on 100,000 rows ...", flush=True)
    results.update(measure_detect())
    if args.broker in ("embedded", "both"):
        # no memory bound: a restart of the broker would empty the topics being measured
        with EmbeddedBroker(max_mb=0) as broker:
            results.update(_measure_on(broker.bootstrap, args))
    if args.broker in ("kafka", "both"):
        with _kafka() as (bootstrap, version):
            results["kafka_version"] = version
            results["kafka"] = _measure_on(bootstrap, args)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nmachine: {results['machine']}\n")
    print(table(results))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
