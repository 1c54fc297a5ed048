"""Validation of single events and messages, without Kafka (the dead-letter path end to end is
tests/test_dead_letters.py)."""

from __future__ import annotations

import orjson
import pytest

from stream.events import DEAD_LETTER_REASONS, MAX_MESSAGE_BYTES, decode_message, validate

NOW = 1_795_000_000.0
SCAN = {"event_id": "e1", "kind": "scan", "ts": NOW - 60, "user_id": "u1",
        "segment": "new_grad", "channel": "organic", "match_score": 0.7}
PAY = {"event_id": "p1", "kind": "payment", "ts": NOW - 60, "user_id": "u1",
       "segment": "executive", "channel": "referral", "plan": "annual", "amount": 349.0,
       "status": "succeeded", "first": True}


@pytest.mark.parametrize("event,reason", [
    ({**SCAN, "match_score": True}, "wrong_type"),          # a bool is not a number
    ({**SCAN, "match_score": float("nan")}, "wrong_type"),
    ({**SCAN, "ts": "2026-11-21T10:00:00Z"}, "wrong_type"),
    ({**SCAN, "match_score": 1.5}, "bad_value"),
    ({**SCAN, "segment": "students"}, "bad_value"),
    ({**SCAN, "user_id": ""}, "bad_value"),
    ({**SCAN, "user_id": "u" * 500}, "bad_value"),
    ({k: v for k, v in SCAN.items() if k != "user_id"}, "missing_field"),
    ({k: v for k, v in SCAN.items() if k != "kind"}, "missing_field"),
    ({**SCAN, "kind": "refund"}, "unknown_kind"),
    ({**PAY, "amount": -1.0}, "bad_value"),
    ({**PAY, "amount": 2e6}, "bad_value"),
    ({**PAY, "first": "yes"}, "wrong_type"),
    ({**PAY, "status": "pending"}, "bad_value"),
    ({**SCAN, "ts": NOW + 3 * 86400}, "future"),
    ({**SCAN, "ts": NOW + 7 * 3600}, "time_jump"),
    ({**SCAN, "ts": 100.0}, "bad_timestamp"),
    ({**SCAN, **{f"x{i}": i for i in range(40)}}, "oversized"),
])
def test_each_bad_event_has_its_reason(event: dict, reason: str) -> None:
    problem = validate(event, NOW, NOW)
    assert problem is not None and problem[0] == reason
    assert problem[0] in DEAD_LETTER_REASONS and problem[1]


def test_good_events_pass_and_stale_ones_do_not() -> None:
    assert validate(SCAN, NOW, NOW) is None
    assert validate(PAY, NOW, NOW) is None
    assert validate({**SCAN, "ts": NOW - 401 * 86400}, NOW, NOW)[0] == "bad_timestamp"
    # the accelerated demo runs ahead of the wall clock (PULSE_MAX_AHEAD_SECONDS=0): fine
    # while event time moves smoothly; a live worker holds it to a day ahead of the clock
    assert validate({**SCAN, "ts": NOW + 90 * 86400}, NOW + 90 * 86400 - 5, NOW,
                    max_ahead_s=0) is None
    assert validate({**SCAN, "ts": NOW + 90 * 86400}, NOW + 90 * 86400 - 5, NOW)[0] == "future"
    # history far behind the clock is caught up on, even across a gap of days
    assert validate({**SCAN, "ts": NOW - 30 * 86400}, NOW - 40 * 86400, NOW) is None


def test_one_message_moves_event_time_a_bounded_step() -> None:
    """However many items a message holds, they are held to the partition's time before it."""
    ladder = [{**SCAN, "event_id": f"r{i}", "ts": NOW + i * 5 * 3600} for i in range(1, 6)]
    d = decode_message(orjson.dumps(ladder + [{"kind": "watermark", "ts": 4.09e9}]), NOW, NOW)
    assert [e["event_id"] for e in d.events] == ["r1"]   # 5 h on: within a step
    assert [r.reason for r in d.rejected] == ["time_jump"] * 3 + ["future"] * 2
    # behind the wall clock, a message may jump (a quiet night, a replay's gap)
    d = decode_message(orjson.dumps(ladder[:2]), NOW - 86400, NOW + 11 * 3600)
    assert [e["event_id"] for e in d.events] == ["r1", "r2"] and not d.rejected


def test_a_batch_keeps_good_events_and_rejects_bad_ones_individually() -> None:
    batch = [SCAN, {**SCAN, "event_id": "e2", "match_score": "x"}, 7,
             {"kind": "watermark", "ts": NOW}, {**PAY}]
    d = decode_message(orjson.dumps(batch), None, NOW)
    assert [e["event_id"] for e in d.events] == ["e1", "p1"]
    assert d.watermarks == [NOW]
    assert [r.reason for r in d.rejected] == ["wrong_type", "not_an_object"]
    assert orjson.loads(d.rejected[0].raw)["event_id"] == "e2"


@pytest.mark.parametrize("payload,reason", [
    (b"{nope", "invalid_json"), (None, "invalid_json"), (b'"just a string"', "not_an_object"),
    (b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    (orjson.dumps({"kind": "watermark", "ts": "soon"}), "bad_timestamp"),
])
def test_bad_messages(payload: bytes | None, reason: str) -> None:
    d = decode_message(payload, None, NOW)
    assert d.events == [] and [r.reason for r in d.rejected] == [reason]


EXAMPLES = [
    SCAN, PAY,
    {"event_id": "s1", "kind": "signup", "ts": NOW - 60, "user_id": "u2", "segment": "new_grad",
     "channel": "referral", "referred_by": "u1"},
    {"event_id": "c1", "kind": "cancel", "ts": NOW - 60, "user_id": "u1",
     "segment": "executive", "channel": "referral", "plan": "monthly"},
    {"event_id": "x1", "kind": "spend", "ts": NOW - 60, "channel": "social", "amount": 12.5},
    {"event_id": "a1", "kind": "activity", "ts": NOW - 60, "user_id": "u1",
     "segment": "experienced", "channel": "organic", "session_s": 30},
]
ODD_VALUES = [None, "", "x" * 200, "organic", "succeeded", True, 0, -1, 1.0, 2e6, float("inf"),
              [], {}, "u9"]


def test_the_fast_accept_path_agrees_with_validate() -> None:
    """decode_message accepts through code generated from the schema; every variant of every
    kind (each field set to odd values, removed, extra fields) gets validate's verdict."""
    variants = []
    for ex in EXAMPLES:
        variants.append(ex)
        variants.append({**ex, "extra": 1})
        variants.append({**ex, **{f"x{i}": i for i in range(40)}})
        for name in ex:
            variants.append({k: v for k, v in ex.items() if k != name})
            variants += [{**ex, name: odd} for odd in ODD_VALUES]
    for ev in variants:
        ev = orjson.loads(orjson.dumps(ev))   # as the worker sees it (JSON has no inf: null)
        problem = validate(ev, NOW, NOW)
        decoded = decode_message(orjson.dumps([ev]), NOW, NOW)
        if problem is None:
            assert decoded.events == [ev] and not decoded.rejected, ev
        else:
            assert decoded.events == [] and [r.reason for r in decoded.rejected] == [problem[0]]
    assert len(variants) > 600
