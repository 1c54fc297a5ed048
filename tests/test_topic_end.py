"""Reading a live topic to now: ``pulse ask --broker``, the digest and the page must not wait
for a topic that never goes quiet (the early looks write to ``kpis`` all the time)."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaProducer

from simulator.publisher import ensure_topics
from stream.broker import EmbeddedBroker, log_end
from stream.kpi_state import docs_from_topic


def _doc(i: int) -> bytes:
    return orjson.dumps([{"kind": "window_closed", "window_start_ts": float(i)}])


async def _read_while_writing(bootstrap: str, topic: str) -> tuple[list[dict], int, bool]:
    """(documents read, messages written before the read began, writer still running when
    the read returned)."""
    await ensure_topics(bootstrap, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    for i in range(500):
        await producer.send(topic, _doc(i), partition=i % 2)
    await producer.flush()
    writing = asyncio.Event()
    stop = asyncio.Event()

    async def keep_writing() -> None:   # a message every 50 ms for up to 60 s
        i = 500
        writing.set()
        while not stop.is_set() and i < 500 + 1200:
            await producer.send_and_wait(topic, _doc(i), partition=i % 2)
            i += 1
            await asyncio.sleep(0.05)

    writer = asyncio.create_task(keep_writing())
    await writing.wait()
    try:
        docs = await docs_from_topic(bootstrap, topic, timeout_s=90.0)
        still = not writer.done()
    finally:
        stop.set()
        await writer
        await producer.stop()
    return docs, 500, still


def test_a_topic_that_never_goes_quiet_is_read_to_where_it_was(broker: EmbeddedBroker) -> None:
    docs, before, still_writing = asyncio.run(_read_while_writing(broker.bootstrap, "end1-kpis"))
    # everything written before the read is there, each once, in partition order
    starts = [d["window_start_ts"] for d in docs]
    assert set(range(before)) <= {int(s) for s in starts}
    assert len(starts) == len(set(starts))
    # and the read ended while the writer went on (waiting for quiet would have taken 60 s)
    assert still_writing


def test_a_topic_that_does_not_exist_has_no_documents(broker: EmbeddedBroker) -> None:
    assert asyncio.run(docs_from_topic(broker.bootstrap, "end1-nothing-here", 5.0)) == []


async def log_end_of_three_messages(bootstrap: str, topic: str) -> tuple[int | None,
                                                                        int | None]:
    """(the log end of a one-partition topic after three messages, that of a topic that is
    not there)."""
    await ensure_topics(bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, _doc(i), partition=0)
    finally:
        await producer.stop()
    return (await log_end(bootstrap, topic, 0),
            await log_end(bootstrap, topic + "-not-there", 0))


def test_log_end_is_the_offset_after_the_last_message(broker: EmbeddedBroker) -> None:
    # (also on Apache Kafka: tests/real_kafka/test_log_end.py)
    assert asyncio.run(log_end_of_three_messages(broker.bootstrap, "end1-three")) == (3, None)
