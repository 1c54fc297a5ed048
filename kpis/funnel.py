"""Signup funnel of docs/kpis.md (signup -> first scan in 24 h -> first payment in 14 d), counted
per partition as additive integers.

A signup window's counts come out of :meth:`FunnelTracker.close` once every one of its users'
horizon has passed, so they are final, never guessed: the 24 h counts at the close of the window
ending 24 h after the signup window, the 14 d counts at the close of the window ending 14 d
after it. Users are partitioned by ``user_id``, so the rows of several partitions' trackers for
one window sum to the rows of one tracker over every event.

>>> H = 3600.0
>>> f = FunnelTracker(window_s=H)
>>> def ev(kind, ts, user, **kw):
...     return {"event_id": f"{kind}{ts}", "kind": kind, "ts": ts, "user_id": user,
...             "segment": "new_grad", "channel": "organic", **kw}
>>> f.observe(ev("signup", 10.0, "a", referred_by=None))
>>> f.observe(ev("signup", 20.0, "b", referred_by=None))
>>> f.observe(ev("scan", 3 * H, "a", match_score=0.7))      # 3 h after signing up
>>> [f.close(w * H) for w in range(1, 25)] == [{}] * 24     # horizon not passed yet
True
>>> f.close(25 * H)   # 24 h after window [0, H): 2 signups, 1 scanned within 24 h
{('new_grad', 'organic'): [2, 1, 0, 0, 0, 0]}
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from kpis._tracking import HeldSteps, Key, key_order, windows_per_day
from kpis.formulas import DAY_S, FUNNEL_INPUTS, FUNNEL_PAID_S, FUNNEL_SCAN_S

__all__ = ["FunnelTracker"]

# Slots of a user's record; _SCAN and _PAID double as indexes into FunnelTracker._held.
_SCAN, _PAID, _SIGNUP_TS, _KEY, _USER = range(5)
_INF = math.inf
_N = len(FUNNEL_INPUTS)
# Positions in a row (FUNNEL_INPUTS order).
_SIGNUPS_24H, _SCANNED_24H, _SIGNUPS_14D, _SCANNED_14D, _PAID_SCANNED_14D, _PAID_14D = range(_N)


class FunnelTracker:
    """Per-user funnel state of one partition; ``close`` yields rows in :data:`FUNNEL_INPUTS`
    order.

    Parameters
    ----------
    window_s
        Window length in event-time seconds, as the engine's; must divide a day.

    A user counts from its ``signup`` event (the first one seen; later ones are ignored): key =
    the signup's (segment, channel), "scanned" = a ``scan`` less than 24 h after the signup,
    "paid" = a succeeded ``payment`` with ``first`` true less than 14 d after the signup; steps
    before the signup do not count, users without a signup (subscribers from before the stream)
    are ignored. Events may come in any order as long as ``close(t)`` is called only once every
    event before ``t`` was observed, with increasing ``t``; events before the last ``close``
    (late) are ignored. Duplicates change nothing. A user is dropped once its 14 d counts are
    out, and steps of unknown users are held only until the ``close`` after them.
    """

    def __init__(self, window_s: float):
        per_day = windows_per_day(window_s)
        self.window_s = window_s
        self._width = float(window_s)
        # windows from the end of a signup window to the end of the window reporting it
        self._lag_24h = round(FUNNEL_SCAN_S / DAY_S * per_day)
        self._lag_14d = round(FUNNEL_PAID_S / DAY_S * per_day)
        self._closed = -_INF                    # the last window_end given to close
        self._users: dict[str, list[Any]] = {}  # user -> record (slots above)
        self._windows: dict[int, list[list[Any]]] = {}   # signup window -> its users' records
        self._due_24h: list[int] = []           # heaps of signup windows still to report
        self._due_14d: list[int] = []
        # steps (_SCAN or _PAID, with their time) of users whose signup was not seen yet
        self._held: HeldSteps[int] = HeldSteps(window_s)

    def observe(self, ev: dict[str, Any]) -> None:
        """Take one validated event (any kind; only signup, scan and first payments matter)."""
        kind = ev["kind"]
        if kind == "scan":
            slot = _SCAN
        elif kind == "payment":
            if not ev.get("first") or ev["status"] != "succeeded":
                return
            slot = _PAID
        elif kind == "signup":
            self._signup(ev)
            return
        else:
            return
        ts = ev["ts"]
        rec = self._held.record_or_hold(self._users, ev, slot, self._closed)
        if rec is not None and rec[_SIGNUP_TS] <= ts < rec[slot]:
            rec[slot] = ts

    def _signup(self, ev: dict[str, Any]) -> None:
        ts = ev["ts"]
        user = ev["user_id"]
        if ts < self._closed or user in self._users:
            return
        rec: list[Any] = [_INF, _INF, ts, (ev.get("segment"), ev.get("channel")), user]
        for t, slot in self._held.take(user, ts):   # steps before the signup do not count
            if t < rec[slot]:
                rec[slot] = t
        self._users[user] = rec
        w = int(ts // self._width)
        members = self._windows.get(w)
        if members is None:
            members = self._windows[w] = []
            heapq.heappush(self._due_24h, w)
            heapq.heappush(self._due_14d, w)
        members.append(rec)

    def close(self, window_end: float) -> dict[Key, list[int]]:
        """Counts whose horizon passed at ``window_end``, per key; only keys with a count.

        Normally the 24 h counts of the signup window that ended 24 h before ``window_end`` and
        the 14 d counts of the one that ended 14 d before; windows skipped by earlier calls come
        out summed into the first call at or after their horizon.
        """
        end = float(window_end)
        if end > self._closed:
            self._closed = end
        done = int(end // self._width)       # windows 0 .. done - 1 have ended
        self._held.drop_before(done * self._width)
        rows: dict[Key, list[int]] = {}
        due = self._due_24h
        while due and due[0] + 1 + self._lag_24h <= done:
            for rec in self._windows[heapq.heappop(due)]:
                row = rows.get(rec[_KEY])
                if row is None:
                    row = rows[rec[_KEY]] = [0] * _N
                row[_SIGNUPS_24H] += 1
                if rec[_SCAN] < rec[_SIGNUP_TS] + FUNNEL_SCAN_S:
                    row[_SCANNED_24H] += 1
        due = self._due_14d
        while due and due[0] + 1 + self._lag_14d <= done:
            for rec in self._windows.pop(heapq.heappop(due)):
                del self._users[rec[_USER]]
                row = rows.get(rec[_KEY])
                if row is None:
                    row = rows[rec[_KEY]] = [0] * _N
                scanned = rec[_SCAN] < rec[_SIGNUP_TS] + FUNNEL_SCAN_S
                paid = rec[_PAID] < rec[_SIGNUP_TS] + FUNNEL_PAID_S
                row[_SIGNUPS_14D] += 1
                row[_SCANNED_14D] += scanned
                row[_PAID_SCANNED_14D] += scanned and paid
                row[_PAID_14D] += paid
        return {key: rows[key] for key in sorted(rows, key=key_order)}

    @property
    def users(self) -> int:
        """Users followed (signed up, 14 d counts not out yet)."""
        return len(self._users)
