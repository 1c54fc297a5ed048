"""Detectors by name, for scoring one series of unknown cadence (``pulse detect``)."""

from __future__ import annotations

from typing import Any

from detectors.forecast import SeasonalForecast
from detectors.hst import ScaledHalfSpaceTrees
from detectors.likelihood import AnomalyLikelihood
from detectors.robust import RollingRobustZ
from detectors.surprise import RobustSurprise

__all__ = ["DEFAULT_DETECTOR", "DETECTOR_NAMES", "make_detector"]

DEFAULT_DETECTOR = "surprise"
DETECTOR_NAMES = ("surprise", "robust", "forecast", "hst")


def make_detector(name: str = DEFAULT_DETECTOR, params: dict[str, dict] | None = None) -> Any:
    """A fresh detector called ``name`` whose scores are in [0, 1].

    ``params`` maps a table name (``surprise``, ``robust``, ``likelihood``, ``forecast``,
    ``hst``: the ``[csv.*]`` tables of the configuration file) to keyword arguments.

    >>> make_detector().window, make_detector("robust").detector.window
    (40, 40)
    >>> make_detector("nope")
    Traceback (most recent call last):
    ValueError: unknown detector 'nope': choose one of surprise, robust, forecast, hst
    """
    if params is None:
        from detectors.config import load_config

        params = load_config().csv
    if name == "surprise":
        return RobustSurprise(**params.get("surprise", {}))
    if name == "robust":
        return AnomalyLikelihood(RollingRobustZ(**params.get("robust", {})),
                                 **params.get("likelihood", {}))
    if name == "forecast":
        return SeasonalForecast(**params.get("forecast", {}))
    if name == "hst":
        return ScaledHalfSpaceTrees(**params.get("hst", {}))
    raise ValueError(f"unknown detector {name!r}: choose one of {', '.join(DETECTOR_NAMES)}")
