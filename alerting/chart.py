"""PNGs for Slack (matplotlib, Agg): a KPI around its anomaly (:func:`alert_figure`,
:func:`render_chart`) and the daily digest's last seven days (:func:`week_figure`,
:func:`render_week_chart`).

Charts are read on a phone, in Slack's preview (about 360 px wide): few ticks, large type, the
legend below the data, values in the KPI's own unit (%, $ with separators, counts) and y-axes
inside what the KPI can take (``alerting.evidence.feasible_range``), so a 3% failure rate is
not drawn on a -200%..200% axis. Building a Figure is kept apart from encoding it
(:func:`png_bytes`), so tests can look at the axes. ``matplotlib.figure.Figure`` is used
directly (no pyplot global state): charts can be drawn in a worker thread.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from statistics import median
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import HOURLY, AutoDateLocator, ConciseDateFormatter, DateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from alerting.escape import clean_event_text
from alerting.evidence import KPIS, feasible_band, feasible_range, format_value, kpi_label
from core.timefmt import clock_utc, parse_utc
from kpis.formulas import DAY_S, KPI_BY_ID

__all__ = [
    "ALERT",
    "DPI",
    "FONT",
    "INK",
    "SPAN",
    "alert_figure",
    "chart_points",
    "chart_title",
    "incident_span",
    "png_bytes",
    "render_chart",
    "render_week_chart",
    "style_time_axis",
    "style_value_axis",
    "time_label",
    "to_num",
    "value_scale",
    "week_figure",
]

DPI = 200
"""Pixels per inch of every PNG: the alert chart's 5 x 2.9 inches are 1000 x 580 px, and its
9 to 12 pt type stays 9 to 12 px high when Slack scales it to 360 px."""
INK, EXPECTED, BAND, ALERT, SPAN = "#1f2937", "#2563eb", "#bfdbfe", "#dc2626", "#fca5a5"
FONT = {"title": 12, "sub": 9.5, "tick": 9.5, "label": 9, "legend": 9}


# -- units and axes (shared with pulse/replay_chart.py) ------------------------------------

def _kind(kpi: str) -> str:
    info = KPIS.get(kpi)
    return info.kind if info else "number"


def value_scale(kpi: str) -> float:
    """100 for share KPIs, drawn in percent; 1 otherwise."""
    return 100.0 if _kind(kpi) == "percent" else 1.0


def _unit(kpi: str, per: str = "") -> str:
    """``%``, ``$ per hour``, ``users per day``: what the y-axis counts."""
    kind = _kind(kpi)
    if kind == "percent":
        return "%"
    k = KPI_BY_ID.get(kpi)
    if k is None or kind == "number":
        return ""
    unit = "" if k.unit.lower() == k.title.lower() else k.unit.replace("USD", "$")
    if per and k.horizon == "window":
        return f"{unit} per {per}".strip()
    return unit


def chart_title(kpi: str, per: str = "") -> str:
    """``Payment failure rate (%)``: the KPI's label and unit, never its id."""
    unit = _unit(kpi, per)
    return f"{kpi_label(kpi)} ({unit})" if unit else kpi_label(kpi)


def _tick_text(kpi: str, v: float, step: float) -> str:
    kind = _kind(kpi)
    decimals = 0 if step >= 1 or step <= 0 else min(3, math.ceil(-math.log10(step)))
    if kind == "percent":
        return f"{v:,.{decimals}f}%"
    if kind == "usd":
        return f"${v:,.{decimals}f}" if v >= 0 else f"-${-v:,.{decimals}f}"
    if kind == "count":
        return f"{v:,.0f}"
    return f"{v:,.{max(decimals, 1)}f}"


