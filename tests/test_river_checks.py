"""River's own estimator checks (``river.checks.check_estimator``) on every detector class.

River runs its anomaly-detector checks on ``datasets.CreditCard``, a file it downloads; this
machine has no internet, so that one dataset is replaced by a local labelled stream of the same
form (dicts of features, a 0/1 label): an hourly KPI with a daily cycle and labelled spikes.
Every check itself is River's, unchanged.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from river import checks, datasets

from detectors import (
    AnomalyLikelihood,
    RobustSurprise,
    RollingRobustZ,
    ScaledHalfSpaceTrees,
    SeasonalForecast,
    TargetRule,
)


class _LocalLabelledStream:
    """Stands in for ``river.datasets.CreditCard``: ``take(n)`` yields ``(x, label)``."""

    def __iter__(self):
        rng = random.Random(7)
        for i in itertools.count():
            t = 1_700_000_000.0 + 3600.0 * i
            v = 100.0 + 30.0 * math.sin(2 * math.pi * (i % 24) / 24) + rng.gauss(0, 3)
            spike = i > 100 and i % 97 == 0
            yield {"value": v + (150.0 if spike else 0.0), "ts": t}, spike

    def take(self, n: int):
        return itertools.islice(self, n)


@pytest.fixture(autouse=True)
def _local_dataset(monkeypatch):
    monkeypatch.setattr(datasets, "CreditCard", _LocalLabelledStream)


@pytest.mark.parametrize("detector", [
    RobustSurprise(),
    RobustSurprise(forecaster=SeasonalForecast(grace_period=24)),
    RollingRobustZ(),
    AnomalyLikelihood(),
    SeasonalForecast(),
    ScaledHalfSpaceTrees(),
    TargetRule(),
], ids=lambda d: type(d).__name__)
def test_river_check_estimator(detector):
    checks.check_estimator(detector)


def test_stand_in_dataset_is_labelled():
    rows = list(_LocalLabelledStream().take(1000))
    assert len(rows) == 1000 and 5 <= sum(y for _, y in rows) <= 15
