"""Rows of hostile input: 100,000 bad ``events`` messages, poison on each internal topic,
watermark and ratchet attacks on event time, and a flood of forged Slack clicks. The worker
must stay up, dead-letter each bad message once, and count the real events around them
exactly. The bad messages' shapes are those of tests/test_dead_letters.py,
tests/test_poison.py and tests/test_event_time_attacks.py, rebuilt here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from alerting.slack import ACTION_ACK
from bench.faults.harness import (
    DAY,
    HOUR,
    INCIDENT_END,
    START,
    FaultySlack,
    Rig,
    first_after,
    incident_sim,
    rss_mb,
)
from simulator import Simulation
from stream.broker import EmbeddedBroker, free_port

__all__ = ["click_flood", "event_time_attacks", "hostile_events", "poison_internal"]

HOSTILE = 100_000


def _hostile(i: int, now: float) -> bytes:
    """The ``i``-th hostile ``events`` message: one of 12 kinds, each one dead letter."""
    scan = {"event_id": f"h{i}", "kind": "scan", "ts": START + 100, "user_id": f"h{i}",
            "segment": "new_grad", "channel": "organic", "match_score": 0.7}
    pay = {"event_id": f"h{i}", "kind": "payment", "ts": START + DAY + 100, "user_id": f"h{i}",
           "segment": "new_grad", "channel": "organic", "plan": "monthly", "amount": 39.0,
           "status": "succeeded", "first": True}
    j = orjson.dumps
    kind = i % 12
    if i % 10_000 == 9_999:
        return j({**scan, "blob": "x" * (1100 * 1024)})            # oversized (1.1 MB)
    return [
        lambda: f'{{"event_id": "h{i}", "kind": '.encode(),      # invalid_json
        lambda: str(i).encode(),                                 # not_an_object
        lambda: j({k: v for k, v in scan.items() if k != "match_score"}),   # missing_field
        lambda: j({**scan, "match_score": "high"}),              # wrong_type
        lambda: j({**scan, "kind": "refund"}),                   # unknown_kind
        lambda: j({**pay, "amount": -5.0}),                      # bad_value
        lambda: j({**pay, "amount": 1e9}),                       # bad_value (absurd)
        lambda: j({**scan, "ts": START - 500 * DAY}),            # bad_timestamp
        lambda: j({**scan, "ts": now + 30 * DAY}),               # future
        lambda: j({**scan, **{f"f{k}": k for k in range(40)}}),  # oversized (fields)
        lambda: j({**scan, "ts": START + 60}),                   # late (closed window)
        lambda: j({**scan, "user_id": {"$ne": None}}),           # wrong_type (nested)
    ][kind]()


async def hostile_events(broker: EmbeddedBroker) -> dict[str, Any]:
    """A day of real events, 100,000 hostile messages over the 4 partitions, another day."""
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, "hostile", slack=slack).setup()
        sim = Simulation(seed=10, start_ts=START, scenario="none")
        try:
            rig.start_worker()
            await rig.publish(sim, START, START + DAY)
            await rig.kpis_until_closed(START + DAY - 2 * HOUR)
            now = time.time()
            sent_at = time.time()
            await rig.send_raw("events", [_hostile(i, now) for i in range(HOSTILE)],
                               partition=lambda i: i % rig.partitions)
            sent = time.time()
            await rig.publish(sim, START + DAY, START + 2 * DAY)
            await rig.watermark(START + 2 * DAY + 600)
            kpis = await rig.kpis_until_closed(START + 2 * DAY, timeout=300)
            dead = await rig.records("dead-letters", timeout=300, idle=10,
                                     until=lambda m: len(m) >= HOSTILE)
            out = await rig.outcome(kpis)
        finally:
            await rig.stop()
    reasons = Counter(orjson.loads(r.value).get("reason") for r in dead)
    out["dead_letters"] = len(dead)
    out["dead_letter_reasons"] = dict(reasons)
    out["send_s"] = round(sent - sent_at, 1)
    out["drain_s"] = round(max(r.ts for r in dead) - sent_at, 1) if dead else None
    out["recover_s"] = first_after(kpis, sent)
    out["checks"] = {f"{len(dead):,} of {HOSTILE:,} dead-lettered": len(dead) == HOSTILE}
    return out


# --- poison on the internal topics -------------------------------------------------------

def _poison(partitions: int) -> dict[str, list[bytes]]:
    hour = int(START // HOUR)
    partial = {"partition": 99, "partitions": partitions, "closed_before": hour - 71,
               "windows": [{"window": hour - 72, "rows": [], "referrals": [], "cohorts": []}],
               "peeks": []}
    w0 = (hour - 48) * HOUR   # two days before the events: outside every counted window
    nan_doc = {"kpi": "signups", "unit": "count", "window_start": "x", "window_end": "y",
               "window_start_ts": w0, "window_end_ts": w0 + HOUR, "complete": True,
               "series": [{"segment": "all", "channel": "all", "value": float("nan"), "n": 3.0}]}
    return {
        "kpi-partials": [orjson.dumps([partial]), b'[{"partition": 0, "partitions": '],
        "kpis": [b"window 42 closed", json.dumps([nan_doc]).encode()],
        "anomalies": [orjson.dumps({"kpi": "signups", "severity": "critical"}),
                      orjson.dumps({"kpi": "signups", "segment": "all", "channel": "all",
                                    "value": "high", "window_end_ts": "soon"})],
        "alerts": [b'{"id": "a1", "status": '],
    }


async def poison_internal(broker: EmbeddedBroker) -> dict[str, Any]:
    """Four days of the incident run, poison on kpi-partials, kpis, anomalies and alerts, the
    last two days (the payment outage): windows, alerts and the digest must carry on."""
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, "poison", slack=slack).setup()
        sim = incident_sim()
        poison = _poison(rig.partitions)
        try:
            rig.start_worker()
            await rig.publish(sim, START, START + 4 * DAY)
            for topic, messages in poison.items():
                await rig.send_raw(topic, list(messages))
            sent = time.time()
            await rig.publish(sim, START + 4 * DAY, INCIDENT_END)
            await rig.watermark(INCIDENT_END + 600)
            kpis = await rig.kpis_until_closed(INCIDENT_END)
            want = sum(len(m) for m in poison.values())
            dead = await rig.json_docs("dead-letters", timeout=60, idle=5,
                                       until=lambda m: len(m) >= want)
            out = await rig.outcome(kpis, alerts_timeout=60, begin=START)
            digest = Path(rig.data_dir) / "digest.jsonl"
            days = len(digest.read_text().splitlines()) if digest.exists() else 0
        finally:
            await rig.stop()
    by_topic = Counter(d.get("topic", "").removeprefix(rig.prefix) for d in dead)
    out["dead_letters"] = len(dead)
    out["dead_letters_by_topic"] = dict(by_topic)
    out["digest_days"] = days
    out["recover_s"] = first_after(kpis, sent)
    out["checks"] = {f"poison on {t} dead-lettered ({by_topic[t]} of {len(m)})":
                     by_topic[t] == len(m) for t, m in poison.items()}
    out["checks"]["digests after the poison"] = days >= 5
    return out


# --- event-time attacks ------------------------------------------------------------------

async def event_time_attacks(broker: EmbeddedBroker) -> dict[str, Any]:
    """Live event time (hours behind the wall clock) on 2 partitions: real hours, a watermark
    in 2099 on each partition, 240 spend events each 23 h after the last, real hours again."""
    t0 = (time.time() - 10 * HOUR) // HOUR * HOUR
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, "time", partitions=2, slack=slack).setup()
        sim = Simulation(seed=11, start_ts=t0, scenario="none")
        try:
            rig.start_worker()
            await rig.publish(sim, t0, t0 + 3 * HOUR)
            await rig.kpis_until_closed(t0 + 2 * HOUR)
            for part in range(rig.partitions):
                await rig.send_raw("events", [orjson.dumps({"kind": "watermark", "ts": 4.09e9})],
                                   partition=part)
            ratchet = [orjson.dumps({"event_id": f"x{i}", "kind": "spend",
                                     "ts": t0 + 3 * HOUR + 1800 + 23 * HOUR * (i + 1),
                                     "channel": "paid_search", "amount": 10.0})
                       for i in range(240)]
            await rig.send_raw("events", list(ratchet), partition=0)
            sent = time.time()
            await rig.publish(sim, t0 + 3 * HOUR, t0 + 7 * HOUR)
            await rig.watermark(t0 + 7 * HOUR + 600)
            kpis = await rig.kpis_until_closed(t0 + 7 * HOUR)
            dead = await rig.json_docs("dead-letters", timeout=60, idle=5,
                                       until=lambda m: len(m) >= 242)
            out = await rig.outcome(kpis)
        finally:
            await rig.stop()
    reasons = Counter(d.get("reason") for d in dead)
    out["dead_letters"] = len(dead)
    out["dead_letter_reasons"] = dict(reasons)
    out["recover_s"] = first_after(kpis, sent)
    attacks = reasons["future"] + reasons["time_jump"]
    out["checks"] = {f"{attacks} of 242 attack messages refused": attacks == 242,
                     "no real event late": reasons["late"] == 0}
    return out


# --- forged clicks -----------------------------------------------------------------------

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def _signed(body: bytes, ts: str, secret: str = SECRET) -> str:
    base = b"v0:" + ts.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _click(alert_id: str, user: str) -> bytes:
    payload = {"type": "block_actions", "user": {"id": user}, "trigger_id": "1.2.3",
               "container": {"channel_id": "C0FAULTS", "message_ts": "1.2"},
               "actions": [{"action_id": ACTION_ACK, "value": alert_id}]}
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def _forged(i: int, body: bytes, big: bytes) -> tuple[bytes, dict[str, str]]:
    now, old = str(int(time.time())), str(int(time.time()) - 600)
    return [
        (body, {}),
        (body, {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=00"}),
        (body, {"X-Slack-Request-Timestamp": now,
                "X-Slack-Signature": _signed(body, now, "guess")}),
        (body, {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": _signed(body, old)}),
        (body, {"X-Slack-Request-Timestamp": "nan", "X-Slack-Signature": _signed(body, "nan")}),
        (big, {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "0" * 64}),
    ][i % 6]


async def _flood(url: str, alert_id: str, forged: int, replays: int) -> dict[str, Any]:
    body = _click(alert_id, "U0FORGED")
    big = body + b"&pad=" + b"x" * (1 << 20)
    ts = str(int(time.time()))
    good = _click(alert_id, "U0REPLAY")
    good_headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": _signed(good, ts)}
    statuses: Counter[str] = Counter()
    gate = asyncio.Semaphore(64)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    async def post(http: aiohttp.ClientSession, data: bytes, headers: dict[str, str],
                   tag: str) -> None:
        async with gate:
            try:
                async with http.post(url, data=data, headers={**form, **headers}) as r:
                    statuses[f"{tag} {r.status}"] += 1
            except (TimeoutError, aiohttp.ClientError) as e:
                statuses[f"{tag} {type(e).__name__}"] += 1

    t0 = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        jobs = [post(http, *_forged(i, body, big), "forged") for i in range(forged)]
        jobs += [post(http, good, good_headers, "replay") for _ in range(replays)]
        await asyncio.gather(*jobs)
        flood_s = time.monotonic() - t0
        ts2 = str(int(time.time()))   # after the flood: a fresh signed click by someone else
        last = _click(alert_id, "U0AFTER")
        t1 = time.monotonic()
        await post(http, last, {"X-Slack-Request-Timestamp": ts2,
                                "X-Slack-Signature": _signed(last, ts2)}, "after")
        after_s = time.monotonic() - t1
    return {"click_statuses": dict(statuses), "flood_s": round(flood_s, 1),
            "recover_s": round(after_s, 2)}


async def click_flood(broker: EmbeddedBroker) -> dict[str, Any]:
    """The incident run with the interactivity endpoint on; once an alert is open, 5,000 forged
    clicks and 200 replays of one signed click while the last day is published."""
    port = free_port()
    async with FaultySlack() as slack:
        rig = await Rig(broker.bootstrap, "clicks", slack=slack, env_extra={
            "PULSE_FEEDBACK_PORT": str(port), "SLACK_SIGNING_SECRET": SECRET}).setup()
        sim = incident_sim()
        try:
            w = rig.start_worker()
            await rig.publish(sim, START, START + 5 * DAY)
            changes = await rig.json_docs("alerts", timeout=180, until=lambda m: any(
                a.get("status") == "open" for a in m))
            opened = [a["id"] for a in changes if a.get("status") == "open"]
            rss_before = rig.rss()
            flood = asyncio.create_task(_flood(f"http://127.0.0.1:{port}/slack/actions",
                                               opened[0] if opened else "none", 5000, 200))
            await rig.publish(sim, START + 5 * DAY, INCIDENT_END)
            await rig.watermark(INCIDENT_END + 600)
            clicks = await flood
            kpis = await rig.kpis_until_closed(INCIDENT_END)
            out = await rig.outcome(kpis, alerts_timeout=60, survivors=[w])
            out["worker_rss_end_mb"] = rss_mb(w.process.pid if w.process else None)
        finally:
            await rig.stop()
    feedback = Path(rig.data_dir) / "feedback.jsonl"
    lines = [json.loads(x) for x in feedback.read_text().splitlines()] if feedback.exists() else []
    users = Counter(str(x.get("user") or x.get("user_id")) for x in lines)
    out.update(clicks)
    out["worker_rss_before_flood_mb"] = rss_before
    out["feedback_by_user"] = dict(users)
    out["checks"] = {"no forged click applied": users["U0FORGED"] == 0,
                     "a signed click after the flood applied": users["U0AFTER"] == 1,
                     "the flood hit the endpoint": sum(clicks["click_statuses"].values()) > 0}
    return out
