"""Record the alert snapshots of each incident kind, for tests/test_alert_messages.py.

Run by hand (not in CI) when the detectors or the lifecycle change::

    .venv/bin/python tests/data/alerts/record.py            # every case (~15 min)
    .venv/bin/python tests/data/alerts/record.py payment-outage-normal

It runs the project's own pipeline in-process, as ``pulse evaluate`` does
(``evaluation.pipeline``): the simulator (clean warm-up, then one incident, no benign
look-alikes), ``KpiEngine`` with early looks (``peek_s=300``), the ``kpis`` topic's messages and
``window_closed`` markers, ``detectors.watch.KpiWatch`` and ``alerting.lifecycle.AlertManager``;
it writes every
:class:`~alerting.lifecycle.AlertChange` of the alerts that start while the incident runs
(``<case>.json``: the incident label, then the changes in order).
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alerting.lifecycle import AlertManager  # noqa: E402
from detectors.config import load_config  # noqa: E402
from detectors.watch import KpiWatch  # noqa: E402
from evaluation.pipeline import STEP, Pipeline, alert_changes  # noqa: E402
from evaluation.run import START  # noqa: E402
from kpis import KpiEngine  # noqa: E402
from simulator import BusinessModel, Simulation  # noqa: E402

HERE = Path(__file__).resolve().parent
HOUR, DAY = 3600.0, 86400.0
LATENESS = 600.0    # PULSE_LATENESS_SECONDS
PEEK = 300.0        # PULSE_EARLY_SECONDS
AFTER_S = 18 * HOUR  # how long to run after the incident's end (resolutions, reopenings)


@dataclass(frozen=True)
class Case:
    """One fixture: an incident ``kind`` of ``difficulty`` in a business of ``scale``; the
    first of ``seeds`` whose run opens an alert is kept (subtle incidents are often missed:
    README, "Subtle incidents"), among those whose incident is ``sliced`` as asked."""

    name: str
    kind: str
    difficulty: str
    seeds: tuple[int, ...] = (1,)
    scale: float = 1.0
    sliced: bool | None = None  # only seeds whose incident is on one slice (True) or overall


# normal incidents at the demo's scale; subtle ones at scale 10, where the README's evaluation
# finds most of those the detectors can find at all
CASES = (
    Case("payment-outage-normal", "payment-outage", "normal"),                  # overall
    Case("payment-outage-subtle", "payment-outage", "subtle", (4, 1, 3, 5), 10.0),
    Case("signup-tracking-drop-normal", "signup-tracking-drop", "normal", (1, 2, 3), sliced=False),
    Case("signup-tracking-drop-normal-channel", "signup-tracking-drop", "normal", (4, 6, 9),
         sliced=True),
    Case("signup-tracking-drop-subtle", "signup-tracking-drop", "subtle", (3, 1, 4), 10.0),
    Case("match-rate-regression-normal", "match-rate-regression", "normal"),    # one segment
    Case("match-rate-regression-subtle", "match-rate-regression", "subtle", (1,), 10.0),
    Case("channel-traffic-surge-normal", "channel-traffic-surge", "normal"),    # one channel
    Case("channel-traffic-surge-subtle", "channel-traffic-surge", "subtle", (1,), 10.0),
    Case("churn-spike-normal", "churn-spike", "normal", (1, 2, 3)),
    Case("churn-spike-subtle", "churn-spike", "subtle", (1, 3, 4), 10.0),
)


@dataclass
class Run(Pipeline):
    watch: KpiWatch
    manager: AlertManager

    def feed(self, until: float) -> list[dict[str, Any]]:
        """Simulate to ``until``; every alert change, as ``{"status", "reason", "alert"}``."""
        return [{"status": c.status, "reason": c.reason, "alert": c.alert}
                for _, message in self.messages(until, STEP) for doc in message
                for c in alert_changes(doc, self.watch, self.manager)]


def warm(seed: int, scale: float, days: float) -> bytes:
    run = Run(sim=Simulation(seed, START, "none", model=BusinessModel().scaled(scale)),
              engine=KpiEngine(window_s=HOUR, lateness_s=LATENESS, peek_s=PEEK),
              reached=START, watch=KpiWatch(load_config()), manager=AlertManager())
    run.feed(START + days * DAY)
    return pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL)


def record(case: Case, seed: int, frozen: bytes) -> dict[str, Any] | None:
    """The case's run on ``seed``; None when its incident is not on the slice asked for."""
    run: Run = pickle.loads(frozen)
    run.manager = AlertManager()   # the warm-up's own false alarms are not this case's
    run.sim.difficulty = case.difficulty
    # a working day's morning, as the demo's live part: a night-time incident on a business
    # this small is a handful of events the detectors cannot tell from noise
    lo = (run.reached // DAY + 1) * DAY + 9 * HOUR
    try:
        (incident,) = run.sim.plan(case.kind, (lo, lo + 12 * HOUR), benign=False)
    except ValueError:   # longer than the morning: any start in the next day and a half
        (incident,) = run.sim.plan(case.kind, (lo, lo + 36 * HOUR), benign=False)
    if case.sliced is not None and case.sliced != (
            (incident.segment, incident.channel) != ("all", "all")):
        return None
    changes = run.feed(incident.end + AFTER_S)
    first: dict[str, float] = {}   # alert id -> since_ts of its first change
    for c in changes:
        first.setdefault(c["alert"]["id"], float(c["alert"]["since_ts"]))
    keep = {a for a, since in first.items()
            if incident.start - HOUR <= since < incident.end + 2 * HOUR}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"case": case.name, "kind": case.kind, "difficulty": case.difficulty,
            "seed": seed, "scale": case.scale, "incident": incident.to_json(),
            "recorded_at_commit": commit,
            "changes": [c for c in changes if c["alert"]["id"] in keep]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--warmup-days", type=float, default=42.0,
                        help="clean days before the incident (churn needs > 30)")
    parser.add_argument("--cache", metavar="DIR", default="",
                        help="keep warmed-up runs here between runs (only while the detectors "
                             "and the simulator do not change: a stale cache records old code)")
    opts = parser.parse_args(argv)
    cases = [c for c in CASES if not opts.cases or c.name in opts.cases]
    if not cases:
        parser.error(f"no such case; known: {', '.join(c.name for c in CASES)}")
    warmed: dict[tuple[int, float], bytes] = {}
    for case in cases:
        doc: dict[str, Any] | None = None
        for seed in case.seeds:
            started = time.monotonic()
            cached = (Path(opts.cache) / f"warm-{seed}-{case.scale:g}-{opts.warmup_days:g}.pkl"
                      if opts.cache else None)
            if (seed, case.scale) not in warmed and cached is not None and cached.exists():
                warmed[seed, case.scale] = cached.read_bytes()
            if (seed, case.scale) not in warmed:
                warmed[seed, case.scale] = warm(seed, case.scale, opts.warmup_days)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(warmed[seed, case.scale])
                print(f"seed {seed}, scale {case.scale:g}: warmed up {opts.warmup_days:g} d in "
                      f"{time.monotonic() - started:.0f} s", flush=True)
                started = time.monotonic()
            found = record(case, seed, warmed[seed, case.scale])
            if found is None:
                print(f"{case.name} (seed {seed}): not the slice asked for", flush=True)
                continue
            doc = found
            statuses = [c["status"] for c in doc["changes"]]
            inc = doc["incident"]
            print(f"{case.name} (seed {seed}): {inc['segment']}/{inc['channel']} "
                  f"{inc['start']}..{inc['end']}: "
                  f"{len({c['alert']['id'] for c in doc['changes']})} alert(s), "
                  f"{statuses.count('open')} open, {statuses.count('updated')} updated, "
                  f"{statuses.count('resolved')} resolved ({time.monotonic() - started:.0f} s)",
                  flush=True)
            if "open" in statuses:
                break
        if doc is None:
            print(f"{case.name}: no seed gives the slice asked for; fixture not written")
            continue
        path = HERE / f"{case.name}.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
