"""Every private attribute of Faust (or aiokafka) that Pulse reads, in one place.

Each is read defensively (a missing attribute gives the neutral answer) and names the version
it was read from: faust-streaming 0.15.3, aiokafka 0.14.0 (``pip show``). Check them when
either is upgraded.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

__all__ = ["read_offset", "record_fields", "refresh_metadata", "forget_acks",
           "set_fetch_max_wait", "refuse_topic_auto_creation", "forget_offsets_past_the_log",
           "stalled_changelogs", "stop_waiting_for_changelog"]

log = logging.getLogger(__name__)


def read_offset(consumer: Any, tp: Any) -> int | None:
    """Where Faust's consumer started reading ``tp`` (None: not known yet).

    faust-streaming 0.15.3 ``faust.transport.consumer.Consumer._read_offset`` (a dict of TP to
    offset, set when the consumer seeks after an assignment). Faust has no public accessor for
    it; the KPI stage uses it to tell whether a partition that has delivered nothing yet has
    messages waiting (highwater > start) or is empty, so that an empty partition does not hold
    every window back (stream/clock.py ``PartitionClock.watermark``).
    """
    offsets = getattr(consumer, "_read_offset", None)
    if not isinstance(offsets, dict):
        return None
    value = offsets.get(tp)
    return int(value) if value is not None else None


def record_fields(record: type) -> tuple[frozenset[str], frozenset[str]]:
    """(declared fields, fields with a default) of a ``faust.Record`` class.

    faust-streaming 0.15.3 ``faust.models.record.Record._options`` (a ``ModelOptions``: its
    ``fields`` and ``defaults``, filled in by ``Record.__init_subclass__``). Faust documents no
    public accessor; ``faust.Record``'s ``_options`` is what its own ``to_representation`` and
    codecs read. stream/events.py builds its validation schema from these.
    """
    options = getattr(record, "_options", None)
    fields = getattr(options, "fields", None) or {}
    defaults = getattr(options, "defaults", None) or {}
    return frozenset(fields), frozenset(defaults)


def refresh_metadata(consumer: Any) -> bool:
    """Ask Faust's Kafka consumer to fetch the cluster's metadata now; True if it could be asked.

    faust-streaming 0.15.3 ``faust.transport.drivers.aiokafka.Consumer._thread`` (the
    ``AIOKafkaConsumerThread``, running its own event loop ``thread_loop``) and its
    ``_ensure_consumer()`` (the aiokafka 0.14.0 ``AIOKafkaConsumer``), whose ``_client`` has
    ``force_metadata_update()``. After a broker reset the consumer rejoins its group before the
    topics are created again, gets nothing assigned, and would not look at the topics again
    for ``metadata_max_age_ms`` (5 minutes): asked now, it sees them and rebalances. Faust and
    aiokafka have no public way to ask for it.
    """
    thread = getattr(consumer, "_thread", None)
    try:
        client = thread._ensure_consumer()._client   # type: ignore[union-attr]
        loop = thread.thread_loop   # type: ignore[union-attr]
        loop.call_soon_threadsafe(client.force_metadata_update)
    except Exception:   # another transport, or not started
        return False
    return True


def forget_acks(consumer: Any, tp: Any) -> None:
    """Make Faust's consumer forget what it acknowledged and committed on ``tp``, as when the
    partition is revoked.

    faust-streaming 0.15.3 ``faust.transport.consumer.Consumer`` keeps, per TP, ``_acked``,
    ``_acked_index``, ``_gap`` and ``_committed_offset`` (``on_partitions_revoked`` pops them,
    with ``_read_offset``), and its ``commit()`` commits from them. After a broker reset they
    are offsets of the old log: committed on the new one they would make a rebalance skip its
    first messages. Called after ``seek`` (which sets ``_read_offset``).
    """
    for name in ("_acked", "_acked_index", "_gap", "_committed_offset"):
        table = getattr(consumer, name, None)
        if isinstance(table, dict):   # defaultdicts and dicts in 0.15.3
            table.pop(tp, None)


def set_fetch_max_wait(app: Any, ms: int) -> None:
    """Make the Kafka consumer Faust creates for ``app`` wait at most ``ms`` for a fetch.

    faust-streaming 0.15.3 ``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.
    _create_worker_consumer`` builds aiokafka's consumer with ``fetch_max_wait_ms=1500``
    written in, and Faust has no setting for it. The aiokafka 0.14.0 ``AIOKafkaConsumer`` keeps
    it as ``_fetch_max_wait_ms`` until ``start()`` hands it to its ``Fetcher``: the wrapped
    method sets it on the new consumer, before it starts, from the app it is built for (apps
    without the attribute keep Faust's 1500).
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app.pulse_fetch_max_wait_ms = ms
    create = AIOKafkaConsumerThread._create_worker_consumer
    if hasattr(create, "__wrapped__"):
        return   # wrapped once, for every app

    @functools.wraps(create)
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        wait = getattr(self.app, "pulse_fetch_max_wait_ms", None)
        if wait is not None and hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = wait
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore


def refuse_topic_auto_creation() -> None:
    """Make every aiokafka client of this process ask for metadata without creating topics.

    aiokafka 0.14.0 ``aiokafka.client.AIOKafkaClient._metadata_update`` builds
    ``MetadataRequest(topics)``, and ``MetadataRequest`` (v4 and later) then asks the broker to
    create a topic it does not know (``allow_auto_topic_creation`` True). aiokafka has no
    setting for it (the Java client's ``allow.auto.create.topics``). After a broker reset the
    worker's consumer rejoins its group, and asks for its topics, before the worker has created
    them again (stream/app.py ``recreate_topics``): the broker made them with its default
    partition count (Tansu: 4, a one-partition ``alerts`` then lost its order, and Faust's
    recovery of a changelog made so waited for ever). Refused here, the clients wait for the
    topics as Pulse creates them. Replaces the name in ``aiokafka.client`` only; asking for all
    topics (``topics`` None) is unchanged.
    """
    from aiokafka import client
    from aiokafka.protocol.metadata import MetadataRequest

    if getattr(client.MetadataRequest, "pulse_no_auto_create", False):
        return

    class MetadataRequestNoAutoCreate(MetadataRequest):
        pulse_no_auto_create = True

        def __init__(self, topics: list[str] | None = None,
                     allow_auto_topic_creation: bool | None = False) -> None:
            super().__init__(topics, allow_auto_topic_creation)

    client.MetadataRequest = MetadataRequestNoAutoCreate


def forget_offsets_past_the_log() -> None:
    """Make Faust's table recovery drop the changelog offsets that lie past the end of the log.

    faust-streaming 0.15.3 ``faust.tables.recovery.Recovery`` keeps, per changelog partition,
    the last offset it read (``active_offsets``, ``standby_offsets``: Counters, -1 for none)
    for the life of the worker, and ``_build_offsets(consumer, tps, destination, title)``
    starts each recovery from ``max(kept, earliest - 1)``. After a broker reset the changelog
    is a new, shorter log: the kept offset of the old one is past its end, the
    ``recovery_consistency_check`` raises ``ConsistencyError`` inside the Recovery service,
    and the worker, its streams paused for the recovery, never processes another message
    (a worker that had recovered a changelog before the reset: every one restarted once). The
    wrapped method first sets each kept offset past the partition's last offset to -1: the new
    log is read from its start, and the table keeps what it held (a memory store).
    """
    from faust.tables.recovery import Recovery

    build = Recovery._build_offsets
    if hasattr(build, "__wrapped__"):
        return

    @functools.wraps(build)
    async def build_offsets(self: Any, consumer: Any, tps: Any, destination: Any,
                            title: str) -> None:
        kept = {tp: offset for tp in tps
                if (offset := destination.get(tp)) is not None and offset > -1}
        if kept:
            ends = await consumer.highwaters(*kept)   # the offset after each one's last
            for tp, offset in kept.items():
                end = ends.get(tp)
                if end is not None and offset > end - 1:
                    log.warning("the %s changelog %s[%d] ends at offset %d, before the offset "
                                "%d this worker read up to (the broker was reset, or the topic "
                                "made again): it is read from its start", title, tp.topic,
                                tp.partition, end, offset)
                    destination[tp] = -1
        await build(self, consumer, tps, destination, title)

    Recovery._build_offsets = build_offsets  # type: ignore[method-assign]


def stalled_changelogs(app: Any) -> dict[Any, tuple[int, float]]:
    """The changelog partitions whose table recovery waits for records while it receives
    none: for each, the offset to read again from (the last one it applied; 0 for none) and
    how long it has received nothing, in seconds.

    faust-streaming 0.15.3 ``app.tables.recovery`` (``faust.tables.recovery.Recovery``):
    ``in_recovery``, ``active_tps``, ``active_offsets`` and ``active_highwaters`` (Counters,
    -1 for none), ``_recovery_started_at`` and ``_active_events_received_at`` (monotonic
    seconds), as its own ``_verify_remaining`` reads them. After a broker reset the recovery
    was seen to wait for ever (1 run in 4 of tests/test_broker_reset.py), with every stream
    paused, for records the new changelog holds (the producer's writes from before the reset,
    delivered to the new broker) and that never reached it, even when sought again.
    """
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    if recovery is None or not getattr(recovery, "in_recovery", False):
        return {}
    started = getattr(recovery, "_recovery_started_at", None)
    received = getattr(recovery, "_active_events_received_at", None) or {}
    offsets = getattr(recovery, "active_offsets", None) or {}
    highwaters = getattr(recovery, "active_highwaters", None) or {}
    if started is None:
        return {}
    now = time.monotonic()
    out: dict[Any, tuple[int, float]] = {}
    for tp in list(getattr(recovery, "active_tps", ()) or ()):
        offset, highwater = offsets.get(tp), highwaters.get(tp)
        if offset is None or highwater is None or highwater <= offset:
            continue   # nothing to wait for
        out[tp] = (max(offset, 0), now - received.get(tp, started))
    return out


def stop_waiting_for_changelog(app: Any, tp: Any) -> int | None:
    """Make the table recovery take ``tp`` as read to its end (the offset it waited for, or
    None if it was not waiting). Its ``_slurp_changelogs`` sees nothing left at its next
    empty poll (about a second) and ends the recovery: the streams resume. What the table
    holds in memory is kept; records of the changelog it did not apply are not (see
    :func:`stalled_changelogs`)."""
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    highwaters = getattr(recovery, "active_highwaters", None) or {}
    offsets = getattr(recovery, "active_offsets", None)
    highwater = highwaters.get(tp)
    if offsets is None or highwater is None:
        return None
    offsets[tp] = highwater
    return int(highwater)
