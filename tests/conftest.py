"""Shared fixtures: one embedded broker for the whole session, workers per test module."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from stream.broker import EmbeddedBroker
from stream.topics import SINGLE_PARTITION_TOPICS, ensure_topics
from stream.worker_process import WorkerProcess

_names = itertools.count(1)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


class Pipeline:
    """A worker with its own topic prefix and consumer group on the shared broker."""

    def __init__(self, broker: EmbeddedBroker, partitions: int = 4, **env: str) -> None:
        n = next(_names)
        self.prefix = f"t{n}-"
        self.bootstrap = broker.bootstrap
        self.partitions = partitions
        self.env = {"PULSE_TOPIC_PREFIX": self.prefix, "PULSE_APP_ID": f"pulse-test-{n}",
                    "PULSE_EVENTS_PARTITIONS": str(partitions), **env}
        asyncio.run(ensure_topics(self.bootstrap, {
            **{self.topic(t): 1 for t in SINGLE_PARTITION_TOPICS},
            self.topic("events"): partitions}))
        self.worker = WorkerProcess(self.bootstrap, env=self.env)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def start(self) -> Pipeline:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()

    def metrics_text(self, timeout: float = 10.0) -> str:
        import urllib.request
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.worker.metrics_port}/metrics", timeout=2) as r:
                    return str(r.read().decode())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def pipeline(broker: EmbeddedBroker) -> Iterator[Pipeline]:
    p = Pipeline(broker).start()
    yield p
    p.stop()
