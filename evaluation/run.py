"""Running ``pulse evaluate``: every scenario simulated through the KPI engine and the detectors.

For every scenario (the five incident kinds and ``none``) and seeds 1..N, the simulator runs a
clean warm-up (``warmup_days``, default 42, as long as the demo's history; not scored) and then
an evaluation period (``eval_days``, default 7) with the scenario's incident placed inside it
(at least 12 h from either end). Events go through :class:`~kpis.KpiEngine` (hourly windows) and
the ``kpis`` messages built from its snapshots (``kpis.messages.group_snapshots``, as the
stream agent publishes them) through :class:`~detectors.KpiWatch`, the
same code the detector agent runs. The warm-up is simulated once per seed and copied for every
scenario: before its incident, a scenario's event stream is the same as the clean one.

Definitions (W = one window, an hour; only windows starting inside the evaluation period count):

- An anomaly event *matches* an incident as :mod:`evaluation.matching` says: its KPI is one of
  ``incident.kpis``, its series covers affected users, and its window starts in
  ``[start of the window holding incident.start, incident.end + 2 W)``.
- **Recall**: share of incidents with at least one matching anomaly event.
- **Delay**: index of the first matching window minus the index of the window holding the
  incident's start (0: flagged in the window where it began); median and p95 (nearest rank) over
  detected incidents.
- **Episodes**: anomaly events of one series (kpi, segment, channel) in consecutive windows form
  one episode, what a person sees as one alert. An episode is *true* when its first event matches
  an incident, so an alert raised by an incident that stays open while the KPI is still off (a
  trailing 30-day KPI keeps an incident's cancellations for 30 days) is not also counted false.
- **Precision**: share of anomaly events (one per flagged series and window) that belong to true
  episodes. ``strict_precision`` also reported: share of events that match an incident themselves.
- **False alarms**: episodes that are not true, per simulated evaluation day (``none``: also per
  week).
"""

from __future__ import annotations

import json
import pickle
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.settings import Settings
from detectors.calendar import Calendar
from detectors.config import DetectorConfig, load_config
from detectors.watch import KpiWatch
from evaluation.matching import WINDOW
from evaluation.pipeline import STEP, Pipeline
from evaluation.progress import Progress
from evaluation.scoring import Tally, details, score, summary
from kpis import KpiEngine
from simulator import Simulation, plan_incidents
from simulator.benign import plan_benign
from simulator.detectability import IncidentCounts, floor_minutes
from simulator.model import BusinessModel
from simulator.scenarios import DIFFICULTIES

__all__ = ["SCENARIOS", "START", "run_evaluate"]

SCENARIOS = ("payment-outage", "signup-tracking-drop", "match-rate-regression",
             "channel-traffic-surge", "churn-spike", "none")
START = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday
DAY = 86400.0
INCIDENT_MARGIN = 12 * 3600.0


# -- running -------------------------------------------------------------------------------------
@dataclass
class _Run(Pipeline):
    watch: KpiWatch

    def feed(self, until: float, tick: Any = None,
             counts: IncidentCounts | None = None) -> list[dict[str, Any]]:
        """Simulate up to ``until`` in steps of ``STEP``; every anomaly event the watch gives.

        Each event gets ``emitted_ts``: the event time (watermark) when it was emitted, as in
        the worker (same ``PULSE_LATENESS_SECONDS`` and ``PULSE_EARLY_SECONDS``): a closed
        window's lateness after its end, an early anomaly when the running counts of its open
        window came out (its ticks, the first ones once the window before it has closed). A
        series and window flagged early and again at close is one event, with the early time.
        ``counts`` (if given) tallies the incidents' affected events for their floors.
        """
        out: list[dict[str, Any]] = []
        flagged: set[tuple[str, str, str, float]] = set()
        day_mark = self.reached
        on_events = counts.add if counts is not None else None
        for t, message in self.messages(until, STEP, on_events):
            for doc in message:
                if doc.get("kind") == "window_closed":
                    continue
                for anomaly in self.watch.observe(doc):
                    key = (anomaly["kpi"], anomaly["segment"], anomaly["channel"],
                           anomaly["window_start_ts"])
                    if key in flagged:
                        continue
                    flagged.add(key)
                    anomaly["emitted_ts"] = t
                    out.append(anomaly)
            if tick is not None and t - day_mark >= DAY:
                tick((t - day_mark) / DAY)
                day_mark = t
        if tick is not None and self.reached > day_mark:
            tick((self.reached - day_mark) / DAY)
        return out


