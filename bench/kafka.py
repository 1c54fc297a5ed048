"""A single-node Apache Kafka for the measurements (``make bench --broker kafka``, the soak of
``make faults``): deploy/kafka/cluster.py, the version ``make test-kafka`` runs. Its jars come
from Maven Central once (java 17+ and mvn, which the Makefile installs when missing)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["single_node", "cluster_module"]


def cluster_module() -> Any:
    """deploy/kafka/cluster.py, a script outside the packages, loaded by path."""
    name = "pulse_kafka_cluster"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "cluster.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def single_node(heap: str | None = None, **config: str | int) -> Iterator[Any]:
    """A started one-node cluster (``.bootstrap``, ``.processes[1]``, ``.version``), stopped on
    exit; ``config``: broker properties over the defaults."""
    cluster = cluster_module()
    print(f"Apache Kafka {cluster.KAFKA_VERSION}: fetching (once) and starting one node ...",
          flush=True)
    cluster.fetch()
    with cluster.KafkaCluster(1, heap=heap, **config) as c:
        yield c
