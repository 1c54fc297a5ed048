"""``pulse replay --chart FILE.png``: the main overall KPIs over the replay, alerts and incidents
marked (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerting.evidence import kpi_label
from core.timefmt import parse_utc

__all__ = ["CHART_KPIS", "render_timeline"]

CHART_KPIS = ("signups", "payment_failure_rate", "match_rate", "churn_rate")
_SEVERITY_COLOR = {"critical": "#c62828", "warning": "#ef8f00"}


def _dt(iso: str) -> datetime:
    return datetime.fromtimestamp(parse_utc(iso), UTC)


def render_timeline(path: str | Path, kpis: Sequence[dict[str, Any]],
                    alerts: Sequence[dict[str, Any]],
                    incidents: Sequence[dict[str, Any]] | None = None,
                    title: str = "Replay", kpi_ids: Sequence[str] = CHART_KPIS) -> Path:
    """Write a PNG with one panel per KPI of ``kpi_ids`` (overall series from kpis.jsonl
    lines), a vertical line where each alert opened (at its first detection window, coloured
    by severity) and a shaded span per incident."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[datetime, float]]] = {k: [] for k in kpi_ids}
    for row in kpis:
        if row.get("segment") == "all" and row.get("channel") == "all" and row["kpi"] in series:
            series[row["kpi"]].append((_dt(row["window_start"]), float(row["value"])))
    shown = [k for k in kpi_ids if series[k]]
    if not shown:
        raise ValueError("no overall KPI values to draw (is kpis.jsonl empty?)")
    opened = [a for a in alerts if a.get("status") == "open"]
    fig, axes = plt.subplots(len(shown), 1, figsize=(12, 2.3 * len(shown) + 0.8), sharex=True,
                             squeeze=False)
    for ax, kpi in zip(axes[:, 0], shown, strict=True):
        pts = sorted(series[kpi])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#1f4e79", lw=0.9)
        ax.set_ylabel(kpi_label(kpi), fontsize=9)
        ax.grid(alpha=0.3)
        for inc in incidents or ():
            ax.axvspan(_dt(inc["start"]), _dt(inc["end"]), color="#e57373", alpha=0.25, lw=0)
        for a in opened:
            mine = a.get("kpi") == kpi
            ax.axvline(_dt(str(a["window_start"])), color=_SEVERITY_COLOR.get(
                str(a.get("severity")), "grey"), lw=1.6 if mine else 0.8,
                ls="-" if mine else ":", alpha=0.9)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles: list[Any] = [Line2D([], [], color=c, label=f"{s} alert opened") for s, c in
               _SEVERITY_COLOR.items()]
    if incidents:
        handles.append(Patch(color="#e57373", alpha=0.25, label="incident (ground truth)"))
    axes[0, 0].legend(handles=handles, loc="upper left", fontsize=8, ncols=len(handles),
                      bbox_to_anchor=(0, 1.02, 1, 0.2), frameon=False)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%b %d\n%H:%M"))
    axes[-1, 0].set_xlabel("event time (UTC)", fontsize=9)
    fig.suptitle(title, fontsize=11, y=0.995)
    fig.text(0.01, 0.005, "solid line: alert on that KPI; dotted: an alert on another KPI",
             fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.015, 1, 0.985))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
