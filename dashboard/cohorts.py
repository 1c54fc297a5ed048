"""Cohorts: the retention heatmap, a row per weekly signup cohort, a column per cohort KPI.

A cohort's value comes once its horizon has passed (docs/kpis.md, Cohort KPIs: day-7 retention
8 days after the week ends, day-30 retention 31 days, paid retention 49 days), so the newest
weeks fill in from the left. Shading is per column (each KPI has its own scale: a paid month-1
retention of 80% and a day-7 retention of 30% are both ordinary).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from urllib.parse import urlencode

from assistant.facts import fmt
from assistant.store import KpiStore, Point
from dashboard.html import PageInfo, esc, page, slice_title
from kpis.formulas import COHORT_KPIS

__all__ = ["DUE_DAYS", "cohort_grid", "cohorts_body", "cohorts_page"]

DUE_DAYS = {"retention_d7": 8, "retention_d30": 31, "paid_retention_m1": 49}
"""Days after a cohort's week ends when each KPI is reported."""

Grid = dict[str, dict[str, Point]]   # week -> kpi -> value


def cohort_grid(store: KpiStore, segment: str = "all", channel: str = "all") -> Grid:
    """``{week: {kpi: point}}`` of the slice's cohort KPIs, newest week first."""
    grid: Grid = {}
    for k in COHORT_KPIS:
        for week, point in store.cohort_values(k.id, segment, channel):
            grid.setdefault(week, {})[k.id] = point
    return dict(sorted(grid.items(), reverse=True))


def _week(week: str) -> str:
    try:
        return datetime.strptime(week, "%Y-%m-%d").replace(tzinfo=UTC).strftime("%-d %b %Y")
    except ValueError:
        return week


def _shade(value: float, lo: float, hi: float) -> str:
    """Background and text colour for a value in a column's range: light to dark blue."""
    t = 0.55 if hi - lo < 1e-9 else (value - lo) / (hi - lo)
    light, dark = (239, 246, 255), (30, 64, 175)
    rgb = tuple(round(a + (b - a) * (0.15 + 0.85 * t)) for a, b in zip(light, dark, strict=True))
    ink = "#fff" if t > 0.45 else "#111827"
    return f"background:rgb{rgb};color:{ink}"


def _slices(store: KpiStore, segment: str, channel: str) -> str:
    kpi = COHORT_KPIS[0].id
    options = [("all", "all"), *((s, "all") for s in store.segments(kpi)),
               *(("all", c) for c in store.channels(kpi))]
    links = []
    for s, c in options:
        query = "" if (s, c) == ("all", "all") else "?" + urlencode(
            {"segment": s} if c == "all" else {"channel": c})
        on = ' class="on"' if (s, c) == (segment, channel) else ""
        links.append(f'<a href="/cohorts{esc(query)}"{on}>{esc(slice_title(s, c))}</a>')
    return f'<div class="slices">{"".join(links)}</div>'


def cohorts_body(store: KpiStore, segment: str = "all", channel: str = "all") -> str:
    """The Cohorts tab's HTML (inside the frame), for one slice."""
    grid = cohort_grid(store, segment, channel)
    ranges = {}
    for k in COHORT_KPIS:
        values = [row[k.id].value for row in grid.values() if k.id in row]
        ranges[k.id] = (min(values), max(values)) if values else (0.0, 1.0)
    head = "".join(f'<th title="{esc(k.doc)}">{esc(k.title)}<br><small class="muted">reported '
                   f"{DUE_DAYS.get(k.id, 0)} d after the week</small></th>" for k in COHORT_KPIS)
    rows = []
    for week, row in grid.items():
        members = row.get("retention_d7") or row.get("retention_d30")
        size = f"{members.n:,.0f}" if members and math.isfinite(members.n) else ""
        partial = any(not p.complete for p in row.values())
        label = esc(_week(week)) + (' <small class="muted">partial week*</small>'
                                    if partial else "")
        cells = []
        for k in COHORT_KPIS:
            p = row.get(k.id)
            if p is None:
                cells.append(f'<td class="cell muted" data-kpi="{esc(k.id)}">not yet</td>')
                continue
            n = f"{p.n:,.0f} {'paid members' if k.id == 'paid_retention_m1' else 'members'}"
            cells.append(f'<td class="cell" data-kpi="{esc(k.id)}" '
                         f'style="{_shade(p.value, *ranges[k.id])}" title="{esc(n)}">'
                         f"{esc(fmt(p.value, k.id))}<small>{esc(n)}</small></td>")
        rows.append(f'<tr data-cohort="{esc(week)}"><th>Week of {label}</th>'
                    f'{"".join(cells)}<td class="num">{esc(size)}</td></tr>')
    if rows:
        table = (f'<table class="heat"><thead><tr><th>Signup cohort</th>{head}<th>Members</th>'
                 f'</tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 '<p class="muted">* The stream began during that week: only the signups seen '
                 "are in the cohort. Darker is higher within each column.</p>")
    else:
        table = ('<p class="card">No cohort has been reported yet: day-7 retention comes 8 days '
                 "after a signup week ends (up to 15 days after the stream starts).</p>")
    return ('<h1>Cohorts</h1><p class="lede">Retention of each weekly signup cohort (users whose '
            "signup fell in the week starting that Monday, UTC): active on day 7 and day 30 "
            "after signup, and paying customers still subscribed a month after their first "
            f"payment. Showing: {esc(slice_title(segment, channel))}.</p>"
            f"{_slices(store, segment, channel)}{table}")


def cohorts_page(store: KpiStore, info: PageInfo, segment: str = "all",
                 channel: str = "all") -> str:
    """The Cohorts tab as a whole HTML document."""
    return page("cohorts", cohorts_body(store, segment, channel), info)
