"""Target rules from the business seeds: a KPI above or below its warning and critical levels."""

from __future__ import annotations

import math

from river.base import AnomalyDetector

__all__ = ["TargetRule", "SEVERITIES"]

SEVERITIES = ("warning", "critical")


class TargetRule(AnomalyDetector):
    """Flags a KPI that is past its target: ``op="above"`` (e.g. churn) or ``"below"`` (LTV:CAC).

    The value checked is the current one, or with ``smooth > 1`` an exponentially weighted mean over
    about ``smooth`` points (weighted by ``x["n"]`` when given: a ratio of sums), so a noisy hourly
    ratio is judged on its recent level. Points with ``n < min_n`` are not judged. ``score_one``
    is 0 inside the target, 0.5 at the warning level, 0.75 at the critical level, and grows towards
    1 beyond it (the :func:`~detectors._math.surprise` scale of the other detectors);
    :meth:`check_one` gives the severity.

    Parameters
    ----------
    op
        ``"above"``: bad when the value is above the levels; ``"below"``: bad when below.
    warning, critical
        The levels; ``critical`` must be at or past ``warning`` in the bad direction (the
        defaults, 1 and 1, suit a share that is bad only past 100 %).
    min_n
        Smallest sample size behind a value for it to be judged.
    smooth
        Points in the exponentially weighted mean (1: the value itself).

    Examples
    --------
    >>> rule = TargetRule("above", warning=0.05, critical=0.08)
    >>> rule.check_one({"value": 0.04}), rule.check_one({"value": 0.06})
    (None, 'warning')
    >>> rule.check_one({"value": 0.09}), rule.score_one({"value": 0.08})
    ('critical', 0.75)
    """

    def __init__(
        self, op: str = "above", warning: float = 1.0, critical: float = 1.0, min_n: float = 0.0,
        smooth: int = 1,
    ):
        if op not in ("above", "below"):
            raise ValueError(f"op must be 'above' or 'below', got {op!r}")
        sign = 1.0 if op == "above" else -1.0
        if sign * (critical - warning) < 0:
            raise ValueError(
                f"critical ({critical}) must be at or {op} warning ({warning}) for op={op!r}")
        if smooth < 1:
            raise ValueError(f"smooth must be >= 1, got {smooth}")
        self.op = op
        self.warning = warning
        self.critical = critical
        self.min_n = min_n
        self.smooth = smooth
        self.sum_wv = 0.0
        self.sum_w = 0.0
        self.seen = 0   # points learned: a smoothed level means nothing before ``smooth`` of them

    def _level(self, x: dict) -> float | None:
        v = x.get("value")
        if v is None or v != v or math.isinf(v):
            return None
        n = x.get("n")
        if n is not None and n < self.min_n:
            return None
        if self.smooth == 1:
            return float(v)
        w = 1.0 if n is None else float(n)
        decay = 1.0 - 1.0 / self.smooth
        total = decay * self.sum_w + w
        return (decay * self.sum_wv + w * v) / total if total > 0 else float(v)

    def score_one(self, x: dict) -> float:
        if self.smooth > 1 and self.seen < self.smooth:
            return 0.0   # warm-up: the average is not over its span yet
        level = self._level(x)
        if level is None:
            return 0.0
        sign = 1.0 if self.op == "above" else -1.0
        past_warning = sign * (level - self.warning)
        if past_warning < 0:
            return 0.0
        span = sign * (self.critical - self.warning)
        if span <= 0:
            return 1.0 if past_warning > 0 else 0.75
        return min(1.0, 0.5 + 0.25 * past_warning / span)

    def check_one(self, x: dict) -> str | None:
        """``"critical"``, ``"warning"`` or ``None`` for this point."""
        score = self.score_one(x)
        return "critical" if score >= 0.75 else "warning" if score >= 0.5 else None

    def learn_one(self, x: dict) -> None:
        v = x.get("value")
        if self.smooth == 1 or v is None or v != v or math.isinf(v):
            return
        n = x.get("n")
        if n is not None and n < self.min_n:
            return
        w = 1.0 if n is None else float(n)
        decay = 1.0 - 1.0 / self.smooth
        self.sum_wv = decay * self.sum_wv + w * v
        self.sum_w = decay * self.sum_w + w
        self.seen += 1
