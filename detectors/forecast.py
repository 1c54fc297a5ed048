"""Seasonal forecaster (damped Holt-Winters, daily and weekly terms); its residual is scored."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from river.base import AnomalyDetector

from detectors._math import anscombe, inverse_anscombe, surprise, z_tail

__all__ = ["CALIBRATE_MIN_EVENTS", "Forecast", "SeasonalForecast", "KINDS", "MIN_SCALE",
           "clamped_share"]

KINDS = ("count", "ratio", "level")
MIN_SCALE = 0.01
"""Least calibrated share of the noise model's variance (``calibrate``): a ratio that has been
constant for a while cannot make the smallest change infinitely surprising."""
CALIBRATE_MIN_EVENTS = 5.0
"""Expected successes and failures a ratio point needs to teach ``scale`` (the usual rule for the
normal approximation of a binomial share)."""


def clamped_share(p: float, n: float) -> float:
    """A share kept at least half an event in ``n + 1`` (and 0.001) from 0 and 1, as Jeffreys'
    interval does: the share a ratio's noise is judged by (binomial variance, exact tail).

    >>> clamped_share(0.0, 9.0), clamped_share(0.5, 9.0)
    (0.05, 0.5)
    """
    floor = max(0.5 / (n + 1.0), 0.001)
    return min(max(p, floor), 1.0 - floor)


class Forecast(NamedTuple):
    """What :meth:`SeasonalForecast.forecast_one` tells about one point."""

    expected: float
    lower: float
    upper: float
    z: float  # signed standard score of the point (0 when unknown or in warm-up)
    std: float = math.nan  # residual standard deviation behind ``z``, on the model's scale
    residual_z: float | None = None  # the noise model's own score, when ``z`` is calibrated


_LAST_FORECAST: list[Any] = [None]
"""(forecaster, n, ts, hour slot, weekday, prediction on the model scale) of the last
:meth:`SeasonalForecast.forecast_one`: a watcher judges a point, then learns it, and the state has
not moved in between (``n`` counts every change), so ``learn_one`` takes the prediction instead of
computing it again. Kept here, not on the forecaster: it is no part of the saved state."""


class SeasonalForecast(AnomalyDetector):
    """Additive damped Holt-Winters forecaster with a time-of-day and a day-of-week term.

    The slot of a point comes from its timestamp ``ts`` (epoch seconds, UTC), not from its
    position, so irregular or missing windows do no harm. Counts (``kind="count"``) are judged on
    the Anscombe scale, where Poisson noise has unit variance: a count of 3 where 6 is expected is
    normal, 0 where 60 is expected is not; their terms add up on the log of that scale
    (multiplicative seasonality: a quieter weekend scales the whole daily profile). Ratios
    (``kind="ratio"``) may carry ``x["n"]``, the sample size behind them: the model learns the
    variance beyond binomial sampling noise, and each point's band adds its own
    ``p (1 - p) / n`` (narrow for 400 signups, wide for 2).
    Binomial noise is the most a mean of ``n`` values in [0, 1] can vary: a mean of continuous
    scores (match rate) varies far less. With ``calibrate``, a ratio forecaster also learns
    ``scale``, an exponentially weighted mean of the squared standardised residuals
    ``(r / std)^2`` (winsorised; suspicious points are not learned, as for every term), and its
    band uses ``std * sqrt(scale)``: about 1 when the noise model is right, 1 / 21 for a ratio
    whose real variance is 21 times smaller than binomial; never below :data:`MIN_SCALE`. Only
    points whose expected successes and failures ``n p`` and ``n (1 - p)`` are both at least
    :data:`CALIBRATE_MIN_EVENTS` teach it: with fewer, residuals are far from Gaussian (a rare
    failure among 5 payments is a 4-sigma outlier that is never learned, so the zeros alone
    would shrink the band without end).
    Counts keep their Poisson floor (3 where 6 is expected stays normal however steady the
    history) and levels learn their whole variance from residuals, so neither is calibrated.
    The score is the two-sided Gaussian tail probability of the residual on the
    :func:`~detectors._math.surprise` scale (0.5 at 4.4 standard deviations), 0 in warm-up.

    Parameters
    ----------
    kind
        ``"count"``, ``"ratio"`` or ``"level"``.
    slots
        Time-of-day slots per day (24: hourly), 0 for no daily term.
    weekly
        Whether to learn a day-of-week term.
    alpha, beta, phi
        Level and trend smoothing, trend damping.
    gamma_daily, gamma_weekly
        Smoothing of the seasonal terms (sped up while a slot has few points).
    var_alpha
        Weight of a new residual in the residual variance.
    winsor
        Residuals are clipped at ``winsor`` standard deviations before they update the variance.
    calibrate
        Learn the ``scale`` of a ratio's noise model (see above), smoothed with ``var_alpha``.
    grace_period
        Points learned before scores are non-zero.
    min_std
        Floor of the residual standard deviation on the model scale; negative: 1 for counts (the
        Poisson noise on the Anscombe scale), 0 otherwise.
    band_z
        Half width of the ``lower``/``upper`` band in standard deviations.

    Examples
    --------
    >>> det = SeasonalForecast(kind="count", grace_period=48)
    >>> det.score_one({"value": 50.0, "ts": 0.0})
    0.0
    >>> for h in range(24 * 7):
    ...     det.learn_one({"value": 40.0 + 20.0 * (h % 24 >= 12), "ts": h * 3600.0})
    >>> det.score_one({"value": 60.0, "ts": 12 * 3600.0}) < 0.1
    True
    >>> det.score_one({"value": 0.0, "ts": 12 * 3600.0}) > 0.9
    True
    """

    def __init__(
        self,
        kind: str = "level",
        slots: int = 24,
        weekly: bool = True,
        alpha: float = 0.05,
        beta: float = 0.0,
        phi: float = 0.98,
        gamma_daily: float = 0.1,
        gamma_weekly: float = 0.05,
        var_alpha: float = 0.02,
        winsor: float = 4.0,
        calibrate: bool = True,
        grace_period: int = 72,
        min_std: float = -1.0,
        band_z: float = 4.42,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, value in (("alpha", alpha), ("var_alpha", var_alpha)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        for name, value in (("beta", beta), ("gamma_daily", gamma_daily),
                            ("gamma_weekly", gamma_weekly), ("phi", phi)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if slots < 0:
            raise ValueError(f"slots must be >= 0, got {slots}")
        self.kind = kind
        self.slots = slots
        self.weekly = weekly
        self.alpha = alpha
        self.beta = beta
        self.phi = phi
        self.gamma_daily = gamma_daily
        self.gamma_weekly = gamma_weekly
        self.var_alpha = var_alpha
        self.winsor = winsor
        self.calibrate = calibrate
        self.grace_period = grace_period
        self.min_std = min_std
        self.band_z = band_z
        self.level = 0.0
        self.trend = 0.0
        self.daily = [0.0] * slots
        self.daily_n = [0] * slots
        self.dow = [0.0] * 7
        self.dow_n = [0] * 7
        self.var = 0.0
        self.scale = 1.0   # learned variance of the noise model / assumed one (``calibrate``)
        self.scale_n = 0   # points that taught it
        self.n = 0
        self.last_ts: float | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _slots_of(self, ts: float) -> tuple[int, int]:
        day = ts / 86400.0
        h = int((day - math.floor(day)) * self.slots) if self.slots else -1
        return h, int(math.floor(day)) % 7

    def _transform(self, v: float) -> float:
        return anscombe(v) if self.kind == "count" else v

    def _inverse(self, y: float) -> float:
        return inverse_anscombe(y) if self.kind == "count" else y

    def _to_model(self, y: float) -> float:
        return math.log(y) if self.kind == "count" else y

    def _from_model(self, m: float) -> float:
        return math.exp(min(m, 700.0)) if self.kind == "count" else m

    def _predict(self, h: int, d: int) -> float:
        return self._from_model(self._predict_model(h, d))

    def _predict_model(self, h: int, d: int) -> float:
        y = self.level + self.phi * self.trend
        if h >= 0 and self.daily_n[h]:
            y += self.daily[h] - sum(self.daily) / self.slots
        if self.weekly and self.dow_n[d]:
            y += self.dow[d] - sum(self.dow) / 7.0
        return y

    def _sampling_var(self, y_hat: float, n: float | None) -> float:
        if self.kind != "ratio" or not n or n <= 0:
            return 0.0
        # at least half an event in n + 1 either way (as in Jeffreys' interval): an expected
        # share near 0 or 1 still gives one event out of n its due chance, so a rare-event ratio
        # (payment failures) cannot talk itself into a zero band
        p = clamped_share(y_hat, n)
        return p * (1.0 - p) / n

    def _model_std(self, y_hat: float, n: float | None) -> float:
        """Standard deviation of a residual under the noise model, before calibration."""
        var = max(self.var, 0.0) + self._sampling_var(y_hat, n)
        floor = self.min_std if self.min_std >= 0 else (1.0 if self.kind == "count" else 0.0)
        return max(math.sqrt(var), floor, 1e-9 * (1.0 + abs(y_hat)))

    def _calibrated(self) -> bool:
        return self.calibrate and self.kind == "ratio"

    def _std(self, y_hat: float, n: float | None) -> float:
        std = self._model_std(y_hat, n)
        if self._calibrated():
            std = max(std * math.sqrt(max(self.scale, MIN_SCALE)), 1e-9 * (1.0 + abs(y_hat)))
        return std

    @staticmethod
    def _valid(x: dict) -> bool:
        v = x.get("value")
        return v is not None and v == v and not math.isinf(v)

    # -- public -------------------------------------------------------------------------------
    def forecast_one(self, x: dict) -> Forecast:
        """Expected value and band for the time of ``x``, and the point's signed standard score."""
        if self.n == 0:
            return Forecast(math.nan, math.nan, math.nan, 0.0)
        ts = x.get("ts", 0.0) or 0.0
        h, d = self._slots_of(ts)
        m = self._predict_model(h, d)
        _LAST_FORECAST[0] = (self, self.n, ts, h, d, m)
        y_hat = self._from_model(m)
        std = self._std(y_hat, x.get("n"))
        z = 0.0
        if self.n >= self.grace_period and self._valid(x):
            z = (self._transform(x["value"]) - y_hat) / std
        return Forecast(self._inverse(y_hat), self._inverse(y_hat - self.band_z * std),
                        self._inverse(y_hat + self.band_z * std), z, std)

    def forecast_partial(self, x: dict, share: float) -> Forecast:
        """Like :meth:`forecast_one` for the part ``share`` (0..1] of a window seen so far.

        A count so far is judged against ``share`` of the window's forecast, on the Anscombe
        scale with the window's own residual spread: Poisson noise is 1 there at any share,
        and events that come in bursts (a session's several scans) keep their extra spread
        however short the part seen, so it is not shrunk. A ratio so far is a ratio over fewer
        events: its own ``n`` already widens the band. A level has no running value (z = 0).
        """
        if self.kind not in ("count", "ratio") or self.n == 0 or not 0.0 < share <= 1.0:
            return Forecast(math.nan, math.nan, math.nan, 0.0)
        ts = x.get("ts", 0.0) or 0.0
        cached = self.__dict__.get("_window_forecast")
        if cached is None or cached[:2] != (self.n, ts):   # once per window, not per look
            y_full = self._predict(*self._slots_of(ts))
            cached = self._window_forecast = (self.n, ts, y_full, self._std(y_full, None))
        y_full, full = cached[2], cached[3]
        if self.kind == "ratio":
            std = self._std(y_full, x.get("n"))
            z = (x["value"] - y_full) / std if self.n >= self.grace_period and self._valid(x) \
                else 0.0
            return Forecast(y_full, y_full - self.band_z * std, y_full + self.band_z * std, z,
                            std)
        mean = share * inverse_anscombe(y_full)
        y_hat = anscombe(mean)
        std = max(full, 1.0)
        z = 0.0
        if self.n >= self.grace_period and self._valid(x):
            z = (self._transform(x["value"]) - y_hat) / std
        return Forecast(mean, self._inverse(y_hat - self.band_z * std),
                        self._inverse(y_hat + self.band_z * std), z, std)

    def partial_z(self, value: float, ts: float, n: float | None, share: float) -> float:
        """Only the ``z`` of :meth:`forecast_partial` (same arithmetic, no band): most early
        looks are nowhere near suspicious, and a worker takes dozens of them per tick."""
        if (self.kind not in ("count", "ratio") or self.n < max(self.grace_period, 1)
                or not 0.0 < share <= 1.0):
            return 0.0
        cached = self.__dict__.get("_window_forecast")
        if cached is None or cached[:2] != (self.n, ts):
            y_full = self._predict(*self._slots_of(ts))
            cached = self._window_forecast = (self.n, ts, y_full, self._std(y_full, None))
        y_full, full = cached[2], cached[3]
        if self.kind == "ratio":
            return (value - y_full) / self._std(y_full, n)
        return (anscombe(value) - anscombe(share * inverse_anscombe(y_full))) / max(full, 1.0)

    def score_one(self, x: dict) -> float:
        z = self.forecast_one(x).z
        return surprise(z_tail(z)) if z else 0.0

    def learn_one(self, x: dict) -> None:
        if not self._valid(x):
            return
        ts = x.get("ts", 0.0) or 0.0
        y = self._transform(x["value"])
        last = _LAST_FORECAST[0]
        if last is not None and last[0] is self and last[1] == self.n and last[2] == ts:
            h, d, m_hat = last[3], last[4], last[5]   # judged just before: the same prediction
        else:
            h, d = self._slots_of(ts)
            m_hat = None
        self.n += 1
        if self.n == 1:
            self.level = self._to_model(y)
            self.last_ts = ts
            return
        if m_hat is None:
            m_hat = self._predict_model(h, d)
        r = y - self._from_model(m_hat)
        std = self._std(y - r, x.get("n"))
        # residual variance, winsorised so one outlier cannot blow the band open
        rc = max(-self.winsor * std, min(self.winsor * std, r)) if self.n > 10 else r
        va = max(self.var_alpha, 1.0 / (self.n - 1))
        n = x.get("n")
        if self._calibrated() and n and min(y - r, 1.0 - (y - r)) * n >= CALIBRATE_MIN_EVENTS:
            # before the variance moves: against the band this point was judged by
            u = rc / self._model_std(y - r, n)
            self.scale_n += 1
            sa = max(self.var_alpha, 1.0 / self.scale_n)
            self.scale = (1.0 - sa) * self.scale + sa * u * u
        # for a ratio with its n, only the variance beyond binomial sampling noise is learned
        self.var = (1.0 - va) * self.var + va * (rc * rc - self._sampling_var(y - r, x.get("n")))
        r = self._to_model(y) - m_hat  # level, trend and seasonal terms live on the model scale
        a = max(self.alpha, 1.0 / self.n)
        self.level += self.phi * self.trend + a * r
        self.trend = self.phi * self.trend + self.beta * a * r
        if h >= 0:
            self.daily_n[h] += 1
            self.daily[h] += max(self.gamma_daily, 1.0 / (1 + self.daily_n[h])) * (1 - a) * r
        if self.weekly:
            self.dow_n[d] += 1
            self.dow[d] += self.gamma_weekly * (1 - a) * r
        self.last_ts = ts
