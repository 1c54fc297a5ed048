"""Online anomaly detectors for KPI series, built on River; no Kafka in here.

The contract, as in ``river.anomaly``: a detector has ``learn_one(x)`` and ``score_one(x) -> float``
where ``x = {"value": float, "ts": float}`` (epoch seconds; ratio KPIs may add ``"n"``, the
sample size behind the value). A high score means anomalous; a detector scores 0 (neutral) until
it has learned enough; ``score_one`` never changes the detector. Constructor arguments are kept
unchanged as attributes, learned state sits in plain attributes, randomness comes from a
``seed``, so ``pickle`` gives exact round trips (a worker restart). Callers do not learn from
points they flag (:class:`SeriesWatcher` does this for KPI series).

Every detector class subclasses ``river.base.AnomalyDetector`` and passes River's own
``river.checks.check_estimator`` (tests/test_river_checks.py), so it works inside River's tooling.

:class:`RobustSurprise` is the detector core: robust prediction errors, calibrated against this
series' own history of them (:class:`TailSurprise`), one alarm per onset. ``pulse detect`` runs
it by default and the live path runs it on every ``level`` KPI (with the KPI's seasonal
forecaster inside). Scores of :class:`SeasonalForecast`, :class:`AnomalyLikelihood`,
:class:`ScaledHalfSpaceTrees` and :class:`TargetRule` are in [0, 1]; on the shared surprise scale
0.5 is a 1-in-100,000 event. :class:`RollingRobustZ` gives raw robust z-scores (>= 0) to wrap in
:class:`AnomalyLikelihood`.

- :class:`SeriesWatcher` / :class:`Verdict`: one KPI series (kpi, segment, channel).
- :class:`KpiWatch` / :class:`KpiSeriesWatch`: the detector stage, ``kpis`` messages in, anomaly
  events out, state split per KPI.
- :func:`load_config`: the one configuration file (``detectors/defaults.toml``).
- :func:`score_csv`: ``pulse detect IN.csv OUT.csv``.
"""

from typing import Any

from detectors.config import DetectorConfig, KpiConfig, load_config
from detectors.forecast import Forecast, SeasonalForecast
from detectors.hst import ScaledHalfSpaceTrees
from detectors.likelihood import AnomalyLikelihood
from detectors.registry import DEFAULT_DETECTOR, DETECTOR_NAMES, make_detector
from detectors.robust import RollingRobustZ
from detectors.rules import TargetRule
from detectors.series import SeriesWatcher, Verdict
from detectors.surprise import RobustSurprise
from detectors.tail import TailSurprise
from detectors.watch import KpiSeriesWatch, KpiWatch

__all__ = [
    "AnomalyLikelihood",
    "CsvError",
    "DEFAULT_DETECTOR",
    "DETECTOR_NAMES",
    "DetectorConfig",
    "Forecast",
    "KpiConfig",
    "KpiSeriesWatch",
    "KpiWatch",
    "RobustSurprise",
    "RollingRobustZ",
    "ScaledHalfSpaceTrees",
    "SeasonalForecast",
    "SeriesWatcher",
    "TailSurprise",
    "TargetRule",
    "Verdict",
    "load_config",
    "make_detector",
    "score_csv",
]


def __getattr__(name: str) -> Any:
    # detectors.csvscore is also run as ``python -m``: import it only when asked for
    if name in ("score_csv", "CsvError"):
        from detectors import csvscore

        return getattr(csvscore, name)
    raise AttributeError(f"module 'detectors' has no attribute {name!r}")
