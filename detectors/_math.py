"""Small pure helpers shared by the detectors: tail probabilities and the [0, 1] surprise scale."""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["surprise", "z_tail", "z_for_score", "anscombe", "inverse_anscombe"]

_LOG_FLOOR = math.log(1e-10)
_NORMAL = NormalDist()


def surprise(p: float) -> float:
    """Map a tail probability ``p`` to a score in [0, 1]: 0.5 at ``p = 1e-5``, 1 at ``p <= 1e-10``.

    This is Numenta's log-likelihood scale: ``log(p) / log(1e-10)``, clipped.

    >>> surprise(1.0), surprise(1e-5), surprise(1e-10), surprise(0.0)
    (0.0, 0.5, 1.0, 1.0)
    """
    if p >= 1.0:
        return 0.0
    if p <= 1e-10:
        return 1.0
    return math.log(p) / _LOG_FLOOR


def z_tail(z: float) -> float:
    """Two-sided Gaussian tail probability of a standard score.

    >>> round(z_tail(1.96), 3), z_tail(0.0)
    (0.05, 1.0)
    """
    return math.erfc(abs(z) * 0.7071067811865476)


def z_for_score(score: float) -> float:
    """The two-sided standard score whose :func:`surprise` is ``score`` (inverse of both).

    >>> round(z_for_score(0.5), 2)
    4.42
    """
    p = math.exp(min(max(score, 1e-9), 1.0) * _LOG_FLOOR)
    return _NORMAL.inv_cdf(1.0 - p / 2.0)


def anscombe(v: float) -> float:
    """Variance-stabilising transform of a count: Poisson noise becomes roughly N(0, 1).

    >>> round(anscombe(0.0), 3), round(anscombe(6.0), 3)
    (1.225, 5.05)
    """
    return 2.0 * math.sqrt(max(v, 0.0) + 0.375)


def inverse_anscombe(y: float) -> float:
    """Back from the Anscombe scale to a count (never below 0).

    >>> inverse_anscombe(anscombe(6.0))
    6.0...
    """
    return max(0.0, (y / 2.0) ** 2 - 0.375) if y > 0 else 0.0
