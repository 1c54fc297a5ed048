"""Sums the closed windows of every input partition and turns them into KPI snapshots.

:class:`KpiMerger` takes each partition's :class:`~kpis.rows.WindowInputs` (and the running
counts of open windows, :class:`~kpis.rows.Peek`), and once every partition has closed a window
applies the formulas of kpis/formulas.py per series: :class:`KpiSnapshot` out. Plain Python
attributes, so it is checkpointed (stream/checkpoint.py) and a replay gives the same KPIs.
"""

from __future__ import annotations

import math
import operator
from datetime import UTC, datetime
from typing import Any, NamedTuple

from core.timefmt import iso_utc
from core.vocabulary import ALL, CHANNELS, SEGMENTS
from kpis.formulas import KPIS, TRAILING_ACTIVE_S, KpiInputs, cohort_value, evaluate
from kpis.rows import (
    INDEX,
    MATCH_UNITS,
    MRR_UNITS_PER_USD,
    N_INPUTS,
    Key,
    Peek,
    WindowInputs,
    bump,
    window_only,
)

__all__ = ["EARLY_KPIS", "KpiMerger", "KpiSnapshot", "snapshots_by_window"]

_FIXED_SERIES: tuple[tuple[str, str], ...] = (
    ((ALL, ALL),) + tuple((s, ALL) for s in SEGMENTS) + tuple((ALL, c) for c in CHANNELS))
_FIXED_SET = frozenset(_FIXED_SERIES)
_NOT_PER_SEGMENT = frozenset(k.id for k in KPIS if not k.per_segment)
_WARMUP = {k.id: k.warmup_s for k in KPIS}
EARLY_KPIS = frozenset(k.id for k in KPIS if k.early)
"""KPIs also judged on an open window's running counts (``KpiDef.early``)."""
_I_MRR, _I_MRR_START, _I_REFERRERS = INDEX["mrr"], INDEX["mrr_start"], INDEX["referrers_30d"]
_I_REVENUE, _I_SPEND, _I_MATCH_SUM = INDEX["revenue"], INDEX["spend_30d"], INDEX["match_sum"]


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
                    part = window_only(closed.rows) if closed is not None else {}
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
                bump(self._referrers, item[0], -1)
                del self._ref_last[item]

    def _record_referrals(self, w: int, referrals: list[tuple[str, Key]]) -> None:
        for referrer, key in referrals:
            for series in self._series(key):
                item = (series, referrer)
                prev = self._ref_last.get(item)
                if prev is None:
                    bump(self._referrers, series, 1)
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
        acc: dict[tuple[str, str], list[Any]] = {s: [0] * N_INPUTS for s in _FIXED_SERIES}
        for key, row in rows.items():
            for series in self._series(key):
                total = acc.get(series)
                acc[series] = row[:] if total is None else list(map(operator.add, total, row))
        for series, n in (self._referrers.items() if referrers else ()):
            acc.setdefault(series, [0] * N_INPUTS)[_I_REFERRERS] = n
        order = list(_FIXED_SERIES) + sorted((s for s in acc if s not in _FIXED_SET), key=str)
        out = {}
        for series in order:
            r = acc[series]
            r[_I_MRR] /= MRR_UNITS_PER_USD
            r[_I_MRR_START] /= MRR_UNITS_PER_USD
            r[_I_REVENUE] /= 100
            r[_I_SPEND] /= 100
            r[_I_MATCH_SUM] /= MATCH_UNITS
            out[series] = KpiInputs(*r)
        return out
