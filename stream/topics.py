"""Creating the pipeline's topics with the partition counts it relies on.

``events`` is split into ``PULSE_EVENTS_PARTITIONS`` partitions for scale-out; every other topic
is one ordered stream (the merge, detector and alert stages each run on one worker at a time
and keep their place by offset). A topic created implicitly by a broker would get the broker's
default partition count instead, so workers, the demo and replays create them first.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.settings import Settings

__all__ = ["ensure_topics", "pipeline_topics", "SINGLE_PARTITION_TOPICS"]

SINGLE_PARTITION_TOPICS = ("kpi-partials", "kpis", "dead-letters", "anomalies", "alerts")


def pipeline_topics(settings: Settings) -> dict[str, int]:
    """Every topic of the pipeline (full names) with its partition count."""
    return {settings.topic("events"): settings.events_partitions,
            **{settings.topic(t): 1 for t in SINGLE_PARTITION_TOPICS}}


async def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create the topics that do not exist yet, with the given partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
