"""``pulse replay --chart FILE.png``: the replay at a glance, then each incident up close
(matplotlib, Agg backend: no display needed).

A replay covers weeks; an outage of a few hours is a sliver at that scale. So the chart has a
short overview panel of the whole range (the first KPI of ``kpi_ids``, incidents shaded, alert
openings as ticks, the zoomed spans lettered) and one panel per incident, a day either side of
it, of the series it hit (the alert's series when one caught it), in the KPI's unit (rates in
%). Without ground truth the panels zoom on the alerts instead; with neither, each KPI of
``kpi_ids`` gets a panel over the whole range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from textwrap import fill
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from alerting.chart import (
    ALERT,
    DPI,
    FONT,
    INK,
    SPAN,
    chart_title,
    png_bytes,
    style_time_axis,
    style_value_axis,
    to_num,
    value_scale,
)
from alerting.escape import clean_event_text
from core.timefmt import parse_utc

__all__ = ["CHART_KPIS", "MAX_PANELS", "render_timeline", "timeline_figure"]

CHART_KPIS = ("signups", "payment_failure_rate", "match_rate", "churn_rate")
MAX_PANELS = 6
"""Incidents (or groups of alerts) drawn up close; later ones are only in the overview."""
MARGIN_S = 86_400.0
"""Time shown either side of an incident."""
_SEVERITY_COLOR = {"critical": ALERT, "warning": "#ef8f00"}
Series = tuple[str, str, str]   # kpi, segment, channel


@dataclass(frozen=True)
class _Focus:
    """One zoomed panel: the span to shade, the series to draw and what to call it."""

    start: float
    end: float
    series: Series
    label: str


def _opened(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a.get("status") == "open"]


def _start(a: dict[str, Any]) -> float:
    return parse_utc(a.get("window_start_ts", a.get("window_start")))


def _key(a: dict[str, Any]) -> Series:
    return str(a.get("kpi")), str(a.get("segment", "all")), str(a.get("channel", "all"))


def _focus_incidents(incidents: Sequence[dict[str, Any]],
                     opened: list[dict[str, Any]]) -> list[_Focus]:
    out = []
    for inc in incidents:
        start = parse_utc(inc.get("start_ts", inc.get("start")))
        end = parse_utc(inc.get("end_ts", inc.get("end")))
        kpis = [str(k) for k in inc.get("kpis") or ()]
        caught = [a for a in opened if _key(a)[0] in kpis
                  and start - 3600.0 <= _start(a) <= end + 7200.0]
        series = _key(caught[0]) if caught else (
            kpis[0] if kpis else "signups", str(inc.get("segment", "all")),
            str(inc.get("channel", "all")))
        label = clean_event_text(str(inc.get("description") or inc.get("kind") or ""), 90)
        out.append(_Focus(start, end, series, label + ("" if caught else " (no alert)")))
    return out


def _focus_alerts(opened: list[dict[str, Any]]) -> list[_Focus]:
    """Alerts opened within 12 hours of each other are one panel, led by the first."""
    out: list[_Focus] = []
    for a in sorted(opened, key=_start):
        t = _start(a)
        if out and t - out[-1].end <= 43_200.0:
            out[-1] = _Focus(out[-1].start, max(out[-1].end, t + 3600.0), out[-1].series,
                             out[-1].label)
            continue
        out.append(_Focus(t, t + 3600.0, _key(a), f"{a.get('severity', '')} alert".strip()))
    return out


def _where(series: Series) -> str:
    parts = [f"{name} {clean_event_text(v, 40)}" for name, v in
             (("segment", series[1]), ("channel", series[2])) if v != "all"]
    return ", ".join(parts) or "all users"


def _series(kpis: Sequence[dict[str, Any]], wanted: set[Series]
            ) -> dict[Series, list[tuple[float, float]]]:
    found: dict[Series, list[tuple[float, float]]] = {k: [] for k in wanted}
    for row in kpis:
        key = (str(row.get("kpi")), str(row.get("segment")), str(row.get("channel")))
        if key in found and row.get("value") is not None:
            found[key].append((parse_utc(row["window_start"]), float(row["value"])))
    return {k: sorted(v) for k, v in found.items()}


def _marks(ax: Any, t0: float, t1: float, incidents: Sequence[tuple[float, float]],
           opened: list[dict[str, Any]], series: Series | None = None) -> None:
    """Incidents shaded, alert openings as vertical lines (bold on the panel's own series)."""
    for s, e in incidents:
        if e > t0 and s < t1:
            ax.axvspan(to_num(max(s, t0)), to_num(min(e, t1)), color=SPAN, alpha=0.55, lw=0,
                       zorder=0)
    for a in opened:
        t = _start(a)
        if t0 <= t <= t1:
            mine = series is None or _key(a) == series
            ax.axvline(to_num(t), color=_SEVERITY_COLOR.get(str(a.get("severity")), "grey"),
                       lw=1.4 if mine else 0.7, ls="-" if mine else ":", alpha=0.9, zorder=1)


def _draw(ax: Any, points: list[tuple[float, float]], kpi: str, t0: float, t1: float,
          lw: float = 1.3) -> None:
    s = value_scale(kpi)
    shown = [(t, v * s) for t, v in points if t0 <= t <= t1]
    ax.plot([to_num(t) for t, _ in shown], [v for _, v in shown], color=INK, lw=lw)
    style_value_axis(ax, kpi, [v for _, v in shown], ticks=3)


def timeline_figure(kpis: Sequence[dict[str, Any]], alerts: Sequence[dict[str, Any]],
                    incidents: Sequence[dict[str, Any]] | None = None, title: str = "Replay",
                    kpi_ids: Sequence[str] = CHART_KPIS) -> Figure:
    """The chart of :func:`render_timeline`, as a Figure."""
    opened = _opened(alerts)
    focus = (_focus_incidents(incidents, opened) if incidents else _focus_alerts(opened))
    focus = focus[:MAX_PANELS]
    overview = [(k, "all", "all") for k in kpi_ids]
    data = _series(kpis, set(overview) | {f.series for f in focus})
    shown = [k for k in overview if data[k]]
    if not shown:
        raise ValueError("no overall KPI values to draw (is kpis.jsonl empty?)")
    t0 = min(p[0][0] for p in data.values() if p)
    t1 = max(p[-1][0] for p in data.values() if p) + 3600.0
    spans = [(parse_utc(i.get("start_ts", i.get("start"))),
              parse_utc(i.get("end_ts", i.get("end")))) for i in incidents or ()]
    if not focus:
        return _whole_range(data, shown, t0, t1, spans, opened, title)
    cols = 1 if len(focus) == 1 else 2
    rows = -(-len(focus) // cols)
    fig = Figure(figsize=(6.4, 1.9 + 2.3 * rows), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[0.75] + [1.0] * rows)
    top = fig.add_subplot(grid[0, :])
    lead = shown[0]
    _draw(top, data[lead], lead[0], t0, t1, lw=0.6)
    _marks(top, t0, t1, spans, opened, lead)
    style_time_axis(top, t0, t1, ticks=8)
    top.set_title(f"Whole replay: {chart_title(lead[0], 'hour')}", loc="left",
                  fontsize=FONT["sub"], fontweight="bold")
    for i, f in enumerate(focus):
        letter = chr(ord("A") + i)
        top.annotate(letter, (to_num((f.start + f.end) / 2), 1.0),
                     xycoords=("data", "axes fraction"), ha="center", va="bottom",
                     fontsize=FONT["legend"], fontweight="bold", color=ALERT)
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        z0, z1 = max(t0, f.start - MARGIN_S), min(t1, f.end + MARGIN_S)
        points = data.get(f.series) or []
        _draw(ax, points, f.series[0], z0, z1)
        _marks(ax, z0, z1, [(f.start, f.end)], opened, f.series)
        style_time_axis(ax, z0, z1, ticks=4)
        ax.tick_params(labelsize=FONT["tick"] - 1.5)
        ax.xaxis.label.set_fontsize(FONT["label"] - 1.5)
        head = f"{letter} · {chart_title(f.series[0], 'hour')} · {_where(f.series)}"
        ax.set_title(head + "\n" + fill(f.label, 54 if cols == 2 else 110), loc="left",
                     fontsize=FONT["legend"] - 1.5)
    _legend(fig, bool(incidents))
    fig.suptitle(clean_event_text(title, 120), fontsize=FONT["title"], fontweight="bold",
                 x=0.01, ha="left")
    return fig


def _whole_range(data: dict[Series, list[tuple[float, float]]], shown: list[Series], t0: float,
                 t1: float, spans: list[tuple[float, float]], opened: list[dict[str, Any]],
                 title: str) -> Figure:
    """No incident and no alert: each KPI over the whole replay."""
    fig = Figure(figsize=(6.4, 0.9 + 1.5 * len(shown)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, shown, strict=True):
        _draw(ax, data[key], key[0], t0, t1, lw=0.9)
        _marks(ax, t0, t1, spans, opened, key)
        ax.set_title(chart_title(key[0], "hour"), loc="left", fontsize=FONT["sub"])
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    style_time_axis(axes[-1], t0, t1, ticks=8)
    _legend(fig, bool(spans))
    fig.suptitle(clean_event_text(title, 120), fontsize=FONT["title"], fontweight="bold",
                 x=0.01, ha="left")
    return fig


def _legend(fig: Figure, incidents: bool) -> None:
    handles: list[Any] = [Line2D([], [], color=c, label=f"{s} alert opened")
                          for s, c in _SEVERITY_COLOR.items()]
    if incidents:
        handles.append(Patch(color=SPAN, alpha=0.55, label="incident (ground truth)"))
    handles.append(Line2D([], [], color="grey", ls=":", label="alert on another series"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2,
               fontsize=FONT["legend"] - 1, frameon=False)


def render_timeline(path: str | Path, kpis: Sequence[dict[str, Any]],
                    alerts: Sequence[dict[str, Any]],
                    incidents: Sequence[dict[str, Any]] | None = None,
                    title: str = "Replay", kpi_ids: Sequence[str] = CHART_KPIS) -> Path:
    """Write the PNG of :func:`timeline_figure` to ``path``: ``kpis`` are kpis.jsonl lines,
    ``alerts`` alerts.jsonl lines (their ``open`` changes are marked), ``incidents`` the
    ground-truth labels (``start``/``end``, ``kpis``, ``segment``, ``channel``)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(timeline_figure(kpis, alerts, incidents, title, kpi_ids)))
    return out
