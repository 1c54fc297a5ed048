"""Bad input never stops the worker: each class lands in dead-letters with its reason."""

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

START = 1_794_000_000 // 3600 * 3600
HOUR = 3600.0


@pytest.fixture(scope="module")
def single(broker: EmbeddedBroker) -> Iterator[Pipeline]:
    p = Pipeline(broker, partitions=1).start()
    yield p
    p.stop()


def signup(i: int, ts: float) -> dict:
    return {"event_id": f"dl-{i}", "kind": "signup", "ts": ts, "user_id": f"u{i}",
            "segment": "new_grad", "channel": "organic", "referred_by": None}


def wm(ts: float) -> dict:
    return {"kind": "watermark", "ts": ts}


def test_each_bad_input_class_is_dead_lettered_and_good_events_flow(single: Pipeline) -> None:
    j = orjson.dumps
    scan = {"event_id": "s1", "kind": "scan", "ts": START + 100, "user_id": "u1",
            "segment": "new_grad", "channel": "organic", "match_score": 0.7}
    pay = {"event_id": "p1", "kind": "payment", "ts": START + 100, "user_id": "u1",
           "segment": "new_grad", "channel": "organic", "plan": "monthly", "amount": 39.0,
           "status": "succeeded", "first": True}
    bad = {
        "invalid_json": b'{"event_id": "x", "kind": ',
        "not_an_object": b"42",
        "missing_field": j({k: v for k, v in scan.items() if k != "match_score"}),
        "wrong_type": j({**scan, "event_id": "s2", "match_score": "high"}),
        "unknown_kind": j({**scan, "event_id": "s3", "kind": "refund"}),
        "bad_value": j({**pay, "event_id": "p2", "amount": -5.0}),
        "bad_value_absurd": j({**pay, "event_id": "p3", "amount": 1e9}),
        "bad_timestamp_future": j({**scan, "event_id": "s4", "ts": time.time() + 30 * 86400}),
        "bad_timestamp_past": j({**scan, "event_id": "s5", "ts": START - 500 * 86400}),
        "oversized": j({**scan, "event_id": "s6", "blob": "x" * (1100 * 1024)}),
        "oversized_fields": j({**scan, "event_id": "s7", **{f"f{i}": i for i in range(40)}}),
    }
    first = [signup(i, START + 60 * i) for i in range(5)]
    mixed = [signup(10 + i, START + 2 * HOUR + 60 * i) for i in range(3)] + [
        {"event_id": "nokind", "ts": START}, wm(START + 2 * HOUR + 600)]
    payloads: list[bytes | None] = [j([*first, wm(START + 2 * HOUR + 600)])]
    payloads += list(bad.values())
    payloads += [None, j(mixed), j(signup(99, START + 5)),   # empty message; mixed batch; late
                 j(signup(20, START + 3 * HOUR + 1)), j(wm(START + 4 * HOUR + 600))]
    asyncio.run(send_raw(single.bootstrap, single.topic("events"), payloads))

    kpis = asyncio.run(read_topic(
        single.bootstrap, single.topic("kpis"), timeout=120,
        until=lambda m: any(d["window_start_ts"] == START + 3 * HOUR and not is_running(d)
                            for d in m)))
    dead = asyncio.run(read_topic(single.bootstrap, single.topic("dead-letters"),
                                  until=lambda m: len(m) >= 14, timeout=30))
    reasons = [d["reason"] for d in dead]
    for reason in ("invalid_json", "not_an_object", "missing_field", "wrong_type",
                   "unknown_kind", "bad_value", "bad_timestamp", "future", "oversized", "late"):
        assert reason in reasons, (reason, reasons)
    assert reasons.count("bad_value") == 2 and reasons.count("bad_timestamp") == 1
    assert reasons.count("oversized") == 2 and reasons.count("missing_field") == 2
    by_detail = {d["detail"]: d for d in dead}
    assert any("match_score must be a number" in k for k in by_detail)
    wrong = next(d for d in dead if d["reason"] == "wrong_type")
    assert orjson.loads(wrong["raw"])["match_score"] == "high"   # raw payload kept
    assert all({"topic", "partition", "offset"} <= d.keys() for d in dead)

    signups = {d["window_start_ts"]: d["series"][0]["value"] for d in kpis
               if d.get("kpi") == "signups" and not is_running(d)}
    assert signups[START] == 5                 # the late copy was not added
    assert signups[START + 2 * HOUR] == 3      # good events of the mixed batch counted
    assert signups[START + 3 * HOUR] == 1      # and events after all the bad ones still flow

    text = single.metrics_text()
    assert 'pulse_dead_letters_total{reason="late"} 1.0' in text
    assert 'pulse_dead_letters_total{reason="oversized"} 2.0' in text
