"""PNGs for Slack (matplotlib, Agg): a KPI around its anomaly, observed against the expected
band (:func:`render_chart`), and the daily digest's last seven days (:func:`render_week_chart`).

Uses ``matplotlib.figure.Figure`` directly (no pyplot global state), so charts can be drawn in
a worker thread.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure

from alerting.evidence import KPIS, kpi_label
from kpis.formulas import KPI_BY_ID

__all__ = ["chart_points", "render_chart", "render_week_chart"]


def chart_points(alert: dict) -> list[dict]:
    """The lead series' history, ending with the anomaly's own point."""
    points = [p for p in (alert.get("history") or []) if p.get("value") is not None]
    ws = float(alert["window_start_ts"])
    if not points or float(points[-1]["window_start_ts"]) < ws:
        points.append({"window_start_ts": ws, "value": alert["value"],
                       "expected": alert["expected"], "lower": alert.get("lower"),
                       "upper": alert.get("upper")})
    return points[-48:]


def render_chart(points: list[dict], kpi: str, title: str = "") -> bytes:
    """PNG bytes: observed line, expected line and band; points outside the band in red."""
    if not points:
        raise ValueError("render_chart needs at least one point")
    x = [float(date2num(datetime.fromtimestamp(float(p["window_start_ts"]), UTC)))
         for p in points]
    value = [float(p["value"]) for p in points]
    expected = [float(p["expected"]) if p.get("expected") is not None else float("nan")
                for p in points]
    lower = [float(p["lower"]) if p.get("lower") is not None else e
             for p, e in zip(points, expected, strict=True)]
    upper = [float(p["upper"]) if p.get("upper") is not None else e
             for p, e in zip(points, expected, strict=True)]
    percent = KPIS[kpi].kind == "percent" if kpi in KPIS else False
    scale = 100.0 if percent else 1.0

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.fill_between(x, [v * scale for v in lower], [v * scale for v in upper], color="#9ecae1",
                    alpha=0.45, linewidth=0, label="expected band")
    ax.plot(x, [v * scale for v in expected], color="#3182bd", linestyle="--", linewidth=1,
            label="expected")
    ax.plot(x, [v * scale for v in value], color="#222222", marker="o", markersize=3,
            linewidth=1.5, label="observed")
    out = [(t, v) for t, v, lo, hi in zip(x, value, lower, upper, strict=True)
           if v < lo or v > hi]
    if out:
        ax.scatter([t for t, _ in out], [v * scale for _, v in out], color="#d62728", zorder=5,
                   s=30, label="abnormal")
    ax.set_title(title or kpi_label(kpi), fontsize=11)
    ax.set_ylabel("%" if percent else "")
    ax.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.autofmt_xdate()
    return _png(fig)


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_week_chart(week: dict, kpis: tuple[str, ...], title: str = "") -> bytes:
    """PNG bytes: one small panel per KPI of its daily values over ``week["days"]`` (ISO
    dates), with the KPI's target as a dashed line where it has one; missing days are gaps."""
    days = [str(d)[5:] for d in week["days"]]
    cols = 3
    rows = -(-len(kpis) // cols)
    fig = Figure(figsize=(10, 2.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, kpi in enumerate(kpis):
        ax = fig.add_subplot(rows, cols, i + 1)
        scale = 100.0 if kpi in KPIS and KPIS[kpi].kind == "percent" else 1.0
        values = [float("nan") if v is None else float(v) * scale for v in week.get(kpi, [])]
        ax.plot(days[:len(values)], values, color="#222222", marker="o", markersize=3,
                linewidth=1.5)
        target = KPI_BY_ID[kpi].target if kpi in KPI_BY_ID else None
        if target is not None:
            ax.axhline(target * scale, color="#d62728", linestyle="--", linewidth=1,
                       label="target")
            ax.legend(fontsize=7, loc="best")
        ax.set_title(kpi_label(kpi) + (" (%)" if scale != 1.0 else ""), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return _png(fig)
