"""Small helpers for tests that talk Kafka protocol to the embedded broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def read_topic(bootstrap: str, topic: str, *, until: Any = None, timeout: float = 60.0,
                     idle: float = 3.0) -> list[dict[str, Any]]:
    """Every JSON message of ``topic`` from the start, until ``until(messages)`` holds (or the
    topic stays quiet for ``idle`` seconds when no condition is given)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)   # a kpis message is a window's array
                    out.extend(doc if isinstance(doc, list) else [doc])
                    last_new = time.monotonic()
            if until is not None and until(out):
                return out
            if until is None and out and time.monotonic() - last_new > idle:
                return out
    finally:
        await consumer.stop()
    return out


async def send_raw(bootstrap: str, topic: str, payloads: list[bytes | None],
                   partition: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20)
    await producer.start()
    try:
        for p in payloads:
            await producer.send_and_wait(topic, p, key=b"k", partition=partition)
    finally:
        await producer.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
