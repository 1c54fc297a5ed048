"""Moved to :mod:`stream.worker_process`; this name stays for the modules that still import it."""

from stream.worker_process import WorkerProcess, die_with_parent

__all__ = ["WorkerProcess", "die_with_parent"]
