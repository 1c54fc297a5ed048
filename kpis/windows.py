"""Event-time windows of one input partition: events in, integer sums per closed window out.

:class:`PartitionWindows` counts the events of one partition into tumbling windows and, at each
close, hands on the window's :class:`~kpis.rows.WindowInputs` (and, at early-look ticks, the
open window's :class:`~kpis.rows.Peek`); :class:`~kpis.merger.KpiMerger` adds partitions up
and applies the formulas. Plain Python attributes, so a partition's state is checkpointed
(stream/checkpoint.py) and a replay gives the same windows.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

from core.vocabulary import EVENT_KINDS
from kpis.cohorts import CohortTracker
from kpis.formulas import (
    DAY_S,
    FUNNEL_INPUTS,
    TRAILING_ACTIVE_S,
    TRAILING_DAILY_S,
    subscription_days,
)
from kpis.funnel import FunnelTracker
from kpis.rows import (
    INDEX,
    MATCH_UNITS,
    N_INPUTS,
    WINDOW_FIELDS,
    Cohort,
    Key,
    Peek,
    WindowInputs,
    bump,
    cents,
)

__all__ = ["PartitionWindows"]

# Slots of a window's per-key counter list. Money is kept in integer cents (match scores in
# millionths) so sums are exact and independent of arrival order.
_SIGNUPS, _SCANS, _MATCH_SUM, _CONV, _PAYMENTS, _REVENUE_C, _FAILED, _CANCELS, _SPEND_C, \
    _REFERRED = range(10)
_TRAILING = (_CANCELS, _CONV, _SPEND_C, _REFERRED)
_KINDS = frozenset(EVENT_KINDS)
# Positions in KpiInputs of what a window sums per key.
_WINDOW_INPUTS = tuple(zip((_SIGNUPS, _SCANS, _MATCH_SUM, _CONV, _PAYMENTS, _REVENUE_C, _FAILED),
                           (INDEX[name] for name in WINDOW_FIELDS), strict=True))
_TRAILING_INPUTS = tuple(INDEX[name] for name in (
    "cancels_30d", "conversions_30d", "spend_30d", "referred_30d"))   # same order as _TRAILING
_I_MRR, _I_SUBS, _I_MRR_START, _I_SUBS_START = (
    INDEX["mrr"], INDEX["subs"], INDEX["mrr_start"], INDEX["subs_start"])
_I_MAU, _I_DAU = INDEX["mau"], INDEX["dau"]
_I_FUNNEL = tuple(INDEX[name] for name in FUNNEL_INPUTS)


class _Window:
    """What ``add`` gathered for one open window."""

    __slots__ = ("counts", "ids", "active", "level", "referrals")

    def __init__(self) -> None:
        self.counts: dict[Key, list[Any]] = {}
        self.ids: set[str] = set()          # event ids counted here (dedupe while open)
        self.active: dict[str, Key] = {}    # user -> key, users with a scan or activity
        # (ts, event_id, kind, user, plan, mrr units, key) of succeeded payments and cancels
        self.level: list[tuple[float, str, str, str, str, int, Key]] = []
        self.referrals: list[tuple[str, Key]] = []   # (referrer, key of the referred signup)


class PartitionWindows:
    """The counting half of :class:`KpiEngine`: the events of one input partition.

    Tumbling event-time windows of ``window_s`` seconds that close ``lateness_s`` late. A closed
    window comes out as :class:`WindowInputs` (integer sums per event key), not KPIs: every
    quantity is additive over disjoint sets of users, so the windows of several partitions (each
    user's events are in one partition) are summed by :class:`KpiMerger` before the formulas.
    Distinct referrers are the exception (one referrer's referrals may be in several
    partitions), so referrals are handed on and counted by the merger.

    With ``peek_s > 0``, every time the partition's event time (the newest event ``add`` took)
    crosses a multiple of ``peek_s``, the running counts of the window it was in are kept as a
    :class:`Peek` at the last tick crossed (at most the window's end), for :meth:`take_peeks`:
    what an early alert is judged on. Peeks follow the events alone (not ``advance``, which a
    wall clock may drive), so a replay at any speed makes the same ones. Ticks before
    ``peek_from`` are not kept: a live stage sets it from the wall clock, so the windows of a
    backlog, which close seconds later anyway, are not looked at early.
    """

    peek_from = -math.inf   # (event time) the first tick kept; set by the caller

    def __init__(self, window_s: float = 3600, lateness_s: float = 600, peek_s: float = 0.0):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s!r}")
        if not 0 <= peek_s < window_s:
            raise ValueError(f"peek_s must be >= 0 and shorter than the window, got {peek_s!r}")
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.peek_s = float(peek_s)
        self._peek_mark = -math.inf              # newest event time taken by add()
        self._next_tick = -math.inf              # first tick after it: the per-event check
        self._peeks: list[Peek] = []
        self._width = float(window_s)
        self.count_by_kind: dict[str, int] = {}
        self._n30 = max(1, round(TRAILING_ACTIVE_S / window_s))
        self._n1 = max(1, round(TRAILING_DAILY_S / window_s))
        self._watermark = -math.inf
        self._open: dict[int, _Window] = {}
        self._next_close: int | None = None    # index of the first window not yet closed
        # subscriptions: user -> [mrr units, expiry ts, key, serial]; one live heap entry each
        self._subs: dict[str, list[Any]] = {}
        self._expiries: list[tuple[float, int, str]] = []   # heap of (expiry, serial, user)
        self._serial = 0
        self._mrr: dict[Key, int] = {}        # mrr units of active subscriptions, by key
        self._nsubs: dict[Key, int] = {}      # active subscriptions, by key
        self._prev_level: dict[Key, tuple[int, int]] = {}   # (mrr, subs) at last window end
        # activity: user -> window index of its last scan/activity (within 30 d)
        self._last_active: dict[str, int] = {}
        self._active_buckets: dict[int, dict[str, Key]] = {}
        self._mau: dict[Key, int] = {}
        self._dau: dict[Key, int] = {}
        # trailing 30 d counters (cancels, conversions, spend cents, referred signups)
        self._trail: deque[tuple[int, dict[Key, tuple[int, ...]]]] = deque()
        self._trail_sum: dict[Key, list[int]] = {}
        # signup funnel and weekly cohorts (windows that divide a day only)
        whole = DAY_S % window_s == 0
        self._funnel = FunnelTracker(window_s) if whole else None
        self._cohorts = CohortTracker(window_s) if whole else None

    @property
    def watermark(self) -> float:
        """Largest event time seen by ``add`` or given to ``advance`` (-inf before any)."""
        return self._watermark

    @property
    def closed_before(self) -> int | None:
        """Index of the first window not closed yet (None before the first close)."""
        return self._next_close

    def add(self, ev: dict[str, Any]) -> str | None:
        """Count one validated event; None, or ``"duplicate"``/``"late"`` (then nothing changed)."""
        kind = ev["kind"]
        if kind not in _KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(_KINDS)}")
        ts = ev["ts"]
        if self.peek_s and ts > self._peek_mark:
            if ts >= self._next_tick:
                self._maybe_peek(ts)
            else:
                self._peek_mark = ts
        w = int(ts // self._width)
        if self._next_close is not None and w < self._next_close:
            return "late"
        win = self._open.get(w)
        if win is None:
            win = self._open[w] = _Window()
        eid = ev["event_id"]
        if eid in win.ids:
            return "duplicate"
        win.ids.add(eid)
        key = (ev.get("segment"), ev.get("channel"))
        c = win.counts.get(key)
        if c is None:
            c = win.counts[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        if kind == "scan":
            c[_SCANS] += 1
            c[_MATCH_SUM] += round(ev["match_score"] * MATCH_UNITS)
            win.active[ev["user_id"]] = key
        elif kind == "activity":
            win.active[ev["user_id"]] = key
        elif kind == "signup":
            c[_SIGNUPS] += 1
            referrer = ev.get("referred_by")
            if referrer:
                c[_REFERRED] += 1
                win.referrals.append((referrer, key))
        elif kind == "payment":
            status = ev["status"]
            if status == "succeeded":
                paid = cents(ev["amount"])
                plan = ev["plan"]
                c[_PAYMENTS] += 1
                c[_REVENUE_C] += paid
                if ev.get("first"):
                    c[_CONV] += 1
                units = paid if plan == "annual" else 12 * paid
                win.level.append((ts, eid, "payment", ev["user_id"], plan, units, key))
            elif status == "failed":
                c[_FAILED] += 1
        elif kind == "cancel":
            c[_CANCELS] += 1
            win.level.append((ts, eid, "cancel", ev["user_id"], ev.get("plan", ""), 0, key))
        else:  # spend
            c[_SPEND_C] += cents(ev["amount"])
        self.count_by_kind[kind] = self.count_by_kind.get(kind, 0) + 1
        if ts > self._watermark:
            self._watermark = ts
        if self._funnel is not None and kind != "spend":
            self._funnel.observe(ev)
            self._cohorts.observe(ev)   # type: ignore[union-attr]
        return None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # checkpoints written before early alerts (the worker sets peek_s when it resumes one)
        state.setdefault("peek_s", 0.0)
        state.setdefault("_peek_mark", -math.inf)
        state.setdefault("_peeks", [])
        state.setdefault("_next_tick", -math.inf)
        self.__dict__.update(state)

    def _maybe_peek(self, ts: float) -> None:
        """Keep a :class:`Peek` when event time moves past a tick (before ``ts`` is counted)."""
        old, self._peek_mark = self._peek_mark, ts
        self._next_tick = (math.floor(ts / self.peek_s) + 1) * self.peek_s
        if not math.isfinite(old) or math.floor(ts / self.peek_s) <= math.floor(old / self.peek_s):
            return
        w = int(old // self._width)
        last = math.floor(ts / self.peek_s) * self.peek_s
        as_of = min(last, (w + 1) * self._width)
        if (self._next_close is None or w >= self._next_close) and \
                as_of >= self.peek_from:   # else its final counts are out, or it is too old
            win = self._open.get(w)
            rows: dict[Key, list[int]] = {}
            if win is not None:
                for key, c in win.counts.items():
                    r = rows[key] = [0] * N_INPUTS
                    for slot, i in _WINDOW_INPUTS:
                        r[i] = c[slot]
            self._peeks.append(Peek(w, as_of, rows))
        w_new = int(ts // self._width)
        if w_new > w and last > w_new * self._width and last >= self.peek_from:
            # jumped into a later window past one of its ticks: nothing of it read before then
            self._peeks.append(Peek(w_new, last, {}))

    def peek_through(self, t: float) -> None:
        """Take the peeks of the ticks up to ``t``, as an event at ``t`` would (not counted)."""
        if self.peek_s and t > self._peek_mark:
            self._maybe_peek(t)

    def take_peeks(self, until: float = math.inf) -> list[Peek]:
        """The peeks kept since the last call, oldest first; only those of ticks at or before
        ``until`` (the others stay, and are saved with the windows)."""
        if not self._peeks or self._peeks[-1].as_of <= until:
            out, self._peeks = self._peeks, []
            return out
        cut = next(i for i, pk in enumerate(self._peeks) if pk.as_of > until)
        out, self._peeks = self._peeks[:cut], self._peeks[cut:]
        return out

    def advance(self, watermark: float, close_empty: bool = False) -> list[WindowInputs]:
        """Close, in order, every window ending at or before ``watermark - lateness_s``.

        Before anything was counted nothing closes, unless ``close_empty``: then
        ``closed_before`` moves on all the same, as it must for a partition that is quiet while
        others are not (it must not hold the merge back, and its events for those windows are
        late, as they would be in one engine reading every partition).
        """
        if watermark > self._watermark:
            self._watermark = watermark
        limit_t = watermark - self.lateness_s
        first = self._next_close
        if first is None:
            if not self._open:
                if close_empty and math.isfinite(limit_t):
                    self._next_close = int(limit_t // self._width)
                return []
            first = min(self._open)
        if math.isfinite(limit_t):
            limit = int(limit_t // self._width)
        elif limit_t > 0:   # +inf: close everything that is open, nothing beyond
            limit = max(self._open, default=first - 1) + 1
        else:
            return []
        out: list[WindowInputs] = []
        for w in range(first, limit):
            self._next_close = w + 1
            out.append(self._close(w))
        return out

    # -- closing a window ---------------------------------------------------------------------

    def _close(self, w: int) -> WindowInputs:
        win = self._open.pop(w, None) or _Window()
        end = (w + 1) * self._width
        self._expire_trailing(w)
        for ts, _eid, kind, user, plan, units, key in sorted(win.level):
            self._expire_subs(ts)
            if kind == "payment":
                self._pay(user, plan, units, key, ts)
            else:
                self._cancel(user)
        self._expire_subs(end)
        self._record_activity(w, win.active)
        self._record_trailing(w, win.counts)
        rows = self._key_inputs(win.counts)
        cohorts: list[Cohort] = []
        if self._funnel is not None and self._cohorts is not None:
            for key, counts in self._funnel.close(end).items():
                r = rows.get(key)
                if r is None:
                    r = rows[key] = [0] * N_INPUTS
                for i, v in zip(_I_FUNNEL, counts, strict=True):
                    r[i] = v
            cohorts = self._cohorts.close(end)
        self._prev_level = {k: (self._mrr.get(k, 0), n) for k, n in self._nsubs.items()}
        return WindowInputs(w, rows, win.referrals, cohorts)

    def _expire_trailing(self, w: int) -> None:
        """Drop what leaves the 24 h and 30 d horizons when window ``w`` becomes the last one."""
        for key in self._active_buckets.get(w - self._n1, {}).values():
            bump(self._dau, key, -1)
        gone = self._active_buckets.pop(w - self._n30, None)
        if gone:
            for user, key in gone.items():
                bump(self._mau, key, -1)
                del self._last_active[user]
        while self._trail and self._trail[0][0] <= w - self._n30:
            for key, vals in self._trail.popleft()[1].items():
                acc = self._trail_sum[key]
                for i, v in enumerate(vals):
                    acc[i] -= v
                if not any(acc):
                    del self._trail_sum[key]

    def _pay(self, user: str, plan: str, units: int, key: Key, ts: float) -> None:
        expiry = ts + subscription_days(plan) * DAY_S
        sub = self._subs.get(user)
        if sub is None:
            self._serial += 1
            self._subs[user] = [units, expiry, key, self._serial]
            heapq.heappush(self._expiries, (expiry, self._serial, user))
        else:
            bump(self._mrr, sub[2], -sub[0])
            bump(self._nsubs, sub[2], -1)
            if expiry < sub[1]:   # earlier than the live heap entry: replace that entry
                self._serial += 1
                sub[3] = self._serial
                heapq.heappush(self._expiries, (expiry, self._serial, user))
            sub[0], sub[1], sub[2] = units, expiry, key   # a later expiry is re-pushed lazily
        bump(self._mrr, key, units)
        bump(self._nsubs, key, 1)

    def _cancel(self, user: str) -> None:
        sub = self._subs.pop(user, None)
        if sub is not None:
            bump(self._mrr, sub[2], -sub[0])
            bump(self._nsubs, sub[2], -1)

    def _expire_subs(self, t: float) -> None:
        """End subscriptions whose expiry is at or before ``t`` (inactive from expiry on)."""
        heap = self._expiries
        while heap and heap[0][0] <= t:
            _expiry, serial, user = heapq.heappop(heap)
            sub = self._subs.get(user)
            if sub is None or sub[3] != serial:
                continue                      # cancelled, or replaced by a shorter entry
            if sub[1] > t:                    # renewed since: wait for the new expiry
                heapq.heappush(heap, (sub[1], serial, user))
                continue
            self._cancel(user)

    def _record_activity(self, w: int, active: dict[str, Key]) -> None:
        recent = w - self._n1
        buckets = self._active_buckets
        bucket = buckets.setdefault(w, {}) if active else {}
        last_active, mau, dau = self._last_active, self._mau, self._dau
        for user, key in active.items():
            prev = last_active.get(user)
            if prev is None:
                bump(mau, key, 1)
                bump(dau, key, 1)
            else:
                old = buckets[prev].pop(user)
                if old != key:
                    bump(mau, old, -1)
                    bump(mau, key, 1)
                    if prev > recent:
                        bump(dau, old, -1)
                    bump(dau, key, 1)
                elif prev <= recent:   # active again after more than 24 h: back in the DAU
                    bump(dau, key, 1)
                # else: still counted under the same key in both (most users, every window)
            last_active[user] = w
            bucket[user] = key

    def _record_trailing(self, w: int, counts: dict[Key, list[Any]]) -> None:
        kept: dict[Key, tuple[int, ...]] = {}
        for key, c in counts.items():
            vals = tuple(c[i] for i in _TRAILING)
            if any(vals):
                kept[key] = vals
                acc = self._trail_sum.setdefault(key, [0] * len(_TRAILING))
                for i, v in enumerate(vals):
                    acc[i] += v
        if kept:
            self._trail.append((w, kept))

    def _key_inputs(self, counts: dict[Key, list[Any]]) -> dict[Key, list[int]]:
        """Every per-key quantity of the window being closed, in KpiInputs order."""
        rows: dict[Key, list[int]] = {}

        def row(key: Key) -> list[int]:
            r = rows.get(key)
            if r is None:
                r = rows[key] = [0] * N_INPUTS
            return r

        for key, c in counts.items():
            r = row(key)
            for slot, i in _WINDOW_INPUTS:
                r[i] = c[slot]
        for field, per_key in ((_I_MRR, self._mrr), (_I_SUBS, self._nsubs), (_I_MAU, self._mau),
                               (_I_DAU, self._dau)):
            for key, v in per_key.items():
                row(key)[field] = v
        for key, (units, n) in self._prev_level.items():
            r = row(key)
            r[_I_MRR_START], r[_I_SUBS_START] = units, n
        for key, vals in self._trail_sum.items():
            r = row(key)
            for i, v in zip(_TRAILING_INPUTS, vals, strict=True):
                r[i] = v
        return rows
