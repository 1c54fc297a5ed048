"""Throughput of :class:`~kpis.engine.KpiEngine` on synthetic events.

``python -m bench.kpi_engine [n]`` prints events per second through ``add`` plus the ``advance``
calls a worker makes after each batch (window closing included); building the events is not timed.

>>> events = synthetic_events(1_000, seed=1)
>>> len(events), events[0]["ts"] <= events[-1]["ts"]
(1000, True)
>>> measure(2_000) > 0
True
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from core.vocabulary import CHANNELS, SEGMENTS
from kpis.engine import KpiEngine

__all__ = ["measure", "synthetic_events"]

# (kind, weight): roughly what a job-search product emits
_MIX = (("scan", 50), ("activity", 30), ("signup", 8), ("payment", 8), ("cancel", 2),
        ("spend", 2))


def synthetic_events(n: int, *, seed: int = 0, users: int = 20_000,
                     spacing_s: float = 0.5, start_ts: float = 1_790_000_000.0
                     ) -> list[dict[str, Any]]:
    """``n`` valid events in time order (a little jitter), ``spacing_s`` apart on average."""
    rng = random.Random(seed)
    kinds = [k for k, weight in _MIX for _ in range(weight)]
    profile = [(rng.choice(SEGMENTS), rng.choice(CHANNELS)) for _ in range(users)]
    out: list[dict[str, Any]] = []
    for i in range(n):
        kind = rng.choice(kinds)
        ts = start_ts + i * spacing_s + rng.uniform(-60.0, 0.0)
        u = rng.randrange(users)
        segment, channel = profile[u]
        ev: dict[str, Any] = {"event_id": f"e{i}", "kind": kind, "ts": ts,
                              "user_id": f"u{u}", "segment": segment, "channel": channel}
        if kind == "scan":
            ev["match_score"] = rng.random()
        elif kind == "activity":
            ev["session_s"] = rng.uniform(10, 900)
        elif kind == "signup":
            ev["referred_by"] = f"u{rng.randrange(users)}" if channel == "referral" else None
        elif kind == "payment":
            plan = "annual" if rng.random() < 0.2 else "monthly"
            ev.update(plan=plan, amount=348.0 if plan == "annual" else 39.0,
                      status="failed" if rng.random() < 0.05 else "succeeded",
                      first=rng.random() < 0.3)
        elif kind == "cancel":
            ev["plan"] = "monthly"
        else:
            del ev["user_id"], ev["segment"]
            ev["amount"] = round(rng.uniform(10, 500), 2)
        out.append(ev)
    return out


def measure(n: int = 300_000, *, batch: int = 1_000, seed: int = 0) -> float:
    """Events per second through ``add`` + ``advance`` (every ``batch`` events)."""
    events = synthetic_events(n, seed=seed)
    engine = KpiEngine()
    add, advance = engine.add, engine.advance
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        for ev in events[i:i + batch]:
            add(ev)
        advance(engine.watermark)
    elapsed = time.perf_counter() - t0
    return n / elapsed


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    print(f"{measure(count):,.0f} events/s")
