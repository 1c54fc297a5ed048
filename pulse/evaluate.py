"""``pulse evaluate``: how well the detector stage finds the simulator's labelled incidents.

For every scenario (the five incident kinds and ``none``) and seeds 1..N, the simulator runs a
clean warm-up (``warmup_days``, default 42, as long as the demo's history; not scored) and then
an evaluation period (``eval_days``, default 7) with the scenario's incident placed inside it
(at least 12 h from either end). Events go through :class:`~kpis.KpiEngine` (hourly windows) and
the ``kpis`` messages built from its snapshots (``kpis.messages.group_snapshots``, as the
stream agent publishes them) through :class:`~detectors.KpiWatch`, the
same code the detector agent runs. The warm-up is simulated once per seed and copied for every
scenario: before its incident, a scenario's event stream is the same as the clean one.

Definitions (W = one window, an hour; only windows starting inside the evaluation period count):

- An anomaly event *matches* an incident when its KPI is one of ``incident.kpis``, its series
  covers affected users (its segment is ``all`` or the incident's segment, or the incident is on
  every segment; the same for channels), and its window starts in
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

import argparse
import json
import math
import pickle
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from detectors.calendar import Calendar
from detectors.config import DetectorConfig, load_config
from detectors.watch import KpiWatch
from kpis import KpiEngine
from kpis.messages import group_snapshots
from simulator import Incident, Simulation, plan_incidents
from simulator.benign import plan_benign
from simulator.detectability import IncidentCounts, floor_minutes
from simulator.model import BusinessModel
from simulator.scenarios import DIFFICULTIES
from stream.settings import Settings

__all__ = ["SCENARIOS", "run_evaluate", "format_table", "main"]

SCENARIOS = ("payment-outage", "signup-tracking-drop", "match-rate-regression",
             "channel-traffic-surge", "churn-spike", "none")
START = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday
WINDOW = 3600.0
STEP = 300.0   # event time between watermarks: an alert's time is known to 5 minutes
DAY = 86400.0
MATCH_AFTER_WINDOWS = 2
INCIDENT_MARGIN = 12 * 3600.0
ALL = "all"


# -- running -------------------------------------------------------------------------------------
@dataclass
class _Run:
    sim: Simulation
    engine: KpiEngine
    watch: KpiWatch
    reached: float

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
        while self.reached < until:
            t = min(until, (math.floor(self.reached / STEP) + 1) * STEP)
            events = self.sim.advance(t)
            if counts is not None:
                counts.add(events)
            for ev in events:
                self.engine.add(ev)
            for msg in group_snapshots(self.engine.advance(t)):
                for anomaly in self.watch.observe(msg):
                    key = (anomaly["kpi"], anomaly["segment"], anomaly["channel"],
                           anomaly["window_start_ts"])
                    if key in flagged:
                        continue
                    flagged.add(key)
                    anomaly["emitted_ts"] = t
                    out.append(anomaly)
            self.reached = t
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


# -- scoring -------------------------------------------------------------------------------------
def _covers(incident: Incident, ev: dict[str, Any]) -> bool:
    return (ev["kpi"] in incident.kpis
            and (incident.segment == ALL or ev["segment"] in (ALL, incident.segment))
            and (incident.channel == ALL or ev["channel"] in (ALL, incident.channel)))


def _match_range(incident: Incident) -> tuple[float, float]:
    return (math.floor(incident.start / WINDOW) * WINDOW,
            incident.end + MATCH_AFTER_WINDOWS * WINDOW)


def _matches(incident: Incident, ev: dict[str, Any]) -> bool:
    lo, hi = _match_range(incident)
    return lo <= ev["window_start_ts"] < hi and _covers(incident, ev)


@dataclass
class _Tally:
    incidents: int = 0
    detected: int = 0
    events: int = 0
    true_events: int = 0
    strict_true_events: int = 0
    episodes: int = 0
    false_episodes: int = 0
    days: float = 0.0
    delays: list[int] = field(default_factory=list)
    ttds: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    incident_rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: _Tally) -> None:
        for name in ("incidents", "detected", "events", "true_events", "strict_true_events",
                     "episodes", "false_episodes", "days"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays.extend(other.delays)
        self.ttds.extend(other.ttds)
        self.floors.extend(other.floors)
        self.false_alarms.extend(other.false_alarms)
        self.incident_rows.extend(other.incident_rows)


def score(incidents: Sequence[Incident], events: Sequence[dict[str, Any]],
          days: float, floors: dict[str, float | None] | None = None) -> _Tally:
    """Recall, delays, true and false events and episodes of one run's evaluation period.

    Time to detect is from an incident's start to the ``emitted_ts`` of its first matching
    anomaly, in minutes; ``floors`` maps incident ids to their floor
    (:mod:`simulator.detectability`).
    """
    t = _Tally(incidents=len(incidents), events=len(events), days=days)
    for inc in incidents:
        hits = sorted((e for e in events if _matches(inc, e)), key=lambda e: e["window_start_ts"])
        floor = (floors or {}).get(inc.id)
        row = {"id": inc.id, "start": inc.to_json()["start"], "hours": (inc.end - inc.start) / 3600,
               "segment": inc.segment, "channel": inc.channel, "magnitude": inc.magnitude,
               "delay_windows": None, "ttd_minutes": None,
               "floor_minutes": None if floor is None else round(floor, 1), "first": None}
        if floor is not None:
            t.floors.append(floor)
        if hits:
            t.detected += 1
            delay = round((hits[0]["window_start_ts"] - _match_range(inc)[0]) / WINDOW)
            t.delays.append(delay)
            row["delay_windows"] = delay
            emitted = [e["emitted_ts"] for e in hits if "emitted_ts" in e]
            if emitted:
                ttd = (min(emitted) - inc.start) / 60.0
                t.ttds.append(ttd)
                row["ttd_minutes"] = round(ttd, 1)
            row["first"] = "{kpi}/{segment}/{channel} {detector}".format(**hits[0])
        t.incident_rows.append(row)
    by_series: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for e in events:
        by_series.setdefault((e["kpi"], e["segment"], e["channel"]), []).append(e)
        if any(_matches(inc, e) for inc in incidents):
            t.strict_true_events += 1
    for series_events in by_series.values():
        series_events.sort(key=lambda e: e["window_start_ts"])
        episode: list[dict[str, Any]] = []
        for ev in [*series_events, None]:
            if episode and (ev is None
                            or ev["window_start_ts"] - episode[-1]["window_start_ts"] > WINDOW):
                t.episodes += 1
                if any(_matches(inc, episode[0]) for inc in incidents):
                    t.true_events += len(episode)
                else:
                    t.false_episodes += 1
                    first = episode[0]
                    t.false_alarms.append({k: first[k] for k in (
                        "kpi", "segment", "channel", "window_start", "value", "expected",
                        "score", "severity", "detector")} | {"windows": len(episode)})
                episode = []
            if ev is not None:
                episode.append(ev)
    return t


def _nearest_rank(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in (0, 1]); None for no values.

    >>> _nearest_rank([0, 1, 1, 2, 9], 0.5), _nearest_rank([0, 1, 1, 2, 9], 0.95)
    (1, 9)
    """
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _summary(t: _Tally) -> dict[str, Any]:
    return {
        "recall": t.detected / t.incidents if t.incidents else None,
        "precision": t.true_events / t.events if t.events else None,
        "strict_precision": t.strict_true_events / t.events if t.events else None,
        "false_alarms_per_day": t.false_episodes / t.days if t.days else 0.0,
        "false_alarms_per_week": 7 * t.false_episodes / t.days if t.days else 0.0,
        "median_delay_windows": _nearest_rank(t.delays, 0.5),
        "p95_delay_windows": _nearest_rank(t.delays, 0.95),
        "median_ttd_minutes": _rounded(_nearest_rank(t.ttds, 0.5)),
        "p95_ttd_minutes": _rounded(_nearest_rank(t.ttds, 0.95)),
        "floor_ttd_minutes": _rounded(_nearest_rank(t.floors, 0.5)),
        "incidents": t.incidents, "detected": t.detected, "anomaly_events": t.events,
        "true_events": t.true_events, "episodes": t.episodes, "false_alarms": t.false_episodes,
        "days": t.days, "delays": sorted(t.delays),
    }


