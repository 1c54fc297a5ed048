"""Event-time windowed KPI engine: events in, one snapshot per KPI and series per closed window.

``add`` only counts, into per-window accumulators keyed by the event's (segment, channel); the
KPIs of docs/kpis.md are computed once per window when ``advance`` closes it, from those counts
and from level/trailing state updated in window order. Everything is plain Python attributes, so
the engine pickles (the worker checkpoints it) and a replay gives the same snapshots.

>>> eng = KpiEngine(window_s=3600, lateness_s=600)
>>> eng.add({"event_id": "e1", "kind": "signup", "ts": 100.0, "user_id": "u1",
...          "segment": "new_grad", "channel": "organic", "referred_by": None})
>>> eng.add({"event_id": "e1", "kind": "signup", "ts": 100.0, "user_id": "u1",
...          "segment": "new_grad", "channel": "organic", "referred_by": None})
'duplicate'
>>> eng.advance(3600.0)          # window [0, 3600) waits for late events until 4200
[]
>>> [(s.segment, s.channel, s.value, s.complete)
...  for s in eng.advance(4200.0) if s.kpi == "signups" and s.value]
[('all', 'all', 1.0, True), ('new_grad', 'all', 1.0, True), ('all', 'organic', 1.0, True)]
>>> eng.add({"event_id": "e2", "kind": "scan", "ts": 3599.0, "user_id": "u1",
...          "segment": "new_grad", "channel": "organic", "match_score": 0.5})
'late'
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

from core.timefmt import iso_utc
from core.vocabulary import ALL, CHANNELS, EVENT_KINDS, SEGMENTS
from kpis.cohorts import CohortTracker
from kpis.formulas import (
    DAY_S,
    FUNNEL_INPUTS,
    KPIS,
    TRAILING_ACTIVE_S,
    TRAILING_DAILY_S,
    KpiInputs,
    cohort_value,
    evaluate,
    subscription_days,
)
from kpis.funnel import FunnelTracker

__all__ = ["EARLY_KPIS", "KpiEngine", "KpiMerger", "KpiSnapshot", "PartitionWindows", "Peek",
           "WindowInputs", "snapshots_by_window"]

Key = tuple[str | None, str | None]
"""(segment, channel) as found on an event; spend has no segment (None)."""

# Slots of a window's per-key counter list. Money is kept in integer cents (match scores in
# millionths) so sums are exact
# and independent of arrival order.
_SIGNUPS, _SCANS, _MATCH_SUM, _CONV, _PAYMENTS, _REVENUE_C, _FAILED, _CANCELS, _SPEND_C, \
    _REFERRED = range(10)
_TRAILING = (_CANCELS, _CONV, _SPEND_C, _REFERRED)
_KINDS = frozenset(EVENT_KINDS)
# Subscription values are kept in integer 1/1200 USD (a twelfth of a cent): a monthly plan of
# `c` cents is worth 12 * c, an annual plan of `c` cents c / 12 cents = c units per month.
_MRR_UNITS_PER_USD = 1200
# Match scores are summed in integer millionths, so a window's match rate does not depend on
# the order partitions are read in (a float sum would differ in its last bits).
_MATCH_UNITS = 1_000_000
_FIXED_SERIES: tuple[tuple[str, str], ...] = (
    ((ALL, ALL),) + tuple((s, ALL) for s in SEGMENTS) + tuple((ALL, c) for c in CHANNELS))
_FIXED_SET = frozenset(_FIXED_SERIES)
_NOT_PER_SEGMENT = frozenset(k.id for k in KPIS if not k.per_segment)
_WARMUP = {k.id: k.warmup_s for k in KPIS}
EARLY_KPIS = frozenset(k.id for k in KPIS if k.early)
"""KPIs also judged on an open window's running counts (``KpiDef.early``)."""
# Positions in KpiInputs of what the engine sums per series.
_N_INPUTS = len(KpiInputs._fields)
_I = {name: i for i, name in enumerate(KpiInputs._fields)}
_WINDOW_INPUTS = tuple((slot, _I[name]) for slot, name in (
    (_SIGNUPS, "signups"), (_SCANS, "scans"), (_MATCH_SUM, "match_sum"), (_CONV, "conversions"),
    (_PAYMENTS, "payments"), (_REVENUE_C, "revenue"), (_FAILED, "failed")))
