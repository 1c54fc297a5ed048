"""Regenerate the README's chart images from simulated incidents (not run in CI; a few minutes).

``.venv/bin/python docs/images/make_images.py`` runs the simulator in-process through the same
code the worker runs (``evaluation.pipeline``: KpiEngine, KpiWatch, AlertManager; and
DigestBuilder), one
clean five-week warm-up shared by every scenario (as evaluation/run.py does), then draws the
alert, digest and replay charts into this directory.
"""

from __future__ import annotations

import pickle
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # run from anywhere

from alerting.chart import chart_points, render_chart, render_week_chart  # noqa: E402
from alerting.digest import CHART_KPIS, DigestBuilder  # noqa: E402
from alerting.lifecycle import AlertManager  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.timefmt import iso_utc  # noqa: E402
from detectors.config import load_config  # noqa: E402
from detectors.watch import KpiWatch  # noqa: E402
from evaluation.pipeline import STEP, Pipeline, alert_changes  # noqa: E402
from kpis import KpiEngine  # noqa: E402
from pulse.replay_chart import render_timeline  # noqa: E402
from simulator import BusinessModel, Incident, Simulation, plan_incidents  # noqa: E402

OUT = Path(__file__).resolve().parent
SEED = 12                       # its channel surge hits referral, its match regression one segment
START = 1_767_571_200.0         # 2026-01-05 00:00 UTC, a Monday (evaluation/run.py)
DAY = 86_400.0
WARM_DAYS, EVAL_DAYS = 35.0, 7.0   # the 30-day KPIs are complete in the digest's week
SCALE = 4.0                    # a business big enough for hourly payment rates to mean something


@dataclass
class Run(Pipeline):
    """One simulated pipeline: events -> KPI windows -> detectors -> alerts and digests."""

    watch: KpiWatch
    manager: AlertManager
    digests: DigestBuilder
    rows: list[dict[str, Any]] = field(default_factory=list)      # kpis.jsonl lines
    changes: list[dict[str, Any]] = field(default_factory=list)   # alert snapshots, in order
    days: list[dict[str, Any]] = field(default_factory=list)      # finished digests

    def feed(self, until: float) -> None:
        for _, message in self.messages(until, STEP):
            for doc in message:
                self._take(doc)

    def _take(self, doc: dict[str, Any]) -> None:
        for c in alert_changes(doc, self.watch, self.manager):
            self.changes.append(c.alert)
            self.digests.add_alert(c.alert)
        if doc.get("kind") == "window_closed":
            self.days += self.digests.add_message(doc)
            return
        self.digests.add_message(doc)
        if doc.get("as_of_ts") is None and doc.get("cohort") is None:
            self.rows += [{"kpi": doc["kpi"], "segment": s["segment"], "channel": s["channel"],
                           "window_start": doc["window_start"], "value": s["value"]}
                          for s in doc["series"] if "all" in (s["segment"], s["channel"])
                          and s["value"] is not None]


def warm_up() -> bytes:
    worker = Settings.from_env()
    run = Run(sim=Simulation(SEED, START, "none", model=BusinessModel().scaled(SCALE)),
              engine=KpiEngine(window_s=3600.0, lateness_s=float(worker.lateness_seconds),
                               peek_s=float(worker.early_seconds)),
              reached=START, watch=KpiWatch(load_config()), manager=AlertManager(),
              digests=DigestBuilder(window_s=3600.0))
    run.feed(START + WARM_DAYS * DAY)
    return pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL)


def scenario(frozen: bytes, name: str) -> Run:
    """The warmed-up run with ``name``'s incidents in the evaluation week (as evaluation does)."""
    run: Run = pickle.loads(frozen)
    lo, hi = START + WARM_DAYS * DAY + DAY / 2, START + (WARM_DAYS + EVAL_DAYS) * DAY - DAY / 2
    run.sim.incidents = plan_incidents(name, lo, hi, random.Random(f"incidents:{SEED}"))
    run.feed(START + (WARM_DAYS + EVAL_DAYS) * DAY + 2 * 3600.0)
    return run


def latest(run: Run, incident: Incident, kpi: str, status: str) -> dict[str, Any]:
    """The last ``status`` snapshot of the alert led by ``kpi`` that opened in ``incident``."""
    ids = [a["id"] for a in run.changes if a["status"] == "open" and a["kpi"] == kpi
           and incident.start - 3600.0 <= a["window_start_ts"] < incident.end]
    if not ids:
        raise LookupError(f"no alert on {kpi} opened during {incident.id}")
    return [a for a in run.changes if a["id"] == ids[0] and a["status"] == status][-1]


def incident(run: Run, kind: str) -> Incident:
    return next(i for i in run.sim.incidents if i.kind == kind)


def alert_png(name: str, alert: dict[str, Any]) -> None:
    (OUT / name).write_bytes(render_chart(chart_points(alert), alert["kpi"], alert=alert))


def draw(surge: Run, mixed: Run) -> None:
    """Every PNG, from the referral surge and the five-incident (``mixed``) runs."""
    outage = incident(mixed, "payment-outage")
    alert_png("alert-payment-outage.png", latest(mixed, outage, "payment_failure_rate", "updated"))
    alert_png("alert-match-rate-segment.png", latest(
        mixed, incident(mixed, "match-rate-regression"), "match_rate", "updated"))
    alert_png("alert-referral-surge.png", latest(
        surge, incident(surge, "channel-traffic-surge"), "scans", "open"))
    day = next(d for d in mixed.days if d["day"] == iso_utc(outage.start)[:10])
    (OUT / "digest-day-with-alert.png").write_bytes(render_week_chart(
        day["week"], CHART_KPIS, f"Daily KPIs, week to {day['day']} (UTC)"))
    render_timeline(OUT / "replay.png", mixed.rows, mixed.changes,
                    [i.to_json() for i in mixed.sim.incidents],
                    title=f"Replay of {WARM_DAYS + EVAL_DAYS:g} simulated days, five incidents")


def main() -> None:
    frozen = warm_up()
    draw(scenario(frozen, "channel-traffic-surge"), scenario(frozen, "mixed"))
    print("\n".join(str(p) for p in sorted(OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
