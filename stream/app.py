"""The one Faust app of Pulse, built from the settings.

Consumer-group timings are tuned for fast start and restart: with Faust's defaults a worker took
30-36 s to its first event on the embedded broker and about 2 minutes to restart; with a 10 s
session it restarted in ~20 s after SIGTERM (the broker kept the departed member as group leader
until its session expired); with the 5 s default of ``PULSE_SESSION_TIMEOUT`` start and restart
both take ~4.6 s (``python -m bench.startup``). Offsets are
committed by the agents right after they checkpoint their state (see ``stream/checkpoint.py``),
not on Faust's timer, so a restart resumes exactly where the saved state stops.

The broker is watched (``watch_broker``, stream/broker.py ``BrokerWatch``): ``pulse_broker_up``
says whether it answers, an outage is logged once and then every ``OUTAGE_REMINDER_S`` (Kafka
clients' own connection errors are held to one line per ``OUTAGE_REMINDER_S`` each,
``QuietRepeats``), and a broker that comes back as another cluster (a reset: the embedded
broker keeps nothing) gets the pipeline's topics created again; the agents then start over on
it (stream/resume.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Callable, Collection
from typing import Any, cast

import faust
from faust.types import TP
from mode.utils.logging import level_number

from stream import metrics
from stream.backfill import fetch_range, start_offsets
from stream.broker import BrokerWatch, QuietRepeats, cluster_id, log_end, until_answered
from stream.faust_internals import (
    forget_acks,
    forget_offsets_past_the_log,
    refresh_metadata,
    refuse_topic_auto_creation,
    set_fetch_max_wait,
    stalled_changelogs,
    stop_waiting_for_changelog,
)
from stream.resume import LOG, Offsets, Resume, Step
from stream.settings import Settings
from stream.topics import ensure_topics, pipeline_topics

__all__ = ["app", "settings", "create_app", "commit", "owns", "make_resume", "watch_broker",
           "recreate_topics", "highwater"]

log = logging.getLogger(__name__)

OUTAGE_REMINDER_S = 30.0
BROKER_CHECK_S = 1.0
UNDELIVERED_IDLE_S = 10.0    # an agent given nothing this long is checked for dropped records
RECOVERY_IDLE_S = 10.0   # a table recovery given nothing this long reads its changelog again
RECOVERY_GIVE_UP_S = 30.0   # and given nothing this long after that, stops waiting for it


GUARANTEES = ("at_least_once", "exactly_once")


def create_app(s: Settings) -> faust.App:
    if not s.kafka_bootstrap:
        raise RuntimeError("PULSE_KAFKA_BOOTSTRAP is empty: start the worker through `pulse "
                           "worker` (which starts an embedded broker) or set it to host:port.")
    if s.processing_guarantee not in GUARANTEES:
        raise RuntimeError(f"PULSE_PROCESSING_GUARANTEE is {s.processing_guarantee!r}; use one "
                           f"of {', '.join(GUARANTEES)}.")
    app = faust.App(
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
    set_fetch_max_wait(app, s.fetch_max_wait_ms)
    refuse_topic_auto_creation()   # topics are Pulse's to create, with their partition counts
    forget_offsets_past_the_log()   # a table's changelog on a reset broker is read from its start
    return app


settings = Settings.from_env()
app = create_app(settings) if settings.kafka_bootstrap else faust.App(settings.app_id)


@app.task
async def restore_log_level() -> None:
    """Faust's start-up spinner sets the root logger to DEBUG and leaves it there
    (faust/worker.py ``_setup_spinner_handler``): every ``logger.debug`` in Faust, one per
    message sent, then builds a log record that no handler prints (~3% of a busy worker's
    time). Once the worker runs, the root logger goes back to ``PULSE_LOG_LEVEL``."""
    logging.root.setLevel(level_number(settings.log_level.lower()))
    quiet = QuietRepeats(OUTAGE_REMINDER_S)
    for handler in logging.root.handlers:   # Faust's (mode's) handlers, set up by now
        handler.addFilter(quiet)


LOG.on_reset = metrics.BROKER_RESETS.inc
LOG.refresh = lambda: cluster_id(settings.kafka_bootstrap)


async def recreate_topics() -> None:
    """The topics of a broker that was reset (they vanished with it): the pipeline's, with
    their partition counts, and Faust's own (the tables' changelogs, the leader topic)."""
    await ensure_topics(settings.kafka_bootstrap, pipeline_topics(settings))
    internal = [t.changelog_topic for t in app.tables.values()]
    internal += [channel for channel in list(app.topics) if channel.internal]
    for topic in internal:
        try:
            await topic.declare()
        except Exception as exc:   # it exists already, or the broker went away again
            log.info("topic %s not declared again (%s)", topic, exc)
    refresh_metadata(app.consumer)   # it rejoined before they existed: it sees them now


async def rewind(topics: Collection[str]) -> None:
    """After a broker reset: the consumer back to where the group starts on the new log
    (committed, else earliest) on each assigned partition of ``topics``. (Left alone, Faust
    goes on fetching from its old positions, and a new log that has reached them already is
    skipped up to there.)"""
    wanted: dict[str, list[int]] = {}
    for tp in app.consumer.assignment():
        if tp.topic in topics:
            wanted.setdefault(tp.topic, []).append(tp.partition)
    for topic, partitions in wanted.items():
        starts = await start_offsets(settings.kafka_bootstrap, settings.app_id, topic,
                                     partitions)
        for partition, offset in starts.items():
            await app.consumer.seek(TP(topic, partition), offset)
            forget_acks(app.consumer, TP(topic, partition))   # offsets of the old log


_rewinds: set[asyncio.Future[None]] = set()


def rewind_soon(topics: Collection[str]) -> None:
    """:func:`rewind`, not waited for: a seek waits for the consumer, which may be in a
    rebalance that waits for the agents (the caller may be one)."""
    task = asyncio.ensure_future(asyncio.wait_for(rewind(topics), 60.0))
    _rewinds.add(task)

    def done(t: asyncio.Future[None]) -> None:
        _rewinds.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.info("consumer not rewound after the broker reset (%r)", t.exception())

    task.add_done_callback(done)


async def _ask_cluster_after_rebalance(sender: Any, *args: Any, **kwargs: Any) -> None:
    """A new assignment may come from a broker that was reset: the agents ask its cluster id
    before their next record (stream/resume.py ``LogIdentity.unsure``). (No seek here: this
    runs inside the consumer's rebalance, and a seek waits for that consumer.)"""
    LOG.unsure = True


app.on_partitions_assigned.connect(cast(Any, _ask_cluster_after_rebalance))


@app.task
async def watch_broker() -> None:
    """Whether the broker answers, and as which cluster (``BrokerWatch``), every
    ``BROKER_CHECK_S``."""
    async def new_log() -> None:
        await recreate_topics()
        rewind_soon(pipeline_topics(settings))

    watch = BrokerWatch(settings.kafka_bootstrap, LOG, set_up=metrics.BROKER_UP.set,
                        recreate=new_log, remind_s=OUTAGE_REMINDER_S)
    try:
        while not app.should_stop:
            await watch.step()
            await asyncio.sleep(BROKER_CHECK_S)
    finally:
        await watch.close()


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
                due: Offsets | None = None, on_reset: Step | None = None) -> Resume:
    """The resume protocol (stream/resume.py) of an agent reading ``topics``, wired to this
    app: gaps fetched and start offsets asked of the broker, the producer flushed and the
    agent's own topics committed after ``save``; after a broker reset ``on_reset`` starts the
    agent's state over (None: its state is kept, only its offsets start over)."""
    bootstrap = settings.kafka_bootstrap

    async def fetch(topic: str, partition: int, start: int, end: int) -> list[Any]:
        return await until_answered(
            lambda: fetch_range(bootstrap, topic, partition, start, end),
            f"for offsets {start}..{end - 1} of {topic}[{partition}]")

    async def start(topic: str, partition: int) -> int:
        offsets = await until_answered(
            lambda: start_offsets(bootstrap, settings.app_id, topic, [partition]),
            f"where {topic}[{partition}] starts")
        return offsets[partition]

    async def flush() -> None:
        await app.producer.flush()

    async def end(topic: str, partition: int) -> int | None:
        return await log_end(bootstrap, topic, partition)

    async def start_over() -> None:   # a broker reset: the agent's state, then its positions
        if on_reset is not None:
            result = on_reset()
            if inspect.isawaitable(result):
                await result
        rewind_soon(topics)

    resume = Resume(fetch=fetch, start=start, flush=flush, save=save,
                    commit=lambda: commit(*topics), every_s=every_s, due=due,
                    on_redelivered=metrics.REDELIVERED.inc, on_gap=metrics.OFFSET_GAPS.inc,
                    log=LOG, end=end, on_reset=start_over)
    _resumes[resume] = frozenset(topics)
    return resume


