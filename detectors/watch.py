"""The detector stage as plain Python: ``kpis`` messages in, anomaly events (docs/anomalies.md) out.

:class:`KpiWatch` is what the detector agent calls for every message of the ``kpis`` topic (one
KPI, one closed window, every series of that KPI). Its state is split per KPI into
:class:`KpiSeriesWatch` objects, one :class:`~detectors.series.SeriesWatcher` and a short
history per series, so a Faust table keyed by KPI id can hold it: ``state_for(kpi)`` gives the
JSON to store after a message (never pickle: a changelog topic is not trusted input),
``restore(kpi, data)`` puts it back after a restart.

Contributors of an overall anomaly rank the segment and channel series of the same KPI and window
by their part of the overall change ``value - expected``:

- additive KPIs (:data:`ADDITIVE_KPIS`, whose overall value is the sum of the segment values, and
  of the channel values): a series contributes its own ``value - expected``;
- every other KPI is a ratio or a level per unit of ``n`` (match rate per scan, conversion per
  signup, ARPU per active user...), whose overall value is the ``n``-weighted mean of the series
  values: a series contributes ``n / n_overall * (value - expected)``.

``share`` is that contribution divided by the overall ``value - expected``; segments and channels
are two partitions of the same total, so each group's shares add up to about 1 (up to the
forecasts' own errors and, for ratios, mix effects). ``delta`` is the series' own
``value - expected``. The list holds every segment and channel series with an expected value,
largest share first.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from typing import Any, TypeGuard

from detectors import state as state_codec
from detectors.calendar import Calendar
from detectors.config import DetectorConfig
from detectors.series import SeriesWatcher, Verdict

__all__ = ["ADDITIVE_KPIS", "HISTORY_POINTS", "KpiSeriesWatch", "KpiWatch"]

ADDITIVE_KPIS = frozenset({"signups", "scans", "paid_conversions", "payments", "revenue", "mrr"})
"""KPIs whose overall value is the sum of their per-segment (and per-channel) values."""
RECENT_SPANS = (900.0, 1800.0)
"""The other early looks at an open window: its last 15 and 30 minutes (across its start, with
the last window's end, if need be)."""
TICKS_KEPT = 16
"""Running totals kept per series for that look (an hour and a bit of 5-minute ticks)."""
Ticks = dict[tuple[float, float], tuple[float, float | None]]
"""A series' latest ticks: (window_start_ts, as_of_ts) -> (running amount, running n)."""
MIN_EFFECT = 0.05
"""A known event expecting less than this share of a series' value (a stopped event pipe)
leaves the series unjudged while it lasts."""
HISTORY_POINTS = 48
"""Points of a series kept for the ``history`` of its anomaly events (two days of hours)."""
ALL = "all"

Series = tuple[str, str]
Point = (tuple[float, float, float | None, float | None, float | None]
         | tuple[float, float, float | None, float | None, float | None, float | None])
"""(window_start_ts, value, expected, lower, upper, n) of one series in one window (n: its
sample size or None; states saved before it have five fields)."""


def _recent(by_time: Ticks, ts: float,
            as_of: float, width: float, amount: float, n: float | None,
            span: float) -> tuple[float, float | None] | None:
    """(amount, n) of the ``span`` before ``as_of``: the running totals now (``amount``, ``n``)
    less those of the tick ``span`` earlier (``by_time``: a series' kept ticks by (window
    start, as of)), in this window or, across its start, the last
    window's (plus that window's final tick). None when a tick needed is missing, or when the
    span is the whole window so far (the first look)."""
    then = as_of - span
    if then == ts:
        return None
    if then > ts:
        old = by_time.get((ts, then))
        if old is None:
            return None
        base, base_n = amount - old[0], None if n is None or old[1] is None else n - old[1]
        return base, base_n
    prev = ts - width
    old, last = by_time.get((prev, then)), by_time.get((prev, ts))
    if old is None or last is None:
        return None
    m = None if n is None or last[1] is None or old[1] is None else last[1] - old[1] + n
    return last[0] - old[0] + amount, m


def _moved(v: Verdict, effect: float) -> Verdict:
    """A verdict on ``value / effect`` told in the units of ``value``."""
    if effect == 1.0:
        return v
    def times(x: float | None) -> float | None:
        return None if x is None else x * effect

    return replace(v, expected=times(v.expected), lower=times(v.lower), upper=times(v.upper))


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class KpiSeriesWatch:
    """Everything the detector keeps for one KPI: a watcher and a history per series.

    Holds no configuration: :meth:`observe` takes the :class:`~detectors.config.DetectorConfig`
    that builds watchers for series it has not seen yet, so the pickled state stays small (a few
    KB per series). A series' watcher keeps the settings it was built with; a changed
    configuration applies to series created after the change (or start from empty state).

    Parameters
    ----------
    kpi
        KPI id (docs/kpis.md).

    Examples
    --------
    >>> from detectors import load_config
    >>> cfg, w = load_config(), KpiSeriesWatch("signups")
    >>> msg = {"kpi": "signups", "unit": "users", "window_start": "1970-01-01T00:00:00Z",
    ...        "window_end": "1970-01-01T01:00:00Z", "window_start_ts": 0.0,
    ...        "window_end_ts": 3600.0,
    ...        "series": [{"segment": "all", "channel": "all", "value": 5.0, "n": 5.0}]}
    >>> w.observe(msg, cfg), len(w.history[("all", "all")])
    ([], 1)
    >>> w.observe(msg, cfg)       # a window seen before (a replay) is skipped
    []
    """

    def __init__(self, kpi: str):
        self.kpi = kpi
        self.watchers: dict[Series, SeriesWatcher] = {}
        self.history: dict[Series, deque[Point]] = {}
        self.early: dict[Series, float] = {}   # series -> window of its last early anomaly

    def observe(self, msg: dict[str, Any], config: DetectorConfig,
                calendar: Calendar | None = None) -> list[dict[str, Any]]:
        """Score and learn every series of one ``kpis`` message; the anomaly events it gives.

        A series point whose window is not after the last one seen for that series (a replay
        after a restart) is skipped: it is neither scored nor learned again. With a
        ``calendar``, a known event's expected effect on a series (the time-weighted factor over
        the window, :meth:`~detectors.calendar.Calendar.effect`) moves its expected value: the
        value divided by it is judged and learned (a holiday neither alerts nor teaches the
        forecaster a dip), and the anomalies of windows during known events name them
        (``calendar``).
        """
        if msg["kpi"] != self.kpi:
            raise ValueError(f"message of KPI {msg['kpi']!r} given to the watch of {self.kpi!r}")
        if msg.get("complete") is False or msg.get("cohort") is not None:
            return []   # not covered the KPI's horizon yet / one value per cohort: not a series
        if msg.get("as_of_ts") is not None:
            return self._observe_running(msg, config, calendar)
        ts, end = float(msg["window_start_ts"]), float(msg["window_end_ts"])
        seen: dict[Series, tuple[dict[str, Any], Verdict]] = {}
        for s in msg["series"]:
            key = (s["segment"], s["channel"])
            value, n = s.get("value"), s.get("n")
            if not _finite(value) or key in seen:
                continue
            hist = self.history.get(key)
            if hist and hist[-1][0] >= ts:
                continue
            watcher = self.watchers.get(key)
            if watcher is None:
                watcher = self.watchers[key] = config.make_watcher(self.kpi, *key)
                hist = self.history[key] = deque(maxlen=HISTORY_POINTS)
            assert hist is not None
            effect = self._effect(calendar, ts, end, key) if calendar else 1.0
            if effect < MIN_EFFECT:
                continue   # a known stop (a maintenance of the event pipe): nothing to judge
            verdict = _moved(watcher.update(ts, value / effect, n + 0.0 if _finite(n) else None),
                             effect)
            hist.append((ts, value + 0.0, verdict.expected, verdict.lower, verdict.upper,
                         n + 0.0 if _finite(n) else None))
            seen[key] = (s, verdict)
        out = []
        for key, (s, verdict) in seen.items():
            if verdict.is_anomaly and config.alerts_on(self.kpi, *key):
                out.append(self._event(msg, key, s, verdict, seen, calendar, end))
        return out

    def _effect(self, calendar: Calendar, ts: float, until: float, key: Series) -> float:
        """The calendar's expected factor on series ``key`` over ``[ts, until)``.

        A known event's own series (a campaign's channel) take its effect; for an additive KPI
        the series that hold it (every channel, overall or in one segment) take it diluted by
        the event's share of the whole: 1 + (effect - 1) * share, where share is what this KPI's
        forecasts expect of the event's series over what they expect overall (a segment is
        taken to hold the channel as the whole does). Anything else it touches is not moved.
        """
        effect = calendar.effect(ts, self.kpi, *key, until=until)
        if self.kpi not in ADDITIVE_KPIS:
            return effect
        whole = None
        for event in calendar.active(ts, self.kpi, *key, until=until):
            if event.effect is None or event.moves(self.kpi, *key):
                continue
            own = (event.segment or ALL, event.channel or ALL)
            part = self._expected(own, ts)
            if whole is None:
                whole = self._expected((ALL, ALL), ts)
            if part is None or not whole:
                continue
            share = min(max(part / whole, 0.0), 1.0)
            effect *= 1.0 + (calendar.effect(ts, self.kpi, *own, until=until) - 1.0) * share
        return effect

    def _expected(self, key: Series, ts: float) -> float | None:
        """What the forecaster of series ``key`` expects for window ``ts`` (None: unknown)."""
        watcher = self.watchers.get(key)
        if watcher is None:
            return None
        e = watcher.model.forecast_one({"ts": ts, "value": math.nan}).expected
        return e if e == e else None

    def _observe_running(self, msg: dict[str, Any], config: DetectorConfig,
                         calendar: Calendar | None = None) -> list[dict[str, Any]]:
        """Judge an open window's running values (:meth:`SeriesWatcher.peek`); learn nothing.

        Three looks per tick: everything since the window began, and the last 15 and 30
        minutes (:data:`RECENT_SPANS`: the difference of two ticks' running totals, across the
        window's start if need be), so an incident that starts late in a window is not
        diluted by its normal first part. The most surprising critical look is the anomaly.
        A series gives at most one early anomaly per window: the first look that is critical.
        Series not seen in a closed window yet are skipped (nothing to compare with).
        """
        ts, end, as_of = (float(msg["window_start_ts"]), float(msg["window_end_ts"]),
                          float(msg["as_of_ts"]))
        width = end - ts
        share = (as_of - ts) / width if width > 0 else 0.0
        early = self.__dict__.setdefault("early", {})   # states saved before early alerts
        ticks = self.__dict__.setdefault("ticks", {})
        seen: dict[Series, tuple[dict[str, Any], Verdict]] = {}   # series with an alarm
        # the others: what their first look needs, judged only if an overall anomaly wants
        # their expected values for its contributors (most ticks have no alarm at all)
        quiet: dict[Series, tuple[dict[str, Any], SeriesWatcher, float, float | None, float]] = {}
        spans: dict[Series, float] = {}   # series -> start of the span its verdict judged
        for s in msg["series"]:
            key = (s["segment"], s["channel"])
            value, n = s.get("value"), s.get("n")
            watcher = self.watchers.get(key)
            hist = self.history.get(key)
            if (watcher is None or not _finite(value) or key in seen or key in quiet
                    or (hist and hist[-1][0] >= ts)):
                continue
            nn = n + 0.0 if _finite(n) else None
            amount = value * nn if watcher.kind == "ratio" and nn else value + 0.0
            by_time = ticks.get(key)
            if not isinstance(by_time, dict):   # none yet, or a deque of a state saved before
                by_time = ticks[key] = {(w, t): (a, m) for w, t, a, m in by_time or ()}
            recent = [(span, _recent(by_time, ts, as_of, width, amount, nn, span))
                      for span in RECENT_SPANS]
            by_time[(ts, as_of)] = (amount, nn)
            while len(by_time) > TICKS_KEPT:
                del by_time[next(iter(by_time))]   # the oldest tick
            effect = self._effect(calendar, ts, as_of, key) if calendar else 1.0
            if effect < MIN_EFFECT:
                continue
            first = watcher.peek_alarm(ts, value / effect, nn, share)
            verdict = None if first is None else _moved(first, effect)
            spans[key] = ts
            for span, totals in recent:
                if totals is None:
                    continue
                r_amount, r_n = totals
                r_effect = calendar.effect(as_of - span, self.kpi, *key, until=as_of) \
                    if calendar else 1.0
                if r_effect < MIN_EFFECT or (watcher.kind == "ratio" and not r_n):
                    continue
                r_value = r_amount / r_n if watcher.kind == "ratio" and r_n else r_amount
                late = watcher.peek_alarm(ts, r_value / r_effect, r_n, span / width)
                if late is not None and (verdict is None or late.score > verdict.score):
                    verdict, spans[key] = _moved(late, r_effect), as_of - span
                    s = {**s, "value": r_value, "n": r_n}
            if verdict is None:
                quiet[key] = (s, watcher, value / effect, nn, effect)
            else:
                seen[key] = (s, verdict)
        if (ALL, ALL) in seen and quiet:
            for key, (s, watcher, v, nn, effect) in quiet.items():
                seen[key] = (s, _moved(watcher.peek(ts, v, nn, share), effect))
        out = []
        for key, (s, verdict) in seen.items():
            if (verdict.is_anomaly and early.get(key) != ts
                    and config.alerts_on(self.kpi, *key)):
                early[key] = ts
                event = self._event(msg, key, s, verdict, seen, calendar, as_of)
                event.update(early=True, as_of=msg["as_of"], as_of_ts=as_of,
                             span_start_ts=spans[key],
                             elapsed_minutes=round((as_of - spans[key]) / 60.0, 1))
                out.append(event)
        for key in [k for k, w in early.items() if w < ts - 86400.0]:
            del early[key]   # keep the map small: a day is far past any window still open
        return out

    def _event(self, msg: dict[str, Any], key: Series, s: dict[str, Any], v: Verdict,
               seen: dict[Series, tuple[dict[str, Any], Verdict]],
               calendar: Calendar | None = None, until: float = 0.0) -> dict[str, Any]:
        value = float(s["value"]) if v.value is None else v.value
        expected = v.expected if v.expected is not None else value
        n = s.get("n") if v.value is None else v.n
        contributors: list[dict[str, Any]] = []
        if key == (ALL, ALL):
            contributors = self._contributors(value - expected, n, seen)
        known = calendar.active(float(msg["window_start_ts"]), self.kpi, *key,
                                until=until) if calendar else []
        event: dict[str, Any] = {
            "kpi": self.kpi, "segment": key[0], "channel": key[1],
            "window_start": msg["window_start"], "window_end": msg["window_end"],
            "window_start_ts": msg["window_start_ts"], "window_end_ts": msg["window_end_ts"],
            "value": value, "expected": expected,
            "lower": v.lower if v.lower is not None else expected,
            "upper": v.upper if v.upper is not None else expected,
            "score": round(min(1.0, max(0.0, v.score)), 6),
            "severity": v.severity, "direction": v.direction, "detector": v.detector,
            "unit": msg.get("unit", ""), "n": n + 0.0 if _finite(n) else 0.0,
            "contributors": contributors,
            "history": [{"window_start_ts": p[0], "value": p[1], "expected": p[2],
                         "lower": p[3], "upper": p[4], "n": p[5] if len(p) > 5 else None}
                        for p in self.history[key]],
        }
        if known:   # a window during known events: the alert says which
            event["calendar"] = [e.describe() for e in known]
        if v.windows > 1:   # a sustained run: its numbers, over the windows it spans
            width = float(msg["window_end_ts"]) - float(msg["window_start_ts"])
            event.update(run_windows=v.windows,
                         run_start_ts=float(msg["window_start_ts"]) - (v.windows - 1) * width)
        return event

    def _contributors(self, total: float, n_all: Any,
                      seen: dict[Series, tuple[dict[str, Any], Verdict]]) -> list[dict[str, Any]]:
        additive = self.kpi in ADDITIVE_KPIS
        weighted = not additive and _finite(n_all) and n_all > 0
        rows: list[dict[str, Any]] = []
        for (segment, channel), (s, v) in seen.items():
            if (segment == ALL) == (channel == ALL) or v.expected is None:
                continue
            delta = float(s["value"]) - v.expected
            part = delta
            if not additive:
                n = s.get("n")
                part = delta * n / n_all if weighted and _finite(n) else 0.0
            share = part / total if total else 0.0
            rows.append({"segment": segment, "channel": channel, "value": float(s["value"]),
                         "expected": v.expected, "delta": delta, "share": round(share, 6)})
        rows.sort(key=lambda r: -float(r["share"]))
        return rows


class KpiWatch:
    """The detector stage: :meth:`observe` one ``kpis`` message, get its anomaly events.

    State is one :class:`KpiSeriesWatch` per KPI in :attr:`kpis`; :meth:`state_for` and
    :meth:`restore` move one KPI's state to and from JSON bytes (a Faust table keyed by KPI id);
    the whole object pickles too (a checkpoint file of this process's own). Events follow
    docs/anomalies.md; only overall series (``segment = channel = "all"``) carry
    ``contributors``.

    Parameters
    ----------
    config
        The detector configuration (:func:`~detectors.config.load_config`).
    calendar
        Known events (``PULSE_CALENDAR``, :mod:`detectors.calendar`): their expected effects
        move expected values, and anomalies during them name them. Configuration, not state:
        it is not saved with the detectors.

    Examples
    --------
    >>> from detectors import load_config
    >>> watch = KpiWatch(load_config())
    >>> def msg(h, value):
    ...     return {"kpi": "signups", "unit": "users", "window_start": f"h{h}",
    ...             "window_end": f"h{h + 1}", "window_start_ts": h * 3600.0,
    ...             "window_end_ts": (h + 1) * 3600.0,
    ...             "series": [{"segment": "all", "channel": "all", "value": value, "n": value}]}
    >>> sum(len(watch.observe(msg(h, 40.0 + h % 3))) for h in range(24 * 7))
    0
    >>> state = watch.state_for("signups")
    >>> later = KpiWatch(load_config())
    >>> later.restore("signups", state)
    >>> [(e["severity"], e["direction"], e["detector"], len(e["history"]))
    ...  for e in later.observe(msg(24 * 7, 0.0))]
    [('critical', 'down', 'forecast', 48)]
    """

    def __init__(self, config: DetectorConfig, calendar: Calendar | None = None):
        self.config = config
        self.calendar = calendar if calendar is not None and len(calendar) else None
        self.kpis: dict[str, KpiSeriesWatch] = {}

    def watch_for(self, kpi: str) -> KpiSeriesWatch:
        """The state of ``kpi`` (created empty on first use)."""
        w = self.kpis.get(kpi)
        if w is None:
            w = self.kpis[kpi] = KpiSeriesWatch(kpi)
        return w

    def observe(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        """Anomaly events (docs/anomalies.md) of one ``kpis`` message, after learning it."""
        return self.watch_for(msg["kpi"]).observe(msg, self.config,
                                                  getattr(self, "calendar", None))

    def state_for(self, kpi: str) -> bytes:
        """The state of one KPI as JSON (detectors/state.py), for :meth:`restore`."""
        return state_codec.dumps(self.watch_for(kpi))

    def restore(self, kpi: str, data: bytes) -> None:
        """Put back the state of ``kpi`` saved by :meth:`state_for`."""
        self.put(kpi, state_codec.loads(data))

    def put(self, kpi: str, saved: Any) -> None:
        """Install a decoded state of ``kpi``; ValueError unless it is one."""
        if not isinstance(saved, KpiSeriesWatch) or saved.kpi != kpi:
            raise ValueError(f"state given for KPI {kpi!r} is not a saved KpiSeriesWatch of it")
        self.kpis[kpi] = saved
