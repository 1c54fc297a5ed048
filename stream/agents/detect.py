"""Anomaly detection: ``kpis`` in, ``anomalies`` out.

Each ``kpis`` message (one KPI, one closed window, all its series) goes through that KPI's
detector state (detectors/watch.py); flagged points are published to ``anomalies`` as
docs/anomalies.md describes, and the ``window_closed`` markers are passed on after them. The
state lives in a Faust table keyed by KPI id, so a restarted worker recovers it from the
changelog and carries on learning instead of starting cold (no burst of false alarms). Table
values are JSON (detectors/state.py), never pickle: the changelog is a topic anyone on the
cluster could write to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from detectors import load_config, state
from detectors.watch import KpiSeriesWatch, KpiWatch
from stream import metrics
from stream.agents.kpis import kpis_topic
from stream.app import app, settings
from stream.backfill import fetch_range

__all__ = ["anomalies_topic", "detector_state", "detect_anomalies"]

log = logging.getLogger(__name__)

anomalies_topic = app.topic(settings.topic("anomalies"), key_serializer="raw",
                            value_serializer="raw", partitions=1)
detector_state = app.Table("detector-state", key_type=str, value_type=str, partitions=1)


SAVE_EVERY_S = 1.0


NEXT_OFFSET_KEY = "__next_offset__"   # table key: the kpis offset the saved state reaches


def _restore(watch: KpiWatch, kpi: str) -> None:
    """Load a KPI's detectors from the table the first time this process sees the KPI."""
    if kpi in watch.kpis:
        return
    saved = detector_state.get(kpi)
    if saved is not None:
        restored = state.loads(saved.encode())
        if isinstance(restored, KpiSeriesWatch) and restored.kpi == kpi:
            watch.kpis[kpi] = restored
            log.info("restored the detectors of %s (%d series)", kpi, len(restored.watchers))


async def _catch_up(watch: KpiWatch, topic: str, partition: int, due: int, offset: int) -> None:
    """Learn the ``kpis`` messages between the saved state and the first one delivered.

    They were processed (and their anomalies published) before the restart, but after the
    last save of the state: learn them again, publish nothing.
    """
    missed = await fetch_range(settings.kafka_bootstrap, topic, partition, due, offset)
    for rec in missed:
        doc = orjson.loads(rec.value)
        if "kpi" in doc:
            _restore(watch, doc["kpi"])
            watch.observe(doc)
    log.info("detectors re-learned %d kpis messages saved state did not cover", len(missed))


@app.agent(kpis_topic)
async def detect_anomalies(stream: Any) -> None:
    """Consumes ``kpis``; publishes anomaly events and window markers to ``anomalies``.

    Detector state goes to the table at window ends, at most once a second: at live pace that
    is every window, and while a backlog is read it keeps the changelog from becoming the
    bottleneck (17 KPI states a window at hundreds of windows a second). The table also keeps
    the ``kpis`` offset the state reaches, so a restart re-learns what came after it.
    """
    watch = KpiWatch(load_config(settings.detectors_config or None))
    dirty: set[str] = set()
    last_save = 0.0
    due: int | None = None
    async for event in stream.events():
        msg, raw = event.message, event.value
        while app.in_recovery:   # Faust resumes streams before the table is fully recovered
            await asyncio.sleep(0.05)
        if due is None:
            saved_offset = detector_state.get(NEXT_OFFSET_KEY)
            due = int(saved_offset) if saved_offset is not None else msg.offset
        if msg.offset > due:   # after the saved state, or a range Faust skipped (faust#596)
            await _catch_up(watch, msg.topic, msg.partition, due, msg.offset)
        due = max(due, msg.offset + 1)
        doc = orjson.loads(raw)
        if doc.get("kind") == "window_closed":
            await anomalies_topic.send(key=b"window", value=raw)
            if dirty and time.monotonic() - last_save >= SAVE_EVERY_S:
                for name in dirty:
                    detector_state[name] = state.dumps(watch.kpis[name]).decode()
                detector_state[NEXT_OFFSET_KEY] = str(msg.offset + 1)
                dirty.clear()
                last_save = time.monotonic()
            continue
        kpi = doc["kpi"]
        _restore(watch, kpi)
        for anomaly in watch.observe(doc):
            metrics.ANOMALIES.labels(kpi, anomaly["severity"]).inc()
            await anomalies_topic.send(key=kpi.encode(), value=orjson.dumps(anomaly))
        dirty.add(kpi)
