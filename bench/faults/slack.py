"""Rows where Slack misbehaves while alerts are delivered (``FaultySlack`` in harness.py).

Seven simulated days, incidents in the last three; the storm starts at the worker's first
``chat.postMessage`` of an alert and lasts a fixed time. Every alert opened on ``alerts`` must
end up in the channel exactly once; the time to recover runs from the storm's end to the first
post that succeeded after it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.faults.harness import (
    INCIDENT_END,
    START,
    FaultySlack,
    Rig,
    alert_id,
    incident_sim,
)
from stream.broker import EmbeddedBroker

__all__ = ["baseline", "incident_run", "slack_429", "slack_5xx", "slack_nonjson", "slack_slow"]


async def incident_run(rig: Rig, settle_s: float = 60.0) -> dict[str, Any]:
    """Publish the incident days into ``rig`` (worker started), and measure windows, alerts."""
    assert rig.slack is not None
    rig.start_worker()
    await rig.publish(incident_sim(), START, INCIDENT_END)
    await rig.watermark(INCIDENT_END + 600)
    kpis = await rig.kpis_until_closed(INCIDENT_END)
    deadline = time.monotonic() + 90   # the storm starts at an alert's post: let it, and end
    while rig.slack.mode and not rig.slack.storm_from and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    while rig.slack.storming():
        await asyncio.sleep(0.5)
    return await rig.outcome(kpis, alerts_timeout=settle_s)


async def _storm(broker: EmbeddedBroker, mode: str, storm_s: float) -> dict[str, Any]:
    async with FaultySlack(mode, storm_s) as slack:
        rig = await Rig(broker.bootstrap, f"slack-{mode}", slack=slack).setup()
        try:
            out = await incident_run(rig, settle_s=90.0)
        finally:
            await rig.stop()
        after = [r.wall for r in slack.posts_ok() if r.wall >= slack.storm_until]
    out["recover_s"] = round(min(after) - slack.storm_until, 1) if after else None
    out["slack_calls_faulted"] = slack.injected
    out["alert_posts_in_storm"] = sum(
        1 for r in slack.requests if r.method == "chat.postMessage" and alert_id(r.params)
        and slack.storm_from <= r.wall < slack.storm_until)
    out["checks"] = {"the storm hit an alert's post": out["alert_posts_in_storm"] > 0}
    if slack.storm_until > time.time():
        out["checks"]["the storm was over before the end"] = False
    return out


async def baseline(broker: EmbeddedBroker) -> dict[str, Any]:
    """No fault: the incident run as every Slack and model row sees it, for comparison."""
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, "baseline", slack=slack).setup()
        try:
            out = await incident_run(rig)
        finally:
            await rig.stop()
    out["checks"] = {"alerts opened": out["alerts_expected"] > 0}
    return out


async def slack_5xx(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _storm(broker, "5xx", 20.0)


async def slack_429(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _storm(broker, "429", 30.0)


async def slack_slow(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _storm(broker, "slow", 30.0)


async def slack_nonjson(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _storm(broker, "nonjson", 20.0)
