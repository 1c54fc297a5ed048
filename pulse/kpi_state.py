"""The latest value of every KPI series, from the ``kpis`` topic or a ``kpis.jsonl`` file."""

from __future__ import annotations

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


async def latest_from_topic(bootstrap: str, topic: str, timeout_s: float = 10.0
                            ) -> list[dict[str, Any]]:
    """Read ``topic`` from the start to its end and keep the newest value per series."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    rows: list[dict[str, Any]] = []
    try:
        parts = consumer.assignment()
        ends = await consumer.end_offsets(list(parts))
        done = {tp for tp, end in ends.items() if end == 0}
        import time
        deadline = time.monotonic() + timeout_s
        while len(done) < len(parts) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    for s in doc.get("series", ()):
                        rows.append({"kpi": doc["kpi"], "segment": s["segment"],
                                     "channel": s["channel"], "window_start": doc["window_start"],
                                     "window_end": doc["window_end"], "value": s["value"]})
                    if rec.offset + 1 >= ends[tp]:
                        done.add(tp)
    finally:
        await consumer.stop()
    return latest(rows)
