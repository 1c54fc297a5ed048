"""Anomaly likelihood: turns any raw anomaly score into a calibrated probability-like [0, 1]."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from river.base import AnomalyDetector

from detectors._math import surprise, z_tail
from detectors.robust import RollingRobustZ

__all__ = ["AnomalyLikelihood", "METHODS"]

METHODS = ("zscale", "gaussian")


class AnomalyLikelihood(AnomalyDetector):
    """Calibrates the raw scores of a wrapped detector against their own history, to [0, 1].

    Like Numenta's anomaly likelihood, it learns the distribution of the raw scores of *this*
    series and asks how unlikely the current one is, so that a series whose raw scores are
    naturally high or heavy-tailed is judged on the same scale as a quiet one. Two models:

    - ``"zscale"`` (for raw scores that are |standard scores|, as from
      :class:`~detectors.robust.RollingRobustZ`): the series' typical size of raw score,
      ``c = sqrt(mean(min(raw, cap)^2))`` (running, at least 1), rescales the raw score, and
      ``p`` is the two-sided Gaussian tail of ``raw / c``;
    - ``"gaussian"`` (Numenta's, for raw scores of any kind): a Gaussian fitted to ``log1p(raw)``;
      ``p`` is its upper tail at the mean of the last ``short_window`` values.

    The score is ``p`` on the log scale of :func:`~detectors._math.surprise`: 0.5 at
    ``p = 1e-5``, 1 at ``p <= 1e-10``; 0 until ``grace_period`` points are learned.

    Parameters
    ----------
    detector
        The wrapped detector (``learn_one``/``score_one``); it learns every point given
        (None: a :class:`~detectors.robust.RollingRobustZ`).
    method
        ``"zscale"`` or ``"gaussian"``.
    alpha
        Weight of a new raw score in the running statistics.
    grace_period
        Points learned before scores are non-zero.
    short_window
        ``"gaussian"``: raw scores averaged for the current point (1: the current one only).
    cap
        ``"zscale"``: raw scores are capped at this before they update ``c``, so anomalies
        cannot teach the series that anything goes.
    min_std
        ``"gaussian"``: floor of the standard deviation of ``log1p(raw)``.

    Examples
    --------
    >>> from detectors.robust import RollingRobustZ
    >>> det = AnomalyLikelihood(RollingRobustZ(window=20, grace_period=5), grace_period=10)
    >>> for i in range(60):
    ...     det.learn_one({"value": 10.0 + (i % 5) * 0.5})
    >>> det.score_one({"value": 11.0}) < 0.1, det.score_one({"value": 30.0})
    (True, 1.0)
    """

    def __init__(
        self,
        detector: Any = None,
        method: str = "zscale",
        alpha: float = 0.002,
        grace_period: int = 100,
        short_window: int = 1,
        cap: float = 10.0,
        min_std: float = 0.1,
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if short_window < 1:
            raise ValueError(f"short_window must be >= 1, got {short_window}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if detector is None:
            detector = RollingRobustZ()
        self.detector = detector
        self.method = method
        self.alpha = alpha
        self.grace_period = grace_period
        self.short_window = short_window
        self.cap = cap
        self.min_std = min_std
        self.recent: deque[float] = deque(maxlen=max(short_window - 1, 1))
        self.mean = 0.0
        self.var = 0.0
        self.n = 0  # points learned
        self.m = 0  # non-zero raw scores learned (the wrapped detector is warm)

    def score_one(self, x: dict) -> float:
        if self.n < self.grace_period:
            return 0.0
        raw = self.detector.score_one(x)
        if self.method == "zscale":
            return surprise(z_tail(raw / max(1.0, math.sqrt(self.mean))))
        s = math.log1p(raw)
        if self.short_window > 1:
            s = (s + sum(self.recent)) / (len(self.recent) + 1)
        z = (s - self.mean) / max(math.sqrt(self.var), self.min_std)
        return 0.0 if z <= 0.0 else surprise(0.5 * z_tail(z))

    def learn_one(self, x: dict) -> None:
        raw = self.detector.score_one(x)
        self.detector.learn_one(x)
        self.n += 1
        if raw <= 0.0 and self.m == 0:
            return  # the wrapped detector is still in its warm-up
        self.m += 1
        a = max(self.alpha, 1.0 / self.m)
        if self.method == "zscale":
            self.mean += a * (min(raw, self.cap) ** 2 - self.mean)
            return
        s = math.log1p(raw)
        d = s - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        if self.short_window > 1:
            self.recent.append(s)
