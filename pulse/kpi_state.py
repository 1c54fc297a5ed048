"""The latest value of every KPI series, from the ``kpis`` topic or a ``kpis.jsonl`` file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

__all__ = ["latest_from_file", "latest_from_topic", "latest"]


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the newest window of each (kpi, segment, channel)."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["kpi"], r["segment"], r["channel"])
        if key not in best or r["window_end"] >= best[key]["window_end"]:
            best[key] = r
    return list(best.values())


def latest_from_file(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                rows.append(orjson.loads(line))
    return latest(rows)


async def latest_from_topic(bootstrap: str, topic: str, idle_s: float = 1.5,
                            timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until it has been quiet for ``idle_s``; keep the newest
    value per series. (Not ``end_offsets``: the embedded broker answers it with a batch count.)
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                last_new = time.monotonic()
                for rec in records:
                    doc = orjson.loads(rec.value)
                    for s in doc.get("series", ()):
                        rows.append({"kpi": doc["kpi"], "segment": s["segment"],
                                     "channel": s["channel"], "window_start": doc["window_start"],
                                     "window_end": doc["window_end"], "value": s["value"]})
    finally:
        await consumer.stop()
    return latest(rows)
