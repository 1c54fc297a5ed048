"""KPI values over time, alerts and digests, held for the assistant to query.

A :class:`KpiStore` holds ``kpis.jsonl`` rows (``{kpi, segment, channel, window_start,
window_end, value, n, complete, [cohort]}``, one per series and closed window), the alert
snapshots of ``alerts.jsonl`` or the ``alerts`` topic, and ``digest.jsonl`` documents. It reads
files or documents already fetched (the CLI reads the topics; this module has no Kafka), and
answers "the points of this series in this period" with a bisect. A file Pulse cannot use is
a :class:`StoreError` whose one line says what is wrong and what to do.

>>> rows = [{"kpi": "signups", "segment": "all", "channel": "all", "value": v, "n": v,
...          "window_start": f"2026-02-11T{h:02d}:00:00Z",
...          "window_end": f"2026-02-11T{h + 1:02d}:00:00Z", "complete": True}
...         for h, v in ((9, 4.0), (10, 6.0))]
>>> store = KpiStore.from_rows(rows)
>>> store.latest("signups", "all", "all").value, store.window_s, store.kpis()
(6.0, 3600.0, ['signups'])
"""

from __future__ import annotations

import gzip
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from core.timefmt import parse_utc
from kpis.formulas import KPI_BY_ID
from kpis.messages import is_running, series_rows

__all__ = ["KpiStore", "Point", "StoreError", "alerts_beside"]

Key = tuple[str, str, str]   # (kpi, segment, channel)
OPEN_STATUSES = ("open", "updated")


class StoreError(ValueError):
    """A KPI, alert or digest source Pulse cannot answer from; the message says how to fix it."""


class Point(NamedTuple):
    """One series' value in one closed window (epoch seconds)."""

    start: float
    end: float
    value: float
    n: float
    complete: bool


class _Times(dict[Any, float]):
    """Epoch seconds of window times, parsed once each (a window's rows share its strings)."""

    def __missing__(self, value: Any) -> float:
        ts = parse_utc(value)
        if not math.isfinite(ts):
            raise ValueError("not a time")
        self[value] = ts
        return ts