_resumes: weakref.WeakKeyDictionary[Resume, frozenset[str]] = weakref.WeakKeyDictionary()
"""Each running agent's resume protocol and its topics (an agent restarted drops its old one)."""
_reread_said: set[tuple[str, int, int]] = set()


@app.timer(UNDELIVERED_IDLE_S / 2)
async def reread_undelivered() -> None:
    """Seek back the partitions whose records Faust fetched and then dropped in a rebalance
    (``Resume.undelivered``): an idle agent would otherwise wait for a next message to show the
    gap. Not during a rebalance or a table recovery, when Faust's flow is stopped on purpose."""
    consumer = app.consumer
    if app.rebalancing or app.in_recovery or not getattr(consumer, "flow_active", True) \
            or not app.flow_control.is_active():
        return
    for resume, topics in list(_resumes.items()):
        assigned = [(tp.topic, tp.partition) for tp in consumer.assignment()
                    if tp.topic in topics]
        try:
            seeks = await resume.undelivered(assigned, highwater, UNDELIVERED_IDLE_S)
            for (topic, partition), offset in seeks.items():
                said = (topic, partition, offset)
                (log.info if said in _reread_said else log.warning)(
                    "%s[%d] holds messages from offset %d on that were never delivered to its "
                    "agent (dropped in a rebalance); reading them again", topic, partition,
                    offset)
                _reread_said.add(said)
                metrics.REREADS.inc()
                await asyncio.wait_for(consumer.seek(TP(topic, partition), offset), 30.0)
        except Exception as exc:   # the broker went away again, or another rebalance began
            log.info("undelivered records not checked (%r)", exc)


