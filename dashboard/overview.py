"""Overview: every KPI now, against its target (met or missed), with its last 7 days.

A KPI's "now" is its series' newest window, complete or not: a 30-day KPI of a stream younger
than 30 days is shown, marked as still filling up (docs/kpis.md, Warm-up), and so is its
verdict. Values are written by :func:`alerting.evidence.format_value`, as in Slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from alerting.evidence import direction_meaning, format_change, format_value, kpi_label
from assistant.periods import moment_text
from assistant.store import KpiStore, Point
from core.timefmt import clock_utc
from dashboard.html import PageInfo, esc, page, pill
from dashboard.sparkline import sparkline
from kpis.formulas import DAY_S, KPI_BY_ID, KPIS

__all__ = ["GROUPS", "KpiCard", "kpi_card", "overview_body", "overview_page", "target_status"]

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Revenue and payments", ("mrr", "mrr_growth", "revenue", "arpu", "payments",
                              "payment_failure_rate")),
    ("Unit economics", ("ltv", "cac", "ltv_cac")),
    ("Acquisition and conversion", ("signups", "paid_conversions", "conversion_rate",
                                    "viral_coefficient", "funnel_signup_to_scan",
                                    "funnel_scan_to_paid", "funnel_signup_to_paid")),
    ("Product and retention", ("scans", "match_rate", "daily_active_ratio", "churn_rate")),
)
"""The Overview's sections, each KPI of :data:`kpis.formulas.KPIS` in one."""

WEEK_S = 7 * DAY_S
_WHEN = {"trailing 30 d": "last 30 days",
         "as its parts": "last 30 days", "trailing 24 h / 30 d": "last 24 h of 30 days"}


def target_status(kpi: str, value: float | None) -> str:
    """``met``, ``missed``, or '' when the KPI has no target or no value.

    >>> target_status("churn_rate", 0.031), target_status("conversion_rate", 0.12)
    ('met', 'missed')
    >>> target_status("signups", 40.0), target_status("churn_rate", None)
    ('', '')
    """
    k = KPI_BY_ID.get(kpi)
    if k is None or k.target is None or value is None or not math.isfinite(value):
        return ""
    good = value >= k.target if k.higher_is_better is not False else value <= k.target
    return "met" if good else "missed"


def target_text(kpi: str) -> str:
    """``≥ 15.0%``, ``≤ $50.00``, ``≤ 5.0% a month``; '' without a target.

    >>> target_text("conversion_rate"), target_text("churn_rate"), target_text("ltv")
    ('≥ 15.0%', '≤ 5.0% a month', '≥ $300')
    """
    k = KPI_BY_ID.get(kpi)
    if k is None or k.target is None:
        return ""
    sign = "≤" if k.higher_is_better is False else "≥"
    per = " a month" if "per month" in k.unit else ""
    return f"{sign} {format_value(k.target, kpi)}{per}"


def flow(kpi: str) -> str:
    """How a KPI's hourly values add up to a day: ``sum`` (counts, money), ``share`` (a
    ratio of the window's own events: weighted by ``n``), ``growth`` (compounded), or ''
    (a level or a trailing KPI, whose newest value already covers its span).

    >>> flow("signups"), flow("conversion_rate"), flow("funnel_signup_to_paid"), flow("mrr")
    ('sum', 'share', 'share', '')
    """
    k = KPI_BY_ID[kpi]
    if k.id == "mrr_growth":
        return "growth"
    if k.horizon != "window" and not k.horizon.endswith("after signup"):
        return ""
    return "share" if k.unit.startswith("ratio") else "sum"


def _combine(points: list[Point], how: str) -> float:
    if how == "sum":
        return sum(p.value for p in points)
    if how == "growth":
        return math.prod(1.0 + p.value for p in points) - 1.0
    weights = [p.n if math.isfinite(p.n) and p.n > 0 else 0.0 for p in points]
    if sum(weights) <= 0:
        return sum(p.value for p in points) / len(points)
    return sum(p.value * w for p, w in zip(points, weights, strict=True)) / sum(weights)


