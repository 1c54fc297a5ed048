"""Write ``kpis_week.jsonl`` and ``alerts_week.jsonl``, the fixed data of tests/test_assistant.py.

Run by hand (not in CI) when the KPI engine, the detectors or the lifecycle change::

    .venv/bin/python tests/data/make_kpis_week.py        # about two minutes

It runs the project's own pipeline in-process, as ``pulse evaluate`` and
``tests/data/alerts/record.py`` do: the simulator (seed 7, from Monday 2025-12-22, so every
30-day KPI is complete when the file starts), ``KpiEngine`` (hourly windows, early looks every
5 min), ``kpis.messages`` (the ``kpis`` topic's messages), ``detectors.watch.KpiWatch`` and
``alerting.lifecycle.AlertManager``. Two incidents: a churn spike on 5-6 February (churn and
MRR move for the "why" questions) and a payment outage on the morning of Wednesday
11 February, still open when the file ends at 12:00 UTC (so ``pulse alerts`` has something).

``kpis_week.jsonl`` holds the rows a worker writes to ``kpis.jsonl`` (final values only) for
the windows ending in (2026-01-28 00:00, 2026-02-11 12:00] UTC: the last 7 days and the 7
before them, this month so far, this week (Monday 9th to Wednesday 11th noon) and the same part
of last week. ``alerts_week.jsonl`` holds
the ``alerts.jsonl`` lines of every alert change in that span.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from alerting.lifecycle import AlertManager  # noqa: E402
from alerting.sink import JsonlSink  # noqa: E402
from core.timefmt import parse_utc  # noqa: E402
from detectors.config import load_config  # noqa: E402
from detectors.watch import KpiWatch  # noqa: E402
from kpis import KpiEngine  # noqa: E402
from kpis.messages import group_snapshots, is_running, series_rows, window_messages  # noqa: E402
from simulator import Simulation  # noqa: E402
from simulator.scenarios import plan_incidents  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 7
SIM_START = parse_utc("2025-12-22T00:00:00Z")   # a Monday, 37 days before the file starts
KEEP_FROM = parse_utc("2026-01-28T00:00:00Z")
END = parse_utc("2026-02-11T12:00:00Z")
CHURN = (parse_utc("2026-02-05T06:00:00Z"), parse_utc("2026-02-07T00:00:00Z"))
OUTAGE = (parse_utc("2026-02-11T05:30:00Z"), parse_utc("2026-02-11T11:30:00Z"))
STEP, HOUR = 300.0, 3600.0


def main() -> int:
    sim = Simulation(SEED, SIM_START, "none", benign=False)
    sim.incidents = (plan_incidents("churn-spike", *CHURN, random.Random(f"churn:{SEED}"))
                     + plan_incidents("payment-outage", *OUTAGE, random.Random(f"pay:{SEED}")))
    engine = KpiEngine(window_s=HOUR, lateness_s=600.0, peek_s=300.0)
    watch, manager = KpiWatch(load_config()), AlertManager()
    kpis_path, alerts_path = HERE / "kpis_week.jsonl", HERE / "alerts_week.jsonl"
    alerts_path.unlink(missing_ok=True)
    sink = JsonlSink(alerts_path)
    lines: list[bytes] = []
    reached = SIM_START
    # run until the last window (ending at END) has closed: END + lateness
    while reached < END + 600.0:
        t = min(END + 600.0, (math.floor(reached / STEP) + 1) * STEP)
        for ev in sim.advance(t):
            engine.add(ev)
        for message in window_messages(group_snapshots(engine.advance(t, complete=True))):
            for doc in message:
                if doc.get("kind") == "window_closed":
                    changes = manager.on_window_closed(float(doc["window_end_ts"]))
                else:
                    changes = []
                    for anomaly in watch.observe(doc):
                        now = anomaly.get("as_of_ts") or anomaly["window_end_ts"]
                        changes += manager.on_anomaly(anomaly, float(now))
                    if not is_running(doc) and KEEP_FROM < doc["window_end_ts"] <= END:
                        lines += [orjson.dumps(r) for r in series_rows(doc)]
                for c in changes:
                    if float(c.alert["since_ts"]) >= KEEP_FROM:
                        sink.write(c.alert)
        reached = t
    kpis_path.write_bytes(b"\n".join(lines) + b"\n")
    for inc in sim.incidents:
        print(inc.to_json())
    print(f"{len(lines)} KPI rows -> {kpis_path.name}; "
          f"{sum(1 for _ in alerts_path.open())} alert changes -> {alerts_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
