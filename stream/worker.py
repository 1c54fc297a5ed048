"""Run one Pulse stream worker: the Faust app with every agent, plus the /metrics endpoint.

``python -m stream.worker`` is what ``pulse worker`` and ``pulse demo`` start in a child process;
it needs ``PULSE_KAFKA_BOOTSTRAP`` (the CLI sets it to the embedded broker when none is given).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from pathlib import Path

from prometheus_client import start_http_server

from stream.app import app, settings
from stream.broker import cluster_id
from stream.resume import LOG
from stream.topics import ensure_topics, pipeline_topics

__all__ = ["main", "AGENT_MODULES"]

AGENT_MODULES = ("stream.agents.kpis", "stream.agents.merge", "stream.agents.detect",
                 "stream.agents.alerts", "stream.agents.digest", "stream.pages")


ORPHAN_GRACE_S = 15.0
# CPython's cyclic GC runs a young collection every 700 container allocations. The worker makes
# a dict per event and keeps weeks of per-user state, so it collected hundreds of times a second
# and kept re-walking that state (about a fifth of the KPI stage's time, run without Kafka). Events
# die young and the state has no cycles: collect every 50,000 allocations, and never walk what
# start-up imported (Faust, aiokafka, the detectors: alive for the whole run).
GC_THRESHOLDS = (50_000, 20, 20)


def _exit_when_orphaned() -> None:
    """A worker whose parent (``pulse demo``, a test, ``pulse worker``) died gets SIGTERM from
    the kernel; if the graceful stop then hangs (its broker died with the parent and aiokafka
    keeps retrying), this ends the process, so none is left behind."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(3)

    if parent > 1:
        threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    _exit_when_orphaned()
    try:   # Faust's tables and every agent's checkpoints live there; a fresh clone has none
        (Path(settings.data_dir) / "faust").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        sys.exit(f"pulse worker: cannot create the data directory {settings.data_dir!r} ({e}); "
                 "set PULSE_DATA_DIR to a directory you can write.")
    for name in AGENT_MODULES:
        __import__(name)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    loop = asyncio.new_event_loop()   # not asyncio.run: Faust wants the current loop left as is
    try:   # which log this is, before any agent loads a state saved on one (stream/resume.py)
        LOG.cluster = loop.run_until_complete(cluster_id(settings.kafka_bootstrap, 10.0))
        loop.run_until_complete(ensure_topics(settings.kafka_bootstrap, pipeline_topics(settings)))
    except Exception as e:   # e.g. no right to create topics: they may exist already
        print(f"pulse worker: could not check the topics ({e}); make sure they exist with the "
              "partition counts of docs/events.md", file=sys.stderr)
    finally:
        loop.close()
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, addr=settings.metrics_bind)
        except OSError as e:
            sys.exit(f"pulse worker: cannot serve /metrics on port {settings.metrics_port} ({e}); "
                     "set PULSE_METRICS_PORT to a free port, or 0 to turn it off.")
    level = {"debug": "debug", "info": "info", "warning": "warn", "warn": "warn",
             "error": "error"}.get(settings.log_level.lower(), "info")
    sys.argv = ["pulse-worker", "worker", "--loglevel", level,
                "--web-port", str(settings.web_port), *(argv or [])]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
