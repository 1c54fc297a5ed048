"""``pulse simulate``: publish simulated events to a broker, paced or at full speed."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import orjson

from simulator import BusinessModel, Simulation
from simulator.publisher import ensure_topics, publish_simulation
from stream.broker import EmbeddedBroker
from stream.settings import Settings

__all__ = ["run_simulate"]

DAY = 86400.0


async def _run(args: argparse.Namespace, settings: Settings, bootstrap: str) -> int:
    start = (time.time() - args.days * DAY) // 3600 * 3600
    end = start + args.days * DAY
    sim = Simulation(args.seed, start, args.scenario, (start + DAY, end - 3600),
                     model=BusinessModel().scaled(args.scale), difficulty=args.difficulty)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "incidents.jsonl", "wb") as f:
            for inc in sim.incidents:
                f.write(orjson.dumps(inc.to_json()) + b"\n")
    await ensure_topics(bootstrap, {settings.topic("events"): settings.events_partitions})
    sink = open(out / "events.jsonl", "wb") if out else None  # noqa: SIM115
    t0 = time.monotonic()
    try:
        pub = await publish_simulation(
            bootstrap, settings.topic("events"), sim, start, end,
            speed=None if args.max else args.speed, watermark=end + settings.lateness_seconds,
            sink=sink)
    finally:
        if sink:
            sink.close()
    took = time.monotonic() - t0
    print(f"pulse simulate: {pub.sent:,} events in {took:.1f} s "
          f"({pub.sent / max(took, 1e-9):,.0f} events/s) to {settings.topic('events')} "
          f"at {bootstrap}", flush=True)
    return 0


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = args.broker or settings.kafka_bootstrap
    if bootstrap:
        return asyncio.run(_run(args, settings, bootstrap))
    with EmbeddedBroker() as broker:
        print(f"pulse simulate: no broker set; embedded broker at {broker.bootstrap} "
              "(it stops when this command ends)", flush=True)
        return asyncio.run(_run(args, settings, broker.bootstrap))
