"""The rates of the simulated job-search SaaS, in one immutable object.

Every number the generator draws from lives here, so a test or a demo can change the business
(more signups, a pricier plan) without touching the generator. Defaults follow shared/seeds 002
(10,000 users, ~2,100 subscriptions, MRR near $90K, match rate ~0.72) and the targets of seed 000
(conversion 0.15, daily active usage 0.40, monthly churn under 0.05, CAC near 50).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from core.vocabulary import CHANNELS, SEGMENTS

__all__ = ["BusinessModel", "diurnal_weights", "weekly_factor"]

_PER_SEGMENT = ("segment_shares", "segment_match_means", "segment_conversion")
_PER_CHANNEL = ("channel_shares", "channel_conversion", "channel_daily_spend")
_SHARES = ("segment_shares", "channel_shares")


@dataclass(frozen=True)
class BusinessModel:
    """Rates of the simulated business; per-segment and per-channel tuples follow SEGMENTS/CHANNELS.

    Relative propensities (``segment_conversion``, ``channel_conversion``) are normalised by their
    share-weighted mean, so ``conversion_rate`` stays the overall share of signups that convert.

    >>> m = BusinessModel()
    >>> m.initial_subscriptions * m.monthly_price
    81900.0
    >>> round(m.conversion_probability(0, 2), 4), round(m.conversion_probability(1, 3), 4)
    (0.2322, 0.0729)
    >>> BusinessModel(segment_shares=(0.5, 0.5, 0.5, 0.5))
    Traceback (most recent call last):
    ...
    ValueError: segment_shares must sum to 1, got 2.0
    """

    initial_users: int = 10_000
    initial_subscriptions: int = 2_100
    segment_shares: tuple[float, ...] = (0.30, 0.35, 0.28, 0.07)
    segment_match_means: tuple[float, ...] = (0.67, 0.71, 0.76, 0.80)
    segment_conversion: tuple[float, ...] = (1.3, 0.7, 1.0, 1.4)
    channel_shares: tuple[float, ...] = (0.40, 0.30, 0.15, 0.15)
    channel_conversion: tuple[float, ...] = (1.1, 0.9, 1.2, 0.7)
    channel_daily_spend: tuple[float, ...] = (0.0, 650.0, 0.0, 300.0)
    signups_per_day: float = 150.0
    conversion_rate: float = 0.15
    conversion_window_days: float = 14.0
    free_base_conversions_per_day: float = 0.5
    monthly_price: float = 39.0
    annual_price: float = 349.0
    annual_share: float = 0.20
    monthly_churn: float = 0.03
    payment_failure_rate: float = 0.03
    renewal_retries: int = 2
    match_concentration: float = 20.0
    dormant_share: float = 0.50
    dormant_activity: float = 0.004
    engaged_activity: tuple[float, float] = (0.25, 0.85)
    paid_activity_boost: float = 0.25
    extra_session_probability: float = 0.35
    scans_per_session: float = 1.0
    mean_session_s: float = 480.0
    advocate_share: float = 0.06
    weekend_factor: float = 0.70
    diurnal_amplitude: float = 0.6
    peak_hour_utc: float = 15.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _PER_SEGMENT and len(value) != len(SEGMENTS):
                raise ValueError(f"{f.name} needs one value per segment {SEGMENTS}")
            if f.name in _PER_CHANNEL and len(value) != len(CHANNELS):
                raise ValueError(f"{f.name} needs one value per channel {CHANNELS}")
            if f.name in _SHARES and not math.isclose(sum(value), 1.0, abs_tol=1e-9):
                raise ValueError(f"{f.name} must sum to 1, got {sum(value)}")
        for name in ("conversion_rate", "annual_share", "monthly_churn", "payment_failure_rate",
                     "dormant_share", "advocate_share", "weekend_factor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.initial_subscriptions > self.initial_users:
            raise ValueError("initial_subscriptions cannot exceed initial_users")

    def scaled(self, scale: float) -> BusinessModel:
        """The same business ``scale`` times bigger: users, subscriptions, signups, the free
        base's conversions and paid spend (so CAC stays); rates per user stay as they are.

        >>> big = BusinessModel().scaled(10)
        >>> big.initial_users, big.signups_per_day, big.channel_daily_spend[1]
        (100000, 1500.0, 6500.0)
        >>> BusinessModel().scaled(0)
        Traceback (most recent call last):
        ...
        ValueError: scale must be > 0 (1 is today's business), got 0
        """
        if not scale > 0 or math.isinf(scale):
            raise ValueError(f"scale must be > 0 (1 is today's business), got {scale}")
        if scale == 1:
            return self
        return dataclasses.replace(
            self, initial_users=round(self.initial_users * scale),
            initial_subscriptions=round(self.initial_subscriptions * scale),
            signups_per_day=self.signups_per_day * scale,
            free_base_conversions_per_day=self.free_base_conversions_per_day * scale,
            channel_daily_spend=tuple(v * scale for v in self.channel_daily_spend))

    def conversion_probability(self, segment: int, channel: int) -> float:
        """Chance that a new signup of this segment and channel pays within the window."""
        seg_norm = sum(s * c for s, c in zip(self.segment_shares, self.segment_conversion,
                                             strict=True))
        ch_norm = sum(s * c for s, c in zip(self.channel_shares, self.channel_conversion,
                                            strict=True))
        p = (self.conversion_rate * self.segment_conversion[segment] / seg_norm
             * self.channel_conversion[channel] / ch_norm)
        return min(1.0, p)


def diurnal_weights(amplitude: float, peak_hour: float) -> tuple[float, ...]:
    """Relative traffic per UTC hour (mean 1): a night trough and a mid-day peak.

    >>> w = diurnal_weights(0.6, 15.0)
    >>> round(sum(w) / 24, 6), w.index(max(w)), w.index(min(w))
    (1.0, 15, 3)
    """
    raw = [1.0 + amplitude * math.cos(2 * math.pi * (h - peak_hour) / 24)
           for h in range(24)]
    mean = sum(raw) / 24
    return tuple(r / mean for r in raw)


def weekly_factor(day: int, weekend_factor: float) -> float:
    """Relative traffic of a UTC day number (days since epoch; mean 1 over a week).

    >>> weekly_factor(0, 0.65) > 1 > weekly_factor(2, 0.65)   # 1970-01-01 was a Thursday
    True
    """
    weekday = (day + 3) % 7  # Monday = 0
    weekday_level = 7.0 / (5.0 + 2.0 * weekend_factor)
    return weekday_level * (weekend_factor if weekday >= 5 else 1.0)
