"""How rare a statistic is against this series' own history of it: empirical tail + GPD beyond.

The calibration step of the detector core (:class:`~detectors.surprise.RobustSurprise`): a raw
statistic (a robust standard score, a forecaster's residual) means different things on different
series, a z of 8 being daily life on a bursty crash count and unheard of on a smooth latency. So
each series keeps the last ``window`` values of the statistic and asks, for a new value, how
often one at least as large came before. Beyond the largest ``tail_points`` values, where counts
run out, a generalised Pareto distribution fitted to their excesses (method of moments, as in
SPOT[^1]) extrapolates, so a value past everything seen still gets a finite, ordered rarity
instead of a tie. Before ``min_points`` values are known, a Gaussian tail is the prior.

Values judged rarer than ``learn_below`` are not learned: an incident would otherwise teach the
series that incidents are normal (River's ``AnomalyFilter`` does the same for its models).

References
----------
[^1]: Siffer, A., Fouque, P.-A., Termier, A., Largouët, C. (2017). Anomaly detection in streams
      with extreme value theory. KDD.
"""

from __future__ import annotations

import math

from detectors._math import log10_z_tail
from detectors._window import SortedWindow

__all__ = ["TailSurprise"]



class TailSurprise:
    """``-log10`` of the probability of a value at least this large, from its own history.

    Parameters
    ----------
    window
        Values of the statistic remembered.
    tail_points
        Largest values whose excesses fit the generalised Pareto tail.
    min_points
        Values needed before the history replaces the Gaussian prior.
    learn_below
        Values rarer than this probability are not learned.
    max_gain
        Most the history may add to a Gaussian tail's ``-log10 p`` (see :meth:`log10_surprise`).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> t = TailSurprise(window=500)
    >>> for _ in range(500):
    ...     z = abs(rng.gauss(0, 1))
    ...     t.learn(z, t.log10_surprise(z))
    >>> round(t.log10_surprise(0.0), 2), round(t.log10_surprise(2.0), 1)
    (0.0, 1.3)
    >>> 4.0 < t.log10_surprise(5.0) < t.log10_surprise(6.0)
    True
    """

    def __init__(self, window: int = 2000, tail_points: int = 50, min_points: int = 30,
                 learn_below: float = 1e-4, max_gain: float = 3.0):
        if window < min_points or min_points < 5:
            raise ValueError(f"need 5 <= min_points <= window, got {min_points} and {window}")
        if tail_points < 5:
            raise ValueError(f"tail_points must be >= 5, got {tail_points}")
        self.window = window
        self.tail_points = tail_points
        self.min_points = min_points
        self.learn_below = learn_below
        self.max_gain = max_gain
        self.history = SortedWindow(window)
        self._learn_below_log10 = -math.log10(learn_below) if learn_below > 0 else math.inf

    def log10_surprise(self, z: float) -> float:
        """``-log10 P(Z >= z)`` for this series; 0 for the smallest values.

        Never more than ``max_gain`` above the Gaussian tail of ``z``: the history may show that
        large scores are common here (a heavy tail lowers the surprise), but a few dozen top
        values cannot prove a tail so light that a point is millions of times rarer than a
        Gaussian would make it.
        """
        lg = self._tail(z)
        return lg if lg <= self.max_gain else min(lg, log10_z_tail(z) + self.max_gain)

    def _tail(self, z: float) -> float:
        s = self.history.sorted
        m = len(s)
        if m < self.min_points:
            return log10_z_tail(z)
        k = min(self.tail_points, max(5, m // 20))
        u = s[m - k - 1]
        if z <= u:
            return -math.log10((self.history.count_at_least(z) + 0.5) / (m + 1))
        base = -math.log10((k + 0.5) / (m + 1))
        excess = [e - u for e in s[m - k:]]
        mean = sum(excess) / k
        if mean <= 0.0:      # the top values are all equal (a quantised statistic): above them,
            # never seen in m values, at most 0.5 / (m + 1), and more so the further past
            unseen = -math.log10(0.5 / (m + 1))
            if u > 0.0:
                return unseen + math.log10(z / u)
            return max(unseen, log10_z_tail(z))   # all 0 so far: the prior
        var = sum((e - mean) ** 2 for e in excess) / (k - 1)
        r = mean * mean / var if var > 0.0 else 10.0
        shape = max(-0.3, min(0.5 * (1.0 - r), 0.9))
        scale = max(0.5 * mean * (1.0 + r), 1e-12)
        if abs(shape) < 1e-6:
            return base + (z - u) / scale / math.log(10.0)
        t = 1.0 + shape * (z - u) / scale
        if t <= 1e-12:       # past the end of a bounded tail: beyond anything the fit allows,
            return base + 12.0 / -shape + (z - u) / scale   # still in order
        return base + math.log10(t) / shape

    def learn(self, z: float, log10_surprise: float) -> None:
        """Remember ``z`` unless the point it belongs to was too rare (``-log10 p`` given)."""
        if z != z or math.isinf(z) or log10_surprise > self._learn_below_log10:
            return
        self.history.add(z)