_TRAILING_INPUTS = tuple(_I[name] for name in (
    "cancels_30d", "conversions_30d", "spend_30d", "referred_30d"))   # same order as _TRAILING
_I_MRR, _I_SUBS, _I_MRR_START, _I_SUBS_START = (
    _I["mrr"], _I["subs"], _I["mrr_start"], _I["subs_start"])
_I_MAU, _I_DAU, _I_REFERRERS = _I["mau"], _I["dau"], _I["referrers_30d"]
_I_REVENUE, _I_SPEND, _I_MATCH_SUM = _I["revenue"], _I["spend_30d"], _I["match_sum"]
_I_FUNNEL = tuple(_I[name] for name in FUNNEL_INPUTS)
Cohort = tuple[str, str, Key, int, int]
"""(kpi, cohort week start ISO date, key, numerator, denominator) from kpis/cohorts.py."""


class KpiSnapshot(NamedTuple):
    """Value of one KPI for one series (segment, channel) over one closed window."""

    kpi: str
    segment: str
    channel: str
    window_start: float
    window_end: float
    value: float
    n: float
    complete: bool = True   # False while the stream is shorter than the KPI's warm-up
    cohort: str | None = None   # cohort KPIs: the signup week (ISO date of its Monday)
    as_of: float | None = None   # an open window's running value: its events before this time

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; window bounds as ISO-8601 UTC strings plus ``*_ts`` epoch floats."""
        doc = {
            "kpi": self.kpi, "segment": self.segment, "channel": self.channel,
            "window_start": iso_utc(self.window_start, fraction="milliseconds"),
            "window_end": iso_utc(self.window_end, fraction="milliseconds"),
            "window_start_ts": self.window_start, "window_end_ts": self.window_end,
            "value": self.value, "n": self.n, "complete": self.complete,
        }
        if self.cohort is not None:
            doc["cohort"] = self.cohort
        if self.as_of is not None:
            doc["as_of"], doc["as_of_ts"] = iso_utc(self.as_of, fraction="milliseconds"), self.as_of
        return doc


def snapshots_by_window(
        snapshots: list[KpiSnapshot]) -> dict[float, list[KpiSnapshot]]:
    """Group snapshots by ``window_start``, keeping their order."""
    out: dict[float, list[KpiSnapshot]] = {}
    for s in snapshots:
        out.setdefault(s.window_start, []).append(s)
    return out


def _week_start_ts(cohort: str) -> float:
    return datetime.fromisoformat(cohort).replace(tzinfo=UTC).timestamp()


def _cents(amount: float) -> int:
    return round(amount * 100)


def _bump(d: dict[Any, int], key: Any, delta: int) -> None:
    """Add ``delta`` to ``d[key]``, dropping the key at 0 so dicts stay small."""
    v = d.get(key, 0) + delta
    if v:
        d[key] = v
    else:
        d.pop(key, None)


def _window_rows(rows: dict[Key, list[int]]) -> dict[Key, list[int]]:
    """Only the window's own fields of closed-window rows (what a :class:`Peek` holds)."""
    out = {}
    for key, r in rows.items():
        w = out[key] = [0] * _N_INPUTS
        for _slot, i in _WINDOW_INPUTS:
            w[i] = r[i]
    return out


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


