"""NAB-like labelled synthetic series, and a small scorer to compare CSV detectors on them.

No public benchmark data can be downloaded here, so :func:`suite` generates series shaped like
the kinds in the Numenta Anomaly Benchmark (server metrics, traffic with a daily pattern, social
media volume, ad clicks, flat-then-jump), each with labelled anomaly windows. :func:`evaluate`
scores each with a detector, causally, and reports per series whether each window was caught
(first score >= threshold inside it, and how many points after the window start), and how many
points outside windows (after a 15% probation) scored >= threshold. Run
``python -m bench.detector_suite [--detector NAME] [--threshold T]``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors.registry import DEFAULT_DETECTOR, DETECTOR_NAMES, make_detector

__all__ = ["Series", "suite", "evaluate", "main"]

START = 1_420_070_400.0  # 2015-01-01 UTC


@dataclass
class Series:
    name: str
    ts: list[float]
    values: list[float]
    anomalies: list[int]  # index where each labelled anomaly starts
    windows: list[tuple[int, int]]  # labelled windows [start, end) around them (NAB style)


def _windows(n: int, starts: list[int]) -> list[tuple[int, int]]:
    """NAB: windows total 10% of the series, split evenly, centred on each anomaly."""
    if not starts:
        return []
    half = max(1, int(0.1 * n / len(starts) / 2))
    return [(max(0, s - half), min(n, s + half)) for s in starts]


def _daily(t: float, peak_hour: float = 14.0) -> float:
    hour = (t % 86400) / 3600.0
    return math.cos((hour - peak_hour) / 24.0 * 2 * math.pi)


def suite(seed: int = 7, n: int = 4000) -> list[Series]:
    """Labelled series of ``n`` points (5-minute cadence unless said otherwise).

    >>> [s.name for s in suite(n=500)][:3]
    ['flat_then_jump', 'level_shift_noisy', 'spikes_server_cpu']
    """
    rng = random.Random(seed)
    out: list[Series] = []

    def add(name: str, gen: Callable[[int, float], float], starts: list[int],
            step: float = 300.0, jitter: float = 0.0) -> None:
        ts, vals, t = [], [], START
        for i in range(n):
            t += step * (1.0 + rng.uniform(-jitter, jitter))
            ts.append(t)
            vals.append(gen(i, t))
        out.append(Series(name, ts, vals, starts, _windows(n, starts)))

    a = int(0.6 * n)
    b = int(0.85 * n)
    add("flat_then_jump", lambda i, t: 5.0 if i < a else 9.0, [a])
    add("level_shift_noisy", lambda i, t: 50 + rng.gauss(0, 3) + (15 if i >= a else 0), [a])
    add("spikes_server_cpu",
        lambda i, t: max(0.0, 20 + 5 * _daily(t) + rng.gauss(0, 1.5)
                         + (45 if i in (a, a + 1, b) else 0)), [a, b])
    add("traffic_daily_drop",
        lambda i, t: max(0.0, 400 + 250 * _daily(t) + rng.gauss(0, 20)) * (0.3 if a <= i < a + 40
                                                                          else 1.0), [a])
    add("tweets_bursty",
        lambda i, t: float(poisson(rng, 20 + 12 * _daily(t, 18)
                                    + (150 * math.exp(-(i - a) / 10) if i >= a else 0))), [a])
    add("adclicks_hourly_noisy",
        lambda i, t: max(0.0, rng.lognormvariate(0, 0.25) * (1.0 + 0.5 * _daily(t))
                         * (2.6 if b <= i < b + 3 else 1.0)), [b], step=3600.0)
    add("drift_then_failure",
        lambda i, t: 60 + 0.002 * i + rng.gauss(0, 1) - (25 if a <= i < a + 30 else 0), [a])
    add("variance_change",
        lambda i, t: 10 + rng.gauss(0, 0.5 if i < a else 4.0), [a])
    add("irregular_traffic_speed",
        lambda i, t: max(0.0, 60 + 8 * _daily(t, 8) + rng.gauss(0, 4)
                         - (40 if a <= i < a + 15 else 0)), [a], jitter=0.6)
    add("quantized_latency",
        lambda i, t: float(round(max(0.0, 3 + rng.gauss(0, 0.6)))) + (12 if i == b else 0), [b])
    add("clean_seasonal_no_anomaly",
        lambda i, t: max(0.0, 100 + 40 * _daily(t) + rng.gauss(0, 5)), [])
    add("clean_random_walk_no_anomaly",
        lambda i, t: _walk(rng, i), [])
    return out


_WALK = [0.0]


def _walk(rng: random.Random, i: int) -> float:
    if i == 0:
        _WALK[0] = 100.0
    _WALK[0] += rng.gauss(0, 0.3)
    return _WALK[0] + rng.gauss(0, 1)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation above 50), for the synthetic series."""
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def evaluate(detector: str = DEFAULT_DETECTOR, threshold: float = 0.5, seed: int = 7,
             n: int = 4000) -> dict[str, Any]:
    """Detections, delays and false positives of ``detector`` on :func:`suite`."""
    rows, caught, total, fps, points = [], 0, 0, 0, 0
    started = time.perf_counter()
    for s in suite(seed, n):
        det = make_detector(detector)
        scores = []
        for t, v in zip(s.ts, s.values, strict=True):
            x = {"value": v, "ts": t}
            scores.append(det.score_one(x))
            det.learn_one(x)
        probation = int(0.15 * len(scores))
        inside: set[int] = set()
        for lo, hi in s.windows:
            inside.update(range(lo, hi))
        fp = sum(1 for i, sc in enumerate(scores)
                 if i >= probation and i not in inside and sc >= threshold)
        delays = []
        for start, (lo, hi) in zip(s.anomalies, s.windows, strict=True):
            hit = next((i for i in range(lo, hi) if scores[i] >= threshold), None)
            delays.append(None if hit is None else hit - start)
        caught += sum(d is not None for d in delays)
        total += len(delays)
        fps += fp
        points += len(scores)
        normal = [sc for i, sc in enumerate(scores) if i >= probation and i not in inside]
        rows.append({"series": s.name, "delays": delays, "false_positives": fp,
                     "max_in_window": [round(max(scores[lo:hi]), 3) for lo, hi in s.windows],
                     "p99_normal": round(sorted(normal)[int(0.99 * len(normal))], 3)})
    seconds = time.perf_counter() - started
    return {"detector": detector, "threshold": threshold, "caught": caught, "anomalies": total,
            "false_positives": fps, "points": points, "rows_per_second": round(points / seconds),
            "series": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.detector_suite")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTOR_NAMES)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--n", type=int, default=4000)
    args = p.parse_args(argv)
    r = evaluate(args.detector, args.threshold, n=args.n)
    for row in r["series"]:
        print(f"{row['series']:30s} delays={row['delays']!s:14s} fp={row['false_positives']:4d} "
              f"max_in_window={row['max_in_window']!s:16s} p99_normal={row['p99_normal']}")
    print(f"{r['detector']}: caught {r['caught']}/{r['anomalies']}, false positives "
          f"{r['false_positives']} of {r['points']} points, {r['rows_per_second']} points/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
