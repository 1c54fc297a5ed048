"""Known events (holidays, campaigns, releases, maintenance) that make KPIs move on purpose.

A dip on a public holiday or a surge during a campaign looks like an incident to a detector that
only sees the series. The calendar is what people already know: a TOML file (``PULSE_CALENDAR``)
of ``[[event]]`` tables, each with a time range, the KPIs and series it touches and, when known,
its expected multiplicative ``effect``. The detector stage asks :meth:`Calendar.active` which
events cover a window (to say so in an alert) and :meth:`Calendar.effect` how far to move the
expected value. Format and rules: docs/calendar.md.

>>> cal = parse_calendar('''
... [[event]]
... name = "New Year"
... kind = "holiday"
... start = "2026-01-01T00:00:00Z"
... end = "2026-01-02T00:00:00Z"
... kpis = ["signups", "scans"]
... effect = 0.6
... ''')
>>> ts = 1767268800.0  # 2026-01-01T12:00:00Z
>>> [e.name for e in cal.active(ts, "signups")], cal.effect(ts, "signups"), cal.effect(ts, "mrr")
(['New Year'], 0.6, 1.0)
"""

from __future__ import annotations

import json
import math
import os
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.timefmt import iso_utc
from kpis.formulas import KPI_BY_ID

__all__ = ["ENV_VAR", "KINDS", "Calendar", "CalendarError", "CalendarEvent", "CalendarFile",
           "load_calendar", "parse_calendar", "to_toml", "write_calendar"]

ENV_VAR = "PULSE_CALENDAR"
"""Environment variable holding the calendar file's path (unset or empty: no calendar)."""
KINDS: tuple[str, ...] = ("holiday", "campaign", "release", "maintenance")
ALL = "all"
_REQUIRED = ("name", "kind", "start", "end")
_KEYS = (*_REQUIRED, "kpis", "segment", "channel", "effect")


class CalendarError(ValueError):
    """A calendar file that cannot be used; the message names the file, the entry and the fix."""


def _utc(ts: float) -> str:
    """Sub-second digits only when there are some, so an entry reads back as it was written."""
    return iso_utc(ts, fraction="microseconds")


