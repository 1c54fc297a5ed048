"""Small pure helpers shared by the detectors: tail probabilities and the [0, 1] surprise scale."""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = [
    "surprise", "z_tail", "z_for_score", "anscombe", "inverse_anscombe", "log10_z_tail",
    "score_of_log10", "z_of_log10",
]

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


_LN10 = math.log(10.0)
HALF_SCORE_LOG10 = 5.0
"""``-log10 p`` that :func:`score_of_log10` maps to 0.5 (1 in 100,000, as :func:`surprise`)."""


def log10_z_tail(z: float) -> float:
    """``-log10`` of the two-sided Gaussian tail of ``z``, exact far past where ``erfc`` is 0.

    >>> round(log10_z_tail(1.96), 3), round(log10_z_tail(40.0), 1), log10_z_tail(0.0)
    (1.301, 349.1, 0.0)
    """
    z = abs(z)
    if z < 30.0:
        return -math.log10(math.erfc(z * 0.7071067811865476))   # > 1e-197 below 30
    # Mills ratio: erfc(z / sqrt 2) ~ sqrt(2 / pi) exp(-z^2 / 2) / z
    return (0.5 * z * z + math.log(z) + 0.5 * math.log(math.pi / 2.0)) / _LN10


def score_of_log10(lg: float) -> float:
    """A surprise ``-log10 p`` as a score in [0, 1): 0.5 at ``p = 1e-5``, never saturating.

    :func:`surprise` clips at ``p = 1e-10``, so every very unusual point ties at 1.0 and no
    threshold can rank them; this keeps the order of all of them.

    >>> score_of_log10(0.0), score_of_log10(5.0), round(score_of_log10(10.0), 3)
    (0.0, 0.5, 0.667)
    """
    lg = max(lg, 0.0)
    return lg / (lg + HALF_SCORE_LOG10)


def z_of_log10(lg: float) -> float:
    """The two-sided standard score whose Gaussian tail is ``10 ** -lg`` (inverse of
    :func:`log10_z_tail`), for any ``lg`` >= 0.

    >>> round(z_of_log10(log10_z_tail(3.0)), 6), round(z_of_log10(log10_z_tail(45.0)), 3)
    (3.0, 45.0)
    """
    if lg <= 0.0:
        return 0.0
    if lg < 15.0:
        return _NORMAL.inv_cdf(1.0 - 10.0 ** -lg / 2.0)
    z = math.sqrt(2.0 * lg * _LN10)   # Newton on the asymptotic form from a close start
    for _ in range(30):
        f = log10_z_tail(z) - lg
        if abs(f) < 1e-10:
            break
        z -= f / ((z + 1.0 / z) / _LN10)
    return z


def binomial_tail(k: int, n: int, p: float, upper: bool = True) -> float:
    """``P(X >= k)`` (``upper``) or ``P(X <= k)`` for ``X ~ Binomial(n, p)``, exactly.

    The normal approximation of a share is far too sure of itself on a few events: 2 failed
    payments of 3 where 3 % fail is a z of 6 but happens once in 300 tries.

    >>> round(binomial_tail(2, 3, 0.033), 4), round(binomial_tail(0, 100, 0.05, upper=False), 5)
    (0.0032, 0.00592)
    >>> binomial_tail(0, 10, 0.5), binomial_tail(11, 10, 0.5)
    (1.0, 0.0)
    """
    if n <= 0 or not 0.0 < p < 1.0:
        return 1.0
    if upper and k <= 0 or not upper and k >= n:
        return 1.0
    if upper and k > n or not upper and k < 0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)

    def term(i: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                        + i * lp + (n - i) * lq)

    total, i, step = 0.0, k, 1 if upper else -1
    while 0 <= i <= n:
        t = term(i)
        total += t
        if t < 1e-17 * total and (i - n * p) * step > 0:   # past the mode: the rest is nothing
            break
        i += step
    return min(total, 1.0)


def binomial_band(n: int, p: float, tail: float) -> tuple[int, int]:
    """``(lo, hi)``: the counts ``k`` of ``Binomial(n, p)`` that are not rarer than ``tail``
    two-sided (``2 * P(X <= k) >= tail`` below the mean, ``2 * P(X >= k) >= tail`` above it).

    The normal band of a share of a few events, from its exact distribution: of 5 payments
    where 2 % fail, up to 3 failures are within a 1-in-100,000 tail (a Gaussian band of the
    same share goes from -51 % to 58 %).

    >>> binomial_band(5, 0.02, 1e-5), binomial_band(1000, 0.5, 1e-5)
    ((0, 3), (430, 570))
    """
    if n <= 0 or not 0.0 < p < 1.0:
        return 0, max(n, 0)
    half = tail / 2.0
    mode = min(max(int((n + 1) * p), 0), n)
    at_mode = math.exp(math.lgamma(n + 1) - math.lgamma(mode + 1) - math.lgamma(n - mode + 1)
                       + mode * math.log(p) + (n - mode) * math.log1p(-p))
    odds = p / (1.0 - p)

    def side(step: int) -> int:
        """Walk from the mode by ``step`` with the pmf's ratio recurrence until its terms are
        negligible against ``half``, then add them up from the far end."""
        terms, t, i = [], at_mode, mode
        while 0 <= i + step <= n:
            t *= (n - i) / (i + 1) * odds if step > 0 else i / (n - i + 1) / odds
            i += step
            terms.append(t)
            if t < half * 1e-9:
                break
        acc = 0.0
        for j in range(len(terms) - 1, -1, -1):
            acc += terms[j]
            if acc >= half:
                return mode + step * (j + 1)
        return mode

    return side(-1), side(1)
