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
>>> [s for s in eng.advance(4200.0) if s.kpi == "signups" and s.value]
[KpiSnapshot(kpi='signups', segment='all', channel='all', window_start=0.0, window_end=3600.0,
             value=1.0, n=1.0, complete=True),
 KpiSnapshot(kpi='signups', segment='new_grad', channel='all', window_start=0.0,
             window_end=3600.0, value=1.0, n=1.0, complete=True),
 KpiSnapshot(kpi='signups', segment='all', channel='organic', window_start=0.0,
             window_end=3600.0, value=1.0, n=1.0, complete=True)]
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

from kpis.formulas import (
    ALL,
    CHANNELS,
    DAY_S,
    KPIS,
    SEGMENTS,
    TRAILING_ACTIVE_S,
    TRAILING_DAILY_S,
    KpiInputs,
    evaluate,
    subscription_days,
)

__all__ = ["KpiEngine", "KpiSnapshot", "snapshots_by_window"]

Key = tuple[str | None, str | None]
"""(segment, channel) as found on an event; spend has no segment (None)."""

# Slots of a window's per-key counter list. Money is kept in integer cents (match scores in
# millionths) so sums are exact
# and independent of arrival order.
_SIGNUPS, _SCANS, _MATCH_SUM, _CONV, _PAYMENTS, _REVENUE_C, _FAILED, _CANCELS, _SPEND_C, \
    _REFERRED = range(10)
_TRAILING = (_CANCELS, _CONV, _SPEND_C, _REFERRED)
_KINDS = frozenset({"signup", "scan", "payment", "cancel", "spend", "activity"})
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

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; window bounds as ISO-8601 UTC strings plus ``*_ts`` epoch floats."""
        return {
            "kpi": self.kpi, "segment": self.segment, "channel": self.channel,
            "window_start": _iso(self.window_start), "window_end": _iso(self.window_end),
            "window_start_ts": self.window_start, "window_end_ts": self.window_end,
            "value": self.value, "n": self.n, "complete": self.complete,
        }


def snapshots_by_window(
        snapshots: list[KpiSnapshot]) -> dict[float, list[KpiSnapshot]]:
    """Group snapshots by ``window_start``, keeping their order."""
    out: dict[float, list[KpiSnapshot]] = {}
    for s in snapshots:
        out.setdefault(s.window_start, []).append(s)
    return out


def _iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cents(amount: float) -> int:
    return round(amount * 100)


def _bump(d: dict[Any, int], key: Any, delta: int) -> None:
    """Add ``delta`` to ``d[key]``, dropping the key at 0 so dicts stay small."""
    v = d.get(key, 0) + delta
    if v:
        d[key] = v
    else:
        d.pop(key, None)


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


class KpiEngine:
    """Tumbling event-time windows of ``window_s`` seconds that close ``lateness_s`` late.

    Parameters
    ----------
    window_s
        Window length in event-time seconds (``PULSE_WINDOW_SECONDS``).
    lateness_s
        A window ``[start, end)`` closes once the watermark reaches ``end + lateness_s``; events
        for a closed window are reported ``"late"``.

    Trailing horizons (24 h, 30 d) are counted in whole windows ending at ``window_end``
    (``round(horizon / window_s)``, at least one), exact when ``window_s`` divides them.
    """

    def __init__(self, window_s: float = 3600, lateness_s: float = 600):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s!r}")
        self.window_s = window_s
        self.lateness_s = lateness_s
        self._width = float(window_s)
        self.count_by_kind: dict[str, int] = {}
        self._n30 = max(1, round(TRAILING_ACTIVE_S / window_s))
        self._n1 = max(1, round(TRAILING_DAILY_S / window_s))
        self._watermark = -math.inf
        self._open: dict[int, _Window] = {}
        self._next_close: int | None = None    # index of the first window not yet closed
        self._first_window: int | None = None  # the first window closed: where the stream began
        self._series_of: dict[Key, tuple[tuple[str, str], ...]] = {}
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
        # distinct referrers per series: (series, referrer) -> window index of last referral
        self._ref_last: dict[tuple[tuple[str, str], str], int] = {}
        self._ref_buckets: dict[int, set[tuple[tuple[str, str], str]]] = {}
        self._referrers: dict[tuple[str, str], int] = {}

    @property
    def watermark(self) -> float:
        """Largest event time seen by ``add`` or given to ``advance`` (-inf before any)."""
        return self._watermark

    def add(self, ev: dict[str, Any]) -> str | None:
        """Count one validated event; None, or ``"duplicate"``/``"late"`` (then nothing changed)."""
        kind = ev["kind"]
        if kind not in _KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(_KINDS)}")
        ts = ev["ts"]
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
            c = win.counts[key] = [0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0]
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
        return None

    def advance(self, watermark: float) -> list[KpiSnapshot]:
        """Close, in order, every window ending at or before ``watermark - lateness_s``."""
        if watermark > self._watermark:
            self._watermark = watermark
        first = self._next_close
        if first is None:
            if not self._open:
                return []
            first = min(self._open)
        limit_t = watermark - self.lateness_s
        if math.isfinite(limit_t):
            limit = int(limit_t // self._width)
        elif limit_t > 0:   # +inf: close everything that is open, nothing beyond
            limit = max(self._open, default=first - 1) + 1
        else:
            return []
        out: list[KpiSnapshot] = []
        if self._first_window is None and limit > first:
            self._first_window = first
        for w in range(first, limit):
            self._next_close = w + 1
            out.extend(self._close(w))
        return out

    # -- closing a window ---------------------------------------------------------------------

    def _close(self, w: int) -> list[KpiSnapshot]:
        win = self._open.pop(w, None) or _Window()
        start = w * self._width
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
        self._record_referrals(w, win.referrals)
        self._record_trailing(w, win.counts)
        inputs = self._series_inputs(win.counts)
        self._prev_level = {k: (self._mrr.get(k, 0), n) for k, n in self._nsubs.items()}
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
        return out

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
        refs = self._ref_buckets.pop(w - self._n30, None)
        if refs:
            for item in refs:
                _bump(self._referrers, item[0], -1)
                del self._ref_last[item]

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
        for user, key in active.items():
            prev = self._last_active.get(user)
            if prev is not None:
                old = buckets[prev].pop(user)
                _bump(self._mau, old, -1)
                if prev > recent:
                    _bump(self._dau, old, -1)
            self._last_active[user] = w
            bucket[user] = key
            _bump(self._mau, key, 1)
            _bump(self._dau, key, 1)

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

    def _series_inputs(self, counts: dict[Key, list[Any]]) -> dict[tuple[str, str], KpiInputs]:
        """Sum every per-key quantity into the series it belongs to; fixed series always."""
        rows: dict[Key, list[Any]] = {}

        def row(key: Key) -> list[Any]:
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
        acc: dict[tuple[str, str], list[Any]] = {s: [0] * _N_INPUTS for s in _FIXED_SERIES}
        for key, r in rows.items():
            for series in self._series(key):
                total = acc.get(series)
                acc[series] = r[:] if total is None else list(map(operator.add, total, r))
        for series, n in self._referrers.items():
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
