"""``pulse evaluate`` (and ``python -m pulse.evaluate``): run :mod:`evaluation`, print its table.

The definitions (matching, recall, delay, episodes, precision, false alarms) are in
:mod:`evaluation.run`; this module only reads flags and prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evaluation import SCENARIOS, format_settings, format_table, run_evaluate
from simulator.scenarios import DIFFICULTIES

__all__ = ["main", "run"]


def run(seeds: int = 5, json_path: str | None = None, config_path: str | None = None,
        progress: bool = True, *, warmup_days: float = 42.0, eval_days: float = 7.0,
        scenarios: Sequence[str] = SCENARIOS, difficulty: str = "normal", scale: float = 1.0,
        calendar: bool = True) -> int:
    """Evaluate, print the table and the settings line; an exit code (2: bad arguments)."""
    try:
        result = run_evaluate(seeds, json_path, config_path, progress,
                              warmup_days=warmup_days, eval_days=eval_days, scenarios=scenarios,
                              difficulty=difficulty, scale=scale, calendar=calendar)
    except ValueError as e:
        print(f"pulse evaluate: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(format_settings(result))
    return 0


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
    return run(args.seeds, args.json_path, args.config_path, not args.quiet,
               warmup_days=args.warmup_days, eval_days=args.eval_days,
               scenarios=args.scenario or SCENARIOS, difficulty=args.difficulty,
               scale=args.scale, calendar=args.calendar)


if __name__ == "__main__":
    raise SystemExit(main())
