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

import logging
from typing import Any

import orjson

from detectors import load_config, state
from detectors.watch import KpiSeriesWatch, KpiWatch
from stream import metrics
from stream.agents.kpis import kpis_topic
from stream.app import app, settings

__all__ = ["anomalies_topic", "detector_state", "detect_anomalies"]

log = logging.getLogger(__name__)

anomalies_topic = app.topic(settings.topic("anomalies"), key_serializer="raw",
                            value_serializer="raw", partitions=1)
detector_state = app.Table("detector-state", key_type=str, value_type=str, partitions=1)


@app.agent(kpis_topic)
async def detect_anomalies(stream: Any) -> None:
    """Consumes ``kpis``; publishes anomaly events and window markers to ``anomalies``."""
    watch = KpiWatch(load_config(settings.detectors_config or None))
    async for raw in stream:
        doc = orjson.loads(raw)
        if doc.get("kind") == "window_closed":
            await anomalies_topic.send(key=b"window", value=raw)
            continue
        kpi = doc["kpi"]
        if kpi not in watch.kpis:
            saved = detector_state.get(kpi)
            if saved is not None:
                restored = state.loads(saved.encode())
                if isinstance(restored, KpiSeriesWatch) and restored.kpi == kpi:
                    watch.kpis[kpi] = restored
        for anomaly in watch.observe(doc):
            metrics.ANOMALIES.labels(kpi, anomaly["severity"]).inc()
            await anomalies_topic.send(key=kpi.encode(), value=orjson.dumps(anomaly))
        detector_state[kpi] = state.dumps(watch.kpis[kpi]).decode()