class WindowInputs(NamedTuple):
    """One closed window of one partition: what :class:`KpiMerger` sums across partitions.

    ``rows`` maps an event key (segment, channel) to the :class:`~kpis.formulas.KpiInputs`
    fields as integers in exact units (cents, 1/1200 USD, millionths of a match score);
    ``referrals`` are the window's (referrer, key of the referred signup); ``cohorts`` the cohort
    KPI counts whose horizon passed in it.
    """

    window: int
    rows: dict[Key, list[int]]
    referrals: list[tuple[str, Key]]
    cohorts: list[Cohort]


class Peek(NamedTuple):
    """The running counts of one partition's open window at an event-time tick.

    ``rows`` holds, per event key, the window's own :class:`~kpis.formulas.KpiInputs` fields
    (signups, scans, match sum, conversions, payments, revenue, failed; every other field 0) of
    the events read before the partition's event time first reached ``as_of``.
    """

    window: int
    as_of: float
    rows: dict[Key, list[int]]


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
            c[_MATCH_SUM] += round(ev["match_score"] * _MATCH_UNITS)
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
                cents = _cents(ev["amount"])
                plan = ev["plan"]
                c[_PAYMENTS] += 1
                c[_REVENUE_C] += cents
                if ev.get("first"):
                    c[_CONV] += 1
                units = cents if plan == "annual" else 12 * cents
                win.level.append((ts, eid, "payment", ev["user_id"], plan, units, key))
            elif status == "failed":
                c[_FAILED] += 1
        elif kind == "cancel":
            c[_CANCELS] += 1
            win.level.append((ts, eid, "cancel", ev["user_id"], ev.get("plan", ""), 0, key))
        else:  # spend
            c[_SPEND_C] += _cents(ev["amount"])
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
                    r = rows[key] = [0] * _N_INPUTS
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
                    r = rows[key] = [0] * _N_INPUTS
                for i, v in zip(_I_FUNNEL, counts, strict=True):
                    r[i] = v
            cohorts = self._cohorts.close(end)
        self._prev_level = {k: (self._mrr.get(k, 0), n) for k, n in self._nsubs.items()}
        return WindowInputs(w, rows, win.referrals, cohorts)

    def _expire_trailing(self, w: int) -> None:
        """Drop what leaves the 24 h and 30 d horizons when window ``w`` becomes the last one."""
        for key in self._active_buckets.get(w - self._n1, {}).values():
            _bump(self._dau, key, -1)
        gone = self._active_buckets.pop(w - self._n30, None)
        if gone:
            for user, key in gone.items():
                _bump(self._mau, key, -1)
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
            _bump(self._mrr, sub[2], -sub[0])
            _bump(self._nsubs, sub[2], -1)
            if expiry < sub[1]:   # earlier than the live heap entry: replace that entry
                self._serial += 1
                sub[3] = self._serial
                heapq.heappush(self._expiries, (expiry, self._serial, user))
            sub[0], sub[1], sub[2] = units, expiry, key   # a later expiry is re-pushed lazily
        _bump(self._mrr, key, units)
        _bump(self._nsubs, key, 1)

    def _cancel(self, user: str) -> None:
        sub = self._subs.pop(user, None)
        if sub is not None:
            _bump(self._mrr, sub[2], -sub[0])
            _bump(self._nsubs, sub[2], -1)

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
                _bump(mau, key, 1)
                _bump(dau, key, 1)
            else:
                old = buckets[prev].pop(user)
                if old != key:
                    _bump(mau, old, -1)
                    _bump(mau, key, 1)
                    if prev > recent:
                        _bump(dau, old, -1)
                    _bump(dau, key, 1)
                elif prev <= recent:   # active again after more than 24 h: back in the DAU
                    _bump(dau, key, 1)
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
                r = rows[key] = [0] * _N_INPUTS
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