def _details(t: _Tally) -> dict[str, Any]:
    return {"incidents": t.incident_rows, "false_alarms": t.false_alarms}


# -- progress ------------------------------------------------------------------------------------
class _Progress:
    """A one-line text bar with an ETA on a stream (stderr)."""

    def __init__(self, total: float, out: TextIO | None, width: int = 30):
        self.total, self.out, self.width = total, out, width
        self.done = 0.0
        self.started = time.monotonic()
        self.label = ""

    def tick(self, amount: float) -> None:
        self.done += amount
        self.draw()

    def draw(self) -> None:
        if self.out is None:
            return
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        elapsed = time.monotonic() - self.started
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(frac * self.width)
        self.out.write(f"\r[{bar:<{self.width}}] {frac:4.0%} {_clock(elapsed)} elapsed, "
                       f"ETA {_clock(eta)}  {self.label:<28.28}")
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}m{s:02d}s"


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
    bar = _Progress(seeds * (warmup_days + len(scenarios) * eval_days),
                    sys.stderr if progress else None)
    started = time.monotonic()
    tallies = {name: _Tally() for name in scenarios}
    for seed in range(1, seeds + 1):
        bar.label = f"seed {seed}: warm-up"
        run = _Run(Simulation(seed, START, "none", model=model, difficulty=difficulty),
                   KpiEngine(window_s=WINDOW, lateness_s=lateness, peek_s=worker.early_seconds),
                   KpiWatch(cfg), START)
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
    overall = _Tally()
    for t in tallies.values():
        overall.add(t)
    result: dict[str, Any] = {
        "overall": _summary(overall),
        "scenarios": {name: _summary(t) for name, t in tallies.items()},
        "details": {name: _details(t) for name, t in tallies.items()},
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


_COLUMNS = (("incidents", "incidents", "{:d}"), ("detected", "detected", "{:d}"),
            ("recall", "recall", "{:.3f}"), ("anomaly_events", "events", "{:d}"),
            ("precision", "precision", "{:.3f}"), ("false_alarms", "false alarms", "{:d}"),
            ("false_alarms_per_day", "FA/day", "{:.3f}"),
            ("median_delay_windows", "median delay", "{:g}"),
            ("p95_delay_windows", "p95 delay", "{:g}"),
            ("median_ttd_minutes", "TTD min", "{:.0f}"),
            ("p95_ttd_minutes", "p95 TTD", "{:.0f}"),
            ("floor_ttd_minutes", "floor min", "{:.0f}"))


def format_table(result: dict[str, Any]) -> str:
    """The per-scenario and overall table of a :func:`run_evaluate` result.

    >>> row = {"incidents": 1, "detected": 1, "recall": 1.0, "anomaly_events": 3,
    ...        "precision": 1.0, "false_alarms": 0, "false_alarms_per_day": 0.0,
    ...        "median_delay_windows": 0, "p95_delay_windows": 0}
    >>> print(format_table({"overall": row, "scenarios": {"churn-spike": row}}))
    scenario     incidents  detected  recall  events  precision  false alarms  FA/day  ...
    churn-spike          1         1   1.000       3      1.000             0   0.000  ...
    overall              1         1   1.000       3      1.000             0   0.000  ...
    """
    rows = [(name, s) for name, s in result["scenarios"].items()]
    rows.append(("overall", result["overall"]))
    width = max(len("scenario"), *(len(name) for name, _ in rows))
    lines = ["  ".join([f"{'scenario':<{width}}", *(h for _, h, _ in _COLUMNS)])]
    for name, s in rows:
        cells = [f"{name:<{width}}"]
        for key, head, fmt in _COLUMNS:
            v = s.get(key)
            cells.append(f"{'-' if v is None else fmt.format(v):>{len(head)}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pulse.evaluate",
                                description="Score the detectors on simulated incidents.")
    p.add_argument("--seeds", type=int, default=5, help="seeds 1..N per scenario (default 5)")
    p.add_argument("--json", dest="json_path", help="write the summary to this JSON file")
    p.add_argument("--config", dest="config_path",
                   help="detector config file merged over detectors/defaults.toml")
    p.add_argument("--warmup-days", type=float, default=42.0,
                   help="clean days simulated before the evaluation (default 42, as the demo)")
    p.add_argument("--eval-days", type=float, default=7.0)
    p.add_argument("--scenario", action="append", choices=SCENARIOS,
                   help="only this scenario (repeatable; default all)")
    p.add_argument("--difficulty", default="normal", choices=DIFFICULTIES,
                   help="normal: large incidents (default); subtle: small, short ones")
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the business: users, signups, subscriptions x SCALE (default 1)")
    p.add_argument("--no-calendar", dest="calendar", action="store_false",
                   help="do not tell the detectors the calendar of the none scenario's known "
                        "events (holiday, campaign, gap)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        result = run_evaluate(args.seeds, args.json_path, args.config_path, not args.quiet,
                              warmup_days=args.warmup_days, eval_days=args.eval_days,
                              scenarios=args.scenario or SCENARIOS,
                              difficulty=args.difficulty, scale=args.scale,
                              calendar=args.calendar)
    except ValueError as e:
        print(f"pulse evaluate: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    st = result["settings"]
    print(f"{st['seeds']} seeds, {st['eval_days']:g} evaluated days per scenario and seed, "
          f"difficulty {st['difficulty']}, scale {st['scale']:g}, "
          f"calendar {'on' if st['calendar'] else 'off'}, {st['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
