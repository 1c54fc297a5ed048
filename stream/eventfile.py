"""Event files that ``pulse replay`` reads and ``pulse record`` writes (docs/replay.md).

Two line formats are accepted, mixed freely, plain or gzip (by the ``.gz`` suffix):

- an **event line**: one event object of docs/events.md, as ``pulse demo --out`` and
  ``pulse simulate --out`` write ``events.jsonl``;
- a **record line**: one Kafka message of the ``events`` topic as ``pulse record`` writes it,
  ``{"partition", "offset", "timestamp", "key", "value"}`` with ``value`` one event or an array
  of them. A ``{"pulse_record": {...}}`` header line says where the recording came from.

Watermark control messages are not events and are dropped (a replay makes its own). Any other
line (not JSON, not an object, an event the worker would reject) is a :class:`LineProblem`,
reported with its line number and skipped.

Files are read twice and never held whole: :func:`scan_file` validates every line and notes,
per event-time window, the last line that holds one of its events; :func:`sorted_events` then
reads again and hands out events in event-time order, keeping only windows not yet complete in
memory (the input is usually sorted, or nearly: a recording interleaves partitions).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import orjson

from stream.events import validate

__all__ = ["FileScan", "LineProblem", "RECORD_VERSION", "events_of_line", "open_lines",
           "scan_file", "sorted_events"]

RECORD_VERSION = 1
_TS = itemgetter("ts")


@dataclass(frozen=True)
class LineProblem:
    """A line that holds no usable event: its number (1-based) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class FileScan:
    """What the first reading of a file found."""

    path: Path
    window_s: float
    events: int = 0
    lines: int = 0
    first_ts: float = math.inf
    last_ts: float = -math.inf
    problems: list[LineProblem] = field(default_factory=list)
    header: dict[str, Any] | None = None
    last_line_of: dict[int, int] = field(default_factory=dict)  # window index -> last line

    @property
    def first_window_start(self) -> float:
        return math.floor(self.first_ts / self.window_s) * self.window_s

    @property
    def last_window_end(self) -> float:
        return (math.floor(self.last_ts / self.window_s) + 1) * self.window_s


def open_lines(path: str | Path) -> IO[bytes]:
    """The file as binary lines; gzip when the name ends in ``.gz``."""
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return p.open("rb")


def _check_event(item: Any) -> str | None:
    """Why ``item`` is not an event the worker would count (None when it is one)."""
    if not isinstance(item, dict):
        return f"a JSON {type(item).__name__} where an event object was expected"
    problem = validate(item, None, math.inf)
    return None if problem is None else f"{problem[0]}: {problem[1]}"


def events_of_line(raw: bytes) -> tuple[list[dict[str, Any]], list[str], dict | None]:
    """(events, problems, header) of one line; a blank line gives ``([], [], None)``.

    A recorded message keeps its good events when some of its items are bad.

    >>> events_of_line(b'{"kind": "watermark", "ts": 1795255200}')
    ([], [], None)
    >>> events_of_line(b'{"kind": "scan"')[1]
    ['not JSON (unexpected end of data: line 1 column 16 (char 15))']
    >>> events_of_line(b'{"partition": 0, "offset": 7, "value": [1]}')[1]
    ['item 0 of the recorded message: a JSON int where an event object was expected']
    """
    if not raw.strip():
        return [], [], None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return [], [f"not JSON ({e})"], None
    if isinstance(doc, dict) and "pulse_record" in doc:
        return [], [], doc
    recorded = isinstance(doc, dict) and "value" in doc and ("offset" in doc
                                                             or "partition" in doc)
    if recorded:
        value = doc["value"]
        items = value if isinstance(value, list) else [value]
    elif isinstance(doc, dict):
        items = [doc]
    else:
        return [], [f"a JSON {type(doc).__name__}, not an event or a recorded message"], None
    events, problems = [], []
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("kind") == "watermark":
            continue
        problem = _check_event(item)
        if problem is None:
            events.append(item)
        else:
            problems.append(f"item {i} of the recorded message: {problem}" if recorded
                            else problem)
    return events, problems, None


def scan_file(path: str | Path, window_s: float) -> FileScan:
    """Read ``path`` once: count and validate events, find the event-time range."""
    scan = FileScan(Path(path), float(window_s))
    with open_lines(path) as f:
        for n, raw in enumerate(f, 1):
            scan.lines = n
            events, problems, header = events_of_line(raw)
            scan.problems.extend(LineProblem(n, p) for p in problems)
            if header is not None:
                scan.header = header.get("pulse_record")
                continue
            for ev in events:
                ts = ev["ts"]
                scan.events += 1
                scan.first_ts = min(scan.first_ts, ts)
                scan.last_ts = max(scan.last_ts, ts)
                scan.last_line_of[int(ts // scan.window_s)] = n
    return scan


def sorted_events(scan: FileScan) -> Iterator[dict[str, Any]]:
    """Every event of the scanned file in event-time order (file order among equal times).

    A window's events are handed out once the reading has passed the last line holding one of
    them (known from the scan) and every earlier window has gone out.
    """
    if not scan.events:
        return
    windows = sorted(scan.last_line_of)
    pending: dict[int, list[dict[str, Any]]] = {}
    nxt = 0  # index in ``windows`` of the next window to hand out
    with open_lines(scan.path) as f:
        for n, raw in enumerate(f, 1):
            for ev in events_of_line(raw)[0]:
                pending.setdefault(int(ev["ts"] // scan.window_s), []).append(ev)
            while nxt < len(windows) and scan.last_line_of[windows[nxt]] <= n:
                batch = pending.pop(windows[nxt], [])
                batch.sort(key=_TS)
                yield from batch
                nxt += 1
