"""What the per-user trackers (:mod:`kpis.funnel`, :mod:`kpis.cohorts`) share.

Both follow the users whose ``signup`` they saw, key every count by that signup's
(segment, channel), and hold the steps of users not (yet) known while their signup may still
arrive out of order: a step with ``ts >= t`` can belong to a signup not seen yet only while
``close(t)`` has not been called (every event before ``t`` has been seen by then).
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any, Generic, TypeVar

from kpis.formulas import DAY_S

__all__ = ["HeldSteps", "Key", "key_order", "windows_per_day"]

S = TypeVar("S")

Key = tuple[str | None, str | None]
"""(segment, channel) of a user's signup event."""


def windows_per_day(window_s: float) -> int:
    """Windows of ``window_s`` seconds in a day; ValueError unless ``window_s`` divides a day.

    >>> windows_per_day(3600), windows_per_day(86_400)
    (24, 1)
    >>> windows_per_day(7 * 3600)
    Traceback (most recent call last):
    ...
    ValueError: window_s must be > 0 and divide a day (86400 s), got 25200
    """
    n = round(DAY_S / window_s) if window_s > 0 else 0
    if n < 1 or n * window_s != DAY_S:
        raise ValueError(f"window_s must be > 0 and divide a day (86400 s), got {window_s!r}")
    return n


def key_order(key: Key) -> tuple[str, str]:
    """Sort key of a (segment, channel) key that may hold None."""
    return (key[0] or "", key[1] or "")


class HeldSteps(Generic[S]):
    """Steps ``(ts, step)`` of users whose signup has not been seen, until the close after them.

    Indexed by user, so a signup takes its user's steps in O(1) however many windows are open
    (a partition read days ahead of the others has hundreds). A user's steps are kept in time
    order and the user is filed under the window of its oldest step, so :meth:`drop_before`
    visits only users with something to drop and removes a prefix: each step is handled a
    constant number of times, however long it is held.

    >>> held = HeldSteps(3600.0)
    >>> held.hold("a", 10.0, "scan"); held.hold("a", 4000.0, "paid"); held.hold("b", 20.0, "scan")
    >>> held.drop_before(3600.0)          # the close of window [0, 3600): older steps go
    >>> len(held), held.take("a", 0.0), held.take("b", 0.0), len(held)
    (1, [(4000.0, 'paid')], [], 0)
    """

    def __init__(self, window_s: float) -> None:
        self._width = float(window_s)
        self._by_user: dict[str, deque[tuple[float, S]]] = {}
        self._by_window: dict[int, list[str]] = {}   # window of a user's oldest step -> users

    def hold(self, user: str, ts: float, step: S) -> None:
        steps = self._by_user.get(user)
        if steps is None:
            self._by_user[user] = deque(((ts, step),))
            self._file(user, ts)
        elif ts >= steps[-1][0]:
            steps.append((ts, step))
        else:   # out of order (within the lateness): keep the order, refile if now the oldest
            bisect.insort(steps, (ts, step), key=_time)
            if steps[0][0] == ts:
                self._file(user, ts)

    def record_or_hold(self, users: dict[str, Any], ev: dict[str, Any], step: S,
                       closed: float) -> Any:
        """The record in ``users`` of the event's user, or None: the event is before
        ``closed`` (its windows are out), or its user's signup has not been seen yet (then the
        step is held for it)."""
        ts = ev["ts"]
        if ts < closed:
            return None
        rec = users.get(ev["user_id"])
        if rec is None:
            self.hold(ev["user_id"], ts, step)
        return rec

    def take(self, user: str, since: float) -> list[tuple[float, S]]:
        """Remove ``user``'s steps; those at or after ``since`` (its signup) are returned."""
        steps = self._by_user.pop(user, None)
        if not steps:
            return []
        return [s for s in steps if s[0] >= since]

    def drop_before(self, t: float) -> None:
        """Forget steps before ``t`` (a window end): a signup seen from now on is after them."""
        done = int(t // self._width)
        for w in [w for w in self._by_window if w < done]:
            for user in self._by_window.pop(w):
                steps = self._by_user.get(user)
                if steps is None:
                    continue   # taken by its signup since
                while steps and steps[0][0] < t:
                    steps.popleft()
                if steps:
                    self._file(user, steps[0][0])
                else:
                    del self._by_user[user]

    def oldest(self) -> float | None:
        """Time of the oldest step held (None when nothing is)."""
        return min((steps[0][0] for steps in self._by_user.values()), default=None)

    def __len__(self) -> int:
        return len(self._by_user)

    def _file(self, user: str, ts: float) -> None:
        w = int(ts // self._width)
        users = self._by_window.get(w)
        if users is None:
            self._by_window[w] = [user]
        elif users[-1] != user:
            users.append(user)


def _time(step: tuple[float, Any]) -> float:
    return step[0]
