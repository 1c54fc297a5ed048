"""Start and stop a stream worker (``python -m stream.worker``) as a child process.

Used by ``pulse demo``, ``pulse replay``, ``bench/`` and the tests: it lives beside the worker
it starts.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stream.broker import die_with_parent, embedded_worker_env, free_port, is_embedded

__all__ = ["WorkerProcess", "die_with_parent"]


class WorkerProcess:
    """One worker child; its log goes to ``log_path``."""

    def __init__(self, bootstrap: str, *, env: dict[str, str] | None = None,
                 data_dir: str | None = None, metrics_port: int | None = None,
                 log_path: str | os.PathLike[str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.metrics_port = free_port() if metrics_port is None else metrics_port
        self.web_port = free_port()
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pulse-worker-")
        self.extra_env = env or {}
        self.log_path = Path(log_path) if log_path else Path(self.data_dir) / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({
            "PULSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "PULSE_METRICS_PORT": str(self.metrics_port),
            "PULSE_WEB_PORT": str(self.web_port),
            "PULSE_DATA_DIR": self.data_dir,
        })
        env.setdefault("PULSE_LOG_LEVEL", "warning")
        if is_embedded(self.bootstrap):
            embedded_worker_env(env)
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream.worker"], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, preexec_fn=die_with_parent)
        self.started_at = time.monotonic()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(sig)

    def stop(self, timeout: float = 20.0, sig: int = signals.SIGTERM) -> int | None:
        """Stop the worker (SIGTERM, then SIGKILL after ``timeout``); its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.process = None
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
