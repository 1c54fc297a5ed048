"""Real Apache Kafka for tests: fetch the broker's jars from Maven Central, run KRaft brokers.

No Docker and no Kafka tarball are needed: ``pom.xml`` beside this file names the broker
(``org.apache.kafka:kafka_2.13``, version ``KAFKA_VERSION``), Maven copies it and its
dependencies into ``.kafka/<version>/libs``, and each broker runs as
``java -cp '.kafka/<version>/libs/*' kafka.Kafka server.properties`` after
``kafka.tools.StorageTool format`` (what ``kafka-storage.sh format`` runs). Every node is
broker and controller at once (combined KRaft mode); a 3-node cluster has a 3-voter quorum,
so it keeps working with one node down.

    python deploy/kafka/cluster.py fetch            # the jars only (make test-kafka runs it)
    python deploy/kafka/cluster.py run [--brokers 3] # start, print the bootstrap, Ctrl-C stops

Standard library only, so it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from core.processes import reap, signal_group, stop_group

__all__ = ["KAFKA_VERSION", "KafkaCluster", "fetch", "free_port"]

KAFKA_VERSION = os.environ.get("PULSE_KAFKA_VERSION", "3.9.1")
"""The Apache Kafka release the tests run against (the compose file's apache/kafka image too)."""

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("PULSE_KAFKA_CACHE", REPO / ".kafka"))
JVM_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
STARTED = "Kafka Server started"   # the broker's log line once it serves clients


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return CACHE / version / "libs"


