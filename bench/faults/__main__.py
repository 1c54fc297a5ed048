"""``make faults``: run the fault matrix, write bench/faults.json and docs/faults.md.

    .venv/bin/python -m bench.faults [--only ROW[,ROW]] [--soak-minutes N] [--json PATH]

One progress line per row; the table is printed at the end. A row's verdict is ``ok`` when it
measured 0 events lost, 0 counted twice, every opened alert posted exactly once, the worker
alive (or back and counting), its peak memory within ``make bench``'s 400 MB and the row's
own checks held; otherwise what failed is named.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.__main__ import TARGETS, machine
from bench.faults import hostile, models, restarts, slack, soak
from bench.faults.harness import rss_mb
from stream.broker import EmbeddedBroker

PEAK_RSS_MB = float(TARGETS["peak_rss_mb"][1])
"""Bounded memory: a worker's peak over a row stays within ``make bench``'s target."""

RowFn = Callable[[EmbeddedBroker], Coroutine[Any, Any, dict[str, Any]]]


@dataclass(frozen=True)
class Row:
    name: str
    fault: str
    injection: str
    run: RowFn


ROWS = [
    Row("baseline", "none (the control run)",
        "7 simulated days, mixed incidents in the last 3; Slack and the worker left alone",
        slack.baseline),
    Row("kill-backlog", "worker SIGKILL in a backlog",
        "2 days published, SIGKILL after the 1st checkpoint, restart, 1 more day",
        restarts.kill_backlog),
    Row("kill-delivering", "worker SIGKILL while alerts are delivered",
        "7 days with mixed incidents; SIGKILL as the 1st alert opens, restart, the last day",
        restarts.kill_delivering),
    Row("kill-window-close", "worker SIGKILL at a window close",
        "caught up; SIGKILL as the next window's partials reach kpi-partials",
        restarts.kill_window_close),
    Row("kill-both", "SIGKILL both of two workers",
        "2 workers share 4 partitions; both SIGKILLed in a backlog, both restarted",
        restarts.kill_both),
    Row("kill-one-of-two", "SIGKILL one of two workers, no restart",
        "2 workers share 4 partitions; one SIGKILLed in a backlog, the other takes over",
        restarts.kill_one_of_two),
    Row("broker-restart", "embedded broker restart under a worker",
        "caught-up worker; Tansu (memory) stopped and started on its port, 1 more day",
        restarts.broker_restart),
    Row("slack-5xx", "Slack 5xx",
        "500/502/503 to every Web API call for 20 s from the 1st alert's post", slack.slack_5xx),
    Row("slack-429", "Slack 429 storm", "429 Retry-After 1-3 s to every call for 30 s",
        slack.slack_429),
    Row("slack-slow", "Slack slow answers",
        "every call answered 15 s late (client timeout 10 s) for 30 s; the call is done",
        slack.slack_slow),
    Row("slack-nonjson", "Slack non-JSON 200s",
        "every call done, answered 200 text/html, for 20 s", slack.slack_nonjson),
    Row("model-errors", "model errors", "Claude answers 500/529/overloaded to every call",
        models.model_errors),
    Row("model-timeouts", "model timeouts", "Claude answers 15 s late (client timeout 10 s)",
        models.model_timeouts),
    Row("model-invalid-json", "model invalid JSON",
        "Claude answers 200: a cut-off JSON body, JSON that is not a Message, an HTML page",
        models.model_invalid_json),
    Row("hostile-events", "100,000 hostile events messages",
        "100,000 bad messages (12 kinds) on events between two days of real ones",
        hostile.hostile_events),
    Row("poison-internal", "a poison message on each internal topic",
        "poison on kpi-partials, kpis, anomalies, alerts mid-run", hostile.poison_internal),
    Row("event-time-attacks", "watermark and ratchet attacks",
        "live time: a 2099 watermark per partition, 240 spend events 23 h apart",
        hostile.event_time_attacks),
    Row("click-flood", "forged click flood",
        "5,000 forged clicks (bad, stale, missing signatures, 1 MB bodies) + 200 replays",
        hostile.click_flood),
    Row("crafted-checkpoint", "a crafted checkpoint",
        "SIGKILL, every .ckpt replaced by a pickle that runs a command, restart",
        restarts.crafted_checkpoint),
]


NOTES = """
## Reading the table

