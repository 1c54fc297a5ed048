"""Rolling robust standard score: distance from a trailing median in robust spreads."""

from __future__ import annotations

import math
from collections import deque

from river.base import AnomalyDetector

from detectors._window import SortedWindow

__all__ = ["RollingRobustZ"]


class RollingRobustZ(AnomalyDetector):
    """Robust standard score of a value against the last ``window`` points; any cadence.

    Two robust z-scores, the larger kept: the value against the trailing window
    (``|value - median| / spread``), and the error of a naive forecast (the median of the last
    ``lag`` values) against the trailing window of such errors. A spike, a dip or the start of a
    level shift scores high at once on both; on a steep daily slope the forecast error still
    sees a sudden drop that the level score takes for the slope. A shift stops scoring once it
    fills half the window (the detector has adapted, without learning from single outliers:
    medians and quartiles ignore them). Spreads are inter-quartile ranges (as standard
    deviations), floored by slow mean absolute deviations and by ``rel_floor * |median|``: flat
    stretches give no division by zero, and a change after one scores very high. Scores are
    >= 0 and unbounded (0 in warm-up); wrap the detector in
    :class:`~detectors.likelihood.AnomalyLikelihood` for a calibrated [0, 1].

    Parameters
    ----------
    window
        Points in the trailing windows (of values and of forecast errors).
    lag
        Points in the median that forecasts the next value.
    grace_period
        Points learned before scores are non-zero.
    mad_alpha
        Weight of a new point in the slow mean absolute deviations that floor the spreads.
    rel_floor
        Smallest spread relative to the median's magnitude.

    Examples
    --------
    >>> det = RollingRobustZ(window=20, grace_period=5)
    >>> det.score_one({"value": 1.0})
    0.0
    >>> for v in [10.0, 11.0, 9.0, 10.0, 10.5, 9.5]:
    ...     det.learn_one({"value": v})
    >>> det.score_one({"value": 10.0}) < 1.0, det.score_one({"value": 20.0}) > 5
    (True, True)
    """

    def __init__(
        self,
        window: int = 40,
        lag: int = 3,
        grace_period: int = 20,
        mad_alpha: float = 0.01,
        rel_floor: float = 1e-6,
    ):
        if window < 4:
            raise ValueError(f"window must be >= 4, got {window}")
        if lag < 1:
            raise ValueError(f"lag must be >= 1, got {lag}")
        if not 0.0 < mad_alpha <= 1.0:
            raise ValueError(f"mad_alpha must be in (0, 1], got {mad_alpha}")
        self.window = window
        self.lag = lag
        self.grace_period = grace_period
        self.mad_alpha = mad_alpha
        self.rel_floor = rel_floor
        self.recent = SortedWindow(window)
        self.errors = SortedWindow(window)
        self.last: deque[float] = deque(maxlen=lag)
        self.mad = 0.0
        self.err_mad = 0.0
        self.n = 0

    def _forecast(self) -> float:
        last = sorted(self.last)
        k = len(last)
        return last[k // 2] if k % 2 else 0.5 * (last[k // 2 - 1] + last[k // 2])

    def score_one(self, x: dict) -> float:
        v = x.get("value")
        if self.n < self.grace_period or v is None or v != v or math.isinf(v):
            return 0.0
        q1, med, q3 = self.recent.quartiles()
        floor = max(self.rel_floor * abs(med), 1e-12)
        z = abs(v - med) / max((q3 - q1) * 0.7413, self.mad * 1.2533, floor)
        q1, emed, q3 = self.errors.quartiles()
        ze = abs(v - self._forecast() - emed) / max((q3 - q1) * 0.7413, self.err_mad * 1.2533,
                                                   floor)
        return min(max(z, ze), 1e12)

    def learn_one(self, x: dict) -> None:
        v = x.get("value")
        if v is None or v != v or math.isinf(v):
            return
        if self.n:
            self.mad += self.mad_alpha * (abs(v - self.recent.quartiles()[1]) - self.mad)
            e = v - self._forecast()
            if len(self.errors):
                self.err_mad += self.mad_alpha * (abs(e - self.errors.quartiles()[1])
                                                  - self.err_mad)
            self.errors.add(e)
        self.recent.add(v)
        self.last.append(v)
        self.n += 1
