"""The integer rows one partition's windows hand to :class:`~kpis.merger.KpiMerger`.

A row holds, for one event key (segment, channel), every :class:`~kpis.formulas.KpiInputs`
field as an integer in exact units (cents, 1/1200 USD, millionths of a match score), so sums over
partitions do not depend on the order they are read in. The counting side
(:mod:`kpis.windows`), the merger and the ``kpi-partials`` codec (:mod:`kpis.partials`) share
this layout and the two messages built on it, :class:`WindowInputs` and :class:`Peek`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from kpis.formulas import KpiInputs

__all__ = ["Cohort", "INDEX", "Key", "MATCH_UNITS", "MRR_UNITS_PER_USD", "N_INPUTS",
           "WINDOW_FIELDS", "Peek", "WindowInputs", "bump", "cents", "window_only"]

Key = tuple[str | None, str | None]
"""(segment, channel) as found on an event; spend has no segment (None)."""
Cohort = tuple[str, str, Key, int, int]
"""(kpi, cohort week start ISO date, key, numerator, denominator) from kpis/cohorts.py."""

N_INPUTS = len(KpiInputs._fields)
INDEX = {name: i for i, name in enumerate(KpiInputs._fields)}
"""Position of each KpiInputs field in a row."""
WINDOW_FIELDS = ("signups", "scans", "match_sum", "conversions", "payments", "revenue", "failed")
"""The fields a window counts itself; the others are levels and trailing sums carried from
window to window. A :class:`Peek` holds only these."""
_WINDOW_ONLY = tuple(INDEX[name] for name in WINDOW_FIELDS)

# Subscription values are kept in integer 1/1200 USD (a twelfth of a cent): a monthly plan of
# `c` cents is worth 12 * c, an annual plan of `c` cents c / 12 cents = c units per month.
MRR_UNITS_PER_USD = 1200
# Match scores are summed in integer millionths, so a window's match rate does not depend on
# the order partitions are read in (a float sum would differ in its last bits).
MATCH_UNITS = 1_000_000


def cents(amount: float) -> int:
    return round(amount * 100)


def bump(d: dict[Any, int], key: Any, delta: int) -> None:
    """Add ``delta`` to ``d[key]``, dropping the key at 0 so dicts stay small."""
    v = d.get(key, 0) + delta
    if v:
        d[key] = v
    else:
        d.pop(key, None)


def window_only(rows: dict[Key, list[int]]) -> dict[Key, list[int]]:
    """Only the window's own fields of closed-window rows (what a :class:`Peek` holds)."""
    out = {}
    for key, r in rows.items():
        w = out[key] = [0] * N_INPUTS
        for i in _WINDOW_ONLY:
            w[i] = r[i]
    return out


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
