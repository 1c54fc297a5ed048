"""Tests against real Apache Kafka (deploy/kafka/cluster.py), run by ``make test-kafka`` only.

They start JVM brokers and take minutes, so plain ``make test`` (``pytest`` over the default
testpaths, which include ``tests/``) does not even collect them: this directory is ignored
unless ``PULSE_REAL_KAFKA=1`` is set, which ``make test-kafka`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from bench.kafka import cluster_module

ENABLED = os.environ.get("PULSE_REAL_KAFKA") == "1"
collect_ignore_glob = [] if ENABLED else ["*.py"]


cluster = cluster_module()   # deploy/kafka/cluster.py, loaded by path
KafkaCluster = cluster.KafkaCluster
KAFKA_VERSION = cluster.KAFKA_VERSION


def pytest_report_header(config: pytest.Config) -> str:
    return f"real Apache Kafka {KAFKA_VERSION} (org.apache.kafka:kafka_2.13, deploy/kafka/)"


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Any]:
    """One single-node KRaft broker for the session."""
    t0 = time.monotonic()
    c = KafkaCluster(1).start()
    print(f"\nApache Kafka {KAFKA_VERSION}: 1 node at {c.bootstrap}, up in "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    yield c
    c.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: Any) -> str:
    return str(kafka_cluster.bootstrap)


def as_broker(bootstrap: str) -> Any:
    """What ``tests.conftest.Pipeline`` needs of a broker: its bootstrap."""
    return SimpleNamespace(bootstrap=bootstrap)


async def read_committed(bootstrap: str, topic: str, *, until: Any = None,
                         timeout: float = 120.0, idle: float = 5.0) -> list[dict[str, Any]]:
    """Every JSON document of ``topic`` from the start, as a read_committed consumer sees it
    (transactions that were aborted, e.g. by a SIGKILL, are left out), until ``until(docs)``
    holds and then ``idle`` quiet seconds (or only the quiet seconds without ``until``)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    met = until is None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    out.extend(doc if isinstance(doc, list) else [doc])
                    last_new = time.monotonic()
            met = met or until(out)
            if met and time.monotonic() - last_new > idle:
                return out
    finally:
        await consumer.stop()
    return out


def canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
