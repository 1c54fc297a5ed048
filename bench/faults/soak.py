"""The soak: a worker at a steady rate for N minutes, its and the broker's memory sampled.

On a broker of its own (so the other rows' data is not in its memory), two days of history go
in at full speed, then the simulation (``mixed`` incidents) runs at one simulated day per
minute, about 200 events a second. The worker's and the broker's resident memory are sampled
every 10 s; the growth is the mean of the last three samples over the mean of the three at the
end of the warm-up (the first third of the soak). At the end, windows and alerts are measured
as in every row.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.faults.harness import DAY, HOUR, START, FaultySlack, Rig, rss_mb
from simulator import Simulation
from simulator.publisher import EventPublisher, run_clock
from stream.broker import EmbeddedBroker

__all__ = ["SoakRow", "soak"]

SPEED = 1440.0   # simulated seconds per second: a day a minute
SAMPLE_S = 10.0


async def soak(minutes: float) -> dict[str, Any]:
    own = EmbeddedBroker(max_mb=0).start()   # no bound: its growth is what is measured
    try:
        async with FaultySlack() as slack:
            rig = await Rig(own.bootstrap, "soak", slack=slack).setup()
            sim = Simulation(seed=12, start_ts=START, scenario="none")
            live = START + 2 * DAY
            span = minutes * 60 * SPEED
            sim.plan("mixed", (live + 2 * HOUR, live + span - HOUR))
            samples: list[tuple[float, float | None, float | None]] = []
            try:
                w = rig.start_worker()
                await rig.publish(sim, START, live)
                pub = EventPublisher(rig.bootstrap, rig.topic("events"))
                await pub.start()
                orig = pub.publish

                async def publish(events: list[dict[str, Any]], watermark: float) -> None:
                    rig.produced.extend(events)
                    await orig(events, watermark)

                pub.publish = publish  # type: ignore[method-assign]
                history = len(rig.produced)
                t0 = time.monotonic()
                nxt = [t0]

                def sample(_: float) -> None:
                    if time.monotonic() >= nxt[0]:
                        nxt[0] += SAMPLE_S
                        samples.append((round(time.monotonic() - t0, 1),
                                        rss_mb(w.process.pid if w.process else None),
                                        rss_mb(own.process.pid if own.process else None)))

                try:
                    await run_clock(sim, pub, live, live + span, speed=SPEED, on_tick=sample)
                finally:
                    await pub.stop()
                steady_s = time.monotonic() - t0
                steady = len(rig.produced) - history
                rig.events_end = live + span
                await rig.watermark(live + span + 600)
                kpis = await rig.kpis_until_closed(live + span, timeout=300)
                out = await rig.outcome(kpis, alerts_timeout=60, survivors=[w])
            finally:
                await rig.stop()
    finally:
        own.stop()
    growth = _growth(samples, minutes)
    out.update(growth)
    out["broker_rss_mb"] = max((b for _, _, b in samples if b is not None), default=None)
    out["rss_samples"] = samples
    out["soak_minutes"] = minutes
    out["steady_events_per_s"] = round(steady / max(1.0, steady_s), 1)
    out["checks"] = {"worker RSS growth after warm-up < 10 %": growth["rss_growth_pct"] < 10,
                     "broker RSS growth after warm-up < 10 %": growth["broker_growth_pct"] < 10}
    return out


def _growth(samples: list[tuple[float, float | None, float | None]],
            minutes: float) -> dict[str, float]:
    warm = minutes * 60 / 3
    out = {}
    for key, i in (("rss_growth_pct", 1), ("broker_growth_pct", 2)):
        values = [(s[0], v) for s in samples for v in [s[i]] if v is not None]
        base = [v for t, v in values if t >= warm][:3]
        last = [v for _, v in values][-3:]
        if not base or not last:
            out[key] = float("nan")
            continue
        b, e = statistics.mean(base), statistics.mean(last)
        out[key] = round(100 * (e - b) / b, 1)
    return out


@dataclass
class SoakRow:
    """The soak as a row of the matrix (``--soak-minutes``)."""
    minutes: float
    name: str = "soak"
    fault: str = field(init=False)
    injection: str = field(init=False)

    def __post_init__(self) -> None:
        self.fault = f"{self.minutes:g}-minute soak"
        self.injection = (f"~200 events/s steady (a simulated day a minute, mixed incidents); "
                          f"RSS every {SAMPLE_S:.0f} s, growth after a {self.minutes / 3:.1f}-min "
                          "warm-up")

    async def run(self, broker: EmbeddedBroker) -> dict[str, Any]:
        return await soak(self.minutes)
