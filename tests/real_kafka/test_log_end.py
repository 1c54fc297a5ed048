"""``stream.broker.log_end`` on Apache Kafka: the alerts agent reads ``alerts`` up to it after
a crash (what was published after its checkpoint), and the resume protocol compares saved
offsets with it. It said None on Kafka always until session 15 (it asked the client's own
metadata, which holds no topic the client has not read)."""

from __future__ import annotations

import asyncio

from tests.test_topic_end import log_end_of_three_messages


def test_log_end_is_the_offset_after_the_last_message(kafka_bootstrap: str) -> None:
    assert asyncio.run(log_end_of_three_messages(kafka_bootstrap, "log-end-kafka")) == (3, None)