def fetch(version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars, fetched with Maven on first use."""
    libs = libs_dir(version)
    done = libs / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise RuntimeError("real Kafka needs java (17+) and mvn on the PATH "
                           "(Debian: apt-get install openjdk-17-jre-headless maven)")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")   # the cache is never committed
    print(f"fetching Apache Kafka {version} (org.apache.kafka:kafka_2.13) from Maven Central "
          f"into {libs}", flush=True)
    subprocess.run(["mvn", "-q", "-B", "-f", str(HERE / "pom.xml"), f"-Dkafka.version={version}",
                    "dependency:copy-dependencies", f"-DoutputDirectory={libs}"], check=True)
    done.write_text(version + "\n")
    return libs


def _cluster_id() -> str:
    """A Kafka Uuid as ``kafka-storage random-uuid`` prints it (url-safe base64, no padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaCluster:
    """``brokers`` KRaft nodes on loopback, each broker and controller, data under ``root``.

    Node ``i`` (1-based) keeps its ports and data across ``kill``/``start_node``, so a node
    brought back rejoins as itself.
    """

    def __init__(self, brokers: int = 1, *, version: str = KAFKA_VERSION,
                 root: str | os.PathLike[str] | None = None, start_timeout: float = 120.0,
                 heap: str | None = None, **config: str | int) -> None:
        self.brokers = brokers
        # a fixed heap, touched at start (Kafka's own advice for production: -Xms = -Xmx), so
        # resident memory is the broker's from the first second: the soak measures its growth
        self.jvm_opts = JVM_OPTS if heap is None else [
            f"-Xms{heap}", f"-Xmx{heap}", "-XX:+AlwaysPreTouch",
            *(o for o in JVM_OPTS if not o.startswith(("-Xms", "-Xmx")))]
        self.version = version
        self.root = Path(root or tempfile.mkdtemp(prefix="pulse-kafka-"))
        self.start_timeout = start_timeout
        self.config = config
        self.ports = {i: free_port() for i in range(1, brokers + 1)}
        self.controller_ports = {i: free_port() for i in range(1, brokers + 1)}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.cluster_id = _cluster_id()

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports.values())

    def address(self, node: int) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def node_dir(self, node: int) -> Path:
        return self.root / f"node{node}"

    def _properties(self, node: int) -> str:
        n = self.brokers
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in self.controller_ports.items())
        props: dict[str, str | int] = {
            "process.roles": "broker,controller",
            "node.id": node,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[node]},"
                         f"CONTROLLER://127.0.0.1:{self.controller_ports[node]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.ports[node]}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.node_dir(node) / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": 1,
            "default.replication.factor": min(n, 3),
            "offsets.topic.replication.factor": min(n, 3),
            "offsets.topic.num.partitions": 4,
            "transaction.state.log.replication.factor": min(n, 3),
            "transaction.state.log.min.isr": min(n, 2),
            "transaction.state.log.num.partitions": 4,
            "group.initial.rebalance.delay.ms": 0,
            "message.max.bytes": 4 << 20,
            "unclean.leader.election.enable": "false",
            "log.retention.hours": -1,
        }
        props.update(self.config)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, *args: str) -> list[str]:
        return ["java", *self.jvm_opts, "-cp", f"{libs_dir(self.version)}/*", *args]

    def start(self) -> KafkaCluster:
        fetch(self.version)
        for node in self.ports:
            d = self.node_dir(node)
            d.mkdir(parents=True, exist_ok=True)
            (d / "server.properties").write_text(self._properties(node))
            (d / "log4j.properties").write_text(
                "log4j.rootLogger=INFO, file\n"
                "log4j.appender.file=org.apache.log4j.FileAppender\n"
                f"log4j.appender.file.File={d / 'server.log'}\n"
                "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
                "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
                "log4j.logger.kafka.request.logger=WARN\n"
                "log4j.logger.state.change.logger=WARN\n")
            subprocess.run(self._java("kafka.tools.StorageTool", "format", "--ignore-formatted",
                                      "-t", self.cluster_id, "-c", str(d / "server.properties")),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for node in self.ports:
            self.start_node(node, wait=False)
        for node in self.ports:
            self.wait_started(node)
        self.wait_cluster()
        return self

    def wait_cluster(self) -> None:
        """Until a client's metadata lists every node and a controller. Each node's log says it
        serves clients before the others have registered with the quorum: an admin client
        started then got metadata with no broker in it, and its first CreateTopics failed on a
        controller of None (tests/real_kafka/test_leader_kill.py, once in CI)."""
        import asyncio

        from aiokafka import AIOKafkaClient
        from aiokafka.protocol.metadata import MetadataRequest

        async def complete() -> bool:
            client = AIOKafkaClient(bootstrap_servers=self.bootstrap)
            try:
                await client.bootstrap()
                md = await client.send(client.get_random_node(), MetadataRequest([]))
                return len(md.brokers) == len(self.ports) and md.controller_id >= 0
            except Exception:   # not answering yet
                return False
            finally:
                await client.close()

        deadline = time.monotonic() + self.start_timeout
        while not asyncio.run(complete()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {len(self.ports)} Kafka nodes did not form a cluster "
                                   f"within {self.start_timeout:.0f} s; see the server.log "
                                   f"files under {self.root}")
            time.sleep(0.2)

    def start_node(self, node: int, wait: bool = True) -> None:
        d = self.node_dir(node)
        log = d / "server.log"
        self._log_size = {**getattr(self, "_log_size", {}),
                          node: log.stat().st_size if log.exists() else 0}
        env = dict(os.environ, LOG_DIR=str(d))
        with open(d / "stdout.log", "ab") as out:
            self.processes[node] = subprocess.Popen(
                self._java(f"-Dlog4j.configuration=file:{d / 'log4j.properties'}",
                           "kafka.Kafka", str(d / "server.properties")),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        if wait:
            self.wait_started(node)

    def wait_started(self, node: int) -> None:
        """Until node's log says it serves clients (since its last start)."""
        log = self.node_dir(node) / "server.log"
        deadline = time.monotonic() + self.start_timeout
        proc = self.processes[node]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Kafka node {node} exited ({proc.returncode}); see "
                                   f"{self.node_dir(node)}/stdout.log and server.log")
            with contextlib.suppress(OSError):
                with open(log, "rb") as f:
                    f.seek(self._log_size.get(node, 0))
                    if STARTED.encode() in f.read():
                        return
            time.sleep(0.2)
        raise RuntimeError(f"Kafka node {node} did not start within {self.start_timeout:.0f} s; "
                           f"see {log}")

    def kill(self, node: int, sig: int = signal.SIGKILL, timeout: float = 60.0) -> None:
        """Stop one node (SIGKILL: a crash; SIGTERM: a controlled shutdown)."""
        stop_group(self.processes.pop(node, None), sig, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every node at once (nodes stopped one by one wait for a quorum that is
        leaving), SIGKILL what is left after ``timeout``."""
        procs, self.processes = list(self.processes.values()), {}
        for proc in procs:
            signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            reap(proc, deadline - time.monotonic())

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["fetch", "run", "version"])
    ap.add_argument("--brokers", type=int, default=1)
    ap.add_argument("--version", default=KAFKA_VERSION)
    a = ap.parse_args()
    if a.command == "version":
        print(a.version)
        return
    libs = fetch(a.version)
    print(f"Apache Kafka {a.version}: {len(list(libs.glob('*.jar')))} jars in {libs}")
    if a.command == "run":
        with KafkaCluster(a.brokers, version=a.version) as c:
            print(f"Apache Kafka {a.version}, {a.brokers} KRaft node(s): bootstrap {c.bootstrap}"
                  f" (data {c.root}); Ctrl-C stops", flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    main()
