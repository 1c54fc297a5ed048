"""The soak: a worker at a steady rate for N minutes, its and the broker's memory sampled.

On a broker of its own (so the other rows' data is not in its memory): by default a single-node
Apache Kafka with a retention, as a deployment runs it; ``--soak-broker embedded``: the embedded
Tansu, which keeps every message in memory, so its growth is what it holds. Two days of history
go in at full speed, then the simulation (``mixed`` incidents) runs at one simulated day per
minute, about 200 events a second. The worker's and the broker's resident memory are sampled
every 10 s; the growth is the mean of the last three samples over the mean of the three at the
end of the warm-up (the first third of the soak). At the end, windows and alerts are measured
as in every row.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.faults.harness import DAY, HOUR, FaultySlack, Rig, rss_mb
from bench.kafka import single_node
from simulator import Simulation
from simulator.publisher import EventPublisher, run_clock
from stream.broker import EmbeddedBroker

__all__ = ["SoakRow", "soak"]

SPEED = 1440.0   # simulated seconds per second: a day a minute
SAMPLE_S = 10.0


# the soak's Kafka has a retention, as a deployment has (the embedded broker has none): an hour
# more than the soak lasts, since the row reads every window and alert back from the topics at
# its end (a 10-minute retention was tried: the windows it had deleted counted as lost)
KAFKA_SEGMENT = {"log.retention.hours": -1, "log.segment.bytes": 16 << 20,
                 "log.retention.check.interval.ms": 30_000}
KAFKA_HEAP = "512m"


async def soak(minutes: float, broker: str = "kafka") -> dict[str, Any]:
    """The soak on a broker of its own: ``kafka`` (a single-node Apache Kafka with retention,
    as deployed) or ``embedded`` (Tansu, no retention: its memory grows with what it holds)."""
    with contextlib.ExitStack() as stack:
        if broker == "kafka":
            retention = {"log.retention.ms": int((minutes + 60) * 60_000), **KAFKA_SEGMENT}
            node = stack.enter_context(single_node(heap=KAFKA_HEAP, **retention))
            bootstrap, pid = node.bootstrap, node.processes[1].pid
        else:
            own = stack.enter_context(EmbeddedBroker(max_mb=0))   # no bound: it is measured
            bootstrap, pid = own.bootstrap, own.process.pid if own.process else None
        out, samples, steady = await _soak(bootstrap, pid, minutes)
    growth = _growth(samples, minutes)
    out.update(growth)
    out["broker"] = broker
    out["broker_rss_mb"] = max((b for _, _, b in samples if b is not None), default=None)
    out["rss_samples"] = samples
    out["soak_minutes"] = minutes
    out["steady_events_per_s"] = steady
    out["checks"] = {"worker RSS growth after warm-up < 10 %": growth["rss_growth_pct"] < 10,
                     "broker RSS growth after warm-up < 10 %": growth["broker_growth_pct"] < 10}
    return out


Samples = list[tuple[float, float | None, float | None]]


async def _soak(bootstrap: str, broker_pid: int | None,
                minutes: float) -> tuple[dict[str, Any], Samples, float]:
    """Two days of history at full speed, then ``minutes`` at a day a minute; the row's
    measures, the (seconds, worker MB, broker MB) samples, the steady events per second."""
    async with FaultySlack() as slack:
        rig = await Rig(bootstrap, "soak", slack=slack).setup()
        span = minutes * 60 * SPEED
        # event time ends a day before the wall clock: a day a minute runs ahead of real time,
        # and events more than PULSE_MAX_AHEAD_SECONDS ahead of it are refused as "future" (a
        # 30-minute soak from the harness's START lost its last days that way)
        start = (time.time() - span - 3 * DAY) // HOUR * HOUR
        sim = Simulation(seed=12, start_ts=start, scenario="none")
        live = start + 2 * DAY
        sim.plan("mixed", (live + 2 * HOUR, live + span - HOUR))
        samples: Samples = []
        try:
            w = rig.start_worker()
            await rig.publish(sim, start, live)
            pub = EventPublisher(rig.bootstrap, rig.topic("events"), keep=rig.produced)
            await pub.start()
            history = len(rig.produced)
            t0 = time.monotonic()
            nxt = [t0]

            def sample(_: float) -> None:
                if time.monotonic() >= nxt[0]:
                    nxt[0] += SAMPLE_S
                    samples.append((round(time.monotonic() - t0, 1),
                                    rss_mb(w.process.pid if w.process else None),
                                    rss_mb(broker_pid)))

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
    return out, samples, round(steady / max(1.0, steady_s), 1)


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
    """The soak as a row of the matrix (``--soak-minutes``, ``--soak-broker``)."""
    minutes: float
    broker: str = "kafka"
    name: str = "soak"
    fault: str = field(init=False)
    injection: str = field(init=False)

    def __post_init__(self) -> None:
        self.fault = f"{self.minutes:g}-minute soak"
        where = ("a single-node Apache Kafka (a retention, a fixed heap)" if self.broker == "kafka"
                 else "the embedded broker, no retention")
        self.injection = (f"~200 events/s steady (a simulated day a minute, mixed incidents) on "
                          f"{where}; RSS every {SAMPLE_S:.0f} s, growth after a "
                          f"{self.minutes / 3:.1f}-min warm-up")

    async def run(self, broker: EmbeddedBroker) -> dict[str, Any]:
        return await soak(self.minutes, self.broker)
