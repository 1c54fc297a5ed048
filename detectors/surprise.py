"""The detector core: robust prediction errors, calibrated on the series' own history of them."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from river.base import AnomalyDetector

from detectors._math import score_of_log10, z_of_log10
from detectors._window import SortedWindow
from detectors.forecast import Forecast
from detectors.tail import TailSurprise

__all__ = ["RobustSurprise"]

_SPREAD = 0.7413  # inter-quartile range -> standard deviation of a Gaussian


def _median(values: deque[float]) -> float:
    s = sorted(values)
    k = len(s)
    return s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])


class RobustSurprise(AnomalyDetector):
    """How surprising a point is, against this series' own history of prediction errors.

    Three steps, as the best published streaming detectors do them (prediction error, then the
    distribution of errors, then the likelihood of the current one):

    1. **Errors.** Robust standard scores of the point: its distance from the median of the last
       ``window`` points, and the error of a naive forecast (the median of the last ``lag``
       points) against the last ``window`` such errors, each in inter-quartile spreads; with a
       ``forecaster`` (the seasonal model of a live KPI), its standardised residual too.
    2. **Calibration.** Each score is judged by a :class:`~detectors.tail.TailSurprise` of its
       own: how often this series produced one as large (empirical tail, generalised Pareto
       beyond). The rarest of them, Bonferroni-corrected for the number tried, is the point's
       surprise ``-log10 p``. A z of 8 on a bursty crash count is then ordinary, and on a smooth
       latency it is not: one threshold means the same on every series.
    3. **Repeats.** ``score_one`` reports a point only when it is more surprising than each of the
       ``refractory`` points before it (otherwise 0): an incident raises one alarm at its onset
       and again only if it gets worse, not one per point while it lasts.

    The score is ``-log10 p`` on :func:`~detectors._math.score_of_log10`'s scale: 0.5 at
    ``p = 1e-5``, ordered all the way up (no tie at 1.0). It is 0 for the first ``grace_period``
    points and for a point without a finite ``x["value"]``, which is not learned either.
    :meth:`forecast_one` gives the point's expected value, band and signed standard score
    (before the repeat suppression), for :class:`~detectors.series.SeriesWatcher`.

    Parameters
    ----------
    window
        Points in the trailing windows of values and of naive-forecast errors.
    lag
        Points in the median that forecasts the next one.
    grace_period
        Points learned before any score.
    refractory
        Earlier points a reported score must exceed (0: report every point).
    tail_window, tail_points, tail_min_points, learn_below
        The :class:`~detectors.tail.TailSurprise` of each score.
    step_floor
        Least spread, as a share of the smallest change seen: a series that moves in steps
        (counts, rounded values) cannot make a single step infinitely surprising (0.29 is the
        standard deviation of a rounding error, ``1 / sqrt(12)``).
    robust_scores
        Whether the two robust scores are used (False: the forecaster's residual alone, for a
        KPI whose forecaster already models it).
    forecaster
        Optional forecaster with ``forecast_one(x) -> Forecast`` and ``learn_one(x)``
        (:class:`~detectors.forecast.SeasonalForecast`): its residual is a third score, and its
        expected value and band are the ones :meth:`forecast_one` reports.

    Examples
    --------
    >>> det = RobustSurprise()
    >>> det.score_one({"value": 5.0})
    0.0
    >>> for i in range(200):
    ...     det.learn_one({"value": 10.0 + (i % 7) * 0.3})
    >>> det.score_one({"value": 11.0}) < 0.2, det.score_one({"value": 40.0}) > 0.5
    (True, True)
    >>> det.score_one({"value": 400.0}) > det.score_one({"value": 40.0})
    True
    """

    def __init__(
        self,
        window: int = 40,
        lag: int = 3,
        grace_period: int = 10,
        refractory: int = 5,
        tail_window: int = 2000,
        tail_points: int = 50,
        tail_min_points: int = 30,
        learn_below: float = 1e-4,
        forecaster: Any = None,
        step_floor: float = 0.5,
        robust_scores: bool = True,
    ):
        if window < 4:
            raise ValueError(f"window must be >= 4, got {window}")
        if lag < 1:
            raise ValueError(f"lag must be >= 1, got {lag}")
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {grace_period}")
        if refractory < 0:
            raise ValueError(f"refractory must be >= 0, got {refractory}")
        self.window = window
        self.lag = lag
        self.grace_period = grace_period
        self.refractory = refractory
        self.tail_window = tail_window
        self.tail_points = tail_points
        self.tail_min_points = tail_min_points
        self.learn_below = learn_below
        self.forecaster = forecaster
        self.step_floor = step_floor
        self.robust_scores = robust_scores
        self.values = SortedWindow(window)
        self.errors = SortedWindow(window)
        self.last: deque[float] = deque(maxlen=lag)
        if not robust_scores and forecaster is None:
            raise ValueError("robust_scores=False needs a forecaster: there would be no score")
        names = (("level", "error") if robust_scores else ()) + (
            ("forecast",) if forecaster is not None else ())
        self.tails = {name: TailSurprise(tail_window, tail_points, tail_min_points, learn_below)
                      for name in names}
        self.recent: deque[float] = deque(maxlen=max(refractory, 1))
        self.step = math.inf   # smallest change seen: the resolution of a quantised series
        self.n = 0

    @classmethod
    def _unit_test_params(cls):
        yield {}
        yield {"window": 20, "refractory": 0}

    # -- the three steps ------------------------------------------------------------------------
    @staticmethod
    def _value(x: dict) -> float | None:
        v = x.get("value")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
        v = float(v)
        return v if math.isfinite(v) else None

    def _scores(self, v: float, fc: Forecast | None) -> dict[str, float]:
        """Signed robust standard scores of ``v`` (step 1)."""
        if not self.robust_scores:
            return {"forecast": fc.z} if fc is not None and fc.z else {}
        q1, med, q3 = self.values.quartiles()
        step = self.step * self.step_floor if self.step < math.inf else 0.0
        floor = max(1e-6 * abs(med), 1e-9, step)
        out = {"level": (v - med) / max((q3 - q1) * _SPREAD, floor)}
        guess = _median(self.last)
        q1, emed, q3 = self.errors.quartiles()
        floor = max(1e-6 * abs(guess), 1e-9, step)
        out["error"] = (v - guess - emed) / max((q3 - q1) * _SPREAD, floor)
        if fc is not None and fc.z:
            out["forecast"] = fc.z
        return out

    def _surprise(self, scores: dict[str, float]) -> tuple[float, float]:
        """``-log10 p`` of the rarest score, corrected for the number tried, and its sign."""
        if not scores:
            return 0.0, 0.0
        best, sign = 0.0, 0.0
        for name, z in scores.items():
            lg = self.tails[name].log10_surprise(abs(z))
            if lg > best:
                best, sign = lg, math.copysign(1.0, z)
        return max(best - math.log10(len(scores)), 0.0), sign

    def _judge(self, x: dict) -> tuple[float, float, dict[str, float], Forecast | None]:
        v = self._value(x)
        fc = self.forecaster.forecast_one(x) if self.forecaster is not None else None
        if v is None or self.n < self.grace_period:
            return 0.0, 0.0, {}, fc
        scores = self._scores(v, fc)
        lg, sign = self._surprise(scores)
        return lg, sign, scores, fc

    # -- River's interface ----------------------------------------------------------------------
    def score_one(self, x: dict) -> float:
        lg = self._judge(x)[0]
        if self.refractory and self.recent and lg <= max(self.recent):
            return 0.0
        return score_of_log10(lg)

    def learn_one(self, x: dict) -> None:
        v = self._value(x)
        if v is None:
            return
        lg, _sign, scores, _fc = self._judge(x)
        self.recent.append(lg)
        for name, z in scores.items():
            self.tails[name].learn(abs(z), lg)
        if self.last:
            e = v - _median(self.last)
            self.errors.add(e)
            d = abs(v - self.last[-1])
            if d > 1e-9 * max(abs(v), 1.0):
                self.step = min(self.step, d)
        self.values.add(v)
        self.last.append(v)
        if self.forecaster is not None:
            self.forecaster.learn_one(x)
        self.n += 1

    def forecast_one(self, x: dict) -> Forecast:
        """Expected value and band (the forecaster's, else the trailing median and quartile band),
        and the point's signed Gaussian-equivalent standard score of its calibrated surprise."""
        lg, sign, _scores, fc = self._judge(x)
        z = sign * z_of_log10(lg) if lg > 0.0 else 0.0
        if fc is not None:
            return Forecast(fc.expected, fc.lower, fc.upper, z, fc.std)
        if not len(self.values):
            return Forecast(math.nan, math.nan, math.nan, 0.0)
        q1, med, q3 = self.values.quartiles()
        half = 4.42 * (q3 - q1) * _SPREAD
        return Forecast(med, med - half, med + half, z, (q3 - q1) * _SPREAD)