- **events produced / counted**: the scan, signup and succeeded-payment events the row
  published against the `scans`, `signups` and `payments` windows (all segments, all channels)
  the worker closed on `kpis`. Every final publication of a window counts: a window published
  again after a restart must carry the same number. **lost**: short of what was published;
  **twice**: over it.
- **alerts expected / posted**: the alert ids opened on `alerts` against the top-level
  messages the local Slack channel holds for each (tests/fakes/slack_server.py, the real
  slack_sdk on the worker's side); **duplicates**: the extra messages. A daily digest posted
  twice fails a row too (`digest_duplicates` in the JSON).
- **worker alive**: at the end of the row (both workers in the two-worker row). A SIGKILLed
  worker is started again at once by the row, as a supervisor (systemd, a restart policy) would;
  every other fault must leave the worker up by itself.
- **recover s**: a kill or the broker restart: from the fault to the first `kpis` record
  appended after it (back and counting). Slack storms: from the storm's end to the first post
  that succeeded after it. Hostile input, poison, event-time attacks: from the end of the
  injection to the next `kpis` record. Click flood: how long the signed click sent after the
  flood took to be answered. Model faults last the whole row: nothing to time.
- **RSS**: the worker's peak (VmHWM) over the row, bounded by `make bench`'s target
  (400 MB); the broker's resident memory at the row's end. The rows share one embedded broker,
  which keeps every row's topics in memory, so its figure grows from row to row; the
  broker-restart row and the soak have brokers of their own. The embedded broker keeps every
  message in memory (Tansu's memory storage, no retention), so under a steady rate its memory
  grows with what it holds: the soak runs on a single-node Apache Kafka with a retention and a
  fixed 512 MB heap, as a deployment would (``--soak-broker embedded`` measures
  the embedded broker's growth instead).
- Per row, `bench/faults.json` also holds what the table has no room for: dead-letter reasons,
  click statuses, model calls, the Slack calls faulted, the soak's RSS samples, the checks.
"""


def verdict(r: dict[str, Any]) -> list[str]:
    """What a row's measures show is wrong (empty: ok)."""
    bad = []
    if "error" in r:
        return ["error: " + r["error"].splitlines()[-1][:120]]
    if r.get("events_lost"):
        bad.append(f"{r['events_lost']} events lost")
    if r.get("events_twice"):
        bad.append(f"{r['events_twice']} counted twice")
    if r.get("events_produced") == 0:
        bad.append("no events")
    if r.get("alerts_lost"):
        bad.append(f"{r['alerts_lost']} alerts not posted")
    if r.get("alert_duplicates"):
        bad.append(f"{r['alert_duplicates']} duplicate posts")
    if r.get("digest_duplicates"):
        bad.append(f"{r['digest_duplicates']} duplicate digests")
    if r.get("worker_alive") is False:
        bad.append("worker not alive")
    if (r.get("worker_rss_mb") or 0) > PEAK_RSS_MB:
        bad.append(f"worker peak RSS {r['worker_rss_mb']:.0f} MB > {PEAK_RSS_MB:.0f}")
    bad += [name for name, held in (r.get("checks") or {}).items() if not held]
    return bad


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| fault | injection | events produced / counted | lost | twice | alerts expected "
            "/ posted | duplicates | worker alive | recover s | worker / broker RSS MB "
            "| verdict |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        rss = f"{_cell(r.get('worker_rss_mb'))} / {_cell(r.get('broker_rss_mb'))}"
        if "rss_growth_pct" in r:
            rss += f" (growth {r['rss_growth_pct']:+.1f} % / {r['broker_growth_pct']:+.1f} %)"
        bad = r["verdict"]
        rows.append(
            f"| {r['fault']} | {r['injection']} "
            f"| {_cell(r.get('events_produced'))} / {_cell(r.get('events_counted'))} "
            f"| {_cell(r.get('events_lost'))} | {_cell(r.get('events_twice'))} "
            f"| {_cell(r.get('alerts_expected'))} / {_cell(r.get('alerts_posted'))} "
            f"| {_cell(r.get('alert_duplicates'))} | {_cell(r.get('worker_alive'))} "
            f"| {_cell(r.get('recover_s'))} | {rss} "
            f"| {'ok' if not bad else '**' + '; '.join(bad) + '**'} |")
    return "\n".join(rows)


def _run_row(row: Row | soak.SoakRow, broker: EmbeddedBroker) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        measured: dict[str, Any] = asyncio.run(row.run(broker))
    except Exception:
        measured = {"error": traceback.format_exc()}
    measured.setdefault("broker_rss_mb", rss_mb(broker.process.pid if broker.process else None))
    return {"row": row.name, "fault": row.fault, "injection": row.injection, **measured,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(time.monotonic() - t0, 1)}


def _merged(path: Path, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With ``--only``: the rows just run replace theirs in the earlier results, the others
    stay (each keeps its own ``date``), in the matrix's order."""
    try:
        earlier = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        earlier = []
    by_name = {r["row"]: r for r in earlier} | {r["row"]: r for r in fresh}
    order = [r.name for r in ROWS] + ["soak"]
    return sorted(by_name.values(), key=lambda r: order.index(r["row"])
                  if r["row"] in order else len(order))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    p.add_argument("--only", default="", help="rows to run, comma-separated: "
                   + ", ".join(r.name for r in ROWS) + ", soak")
    p.add_argument("--soak-minutes", type=float, default=30.0, help="0 skips the soak")
    p.add_argument("--soak-broker", choices=["kafka", "embedded"], default="kafka",
                   help="the soak's own broker: a single-node Apache Kafka with retention (java "
                        "17+ and mvn, as for make test-kafka) or the embedded one (no retention)")
    p.add_argument("--json", default="bench/faults.json")
    p.add_argument("--table", default="docs/faults.md")
    args = p.parse_args(argv)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    known = {r.name for r in ROWS} | {"soak"}
    if only - known:
        p.error(f"unknown rows: {', '.join(sorted(only - known))}")
    rows: list[Row | soak.SoakRow] = [r for r in ROWS if not only or r.name in only]
    if args.soak_minutes > 0 and (not only or "soak" in only):
        rows.append(soak.SoakRow(args.soak_minutes, args.soak_broker))
    started = time.monotonic()
    results = []
    with EmbeddedBroker(max_mb=0) as broker:   # no bound: a restart would empty the rows
        for i, row in enumerate(rows, 1):
            print(f"[{i}/{len(rows)}] {row.name}: {row.fault} ...", flush=True)
            r = _run_row(row, broker)
            r["verdict"] = verdict(r)
            results.append(r)
            print(f"      {r['seconds']:.0f} s: "
                  f"{'ok' if not r['verdict'] else '; '.join(r['verdict'])}", flush=True)
    total = round(time.monotonic() - started, 1)
    results = _merged(Path(args.json), results) if only and args.json else results
    doc = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "seconds": total, "rows": results}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = table(results)
    if args.table:
        Path(args.table).write_text(
            "# The fault matrix (`make faults`)\n\n"
            f"Measured by `python -m bench.faults` on {doc['date']}, {doc['machine']}, in "
            f"{total / 60:.0f} min (this run; with `--only`, the other rows are kept from earlier "
            "runs, each with its date in the JSON). How each row is measured: `bench/faults/`; "
            "the numbers: `bench/faults.json`.\n\n" + md + "\n" + NOTES)
    print("\n" + md)
    print(f"\n{len(results)} rows in {total / 60:.1f} min; written to {args.json} and {args.table}")


if __name__ == "__main__":
    main()
