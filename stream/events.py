"""Event records and their validation (schema: docs/events.md).

The Faust records below are the schema: one class per event kind, fields with their types.
:func:`validate` checks a decoded JSON object against them (plus the enumerations and ranges the
types cannot say) and returns a short reason when it fails, so a bad event becomes a dead letter
instead of an exception in the worker. Events stay plain dicts on the hot path: building a record
per event would cost more than the rest of the pipeline.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from core.vocabulary import CHANNELS, EVENT_KINDS, PLANS, SEGMENTS, STATUSES
from stream.faust_internals import record_fields

__all__ = [
    "Event", "SignupEvent", "ScanEvent", "PaymentEvent", "CancelEvent", "SpendEvent",
    "ActivityEvent", "RECORDS", "DEAD_LETTER_REASONS", "Rejected", "Decoded", "decode_message",
    "validate", "check_time", "MAX_MESSAGE_BYTES", "MAX_EVENT_FIELDS", "MAX_TEXT", "MAX_AMOUNT",
    "MAX_AHEAD_S", "MAX_STEP_S", "CLOCK_SKEW_S",
]

MAX_MESSAGE_BYTES = 1 << 20     # a Kafka message over 1 MiB is refused whole
MAX_EVENT_FIELDS = 32           # an object with more keys than this is not one of ours
MAX_TEXT = 128                  # longest id / enum string accepted
MAX_AMOUNT = 100_000.0          # USD; more in one payment or spend event is absurd here
MAX_AHEAD_S = 86_400.0          # event time more than a day ahead of the wall clock: `future`
MAX_STEP_S = 6 * 3600.0         # one message moves a partition's event time at most this far...
CLOCK_SKEW_S = 300.0            # ...unless it stays within this of the wall clock: `time_jump`
MAX_BEHIND_S = 400 * 86_400.0   # more than 400 days behind the newest event: a stale one
MIN_TS, MAX_TS = 946_684_800.0, 4_102_444_800.0   # 2000-01-01 .. 2100-01-01

# The closed set of dead-letter reasons (a Prometheus label, so never free text).
DEAD_LETTER_REASONS = (
    "invalid_json", "not_an_object", "oversized", "missing_field", "wrong_type",
    "unknown_kind", "bad_value", "bad_timestamp", "late", "future", "time_jump",
)


class Event(faust.Record, serializer="json", include_metadata=False):
    """Fields every event carries."""

    event_id: str
    kind: str
    ts: float


class SignupEvent(Event):
    user_id: str
    segment: str
    channel: str
    referred_by: str | None = None


class ScanEvent(Event):
    user_id: str
    segment: str
    channel: str
    match_score: float


class PaymentEvent(Event):
    user_id: str
    segment: str
    channel: str
    plan: str
    amount: float
    status: str
    first: bool


class CancelEvent(Event):
    user_id: str
    segment: str
    channel: str
    plan: str


class SpendEvent(Event):
    channel: str
    amount: float


class ActivityEvent(Event):
    user_id: str
    segment: str
    channel: str
    session_s: float


# One record per kind of core.vocabulary.EVENT_KINDS, in its order.
RECORDS: dict[str, type[Event]] = dict(zip(EVENT_KINDS, (
    SignupEvent, ScanEvent, PaymentEvent, CancelEvent, SpendEvent, ActivityEvent), strict=True))

_ENUMS: dict[str, tuple[str, ...]] = {
    "segment": SEGMENTS, "channel": CHANNELS, "plan": PLANS, "status": STATUSES,
}


def _schema(record: type[Event]) -> tuple[tuple[str, type, bool, frozenset[str] | None], ...]:
    """(field, python type, required, allowed values) for each field of a record, read from its
    annotations (and :data:`_ENUMS`)."""
    hints = typing.get_type_hints(record)
    fields, defaults = record_fields(record)
    out = []
    for name, hint in hints.items():
        if name.startswith("_") or name not in fields:
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        py_type = args[0] if args else hint
        allowed = _ENUMS.get(name)
        out.append((name, py_type, name not in defaults,
                    frozenset(allowed) if allowed else None))
    return tuple(out)


_SCHEMAS = {kind: _schema(rec) for kind, rec in RECORDS.items()}


def _compile_accept(kind: str) -> Any:
    """A function that says, in straight-line code, whether an event of ``kind`` passes every
    check of :func:`validate` that does not depend on the clock (field count, types, enums,
    lengths). Generated from the same schema: the loop over it cost more than counting the
    event. Only the answer is fast; why an event fails is still :func:`validate`'s to say.
    """
    env: dict[str, Any] = {"_isfinite": math.isfinite}
    lines = ["def accept(ev):", f"    if len(ev) > {MAX_EVENT_FIELDS}: return False"]
    for i, (name, py_type, required, allowed) in enumerate(_SCHEMAS[kind]):
        lines.append(f"    v = ev.get({name!r})")
        if py_type is str:
            if allowed is not None:
                env[f"allowed{i}"] = allowed
                bad = f"v.__class__ is not str or v not in allowed{i}"
            else:
                bad = f"v.__class__ is not str or not 0 < len(v) <= {MAX_TEXT}"
        elif py_type is float:
            bad = "(v.__class__ is not float and v.__class__ is not int) or not _isfinite(v)"
        else:
            env[f"type{i}"] = py_type
            bad = f"v.__class__ is not type{i}"
        lines.append(f"    if {'' if required else 'v is not None and ('}{bad}"
                     f"{'' if required else ')'}: return False")
    lines.append("    return True")
    exec("\n".join(lines), env)  # noqa: S102 - source built above from our own schema
    return env["accept"]


_ACCEPT = {kind: _compile_accept(kind) for kind in RECORDS}


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why one payload (a whole message, or one event of a batch) was not accepted."""

    reason: str   # one of DEAD_LETTER_REASONS
    detail: str   # for people: which field, what was wrong
    raw: bytes    # the payload as received (a batch item re-encoded)


