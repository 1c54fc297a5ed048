"""One watcher per KPI series: scores each window, decides whether it is an alert, then learns."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from detectors._math import (
    anscombe,
    binomial_band,
    binomial_tail,
    inverse_anscombe,
    surprise,
    z_for_score,
    z_tail,
)
from detectors.forecast import MIN_SCALE, Forecast, SeasonalForecast, clamped_share
from detectors.rules import TargetRule
from detectors.surprise import RobustSurprise

__all__ = ["SeriesWatcher", "Verdict", "DIRECTIONS"]

DIRECTIONS = ("up", "down", "both")
_RANK = {None: 0, "warning": 1, "critical": 2}
RunPoint = tuple[float, float, float, float | None, float]
"""(z, value, expected, n, std) of a point in the sustained-shift check; z and value clipped."""


def _count_run_z(points: list[RunPoint]) -> float:
    """Standard score of a run of counts: its total against the total expected.

    A count forecast as ``e`` has mean about ``e + 1/4`` (the expected Anscombe value ``y`` is
    ``2 sqrt(mean + 1/8)``); its Anscombe residual variance ``std^2`` is that of the count over
    its mean, so the total's is the mean-weighted average of the windows' ``std^2``.

    Three hours of 0 where 3.5 an hour is forecast (Poisson noise, ``std`` 1): each scores
    ``z = anscombe(0) - anscombe(3.5) = -2.71``, ``sum(z) / sqrt(3) = -4.70``; the total says more.

    >>> round(_count_run_z([(-2.71, 0.0, 3.5, None, 1.0)] * 3), 2)
    -5.52
    """
    means = [max(p[2], 0.0) + 0.25 for p in points]
    mean = sum(means)
    var = sum(p[4] * p[4] * m for p, m in zip(points, means, strict=True)) / mean
    return (anscombe(sum(p[1] for p in points)) - 2.0 * math.sqrt(mean + 0.125)) / math.sqrt(var)


class Run(NamedTuple):
    """A sustained run's numbers: a count's total or a share's / level's mean over ``windows``
    windows, what was expected of it, its ``n`` (summed), and its points' mean residual std."""

    value: float
    expected: float
    n: float | None
    windows: int
    std: float


_BINOMIAL_BAND_MAX_N = 500
"""Beyond this many events a share's band is its Gaussian one (about as wide by then)."""


