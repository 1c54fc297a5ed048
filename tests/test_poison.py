"""One message on an internal topic never stops a stage (issue 19, H4).

A worker on the embedded broker gets poison on each of ``kpi-partials``, ``kpis``,
``anomalies`` and ``alerts`` (stream/internal.py checks them): each lands in ``dead-letters``
with its reason, topic and offset, and the real events published after it still come out as
KPI windows, anomaly markers, alerts and a daily digest, with ``pulse_kpi`` bounded to the
known segments and channels.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from alerting.lifecycle import AlertManager
from alerting.sink import alert_record
from core.vocabulary import CHANNELS, SEGMENTS
from detectors import load_config
from detectors.watch import KpiWatch
from kpis.merger import KpiMerger
from kpis.messages import group_snapshots, is_running, window_closed, window_messages
from kpis.partials import decode_partials, encode_partials
from kpis.windows import PartitionWindows
from simulator import Simulation
from simulator.publisher import partition_of
from stream.broker import EmbeddedBroker
from stream.internal import ROW_LENGTH, alert_in, anomaly_in, kpi_docs_in, partials_in
from tests.conftest import Pipeline
from tests.kafka_helpers import send_raw

DAY = 1_794_000_000 // 86400 * 86400    # 2026-11-06, a UTC midnight
HOUR = 3600.0
W0 = int(DAY // HOUR) - 48              # the poison kpis' window, two days before the events
WP = W0 - 24                            # the poison partials' window
INVENTED = [f"segment-{i}" for i in range(2000)]   # 300 fit a kpis message: pulse_kpi grows


@pytest.fixture(scope="module")
def single(broker: EmbeddedBroker) -> Iterator[Pipeline]:
    p = Pipeline(broker, partitions=1).start()
    yield p
    p.stop()


def _partial(rows: list[list], **changes: object) -> bytes:
    return orjson.dumps([{"partition": 0, "partitions": 1, "closed_before": WP + 1,
                          "windows": [{"window": WP, "rows": rows, "referrals": [],
                                       "cohorts": []}], "peeks": [], **changes}])


def _kpi_doc(series: list[dict]) -> dict:
    start = W0 * HOUR
    return {"kpi": "signups", "unit": "count", "window_start": "2026-11-08T00:00:00Z",
            "window_end": "2026-11-08T01:00:00Z", "window_start_ts": start,
            "window_end_ts": start + HOUR, "complete": True, "series": series}


def _anomaly(**changes: object) -> dict:
    start = DAY - 2 * HOUR
    return {"kpi": "payment_failure_rate", "segment": "all", "channel": "all",
            "window_start": "x", "window_end": "y", "window_start_ts": start,
            "window_end_ts": start + HOUR, "value": 0.4, "expected": 0.05, "lower": 0.03,
            "upper": 0.07, "score": 0.999, "severity": "critical", "direction": "up",
            "detector": "forecast", "unit": "ratio", "n": 400.0, "contributors": [],
            "history": [], **changes}


POISON: dict[str, list[tuple[bytes, str, str]]] = {   # topic -> (message, reason, detail)
    "kpi-partials": [
        (_partial([], partition=99), "bad_value", "partition 99 of a topic of 1"),
        (_partial([], partition=99, partitions=100), "bad_value", "the events topic has 1"),
        (_partial([["new_grad", "organic", [1, 2, 3]]]), "bad_value",
         f"counts must be a list of {ROW_LENGTH}"),
        (_partial([[s, "organic", [1] * ROW_LENGTH] for s in INVENTED[:300]]), "bad_value",
         "unknown segment"),
        (b'[{"partition": 0, "partitions": ', "invalid_json", ""),
    ],
    "kpis": [
        (b"window 42 closed", "invalid_json", ""),
        (orjson.dumps([_kpi_doc([{"segment": s, "channel": "all", "value": 1.0, "n": 1.0}
                                 for s in INVENTED])]), "oversized", "2000 series"),
        (json.dumps([_kpi_doc([{"segment": "all", "channel": "all", "value": float("nan"),
                                "n": 3.0}])]).encode(), "bad_value", "not finite"),
    ],
    "anomalies": [
        (orjson.dumps({"kpi": "signups", "severity": "critical"}), "missing_field",
         "is missing"),
        (orjson.dumps(_anomaly(value="high", window_end_ts="soon")), "wrong_type",
         "must be a finite number"),
    ],
    "alerts": [(b'{"id": "a1", "status": ', "invalid_json", "")],
}


async def read_topic(bootstrap: str, topic: str, *, until: Any,
                     timeout: float) -> list[dict[str, Any]]:
    """The JSON documents of ``topic`` from the start (skipping the poison that is not JSON)
    until ``until(documents)`` holds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for rec in records:
                    try:
                        doc = orjson.loads(rec.value)
                    except orjson.JSONDecodeError:
                        continue
                    out.extend(d for d in (doc if isinstance(doc, list) else [doc])
                               if isinstance(d, dict))
    finally:
        await consumer.stop()
    return out