def rolling_day(points: list[Point], how: str) -> list[tuple[float, float]]:
    """(end, value over the day ending there) at each point; ``how`` as :func:`flow`.

    >>> pts = [Point(h * 3600.0, (h + 1) * 3600.0, 1.0, 1.0, True) for h in range(30)]
    >>> [v for _, v in rolling_day(pts, "sum")][-1], rolling_day(pts, "sum")[0]
    (24.0, (3600.0, 1.0))
    """
    out: list[tuple[float, float]] = []
    lo = 0
    for i, p in enumerate(points):
        while points[lo].start < p.end - DAY_S:
            lo += 1
        out.append((p.end, _combine(points[lo:i + 1], how)))
    return out


@dataclass(frozen=True)
class KpiCard:
    """What one KPI's card shows, worked out from the store: ``value`` at ``end`` (for a
    :func:`flow` KPI, over the day to ``end``; ``hour``: its last window alone), ``week`` the
    values drawn, ``week_ago`` the value 7 days before."""

    kpi: str
    label: str
    value: float | None = None
    end: float | None = None
    hour: float | None = None
    week: list[tuple[float, float]] = field(default_factory=list)
    status: str = ""
    week_ago: float | None = None
    warmup_days: float | None = None   # days of stream seen, while the value is filling up
    alert: dict | None = None


def kpi_card(store: KpiStore, kpi: str, open_alerts: list[dict] | None = None) -> KpiCard:
    """The card of ``kpi``'s overall series (all segments and channels)."""
    points = store.points(kpi, complete_only=False)
    alert = next((a for a in open_alerts or [] if a.get("kpi") == kpi
                  and a.get("segment") == "all" and a.get("channel") == "all"), None)
    if not points:
        return KpiCard(kpi, kpi_label(kpi), alert=alert)
    latest = points[-1]
    how = flow(kpi)
    recent = [p for p in points if p.end > latest.end - WEEK_S - DAY_S]
    values = rolling_day(recent, how) if how else [(p.end, p.value) for p in recent]
    week = [(t, v) for t, v in values if t > latest.end - WEEK_S]
    then = [v for t, v in values if abs(t - (latest.end - WEEK_S)) < 1.0]
    # a week before, over a whole day of its own (not the stream's first hours), both complete
    whole = store.first is not None and store.first <= latest.end - WEEK_S - (DAY_S if how else 0)
    comparable = latest.complete and bool(then) and whole
    warm = None
    if not latest.complete and store.first is not None:
        warm = max(latest.end - store.first, 0.0) / DAY_S
    value = week[-1][1]
    return KpiCard(kpi, kpi_label(kpi), value, latest.end, latest.value if how else None,
                   week, target_status(kpi, value), then[-1] if comparable else None, warm,
                   alert)


def _when(card: KpiCard) -> str:
    k = KPI_BY_ID[card.kpi]
    assert card.end is not None
    if flow(card.kpi):
        return f"24 h to {clock_utc(card.end)} UTC"
    if k.horizon == "level at window end":
        return f"at {clock_utc(card.end)} UTC"
    return _WHEN.get(k.horizon, k.horizon)


def _delta(card: KpiCard) -> str:
    if card.value is None or card.week_ago is None:
        return ""
    change = format_change(card.value, card.week_ago, card.kpi)[0]
    if not any(c in "123456789" for c in change):   # no change at the shown precision
        return '<span class="kpi-delta">same as 7 d ago</span>'
    direction = "up" if card.value > card.week_ago else "down"
    meaning = direction_meaning(card.kpi, direction)
    cls = f" {meaning}" if meaning in ("better", "worse") else ""
    return f'<span class="kpi-delta{cls}">{esc(change)} vs 7 d ago</span>'


