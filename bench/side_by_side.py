"""Throughput of two builds (or two settings) side by side, one run of each in turn.

This machine's speed moves by a quarter between runs a minute apart, so one run of each build
says little: alternating pairs, their medians and a Mann-Whitney count say which is faster.
Each run is ``bench.throughput.measure_throughput`` (one worker, ``--days`` simulated days, on
its own embedded broker) from the side's checkout, in a process of its own::

    python -m bench.side_by_side --a ef50168 --b HEAD --pairs 8          # two commits
    python -m bench.side_by_side --a HEAD --b HEAD --a-env PULSE_FETCH_MAX_WAIT_MS=1500

A side is a commit (checked out into a temporary git worktree) or a directory. The runs use this
.venv, so both builds must run on its packages. Prints each run, then the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_RUN = ("import json, sys; sys.path.insert(0, '.');"
        "from stream.broker import EmbeddedBroker;"
        "from bench.throughput import measure_throughput;"
        "b = EmbeddedBroker().start()\n"
        "try: print(json.dumps(measure_throughput(b.bootstrap, days={days}, progress=False)))\n"
        "finally: b.stop()")


def _checkout(side: str, scratch: Path) -> Path:
    """A directory holding ``side``: itself if it is one, else a worktree of that commit."""
    if Path(side).is_dir():
        return Path(side).resolve()
    path = scratch / side.replace("/", "_")
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), side], check=True,
                       stdout=subprocess.DEVNULL)
    return path


def _run(where: Path, env: dict[str, str], days: float) -> int:
    out = subprocess.run([sys.executable, "-c", _RUN.format(days=days)], cwd=where,
                         env={**os.environ, "PULSE_BROKER_MAX_MB": "0", **env},
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["events_per_s"])


def _env(pairs: list[str]) -> dict[str, str]:
    try:
        return dict(p.split("=", 1) for p in pairs)
    except ValueError:
        raise SystemExit(f"--a-env/--b-env take NAME=VALUE, got {pairs}") from None


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.side_by_side", description=__doc__)
    p.add_argument("--a", required=True, help="commit or directory of the first build")
    p.add_argument("--b", required=True, help="commit or directory of the second build")
    p.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--days", type=float, default=84.0)
    args = p.parse_args()
    sides = {"A": (args.a, _env(args.a_env)), "B": (args.b, _env(args.b_env))}
    runs: dict[str, list[int]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="pulse-sbs-") as tmp:
        dirs = {k: _checkout(side, Path(tmp)) for k, (side, _) in sides.items()}
        try:
            for i in range(1, args.pairs + 1):
                for k in ("A", "B"):
                    runs[k].append(_run(dirs[k], sides[k][1], args.days))
                    print(f"pair {i} {k} ({sides[k][0]}): {runs[k][-1]:,} events/s", flush=True)
        finally:
            for d in dirs.values():
                if Path(tmp) in d.parents:
                    subprocess.run(["git", "worktree", "remove", "--force", str(d)], check=False)
    a, b = statistics.median(runs["A"]), statistics.median(runs["B"])
    u = sum(x > y for x in runs["A"] for y in runs["B"])
    print(f"median A {a:,.0f}, B {b:,.0f} events/s: B/A {b / a - 1:+.1%}; A faster in {u} of "
          f"{len(runs['A']) * len(runs['B'])} cross pairs (Mann-Whitney U)")


if __name__ == "__main__":
    main()
