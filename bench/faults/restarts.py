"""Rows where a process dies: the worker (SIGKILL in a backlog, at a window's close, both of
two workers), the embedded broker under a running worker, and a worker restarted on crafted
checkpoint files. A killed worker is started again at once, as a supervisor would; the time to
recover runs from the fault to the first ``kpis`` record appended after it."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.faults.harness import (
    DAY,
    HOUR,
    INCIDENT_END,
    START,
    FaultySlack,
    Rig,
    first_after,
    incident_sim,
    rss_mb,
)
from simulator import Simulation
from stream.broker import EmbeddedBroker
from stream.worker_process import WorkerProcess

__all__ = ["broker_restart", "crafted_checkpoint", "kill_backlog", "kill_both", "kill_delivering",
           "kill_one_of_two", "kill_window_close"]


async def _finish(rig: Rig, sim: Simulation, t0: float, t1: float,
                  survivors: list[WorkerProcess] | None = None) -> dict[str, Any]:
    """Publish the rest, close the last window, and measure windows and alerts."""
    await rig.publish(sim, t0, t1)
    await rig.watermark(t1 + 600)
    kpis = await rig.kpis_until_closed(t1)
    out = await rig.outcome(kpis, survivors=survivors)
    out["_kpis"] = kpis
    return out


async def _kill_in_backlog(broker: EmbeddedBroker, name: str, seed: int, workers: int,
                           killed: int, restarted: int) -> dict[str, Any]:
    """``workers`` workers share a two-day backlog; once it has checkpointed (>= 1 save,
    17 windows' messages in), the first ``killed`` are SIGKILLed and ``restarted`` new ones
    started, then one more day: the live ones must count it all."""
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, name, slack=slack).setup()
        sim = Simulation(seed=seed, start_ts=START, scenario="none")
        try:
            for _ in range(workers):
                rig.start_worker()
            await rig.publish(sim, START, START + 2 * DAY)
            await rig.records("kpis", until=lambda m: len(m) >= 17 * 12, timeout=120)
            await asyncio.sleep(2.5)
            victims, survivors = rig.workers[:killed], rig.workers[killed:]
            at = [rig.kill(w) for w in victims][0]
            survivors += [rig.start_worker() for _ in range(restarted)]
            out = await _finish(rig, sim, START + 2 * DAY, START + 3 * DAY, survivors)
        finally:
            await rig.stop()
    out["recover_s"] = first_after(out.pop("_kpis"), at)
    return out


async def kill_backlog(broker: EmbeddedBroker) -> dict[str, Any]:
    """SIGKILL while the worker works through two days of backlog (>= 1 checkpoint done)."""
    return await _kill_in_backlog(broker, "kill-backlog", 5, workers=1, killed=1, restarted=1)


async def _kill_and_restart(broker: EmbeddedBroker, name: str, sim: Simulation,
                            until_kill: Callable[[Rig], Awaitable[float]],
                            end: float) -> dict[str, Any]:
    """One worker, SIGKILLed when ``until_kill`` returns (the event time it has published to)
    and started again at once, as a supervisor would; then the rest up to ``end``."""
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, name, slack=slack).setup()
        try:
            rig.start_worker()
            reached = await until_kill(rig)
            killed = rig.kill(rig.workers[-1])
            rig.start_worker()
            out = await _finish(rig, sim, reached, end)
        finally:
            await rig.stop()
    out["recover_s"] = first_after(out.pop("_kpis"), killed)
    return out


async def kill_delivering(broker: EmbeddedBroker) -> dict[str, Any]:
    """SIGKILL the moment the first alert opens on ``alerts``: while alerts, their updates and
    the digests are being delivered (tests/test_restart.py's delivery run)."""
    sim = incident_sim()

    async def first_alert(rig: Rig) -> float:
        waiting = asyncio.create_task(rig.json_docs("alerts", timeout=240, until=lambda m: any(
            a.get("status") == "open" for a in m)))
        await rig.publish(sim, START, INCIDENT_END - DAY)
        await waiting
        return INCIDENT_END - DAY

    return await _kill_and_restart(broker, "kill-deliver", sim, first_alert, INCIDENT_END)


async def kill_window_close(broker: EmbeddedBroker) -> dict[str, Any]:
    """A caught-up worker is SIGKILLed the moment a window's partial sums reach
    ``kpi-partials``: while the merge publishes that window."""
    sim = Simulation(seed=6, start_ts=START, scenario="none")

    async def window_closing(rig: Rig) -> float:
        await rig.publish(sim, START, START + DAY)
        await rig.kpis_until_closed(START + DAY - 2 * HOUR)
        await asyncio.sleep(3)   # caught up: no partials in flight
        before = len(await rig.records("kpi-partials", timeout=10, idle=1))
        waiting = asyncio.create_task(rig.records(
            "kpi-partials", until=lambda m: len(m) > before, timeout=60))
        await rig.publish(sim, START + DAY, START + DAY + 2 * HOUR)
        await waiting
        return START + DAY + 2 * HOUR

    return await _kill_and_restart(broker, "kill-close", sim, window_closing, START + 2 * DAY)


async def kill_both(broker: EmbeddedBroker) -> dict[str, Any]:
    """Two workers share the partitions; both are SIGKILLed in the backlog, both restarted."""
    return await _kill_in_backlog(broker, "kill-both", 7, workers=2, killed=2, restarted=2)


async def kill_one_of_two(broker: EmbeddedBroker) -> dict[str, Any]:
    """Two workers share the partitions; one is SIGKILLed in the backlog and not restarted:
    the other must take its partitions over by itself."""
    return await _kill_in_backlog(broker, "kill-one", 13, workers=2, killed=1, restarted=0)


async def broker_restart(broker: EmbeddedBroker) -> dict[str, Any]:
    """The embedded broker (memory storage) is restarted on its port under a caught-up worker:
    it comes back empty. The worker must notice and count what is published after it."""
    own = EmbeddedBroker().start()   # its own broker: the shared one stays up
    try:
        async with FaultySlack() as slack:
            rig = await Rig(own.bootstrap, "broker", slack=slack).setup()
            sim = Simulation(seed=8, start_ts=START, scenario="none")
            try:
                rig.start_worker()
                await rig.publish(sim, START, START + DAY)
                await rig.watermark(START + DAY + 600)
                before = await rig.kpis_until_closed(START + DAY)
                broker_rss = rss_mb(own.process.pid if own.process else None)
                port = own.port
                own.stop()
                restarted = time.time()
                own = EmbeddedBroker(port=port).start()
                await rig.setup()   # the topics are gone with the broker's memory
                out = await _finish(rig, sim, START + DAY, START + 2 * DAY)
            finally:
                await rig.stop()
        kpis = before + out.pop("_kpis")
        out.update(rig.count_windows(kpis))
        out["recover_s"] = first_after(kpis, restarted)
        out["broker_rss_mb"] = broker_rss
    finally:
        own.stop()
    return out


class _Crafted:
    """Unpickling this touches a marker file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


async def crafted_checkpoint(broker: EmbeddedBroker) -> dict[str, Any]:
    """After a day, the worker is SIGKILLed and every agent's checkpoint file (those written
    and those not yet) is a crafted pickle (one that runs a command); it is restarted on them."""
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, "crafted", slack=slack).setup()
        sim = Simulation(seed=9, start_ts=START, scenario="none")
        marker = Path(rig.data_dir) / "pickle-ran"
        try:
            rig.start_worker()
            await rig.publish(sim, START, START + DAY)
            await rig.kpis_until_closed(START + DAY - 2 * HOUR)
            await asyncio.sleep(3)
            killed = rig.kill(rig.workers[-1])
            folder = Path(rig.data_dir) / "checkpoints"
            folder.mkdir(parents=True, exist_ok=True)
            app, prefix = rig.env["PULSE_APP_ID"], rig.prefix
            names = [f"{app}-{prefix}events-p{n}.ckpt" for n in range(rig.partitions)] + [
                f"{app}-{prefix}kpi-partials-merge.ckpt", f"{app}-alerts.ckpt",
                f"{app}-digest.ckpt"]
            written = sum((folder / n).exists() for n in names)
            files = [folder / n for n in names]   # every agent's file, written or not yet
            for f in files:
                f.write_bytes(pickle.dumps((1, _Crafted(marker))))
            rig.start_worker()
            out = await _finish(rig, sim, START + DAY, START + 2 * DAY)
            log = rig.workers[-1].log_tail(2000)
        finally:
            await rig.stop()
    out["recover_s"] = first_after(out.pop("_kpis"), killed)
    refused = sum(f"refused state file {f}" in log for f in files)
    out["checkpoints_written_before_kill"] = written
    out["checks"] = {"pickle never ran": not marker.exists(),
                     f"{refused} of {len(files)} crafted files refused": refused == len(files)
                     and bool(files)}
    return out