@dataclass(slots=True)
class Decoded:
    """What one Kafka message held: valid events, watermarks and rejects, in message order."""

    events: list[dict[str, Any]]
    watermarks: list[float]
    rejected: list[Rejected]


_NUMBER_TYPES = (int, float)
_isfinite = math.isfinite


def _type_ok(value: Any, py_type: type) -> bool:
    """Exact JSON types: ``True`` is not a number here, a float must be finite."""
    t = type(value)
    if py_type is float:
        return (t is float or t is int) and _isfinite(value)
    return t is py_type


def validate(ev: dict[str, Any], newest_ts: float | None, now: float, *,
             base: float | None = None,
             max_ahead_s: float | None = MAX_AHEAD_S) -> tuple[str, str] | None:
    """``None`` when ``ev`` is a valid event, else ``(reason, detail)``.

    ``newest_ts`` is the newest event time seen so far (None at start) and ``now`` the wall clock;
    ``base`` and ``max_ahead_s`` are :func:`check_time`'s (``base`` defaults to ``newest_ts``).
    An event far behind the newest is stale.

    >>> ok = {"event_id": "e1", "kind": "scan", "ts": 1.8e9, "user_id": "u1",
    ...       "segment": "new_grad", "channel": "organic", "match_score": 0.7}
    >>> validate(ok, None, 1.8e9) is None
    True
    >>> validate({**ok, "match_score": "high"}, None, 1.8e9)
    ('wrong_type', 'match_score must be a number, got str')
    >>> validate({**ok, "kind": "refund"}, None, 1.8e9)[0]
    'unknown_kind'
    """
    kind = ev.get("kind")
    schema = _SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        if "kind" not in ev:
            return "missing_field", "kind is missing"
        return "unknown_kind", f"kind {str(kind)[:40]!r} is not one of {', '.join(RECORDS)}"
    if len(ev) > MAX_EVENT_FIELDS:
        return "oversized", f"{len(ev)} fields (at most {MAX_EVENT_FIELDS})"
    for name, py_type, required, allowed in schema:
        value = ev.get(name)
        if value is None:
            if required:
                return "missing_field", f"{name} is missing"
            continue
        t = type(value)
        if py_type is str:
            if t is not str:
                return "wrong_type", f"{name} must be str, got {t.__name__}"
            if allowed is not None:
                if value not in allowed:
                    return "bad_value", (f"{name} {value[:40]!r} is not one of "
                                         f"{', '.join(sorted(allowed))}")
            elif not 0 < len(value) <= MAX_TEXT:
                return "bad_value", f"{name} must have 1 to {MAX_TEXT} characters"
        elif not _type_ok(value, py_type):
            return "wrong_type", (f"{name} must be "
                                  f"{'a number' if py_type is float else py_type.__name__}, "
                                  f"got {t.__name__}")
    return _check_values(ev, str(kind), newest_ts, now,
                         newest_ts if base is None else base, max_ahead_s)