def style_value_axis(ax: Axes, kpi: str, values: Sequence[float], ticks: int = 4) -> None:
    """Y-axis in the KPI's unit (already scaled, :func:`value_scale`), inside its feasible
    range: from zero for counts, money and shares, never above 100% for a share."""
    lo, hi = (v * value_scale(kpi) for v in feasible_range(kpi))
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite, default=1.0)
    bottom = min(finite, default=0.0)
    if math.isfinite(lo):
        bottom = lo
    pad = (top - bottom) * 0.12 or abs(top) * 0.12 or 1.0
    top = min(top + pad, hi) if math.isfinite(hi) else top + pad
    if not math.isfinite(lo):
        bottom -= pad
    ax.set_ylim(bottom, top)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=ticks, min_n_ticks=3))

    def fmt(v: float, _pos: int | None = None) -> str:
        locs = ax.yaxis.get_majorticklocs()
        step = abs(locs[1] - locs[0]) if len(locs) > 1 else 1.0
        return _tick_text(kpi, v, step)

    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.tick_params(axis="both", labelsize=FONT["tick"])
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def time_label(t0: float, t1: float) -> str:
    """``time (UTC), 1–2 Feb 2026``: the dates the axis covers, and its zone."""
    a, b = (datetime.fromtimestamp(t, UTC) for t in (t0, t1 - 1))
    if a.date() == b.date():
        span = a.strftime("%-d %b %Y")
    elif a.year != b.year:
        span = f"{a:%-d %b %Y} – {b:%-d %b %Y}"
    elif a.month != b.month:
        span = f"{a:%-d %b} – {b:%-d %b %Y}"
    else:
        span = f"{a:%-d}–{b:%-d %b %Y}"
    return f"time (UTC), {span}"


_FORMATS = ["%Y", "%b", "%-d %b", "%H:%M", "%H:%M", "%S.%f"]
_ZERO_FORMATS = ["", "%Y", "%-d %b", "%-d %b", "%H:%M", "%H:%M"]


def to_num(ts: float) -> float:
    """Matplotlib's date number of epoch seconds (UTC)."""
    return float(date2num(datetime.fromtimestamp(ts, UTC)))


def style_time_axis(ax: Axes, t0: float, t1: float, ticks: int = 6, label: bool = True) -> None:
    """Few time ticks (dates at midnight, hours between), the dates and UTC in the label."""
    locator = AutoDateLocator(minticks=3, maxticks=ticks, tz=UTC)
    locator.intervald[HOURLY] = [1, 2, 3, 4, 6, 12, 24]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(
        locator, tz=UTC, show_offset=False, formats=_FORMATS, zero_formats=_ZERO_FORMATS))
    ax.set_xlim(to_num(t0), to_num(t1))
    if label:
        ax.set_xlabel(time_label(t0, t1), fontsize=FONT["label"])


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, at :data:`DPI`."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# -- the alert chart -----------------------------------------------------------------------

def chart_points(alert: dict) -> list[dict]:
    """The lead series' history, ending with the anomaly's own point."""
    points = [p for p in (alert.get("history") or []) if p.get("value") is not None]
    ws = float(alert["window_start_ts"])
    if not points or float(points[-1]["window_start_ts"]) < ws:
        points.append({"window_start_ts": ws, "value": alert["value"],
                       "expected": alert["expected"], "lower": alert.get("lower"),
                       "upper": alert.get("upper")})
    return points[-48:]


def _f(x: Any, default: float = math.nan) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _window_s(ts: Sequence[float], alert: dict | None) -> float:
    if alert and alert.get("window_end_ts") is not None:
        return _f(alert["window_end_ts"]) - _f(alert["window_start_ts"])
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
    return median(gaps) if gaps else 3600.0


def incident_span(points: Sequence[dict], kpi: str, alert: dict | None = None
                  ) -> tuple[float, float]:
    """(start, end) epoch seconds of the alert's abnormal period: from ``since_ts`` (its first
    abnormal window) to the end of its lead window, or to ``as_of_ts`` for an early alert.
    Either way it starts earlier when the points just before are outside the band too (the
    first abnormal window); without the alert it ends with the last point's window."""
    ts = [_f(p["window_start_ts"]) for p in points]
    width = _window_s(ts, alert)
    alert = alert or {}
    end = ts[-1] + width
    if alert.get("early") and alert.get("as_of_ts") is not None:
        end = _f(alert["as_of_ts"], end)
    elif alert.get("window_end_ts") is not None:
        end = max(end, _f(alert["window_end_ts"], end))
    since = _since(alert)
    start = min(since, ts[-1]) if since is not None else ts[-1]
    for p, t in reversed([(p, t) for p, t in zip(points, ts, strict=True) if t < start]):
        if not _outside(p, kpi):
            break   # the run of points outside the band began after this one
        start = t
    return start, end


