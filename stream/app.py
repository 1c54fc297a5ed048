"""The one Faust app of Pulse, built from the settings.

Consumer-group timings are tuned for fast start and restart: with Faust's defaults a worker took
30-36 s to its first event on the embedded broker and about 2 minutes to restart; with a 10 s
session it restarted in ~20 s after SIGTERM (the broker kept the departed member as group leader
until its session expired); with the 5 s default of ``PULSE_SESSION_TIMEOUT`` start and restart
both take ~4.6 s (``python -m bench.startup``). Offsets are
committed by the agents right after they checkpoint their state (see ``stream/checkpoint.py``),
not on Faust's timer, so a restart resumes exactly where the saved state stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust
from mode.utils.logging import level_number

from stream import metrics
from stream.backfill import fetch_range, start_offsets
from stream.resume import Offsets, Resume
from stream.settings import Settings

__all__ = ["app", "settings", "create_app", "commit", "owns", "make_resume"]


GUARANTEES = ("at_least_once", "exactly_once")


def create_app(s: Settings) -> faust.App:
    if not s.kafka_bootstrap:
        raise RuntimeError("PULSE_KAFKA_BOOTSTRAP is empty: start the worker through `pulse "
                           "worker` (which starts an embedded broker) or set it to host:port.")
    if s.processing_guarantee not in GUARANTEES:
        raise RuntimeError(f"PULSE_PROCESSING_GUARANTEE is {s.processing_guarantee!r}; use one "
                           f"of {', '.join(GUARANTEES)}.")
    return faust.App(
        s.app_id,
        processing_guarantee=s.processing_guarantee,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        datadir=f"{s.data_dir}/faust",
        web_port=s.web_port,
        web_bind=s.web_bind,   # loopback unless PULSE_WEB_BIND opens it: the page has no login
        topic_partitions=s.events_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=s.session_timeout_s,
        broker_commit_every=10**9,        # commits follow checkpoints, not a message count
        broker_commit_interval=3600.0,
        stream_wait_empty=False,          # stop promptly on SIGTERM
        producer_linger=0.005,
        producer_max_request_size=2 << 20,
    )


settings = Settings.from_env()
app = create_app(settings) if settings.kafka_bootstrap else faust.App(settings.app_id)


@app.task
async def restore_log_level() -> None:
    """Faust's start-up spinner sets the root logger to DEBUG and leaves it there
    (faust/worker.py ``_setup_spinner_handler``): every ``logger.debug`` in Faust, one per
    message sent, then builds a log record that no handler prints (~3% of a busy worker's
    time). Once the worker runs, the root logger goes back to ``PULSE_LOG_LEVEL``."""
    logging.root.setLevel(level_number(settings.log_level.lower()))


def owns(topic: str) -> bool:
    """Whether this worker is assigned a partition of ``topic`` now. A stage on a one-partition
    topic checks it before saving its state on shutdown: in a group whose workers share
    ``PULSE_DATA_DIR``, only the current reader's state is the real one."""
    try:
        return any(tp.topic == topic for tp in app.consumer.assignment())
    except Exception:   # the consumer is gone already
        return False


async def commit(*topics: str) -> None:
    """Commit the consumed offsets of ``topics`` only, right after the agent reading them saved
    its state. (A plain ``consumer.commit()`` would also commit what other agents have read
    but not saved yet: after a SIGKILL their state would be behind the offsets.)"""
    tps = {tp for tp in app.consumer.assignment() if tp.topic in topics}
    if tps:
        await app.consumer.commit(tps)


def make_resume(topics: tuple[str, ...], save: Callable[[Offsets], Any], every_s: float,
                due: Offsets | None = None) -> Resume:
    """The resume protocol (stream/resume.py) of an agent reading ``topics``, wired to this
    app: gaps fetched and start offsets asked of the broker, the producer flushed and the
    agent's own topics committed after ``save``."""
    bootstrap = settings.kafka_bootstrap

    async def fetch(topic: str, partition: int, start: int, end: int) -> list[Any]:
        return await fetch_range(bootstrap, topic, partition, start, end)

    async def start(topic: str, partition: int) -> int:
        return (await start_offsets(bootstrap, settings.app_id, topic, [partition]))[partition]

    async def flush() -> None:
        await app.producer.flush()

    return Resume(fetch=fetch, start=start, flush=flush, save=save,
                  commit=lambda: commit(*topics), every_s=every_s, due=due,
                  on_redelivered=metrics.REDELIVERED.inc, on_gap=metrics.OFFSET_GAPS.inc)
