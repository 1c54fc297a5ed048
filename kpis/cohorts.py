"""Weekly signup cohorts of docs/kpis.md (retention on day 7 and day 30, paid retention after the
first month), counted per partition as additive (numerator, denominator) pairs.

A cohort is the users whose ``signup`` falls in one ISO week (Monday 00:00 UTC on), per
(segment, channel) of the signup. Each cohort KPI comes out of :meth:`CohortTracker.close` once,
at the close of the first window ending at or after the moment its horizon has passed for every
member, so the counts are final. Users are partitioned by ``user_id``: summing the pairs of
several partitions' trackers gives those of one tracker over every event.

>>> D = 86_400.0
>>> monday = 1_791_158_400.0                                # 2026-10-05 00:00 UTC
>>> c = CohortTracker(window_s=D)
>>> def ev(kind, ts, user):
...     return {"event_id": f"{kind}{ts}", "kind": kind, "ts": ts, "user_id": user,
...             "segment": "new_grad", "channel": "organic"}
>>> c.observe(ev("signup", monday + 100, "a"))
>>> c.observe(ev("signup", monday + 2 * D, "b"))
>>> c.observe(ev("activity", monday + 7 * D + 200, "a"))    # a: on day 7; b: not
>>> [c.close(monday + d * D) for d in range(1, 15)] == [[]] * 14
True
>>> c.close(monday + 15 * D)                                # week end + 8 d
[('retention_d7', '2026-10-05', ('new_grad', 'organic'), 1, 2)]
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from kpis._tracking import HeldSteps, Key, key_order, windows_per_day
from kpis.formulas import COHORT_KPIS, DAY_S, FUNNEL_PAID_S, subscription_days

__all__ = ["PAID_RETENTION_S", "CohortTracker", "cohort_of"]

WEEK_S = 7 * DAY_S
_MONDAY_0 = 4 * DAY_S   # 1970-01-05 00:00 UTC, the first Monday of the epoch
PAID_RETENTION_S = subscription_days("monthly") * DAY_S
"""A converted user is retained when its subscription is still active this long (35 d) after its
first payment: a monthly plan has then renewed (day 30, or one of its retries), as the MRR rule
of docs/kpis.md says (active until 35 d after the last succeeded payment)."""

# When each KPI of COHORT_KPIS (same order) is reported, after the end of the cohort's week.
_HORIZONS = (8 * DAY_S, 31 * DAY_S, FUNNEL_PAID_S + PAID_RETENTION_S)
_D7, _D8, _D30, _D31 = 7 * DAY_S, 8 * DAY_S, 30 * DAY_S, 31 * DAY_S
_LAST = FUNNEL_PAID_S + PAID_RETENTION_S   # no step after signup + this matters

# Slots of a user's record.
_SIGNUP_TS, _KEY, _USER, _DAY7, _DAY30, _FIRST_PAY, _ANNUAL, _PAYS, _CANCELS = range(9)
# Steps (held for users whose signup was not seen yet as (ts, step)).
_ACTIVE, _PAY, _FIRST_MONTHLY, _FIRST_ANNUAL, _CANCEL = range(5)


def cohort_of(ts: float) -> str:
    """Cohort of a signup at ``ts``: ISO date of the Monday 00:00 UTC starting its week.

    >>> cohort_of(1_791_158_400.0), cohort_of(1_791_158_400.0 - 1)
    ('2026-10-05', '2026-09-28')
    """
    return _label(_week(ts))


def _week(ts: float) -> int:
    return int((ts - _MONDAY_0) // WEEK_S)


def _label(week: int) -> str:
    return datetime.fromtimestamp(_MONDAY_0 + week * WEEK_S, UTC).date().isoformat()


def _apply(rec: list[Any], ts: float, step: int) -> None:
    """Record one step of a known user (the one place that reads a step)."""
    since = ts - rec[_SIGNUP_TS]
    if since < 0:
        return
    if step == _ACTIVE:
        if _D7 <= since < _D8:
            rec[_DAY7] = True
        elif _D30 <= since < _D31:
            rec[_DAY30] = True
    elif since >= _LAST:
        return
    elif step == _CANCEL:
        if rec[_CANCELS] is None:
            rec[_CANCELS] = []
        rec[_CANCELS].append(ts)
    else:
        if step != _PAY and ts < rec[_FIRST_PAY]:
            rec[_FIRST_PAY] = ts
            rec[_ANNUAL] = step == _FIRST_ANNUAL
        if rec[_PAYS] is None:
            rec[_PAYS] = []
        rec[_PAYS].append(ts)


def _retained(rec: list[Any]) -> bool:
    """Subscription of a converted user still active ``PAID_RETENTION_S`` after its first payment:
    no cancel in ``[first, first + 35 d)`` and, for a monthly plan, a succeeded payment in
    ``(first, first + 35 d)``."""
    first = rec[_FIRST_PAY]
    until = first + PAID_RETENTION_S
    if any(first <= t < until for t in rec[_CANCELS] or ()):
        return False
    return bool(rec[_ANNUAL]) or any(first < t < until for t in rec[_PAYS])


class CohortTracker:
    """Per-user cohort state of one partition; ``close`` yields
    ``(kpi_id, cohort, key, numerator, denominator)`` tuples.

    Parameters
    ----------
    window_s
        Window length in event-time seconds, as the engine's; must divide a day.

    A user counts from its ``signup`` event (the first one seen; later ones are ignored), in the
    cohort of that signup's week and under its (segment, channel); users without a signup
    (subscribers from before the stream) are ignored, and so are steps before the signup.
    After the end of the cohort's week, at ``close`` of the first window ending at or after:

    - + 8 d: ``retention_d7`` = (members active on day 7, members);
    - + 31 d: ``retention_d30`` = (members active on day 30, members);
    - + 49 d: ``paid_retention_m1`` = (converted members still subscribed 35 d after their
      first payment, members whose first succeeded payment came within 14 d of signup).

    Active = a ``scan`` or ``activity`` event. Every (kpi, cohort, key) with at least one
    member comes out exactly once (denominator 0 included for paid retention), sorted by cohort,
    KPI (:data:`~kpis.formulas.COHORT_KPIS` order), key. Events may come in any order as long
    as ``close(t)`` is called only once every event before ``t`` was observed, with increasing
    ``t``; events before the last ``close`` (late) are ignored, duplicates change nothing. A
    user is dropped after its last KPI.
    """

    def __init__(self, window_s: float):
        windows_per_day(window_s)
        self.window_s = window_s
        self._closed = -math.inf                 # the last window_end given to close
        self._users: dict[str, list[Any]] = {}   # user -> record (slots above)
        self._weeks: dict[int, list[Any]] = {}   # week -> [KPIs reported, member records]
        self._width = float(window_s)
        # steps of users whose signup was not seen yet
        self._held: HeldSteps[int] = HeldSteps(window_s)

    def observe(self, ev: dict[str, Any]) -> None:
        """Take one validated event (any kind; spend and failed payments are ignored)."""
        kind = ev["kind"]
        if kind == "scan" or kind == "activity":
            ts = ev["ts"]
            if ts < self._closed:
                return
            rec = self._users.get(ev["user_id"])
            if rec is not None:
                _apply(rec, ts, _ACTIVE)
            elif ts - self._closed >= _D7:
                # its signup, not seen yet, is at or after the last close: if this is 7 d
                # later it may be on day 7 (only with a lateness of days)
                self._held.hold(ev["user_id"], ts, _ACTIVE)
            return
        if kind == "payment":
            if ev["status"] != "succeeded":
                return
            if not ev.get("first"):
                step = _PAY
            else:
                step = _FIRST_ANNUAL if ev.get("plan") == "annual" else _FIRST_MONTHLY
        elif kind == "cancel":
            step = _CANCEL
        elif kind == "signup":
            self._signup(ev)
            return
        else:
            return
        rec = self._held.record_or_hold(self._users, ev, step, self._closed)
        if rec is not None:
            _apply(rec, ev["ts"], step)

    def _signup(self, ev: dict[str, Any]) -> None:
        ts = ev["ts"]
        user = ev["user_id"]
        if ts < self._closed or user in self._users:
            return
        rec: list[Any] = [ts, (ev.get("segment"), ev.get("channel")), user, False, False,
                          math.inf, False, None, None]
        for t, step in self._held.take(user, ts):   # steps before the signup do not count
            _apply(rec, t, step)
        self._users[user] = rec
        week = _week(ts)
        entry = self._weeks.get(week)
        if entry is None:
            entry = self._weeks[week] = [0, []]
        entry[1].append(rec)

    def close(self, window_end: float) -> list[tuple[str, str, Key, int, int]]:
        """The cohort KPIs whose horizon passed at or before ``window_end``, not reported yet."""
        end = float(window_end)
        if end > self._closed:
            self._closed = end
        done = int(end // self._width)
        self._held.drop_before(done * self._width)
        out: list[tuple[str, str, Key, int, int]] = []
        for week in sorted(self._weeks):
            entry = self._weeks[week]
            week_end = _MONDAY_0 + (week + 1) * WEEK_S
            stage, members = entry
            while stage < len(_HORIZONS) and end >= week_end + _HORIZONS[stage]:
                out += _report(week, stage, members)
                stage += 1
            entry[0] = stage
            if stage == len(_HORIZONS):
                for rec in members:
                    del self._users[rec[_USER]]
                del self._weeks[week]
        return out

    @property
    def users(self) -> int:
        """Users followed (signed up, not every cohort KPI of theirs out yet)."""
        return len(self._users)


def _report(week: int, stage: int, members: list[list[Any]]
            ) -> list[tuple[str, str, Key, int, int]]:
    counts: dict[Key, list[int]] = {}
    for rec in members:
        c = counts.get(rec[_KEY])
        if c is None:
            c = counts[rec[_KEY]] = [0, 0]
        if stage == 0:
            c[0] += rec[_DAY7]
            c[1] += 1
        elif stage == 1:
            c[0] += rec[_DAY30]
            c[1] += 1
        elif rec[_FIRST_PAY] < rec[_SIGNUP_TS] + FUNNEL_PAID_S:
            c[0] += _retained(rec)
            c[1] += 1
    kpi, cohort = COHORT_KPIS[stage].id, _label(week)
    return [(kpi, cohort, key, counts[key][0], counts[key][1])
            for key in sorted(counts, key=key_order)]
