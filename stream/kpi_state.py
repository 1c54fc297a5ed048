"""The latest value of every KPI series, from the ``kpis`` topic or a ``kpis.jsonl`` file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from kpis.messages import docs_in, series_rows

__all__ = ["docs_from_topic", "latest", "latest_from_file", "latest_from_topic",
           "rows_from_file", "series_rows"]


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the newest window of each (kpi, segment, channel)."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["kpi"], r["segment"], r["channel"])
        if key not in best or r["window_end"] >= best[key]["window_end"]:
            best[key] = r
    return list(best.values())


def rows_from_file(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a JSON Lines file (``kpis.jsonl``, ``alerts.jsonl``)."""
    rows = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                rows.append(orjson.loads(line))
    return rows


def latest_from_file(path: str | Path) -> list[dict[str, Any]]:
    return latest(rows_from_file(path))


async def docs_from_topic(bootstrap: str, topic: str, idle_s: float = 1.5,
                          timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every message of ``topic`` from the start, read until it has been quiet for ``idle_s``.
    (Not ``end_offsets``: the embedded broker answers it with a batch count.)
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    docs: list[dict[str, Any]] = []
    try:
        await consumer.start()   # inside: a broker that cannot be reached still stops it
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                last_new = time.monotonic()
                docs.extend(d for rec in records for d in docs_in(rec.value))
    finally:
        await consumer.stop()
    return docs


async def latest_from_topic(bootstrap: str, topic: str, idle_s: float = 1.5,
                            timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The newest value per series of the ``kpis`` topic (see :func:`docs_from_topic`)."""
    docs = await docs_from_topic(bootstrap, topic, idle_s, timeout_s)
    return latest([row for doc in docs for row in series_rows(doc)])
