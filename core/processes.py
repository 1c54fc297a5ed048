"""Stopping a child that runs in its own process group (a broker, a Kafka node): ask, wait,
then kill. One copy for the embedded broker and the Kafka test cluster, so both give a child
the same time to exit cleanly and neither leaves a group member running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["reap", "signal_group", "stop_group"]


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to ``proc``'s process group (``start_new_session`` children); a group
    already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def reap(proc: subprocess.Popen[bytes], timeout: float, kill_timeout: float = 10.0) -> None:
    """Wait up to ``timeout`` s for ``proc`` to exit, then SIGKILL its group and wait again."""
    try:
        proc.wait(timeout=max(0.1, timeout))
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=kill_timeout)


def stop_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
               timeout: float = 5.0, kill_timeout: float = 10.0) -> None:
    """Stop ``proc`` and its group: ``sig``, up to ``timeout`` s, then SIGKILL. Nothing to do
    for a child that has exited."""
    if proc is None or proc.poll() is not None:
        return
    signal_group(proc, sig)
    reap(proc, timeout, kill_timeout)