def signup(i: int, ts: float) -> dict:
    return {"event_id": f"poison-{i}", "kind": "signup", "ts": ts, "user_id": f"u{i}",
            "segment": "new_grad", "channel": "organic", "referred_by": None}


def test_poison_on_each_internal_topic_is_dead_lettered_and_the_stage_moves_on(
        single: Pipeline) -> None:
    started = time.monotonic()
    for topic, poison in POISON.items():
        asyncio.run(send_raw(single.bootstrap, single.topic(topic), [m for m, _, _ in poison]))
    good = _anomaly()   # the next good anomaly after the bad ones: it opens an alert
    asyncio.run(send_raw(single.bootstrap, single.topic("anomalies"), [orjson.dumps(good)]))
    events = [signup(i, DAY + 60 * i) for i in range(5)] + [signup(9, DAY + 25 * HOUR + 5)]
    asyncio.run(send_raw(single.bootstrap, single.topic("events"), [
        orjson.dumps(events), orjson.dumps({"kind": "watermark", "ts": DAY + 26 * HOUR + 600})]))

    # every stage went on: windows out of the merge, their markers out of the detectors ...
    kpis = asyncio.run(read_topic(
        single.bootstrap, single.topic("kpis"), timeout=120,
        until=lambda m: any(d.get("window_start_ts") == DAY + 25 * HOUR and not is_running(d)
                            for d in m)))
    signups = {d["window_start_ts"]: d["series"][0]["value"] for d in kpis
               if d.get("kpi") == "signups" and not is_running(d)
               and d["window_start_ts"] != W0 * HOUR}   # not the poison kpis
    assert signups[DAY] == 5 and signups[DAY + 25 * HOUR] == 1
    assert min(signups) == DAY, min(signups)   # the poison partials started no window
    # pulse_kpi: only the known segments and channels (9 series per KPI)
    series = [s.labels for f in text_string_to_metric_families(single.metrics_text())
              if f.name == "pulse_kpi" for s in f.samples]
    per_kpi = Counter(labels["kpi"] for labels in series)
    assert per_kpi and max(per_kpi.values()) <= 1 + len(SEGMENTS) + len(CHANNELS), \
        per_kpi.most_common(3)
    assert {s["segment"] for s in series} <= {"all", *SEGMENTS}
    markers = asyncio.run(read_topic(
        single.bootstrap, single.topic("anomalies"), timeout=60,
        until=lambda m: any(d.get("kind") == "window_closed"
                            and d["window_end_ts"] == DAY + 26 * HOUR for d in m)))
    assert any(d.get("window_end_ts") == DAY + 26 * HOUR for d in markers)
    # ... an alert out of the alerts agent, a day out of the digest
    alerts = asyncio.run(read_topic(single.bootstrap, single.topic("alerts"), timeout=60,
                                    until=lambda m: any(a.get("kpi") == good["kpi"]
                                                        for a in m if "kpi" in a)))
    assert any(a.get("kpi") == good["kpi"] and a.get("status") == "open" for a in alerts)
    digest = Path(single.worker.data_dir) / "digest.jsonl"
    deadline = time.monotonic() + 60
    while not (digest.exists() and '"2026-11-06"' in digest.read_text()):
        assert time.monotonic() < deadline, "no digest of the day after the poison alert"
        time.sleep(0.5)

    # each poison once in dead-letters, with its reason, topic, partition and offset
    expected = sum(len(p) for p in POISON.values())
    dead = asyncio.run(read_topic(single.bootstrap, single.topic("dead-letters"), timeout=30,
                                  until=lambda m: len(m) >= expected))
    assert len(dead) == expected, [(d["topic"], d["reason"]) for d in dead]
    for topic, poison in POISON.items():
        got = sorted((d for d in dead if d["topic"] == single.topic(topic)),
                     key=lambda d: d["offset"])
        assert [(d["offset"], d["reason"]) for d in got] == \
            [(i, reason) for i, (_, reason, _) in enumerate(poison)], topic
        for d, (message, _, detail) in zip(got, poison, strict=True):
            assert detail in d["detail"], (d["detail"], detail)
            assert d["partition"] == 0 and d["raw"] and d["raw"].encode() in message

    text = single.metrics_text()
    reasons = Counter(reason for p in POISON.values() for _, reason, _ in p)
    for reason, n in reasons.items():
        assert f'pulse_dead_letters_total{{reason="{reason}"}} {float(n)}' in text, reason
    print(f"poison test: {time.monotonic() - started:.1f} s")


