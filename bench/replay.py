"""Replay throughput: events per second of ``pulse replay --max`` over a simulated file.

Part of ``make bench`` (bench/__main__.py); ``python -m bench.replay [N_EVENTS]`` runs it alone
(on ``PULSE_KAFKA_BOOTSTRAP``, or on a fresh embedded broker).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

from core.settings import Settings
from simulator import Simulation

__all__ = ["BENCH_START", "measure_replay", "write_simulated_file"]

BENCH_START = 1_790_000_000 // 3600 * 3600


def write_simulated_file(path: str | Path, n_events: int, seed: int = 1,
                         start: float = BENCH_START, scenario: str = "none") -> int:
    """Write at least ``n_events`` simulated events (whole hours) as events.jsonl."""
    sim = Simulation(seed, start, scenario)
    n = 0
    t = start
    with open(path, "wb") as f:
        while n < n_events:
            t += 3600.0
            events = sim.advance(t)
            if events:
                f.write(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
            n += len(events)
    return n


def measure_replay(bootstrap_or_none: str | None, n_events: int = 1_000_000,
                   progress: bool = True) -> float:
    """Events per second of a ``--max`` replay of an ``n_events`` simulated file (~84 days for
    1,000,000), from the start of the replay to its last alert; the file is written first, not
    timed. On ``bootstrap_or_none``, or on a fresh embedded broker."""
    from pulse.replay import ReplayOptions, replay_file

    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="pulse-bench-replay-") as tmp:
        path = Path(tmp) / "events.jsonl"
        n = write_simulated_file(path, n_events)
        t0 = time.monotonic()
        r = replay_file(ReplayOptions(str(path), str(Path(tmp) / "out"), quiet=not progress),
                        settings, bootstrap_or_none)
        took = time.monotonic() - t0
    if progress:
        print(f"  replay --max: {n:,} events, {r.windows} windows, {len(r.summary.alerts)} "
              f"alerts in {took:.1f} s ({n / took:,.0f} events/s; published in "
              f"{r.details.get('publish_s', 0):.1f} s)", flush=True)
    return n / took


if __name__ == "__main__":   # python -m bench.replay [N_EVENTS]: the throughput measurement
    n_arg = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rate = measure_replay(os.environ.get("PULSE_KAFKA_BOOTSTRAP") or None, n_arg)
    print(f"replay_events_per_s: {rate:,.0f}")