@app.timer(RECOVERY_IDLE_S / 2)
async def unstall_table_recovery() -> None:
    """A table recovery that receives nothing while its changelog holds records it waits for
    (faust_internals ``stalled_changelogs``) keeps every stream paused: after
    ``RECOVERY_IDLE_S`` its changelog is sought again; after ``RECOVERY_GIVE_UP_S`` more the
    recovery stops waiting, keeping what the table holds in memory, and the worker goes on."""
    for tp, (offset, idle) in stalled_changelogs(app).items():
        if idle >= RECOVERY_IDLE_S + RECOVERY_GIVE_UP_S:
            end = stop_waiting_for_changelog(app, tp)
            metrics.RECOVERY_GIVEN_UP.inc()
            log.error("the recovery of table changelog %s[%d] has received nothing for %.0f s "
                      "although the log holds records up to offset %s: it stops waiting, the "
                      "table keeps what it holds, and the worker goes on (its state may miss "
                      "the records not read)", tp.topic, tp.partition, idle, end)
        elif RECOVERY_IDLE_S <= idle < RECOVERY_IDLE_S * 1.5:   # once: the timer's period
            log.warning("the recovery of table changelog %s[%d] has received nothing for %.0f s; "
                        "reading it again from offset %d", tp.topic, tp.partition, idle, offset)
            metrics.REREADS.inc()
            try:
                await asyncio.wait_for(app.consumer.seek(tp, offset), 30.0)
            except Exception as exc:   # the broker went away again, or another rebalance began
                log.info("changelog %s not read again (%r)", tp, exc)


def highwater(topic: str, partition: int) -> int | None:
    """The offset after the last message the consumer has seen on the partition (None: not
    fetched yet, or the assignment just changed)."""
    try:
        return app.consumer.highwater(TP(topic, partition))
    except Exception:   # not fetched yet, or the assignment just changed
        return None
