"""A few messages must not break event time (stream/events.py ``check_time``).

A watermark far ahead of the wall clock on every partition is dead-lettered as ``future`` (it
used to close hundreds of thousands of empty windows per partition, and the next real hours were
late); spend events each 23 h after the previous one are dead-lettered (``time_jump``, then
``future``) instead of ratcheting event time weeks ahead; the real events after either are
counted exactly, none of them ``late``. Event time is live here (hours behind the wall clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest

from kpis.messages import is_running
from stream.broker import EmbeddedBroker
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic, send_raw

HOUR = 3600.0
T0 = (time.time() - 9 * HOUR) // HOUR * HOUR   # live: hours behind the wall clock
PARTITIONS = 2


def signups(tag: str, start: float, n: int) -> list[dict]:
    return [{"event_id": f"{tag}-{i}", "kind": "signup", "ts": start + 60 * i,
             "user_id": f"{tag}{i}", "segment": "new_grad", "channel": "organic",
             "referred_by": None}
            for i in range(n)]


def wm(ts: float) -> dict:
    return {"kind": "watermark", "ts": ts}


def send(p: Pipeline, partition: int, docs: list[dict] | dict) -> None:
    asyncio.run(send_raw(p.bootstrap, p.topic("events"), [orjson.dumps(docs)],
                         partition=partition))


def closed_signups(p: Pipeline, window: float) -> dict[float, float]:
    kpis = asyncio.run(read_topic(
        p.bootstrap, p.topic("kpis"), timeout=90,
        until=lambda m: any(d["window_start_ts"] >= window and not is_running(d) for d in m)))
    return {d["window_start_ts"]: d["series"][0]["value"] for d in kpis
            if d.get("kpi") == "signups" and not is_running(d)}


def dead_letters(p: Pipeline, n: int) -> list[dict]:
    return asyncio.run(read_topic(p.bootstrap, p.topic("dead-letters"), timeout=60,
                                  until=lambda m: len(m) >= n))


@pytest.fixture(scope="module")
def pipeline2(broker: EmbeddedBroker) -> Iterator[Pipeline]:
    p = Pipeline(broker, partitions=PARTITIONS).start()
    yield p
    p.stop()


def test_a_far_ahead_watermark_per_partition_is_refused_and_the_next_hour_counts(
        pipeline2: Pipeline) -> None:
    p = pipeline2
    for part in range(PARTITIONS):
        send(p, part, [*signups(f"a{part}", T0, 5), wm(T0 + 1800)])
    for part in range(PARTITIONS):
        send(p, part, wm(4.09e9))
    for part in range(PARTITIONS):
        send(p, part, [*signups(f"b{part}", T0 + HOUR, 7), wm(T0 + 2 * HOUR + 600)])
    counted = closed_signups(p, T0 + HOUR)
    assert counted[T0] == 5 * PARTITIONS and counted[T0 + HOUR] == 7 * PARTITIONS
    dead = dead_letters(p, PARTITIONS)
    assert [d["reason"] for d in dead] == ["future"] * PARTITIONS
    assert sorted(d["partition"] for d in dead) == list(range(PARTITIONS))
    text = p.metrics_text()
    assert f'pulse_dead_letters_total{{reason="future"}} {float(PARTITIONS)}' in text


def test_a_ratchet_of_spend_events_23_hours_apart_is_stopped(pipeline2: Pipeline) -> None:
    p = pipeline2
    start = T0 + 3 * HOUR
    for part in range(PARTITIONS):
        send(p, part, [*signups(f"c{part}", start, 3), wm(start + 1800)])
    ratchet = [{"event_id": f"x{i}", "kind": "spend", "ts": start + 1800 + 23 * HOUR * (i + 1),
                "channel": "paid_search", "amount": 10.0} for i in range(240)]
    asyncio.run(send_raw(p.bootstrap, p.topic("events"), [orjson.dumps(e) for e in ratchet],
                         partition=0))
    for part in range(PARTITIONS):
        send(p, part, [*signups(f"d{part}", start + HOUR, 4), wm(start + 2 * HOUR + 600)])
    counted = closed_signups(p, start + HOUR)
    assert counted[start] == 3 * PARTITIONS and counted[start + HOUR] == 4 * PARTITIONS
    dead = [d for d in dead_letters(p, PARTITIONS + 240) if d["reason"] != "future"
            or orjson.loads(d["raw"]).get("kind") == "spend"]
    reasons = [d["reason"] for d in dead]
    assert reasons[0] == "time_jump" and set(reasons) == {"time_jump", "future"}
    assert len(reasons) == 240 and "late" not in reasons


def test_one_message_closes_at_most_two_weeks_of_windows() -> None:
    from kpis.windows import PartitionWindows
    from stream.partitions import MAX_CLOSE_PER_STEP, Partitions
    from stream.settings import Settings

    sent: list[bytes] = []

    async def send_partials(value: bytes) -> None:
        sent.append(value)

    async def count() -> int:
        return 1

    s = Settings()
    parts = Partitions("events", s, None, lambda: {0}, count, send_partials)  # type: ignore[arg-type]
    windows = parts.open[0] = PartitionWindows(s.window_seconds, s.lateness_seconds)
    windows.add(signups("e", T0, 1)[0])
    asyncio.run(parts.close_windows(T0 + 2 * HOUR))
    first = windows.closed_before
    assert first is not None
    asyncio.run(parts.close_windows(4.09e9))   # however far the time: two weeks of windows
    assert windows.closed_before == first + MAX_CLOSE_PER_STEP
    asyncio.run(parts.close_windows(4.09e9))
    assert windows.closed_before == first + 2 * MAX_CLOSE_PER_STEP
