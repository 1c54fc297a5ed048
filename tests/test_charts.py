"""The charts people read on a phone: the alert chart, the digest's week, the replay timeline.

Each is drawn from realistic data (a daily cycle, a jagged band as the detectors give one, an
alert snapshot from the real AlertManager, a digest from the real DigestBuilder) and checked
on its Figure: the y-axis stays inside what the KPI can take, the incident is shaded, titles
name the KPI, the time axis says UTC.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from alerting.chart import (
    alert_figure,
    chart_points,
    render_chart,
    render_week_chart,
    to_num,
    week_figure,
)
from alerting.digest import CHART_KPIS, DigestBuilder, build_digest, day_index
from alerting.lifecycle import AlertManager
from core.timefmt import iso_utc
from pulse.replay_chart import render_timeline, timeline_figure

HOUR, DAY = 3600.0, 86_400.0
T0 = 1_770_076_800.0   # 2026-02-03 00:00 UTC
PNG = b"\x89PNG\r\n\x1a\n"


def daily(base: float, hour: int, swing: float = 0.4) -> float:
    """A business day's shape: quiet at night, busy in the afternoon (UTC)."""
    return base * (1 + swing * math.sin((hour - 9) / 24 * 2 * math.pi))


def history(base: float, end: float, n: int = 47, jagged: float = 1.9) -> list[dict]:
    """``n`` hourly points before ``end``, with the wide, jagged band a thin series gets."""
    points = []
    for i in range(n):
        ws = end - (n - i) * HOUR
        e = daily(base, int(ws // HOUR) % 24)
        width = e * (jagged if i % 5 == 0 else 0.6)
        points.append({"window_start_ts": ws, "value": e * (1 + 0.05 * ((i % 3) - 1)),
                       "expected": e, "lower": e - width, "upper": e + width})
    return points


def alerted(kpi: str, base: float, value: float, *, windows: int = 2, **extra: object) -> dict:
    """The latest snapshot of a critical alert, through the real AlertManager, after
    ``windows`` abnormal hours (the last one is the alert's lead window)."""
    manager = AlertManager()
    start = T0 + 15 * HOUR
    points = history(base, start)
    snap: dict = {}
    for w in range(windows):
        ws = start + w * HOUR
        e = daily(base, 15 + w)
        anomaly = {"kpi": kpi, "segment": "all", "channel": "all",
                   "window_start": iso_utc(ws), "window_end": iso_utc(ws + HOUR),
                   "window_start_ts": ws, "window_end_ts": ws + HOUR, "value": value,
                   "expected": e, "lower": e * 0.5, "upper": e * 1.5, "score": 0.99,
                   "severity": "critical", "direction": "up" if value > e else "down",
                   "detector": "forecast", "unit": "", "n": 400.0, "contributors": [],
                   "history": list(points), **extra}
        for change in manager.on_anomaly(anomaly) + manager.on_window_closed(ws + HOUR):
            snap = change.alert
        points.append({"window_start_ts": ws, "value": value, "expected": e,
                       "lower": e * 0.5, "upper": e * 1.5})
    latest = manager.snapshot(snap["id"], reason="chart")   # as the alert stands now
    assert latest is not None
    return latest.alert


def spans(ax: Axes) -> list[tuple[float, float]]:
    """(x0, x1) in date numbers of every shaded patch (axvspan) of ``ax``."""
    out = []
    for p in ax.patches:
        xs = [x for x, _ in ax.transData.inverted().transform(p.get_verts())]
        out.append((min(xs), max(xs)))
    return out


def covers(ax: Axes, ts: float) -> bool:
    x = to_num(ts)
    return any(x0 - 1e-9 <= x < x1 for x0, x1 in spans(ax))


def tick(ax: Axes, value: float) -> str:
    return str(ax.yaxis.get_major_formatter()(value, 0))


def band_ys(ax: Axes) -> list[float]:
    return [float(y) for c in ax.collections if isinstance(c, PolyCollection)
            for path in c.get_paths() for y in np.asarray(path.vertices, dtype=float)[:, 1]]


def marked(ax: Axes, label: str) -> list[float]:
    """The y values of the scatter points labelled ``label``."""
    return [float(y) for c in ax.collections if c.get_label() == label
            for y in np.asarray(c.get_offsets(), dtype=float)[:, 1]]


def only_axes(fig: Figure) -> Axes:
    (ax,) = fig.axes
    return ax


def title_of(fig: Figure) -> str:
    return fig.get_suptitle()


# -- the alert chart -----------------------------------------------------------------------

def test_rate_alert_chart_stays_in_0_100_percent_and_shades_the_incident() -> None:
    alert = alerted("payment_failure_rate", 0.03, 0.62)
    fig = alert_figure(chart_points(alert), alert["kpi"], alert=alert)
    ax = only_axes(fig)
    lo, hi = ax.get_ylim()
    assert 0.0 <= lo and hi <= 100.0                     # not -200%..+200%
    assert hi > 62.0                                     # the 62% point is on the chart
    assert min(band_ys(ax)) >= 0.0 and max(band_ys(ax)) <= 100.0   # the band is cut to 0..100%
    assert covers(ax, alert["since_ts"]) and covers(ax, alert["window_start_ts"])
    assert not covers(ax, alert["since_ts"] - 3 * HOUR)  # the normal hours are not shaded
    assert "Payment failure rate" in title_of(fig) and "payment_failure_rate" not in title_of(fig)
    assert "UTC" in ax.get_xlabel() and "2026" in ax.get_xlabel()
    assert tick(ax, 50.0) == "50%"
    assert fig.legends and not ax.get_legend()           # the legend is below, off the data
    assert any(abs(y - 62.0) < 1e-6 for y in marked(ax, "outside the band"))   # the alert


def test_count_alert_chart_starts_at_zero_with_separators() -> None:
    alert = alerted("signups", 1200.0, 3900.0)
    fig = alert_figure(chart_points(alert), "signups", alert=alert)
    ax = only_axes(fig)
    assert ax.get_ylim()[0] == 0.0
    assert ax.get_ylim()[1] >= 3900.0
    assert min(band_ys(ax)) >= 0.0                       # no negative signups in the band
    assert tick(ax, 3000.0) == "3,000"
    assert "Signups" in title_of(fig) and "per hour" in title_of(fig)
    assert covers(ax, alert["since_ts"])


def test_money_alert_chart_in_dollars_from_zero() -> None:
    alert = alerted("revenue", 4_500.0, 300.0, windows=3)
    fig = alert_figure(chart_points(alert), "revenue", alert=alert)
    ax = only_axes(fig)
    assert ax.get_ylim()[0] == 0.0
    assert tick(ax, 115_000.0) == "$115,000"
    assert "Revenue ($ per hour)" in title_of(fig)
    assert covers(ax, alert["since_ts"]) and alert["since_ts"] < alert["window_start_ts"]
    assert "since" in ax.get_title(loc="left") and "Critical" in ax.get_title(loc="left")


def test_early_count_is_drawn_at_its_pace_per_window() -> None:
    alert = alerted("scans", 80.0, 102.0, windows=1, early=True, elapsed_minutes=15.0,
                   as_of_ts=T0 + 15 * HOUR + 50 * 60, span_start_ts=T0 + 15 * HOUR + 35 * 60)
    assert alert["early"]
    ax = only_axes(alert_figure(chart_points(alert), "scans", alert=alert))
    hollow = marked(ax, "so far, at its pace per hour")
    assert hollow == [pytest.approx(102.0 * 4)]          # 102 in 15 min: 408 an hour
    assert max(x1 for _, x1 in spans(ax)) == pytest.approx(to_num(alert["as_of_ts"]))


def test_render_chart_keeps_its_old_call_and_finds_the_incident_itself() -> None:
    alert = alerted("payment_failure_rate", 0.03, 0.62)
    points = chart_points(alert)
    png = render_chart(points, "payment_failure_rate")
    assert png.startswith(PNG) and len(png) > 20_000
    fig = alert_figure(points, "payment_failure_rate")
    assert covers(only_axes(fig), alert["window_start_ts"])
    assert "Payment failure rate" in title_of(fig)
    with pytest.raises(ValueError):
        render_chart([], "payments")


# -- the digest's week ---------------------------------------------------------------------

def digest_with_outage() -> dict:
    """Eight days of hourly KPI rows through the real DigestBuilder; the last day has a
    payment outage from 15:00 to 18:00 and its alert."""
    b = DigestBuilder()
    last = day_index(T0) + 7
    for d in range(day_index(T0), last + 1):
        for h in range(24):
            ws = d * DAY + h * HOUR
            outage = d == last and 15 <= h < 18
            for kpi, value, n in (
                    ("signups", daily(60.0, h) * (0.7 if d % 7 in (2, 3) else 1.0), 60.0),
                    ("revenue", daily(4_800.0, h) * (0.2 if outage else 1.0), 50.0),
                    ("mrr", 115_000.0 + 40 * d, 1.0), ("conversion_rate", 0.16, 60.0),
                    ("churn_rate", 0.04, 900.0), ("cac", 46.0, 90.0),
                    ("payment_failure_rate", 0.8 if outage else 0.03, 50.0)):
                b.add_row({"kpi": kpi, "segment": "all", "channel": "all",
                           "window_start": iso_utc(ws), "value": value, "n": n})
    b.add_alert({"id": "a1", "kpi": "payment_failure_rate", "segment": "all", "channel": "all",
                 "severity": "critical", "status": "open", "version": 1, "reason": "opened",
                 "window_end_ts": last * DAY + 16 * HOUR, "value": 0.8, "expected": 0.03,
                 "since": iso_utc(last * DAY + 15 * HOUR)})
    return build_digest(b, last)


def panel(fig: Figure, label: str) -> Axes:
    found = [ax for ax in fig.axes if ax.get_title(loc="left").startswith(label)]
    assert found, [ax.get_title(loc="left") for ax in fig.axes]
    return found[0]


def test_digest_chart_has_a_panel_for_the_alerted_kpi_with_its_alert_shaded() -> None:
    doc = digest_with_outage()
    (alerted,) = doc["week"]["alerted"]
    assert alerted["kpi"] == "payment_failure_rate"       # not a headline KPI, still kept
    assert alerted["values"][-1] == pytest.approx((21 * 0.03 + 3 * 0.8) / 24)
    assert alerted["values"][0] == pytest.approx(0.03)
    fig = week_figure(doc["week"], CHART_KPIS, f"Daily KPIs, week to {doc['day']} (UTC)")
    assert len(fig.axes) == len(CHART_KPIS) + 1
    pay = panel(fig, "Payment failure rate (%)")
    outage = doc["day_end_ts"] - DAY + 15 * HOUR
    assert covers(pay, outage) and not covers(pay, outage - DAY)
    (line,) = pay.get_lines()
    assert np.asarray(line.get_ydata(), dtype=float)[-1] == pytest.approx(12.625)
    lo, hi = pay.get_ylim()
    assert 0.0 <= lo and hi <= 100.0
    revenue = panel(fig, "Revenue ($ per day)")
    assert revenue.get_ylim()[0] == 0.0                  # a dip is not drawn as a collapse
    assert tick(revenue, 115_000.0) == "$115,000"
    assert covers(revenue, outage)                        # the alert shows on every panel
    mrr = panel(fig, "MRR")
    assert mrr.get_ylim()[0] == 0.0
    assert "UTC" in fig.legends[0].get_title().get_text()
    assert render_week_chart(doc["week"], CHART_KPIS).startswith(PNG)


def test_the_alerted_panels_title_fits_even_for_a_channel() -> None:
    """The wide panel's title names the series and when its alert came: for a channel that was
    one line wider than the figure, cut off at the right edge."""
    doc = digest_with_outage()
    week = doc["week"]
    week = {**week, "alerted": [{**a, "channel": "referral"} for a in week["alerted"]],
            "alerts": [{**a, "channel": "referral"} for a in week["alerts"]]}
    fig = week_figure(week, CHART_KPIS, f"Daily KPIs, week to {doc['day']} (UTC)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    wide = panel(fig, "Payment failure rate (%) · channel referral")
    assert "critical alert" in wide.get_title(loc="left")
    titles = {ax.get_title(loc="left") for ax in fig.axes} | {fig.get_suptitle()}
    for text in fig.findobj(Text):   # every panel's title, and the figure's, inside the picture
        if text.get_text() in titles:
            box = text.get_window_extent(renderer)
            assert box.x0 >= -0.5 and box.x1 <= fig.bbox.x1 + 0.5, text.get_text()


def test_digest_week_without_alerts_has_no_extra_panel() -> None:
    doc = digest_with_outage()
    week = {**doc["week"], "alerted": [], "alerts": []}
    fig = week_figure(week, CHART_KPIS)
    assert len(fig.axes) == len(CHART_KPIS)
    assert not any(spans(ax) for ax in fig.axes)


# -- the replay timeline -------------------------------------------------------------------

def replay_rows(days: int = 12) -> tuple[list[dict], dict, dict]:
    """Hourly kpis.jsonl lines of ``days`` days with a 5-hour payment outage on day 9."""
    start = T0 + 9 * DAY + 14 * HOUR
    end = start + 5 * HOUR
    rows = []
    for i in range(days * 24):
        ws = T0 + i * HOUR
        bad = start <= ws < end
        for kpi, value in (("signups", daily(60.0, i % 24)), ("match_rate", 0.74),
                           ("payment_failure_rate", 0.78 if bad else 0.03),
                           ("churn_rate", 0.04)):
            rows.append({"kpi": kpi, "segment": "all", "channel": "all",
                         "window_start": iso_utc(ws), "value": value})
    incident = {"id": "inc01-payment-outage", "kind": "payment-outage",
                "start": iso_utc(start), "end": iso_utc(end), "start_ts": start,
                "end_ts": end, "kpis": ["payment_failure_rate", "payments"],
                "segment": "all", "channel": "all",
                "description": "The payment processor fails 78% of charge attempts."}
    alert = {"id": "a1", "status": "open", "kpi": "payment_failure_rate", "segment": "all",
             "channel": "all", "severity": "critical", "window_start": iso_utc(start)}
    return rows, incident, alert


def test_replay_chart_zooms_on_the_incident_in_percent(tmp_path) -> None:
    rows, incident, alert = replay_rows()
    fig = timeline_figure(rows, [alert], [incident], title="Replay of 12 days")
    overview, zoom = fig.axes
    x0, x1 = zoom.get_xlim()
    assert x1 - x0 <= 2 + 5 / 24 + 1e-6                  # a day either side, not 12 days
    assert overview.get_xlim()[1] - overview.get_xlim()[0] >= 11.9
    assert covers(zoom, incident["start_ts"]) and covers(overview, incident["start_ts"])
    lo, hi = zoom.get_ylim()
    assert 0.0 <= lo and 78.0 < hi <= 100.0              # rates in %, within 0..100
    assert tick(zoom, 50.0) == "50%"
    assert "Payment failure rate (%)" in zoom.get_title(loc="left")
    assert "UTC" in zoom.get_xlabel() and "UTC" in overview.get_xlabel()
    path = render_timeline(tmp_path / "t" / "timeline.png", rows, [alert], [incident])
    assert path.read_bytes().startswith(PNG)


def test_replay_chart_without_ground_truth_zooms_on_the_alerts() -> None:
    rows, incident, alert = replay_rows()
    fig = timeline_figure(rows, [alert], None)
    assert len(fig.axes) == 2
    assert covers(fig.axes[1], incident["start_ts"])
    fig = timeline_figure(rows, [], None)                # nothing to zoom on: every KPI
    assert len(fig.axes) == 4
    assert all(ax.get_ylim()[0] == 0.0 for ax in fig.axes)
    with pytest.raises(ValueError):
        timeline_figure([], [], None)
