"""The shape of the ``kpis`` topic's messages, shared by the stream agent and offline runs.

One document per (window, KPI) carries every series of that KPI, so the detector stage sees a
KPI's segments and channels together (for root-cause hints); a ``window_closed`` marker follows
the last KPI of each window. On the topic, one Kafka message holds one window: a JSON array of
its KPI documents, marker last. (Faust's cost is per message, about as much as detecting one
KPI: a message per KPI made the Kafka hops of a window cost more than its detection.)

An open window's running values (snapshots with ``as_of``, the early KPIs only) make documents
with ``"as_of"`` and ``"as_of_ts"`` (its events before that event time), one message per tick
and no marker: the window is not closed. Consumers that want final values skip documents that
carry ``as_of`` (:func:`is_running`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from kpis.formulas import KPI_BY_ID
from kpis.merger import KpiSnapshot

__all__ = ["docs_in", "group_snapshots", "is_running", "series_rows", "window_closed",
           "window_messages"]


def is_running(doc: dict[str, Any]) -> bool:
    """Whether a ``kpis`` document holds an open window's running values (not final ones)."""
    return doc.get("as_of_ts") is not None


def group_snapshots(snaps: Iterable[KpiSnapshot]) -> list[dict[str, Any]]:
    """One ``kpis`` message per (window, KPI), series inside, in window then KPI order.

    >>> snap = KpiSnapshot("signups", "all", "all", 0.0, 3600.0, 4.0, 4.0)
    >>> msg = group_snapshots([snap])[0]
    >>> msg["window_end"], msg["complete"], msg["series"]
    ('1970-01-01T01:00:00Z', True, [{'segment': 'all', 'channel': 'all', 'value': 4.0, 'n': 4.0}])
    """
    grouped: dict[tuple[float, float | None, str, str | None], dict[str, Any]] = {}
    for s in snaps:
        key = (s.window_start, s.as_of, s.kpi, s.cohort)
        doc = grouped.get(key)
        if doc is None:
            j = s.to_json()
            kdef = KPI_BY_ID.get(s.kpi)
            doc = grouped[key] = {
                "kpi": s.kpi, "unit": kdef.unit if kdef else "",
                "window_start": j["window_start"], "window_end": j["window_end"],
                "window_start_ts": s.window_start, "window_end_ts": s.window_end,
                "complete": s.complete, "series": [],
            }
            if s.cohort is not None:
                doc["cohort"] = s.cohort
            if s.as_of is not None:
                doc["as_of"], doc["as_of_ts"] = j["as_of"], s.as_of
        doc["series"].append({"segment": s.segment, "channel": s.channel,
                              "value": s.value, "n": s.n})
    return list(grouped.values())


def window_closed(doc: dict[str, Any]) -> dict[str, Any]:
    """The marker that follows the last KPI message of a window on ``kpis`` and
    ``anomalies``."""
    return {"kind": "window_closed", "window_start": doc["window_start"],
            "window_end": doc["window_end"], "window_start_ts": doc["window_start_ts"],
            "window_end_ts": doc["window_end_ts"]}


def window_messages(docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The ``kpis`` topic messages of :func:`group_snapshots`' documents: one per window, its
    KPI documents then its ``window_closed`` marker.

    >>> a = KpiSnapshot("signups", "all", "all", 0.0, 3600.0, 4.0, 4.0)
    >>> b = KpiSnapshot("signups", "all", "all", 3600.0, 7200.0, 5.0, 5.0)
    >>> [[d.get("kpi", d.get("kind")) for d in m] for m in window_messages(group_snapshots([a, b]))]
    [['signups', 'window_closed'], ['signups', 'window_closed']]
    """
    out: list[list[dict[str, Any]]] = []

    def close_last() -> None:
        if out and not is_running(out[-1][-1]):
            out[-1].append(window_closed(out[-1][-1]))

    for doc in docs:
        if not out or (out[-1][-1]["window_start_ts"], out[-1][-1].get("as_of_ts")) != (
                doc["window_start_ts"], doc.get("as_of_ts")):
            close_last()
            out.append([])
        out[-1].append(doc)
    close_last()
    return out


def docs_in(value: bytes) -> list[dict[str, Any]]:
    """The documents of one ``kpis`` message (a window's array; a single document is read as
    one, as older workers wrote them). Raises ValueError when it is not JSON objects.

    >>> [d["kind"] for d in docs_in(b'[{"kind": "a"}, {"kind": "window_closed"}]')]
    ['a', 'window_closed']
    >>> docs_in(b'{"kind": "window_closed"}'), docs_in(b'[]')
    ([{'kind': 'window_closed'}], [])
    >>> docs_in(b'[1]')
    Traceback (most recent call last):
    ...
    ValueError: a kpis message must be a JSON object or an array of them
    """
    doc = orjson.loads(value)
    docs = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(d, dict) for d in docs):
        raise ValueError("a kpis message must be a JSON object or an array of them")
    return docs


def series_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``kpis.jsonl`` rows of one ``kpis`` document, one per series (none for a marker).

    >>> doc = group_snapshots([KpiSnapshot("signups", "all", "all", 0.0, 3600.0, 4.0, 4.0)])[0]
    >>> series_rows(doc)[0]["value"], series_rows({"kind": "window_closed"})
    (4.0, [])
    """
    return [{"kpi": doc["kpi"], "segment": s["segment"], "channel": s["channel"],
             "window_start": doc["window_start"], "window_end": doc["window_end"],
             "value": s["value"], "n": s.get("n"), "complete": doc.get("complete", True),
             **({"cohort": doc["cohort"]} if "cohort" in doc else {})}
            for s in doc.get("series", ())]
