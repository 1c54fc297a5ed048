"""The latest value of every KPI series, from the ``kpis`` topic or a ``kpis.jsonl`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from kpis.messages import docs_in, series_rows
from stream.topic_end import EndReader

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


async def docs_from_topic(bootstrap: str, topic: str, timeout_s: float = 30.0,
                          ) -> list[dict[str, Any]]:
    """Every document of ``topic``, from its start to where it ended when the reading began
    (``stream.topic_end``: a live topic is read to now, not until it goes quiet); a topic that
    does not exist yet has none."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    docs: list[dict[str, Any]] = []
    try:
        await consumer.start()   # inside: a broker that cannot be reached still stops it
        await consumer.topics()   # the cluster's metadata, this topic's partitions with it
        parts = consumer.partitions_for_topic(topic) or set()
        reader = EndReader(consumer, [TopicPartition(topic, p) for p in sorted(parts)])
        if reader.tps:
            async for records in reader.batches(timeout_ms=300, deadline_s=timeout_s):
                docs.extend(d for rec in records for d in docs_in(rec.value))
    finally:
        await consumer.stop()
    return docs


async def latest_from_topic(bootstrap: str, topic: str,
                            timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The newest value per series of the ``kpis`` topic (see :func:`docs_from_topic`)."""
    docs = await docs_from_topic(bootstrap, topic, timeout_s)
    return latest([row for doc in docs for row in series_rows(doc)])
