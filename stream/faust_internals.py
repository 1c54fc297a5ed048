"""Every private attribute of Faust (or aiokafka) that Pulse reads, in one place.

Each is read defensively (a missing attribute gives the neutral answer) and names the version
it was read from: faust-streaming 0.15.3, aiokafka 0.14.0 (``pip show``). Check them when
either is upgraded.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["read_offset", "record_fields", "refresh_metadata", "forget_acks",
           "set_fetch_max_wait", "refuse_topic_auto_creation"]


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
