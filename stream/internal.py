"""Checks of what the agents read from the worker's own topics, as stream/events.py checks events.

``kpi-partials``, ``kpis``, ``anomalies`` and ``alerts`` are written by Pulse, but anyone on the
cluster can write to them, and one message an agent cannot use must not stop its stage (Faust
restarts a crashed agent onto the same message). Each function below takes a message as read
and returns what the agent can use plus :class:`~stream.events.Rejected` for the rest, with a
reason of :data:`~stream.events.DEAD_LETTER_REASONS` (the ``pulse_dead_letters_total`` label).
The agents send the rejects to ``dead-letters`` (stream/agents/merge.py ``dead_letter``).

Besides shapes and types, the checks keep the KPI series bounded: partials may name only the
segments and channels of core/vocabulary.py (so ``pulse_kpi`` has at most the 9 series per KPI
the merge makes), and a ``kpis`` document only known series, at most as many as there are
(segment or ``all``, channel or ``all``) pairs. Plain Python: no Kafka here.

>>> partials_in(b'[{"partition": 99, "partitions": 1, "closed_before": null, "windows": []}]',
...             1, 3600.0)[1].detail
'partition 99 of a topic of 1 partitions'
>>> kpi_docs_in(b'[{"kind": "window_closed", "window_start": "a", "window_end": "b",'
...             b' "window_start_ts": 1.8e9, "window_end_ts": NaN}]')[1][0].reason
'bad_value'
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import orjson

from alerting.policies import SEVERITY_RANK
from core.vocabulary import ALL, CHANNELS, SEGMENTS
from kpis.formulas import COHORT_KPIS, KPI_BY_ID, KpiInputs
from kpis.partials import Partial, partials_of
from stream.events import MAX_TEXT, MAX_TS, MIN_TS, Rejected
from stream.metrics import ALERT_STATUSES

__all__ = ["partials_in", "kpi_docs_in", "anomaly_in", "alert_in", "MAX_INTERNAL_BYTES",
           "MAX_PARTITIONS", "MAX_SERIES"]

MAX_INTERNAL_BYTES = 2 << 20   # the worker's producer refuses larger messages (stream/app.py)
MAX_PARTITIONS = 1024
ROW_LENGTH = len(KpiInputs._fields)
_KEY_SEGMENTS = frozenset(SEGMENTS) | {None}    # a partial's (segment, channel) keys: spend
_KEY_CHANNELS = frozenset(CHANNELS) | {None}    # has no segment
_SEGMENTS = frozenset(SEGMENTS) | {ALL}         # a series' segment and channel
_CHANNELS = frozenset(CHANNELS) | {ALL}
MAX_SERIES = len(_SEGMENTS) * len(_CHANNELS)
_COHORT_KPIS = frozenset(k.id for k in COHORT_KPIS)


def _known(v: Any, allowed: frozenset[str | None]) -> bool:
    return (v is None or v.__class__ is str) and v in allowed


# the classes a field of each kind may have; a number read by _json_problem is finite
_KINDS: dict[str, frozenset[type]] = {
    "str": frozenset((str,)), "number": frozenset((int, float)), "int": frozenset((int,)),
    "bool": frozenset((bool,)), "list": frozenset((list,)), "object": frozenset((dict,)),
}
_NUMBER = {"number": "a finite number"}
_NUMBERS = _KINDS["number"]


_read: list[Any] = [None, None]   # the message _json_problem last read, and its JSON


def _json_problem(raw: bytes | None) -> tuple[str, str] | None:
    """Why ``raw`` is not JSON Pulse can read, or None; the JSON is then kept for :func:`_json`.

    orjson refuses NaN and infinities (a literal or a number too large for a double), so every
    number of a document that passed is finite.
    """
    if raw is None:
        return "invalid_json", "empty message (no value)"
    if len(raw) > MAX_INTERNAL_BYTES:
        return "oversized", f"message of {len(raw)} bytes (at most {MAX_INTERNAL_BYTES})"
    try:
        _read[:] = raw, orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            json.loads(raw)   # the standard library reads NaN and Infinity
        except ValueError:
            return "invalid_json", str(e)[:200]
        return "bad_value", "a number that is not finite (NaN or Infinity)"
    return None


def _json(raw: bytes | None) -> Any:
    """The JSON of ``raw`` that :func:`_json_problem` has just read: a message is parsed once
    (the partials of a close are this stage's largest messages)."""
    kept, doc = _read
    _read[:] = None, None
    return doc if kept is raw else orjson.loads(raw or b"")


def _fields_problem(doc: Any, spec: tuple[tuple[str, str, bool], ...],
                    what: str) -> tuple[str, str] | None:
    """Whether ``doc`` is an object whose fields have the kinds of ``spec`` (name, kind of
    :data:`_KINDS`, required); null is a missing field."""
    if doc.__class__ is not dict:
        return "not_an_object", f"a JSON {type(doc).__name__}, expected {what}"
    for name, kind, required in spec:
        value = doc.get(name)
        if value is None:
            if required:
                return "missing_field", f"{name} is missing"
            continue
        if value.__class__ not in _KINDS[kind]:
            return "wrong_type", (f"{name} must be {_NUMBER.get(kind, kind)}, "
                                  f"got {type(value).__name__}")
    return None


def _ts_problem(doc: dict[str, Any], *names: str) -> tuple[str, str] | None:
    for name in names:
        ts = doc.get(name)
        if ts is not None and not MIN_TS <= ts <= MAX_TS:
            return "bad_timestamp", f"{name} {ts} is outside 2000..2100"
    return None


# -- kpi-partials ---------------------------------------------------------------------------

_PARTIAL = (("partition", "int", True), ("partitions", "int", True),
            ("closed_before", "int", False), ("windows", "list", True), ("peeks", "list", False))
_WINDOW = (("window", "int", True), ("rows", "list", True), ("referrals", "list", True),
           ("cohorts", "list", False))
_PEEK = (("window", "int", True), ("as_of", "number", True), ("rows", "list", True))


def partials_in(raw: bytes | None, partitions: int | None,
                window_s: float) -> tuple[list[Partial], Rejected | None]:
    """The partials of a ``kpi-partials`` message, or why it is rejected (the whole message:
    one worker's close of its partitions). ``partitions``: the ``events`` topic's partition
    count when known (each partial must say the same)."""
    problem = _json_problem(raw)
    doc = _json(raw) if problem is None else None
    if problem is None:
        problem = _partials_problem(doc, partitions, window_s)
    if problem is not None:
        return [], Rejected(problem[0], problem[1], raw or b"")
    return partials_of(doc), None


def _partials_problem(doc: Any, partitions: int | None,
                      window_s: float) -> tuple[str, str] | None:
    first, last = math.ceil(MIN_TS / window_s), math.floor(MAX_TS / window_s)
    for d in doc if isinstance(doc, list) else [doc]:
        if _fields_problem(d, _PARTIAL, "a partial object") is not None:
            return _fields_problem(d, _PARTIAL, "a partial object")
        n, p = d["partitions"], d["partition"]
        if not 1 <= n <= MAX_PARTITIONS or (partitions is not None and n != partitions):
            return "bad_value", (f"partitions {n}: the events topic has "
                                 f"{partitions or f'at most {MAX_PARTITIONS}'}")
        if not 0 <= p < n:
            return "bad_value", f"partition {p} of a topic of {n} partitions"
        if d.get("closed_before") is not None and not first <= d["closed_before"] <= last + 1:
            return "bad_timestamp", f"closed_before {d['closed_before']} is outside 2000..2100"
        for w in d["windows"]:
            if _window_problem(w, _WINDOW, first, last) is not None:
                return _window_problem(w, _WINDOW, first, last)
        for pk in d.get("peeks") or ():
            if _window_problem(pk, _PEEK, first, last) is not None:
                return _window_problem(pk, _PEEK, first, last)
    return None


def _window_problem(w: Any, spec: tuple[tuple[str, str, bool], ...], first: int,
                    last: int) -> tuple[str, str] | None:
    """A closed window (``referrals``) or a peek (``as_of``) of a partial."""
    if _fields_problem(w, spec, "a window object") is not None:
        return _fields_problem(w, spec, "a window object")
    if not first <= w["window"] <= last or not MIN_TS <= w.get("as_of", MIN_TS) <= MAX_TS:
        return "bad_timestamp", f"window {w['window']} (as of {w.get('as_of')}) is not 2000..2100"
    for row in w["rows"]:
        if row.__class__ is not list or len(row) != 3:
            return "bad_value", f"a row must be [segment, channel, counts], got {str(row)[:80]}"
        if not _known(row[0], _KEY_SEGMENTS) or not _known(row[1], _KEY_CHANNELS):
            return "bad_value", f"unknown segment or channel {str(row[:2])[:80]}"
        counts = row[2]
        if counts.__class__ is not list or len(counts) != ROW_LENGTH:
            return "bad_value", f"a row's counts must be a list of {ROW_LENGTH} numbers"
        if not set(map(type, counts)) <= _NUMBERS:   # finite: _json_problem
            return "wrong_type", "a row's counts must be finite numbers"
    for ref in w.get("referrals", ()):
        if ref.__class__ is not list or len(ref) != 3 or ref[0].__class__ is not str \
                or not 0 < len(ref[0]) <= MAX_TEXT:
            return "bad_value", f"a referral must be [referrer, segment, channel]: {ref!s:.80}"
        if not _known(ref[1], _KEY_SEGMENTS) or not _known(ref[2], _KEY_CHANNELS):
            return "bad_value", f"unknown segment or channel {str(ref[1:])[:80]}"
    for c in w.get("cohorts") or ():
        if _cohort_problem(c) is not None:
            return _cohort_problem(c)
    return None


def _cohort_problem(c: Any) -> tuple[str, str] | None:
    if c.__class__ is not list or len(c) != 6 or not _known(c[0], _COHORT_KPIS) \
            or c[1].__class__ is not str or not all(v.__class__ is int for v in c[4:]):
        return "bad_value", f"a cohort must be [kpi, week, segment, channel, num, den]: {c!s:.80}"
    if not _known(c[2], _KEY_SEGMENTS) or not _known(c[3], _KEY_CHANNELS):
        return "bad_value", f"unknown segment or channel {str(c[2:4])[:80]}"
    try:
        date.fromisoformat(c[1])
    except ValueError:
        return "bad_value", f"cohort week {c[1][:40]!r} is not an ISO date"
    return None


# -- kpis -----------------------------------------------------------------------------------

_MARKER = (("window_start", "str", True), ("window_end", "str", True),
           ("window_start_ts", "number", True), ("window_end_ts", "number", True))
_KPI_DOC = (("kpi", "str", True), *_MARKER, ("series", "list", True), ("unit", "str", False),
            ("complete", "bool", False), ("cohort", "str", False), ("as_of", "str", False),
            ("as_of_ts", "number", False))
_SERIES = (("segment", "str", True), ("channel", "str", True), ("value", "number", False),
           ("n", "number", False))


def kpi_docs_in(raw: bytes | None, running: bool = True,
                ) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """The documents of a ``kpis`` message that can be used, and one reject per other one (or
    one for the whole message when it is not JSON). ``running=False`` leaves an open window's
    running documents out unchecked: a stage that wants final values only (the digest) skips
    the 12 ticks of a window for the cost of parsing them."""
    problem = _json_problem(raw)
    if problem is not None:
        return [], [Rejected(problem[0], problem[1], raw or b"")]
    doc = _json(raw)
    single = not isinstance(doc, list)
    docs, rejected = [], []
    for item in [doc] if single else doc:
        if not running and item.__class__ is dict and item.get("as_of_ts") is not None:
            continue
        problem = _kpi_doc_problem(item)
        if problem is None:
            docs.append(item)
        else:
            rejected.append(Rejected(problem[0], problem[1],
                                     raw or b"" if single else orjson.dumps(item)))
    return docs, rejected


def _kpi_doc_problem(d: Any) -> tuple[str, str] | None:
    if d.__class__ is dict and d.get("kind") == "window_closed":
        if _fields_problem(d, _MARKER, "a KPI document") is not None:
            return _fields_problem(d, _MARKER, "a KPI document")
        return _ts_problem(d, "window_start_ts", "window_end_ts")
    if _fields_problem(d, _KPI_DOC, "a KPI document") is not None:
        return _fields_problem(d, _KPI_DOC, "a KPI document")
    if d.get("kind") is not None:
        return "unknown_kind", f"kind {str(d['kind'])[:40]!r} is not window_closed"
    if d["kpi"] not in KPI_BY_ID:
        return "bad_value", f"unknown KPI {d['kpi'][:40]!r}"
    if len(d["series"]) > MAX_SERIES:
        return "oversized", f"{len(d['series'])} series (at most {MAX_SERIES})"
    for s in d["series"]:
        # the common case in one expression (a kpis message holds some 200 series): every
        # check of _SERIES passes and the series is known; else the checks below say why
        if s.__class__ is dict:
            seg, ch, value, n = s.get("segment"), s.get("channel"), s.get("value"), s.get("n")
            if (seg.__class__ is str and ch.__class__ is str and seg in _SEGMENTS
                    and ch in _CHANNELS and (value is None or value.__class__ in _NUMBERS)
                    and (n is None or n.__class__ in _NUMBERS)):   # finite: _json_problem
                continue
        if _fields_problem(s, _SERIES, "a series object") is not None:
            return _fields_problem(s, _SERIES, "a series object")
        return "bad_value", f"unknown series {s['segment'][:40]!r}/{s['channel'][:40]!r}"
    return _ts_problem(d, "window_start_ts", "window_end_ts", "as_of_ts")


# -- anomalies and alerts -------------------------------------------------------------------

_ANOMALY = (("kpi", "str", True), ("segment", "str", True), ("channel", "str", True),
            ("window_start_ts", "number", True), ("window_end_ts", "number", True),
            ("value", "number", True), ("expected", "number", True), ("score", "number", True),
            ("severity", "str", True), ("window_start", "str", False),
            ("window_end", "str", False), ("lower", "number", False), ("upper", "number", False),
            ("direction", "str", False), ("detector", "str", False), ("unit", "str", False),
            ("n", "number", False), ("contributors", "list", False), ("history", "list", False),
            ("early", "bool", False), ("as_of", "str", False), ("as_of_ts", "number", False),
            ("span_start_ts", "number", False), ("elapsed_minutes", "number", False))
_ALERT = (("id", "str", True), ("status", "str", True), ("kpi", "str", False),
          ("segment", "str", False), ("channel", "str", False), ("severity", "str", False),
          ("window_end", "str", False), ("resolved_at", "str", False), ("version", "int", False))


def anomaly_in(raw: bytes | None) -> tuple[dict[str, Any] | None, Rejected | None]:
    """An ``anomalies`` message (an anomaly event or a ``window_closed`` marker,
    docs/anomalies.md), or why it is rejected."""
    return _doc_in(raw, alert=False)


def _doc_in(raw: bytes | None, alert: bool) -> tuple[dict[str, Any] | None, Rejected | None]:
    """The JSON object of an ``anomalies`` or (``alert``) ``alerts`` message, or why not."""
    problem = _json_problem(raw)
    doc = None
    if problem is None:
        doc = _json(raw)
        if alert:
            problem = _alert_problem(doc)
        else:
            problem = _anomaly_problem(doc)
    if problem is not None:
        return None, Rejected(problem[0], problem[1], raw or b"")
    return doc, None


def _anomaly_problem(d: Any) -> tuple[str, str] | None:
    if d.__class__ is dict and d.get("kind") == "window_closed":
        if _fields_problem(d, _MARKER[3:], "an anomaly object") is not None:
            return _fields_problem(d, _MARKER[3:], "an anomaly object")
        return _ts_problem(d, "window_end_ts")
    if _fields_problem(d, _ANOMALY, "an anomaly object") is not None:
        return _fields_problem(d, _ANOMALY, "an anomaly object")
    if d["kpi"] not in KPI_BY_ID or d["severity"] not in SEVERITY_RANK:
        return "bad_value", f"unknown KPI or severity {d['kpi'][:40]!r} {d['severity'][:20]!r}"
    if d["segment"] not in _SEGMENTS or d["channel"] not in _CHANNELS:
        return "bad_value", f"unknown series {d['segment'][:40]!r}/{d['channel'][:40]!r}"
    if not all(x.__class__ is dict for x in (*(d.get("contributors") or ()),
                                             *(d.get("history") or ()))):
        return "wrong_type", "contributors and history must be lists of objects"
    return _ts_problem(d, "window_start_ts", "window_end_ts", "as_of_ts")


def alert_in(raw: bytes | None) -> tuple[dict[str, Any] | None, Rejected | None]:
    """An ``alerts`` message (an ``alerts.jsonl`` record), or why it is rejected."""
    return _doc_in(raw, alert=True)


def _alert_problem(d: Any) -> tuple[str, str] | None:
    if _fields_problem(d, _ALERT, "an alert object") is not None:
        return _fields_problem(d, _ALERT, "an alert object")
    if d["status"] not in ALERT_STATUSES:
        return "bad_value", f"status {d['status'][:40]!r} is not open, updated or resolved"
    return None