# --- what the pipeline writes passes (no false dead letters), without a broker ---------------

def test_what_the_pipeline_writes_passes_the_checks() -> None:
    start = 1_794_000_000 // 3600 * 3600
    events = Simulation(seed=4, start_ts=start).advance(start + 2 * 86400)
    parts = [PartitionWindows(peek_s=300.0) for _ in range(2)]
    merger, messages = KpiMerger(partitions=2), 0
    for i, e in enumerate(events):
        parts[partition_of(e, 2)].add(e)
        if i % 3000 and i + 1 < len(events):
            continue
        wm = e["ts"] if i + 1 < len(events) else e["ts"] + 2 * HOUR
        raw = encode_partials([(p, 2, parts[p].closed_before, closed, parts[p].take_peeks())
                               for p in (1, 0) for closed in [parts[p].advance(wm, True)]])
        partials, bad = partials_in(raw, 2, HOUR)
        assert bad is None and partials == decode_partials(raw)
        for p, _, closed_before, closed, peeks in partials:
            for docs in window_messages(group_snapshots(merger.add(p, closed_before, closed,
                                                                   peeks))):
                got, rejected = kpi_docs_in(orjson.dumps(docs))
                assert got == docs and rejected == [], rejected
                messages += 1
    assert messages > 40

    watch, rng, manager = KpiWatch(load_config()), random.Random(5), AlertManager()

    def doc(h: int, value: float, as_of: float | None = None) -> dict:
        d = _kpi_doc([{"segment": "all", "channel": "all", "value": value, "n": value}])
        d.update(window_start_ts=W0 * HOUR + h * HOUR, window_end_ts=W0 * HOUR + (h + 1) * HOUR)
        return {**d, "as_of": "t", "as_of_ts": d["window_start_ts"] + as_of} if as_of else d

    for h in range(24 * 14):
        watch.observe(doc(h, float(sum(rng.random() < 0.4 for _ in range(100)))))
    h = 24 * 14
    found = [a for t in (300, 600, 900, 1200) for a in watch.observe(doc(h, 0.0, t))]
    found += watch.observe(doc(h, 0.0)) + [window_closed(doc(h, 0.0))]
    assert [bool(a.get("early")) for a in found] == [True, False, False], found   # marker last
    for anomaly in found:
        assert anomaly_in(orjson.dumps(anomaly)) == (anomaly, None)
        for change in manager.on_anomaly(anomaly) if "kpi" in anomaly else ():
            record = orjson.loads(orjson.dumps(alert_record(change.alert)))
            assert alert_in(orjson.dumps(record)) == (record, None)
    week = (Path(__file__).parent / "data" / "alerts_week.jsonl").read_bytes().splitlines()
    assert week and all(alert_in(line)[1] is None for line in week)


@pytest.mark.parametrize("series, reason, detail", [
    ({"segment": "all", "channel": "all", "value": "high"}, "wrong_type",
     "value must be a finite number, got str"),
    ({"segment": "all", "channel": "all", "value": 1.0, "n": True}, "wrong_type",
     "n must be a finite number, got bool"),
    ({"segment": ["all"], "channel": "all", "value": 1.0}, "wrong_type",
     "segment must be str, got list"),
    ({"segment": "all", "value": 1.0}, "missing_field", "channel is missing"),
    ({"segment": "all", "channel": "tiktok", "value": 1.0}, "bad_value",
     "unknown series 'all'/'tiktok'"),
    (["all", "all", 1.0], "not_an_object", "a JSON list, expected a series object"),
])
def test_a_kpi_document_with_one_bad_series_is_rejected_with_the_reason(
        series: Any, reason: str, detail: str) -> None:
    good = {"segment": "all", "channel": "all", "value": 2.0, "n": 2}
    fine, bad = _kpi_doc([good]), _kpi_doc([good, series, good])
    docs, rejected = kpi_docs_in(orjson.dumps([fine, bad]))
    assert docs == [fine]
    assert [(r.reason, r.detail) for r in rejected] == [(reason, detail)]
    assert orjson.loads(rejected[0].raw) == bad
