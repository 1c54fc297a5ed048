"""The ``kpi-partials`` codec: each input partition's closed windows as integer sums.

The first KPI stage (stream/agents/kpis.py) sends them, the merge (stream/agents/merge.py)
adds the partitions up. Beside the ``kpis`` codec (kpis/messages.py); both are plain JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

from kpis.rows import Peek, WindowInputs

__all__ = ["Partial", "encode_partials", "decode_partials", "partials_of"]

Partial = tuple[int, int, int | None, list[WindowInputs], list[Peek]]
"""(partition, partitions of the topic, closed_before, closed windows, peeks of its open
window) of one input partition."""


def encode_partials(partials: list[Partial]) -> bytes:
    """One ``kpi-partials`` message: a JSON array with, per partition, its closed windows, how
    far it has closed, and the running counts of its open window (``peeks``)."""
    return orjson.dumps([
        {"partition": partition, "partitions": partitions, "closed_before": closed_before,
         "windows": [{"window": w.window,
                      "rows": [[seg, ch, row] for (seg, ch), row in w.rows.items()],
                      "referrals": [[ref, seg, ch] for ref, (seg, ch) in w.referrals],
                      "cohorts": [[kpi, cohort, seg, ch, num, den]
                                  for kpi, cohort, (seg, ch), num, den in w.cohorts]}
                     for w in windows],
         "peeks": [{"window": pk.window, "as_of": pk.as_of,
                    "rows": [[seg, ch, row] for (seg, ch), row in pk.rows.items()]}
                   for pk in peeks]}
        for partition, partitions, closed_before, windows, peeks in partials])


def decode_partials(raw: bytes) -> list[Partial]:
    """The partials of a ``kpi-partials`` message (an array; one object is read as one)."""
    return partials_of(orjson.loads(raw))


def partials_of(doc: Any) -> list[Partial]:
    """The partials of a decoded ``kpi-partials`` message. Trusts its shape: what the worker
    reads from the topic is checked first (stream/internal.py ``partials_in``)."""
    out = []
    for d in doc if isinstance(doc, list) else [doc]:
        windows = [WindowInputs(w["window"], {(seg, ch): row for seg, ch, row in w["rows"]},
                                [(ref, (seg, ch)) for ref, seg, ch in w["referrals"]],
                                [(kpi, cohort, (seg, ch), num, den)
                                 for kpi, cohort, seg, ch, num, den in w.get("cohorts", ())])
                   for w in d["windows"]]
        peeks = [Peek(int(pk["window"]), float(pk["as_of"]),
                      {(seg, ch): row for seg, ch, row in pk["rows"]})
                 for pk in d.get("peeks", ())]
        out.append((d["partition"], d["partitions"], d["closed_before"], windows, peeks))
    return out