class KpiMerger:
    """Sums the closed windows of ``partitions`` partitions and turns them into KPIs.

    A window is complete once every partition has closed it (``add``'s ``closed_before``);
    then its inputs are summed per series, distinct referrers counted, and the formulas of
    kpis/formulas.py applied. A window given twice for one partition (a partition that moved
    to another worker re-closes what it closed after its last checkpoint) counts once.

    Peeks (:class:`Peek`, an open window's running counts) of the window after the last one
    emitted give snapshots with ``as_of`` (early KPIs only, :data:`EARLY_KPIS`): the tick
    ``(w, t)`` comes out once every partition has peeked at or past it (a partition that
    peeked only later windows had no events in ``w`` before ``t``), and only after window
    ``w - 1`` has come out, so an open window is always judged after the one before it. Peeks of
    a window that has come out are dropped, and so are ticks before ``peek_from`` (set by a live
    stage from the wall clock, as each partition's ``PartitionWindows.peek_from`` was, but later:
    a tick kept here was kept by every partition).
    """

    peek_from = -math.inf   # (event time) the first tick merged; set by the caller

    def __init__(self, window_s: float = 3600, partitions: int = 1):
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions!r}")
        self.partitions = partitions
        self._width = float(window_s)
        self._n30 = max(1, round(TRAILING_ACTIVE_S / window_s))
        self._progress: dict[int, int] = {}                 # partition -> closed_before
        self._pending: dict[int, dict[int, WindowInputs]] = {}   # window -> partition -> inputs
        self._next: int | None = None     # the next window to emit
        self._first_window: int | None = None  # the first window emitted: where the stream began
        self._series_of: dict[Key, tuple[tuple[str, str], ...]] = {}
        # distinct referrers per series: (series, referrer) -> window index of last referral
        self._ref_last: dict[tuple[tuple[str, str], str], int] = {}
        self._ref_buckets: dict[int, set[tuple[tuple[str, str], str]]] = {}
        self._referrers: dict[tuple[str, str], int] = {}
        self._peeks: dict[int, list[Peek]] = {}   # partition -> its peeks not yet merged
        self._peeked: tuple[int, float] | None = None    # the last tick merged

    def add(self, partition: int, closed_before: int | None,
            windows: list[WindowInputs], peeks: list[Peek] | None = None) -> list[KpiSnapshot]:
        """Take one partition's closed windows (and peeks); the snapshots now complete, in
        event-time order: each window's running values, then its final ones."""
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} of a merger of {self.partitions}")
        if peeks:
            self._peeks.setdefault(partition, []).extend(
                peeks if peeks[0].as_of >= self.peek_from
                else [pk for pk in peeks if pk.as_of >= self.peek_from])
        for win in windows:
            if (self._next is not None and win.window < self._next) or not (
                    win.rows or win.referrals or win.cohorts):
                continue   # emitted already, or nothing to add (nor to start the stream with)
            self._pending.setdefault(win.window, {}).setdefault(partition, win)
        if closed_before is not None and closed_before > self._progress.get(partition, -2**62):
            self._progress[partition] = closed_before
        if len(self._progress) < self.partitions:
            return []
        ready = min(self._progress.values())
        if self._next is None:
            if not self._pending:
                return []
            self._next = min(self._pending)
            self._first_window = self._next
        out: list[KpiSnapshot] = []
        while True:
            if self._peeks:
                out.extend(self._ticks(self._next))
            if self._next >= ready:
                return out
            out.extend(self._emit(self._next, self._pending.pop(self._next, {})))
            self._next += 1

    # -- open windows --------------------------------------------------------------------------
    def _ticks(self, w: int) -> list[KpiSnapshot]:
        """The running snapshots of window ``w``'s ticks that every partition has reached.

        A partition reaches tick ``t`` of ``w`` with its first peek at or past it (its own
        counts then, or none if that peek is of a later window), or by having closed ``w``
        without such a peek: it read no event of ``w`` at or after ``t``, so its final counts
        are its counts at ``t``. Peeks of earlier windows are dropped.
        """
        for p in list(self._peeks):
            kept = [pk for pk in self._peeks[p] if pk.window >= w]
            if kept:
                self._peeks[p] = kept
            else:
                del self._peeks[p]
        ticks = sorted({(pk.window, pk.as_of) for pks in self._peeks.values() for pk in pks
                        if pk.window == w and pk.as_of >= self.peek_from
                        and (self._peeked is None or (pk.window, pk.as_of) > self._peeked)})
        out: list[KpiSnapshot] = []
        for tick in ticks:
            rows: dict[Key, list[int]] = {}
            for p in range(self.partitions):
                first = next((pk for pk in self._peeks.get(p, ())
                              if (pk.window, pk.as_of) >= tick), None)
                if first is not None:
                    part = first.rows if first.window == w else {}
                elif self._progress.get(p, -2**62) > w:
                    closed = self._pending.get(w, {}).get(p)
                    part = _window_rows(closed.rows) if closed is not None else {}
                else:
                    return out   # this partition has not reached the tick yet
                for key, r in part.items():
                    total = rows.get(key)
                    rows[key] = r[:] if total is None else list(map(operator.add, total, r))
            out.extend(self._running(w, tick[1], rows))
            self._peeked = tick
        return out

    def _running(self, w: int, as_of: float, rows: dict[Key, list[int]]) -> list[KpiSnapshot]:
        start, end = w * self._width, (w + 1) * self._width
        out = []
        for (segment, channel), x in self._series_inputs(rows, referrers=False).items():
            for kpi, (value, n) in evaluate(x, window_only=True).items():
                if kpi not in EARLY_KPIS or (segment != ALL and kpi in _NOT_PER_SEGMENT):
                    continue
                out.append(KpiSnapshot(kpi, segment, channel, start, end, value, n, True,
                                       None, as_of))
        return out

    def _emit(self, w: int, parts: dict[int, WindowInputs]) -> list[KpiSnapshot]:
        self._expire_referrers(w)
        rows: dict[Key, list[int]] = {}
        cohorts: dict[tuple[str, str, tuple[str, str]], list[int]] = {}
        for p in sorted(parts):
            win = parts[p]
            for key, r in win.rows.items():
                total = rows.get(key)
                rows[key] = r[:] if total is None else list(map(operator.add, total, r))
            self._record_referrals(w, win.referrals)
            for kpi, cohort, key, num, den in win.cohorts:
                for series in self._series(key):
                    acc = cohorts.setdefault((kpi, cohort, series), [0, 0])
                    acc[0] += num
                    acc[1] += den
        inputs = self._series_inputs(rows)
        start, end = w * self._width, (w + 1) * self._width
        covered = (w - (self._first_window if self._first_window is not None else w) + 1) \
            * self._width
        out = []
        for series, x in inputs.items():
            segment, channel = series
            per_segment = segment != ALL
            for kpi, (value, n) in evaluate(x).items():
                if per_segment and kpi in _NOT_PER_SEGMENT:
                    continue
                out.append(KpiSnapshot(kpi, segment, channel, start, end, value, n,
                                       covered >= _WARMUP[kpi]))
        first_ts = (self._first_window or 0) * self._width
        for (kpi, cohort, (segment, channel)), (num, den) in sorted(
                cohorts.items(), key=lambda item: (item[0][0], item[0][1], str(item[0][2]))):
            share = cohort_value(num, den)
            if share is None:
                continue
            whole = _week_start_ts(cohort) >= first_ts   # the stream saw the whole signup week
            out.append(KpiSnapshot(kpi, segment, channel, start, end, share, float(den), whole,
                                   cohort))
        return out

    def _expire_referrers(self, w: int) -> None:
        refs = self._ref_buckets.pop(w - self._n30, None)
        if refs:
            for item in refs:
                _bump(self._referrers, item[0], -1)
                del self._ref_last[item]

    def _record_referrals(self, w: int, referrals: list[tuple[str, Key]]) -> None:
        for referrer, key in referrals:
            for series in self._series(key):
                item = (series, referrer)
                prev = self._ref_last.get(item)
                if prev is None:
                    _bump(self._referrers, series, 1)
                elif prev != w:
                    self._ref_buckets[prev].discard(item)
                self._ref_last[item] = w
                self._ref_buckets.setdefault(w, set()).add(item)

    def _series(self, key: Key) -> tuple[tuple[str, str], ...]:
        s = self._series_of.get(key)
        if s is None:
            segment, channel = key
            found = [(ALL, ALL)]
            if segment is not None:
                found.append((segment, ALL))
            if channel is not None:
                found.append((ALL, channel))
            s = self._series_of[key] = tuple(found)
        return s

    def _series_inputs(self, rows: dict[Key, list[int]],
                       referrers: bool = True) -> dict[tuple[str, str], KpiInputs]:
        """Sum the per-key rows into the series they belong to; fixed series always."""
        acc: dict[tuple[str, str], list[Any]] = {s: [0] * _N_INPUTS for s in _FIXED_SERIES}
        for key, row in rows.items():
            for series in self._series(key):
                total = acc.get(series)
                acc[series] = row[:] if total is None else list(map(operator.add, total, row))
        for series, n in (self._referrers.items() if referrers else ()):
            acc.setdefault(series, [0] * _N_INPUTS)[_I_REFERRERS] = n
        order = list(_FIXED_SERIES) + sorted((s for s in acc if s not in _FIXED_SET), key=str)
        out = {}
        for series in order:
            r = acc[series]
            r[_I_MRR] /= _MRR_UNITS_PER_USD
            r[_I_MRR_START] /= _MRR_UNITS_PER_USD
            r[_I_REVENUE] /= 100
            r[_I_SPEND] /= 100
            r[_I_MATCH_SUM] /= _MATCH_UNITS
            out[series] = KpiInputs(*r)
        return out


