"""``pulse record``: dump the events of an event-time range from the ``events`` topic to a file.

Every partition is read from its first to its last offset as of the start (Kafka timestamps are
append times, not event times, so there is no shortcut to a range of event time); each message
that holds events with ``from <= ts < to`` becomes one record line (docs/replay.md) keeping its
partition, offset, Kafka timestamp and key, with only those events in ``value`` and the watermark
control messages dropped. The first line is a ``{"pulse_record": {...}}`` header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from core.timefmt import iso_utc, parse_utc
from pulse.progress import ProgressBar
from stream.eventfile import RECORD_VERSION
from stream.settings import Settings
from stream.topic_end import EndReader

__all__ = ["RecordError", "RecordStats", "parse_time", "record_range", "run_record"]

CONNECT_TIMEOUT_S = 15.0


class RecordError(RuntimeError):
    """The recording cannot be made (no broker, no topic); the message says what to do."""


@dataclass
class RecordStats:
    messages_read: int = 0
    lines: int = 0
    events: int = 0
    not_json: int = 0
    seconds: float = 0.0


def parse_time(text: str) -> float:
    """Epoch seconds from ISO-8601 (UTC unless an offset is given) or a number of seconds.

    >>> parse_time("2026-11-21T10:00:00Z"), parse_time("2026-11-21 10:00"), parse_time("1795255200")
    (1795255200.0, 1795255200.0, 1795255200.0)
    >>> parse_time("yesterday")
    Traceback (most recent call last):
    ValueError: 'yesterday' is not a time: give ISO-8601 (2026-11-21T10:00:00Z) or epoch seconds
    """
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
    try:
        return parse_utc(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give ISO-8601 (2026-11-21T10:00:00Z) or "
                         "epoch seconds") from None


def _in_range(item: Any, start: float, end: float) -> bool:
    if not isinstance(item, dict) or item.get("kind") == "watermark":
        return False
    ts = item.get("ts")
    return isinstance(ts, (int, float)) and not isinstance(ts, bool) and start <= ts < end


def _key_fields(key: bytes | None) -> dict[str, Any]:
    if key is None:
        return {"key": None}
    try:
        return {"key": key.decode("utf-8")}
    except UnicodeDecodeError:
        return {"key": None, "key_b64": base64.b64encode(key).decode()}


def _open_out(path: Path, gz: bool) -> IO[bytes]:
    if gz:
        return gzip.open(path, "wb", compresslevel=6)  # type: ignore[return-value]
    return path.open("wb")


async def record_range(bootstrap: str, topic: str, start: float, end: float, out: str | Path,
                       *, progress: ProgressBar | None = None) -> RecordStats:
    """Write the events of ``topic`` with ``start <= ts < end`` to ``out`` (record lines)."""
    out = Path(out)
    stats = RecordStats()
    t0 = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    try:
        await asyncio.wait_for(consumer.start(), CONNECT_TIMEOUT_S)
    except (TimeoutError, KafkaError, OSError) as e:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise RecordError(f"cannot reach Kafka at {bootstrap} ({type(e).__name__}: {e}); check "
                          "--broker / PULSE_KAFKA_BOOTSTRAP") from None
    part_file = out.with_name(out.name + ".part")
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RecordError(f"topic {topic!r} does not exist at {bootstrap}; check "
                              "PULSE_TOPIC_PREFIX")
        reader = EndReader(consumer, [TopicPartition(topic, p) for p in sorted(parts)])
        out.parent.mkdir(parents=True, exist_ok=True)
        with _open_out(part_file, out.suffix == ".gz") as f:
            header = {"version": RECORD_VERSION, "topic": topic, "from": iso_utc(start),
                      "to": iso_utc(end), "from_ts": start, "to_ts": end,
                      "partitions": len(reader.tps), "recorded_at": iso_utc(time.time())}
            f.write(orjson.dumps({"pulse_record": header}) + b"\n")
            async for records in reader.batches(timeout_ms=1000, max_records=5000):
                for rec in records:
                    stats.messages_read += 1
                    _write_record(f, rec, start, end, stats)
                if progress is not None:
                    total = reader.total
                    progress.update(stats.messages_read / total if total else 1.0,
                                    stats.events)
        os.replace(part_file, out)
    finally:
        with contextlib.suppress(Exception):
            part_file.unlink()
        await consumer.stop()
    stats.seconds = time.monotonic() - t0
    if progress is not None:
        progress.update(1.0, stats.events, force=True)
        progress.close()
    return stats


def _write_record(f: IO[bytes], rec: Any, start: float, end: float, stats: RecordStats) -> None:
    try:
        doc = orjson.loads(rec.value) if rec.value is not None else None
    except orjson.JSONDecodeError:
        stats.not_json += 1
        return
    if isinstance(doc, list):
        value: Any = [item for item in doc if _in_range(item, start, end)]
        n = len(value)
    else:
        value, n = doc, int(_in_range(doc, start, end))
    if not n:
        return
    line = {"partition": rec.partition, "offset": rec.offset, "timestamp": rec.timestamp,
            **_key_fields(rec.key), "value": value}
    f.write(orjson.dumps(line) + b"\n")
    stats.lines += 1
    stats.events += n


def run_record(start_text: str, end_text: str, out: str, broker: str, settings: Settings) -> int:
    """``pulse record --from T --to T OUT``; exit code 0, or 2 with a message on stderr."""
    try:
        start, end = parse_time(start_text), parse_time(end_text)
    except ValueError as e:
        print(f"pulse record: {e}", file=sys.stderr)
        return 2
    if not start < end:
        print(f"pulse record: --from ({iso_utc(start)}) must be before --to ({iso_utc(end)})",
              file=sys.stderr)
        return 2
    bootstrap = broker or settings.kafka_bootstrap
    if not bootstrap:
        print("pulse record: give --broker HOST:PORT (or PULSE_KAFKA_BOOTSTRAP) of the Kafka "
              "that holds the events", file=sys.stderr)
        return 2
    topic = settings.topic("events")
    print(f"pulse record: {topic} at {bootstrap}, event time {iso_utc(start)} .. "
          f"{iso_utc(end)} -> {out}", file=sys.stderr, flush=True)
    try:
        stats = asyncio.run(record_range(bootstrap, topic, start, end, out,
                                         progress=ProgressBar("record")))
    except RecordError as e:
        print(f"pulse record: {e}", file=sys.stderr)
        return 2
    note = f"; {stats.not_json:,} messages were not JSON (skipped)" if stats.not_json else ""
    print(f"pulse record: {stats.events:,} events in {stats.lines:,} messages (of "
          f"{stats.messages_read:,} read) written to {out} in {stats.seconds:.1f} s{note}",
          flush=True)
    return 0
