"""The closed sets of names Pulse's events, KPIs and series are made of, each written once.

The simulator draws from them, the event schema (``stream.events``) accepts only them, and the
KPI engine keeps one series per segment and per channel plus the :data:`ALL` series.

>>> len(SEGMENTS), len(CHANNELS), PLANS
(4, 4, ('monthly', 'annual'))
>>> "watermark" in EVENT_KINDS   # a watermark is a clock tick, not an event
False
"""

from __future__ import annotations

__all__ = ["ALL", "CHANNELS", "EVENT_KINDS", "PLANS", "SEGMENTS", "STATUSES"]

ALL = "all"
"""The segment or channel value of a series that covers every segment or channel."""

SEGMENTS: tuple[str, ...] = ("career_changer", "new_grad", "experienced", "executive")
CHANNELS: tuple[str, ...] = ("organic", "paid_search", "referral", "social")
PLANS: tuple[str, ...] = ("monthly", "annual")
STATUSES: tuple[str, ...] = ("succeeded", "failed")
"""Outcomes of a payment event."""

EVENT_KINDS: tuple[str, ...] = ("signup", "scan", "payment", "cancel", "spend", "activity")
"""The kinds of event on the ``events`` topic (docs/events.md), in the schema's order."""
