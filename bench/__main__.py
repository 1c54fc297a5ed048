"""``make bench``: measure one worker on the embedded broker and write bench/results.json.

Not part of ``make test``: numbers depend on the machine, so they are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench.alert_latency import measure_alert_latency
from bench.detect import measure_detect
from bench.replay import measure_replay
from bench.startup import measure_startup
from bench.throughput import measure_throughput
from stream.broker import EmbeddedBroker

TARGETS = {"events_per_s": (">=", 30_000), "ratio": (">=", 0.5),
           "alert_latency_p95_s": ("<=", 2.0), "startup_s": ("<=", 10.0),
           "restart_s": ("<=", 15.0), "peak_rss_mb": ("<=", 400.0),
           "detect_rows_per_s": (">=", 20_000)}


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, CPython {platform.python_version()}")


def table(results: dict[str, Any]) -> str:
    rows = ["| metric | value | target |", "|---|---|---|"]
    for key, value in results.items():
        if key in ("machine", "date"):
            continue
        op, target = TARGETS.get(key, ("", ""))
        verdict = ""
        if op:
            ok = value >= target if op == ">=" else value <= target
            verdict = f"{op} {target} {'met' if ok else 'MISSED'}"
        rows.append(f"| `{key}` | {value:,} | {verdict} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--days", type=float, default=84.0,
                   help="simulated days for the throughput run (84 is ~1,000,000 events)")
    p.add_argument("--live-s", type=float, default=120.0, help="live seconds for alert latency")
    p.add_argument("--replay-events", type=int, default=1_000_000)
    p.add_argument("--out", default="bench/results.json")
    args = p.parse_args()
    results: dict[str, Any] = {"machine": machine(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print("pulse detect on 100,000 rows ...", flush=True)
    results.update(measure_detect())
    with EmbeddedBroker() as broker:
        print("throughput and memory ...", flush=True)
        results.update(measure_throughput(broker.bootstrap, days=args.days))
        print("start-up and restart ...", flush=True)
        results.update(measure_startup(broker.bootstrap))
        print("alert latency (window close -> Slack post) ...", flush=True)
        results.update(measure_alert_latency(broker.bootstrap, live_s=args.live_s))
        print(f"pulse replay --max of {args.replay_events:,} events ...", flush=True)
        results["replay_events_per_s"] = round(measure_replay(broker.bootstrap,
                                                              args.replay_events))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nmachine: {results['machine']}\n")
    print(table(results))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
