"""Periods of event time a question asks about, and the periods they are compared with.

"Now" is the end of the newest window in the data, never the wall clock: a replay or a
demo's file answers the same way on any day. A window belongs to a period when it lies
inside it (``start <= window_start`` and ``window_end <= end``). Calendar periods are UTC.

>>> now = 1770811200.0                       # Wed 11 Feb 2026 12:00 UTC
>>> week = resolve("this_week", now)
>>> week.text()
'this week so far (Mon 9 Feb 00:00 – Wed 11 Feb 12:00 UTC)'
>>> previous(week).text()
'the same part of last week (Mon 2 Feb 00:00 – Wed 4 Feb 12:00 UTC)'
>>> resolve("yesterday", now).text(), previous(resolve("yesterday", now)).label
('yesterday (Tue 10 Feb)', 'the day before')
>>> resolve("range", now, start="2026-02-02", end="2026-02-05").text()
'Mon 2 Feb – Thu 5 Feb'
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from alerting.evidence import format_duration
from core.timefmt import iso_utc, parse_utc
from kpis.formulas import DAY_S

__all__ = ["COMPARISONS", "PERIODS", "Period", "compare_with", "date_of", "day_start",
           "moment_text", "parse_day", "previous", "resolve", "span_text", "week_earlier"]

PERIODS: tuple[str, ...] = ("last_window", "today", "yesterday", "this_week", "last_week",
                            "last_7_days", "last_30_days", "last_n_days", "this_month",
                            "last_month", "range")
"""Period names the tools take (``last_n_days`` with ``days``, ``range`` with dates)."""
COMPARISONS: tuple[str, ...] = ("previous_period", "week_earlier", "target", "none")
"""``previous_period``: the period just before, of the same length (for "this week so far",
the same part of last week); ``week_earlier``: the same period one week earlier (the same
day last week); ``target``: the KPI's target."""
WEEK_S = 7 * DAY_S


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in epoch seconds, with the words that name it (``this week so far``).

    ``kind`` says how to step back from it: ``day``, ``week``, ``month`` (calendar units) or
    ``span`` (its own length).
    """

    name: str
    start: float
    end: float
    label: str
    kind: str = "span"

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def text(self) -> str:
        """``this week so far (Mon 9 Feb 00:00 – Wed 11 Feb 12:00 UTC)``."""
        span = span_text(self.start, self.end)
        return self.label if span in self.label else f"{self.label} ({span})"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "start": iso_utc(self.start),
                "end": iso_utc(self.end), "text": self.text()}


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _day(ts: float, year: bool = False) -> str:
    d = _dt(ts)
    return f"{d:%a} {d.day} {d:%b}" + (f" {d.year}" if year else "")


def moment_text(ts: float) -> str:
    """``Wed 11 Feb 12:00 UTC``: an instant, as the periods write it."""
    return f"{_day(ts)} {_dt(ts):%H:%M} UTC"


def span_text(start: float, end: float, years: bool = False) -> str:
    """``Tue 10 Feb``, ``Mon 2 Feb – Sun 8 Feb``, ``Wed 11 Feb 00:00–12:00 UTC`` (with
    ``years``: ``Sat 1 Mar 2025 – Mon 31 Mar 2025``)."""
    if start % DAY_S == 0 and end % DAY_S == 0 and end > start:
        last = end - DAY_S
        if last == start:
            return _day(start, years)
        return f"{_day(start, years)} – {_day(last, years)}"
    a, b = _dt(start), _dt(end)
    if a.date() == b.date():
        return f"{_day(start, years)} {a:%H:%M}–{b:%H:%M} UTC"
    return f"{_day(start, years)} {a:%H:%M} – {_day(end, years)} {b:%H:%M} UTC"


def parse_day(text: str) -> float:
    """Epoch seconds of an ISO date or date-time (UTC); ``ValueError`` otherwise."""
    return parse_utc(str(text).strip())


def _month_start(ts: float, back: int = 0) -> float:
    d = _dt(ts).date().replace(day=1)
    for _ in range(back):
        d = (d - timedelta(days=1)).replace(day=1)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def _month_len(ts: float) -> float:
    d = _dt(ts)
    return calendar.monthrange(d.year, d.month)[1] * DAY_S


def resolve(name: str, now: float, window_s: float = 3600.0, *, start: str | None = None,
            end: str | None = None, days: int | None = None) -> Period:
    """The period ``name`` (:data:`PERIODS`) as of ``now``; ``ValueError`` on a bad one.

    ``range`` takes ISO dates (``end`` included when it is a date: 2–5 Feb is four days) or
    date-times; ``last_n_days`` takes ``days``.
    """
    today = now - now % DAY_S
    if name == "last_window":
        return Period(name, now - window_s, now, f"the latest {_length(window_s)}")
    if name == "today":
        return Period(name, today, now, "today so far", "day")
    if name == "yesterday":
        return Period(name, today - DAY_S, today, "yesterday", "day")
    if name in ("this_week", "last_week"):
        monday = today - _dt(today).weekday() * DAY_S
        if name == "this_week":
            return Period(name, monday, now, "this week so far", "week")
        return Period(name, monday - WEEK_S, monday, "last week", "week")
    if name in ("last_7_days", "last_30_days", "last_n_days"):
        n = {"last_7_days": 7, "last_30_days": 30}.get(name, days)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 366:
            raise ValueError("last_n_days needs days, a whole number from 1 to 366")
        return Period(name, now - n * DAY_S, now, f"the last {n} days")
    if name == "this_month":
        first = _month_start(now)
        return Period(name, first, now, "this month so far", "month")
    if name == "last_month":
        first, prev = _month_start(now), _month_start(now, 1)
        return Period(name, prev, first, f"last month ({_dt(prev):%B %Y})", "month")
    if name == "range":
        if not start:
            raise ValueError("range needs start (an ISO date such as 2026-02-02)")
        a = parse_day(start)
        b = parse_day(end) if end else now
        if end and len(str(end).strip()) == 10:   # a date: the whole day is in the range
            b += DAY_S
        if b <= a:
            raise ValueError("range end must be after its start")
        return Period(name, a, b, span_text(a, b))
    raise ValueError(f"unknown period {name!r}; periods: {', '.join(PERIODS)}")


def _length(seconds: float) -> str:
    return "hour" if seconds == 3600 else f"{format_duration(seconds)} window"


def previous(p: Period) -> Period:
    """The period ``p`` is compared with by default: the one just before it (a calendar
    period's "so far" part: the same part of the unit before)."""
    if p.kind == "day":
        label = {"today": "yesterday, same hours" if p.seconds < DAY_S else "yesterday",
                 "yesterday": "the day before"}.get(p.name, "the day before")
        return Period("previous", p.start - DAY_S, p.end - DAY_S, label, "day")
    if p.kind == "week":
        label = "the same part of last week" if p.name == "this_week" else "the week before"
        return Period("previous", p.start - WEEK_S, p.end - WEEK_S, label, "week")
    if p.kind == "month":
        start = _month_start(p.start, 1)
        end = start + min(p.seconds, _month_len(start))
        label = ("the same part of last month" if p.name == "this_month"
                 else f"the month before ({_dt(start):%B %Y})")
        return Period("previous", start, end, label, "month")
    if p.name == "last_window":
        return Period("previous", p.start - p.seconds, p.start,
                      f"the {_length(p.seconds)} before")
    days = p.seconds / DAY_S
    if days == 1:
        return Period("previous", p.start - DAY_S, p.start, "the day before", "day")
    what = f"{days:g} days" if days == int(days) else format_duration(p.seconds)
    return Period("previous", p.start - p.seconds, p.start, f"the {what} before")


def week_earlier(p: Period) -> Period:
    """``p`` moved one week back: the same day (or hours) last week."""
    label = {"day": "the same day last week"}.get(
        p.kind, "the same hour a week earlier" if p.name == "last_window"
        else "the same period a week earlier")
    return replace(p, name="week_earlier", start=p.start - WEEK_S, end=p.end - WEEK_S,
                   label=label)


def compare_with(p: Period, how: str) -> Period | None:
    """The period of comparison ``how`` (:data:`COMPARISONS`); None for ``target``/``none``."""
    if how == "previous_period":
        return previous(p)
    if how == "week_earlier":
        return week_earlier(p)
    if how in ("target", "none"):
        return None
    raise ValueError(f"unknown comparison {how!r}; comparisons: {', '.join(COMPARISONS)}")


def day_start(ts: float) -> float:
    """00:00 UTC of the day holding ``ts``."""
    return ts - ts % DAY_S


def date_of(ts: float) -> date:
    return _dt(ts).date()