def _card_html(card: KpiCard, window_s: float, now: float | None) -> str:
    k = KPI_BY_ID[card.kpi]
    classes = "card kpi" + (" alerting" if card.alert else "")
    attrs = (f'class="{classes}" id="kpi-{esc(card.kpi)}" data-kpi="{esc(card.kpi)}" '
             f'data-target-status="{esc(card.status or "none")}"')
    if card.value is None or card.end is None:
        wait = (f"appears {k.warmup_s / DAY_S:g} days after the stream starts"
                if k.warmup_s else "no value yet")
        return (f'<div {attrs}><div class="kpi-head"><span class="kpi-name">{esc(card.label)}'
                '</span></div><div class="kpi-value muted">n/a</div>'
                f'<div class="kpi-target">{_target_html(card)}</div>'
                f'<div class="warm">{esc(wait)}</div></div>')
    value = format_value(card.value, card.kpi)
    when = _when(card)
    if now is not None and card.end < now - window_s and not flow(card.kpi):
        when += f", as of {moment_text(card.end)}"   # no value in the newest windows
    hour = ""
    if card.hour is not None:
        span = "hour" if abs(window_s - 3600.0) < 1 else f"{window_s / 60:g} min"
        hour = (f'<span class="kpi-hour">last {span}: '
                f'{esc(format_value(card.hour, card.kpi))}</span>')
    sub = (f'<div class="kpi-sub"><span>{esc(when)}</span>{hour}</div>'
           f'<div class="kpi-sub">{_delta(card)}</div>')
    good = {"met": True, "missed": False}.get(card.status)
    spark = sparkline(card.week, target=k.target, good=good,
                      label=f"{card.label}, last 7 days")
    lo = min(v for _, v in card.week) if card.week else math.nan
    hi = max(v for _, v in card.week) if card.week else math.nan
    caption = (f'<div class="spark-caption"><span>7 days: {esc(format_value(lo, card.kpi))} to '
               f'{esc(format_value(hi, card.kpi))}</span></div>' if spark else "")
    warm = ""
    if card.warmup_days is not None and k.warmup_s:
        warm = (f'<div class="warm">Still filling up: {card.warmup_days:.0f} of '
                f'{k.warmup_s / DAY_S:g} days seen</div>')
    alert = pill("alert open", "open") if card.alert else ""
    return (f'<div {attrs}><div class="kpi-head"><span class="kpi-name">{esc(card.label)}'
            f'</span>{alert}</div><div class="kpi-value">{esc(value)}</div>{sub}'
            f'<div class="kpi-target">{_target_html(card)}</div>{warm}{spark}{caption}</div>')


def _target_html(card: KpiCard) -> str:
    text = target_text(card.kpi)
    if not text:
        return '<span class="muted">No target</span>'
    verdict = ""
    if card.status:
        word = "Target met" if card.status == "met" else "Target missed"
        verdict = pill(word + (" so far" if card.warmup_days is not None else ""),
                       card.status)
    return f"<span>Target {esc(text)}</span>{verdict}"


def overview_body(store: KpiStore) -> str:
    """The Overview tab's HTML (inside the frame)."""
    alerts = store.open_alerts()
    cards = {k.id: kpi_card(store, k.id, alerts) for k in KPIS}
    targeted = [c for c in cards.values() if KPI_BY_ID[c.kpi].target is not None]
    met = sum(c.status == "met" for c in targeted)
    missed = [c for c in targeted if c.status == "missed"]
    missed_links = ", ".join(f'<a href="#kpi-{esc(c.kpi)}">{esc(c.label)}</a>' for c in missed)
    n_alerts = len(alerts)
    summary = (
        '<div class="summary">'
        f'<div class="stat"><b>{met} of {len(targeted)}</b><span>targets met</span></div>'
        f'<div class="stat"><b class="{"worse" if missed else "better"}">{len(missed)}</b>'
        f'<span>missed{": " + missed_links if missed else ""}</span></div>'
        f'<div class="stat"><b class="{"worse" if n_alerts else "better"}">{n_alerts}</b>'
        f'<span><a href="/alerts">open alert{"s" if n_alerts != 1 else ""}</a></span></div>'
        "</div>")
    sections = []
    placed: set[str] = set()
    for title, ids in GROUPS:
        sections.append(_section(title, [cards[i] for i in ids if i in cards], store))
        placed.update(ids)
    rest = [c for k, c in cards.items() if k not in placed]
    if rest:
        sections.append(_section("Other", rest, store))
    return ('<h1>Overview</h1><p class="lede">Every KPI across all segments and channels: its '
            "newest value against its target, and its last 7 days (the dot is now, the dashed line "
            "the target). Counts, money and shares of the hour's events are over the last "
            f"24 hours, compared with the same 24 hours a week before.</p>{summary}"
            + "".join(sections))


def _section(title: str, cards: list[KpiCard], store: KpiStore) -> str:
    inner = "".join(_card_html(c, store.window_s, store.now) for c in cards)
    return f'<h2>{esc(title)}</h2><div class="grid">{inner}</div>'


def overview_page(store: KpiStore, info: PageInfo) -> str:
    """The Overview as a whole HTML document."""
    return page("overview", overview_body(store), info)