@dataclass(frozen=True)
class Verdict:
    """What a :class:`SeriesWatcher` concludes about one point of its series."""

    score: float                  # [0, 1], how sure the detectors are that the point is abnormal
    expected: float | None        # forecast for this point (None in the first window)
    lower: float | None           # normal band
    upper: float | None
    is_anomaly: bool
    severity: str | None          # "warning" | "critical" | None
    direction: str | None         # "up" | "down" | None
    detector: str | None          # what fired: "forecast", "sustained" or "rule:<kpi>"
    # a sustained run: the numbers are the run's (a count's total, a share's or level's mean over
    # its ``windows`` windows), its band that of such a run; None and 1 for a point's own verdict
    value: float | None = None
    n: float | None = None
    windows: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SeriesWatcher:
    """The state kept for one series (kpi, segment, channel): a seasonal forecaster and a rule.

    :meth:`update` scores a point, then learns it, except when the point is suspicious
    (``score >= warning_score``): a forecaster that learns incidents drifts into them. After
    ``relearn_after`` suspicious points in a row the series is taken to have a new normal and is
    learned again. Minimum evidence before an alert: the departure must be in the watched
    ``direction``, at least ``min_abs_change`` and ``min_rel_change * |expected|``, the point's
    sample size ``n`` (when given) at least ``min_n``, and a warning must last
    ``warning_persistence`` points; a critical score alerts at once. A target rule (if any) is
    judged on every point and the worse severity wins.

    With ``sustained_windows = K >= 2`` a shift too small to stand out in one window is caught
    once it has lasted: for every run of the last ``k = 2..K`` points the standard scores are
    summed, ``Z_k = sum(z) / sqrt(k)`` (a mean shift of ``d`` standard deviations gives about
    ``d * sqrt(k)``), and the largest ``|Z_k|`` is scored like a single point after a Bonferroni
    correction for the ``K - 1`` runs tried (``p = (K - 1) * tail(Z_k)``). Counts judge the run's
    total instead, on the Anscombe scale against the total expected, with the windows' residual
    variances weighted by their expected counts (:func:`_count_run_z`): three hours of 0 where 3
    an hour is expected are far stronger evidence together than three weak hours. A point
    suspicious on its own starts a new run, in which it counts as just suspicious (its score
    clipped at ``warning_score``), so one outlier cannot make a run, nor an incident caught point
    by point linger in one. It fires as detector
    ``"sustained"`` when that score reaches ``warning_score``, the current point departs in
    the same direction by at least ``sustained_min_z`` standard deviations and the run's summed
    values pass the same minimum changes against its summed expectations. Such points are not
    learned, as suspicious ones; nor is a point whose run scores ``hold_score`` or more while
    still short of an alert, so a slow incident is not learned before it has been caught (the
    forecaster would follow it down and the evidence would never add up).

    Parameters
    ----------
    kpi
        KPI id, used to name the rule detector (``"rule:<kpi>"``).
    kind
        ``"count"``, ``"ratio"`` or ``"level"`` (see :class:`~detectors.forecast.SeasonalForecast`).
    forecast
        Keyword arguments of the forecaster (None: its defaults).
    rule
        Keyword arguments of a :class:`~detectors.rules.TargetRule` (None: no rule).
    sustained_windows
        Longest run of points summed by the sustained-shift check (0 or 1: no check).
    sustained_min_z
        Smallest standard score of the current point, in the run's direction, for that check.
    hold_score
        Run score from which a point is not learned (None: ``warning_score``); at most
        ``warning_score``.
    core
        Keyword arguments of the :class:`~detectors.surprise.RobustSurprise` that judges a
        ``level`` KPI's forecast residuals against their own history (None: its defaults).
    early_looks
        How many times an open window may be judged on its running values (:meth:`peek`); each
        look's tail probability is multiplied by it (Bonferroni), so judging a window every few
        minutes keeps the false-alarm rate of judging it once. 0: no early judgement.

    Examples
    --------
    >>> w = SeriesWatcher("signups", kind="count", forecast={"grace_period": 48})
    >>> for h in range(24 * 14):
    ...     v = w.update(h * 3600.0, 40.0 + 20.0 * (h % 24 >= 12))
    >>> v.is_anomaly, v.lower < 60.0 < v.upper
    (False, True)
    >>> v = w.update(24 * 14 * 3600.0, 0.0)
    >>> v.is_anomaly, v.severity, v.direction, v.detector
    (True, 'critical', 'down', 'forecast')
    """

    def __init__(
        self,
        kpi: str = "value",
        kind: str = "level",
        direction: str = "both",
        forecast: dict | None = None,
        rule: dict | None = None,
        warning_score: float = 0.5,
        critical_score: float = 0.75,
        warning_persistence: int = 2,
        relearn_after: int = 24,
        min_abs_change: float = 0.0,
        min_rel_change: float = 0.0,
        min_n: float = 0.0,
        sustained_windows: int = 0,
        sustained_min_z: float = 1.0,
        hold_score: float | None = None,
        core: dict | None = None,
        early_looks: int = 0,
    ):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if sustained_windows < 0:
            raise ValueError(f"sustained_windows must be >= 0, got {sustained_windows}")
        if not 0.0 < warning_score <= critical_score <= 1.0:
            raise ValueError(
                "need 0 < warning_score <= critical_score <= 1, "
                f"got {warning_score} and {critical_score}")
        if hold_score is not None and not 0.0 < hold_score <= warning_score:
            raise ValueError(f"need 0 < hold_score <= warning_score, got {hold_score} and "
                             f"{warning_score}")
        self.kpi = kpi
        self.kind = kind
        self.direction = direction
        self.forecast = forecast
        self.rule = rule
        self.warning_score = warning_score
        self.critical_score = critical_score
        self.warning_persistence = warning_persistence
        self.relearn_after = relearn_after
        self.min_abs_change = min_abs_change
        self.min_rel_change = min_rel_change
        self.min_n = min_n
        self.sustained_windows = sustained_windows
        self.sustained_min_z = sustained_min_z
        self.hold_score = hold_score
        self.core = core
        self.early_looks = early_looks
        self._z_cap = z_for_score(warning_score)
        self._warn_tail = z_tail(self._z_cap)   # two-sided tail at warning_score
        seasonal = SeasonalForecast(kind=kind, **(forecast or {}))
        # levels: the detector core of `pulse detect` with this KPI's seasonal forecaster inside;
        # counts and ratios keep their noise models (Anscombe, binomial) in the forecaster alone
        self.model: SeasonalForecast | RobustSurprise = (
            RobustSurprise(forecaster=seasonal, robust_scores=False, **(core or {}))
            if kind == "level" else seasonal)
        self.target = TargetRule(**rule) if rule else None
        self.suspicious_run = 0
        self.warning_run = 0
        self.n = 0
        # the latest points, for the sustained-shift check
        self.recent: deque[RunPoint] = deque(maxlen=max(sustained_windows, 1))

    def _sustained(self, z: float) -> tuple[float, str | None, Run | None]:
        """Score, direction and numbers of the strongest recent run ending at the current point."""
        runs = len(self.recent)
        if self.sustained_windows < 2 or runs < 2 or abs(z) < self.sustained_min_z:
            return 0.0, None, None
        sign = 1.0 if z > 0 else -1.0
        best, best_k, total = 0.0, 0, 0.0
        recent = list(self.recent)
        for k, pt in enumerate(reversed(recent), start=1):
            total += pt[0]
            if k < 2:
                continue
            zk = _count_run_z(recent[-k:]) if self.kind == "count" else total / math.sqrt(k)
            if sign * zk > best:
                best, best_k = sign * zk, k
        if best_k == 0:
            return 0.0, None, None
        p = min(1.0, (self.sustained_windows - 1) * z_tail(best))
        points = list(self.recent)[-best_k:]
        value = sum(pt[1] for pt in points)
        expected = sum(pt[2] for pt in points)
        ns = [pt[3] for pt in points]
        n = None if any(x is None for x in ns) else sum(x for x in ns if x is not None)
        if self.kind != "count":  # counts: totals over the run; ratios and levels: its means
            value, expected = value / best_k, expected / best_k
        if not self._enough_evidence(value, expected, n):
            return 0.0, None, None
        stds = [pt[4] for pt in points]
        return surprise(p), "up" if sign > 0 else "down", Run(value, expected, n, best_k,
                                                              sum(stds) / len(stds))

    def _run_band(self, run: Run, point_lower: float, point_upper: float) -> tuple[float, float]:
        """The normal band of a run's total (a count) or mean (a share, a level): what such a
        run would show without an incident, narrower than one window's (a few windows of few
        payments say more together than each alone)."""
        e, k = run.expected, run.windows
        if self.kind == "count":   # a total of k windows: Poisson-like, with the model's spread
            half = self._band_z() * run.std * math.sqrt(max(e, 1.0))
            return max(0.0, e - half), e + half
        if self.kind == "ratio" and run.n:
            model = self.model
            assert isinstance(model, SeasonalForecast)
            p = clamped_share(e, run.n)
            std = math.sqrt(max(model.var, 0.0) / k + p * (1.0 - p) / run.n)
            if model._calibrated():
                std *= math.sqrt(max(model.scale, MIN_SCALE))
            lower, upper = e - self._band_z() * std, e + self._band_z() * std
            k_events = run.value * run.n
            if run.n <= _BINOMIAL_BAND_MAX_N and abs(k_events - round(k_events)) < 1e-6 * run.n:
                lo, hi = binomial_band(round(run.n), p, z_tail(self._z_cap))
                lower, upper = min(lower, lo / run.n), max(upper, hi / run.n)
            return max(lower, 0.0), min(upper, 1.0)
        half = (point_upper - point_lower) / 2.0 / math.sqrt(k)   # a mean of k windows
        return e - half, e + half

    def _band_z(self) -> float:
        model = self.model
        inner = model if isinstance(model, SeasonalForecast) else model.forecaster
        return float(getattr(inner, "band_z", self._z_cap))

    def _run_point(self, value: float, fc: Forecast, n: float | None) -> RunPoint:
        """The point as the sustained-shift check sees it: z (and a count) clipped at the cap."""
        z = max(-self._z_cap, min(self._z_cap, fc.z))
        if self.kind == "count" and z != fc.z:   # the count that would have scored z
            value = inverse_anscombe(anscombe(value) - (fc.z - z) * fc.std)
        return (z, value, fc.expected, n, fc.std)

    def _enough_evidence(self, value: float, expected: float, n: float | None) -> bool:
        delta = abs(value - expected)
        return (delta >= self.min_abs_change and delta >= self.min_rel_change * abs(expected)
                and (n is None or n >= self.min_n))

    def peek(self, ts: float, value: float | None, n: float | None, share: float) -> Verdict:
        """Judge the running value of the open window ``ts`` after ``share`` of it; learn nothing.

        Only a critical departure is an alert this early: the look's tail probability, times
        ``early_looks``, must reach ``critical_score``, in the watched direction, with the
        minimum changes passed by the value projected to the whole window (a count over
        ``share``; a ratio as it is) and ``n`` so far at least ``min_n``. A ratio of whole
        events (failed payments of attempts) is judged by the larger of its Gaussian and its
        exact binomial tail, as few events are far from Gaussian. ``expected``, ``lower``
        and ``upper`` are for the part seen (a count's share of the window's forecast).
        """
        none = Verdict(0.0, None, None, None, False, None, None, None)
        if (not self.early_looks or self.kind == "level" or value is None or value != value
                or math.isinf(value) or not 0.0 < share <= 1.0):
            return none
        x = {"value": float(value), "ts": float(ts), "n": n}
        assert isinstance(self.model, SeasonalForecast)   # counts and ratios have no core
        fc = self.model.forecast_partial(x, share)
        if fc.expected != fc.expected:
            return none
        if abs(fc.z) < self._z_cap:   # not even suspicious once: the common case, made cheap
            return Verdict(0.0, fc.expected, fc.lower, fc.upper, False, None, None, None)
        p = min(1.0, self.early_looks * self._tail(fc, float(value), n))
        score = surprise(p)
        direction = "up" if fc.z > 0 else "down" if fc.z < 0 else None
        whole = (float(value) / share, fc.expected / share) if self.kind == "count" else (
            float(value), fc.expected)
        critical = (score >= self.critical_score and self.direction in ("both", direction)
                    and self._enough_evidence(whole[0], whole[1], n))
        lower, upper = self._band(fc, float(value), n)
        return Verdict(score=score, expected=fc.expected, lower=lower, upper=upper,
                       is_anomaly=critical, severity="critical" if critical else None,
                       direction=direction if critical else None,
                       detector="early" if critical else None)

    def peek_alarm(self, ts: float, value: float | None, n: float | None,
                   share: float) -> Verdict | None:
        """:meth:`peek`, when it would be an anomaly; else None, cheaply (one standard score,
        no band): for the extra looks at an open window, of which only an alarm is used."""
        if (not self.early_looks or self.kind == "level" or value is None or value != value
                or math.isinf(value) or not 0.0 < share <= 1.0):
            return None
        assert isinstance(self.model, SeasonalForecast)   # counts and ratios have no core
        if abs(self.model.partial_z(float(value), float(ts), n, share)) < self._z_cap:
            return None
        v = self.peek(ts, value, n, share)
        return v if v.is_anomaly else None

    def _band(self, fc: Forecast, value: float, n: float | None) -> tuple[float, float]:
        """The normal band shown with a verdict: the values this watcher would not find
        suspicious. For a share of whole events that is the Gaussian band or the exact
        binomial one, whichever is wider (the point is judged by the larger of the two tails):
        of 5 payments where 2 % fail, 0 to 3 failures, i.e. 0 %–60 %, not -51 %–58 %. A share
        is within 0..1, a count (Anscombe's inverse) never below 0."""
        lower, upper = fc.lower, fc.upper
        if self.kind == "ratio" and n and 0 < n <= _BINOMIAL_BAND_MAX_N:
            k = value * n
            if abs(k - round(k)) < 1e-6 * max(1.0, n):
                lo, hi = binomial_band(round(n), clamped_share(fc.expected, n),
                                       self.__dict__.get("_warn_tail") or z_tail(self._z_cap))
                lower, upper = min(lower, lo / n), max(upper, hi / n)
        if self.kind == "ratio":   # a share of events: never below none or above all of them
            lower, upper = max(lower, 0.0), min(upper, 1.0)
        return lower, upper

    def _tail(self, fc: Forecast, value: float, n: float | None) -> float:
        """Two-sided tail probability of a point: Gaussian, and for a share of whole events
        (failed payments of attempts, conversions of signups) at least its exact binomial tail:
        on a few events the normal approximation is far too sure (2 failures of 3 where 3 %
        fail is a z of 6, and happens once in 300 tries)."""
        tail = z_tail(fc.z)
        if self.kind == "ratio" and n and tail < 1e-3:
            k = value * n
            if abs(k - round(k)) < 1e-6 * max(1.0, n):
                p0 = clamped_share(fc.expected, n)
                tail = max(tail, min(1.0, 2.0 * binomial_tail(round(k), round(n), p0,
                                                              upper=fc.z > 0)))
        return tail

    def update(self, ts: float, value: float | None, n: float | None = None) -> Verdict:
        """Score the point of window ``ts`` (epoch seconds), then learn it unless suspicious."""
        if value is None or value != value or math.isinf(value):
            return Verdict(0.0, None, None, None, False, None, None, None)
        x = {"value": float(value), "ts": float(ts), "n": n}
        fc = self.model.forecast_one(x)
        score = surprise(self._tail(fc, float(value), n)) if fc.z else 0.0
        direction = "up" if fc.z > 0 else "down" if fc.z < 0 else None
        suspicious = score >= self.warning_score
        candidate = (suspicious and self.direction in ("both", direction)
                     and self._enough_evidence(float(value), fc.expected, n))
        self.warning_run = self.warning_run + 1 if candidate else 0
        severity = None
        if candidate and score >= self.critical_score:
            severity = "critical"
        elif candidate and self.warning_run >= self.warning_persistence:
            severity = "warning"
        detector = "forecast" if severity else None

        if suspicious:  # judged on its own: it starts a new run, weighing as a just-suspicious one
            self.recent.clear()
        # runs are judged on the noise model's own standard scores (the calibrated one of the core
        # judges single points): a sum of residuals has its own, Gaussian, reference
        if fc.residual_z is not None:
            fc = fc._replace(z=fc.residual_z)
        if fc.z:  # a scored point: it joins the runs of the sustained-shift check
            self.recent.append(self._run_point(float(value), fc, n))
        run_score, run_direction, run = self._sustained(fc.z)
        sustained = run_score >= self.warning_score
        shown: Run | None = None   # the run the verdict speaks for
        if sustained and severity is None and self.direction in ("both", run_direction):
            severity = "critical" if run_score >= self.critical_score else "warning"
            detector, direction, score = "sustained", run_direction, max(score, run_score)
            shown = run
        hold = self.hold_score if self.hold_score is not None else self.warning_score
        suspicious = suspicious or sustained or run_score >= hold

        if self.target is not None:
            rule_severity = self.target.check_one(x)
            if rule_severity is not None and _RANK[rule_severity] >= _RANK[severity]:
                severity, detector = rule_severity, f"rule:{self.kpi}"
                score = max(score, self.target.score_one(x))
                direction = "up" if self.target.op == "above" else "down"
            self.target.learn_one(x)

        self.suspicious_run = self.suspicious_run + 1 if suspicious else 0
        if not suspicious or self.suspicious_run >= self.relearn_after:
            self.model.learn_one(x)
        self.n += 1
        known = fc.expected == fc.expected
        lower, upper = self._band(fc, float(value), n) if known else (math.nan, math.nan)
        shown_value, expected = float(value), fc.expected
        if shown is not None and known:   # a run is told in its own numbers and band
            lower, upper = self._run_band(shown, lower, upper)
            shown_value, expected = shown.value, shown.expected
        if severity == "critical" and known and lower <= shown_value <= upper:
            # a target can be missed in substance, but a value inside the band people are
            # shown reads as a contradiction: critical needs a departure beyond it
            severity = "warning"
        return Verdict(
            score=score,
            expected=expected if known else None,
            lower=lower if known else None,
            upper=upper if known else None,
            is_anomaly=severity is not None,
            severity=severity,
            direction=direction if severity else None,
            detector=detector,
            value=shown.value if shown is not None else None,
            n=shown.n if shown is not None else None,
            windows=shown.windows if shown is not None else 1,
        )