def check_time(ts: float, base: float | None, now: float,
               max_ahead_s: float | None = MAX_AHEAD_S) -> tuple[str, str] | None:
    """Whether an event or watermark at ``ts`` may move its partition's event time.

    ``base`` is the partition's newest accepted time before the message (None: nothing yet),
    ``now`` the wall clock. More than ``max_ahead_s`` ahead of the wall clock is ``future``
    (``max_ahead_s`` None or 0: no such bound, for simulated time that runs ahead of the clock);
    more than :data:`MAX_STEP_S` past ``base`` is ``time_jump``, unless the wall clock agrees
    (``ts`` within :data:`CLOCK_SKEW_S` of it: a partition quiet for a night, a replay of old
    data with a gap). Event time far in the past is never refused here: replays and the demo's
    history run days behind the clock, in small steps.

    >>> now = 1.8e9
    >>> check_time(4.09e9, now - 60, now)[0]
    'future'
    >>> check_time(now + 23 * 3600, now, now)[0]
    'time_jump'
    >>> check_time(now - 30 * 86400, now - 40 * 86400, now) is None   # catching up on history
    True
    >>> check_time(now + 23 * 3600, now + 22 * 3600, now, max_ahead_s=None) is None
    True
    """
    if not MIN_TS <= ts <= MAX_TS:
        return "bad_timestamp", f"ts {ts} is outside 2000..2100 (seconds since the epoch, UTC)"
    if max_ahead_s and ts > now + max_ahead_s:
        return "future", (f"ts {ts} is {(ts - now) / 3600:.1f} h ahead of the wall clock "
                          f"(at most {max_ahead_s / 3600:g} h)")
    if base is not None and ts > base + MAX_STEP_S and ts > now + CLOCK_SKEW_S:
        return "time_jump", (f"ts {ts} is {(ts - base) / 3600:.1f} h past the partition's "
                             f"event time {base} (at most {MAX_STEP_S / 3600:g} h a message) and "
                             "ahead of the wall clock")
    return None


def _check_values(ev: dict[str, Any], kind: str, newest_ts: float | None,
                  now: float, base: float | None,
                  max_ahead_s: float | None) -> tuple[str, str] | None:
    ts = ev["ts"]
    if newest_ts is not None and ts < newest_ts - MAX_BEHIND_S:
        return "bad_timestamp", f"ts {ts} is more than 400 days older than the newest event"
    amount = ev.get("amount")
    if amount is not None and not 0.0 <= amount <= MAX_AMOUNT:
        return "bad_value", f"amount {amount} is outside 0..{MAX_AMOUNT:.0f} USD"
    if kind == "scan" and not 0.0 <= ev["match_score"] <= 1.0:
        return "bad_value", f"match_score {ev['match_score']} is outside 0..1"
    if kind == "activity" and ev["session_s"] < 0:
        return "bad_value", "session_s is negative"
    return check_time(ts, base, now, max_ahead_s)


def _encode(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:  # pragma: no cover - decoded JSON always re-encodes
        return repr(item).encode()


def decode_message(payload: bytes | None, newest_ts: float | None, now: float, *,
                   max_ahead_s: float | None = MAX_AHEAD_S) -> Decoded:
    """Split one Kafka message into valid events, watermarks and rejects.

    ``newest_ts`` is the partition's newest accepted event time (None or -inf: nothing yet),
    ``now`` the wall clock: every event and watermark of the message is held to
    :func:`check_time` against the time before the message (or its first accepted one), so one
    message moves event time by a bounded step however many items it holds.
    """
    out = Decoded([], [], [])
    if newest_ts is not None and not math.isfinite(newest_ts):
        newest_ts = None
    base = newest_ts
    if payload is None:
        out.rejected.append(Rejected("invalid_json", "empty message (no value)", b""))
        return out
    if len(payload) > MAX_MESSAGE_BYTES:
        out.rejected.append(Rejected(
            "oversized", f"message of {len(payload)} bytes (at most {MAX_MESSAGE_BYTES})",
            payload))
        return out
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        out.rejected.append(Rejected("invalid_json", str(e)[:200], payload))
        return out
    items = doc if isinstance(doc, list) else [doc]
    single = not isinstance(doc, list)
    for item in items:
        if not isinstance(item, dict):
            raw = payload if single else _encode(item)
            out.rejected.append(Rejected("not_an_object", f"a JSON {type(item).__name__}, "
                                         "expected an event object", raw))
            continue
        if item.get("kind") == "watermark":
            ts = item.get("ts")
            if not (isinstance(ts, _NUMBER_TYPES) and _type_ok(ts, float)):
                out.rejected.append(Rejected("bad_timestamp", "watermark without a valid ts",
                                             payload if single else _encode(item)))
                continue
            problem = check_time(float(ts), base, now, max_ahead_s)
            if problem is None:
                out.watermarks.append(float(ts))
                newest_ts = float(ts) if newest_ts is None else max(newest_ts, float(ts))
                base = newest_ts if base is None else base
            else:
                out.rejected.append(Rejected(problem[0], f"watermark: {problem[1]}",
                                             payload if single else _encode(item)))
            continue
        kind = item.get("kind")
        accept = _ACCEPT.get(kind) if kind.__class__ is str else None
        if accept is not None and accept(item):
            problem = _check_values(item, str(kind), newest_ts, now, base, max_ahead_s)
        else:
            problem = validate(item, newest_ts, now, base=base, max_ahead_s=max_ahead_s)
        if problem is None:
            out.events.append(item)
            ts = item["ts"]
            if newest_ts is None or ts > newest_ts:
                newest_ts = ts
            if base is None:
                base = ts
        else:
            out.rejected.append(Rejected(problem[0], problem[1],
                                         payload if single else _encode(item)))
    return out