@dataclass(frozen=True)
class CalendarEvent:
    """One known event over ``[start, end)`` (epoch seconds).

    ``kpis``, ``segment`` and ``channel`` are None when the event touches every KPI, segment or
    channel. ``effect`` is the expected factor on the KPI value (0.6: 40 % down), None when
    unknown.
    """

    name: str
    kind: str
    start: float
    end: float
    kpis: tuple[str, ...] | None = None
    segment: str | None = None
    channel: str | None = None
    effect: float | None = None

    def overlaps(self, start: float, end: float) -> bool:
        """Whether the event shares time with ``[start, end)``."""
        return self.start < end and start < self.end

    def applies_to(self, kpi: str, segment: str = ALL, channel: str = ALL) -> bool:
        """Whether the series (kpi, segment, channel) can show the event.

        An event on channel X shows in the series of channel X and in those over every channel
        (``all``), which include X; not in another channel's. The same for segments.
        """
        return ((self.kpis is None or kpi in self.kpis)
                and (self.segment is None or segment in (ALL, self.segment))
                and (self.channel is None or channel in (ALL, self.channel)))

    def moves(self, kpi: str, segment: str = ALL, channel: str = ALL) -> bool:
        """Whether ``effect`` is the expected factor of that series.

        Only for the event's own segment and channel (and those under them): over every channel
        the factor is diluted by the other channels' traffic, which the calendar does not know.
        """
        return (self.effect is not None and self.applies_to(kpi, segment, channel)
                and (self.segment is None or segment == self.segment)
                and (self.channel is None or channel == self.channel))

    def describe(self) -> str:
        """One line for an alert: what, when, and the expected effect.

        >>> CalendarEvent("Spring sale", "campaign", 0.0, 86400.0, ("signups",),
        ...               channel="social", effect=2.0).describe()
        "campaign 'Spring sale' on channel social (1970-01-01T00:00:00Z .. \
1970-01-02T00:00:00Z), expected x2"
        """
        where = "".join(f" on {k} {v}" for k, v in (("segment", self.segment),
                                                     ("channel", self.channel)) if v)
        text = f"{self.kind} {self.name!r}{where} ({_utc(self.start)} .. {_utc(self.end)})"
        return text if self.effect is None else f"{text}, expected x{self.effect:g}"

    def to_dict(self) -> dict[str, Any]:
        """The ``[[event]]`` table of this event, as the file holds it."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind,
                               "start": _utc(self.start), "end": _utc(self.end)}
        if self.kpis is not None:
            out["kpis"] = list(self.kpis)
        for key in ("segment", "channel", "effect"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


class Calendar:
    """The known events of one file, queried by event time and series.

    ``source`` names where they came from (the file path), for messages.
    """

    def __init__(self, events: Iterable[CalendarEvent] = (), source: str | None = None):
        self.events: tuple[CalendarEvent, ...] = tuple(sorted(events, key=lambda e: e.start))
        self.source = source

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Calendar:
        """The calendar named by ``PULSE_CALENDAR``; empty when the variable is unset or empty.

        A set variable naming a missing or broken file raises :class:`CalendarError`: a worker
        that silently ran without its calendar would alert on every known event.
        """
        path = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
        return load_calendar(path) if path else cls()

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[CalendarEvent]:
        return iter(self.events)

    def __repr__(self) -> str:
        return f"Calendar({len(self.events)} events from {self.source or 'memory'})"

    def active(self, ts: float, kpi: str, segment: str = ALL, channel: str = ALL, *,
               until: float | None = None) -> list[CalendarEvent]:
        """Events covering event time ``ts`` (or sharing time with ``[ts, until)``) that the
        series (kpi, segment, channel) can show, by start.

        Pass a window's start and ``until=`` its end: a 20-minute maintenance inside an hour
        does not cover the hour's start.
        """
        if until is None or until <= ts:
            hits = [e for e in self.events if e.start <= ts < e.end]
        else:
            hits = [e for e in self.events if e.overlaps(ts, until)]
        return [e for e in hits if e.applies_to(kpi, segment, channel)]

    def effect(self, ts: float, kpi: str, segment: str = ALL, channel: str = ALL, *,
               until: float | None = None) -> float:
        """Expected factor on the series' value at ``ts``: the product of the effects of the
        active events that move it (:meth:`CalendarEvent.moves`); 1.0 if none.

        With ``until=``, the time-weighted mean of that factor over ``[ts, until)``: a window
        half inside a holiday of effect 0.6 expects 0.8 of its usual value.
        """
        if until is None or until <= ts:
            factor = 1.0
            for e in self.active(ts, kpi, segment, channel):
                if e.moves(kpi, segment, channel):
                    factor *= e.effect  # type: ignore[operator]
            return factor
        movers = [e for e in self.active(ts, kpi, segment, channel, until=until)
                  if e.moves(kpi, segment, channel)]
        if not movers:
            return 1.0
        cuts = sorted({ts, until, *(min(max(t, ts), until) for e in movers
                                    for t in (e.start, e.end))})
        total = 0.0
        for a, b in zip(cuts, cuts[1:], strict=False):
            factor = 1.0
            for e in movers:
                if e.start <= a < e.end:
                    factor *= e.effect  # type: ignore[operator]
            total += factor * (b - a)
        return total / (until - ts)


# -- reading -------------------------------------------------------------------------------------
def _time(value: Any, where: str, key: str) -> float:
    hint = f'give {key} as an ISO-8601 UTC time string like "2026-01-07T00:00:00Z"'
    if isinstance(value, datetime):  # an unquoted TOML date-time
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CalendarError(f"{where}: {key} {value!r} is not a date-time; {hint}") from None
    else:
        raise CalendarError(f"{where}: {key} is {type(value).__name__}, not a time; {hint}")
    offset = parsed.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise CalendarError(f"{where}: {key} {value!s} is not in UTC; {hint}")
    return parsed.timestamp()


def _label(value: Any, where: str, key: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        raise CalendarError(f"{where}: {key} must be a non-empty string, e.g. {key} = "
                            f"\"{'referral' if key == 'channel' else 'new_grad'}\"")
    return None if value == ALL else value


def _event(raw: Any, where: str) -> CalendarEvent:
    if not isinstance(raw, dict):
        raise CalendarError(f"{where}: must be a table under [[event]]")
    unknown = sorted(set(raw) - set(_KEYS))
    missing = [k for k in _REQUIRED if k not in raw]
    for names, problem in ((unknown, f"allowed: {', '.join(_KEYS)}"),
                           (missing, f"every event needs {', '.join(_REQUIRED)}")):
        if names:
            what = "unknown key(s)" if names is unknown else "missing"
            raise CalendarError(f"{where}: {what} {', '.join(names)}; {problem}")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise CalendarError(f"{where}: name must be a non-empty string")
    kind = raw["kind"]
    if kind not in KINDS:
        raise CalendarError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    start, end = _time(raw["start"], where, "start"), _time(raw["end"], where, "end")
    if end <= start:
        raise CalendarError(f"{where}: end {_utc(end)} is not after start {_utc(start)}; "
                            "give an end later than the start")
    kpis: tuple[str, ...] | None = None
    if "kpis" in raw:
        value = raw["kpis"]
        if (not isinstance(value, list) or not value
                or not all(isinstance(k, str) for k in value)):
            raise CalendarError(f'{where}: kpis must be a non-empty list of KPI ids, e.g. '
                                f'kpis = ["signups"]; leave it out for every KPI')
        bad = [k for k in value if k not in KPI_BY_ID]
        if bad:
            raise CalendarError(f"{where}: unknown KPI id(s) {', '.join(map(repr, bad))}; "
                                f"valid: {', '.join(KPI_BY_ID)}")
        kpis = tuple(value)
    effect: float | None = None
    if "effect" in raw:
        value = raw["effect"]
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value < 0):
            raise CalendarError(f"{where}: effect {value!r} must be a number >= 0, the expected "
                                "factor on the KPI (0.6 for 40 % down, 2.0 for double, 0 for "
                                "nothing at all, as in a pipeline maintenance); leave it out "
                                "when unknown")
        effect = float(value)
    return CalendarEvent(
        name=name, kind=kind, start=start, end=end, kpis=kpis,
        segment=_label(raw["segment"], where, "segment") if "segment" in raw else None,
        channel=_label(raw["channel"], where, "channel") if "channel" in raw else None,
        effect=effect)


def parse_calendar(text: str, source: str = "<calendar>") -> Calendar:
    """The calendar in TOML ``text``; ``source`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CalendarError(f"{source}: not valid TOML ({e})") from None
    extra = sorted(set(doc) - {"event"})
    if extra:
        raise CalendarError(f"{source}: unknown top-level key(s) {', '.join(extra)}; a calendar "
                            "holds only [[event]] tables")
    raw = doc.get("event", [])
    if not isinstance(raw, list):
        raise CalendarError(f"{source}: event must be an array of tables: write [[event]], "
                            "not [event]")
    events = []
    for i, entry in enumerate(raw, 1):
        name = entry.get("name") if isinstance(entry, dict) else None
        named = isinstance(name, str) and bool(name.strip())
        where = f"{source}: [[event]] #{i}" + (f" ({name!r})" if named else "")
        events.append(_event(entry, where))
    return Calendar(events, source)


def load_calendar(path: str | os.PathLike[str]) -> Calendar:
    """The calendar in the TOML file at ``path`` (format: docs/calendar.md)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CalendarError(f"{path}: cannot read the calendar ({e}); check {ENV_VAR}") from None
    return parse_calendar(text, str(path))


# -- writing -------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(events: Iterable[CalendarEvent], header: str = "") -> str:
    """The calendar file of ``events`` (``header`` as comment lines on top).

    >>> print(to_toml([CalendarEvent("Deploy", "release", 0.0, 600.0)]), end="")
    [[event]]
    name = "Deploy"
    kind = "release"
    start = "1970-01-01T00:00:00Z"
    end = "1970-01-01T00:10:00Z"
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for e in events:
        if lines:
            lines.append("")
        lines.append("[[event]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in e.to_dict().items())
    return "\n".join(lines) + "\n" if lines else ""


def write_calendar(path: str | os.PathLike[str], events: Iterable[CalendarEvent],
                   header: str = "") -> None:
    """Write ``events`` as a calendar file that :func:`load_calendar` reads back."""
    Path(path).write_text(to_toml(events, header), encoding="utf-8")


class CalendarFile:
    """A calendar file the worker re-reads when it changes, so known events can be added while
    Pulse runs (the demo writes the events it places once it has placed them).

    :meth:`current` checks the file's modification time at most every ``check_every_s``
    seconds. A file that cannot be used is reported through ``on_error`` (once per change) and
    the last good calendar stays in force: a typo never stops the detectors, nor silently
    drops the events they were told about.
    """

    def __init__(self, path: str | os.PathLike[str], check_every_s: float = 2.0,
                 on_error: Any = None, clock: Any = None):
        self.path = Path(path)
        self.check_every_s = check_every_s
        self.on_error = on_error
        self._clock = clock or time.monotonic
        self._calendar = Calendar(source=str(self.path))
        self._stamp: tuple[int, int] | None = None
        self._checked = -math.inf
        self.current(force=True)

    def current(self, force: bool = False) -> Calendar:
        """The calendar as the file holds it now (re-read if it changed)."""
        now = self._clock()
        if not force and now - self._checked < self.check_every_s:
            return self._calendar
        self._checked = now
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError as e:
            stamp = (-1, -1)
            if stamp != self._stamp:
                self._stamp = stamp
                self._report(CalendarError(f"{self.path}: cannot read the calendar ({e}); "
                                           f"check {ENV_VAR}"))
            return self._calendar
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._calendar = load_calendar(self.path)
            except CalendarError as e:
                self._report(e)
        return self._calendar

    def _report(self, error: CalendarError) -> None:
        if self.on_error is not None:
            self.on_error(error)
