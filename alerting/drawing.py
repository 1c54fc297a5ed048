"""Charts drawn off the event loop, with matplotlib imported once, in the background.

Importing matplotlib takes about a second and drawing a chart tens of milliseconds: neither may
hold up the worker's event loop. :func:`preload` starts the import in a thread as soon as a
worker knows it will draw (Slack on, charts on), so the first alert's chart does not wait for it;
:func:`alert_png` and :func:`week_png` draw in a thread and return ``None`` (logged) when a chart
cannot be drawn from what it was given, so the alert or digest goes out without it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading

__all__ = ["alert_png", "preload", "week_png"]

log = logging.getLogger(__name__)

_preloading: threading.Thread | None = None


def preload() -> None:
    """Import alerting.chart (and matplotlib) in a daemon thread, once per process."""
    global _preloading
    if _preloading is None:
        _preloading = threading.Thread(target=importlib.import_module, args=("alerting.chart",),
                                       name="pulse-chart-import", daemon=True)
        _preloading.start()


def _alert_png(chart: dict) -> bytes | None:
    from alerting.chart import chart_points, render_chart  # matplotlib only when drawing

    try:
        return render_chart(chart_points(chart), chart["kpi"], alert=chart)
    except (ValueError, TypeError, KeyError):
        log.exception("could not draw the chart")
        return None


def _week_png(week: dict, kpis: tuple[str, ...], title: str) -> bytes | None:
    from alerting.chart import render_week_chart  # matplotlib only when drawing

    try:
        return render_week_chart(week, kpis, title)
    except (ValueError, TypeError, KeyError):
        log.exception("could not draw the digest chart")
        return None


async def alert_png(chart: dict) -> bytes | None:
    """PNG of an alert's chart (an outbox ``chart`` delivery's ``chart``), None if it cannot be
    drawn."""
    return await asyncio.to_thread(_alert_png, chart)


async def week_png(week: dict, kpis: tuple[str, ...], title: str) -> bytes | None:
    """PNG of a digest's week of daily values, None if it cannot be drawn."""
    return await asyncio.to_thread(_week_png, week, kpis, title)
