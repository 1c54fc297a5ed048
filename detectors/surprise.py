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

    Four steps, after what the best published streaming detectors do (a prediction error, the
    distribution of such errors, the likelihood of the current one, no repeats):

    1. **Errors.** Robust standard scores of the point: its distance from the median of the last
       ``window`` points, the error of a naive forecast (the median of the last ``lag`` points)
       against the last ``window`` such errors, both in inter-quartile spreads (floored at
       ``step_floor`` times the smallest step the series has taken: a count or a rounded value
       cannot make one step infinitely surprising), and the sum of the last ``run_length``
       distances (the earlier ones clipped at ``run_clip``) over ``sqrt(run_length)``, so that
       a few unusual points in a row count for more than any of them. With a ``forecaster``
       (the seasonal model of a live KPI), its standardised residual too, or alone
       (``robust_scores=False``).
    2. **Calibration.** Each score is judged by a :class:`~detectors.tail.TailSurprise` of its
       own: how often this series produced one as large (empirical tail, generalised Pareto
       beyond, at most ``max_gain`` above a Gaussian tail). The rarest, Bonferroni-corrected
       for the number tried, is the point's surprise ``-log10 p``: a z of 8 on a bursty crash
       count is ordinary, and on a smooth latency it is not.
    3. **Size.** What ``score_one`` reports is that surprise times
       ``min(1, (r / rel_scale) ** rel_power)``, where ``r`` is the smaller of the point's
       departures from the median and from the naive forecast, relative to the series' level (or
       its spread, near zero): a statistically rare wiggle of a few percent is not an incident
       (``rel_scale = 0``: no scaling).
    4. **Repeats.** ``score_one`` reports a point only when that is more than each of the
       ``refractory`` points before it (otherwise 0): an incident raises one alarm at its onset
       and again only if it gets worse, not one per point while it lasts.

    The score is on :func:`~detectors._math.score_of_log10`'s scale: 0.5 at ``p = 1e-5``,
    ordered all the way up (no tie at 1.0). It is 0 for the first ``grace_period`` points and
    for a point without a finite ``x["value"]``, which is not learned either.
    :meth:`forecast_one` gives the expected value, band and signed standard score of step 2
    (what :class:`~detectors.series.SeriesWatcher` decides on, with its own minimum changes).

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
    run_length
        Points in the run score (0 or 1: none).
    run_clip
        Earlier distances are clipped at this many spreads in the run score.
    rel_scale, rel_power
        Step 3: relative size below which the surprise is scaled down, and how steeply.
    step_floor
        Least spread, as a share of the smallest change seen.
    tail_window, tail_points, tail_min_points, learn_below, max_gain
        The :class:`~detectors.tail.TailSurprise` of each score.
    robust_scores
        Whether the robust scores are used (False: the forecaster's residual alone, for a KPI
        whose forecaster already models its noise).
    forecaster
        Optional forecaster with ``forecast_one(x) -> Forecast`` and ``learn_one(x)``
        (:class:`~detectors.forecast.SeasonalForecast`): its residual is a score too, and its
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
        run_length: int = 4,
        run_clip: float = 10.0,
        rel_scale: float = 0.5,
        rel_power: float = 2.0,
        step_floor: float = 0.5,
        tail_window: int = 2000,
        tail_points: int = 50,
        tail_min_points: int = 30,
        learn_below: float = 1e-4,
        max_gain: float = 3.0,
        robust_scores: bool = True,
        forecaster: Any = None,
    ):
        for name, value, least in (("window", window, 4), ("lag", lag, 1),
                                   ("grace_period", grace_period, 1), ("refractory", refractory, 0),
                                   ("run_length", run_length, 0)):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        for name, fvalue in (("run_clip", run_clip), ("rel_scale", rel_scale),
                             ("rel_power", rel_power), ("step_floor", step_floor)):
            if not fvalue >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {fvalue}")
        if not robust_scores and forecaster is None:
            raise ValueError("robust_scores=False needs a forecaster: there would be no score")
        self.window = window
        self.lag = lag
        self.grace_period = grace_period
        self.refractory = refractory
        self.run_length = run_length
        self.run_clip = run_clip
        self.rel_scale = rel_scale
        self.rel_power = rel_power
        self.step_floor = step_floor
        self.tail_window = tail_window
        self.tail_points = tail_points
        self.tail_min_points = tail_min_points
        self.learn_below = learn_below
        self.max_gain = max_gain
        self.robust_scores = robust_scores
        self.forecaster = forecaster
        self.values = SortedWindow(window)
        self.errors = SortedWindow(window)
        self.last: deque[float] = deque(maxlen=lag)
        self.distances: deque[float] = deque(maxlen=max(run_length - 1, 1))  # clipped, signed
        names: tuple[str, ...] = ()
        if robust_scores:
            names = ("level", "error") + (("run",) if run_length >= 2 else ())
        if forecaster is not None:
            names += ("forecast",)
        self.tails = {name: TailSurprise(tail_window, tail_points, tail_min_points, learn_below,
                                         max_gain) for name in names}
        self.recent: deque[float] = deque(maxlen=max(refractory, 1))
        self.step = math.inf   # smallest change seen: the resolution of a quantised series
        self.n = 0

    @classmethod
    def _unit_test_params(cls):
        yield {}
        yield {"window": 20, "refractory": 0, "run_length": 0, "rel_scale": 0.0}

    # -- the steps ------------------------------------------------------------------------------
    @staticmethod
    def _value(x: dict) -> float | None:
        v = x.get("value")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
        v = float(v)
        return v if math.isfinite(v) else None

    def _scores(self, v: float, fc: Forecast | None) -> dict[str, float]:
        """Signed standard scores of ``v`` (step 1)."""
        out: dict[str, float] = {}
        if self.robust_scores:
            q1, med, q3 = self.values.quartiles()
            step = self.step * self.step_floor if self.step < math.inf else 0.0
            out["level"] = (v - med) / max((q3 - q1) * _SPREAD, 1e-6 * abs(med), 1e-9, step)
            guess = _median(self.last)
            q1, emed, q3 = self.errors.quartiles()
            out["error"] = (v - guess - emed) / max((q3 - q1) * _SPREAD, 1e-6 * abs(guess),
                                                    1e-9, step)
            if self.run_length >= 2 and len(self.distances) >= self.run_length - 1:
                # earlier distances clipped (one outlier does not make its successors
                # unusual), the current one not (the score keeps growing with the point)
                total = out["level"] + sum(self.distances)
                out["run"] = total / math.sqrt(self.run_length)
        if fc is not None and fc.z:
            out["forecast"] = fc.z
        return out

    def _clip(self, z: float) -> float:
        return max(-self.run_clip, min(self.run_clip, z))

    def _surprise(self, scores: dict[str, float]) -> tuple[float, float]:
        """``-log10 p`` of the rarest score, corrected for the number tried, and its sign."""
        best, sign = 0.0, 0.0
        for name, z in scores.items():
            lg = self.tails[name].log10_surprise(abs(z))
            if lg > best:
                best, sign = lg, math.copysign(1.0, z)
        return (max(best - math.log10(len(scores)), 0.0), sign) if scores else (0.0, 0.0)

    def _judge(self, x: dict) -> tuple[float, float, dict[str, float], Forecast | None]:
        v = self._value(x)
        fc = self.forecaster.forecast_one(x) if self.forecaster is not None else None
        if v is None or self.n < self.grace_period:
            return 0.0, 0.0, {}, fc
        scores = self._scores(v, fc)
        lg, sign = self._surprise(scores)
        return lg, sign, scores, fc

    def _sized(self, v: float | None, lg: float) -> float:
        """The surprise scaled by the departure's size against the series' level (step 3)."""
        if v is None or lg <= 0.0 or self.rel_scale <= 0.0 or not self.robust_scores:
            return lg
        q1, med, q3 = self.values.quartiles()
        guess = _median(self.last)
        spread = q3 - q1
        rel = min(abs(v - med) / max(abs(med), spread, 1e-12),
                  abs(v - guess) / max(abs(guess), spread, 1e-12))
        return lg * min(1.0, (rel / self.rel_scale) ** self.rel_power)

    # -- River's interface ----------------------------------------------------------------------
    def score_one(self, x: dict) -> float:
        lg = self._sized(self._value(x), self._judge(x)[0])
        if self.refractory and self.recent and lg <= max(self.recent):
            return 0.0
        return score_of_log10(lg)

    def learn_one(self, x: dict) -> None:
        v = self._value(x)
        if v is None:
            return
        lg, _sign, scores, _fc = self._judge(x)
        self.recent.append(self._sized(v, lg))
        for name, z in scores.items():
            self.tails[name].learn(abs(z), lg)
        if self.robust_scores:   # the windows behind the robust scores and the size step
            if "level" in scores and self.run_length >= 2:
                self.distances.append(self._clip(scores["level"]))
            if self.last:
                self.errors.add(v - _median(self.last))
                d = abs(v - self.last[-1])
                if d > 1e-9 * max(abs(v), 1.0):
                    self.step = min(self.step, d)
            self.values.add(v)
            self.last.append(v)
        if self.forecaster is not None:
            self.forecaster.learn_one(x)
        self.n += 1

    def forecast_one(self, x: dict) -> Forecast:
        """Expected value and band (the forecaster's, else the trailing median and a quartile
        band), the signed Gaussian-equivalent score of the calibrated surprise (step 2), and the
        forecaster's own residual score."""
        lg, sign, _scores, fc = self._judge(x)
        z = sign * z_of_log10(lg) if lg > 0.0 else 0.0
        if fc is not None:
            return Forecast(fc.expected, fc.lower, fc.upper, z, fc.std, fc.z)
        if not len(self.values):
            return Forecast(math.nan, math.nan, math.nan, 0.0)
        q1, med, q3 = self.values.quartiles()
        half = 4.42 * (q3 - q1) * _SPREAD
        return Forecast(med, med - half, med + half, z, (q3 - q1) * _SPREAD)
