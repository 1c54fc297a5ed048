"""Event-time windowed KPI engine: events in, one snapshot per KPI and series per closed window.

``add`` only counts, into per-window accumulators keyed by the event's (segment, channel); the
KPIs of docs/kpis.md are computed once per window when ``advance`` closes it, from those counts
and from level/trailing state updated in window order. Everything is plain Python attributes, so
the engine pickles (the worker checkpoints it) and a replay gives the same snapshots.

>>> eng = KpiEngine(window_s=3600, lateness_s=600)
>>> eng.add({"event_id": "e1", "kind": "signup", "ts": 100.0, "user_id": "u1",
...          "segment": "new_grad", "channel": "organic", "referred_by": None})
>>> eng.add({"event_id": "e1", "kind": "signup", "ts": 100.0, "user_id": "u1",
...          "segment": "new_grad", "channel": "organic", "referred_by": None})
'duplicate'
>>> eng.advance(3600.0)          # window [0, 3600) waits for late events until 4200
[]
>>> [(s.segment, s.channel, s.value, s.complete)
...  for s in eng.advance(4200.0) if s.kpi == "signups" and s.value]
[('all', 'all', 1.0, True), ('new_grad', 'all', 1.0, True), ('all', 'organic', 1.0, True)]
>>> eng.add({"event_id": "e2", "kind": "scan", "ts": 3599.0, "user_id": "u1",
...          "segment": "new_grad", "channel": "organic", "match_score": 0.5})
'late'
"""

from __future__ import annotations

from typing import Any

from kpis.merger import KpiMerger, KpiSnapshot
from kpis.windows import PartitionWindows

__all__ = ["KpiEngine"]


class KpiEngine:
    """Events in, KPI snapshots of closed windows out, in one process (replays, evaluation,
    tests): one :class:`PartitionWindows` feeding a one-partition :class:`KpiMerger`.

    Parameters
    ----------
    window_s
        Window length in event-time seconds (``PULSE_WINDOW_SECONDS``).
    lateness_s
        A window ``[start, end)`` closes once the watermark reaches ``end + lateness_s``; events
        for a closed window are reported ``"late"``.

    peek_s
        With ``> 0``, :meth:`advance` also gives the open window's running values of the early
        KPIs every ``peek_s`` of event time (snapshots with ``as_of``, see :class:`Peek`).

    Trailing horizons (24 h, 30 d) are counted in whole windows ending at ``window_end``
    (``round(horizon / window_s)``, at least one), exact when ``window_s`` divides them.
    """

    def __init__(self, window_s: float = 3600, lateness_s: float = 600, peek_s: float = 0.0):
        self.windows = PartitionWindows(window_s, lateness_s, peek_s)
        self.merger = KpiMerger(window_s, partitions=1)
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.peek_s = peek_s

    @property
    def watermark(self) -> float:
        """Largest event time seen by ``add`` or given to ``advance`` (-inf before any)."""
        return self.windows.watermark

    @property
    def count_by_kind(self) -> dict[str, int]:
        return self.windows.count_by_kind

    def add(self, ev: dict[str, Any]) -> str | None:
        """Count one validated event; None, or ``"duplicate"``/``"late"`` (then nothing changed)."""
        return self.windows.add(ev)

    def advance(self, watermark: float, complete: bool = False) -> list[KpiSnapshot]:
        """Close, in order, every window ending at or before ``watermark - lateness_s``; with
        ``peek_s``, the running values since the last call too (in event-time order).

        ``complete``: every event before ``watermark`` has been added (an offline run fed in
        event-time order), so the ticks up to it are taken now rather than when the next event
        arrives, as a live stream, where the next event comes seconds after the tick, has them.
        """
        if complete:
            self.windows.peek_through(watermark)
        closed = self.windows.advance(watermark)
        peeks = self.windows.take_peeks()
        if not closed and not peeks:
            return []
        return self.merger.add(0, self.windows.closed_before, closed, peeks)
