"""The daily digest: one document per UTC day, from the ``kpis`` topic and the alert changes.

:class:`DigestBuilder` is fed what the worker sees — ``kpis`` messages (one per window and KPI,
every series inside, ``window_closed`` markers between windows) or ``kpis.jsonl`` rows, and alert
records (the ``alerts`` topic, ``alerts.jsonl``) — and keeps a daily value per headline KPI and
series for the last few days (bounded memory). When event time passes a day's end plus
``lag_windows`` windows (the alerts of a day's last window reach the ``alerts`` topic just after
its ``window_closed`` marker reaches ``kpis``), :meth:`DigestBuilder.add_message` returns that
day's digest. :func:`build_digest` makes one for any day it holds (``pulse digest``).

A KPI's daily value comes from its hourly windows by a rule read from its :class:`KpiDef`
(:func:`daily_rule`): counts and money of a window are summed over the day; a ratio of a window
is the ``n``-weighted mean of the day's windows (``n`` is the ratio's denominator, so
``Σ value·n / Σ n`` is the day's own ratio); levels and trailing KPIs (MRR, churn, CAC, ...) take
the value of the day's last window. Snapshots marked ``"complete": false`` (a trailing KPI still
filling up) are left out, and so are KPIs this module does not know and cohort messages.

The digest's summary and plain text are alerting/digest_words.py's; its Slack message
alerting/digest_delivery.py's.

>>> b = DigestBuilder(window_s=43_200)          # two windows a day, to keep the example short
>>> for ws, signups in ((0.0, 10.0), (43_200.0, 14.0)):
...     _ = b.add_message({"kpi": "signups", "window_start_ts": ws, "complete": True,
...                        "series": [{"segment": "all", "channel": "all",
...                                    "value": signups, "n": signups}]})
>>> b.add_message({"kind": "window_closed", "window_end_ts": 86_400.0})   # waits one window
[]
>>> [d] = b.add_message({"kind": "window_closed", "window_end_ts": 129_600.0})
>>> d["day"], d["headline"][0]["kpi"], d["headline"][0]["value"], d["headline"][0]["target"]
('1970-01-01', 'signups', 24.0, None)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date
from typing import Any

from alerting.digest_words import template_summary
from core.timefmt import iso_utc, parse_utc
from core.vocabulary import ALL
from kpis.formulas import DAY_S, KPI_BY_ID, KPIS, KpiDef
from kpis.messages import is_running

__all__ = [
    "CHART_KPIS",
    "DIGEST_KPIS",
    "HEADLINE_KPIS",
    "KEEP_DAYS",
    "MIN_MOVER_N",
    "DigestBuilder",
    "build_digest",
    "builder_from",
    "daily_rule",
    "day_index",
    "day_iso",
]

HEADLINE_KPIS: tuple[str, ...] = ("signups", "revenue", "mrr") + tuple(
    k.id for k in KPIS if k.target is not None)
"""Signups, revenue and MRR, then every KPI with a target (seed 000), in catalogue order."""
CHART_KPIS: tuple[str, ...] = ("signups", "revenue", "mrr", "conversion_rate", "churn_rate", "cac")
"""The panels of the digest's seven-day chart (after one per series that alerted that day)."""
DIGEST_KPIS: frozenset[str] = frozenset(k.id for k in KPIS)
"""The KPIs whose daily values the builder keeps: the headline, and any KPI that may alert, so
the chart has a week of the alerted series (a payment outage leads with the failure rate)."""
ALERT_PANELS = 3
"""At most this many alerted series get their own panel in the chart."""
MIN_MOVER_N = 30.0
"""A segment or channel series is a mover candidate only when its sample (``n``: events
counted, or the ratio's denominator) is at least this on both days: a channel going from 2 to 4
conversions is +100% and means nothing."""
KEEP_DAYS = 8
"""Days of daily values kept: the digest's day, the same day last week, and the week between."""

_SUM, _WEIGHTED, _LAST = "sum", "weighted", "last"


def daily_rule(k: KpiDef) -> str:
    """How a KPI's hourly windows make its daily value: ``sum``, ``weighted`` or ``last``.

    >>> [daily_rule(KPI_BY_ID[k]) for k in ("signups", "revenue", "conversion_rate", "mrr",
    ...                                     "churn_rate")]
    ['sum', 'sum', 'weighted', 'last', 'last']
    """
    if k.horizon != "window":
        return _LAST
    return _WEIGHTED if k.unit.startswith("ratio") else _SUM