def _point(row: dict[str, Any], times: _Times) -> tuple[Key, Point, str | None]:
    """The series key, point and cohort of one ``kpis.jsonl`` row; ValueError if malformed."""
    value = row["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("value is not a number")
    n = row.get("n")
    n = float(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else math.nan
    start = times[row["window_start_ts"] if "window_start_ts" in row else row["window_start"]]
    end = times[row["window_end_ts"] if "window_end_ts" in row else row["window_end"]]
    key = (str(row["kpi"]), str(row.get("segment", "all")), str(row.get("channel", "all")))
    cohort = row.get("cohort")
    return key, Point(start, end, float(value), n, bool(row.get("complete", True))), (
        str(cohort) if cohort is not None else None)


def _read_lines(path: Path, what: str, hint: str) -> tuple[list[dict[str, Any]], int, bool]:
    """(JSON objects, bad line count, whether the file had any content) of a JSON Lines file,
    gzip when it ends in ``.gz``."""
    if not path.exists():
        raise StoreError(f"{path} does not exist; {hint}")
    if path.is_dir():
        raise StoreError(f"{path} is a directory; give the {what} file inside it")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except OSError as e:   # unreadable, or .gz that is not gzip
        raise StoreError(f"cannot read {path} ({e.strerror or e}); {hint}") from None
    docs: list[dict[str, Any]] = []
    bad = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(doc, dict):
            docs.append(doc)
        else:
            bad += 1
    return docs, bad, bool(raw.strip())


def alerts_beside(kpis_path: str | Path) -> Path | None:
    """``alerts.jsonl`` in the directory of ``kpis_path``, if there is one (a demo's out dir)."""
    beside = Path(kpis_path).with_name("alerts.jsonl")
    return beside if beside.is_file() else None


class KpiStore:
    """KPI rows by series and time, plus alert snapshots and digests.

    Parameters
    ----------
    rows
        ``kpis.jsonl`` rows; malformed ones are skipped and counted in ``bad_lines``.
    alerts
        Alert snapshots in the order they happened (``alerts.jsonl`` lines, ``alerts`` topic).
    digests
        ``digest.jsonl`` documents.
    """

    def __init__(self, rows: Iterable[dict[str, Any]] = (), alerts: Iterable[dict] = (),
                 digests: Iterable[dict] = (), *, bad_lines: int = 0, source: str = "the data"):
        self.source = source
        self.bad_lines = bad_lines
        self.alerts: list[dict[str, Any]] = [a for a in alerts if isinstance(a, dict)]
        self.digests: list[dict[str, Any]] = [d for d in digests if isinstance(d, dict)]
        by_key: dict[Key, dict[float, Point]] = {}
        cohorts: dict[Key, dict[str, Point]] = {}
        lengths: Counter[float] = Counter()
        times = _Times()
        for row in rows:
            try:
                key, point, cohort = _point(row, times)
            except (KeyError, TypeError, ValueError):
                self.bad_lines += 1
                continue
            if cohort is not None:
                cohorts.setdefault(key, {})[cohort] = point
                continue
            by_key.setdefault(key, {})[point.start] = point   # a window seen twice: the last
            lengths[point.end - point.start] += 1
        self.series: dict[Key, list[Point]] = {
            k: sorted(v.values(), key=lambda p: p.end) for k, v in by_key.items()}
        self._ends = {k: [p.end for p in v] for k, v in self.series.items()}
        self.cohorts: dict[Key, list[tuple[str, Point]]] = {
            k: sorted(v.items()) for k, v in cohorts.items()}
        self.window_s = lengths.most_common(1)[0][0] if lengths else 3600.0

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], alerts: Iterable[dict] = (),
                  digests: Iterable[dict] = ()) -> KpiStore:
        """A store of ``kpis.jsonl`` rows already in memory."""
        return cls(rows, alerts, digests)

    @classmethod
    def from_docs(cls, docs: Iterable[dict[str, Any]], alerts: Iterable[dict] = ()) -> KpiStore:
        """A store of ``kpis`` topic documents: window markers and an open window's running
        values (``as_of``) are left out, as ``kpis.jsonl`` leaves them out."""
        rows = [r for d in docs if "series" in d and not is_running(d) for r in series_rows(d)]
        return cls(rows, alerts, source="the kpis topic")

    @classmethod
    def from_files(cls, kpis_path: str | Path, alerts_path: str | Path | None = None,
                   digest_path: str | Path | None = None) -> KpiStore:
        """A store of a ``kpis.jsonl`` (and ``alerts.jsonl``, ``digest.jsonl``); ``.gz`` too.

        Raises :class:`StoreError` for a missing or empty KPI file, or one with no valid row
        (lines that are not JSON are skipped and counted in ``bad_lines``); an alerts or
        digest file may be empty (nothing happened) but must exist and hold JSON.
        """
        path = Path(kpis_path)
        hint = "give the kpis.jsonl of a run (`pulse demo --out DIR` writes DIR/kpis.jsonl)"
        rows, bad, content = _read_lines(path, "kpis.jsonl", hint)
        if not content:
            raise StoreError(f"{path} is empty: no KPI window has closed yet; let the pipeline "
                             "run for a window, or give another kpis.jsonl")
        alerts = cls._side_file(alerts_path, "alerts.jsonl", "alert records")
        digests = cls._side_file(digest_path, "digest.jsonl", "digests")
        store = cls(rows, alerts, digests, bad_lines=bad, source=str(path))
        if not store.series and not store.cohorts:
            raise StoreError(f"{path} has no KPI rows ({store.bad_lines} unreadable line(s)); "
                             "give a kpis.jsonl written by Pulse (JSON Lines, one KPI row each)")
        return store

    @staticmethod
    def read_alerts(path: str | Path) -> list[dict[str, Any]]:
        """The alert snapshots of an ``alerts.jsonl`` (``.gz`` too); :class:`StoreError` when
        it is missing or holds no JSON line."""
        return KpiStore._side_file(path, "alerts.jsonl", "alert records")

    @staticmethod
    def _side_file(path: str | Path | None, what: str, things: str) -> list[dict[str, Any]]:
        if path is None:
            return []
        docs, bad, _ = _read_lines(Path(path), what, f"give the {what} of the same run, or "
                                   "leave the flag out")
        if bad and not docs:
            raise StoreError(f"{path} has no {things} ({bad} line(s) that are not JSON); give "
                             f"the {what} written by Pulse")
        return docs

    # -- time and catalogue -------------------------------------------------------------

    @property
    def now(self) -> float | None:
        """End of the newest window of any series: the "now" of every period."""
        ends = [v[-1] for v in self._ends.values() if v]
        return max(ends) if ends else None

    @property
    def first(self) -> float | None:
        """Start of the oldest window held."""
        starts = [v[0].start for v in self.series.values() if v]
        return min(starts) if starts else None

    def kpis(self) -> list[str]:
        """KPI ids with at least one window or cohort value, in catalogue order."""
        held = {k[0] for k in self.series} | {k[0] for k in self.cohorts}
        order = {k: i for i, k in enumerate(KPI_BY_ID)}
        return sorted(held, key=lambda k: (order.get(k, len(order)), k))

    def has(self, kpi: str, segment: str = "all", channel: str = "all") -> bool:
        key = (kpi, segment, channel)
        return key in self.series or key in self.cohorts

    def segments(self, kpi: str | None = None) -> list[str]:
        """Segments with a series of their own (of ``kpi``, or of any KPI)."""
        return sorted({s for k, s, c in self._keys() if c == "all" and s != "all"
                       and kpi in (None, k)})

    def channels(self, kpi: str | None = None) -> list[str]:
        """Channels with a series of their own (of ``kpi``, or of any KPI)."""
        return sorted({c for k, s, c in self._keys() if s == "all" and c != "all"
                       and kpi in (None, k)})

    def _keys(self) -> Iterable[Key]:
        return [*self.series, *self.cohorts]

    # -- points -------------------------------------------------------------------------

    def points(self, kpi: str, segment: str = "all", channel: str = "all",
               start: float = -math.inf, end: float = math.inf,
               complete_only: bool = True) -> list[Point]:
        """The series' windows inside ``[start, end]``, oldest first."""
        key = (kpi, segment, channel)
        series, ends = self.series.get(key, []), self._ends.get(key, [])
        lo, hi = bisect_right(ends, start), bisect_right(ends, end)
        return [p for p in series[lo:hi]
                if p.start >= start and (p.complete or not complete_only)]

    def last_at(self, kpi: str, segment: str, channel: str, ts: float,
                after: float = -math.inf) -> Point | None:
        """The newest complete window of the series ending at or before ``ts`` (and after
        ``after``)."""
        key = (kpi, segment, channel)
        series, ends = self.series.get(key, []), self._ends.get(key, [])
        i = bisect_right(ends, ts)
        stop = bisect_left(ends, after) if after > -math.inf else 0
        while i > stop:
            i -= 1
            p = series[i]
            if p.complete and p.end > after:
                return p
        return None

    def latest(self, kpi: str, segment: str = "all", channel: str = "all") -> Point | None:
        """The series' newest complete window."""
        return self.last_at(kpi, segment, channel, math.inf)

    def warming_up(self, kpi: str, segment: str = "all", channel: str = "all") -> bool:
        """Whether the series has values but none complete yet (a 30-day KPI filling up)."""
        series = self.series.get((kpi, segment, channel), [])
        return bool(series) and not any(p.complete for p in series)

    def cohort_values(self, kpi: str, segment: str = "all",
                      channel: str = "all") -> list[tuple[str, Point]]:
        """``(cohort week, value)`` of a cohort KPI, oldest cohort first."""
        return list(self.cohorts.get((kpi, segment, channel), []))

    # -- alerts -------------------------------------------------------------------------

    def alert_states(self) -> list[dict[str, Any]]:
        """The newest snapshot of each alert, in the order the alerts first appeared."""
        latest: dict[str, dict[str, Any]] = {}
        for a in self.alerts:
            if a.get("id") is not None:
                latest[str(a["id"])] = a
        return list(latest.values())

    def open_alerts(self) -> list[dict[str, Any]]:
        """Alerts whose newest snapshot is open (``open`` or ``updated``)."""
        return [a for a in self.alert_states() if a.get("status") in OPEN_STATUSES]
