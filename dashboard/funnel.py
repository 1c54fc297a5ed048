"""Funnel: signup to first scan to paid, for all users, each segment and each channel.

Each step's KPI is one window's signups followed up 24 h (first scan) or 14 days (paid) later
(docs/kpis.md, Funnel). One hour of signups is a handful of people, so the tab adds up the
windows reported over the last 7 days: the share is the sum of the numerators over the sum of
the denominators (``value * n``), exactly the share of all those signups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alerting.evidence import format_value, kpi_label
from assistant.periods import moment_text
from assistant.store import KpiStore
from dashboard.html import PageInfo, esc, page, slice_title
from kpis.formulas import DAY_S

__all__ = ["STEPS", "FunnelRow", "funnel_body", "funnel_page", "funnel_rows", "step_share"]

STEPS: tuple[tuple[str, str], ...] = (
    ("funnel_signup_to_scan", "first scan within 24 h of signup"),
    ("funnel_scan_to_paid", "of those who scanned, paid within 14 days"),
    ("funnel_signup_to_paid", "paid within 14 days of signup"),
)
"""The funnel's KPIs, in order, with what each counts."""
DAYS = 7


@dataclass(frozen=True)
class FunnelRow:
    """One slice's steps: ``shares[kpi]`` and ``counts[kpi]`` (the denominators added up)."""

    segment: str
    channel: str
    shares: dict[str, float]
    counts: dict[str, float]

    @property
    def name(self) -> str:
        return slice_title(self.segment, self.channel)


def step_share(store: KpiStore, kpi: str, segment: str, channel: str,
               days: float = DAYS) -> tuple[float, float]:
    """(share, denominator) of ``kpi`` over the windows of the last ``days`` days before the
    store's newest window; (nan, 0) without any.

    >>> from assistant.store import KpiStore
    >>> rows = [{"kpi": "funnel_signup_to_scan", "segment": "all", "channel": "all",
    ...          "window_start": f"2026-02-11T0{h}:00:00Z",
    ...          "window_end": f"2026-02-11T0{h + 1}:00:00Z", "value": v, "n": n}
    ...         for h, v, n in ((1, 0.5, 2.0), (2, 1.0, 6.0))]
    >>> step_share(KpiStore.from_rows(rows), "funnel_signup_to_scan", "all", "all")
    (0.875, 8.0)
    """
    now = store.now
    if now is None:
        return math.nan, 0.0
    points = store.points(kpi, segment, channel, start=now - days * DAY_S, complete_only=False)
    num = sum(p.value * p.n for p in points if math.isfinite(p.n))
    den = sum(p.n for p in points if math.isfinite(p.n))
    return (num / den if den > 0 else math.nan), den


def funnel_rows(store: KpiStore, days: float = DAYS) -> list[FunnelRow]:
    """All users, then each segment, then each channel that has a funnel series."""
    kpis = [k for k, _ in STEPS]
    segments = sorted({s for k in kpis for s in store.segments(k)})
    channels = sorted({c for k in kpis for c in store.channels(k)})
    out = []
    for segment, channel in [("all", "all"), *((s, "all") for s in segments),
                             *(("all", c) for c in channels)]:
        shares, counts = {}, {}
        for k in kpis:
            shares[k], counts[k] = step_share(store, k, segment, channel, days)
        out.append(FunnelRow(segment, channel, shares, counts))
    return out


def _meter(share: float, kpi: str, n: float) -> str:
    if not math.isfinite(share):
        return '<td class="muted">not yet</td>'
    width = max(min(share, 1.0), 0.0) * 120
    return (f'<td data-kpi="{esc(kpi)}" title="{n:,.0f} signups"><div class="meter">'
            f'<span>{esc(format_value(share, kpi))}</span><i style="width:{width:.0f}px"></i>'
            "</div></td>")


def _stages(row: FunnelRow) -> str:
    """The all-users funnel as bars: signed up, scanned, paid."""
    scan, paid = row.shares["funnel_signup_to_scan"], row.shares["funnel_signup_to_paid"]
    signups = row.counts["funnel_signup_to_scan"]
    stages = [("Signed up", "every signup", 1.0, "funnel_signup_to_scan", signups),
              ("Scanned a resume", STEPS[0][1], scan, "funnel_signup_to_scan", signups),
              ("Paid", STEPS[2][1], paid, "funnel_signup_to_paid",
               row.counts["funnel_signup_to_paid"])]
    html = []
    for i, (title, what, share, kpi, n) in enumerate(stages):
        if not math.isfinite(share):
            bar = '<div class="muted">not yet: needs 14 days of stream</div>'
        else:
            text = "100%" if i == 0 else format_value(share, kpi)
            bar = (f'<div class="stage-bar" style="width:{max(share, 0.0) * 100:.1f}%">'
                   f"{esc(text)}</div>")
        who = f" · {n:,.0f} signups" if i != 1 and n else ""
        html.append(f'<div class="stage"><div class="stage-label"><b>{esc(title)}</b>'
                    f"<span>{esc(what)}{esc(who)}</span></div><div>{bar}</div></div>")
        if i == 1:
            step = row.shares["funnel_scan_to_paid"]
            if math.isfinite(step):
                html.append(f'<div class="step">↓ {esc(format_value(step, "funnel_scan_to_paid"))}'
                            " of those who scanned paid within 14 days</div>")
    return f'<div class="funnel card">{"".join(html)}</div>'


def funnel_body(store: KpiStore, days: float = DAYS) -> str:
    """The Funnel tab's HTML (inside the frame)."""
    rows = funnel_rows(store, days)
    period = (f"the {days:g} days to {moment_text(store.now)}" if store.now is not None
              else f"the last {days:g} days")
    head = "".join(f'<th title="{esc(what)}">{esc(kpi_label(k))}<br><small class="muted">'
                   f"{esc(what)}</small></th>" for k, what in STEPS)
    body = []
    groups = {"all": "", "segment": "By segment", "channel": "By channel"}
    last = "all"
    for r in rows:
        group = "all" if r.segment == r.channel == "all" else (
            "segment" if r.channel == "all" else "channel")
        if group != last:
            body.append(f'<tr class="group"><th colspan="5">{groups[group]}</th></tr>')
            last = group
        signups = r.counts["funnel_signup_to_scan"]
        cells = "".join(_meter(r.shares[k], k, r.counts[k]) for k, _ in STEPS)
        body.append(f'<tr data-segment="{esc(r.segment)}" data-channel="{esc(r.channel)}">'
                    f"<th>{esc(r.name)}</th>{cells}"
                    f'<td class="num">{signups:,.0f}</td></tr>')
    table = (f'<table class="funnel-table"><thead><tr><th>Who</th>{head}'
             f"<th>Signups<br><small class=\"muted\">followed up to first scan</small></th></tr>"
             f'</thead><tbody>{"".join(body)}</tbody></table>')
    return ('<h1>Funnel</h1><p class="lede">From signup to first resume scan to paying, for the '
            f"signups whose outcome became known in {esc(period)}: a first scan counts within "
            "24 hours of signup, a payment within 14 days. Segment and channel are those of the "
            f"signup.</p>{_stages(rows[0])}<h2>By segment and channel</h2>{table}")


def funnel_page(store: KpiStore, info: PageInfo) -> str:
    """The Funnel as a whole HTML document."""
    return page("funnel", funnel_body(store), info)