def day_index(ts: float) -> int:
    """The UTC day (days since the epoch) holding the instant ``ts``."""
    return int(ts // DAY_S)


def day_iso(day: int) -> str:
    """``2026-11-21`` for a :func:`day_index`."""
    return date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat()


class _Daily:
    """Accumulated windows of one series in one day: [Σv, Σv·n, Σn, last start, last v, last n]."""

    __slots__ = ("acc",)

    def __init__(self) -> None:
        self.acc = [0.0, 0.0, 0.0, -math.inf, math.nan, 0.0]

    def add(self, ws: float, value: float, n: float) -> None:
        a = self.acc
        a[0] += value
        a[1] += value * n
        a[2] += n
        if ws > a[3]:
            a[3], a[4], a[5] = ws, value, n

    def value(self, rule: str, windows: int) -> tuple[float, float]:
        """(daily value, n) under ``rule``."""
        total, weighted, n, _, last, last_n = self.acc
        if rule == _SUM:
            return total, n
        if rule == _WEIGHTED:
            return (weighted / n, n) if n > 0 else (total / max(windows, 1), 0.0)
        return last, last_n


class DigestBuilder:
    """Daily values of the headline KPIs and the day's alerts; digests as days end.

    Parameters
    ----------
    window_s
        The KPI window size (``PULSE_WINDOW_SECONDS``); a day must be a whole number of them.
    lag_windows
        A day's digest is made when the ``window_closed`` marker of this many windows after the
        day's end arrives, so the alerts of its last window are in it.
    keep_days
        Days of values kept before the newest (``None``: all, for ``pulse digest`` on a file).
    """

    def __init__(self, window_s: float = 3600.0, lag_windows: int = 1,
                 keep_days: int | None = KEEP_DAYS):
        if window_s <= 0 or DAY_S % window_s:
            raise ValueError(f"window_s must divide a day (86400 s) evenly, got {window_s}")
        self.window_s = window_s
        self.lag_windows = lag_windows
        self.keep_days = keep_days
        self.days: dict[int, dict[tuple[str, str, str], _Daily]] = {}
        self.seen: dict[int, set[tuple[float, str, str, str]]] = {}
        self.window_starts: dict[int, set[float]] = {}   # day -> windows with a value in it
        self.alerts: dict[int, dict[str, dict]] = {}
        self.last_done = -1        # newest day whose digest was made (never made twice)
        self.reached = -math.inf   # newest window end seen

    # -- input --------------------------------------------------------------------------

    def add_series(self, kpi: str, segment: str, channel: str, window_start_ts: float,
                   value: float | None, n: float | None, complete: bool = True) -> None:
        """One KPI value of one series in one window; repeats of a window are ignored."""
        self.reached = max(self.reached, window_start_ts + self.window_s)
        if (kpi not in DIGEST_KPIS or not complete or value is None
                or (segment != ALL and channel != ALL)):
            return
        day = day_index(window_start_ts)
        if day <= self.last_done:
            return
        seen = self.seen.setdefault(day, set())
        key = (window_start_ts, kpi, segment, channel)
        if key in seen:
            return
        seen.add(key)
        self.window_starts.setdefault(day, set()).add(window_start_ts)
        series = self.days.setdefault(day, {})
        series.setdefault((kpi, segment, channel), _Daily()).add(
            window_start_ts, float(value), float(n or 0.0))

    def add_row(self, row: dict) -> None:
        """A ``kpis.jsonl`` line (``kpi, segment, channel, window_start, value, n, complete``)."""
        if row.get("cohort") is not None:
            return
        self.add_series(str(row.get("kpi")), str(row.get("segment", ALL)),
                        str(row.get("channel", ALL)),
                        parse_utc(row.get("window_start_ts", row.get("window_start"))),
                        row.get("value"), row.get("n"), bool(row.get("complete", True)))

    def add_message(self, msg: dict) -> list[dict]:
        """A ``kpis`` topic message; returns the digests of the days it finished (oldest first)."""
        if msg.get("kind") == "window_closed":
            return self.close_until(float(msg["window_end_ts"]))
        if msg.get("cohort") is not None or "series" not in msg or is_running(msg):
            return []   # a cohort, a marker, or an open window's running values
        ws = parse_utc(msg.get("window_start_ts", msg.get("window_start")))
        complete = bool(msg.get("complete", True))
        for s in msg["series"]:
            self.add_series(str(msg.get("kpi")), str(s.get("segment", ALL)),
                            str(s.get("channel", ALL)), ws, s.get("value"), s.get("n"), complete)
        return []

    def add_alert(self, alert: dict) -> None:
        """An alert change (``alerts`` topic or ``alerts.jsonl`` line), filed under the day it
        happened: a resolution at ``resolved_at``, other changes at their lead window's end."""
        when = alert.get("resolved_at") if alert.get("status") == "resolved" else None
        try:
            ts = parse_utc(when or alert.get("window_end_ts") or alert["window_end"])
        except (KeyError, TypeError, ValueError):
            return
        day = day_index(ts - 1e-6)      # a window ending at midnight belongs to the day before
        if day <= self.last_done:
            return
        day_alerts = self.alerts.setdefault(day, {})
        alert_id = str(alert.get("id", ""))
        entry = day_alerts.get(alert_id)
        change = f"{alert.get('version')}:{alert.get('status')}:{alert.get('reason')}"
        if entry is not None and change in entry["_seen"]:
            return                      # the same change delivered twice (at-least-once)
        if entry is None:
            if len(day_alerts) >= 50:   # bounded: a day with more alerts lists the first 50
                return
            entry = day_alerts[alert_id] = {
                "id": alert_id, "kpi": alert.get("kpi"), "segment": alert.get("segment"),
                "channel": alert.get("channel"), "severity": alert.get("severity"),
                "opened": False, "changes": 0, "_seen": []}
        entry["_seen"].append(change)
        entry["changes"] += 1
        entry["opened"] = entry["opened"] or alert.get("status") == "open"
        entry.update({k: alert.get(k) for k in ("status", "value", "expected", "since",
                                                 "resolved_at")})
        if alert.get("severity") == "critical":
            entry["severity"] = "critical"

    # -- output -------------------------------------------------------------------------

    def close_until(self, event_ts: float) -> list[dict]:
        """Digests of every held day that ended at least ``lag_windows`` windows before
        ``event_ts``, oldest first; then forget what no later digest needs."""
        ready = event_ts - self.lag_windows * self.window_s
        done = []
        for day in sorted(d for d in self.days if d > self.last_done and (d + 1) * DAY_S <= ready):
            done.append(build_digest(self, day))
            self.last_done = day
        if done:
            self._prune()
        return done

    def days_held(self) -> list[int]:
        return sorted(self.days)

    def value(self, day: int, kpi: str, segment: str = ALL, channel: str = ALL
              ) -> tuple[float, float] | None:
        """(daily value, n) of a series, or None when the day has none."""
        daily = self.days.get(day, {}).get((kpi, segment, channel))
        if daily is None:
            return None
        return daily.value(daily_rule(KPI_BY_ID[kpi]), self.windows(day))

    def windows(self, day: int) -> int:
        return len(self.window_starts.get(day, ()))

    def _prune(self) -> None:
        for day in [d for d in self.seen if d <= self.last_done]:
            del self.seen[day]   # a done day takes no more values: its repeats need no memory
        if self.keep_days is None:
            return
        oldest = self.last_done - self.keep_days
        for store in (self.days, self.window_starts, self.alerts):
            for day in [d for d in store if d < oldest]:
                del store[day]


def build_digest(b: DigestBuilder, day: int) -> dict:
    """The digest document of ``day`` (docs/digest.md), with the template summary."""
    headline = []
    for kpi in HEADLINE_KPIS:
        k = KPI_BY_ID[kpi]
        now, week_ago = b.value(day, kpi), b.value(day - 7, kpi)
        value = now[0] if now else None
        last_week = week_ago[0] if week_ago else None
        met = None
        if k.target is not None and value is not None and k.higher_is_better is not None:
            met = value >= k.target if k.higher_is_better else value <= k.target
        headline.append({
            "kpi": kpi, "title": k.title, "unit": k.unit, "value": value,
            "n": now[1] if now else None, "target": k.target,
            "target_is": None if k.target is None else (
                "at least" if k.higher_is_better else "at most"),
            "met": met, "last_week": last_week, "change": _relative(value, last_week)})
    doc: dict[str, Any] = {
        "day": day_iso(day), "day_start": iso_utc(day * DAY_S),
        "day_end": iso_utc((day + 1) * DAY_S),
        "day_end_ts": (day + 1) * DAY_S, "windows": b.windows(day),
        "headline": headline, "movers": _movers(b, day),
        "alerts": sorted(({k: v for k, v in a.items() if k != "_seen"}
                          for a in b.alerts.get(day, {}).values()),
                         key=lambda a: (a["severity"] != "critical", str(a["kpi"]), a["id"])),
        "chart": None,
    }
    doc["week"] = _week(b, day, doc["alerts"])
    doc["summary"], doc["summary_source"] = template_summary(doc), "template"
    return doc


def _week(b: DigestBuilder, day: int, alerts: list[dict]) -> dict:
    """What the seven-day chart draws: the days, each chart KPI's daily values, the series
    that alerted during the day (``alerted``: kpi, segment, channel, values; critical first,
    at most :data:`ALERT_PANELS`) and the alerts' periods that day (``alerts``: kpi, segment,
    channel, severity, ``start_ts`` from ``since``, ``end_ts`` at the resolution or the day's
    end)."""
    days = range(day - 6, day + 1)

    def values(kpi: str, segment: str = ALL, channel: str = ALL) -> list[float | None]:
        return [v[0] if (v := b.value(d, kpi, segment, channel)) else None for d in days]

    week: dict[str, Any] = {"days": [day_iso(d) for d in days],
                            **{kpi: values(kpi) for kpi in CHART_KPIS}}
    series: list[tuple[str, str, str]] = []
    spans = []
    for a in alerts:
        kpi, segment, channel = str(a["kpi"]), str(a["segment"]), str(a["channel"])
        if kpi not in KPI_BY_ID:
            continue
        key = (kpi, segment, channel)
        if key not in series and len(series) < ALERT_PANELS and not (
                kpi in CHART_KPIS and segment == channel == ALL):
            series.append(key)
        try:
            start = parse_utc(a["since"])
        except (KeyError, TypeError, ValueError):
            start = day * DAY_S
        end = (day + 1) * DAY_S   # still open when the day ended
        if a.get("status") == "resolved":
            try:
                end = min(parse_utc(a["resolved_at"]), end)
            except (KeyError, TypeError, ValueError):
                pass
        spans.append({"kpi": kpi, "segment": segment, "channel": channel,
                      "severity": a["severity"], "start_ts": start, "end_ts": max(end, start)})
    week["alerted"] = [{"kpi": k, "segment": s, "channel": c, "values": values(k, s, c)}
                       for k, s, c in series]
    week["alerts"] = spans
    return week


def _relative(value: float | None, before: float | None) -> float | None:
    if value is None or before is None or abs(before) < 1e-12:
        return None
    return (value - before) / abs(before)


def _movers(b: DigestBuilder, day: int, top: int = 3) -> list[dict]:
    order = {kpi: i for i, kpi in enumerate(HEADLINE_KPIS)}
    candidates = []
    for (kpi, segment, channel) in b.days.get(day, {}):
        if segment == channel == ALL or kpi not in order:
            continue   # movers are the headline KPIs' slices
        now, week_ago = b.value(day, kpi, segment, channel), b.value(day - 7, kpi, segment, channel)
        if now is None or week_ago is None or min(now[1], week_ago[1]) < MIN_MOVER_N:
            continue
        change = _relative(now[0], week_ago[0])
        if change is None:
            continue
        candidates.append((-abs(change), order[kpi], segment, channel, {
            "kpi": kpi, "title": KPI_BY_ID[kpi].title, "segment": segment, "channel": channel,
            "value": now[0], "last_week": week_ago[0], "change": change, "n": now[1]}))
    candidates.sort(key=lambda c: c[:4])
    return [c[4] for c in candidates[:top]]


def builder_from(rows: Iterable[dict], alerts: Iterable[dict] = (),
                 window_s: float = 3600.0) -> DigestBuilder:
    """A builder holding every day of ``rows`` (``kpis.jsonl`` lines) and ``alerts``."""
    b = DigestBuilder(window_s=window_s, keep_days=None)
    for row in rows:
        b.add_row(row)
    for alert in alerts:
        b.add_alert(alert)
    return b