def _fork(frozen: bytes, seed: int, scenario: str, lo: float, hi: float,
          difficulty: str = "normal", calendar: bool = True) -> _Run:
    """The warmed-up run with ``scenario``'s incidents planned in ``[lo, hi]``.

    Same plan as ``Simulation(seed, START, scenario, (lo, hi))``: the simulator draws incidents
    from their own ``Random(f"incidents:{seed}")`` and uses them only in hours they overlap, so
    the clean warm-up is the scenario's own (only event ids differ; tests/test_watch.py checks).
    ``none`` gets its benign events (a holiday, a campaign, a trend, a gap, late events) and,
    with ``calendar``, the watch gets the calendar of the known ones.
    """
    run: _Run = pickle.loads(frozen)
    run.sim.incidents = plan_incidents(scenario, lo, hi, random.Random(f"incidents:{seed}"),
                                       difficulty)
    if scenario == "none":   # the things that look like incidents but are not
        run.sim.benign = plan_benign(seed, lo, hi)
        if calendar:   # what people know of them, as the demo's worker reads it
            run.watch.calendar = Calendar(run.sim.calendar(), "simulator")
    return run


# -- the evaluation ------------------------------------------------------------------------------
def run_evaluate(seeds: int = 5, json_path: str | None = None, config_path: str | None = None,
                 progress: bool = True, *, warmup_days: float = 42.0, eval_days: float = 7.0,
                 scenarios: Sequence[str] = SCENARIOS,
                 config: DetectorConfig | None = None, difficulty: str = "normal",
                 scale: float = 1.0, calendar: bool = True) -> dict[str, Any]:
    """Run every scenario for seeds 1..``seeds``; the summary (and ``json_path`` written).

    ``config_path`` is a detector configuration file merged over the defaults (as
    ``PULSE_DETECTORS_CONFIG``); ``config`` an already loaded one. ``progress`` draws a bar on
    stderr. ``difficulty`` picks the incidents (``simulator.DIFFICULTIES``), ``scale`` the size
    of the business (``BusinessModel.scaled``). ``calendar=False`` keeps the calendar of the
    ``none`` scenario's known events from the detectors (what they do without one).
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; valid: {', '.join(DIFFICULTIES)}")
    model = BusinessModel().scaled(scale)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if eval_days * DAY < 2 * INCIDENT_MARGIN + DAY:
        raise ValueError(f"eval_days must be >= 2 to hold an incident, got {eval_days}")
    for name in scenarios:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    cfg = config if config is not None else load_config(config_path)
    worker = Settings.from_env()   # the worker's lateness and early looks
    lateness = float(worker.lateness_seconds)
    warm_end = START + warmup_days * DAY
    eval_end = warm_end + eval_days * DAY
    lo, hi = warm_end + INCIDENT_MARGIN, eval_end - INCIDENT_MARGIN
    bar = Progress(seeds * (warmup_days + len(scenarios) * eval_days),
                    sys.stderr if progress else None)
    started = time.monotonic()
    tallies = {name: Tally() for name in scenarios}
    for seed in range(1, seeds + 1):
        bar.label = f"seed {seed}: warm-up"
        run = _Run(sim=Simulation(seed, START, "none", model=model, difficulty=difficulty),
                   engine=KpiEngine(window_s=WINDOW, lateness_s=lateness,
                                    peek_s=worker.early_seconds),
                   reached=START, watch=KpiWatch(cfg))
        run.feed(warm_end, bar.tick)
        frozen = pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL)
        for name in scenarios:
            bar.label = f"seed {seed}: {name}"
            fork = _fork(frozen, seed, name, lo, hi, difficulty, calendar)
            counts = IncidentCounts(fork.sim.incidents)
            events = [e for e in fork.feed(eval_end + lateness, bar.tick, counts)
                      if warm_end <= e["window_start_ts"] < eval_end]   # scored windows only
            floors = {i.id: floor_minutes(i, fork.sim.model, counts.counts[i.id])
                      for i in fork.sim.incidents}
            tallies[name].add(score(fork.sim.incidents, events, eval_days, floors))
    bar.close()
    overall = Tally()
    for t in tallies.values():
        overall.add(t)
    result: dict[str, Any] = {
        "overall": summary(overall),
        "scenarios": {name: summary(t) for name, t in tallies.items()},
        "details": {name: details(t) for name, t in tallies.items()},
        "settings": {"seeds": seeds, "warmup_days": warmup_days, "eval_days": eval_days,
                     "difficulty": difficulty, "scale": scale, "calendar": calendar,
                     "window_s": WINDOW, "lateness_s": lateness,
                     "early_s": worker.early_seconds, "config": cfg.source,
                     "runtime_s": round(time.monotonic() - started, 1)},
    }
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return result
