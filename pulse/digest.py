"""``pulse digest``: the daily digest of one day, rebuilt from the KPI state.

The KPI state is a ``kpis.jsonl`` (``--kpis``, e.g. a demo's) or the ``kpis`` topic of a
running pipeline; the day's alerts come from ``--alerts`` (default: ``alerts.jsonl`` beside
``--kpis``) or the ``alerts`` topic. The digest is the one the worker writes at the day's end
(alerting/digest.py), with the template summary; nothing is posted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date
from pathlib import Path

from alerting.digest import CHART_KPIS, build_digest, builder_from, day_index, day_iso
from alerting.digest_words import digest_text
from stream.kpi_state import docs_from_topic, rows_from_file, series_rows
from stream.settings import Settings

__all__ = ["run_digest"]


def _fail(message: str) -> int:
    print(f"pulse digest: {message}", file=sys.stderr)
    return 2


def _day_of(text: str) -> int | None:
    try:
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    except ValueError:
        return None


def run_digest(day: str | None, kpis: str | None, alerts: str | None, broker: str,
               as_json: bool, chart: str | None, settings: Settings) -> int:
    if kpis:
        if not Path(kpis).is_file():
            return _fail(f"{kpis} does not exist; give the kpis.jsonl of a run "
                         "(`pulse demo --out DIR` writes DIR/kpis.jsonl)")
        rows = rows_from_file(kpis)
        beside = Path(kpis).with_name("alerts.jsonl")
        alerts_path = alerts or (str(beside) if beside.is_file() else None)
        alert_rows = rows_from_file(alerts_path) if alerts_path else []
        source = kpis
    else:
        bootstrap = broker or settings.kafka_bootstrap
        if not bootstrap:
            return _fail("give --kpis FILE with a kpis.jsonl (e.g. a demo's --out DIR), or "
                         "--broker HOST:PORT (or PULSE_KAFKA_BOOTSTRAP) of a running pipeline")
        rows = [r for doc in asyncio.run(docs_from_topic(bootstrap, settings.topic("kpis")))
                for r in series_rows(doc)]
        alert_rows = (rows_from_file(alerts) if alerts else
                      asyncio.run(docs_from_topic(bootstrap, settings.topic("alerts"))))
        source = f"topic {settings.topic('kpis')} at {bootstrap}"
    b = builder_from(rows, alert_rows, window_s=settings.window_seconds)
    held = b.days_held()
    if not held:
        return _fail(f"no KPI windows in {source}; run a pipeline first (`pulse demo --out DIR`)"
                     " and pass --kpis DIR/kpis.jsonl")
    if day is None:
        wanted = day_index(b.reached) - 1       # the last day that has ended
    else:
        parsed = _day_of(day)
        if parsed is None:
            return _fail(f"--day {day!r} is not a date; write it as YYYY-MM-DD (UTC)")
        wanted = parsed
    if wanted not in held:
        span = f"{day_iso(held[0])} .. {day_iso(held[-1])}"
        what = "no complete day yet" if day is None else f"no KPI windows on {day}"
        return _fail(f"{what} in {source} (it has days {span}); give --day with one of those "
                     "dates, or let the pipeline run past a day's end (00:00 UTC)")
    doc = build_digest(b, wanted)
    if chart:
        from alerting.chart import render_week_chart
        Path(chart).write_bytes(render_week_chart(doc["week"], CHART_KPIS,
                                                  f"Daily KPIs, week to {doc['day']} (UTC)"))
        doc["chart"] = chart
    print(json.dumps(doc, ensure_ascii=False, indent=1) if as_json else digest_text(doc))
    return 0