class KpiEngine:
    """Events in, KPI snapshots of closed windows out, in one process (replays, evaluation,
    tests): one :class:`PartitionWindows` feeding a one-partition :class:`KpiMerger`.

    Parameters
    ----------
    window_s
        Window length in event-time seconds (``PULSE_WINDOW_SECONDS``).
    lateness_s
        A window ``[start, end)`` closes once the watermark reaches ``end + lateness_s``; events
        for a closed window are reported ``"late"``.

    peek_s
        With ``> 0``, :meth:`advance` also gives the open window's running values of the early
        KPIs every ``peek_s`` of event time (snapshots with ``as_of``, see :class:`Peek`).

    Trailing horizons (24 h, 30 d) are counted in whole windows ending at ``window_end``
    (``round(horizon / window_s)``, at least one), exact when ``window_s`` divides them.
    """

    def __init__(self, window_s: float = 3600, lateness_s: float = 600, peek_s: float = 0.0):
        self.windows = PartitionWindows(window_s, lateness_s, peek_s)
        self.merger = KpiMerger(window_s, partitions=1)
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.peek_s = peek_s

    @property
    def watermark(self) -> float:
        """Largest event time seen by ``add`` or given to ``advance`` (-inf before any)."""
        return self.windows.watermark

    @property
    def count_by_kind(self) -> dict[str, int]:
        return self.windows.count_by_kind

    def add(self, ev: dict[str, Any]) -> str | None:
        """Count one validated event; None, or ``"duplicate"``/``"late"`` (then nothing changed)."""
        return self.windows.add(ev)

    def advance(self, watermark: float, complete: bool = False) -> list[KpiSnapshot]:
        """Close, in order, every window ending at or before ``watermark - lateness_s``; with
        ``peek_s``, the running values since the last call too (in event-time order).

        ``complete``: every event before ``watermark`` has been added (an offline run fed in
        event-time order), so the ticks up to it are taken now rather than when the next event
        arrives, as a live stream, where the next event comes seconds after the tick, has them.
        """
        if complete:
            self.windows.peek_through(watermark)
        closed = self.windows.advance(watermark)
        peeks = self.windows.take_peeks()
        if not closed and not peeks:
            return []
        return self.merger.add(0, self.windows.closed_before, closed, peeks)