def _since(alert: dict) -> float | None:
    """When the alert began (``since_ts``, else the ISO ``since``); None when unknown."""
    try:
        return parse_utc(alert.get("since_ts", alert.get("since")))
    except (TypeError, ValueError):
        return None


def _band(p: dict, kpi: str) -> tuple[float, float]:
    e = _f(p.get("expected"))
    return feasible_band(_f(p.get("lower"), e), _f(p.get("upper"), e), kpi)


def _outside(p: dict, kpi: str) -> bool:
    lo, hi = _band(p, kpi)
    v = _f(p.get("value"))
    return math.isfinite(v) and (v < lo or v > hi)


def _early_pace(kpi: str, alert: dict | None) -> float:
    """How much an early alert's running numbers are multiplied by to be drawn per window:
    a count or an amount so far is only part of a window (1 for ratios and finished windows)."""
    if not alert or not alert.get("early") or _kind(kpi) not in ("count", "usd"):
        return 1.0
    k = KPI_BY_ID.get(kpi)
    minutes = _f(alert.get("elapsed_minutes"))
    width = _f(alert.get("window_end_ts")) - _f(alert.get("window_start_ts"))
    if k is None or k.horizon != "window" or not minutes > 0 or not width > 0:
        return 1.0
    return width / (minutes * 60.0)


def alert_figure(points: list[dict], kpi: str, *, alert: dict | None = None,
                 title: str = "") -> Figure:
    """The lead series around its anomaly: observed line, expected line and the normal band
    (cut to the feasible range), the alert's period shaded, points outside the band in red,
    the latest value written out.

    ``alert`` (the alert snapshot, docs/anomalies.md and alerting/lifecycle.py) gives the
    period (``since_ts``), the series and an early alert's time (``as_of_ts``); an early
    count is drawn at its pace per window (a dotted line to a hollow point). ``title`` is the
    second line when there is no alert."""
    if not points:
        raise ValueError("render_chart needs at least one point")
    s = value_scale(kpi)
    early = bool(alert and alert.get("early"))
    pace = _early_pace(kpi, alert) if early else 1.0
    ts = [_f(p["window_start_ts"]) for p in points]
    x = [to_num(t) for t in ts]
    scale = [s] * (len(points) - 1) + [s * pace]
    value = [_f(p.get("value")) * k for p, k in zip(points, scale, strict=True)]
    expected = [_f(p.get("expected")) * k for p, k in zip(points, scale, strict=True)]
    bands = [_band(p, kpi) for p in points]
    lower = [lo * k for (lo, _), k in zip(bands, scale, strict=True)]
    upper = [hi * k for (_, hi), k in zip(bands, scale, strict=True)]
    start, end = incident_span(points, kpi, alert)
    width = _window_s(ts, alert)
    per = "hour" if abs(width - 3600.0) < 1 else f"{width / 60:g} min"

    fig = Figure(figsize=(5, 2.9), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(x, lower, upper, color=BAND, alpha=0.6, lw=0, label="normal band")
    ax.axvspan(to_num(start), to_num(end), color=SPAN, alpha=0.45, lw=0, label="abnormal period")
    ax.plot(x, expected, color=EXPECTED, ls="--", lw=1.1, label="expected")
    done = len(points) - 1 if early else len(points)
    ax.plot(x[:done], value[:done], color=INK, lw=1.6, marker="o", ms=2.2, label="observed")
    out = [i for i, p in enumerate(points[:done])
           if _outside(p, kpi) or (alert is not None and i == len(points) - 1)]
    if out:
        ax.scatter([x[i] for i in out], [value[i] for i in out], color=ALERT, s=18, zorder=5,
                   label="outside the band")
    if early:   # the open window's running value: not a finished point
        ax.plot(x[-2:], value[-2:], color=INK, lw=1.0, ls=":")
        ax.scatter([x[-1]], [value[-1]], s=30, facecolor="white", edgecolor=ALERT, lw=1.5,
                   zorder=6, label=f"so far, at its pace per {per}" if pace != 1.0 else
                   "so far (open window)")
    typical = median([u for u in upper if math.isfinite(u)] or [0.0])
    style_value_axis(ax, kpi, [*value, *expected, typical])
    style_time_axis(ax, ts[0], end + width * 0.6)
    _callout(ax, _latest(kpi, points[-1], alert), x, value, expected)
    fig.suptitle(chart_title(kpi, per), fontsize=FONT["title"], fontweight="bold", x=0.02,
                 ha="left")
    ax.set_title(_subtitle(alert, start) if alert else title, fontsize=FONT["sub"],
                 loc="left", color="#4b5563")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3,
               fontsize=FONT["legend"], frameon=False, columnspacing=1.0, handlelength=1.4)
    return fig


