"""The detector core's scores on the awkward stretches real series have (issue 13, scope 2).

Each case is a plain series with a known character; what is asserted is how often a point
scores over the alert level (0.5: ``p = 1e-5``) or over 0.3 where the series is ordinary, and
that an onset still scores high. Measured values are in the comments.
"""

from __future__ import annotations

import math
import pickle
import random

from detectors.surprise import RobustSurprise
from detectors.tail import TailSurprise


def _scores(values, ts=None, **params):
    det = RobustSurprise(**params)
    out = []
    for i, v in enumerate(values):
        x = {"value": v, "ts": ts[i] if ts else 60.0 * i}
        out.append(det.score_one(x))
        det.learn_one(x)
    return out


def _share(scores, level):
    return sum(s >= level for s in scores) / len(scores)


def test_ordinary_noise_rarely_alerts_whatever_its_tails():
    rng = random.Random(5)
    gauss = [100 + rng.gauss(0, 5) for _ in range(20000)]
    # Student t with 2 degrees of freedom: infinite variance, outliers are part of normal life
    heavy = [100 + 5 * rng.gauss(0, 1) / math.sqrt(max(rng.gammavariate(1.0, 1.0), 1e-9))
             for _ in range(20000)]
    counts = [float(sum(rng.random() < 0.02 for _ in range(100))) for _ in range(5000)]
    assert _share(_scores(gauss)[100:], 0.5) == 0.0          # measured 0
    assert _share(_scores(heavy)[100:], 0.5) <= 0.005         # measured 0.0018
    assert _share(_scores(counts)[100:], 0.5) <= 0.002        # measured 0.0002


def test_scores_are_ordered_and_never_tie_at_one():
    det = RobustSurprise()
    for i in range(300):
        det.learn_one({"value": 10.0 + (i % 5) * 0.2})
    s = [det.score_one({"value": v}) for v in (20.0, 50.0, 500.0, 5e6)]
    assert s == sorted(s) and len(set(s)) == 4 and s[-1] < 1.0


def test_flat_stretch_then_noise_alerts_once_then_learns():
    rng = random.Random(1)
    s = _scores([50.0] * 300 + [50 + rng.gauss(0, 1) for _ in range(1000)])
    assert max(s[300:305]) >= 0.5          # a perfectly flat series starting to move is news
    assert _share(s[400:], 0.3) == 0.0     # then the new noise is learned (measured 0)


def test_level_shift_alerts_at_onset_then_is_the_new_normal():
    rng = random.Random(2)
    s = _scores([100 + rng.gauss(0, 2) for _ in range(500)]
                + [160 + rng.gauss(0, 2) for _ in range(500)])
    assert max(s[500:503]) >= 0.5          # measured 0.975
    assert max(s[560:]) < 0.3              # within 60 points it is learned


def test_gaps_and_a_change_of_cadence_are_not_anomalies():
    rng = random.Random(3)
    ts = [60.0 * i for i in range(500)] + [60.0 * 500 + 3 * 86400 + 3600.0 * i
                                            for i in range(500)]
    s = _scores([100 + rng.gauss(0, 2) for _ in range(1000)], ts)
    assert max(s[100:]) < 0.3


def test_an_outlier_in_warm_up_does_not_poison_what_follows():
    rng = random.Random(4)
    s = _scores([100 + rng.gauss(0, 2) for _ in range(3)] + [1e6]
                + [100 + rng.gauss(0, 2) for _ in range(1000)])
    assert max(s[10:]) < 0.3


def test_score_one_changes_nothing():
    det = RobustSurprise()
    for i in range(100):
        det.learn_one({"value": float(i % 7), "ts": 60.0 * i})
    before = pickle.dumps(det)
    for v in (3.0, 300.0, -5.0, float("nan")):
        det.score_one({"value": v, "ts": 6000.0})
        det.forecast_one({"value": v, "ts": 6000.0})
    assert pickle.dumps(det) == before


def test_tail_is_a_calibrated_probability_on_its_own_history():
    rng = random.Random(6)
    t = TailSurprise(window=5000)
    zs = [abs(rng.gauss(0, 1)) for _ in range(5000)]
    for z in zs:
        t.learn(z, t.log10_surprise(z))
    # the empirical part: P(|Z| >= 1.96) = 0.05 for a Gaussian
    assert abs(t.log10_surprise(1.96) - 1.30) < 0.05
    # beyond the data: a finite, growing, not absurd surprise (Gaussian: 6.2 at 5, 8.9 at 6)
    assert 4.0 < t.log10_surprise(5.0) < t.log10_surprise(6.0) < 12.0


def test_heavy_history_lowers_surprise_and_gain_is_capped():
    light, heavy = TailSurprise(window=2000), TailSurprise(window=2000)
    rng = random.Random(7)
    for _ in range(2000):
        z = abs(rng.gauss(0, 1))
        light.learn(z, light.log10_surprise(z))
        zh = abs(rng.gauss(0, 1)) / max(rng.random(), 1e-6) ** 0.5
        heavy.learn(zh, heavy.log10_surprise(zh))
    assert heavy.log10_surprise(6.0) < light.log10_surprise(6.0)
    capped = TailSurprise(window=2000, max_gain=0.0)
    for _ in range(2000):
        z = abs(rng.gauss(0, 0.5))
        capped.learn(z, capped.log10_surprise(z))
    from detectors._math import log10_z_tail
    assert capped.log10_surprise(4.0) <= log10_z_tail(4.0) + 1e-9