def _latest(kpi: str, p: dict, alert: dict | None) -> str:
    """``71.4% at 17:00, expected 3.3%``; an early alert's count says over how long."""
    text = format_value(_f(p.get("value")), kpi)
    if alert and alert.get("early") and alert.get("as_of_ts") is not None:
        when = clock_utc(_f(alert["as_of_ts"]))
        minutes = _f(alert.get("elapsed_minutes"))
        pace = _early_pace(kpi, alert) != 1.0
        text += f" in the {minutes:g} min to {when}" if pace else f" so far at {when}"
    else:
        text += f" at {clock_utc(_f(p['window_start_ts']))}"
    if p.get("expected") is not None:
        text += f"\nexpected {format_value(_f(p['expected']), kpi)}"
    return text


def _callout(ax: Axes, text: str, x: Sequence[float], *series: Sequence[float]) -> None:
    """The latest value in words, in the corner of the axes with the fewest data points
    (top right first), so nobody has to read it off the axis and it hides nothing."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    corners = [(0.985, 0.96, "right", "top"), (0.985, 0.05, "right", "bottom"),
               (0.015, 0.96, "left", "top"), (0.015, 0.05, "left", "bottom")]

    def crowd(corner: tuple[float, float, str, str]) -> int:
        right, top = corner[2] == "right", corner[3] == "top"
        n = 0
        for ys in series:
            for xi, yi in zip(x, ys, strict=True):
                fx, fy = (xi - x0) / (x1 - x0), (yi - y0) / (y1 - y0)
                n += (fx > 0.5 if right else fx < 0.5) and (fy > 0.7 if top else fy < 0.3)
        return n

    fx, fy, ha, va = min(corners, key=crowd)
    ax.text(fx, fy, text, transform=ax.transAxes, ha=ha, va=va, fontsize=FONT["sub"],
            fontweight="bold", color=ALERT, linespacing=1.2, zorder=7,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})


def _slice(segment: str, channel: str) -> str:
    """``segment experienced``, ``channel referral`` or ``all users``."""
    parts = [f"{name} {clean_event_text(v, 40)}" for name, v in
             (("segment", segment), ("channel", channel)) if v != "all"]
    return ", ".join(parts) or "all users"


def _subtitle(alert: dict, start: float) -> str:
    severity = f"{str(alert.get('severity') or '').capitalize()} alert".strip()
    when = _since(alert)
    when = start if when is None else when
    return (f"{_slice(str(alert.get('segment', 'all')), str(alert.get('channel', 'all')))}"
            f" · {severity} since {_day_clock(when)} UTC")


def _day_clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a %-d %b %H:%M")


def render_chart(points: list[dict], kpi: str, title: str = "", *,
                 alert: dict | None = None) -> bytes:
    """PNG bytes of :func:`alert_figure` (``alert``: the snapshot, for its period and series)."""
    return png_bytes(alert_figure(points, kpi, alert=alert, title=title))


# -- the digest's week ---------------------------------------------------------------------

def _panel_title(kpi: str, segment: str = "all", channel: str = "all") -> str:
    title = chart_title(kpi, "day")
    where = _slice(segment, channel)
    return title if where == "all users" else f"{title} · {where}"


def week_figure(week: dict, kpis: Sequence[str], title: str = "") -> Figure:
    """A wide panel per series that alerted during the day (``week["alerted"]``: kpi,
    segment, channel and its daily values), then two columns of panels, one per KPI of
    ``kpis``, over the days of ``week["days"]`` (ISO dates).

    Y-axes start at zero where the KPI cannot go below it (a weekend dip is not drawn as a
    collapse); the target is a dashed line; the day's alerts (``week["alerts"]``: kpi,
    ``start_ts``, ``end_ts``) are shaded where they happened, red on their own KPI's panels
    with that day's value marked."""
    days = [parse_utc(f"{d}T00:00:00Z") for d in week["days"]]
    if not days:
        raise ValueError("render_week_chart needs at least one day")
    alerts = list(week.get("alerts") or [])
    wide = [(str(a["kpi"]), str(a.get("segment", "all")), str(a.get("channel", "all")),
             list(a.get("values") or [])) for a in week.get("alerted") or []]
    small = [(k, "all", "all", list(week.get(k) or [])) for k in kpis]
    rows = len(wide) + -(-len(small) // 2)
    fig = Figure(figsize=(5, 1.5 * rows + 0.9), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(max(rows, 1), 2)
    cells = [grid[i, :] for i in range(len(wide))]
    cells += [grid[len(wide) + i // 2, i % 2] for i in range(len(small))]
    for i, (cell, panel) in enumerate(zip(cells, wide + small, strict=True)):
        _day_panel(fig.add_subplot(cell), *panel, days, alerts, wide=i < len(wide))
    handles: list[Any] = [Line2D([], [], color="#6b7280", ls="--", lw=0.9, label="target")]
    if alerts:
        handles.append(Patch(color=ALERT, alpha=0.3, lw=0, label="the day's alerts"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False,
               fontsize=FONT["legend"] - 0.5, title_fontsize=FONT["legend"] - 0.5,
               title=f"daily values, {time_label(days[0], days[-1] + DAY_S)}")
    if title:
        fig.suptitle(title, fontsize=FONT["title"] - 1, fontweight="bold", x=0.02, ha="left")
    return fig


def _day_panel(ax: Axes, kpi: str, segment: str, channel: str, raw: list[Any],
               days: list[float], alerts: list[dict], wide: bool = False) -> None:
    """One KPI's daily values (points at noon), its target, and the day's alerts."""
    s = value_scale(kpi)
    x = [to_num(d + DAY_S / 2) for d in days]
    values = [_f(v) * s for v in raw][:len(x)]
    mine = [a for a in alerts if str(a["kpi"]) == kpi]
    for a in alerts:
        ax.axvspan(to_num(max(_f(a["start_ts"]), days[0])),
                   to_num(min(_f(a["end_ts"]), days[-1] + DAY_S)),
                   color=ALERT if a in mine else SPAN, alpha=0.3 if a in mine else 0.4, lw=0,
                   zorder=0)
    ax.plot(x[:len(values)], values, color=INK, lw=1.4, marker="o", ms=2.5)
    if mine and values and math.isfinite(values[-1]):
        ax.scatter([x[len(values) - 1]], [values[-1]], color=ALERT, s=22, zorder=5)
    target = KPI_BY_ID[kpi].target if kpi in KPI_BY_ID else None
    marks = list(values)
    if target is not None:
        ax.axhline(target * s, color="#6b7280", ls="--", lw=0.9)
        marks.append(target * s)
    style_value_axis(ax, kpi, marks, ticks=3)
    if not any(math.isfinite(v) for v in values):
        ax.text(0.5, 0.5, "no complete daily values yet", transform=ax.transAxes,
                ha="center", va="center", fontsize=FONT["legend"] - 1, color="#6b7280")
        if target is None:
            ax.set_yticks([])
    ax.tick_params(labelsize=FONT["tick"] - 1.5)
    ax.set_xlim(to_num(days[0]), to_num(days[-1] + DAY_S))
    ax.set_xticks(x[::2] if len(x) > 4 else x)
    ax.xaxis.set_major_formatter(DateFormatter("%a %-d", tz=UTC))
    title = _panel_title(kpi, segment, channel)
    if wide and mine:   # say when, on a line of its own: a few hours are a sliver of a week
        first = min(mine, key=lambda a: _f(a["start_ts"]))
        title += f"\n{first.get('severity', '')} alert {_day_clock(_f(first['start_ts']))} UTC"
    ax.set_title(title, fontsize=FONT["sub"] - 0.5, loc="left", color=ALERT if mine else INK,
                 fontweight="bold" if mine else "normal")


def render_week_chart(week: dict, kpis: tuple[str, ...], title: str = "") -> bytes:
    """PNG bytes of :func:`week_figure`."""
    return png_bytes(week_figure(week, kpis, title))
