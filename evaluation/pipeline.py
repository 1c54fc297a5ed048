"""The worker's pipeline in one process: simulator → KPI windows → ``kpis`` messages → verdicts.

``pulse evaluate``, the README's images (``docs/images/make_images.py``) and the recorded alert
cases (``tests/data/alerts/record.py``) all need what the worker does to a stream of events,
without Kafka and in event time: the same :class:`~kpis.KpiEngine` (hourly windows with early
looks), the same ``kpis`` messages (``kpis.messages.window_messages``: a window's documents, then
its ``window_closed`` marker), the same detectors and the same alert lifecycle. This is the one
copy of that loop; each caller keeps only what it does with the messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from alerting.lifecycle import AlertChange, AlertManager
from detectors.watch import KpiWatch
from kpis import KpiEngine
from kpis.messages import group_snapshots, window_messages
from simulator import Simulation

__all__ = ["STEP", "Pipeline", "alert_changes"]

STEP = 300.0
"""Event time between the simulator's watermarks: an early anomaly's time is known to 5 min."""


@dataclass
class Pipeline:
    """A simulation and the KPI engine it feeds, ``reached`` being the event time simulated."""

    sim: Simulation
    engine: KpiEngine
    reached: float

    def messages(self, until: float, step: float = STEP,
                 on_events: Callable[[list[dict[str, Any]]], None] | None = None,
                 ) -> Iterator[tuple[float, list[dict[str, Any]]]]:
        """Simulate up to ``until`` in steps of ``step``; ``(t, message)`` for every ``kpis``
        message published by the time the watermark reaches ``t``, in the worker's order.

        ``on_events`` sees each step's events before the engine counts them.
        """
        while self.reached < until:
            t = min(until, (math.floor(self.reached / step) + 1) * step)
            events = self.sim.advance(t)
            if on_events is not None:
                on_events(events)
            for ev in events:
                self.engine.add(ev)
            for message in window_messages(group_snapshots(self.engine.advance(t, complete=True))):
                yield t, message
            self.reached = t


def alert_changes(doc: dict[str, Any], watch: KpiWatch,
                  manager: AlertManager) -> list[AlertChange]:
    """What one ``kpis`` document does to the alerts, as the detect and alert agents do it:
    a ``window_closed`` marker ages them, a KPI document's anomalies open or update them (at the
    event time of the look that found them)."""
    if doc.get("kind") == "window_closed":
        return manager.on_window_closed(float(doc["window_end_ts"]))
    out: list[AlertChange] = []
    for anomaly in watch.observe(doc):
        now = anomaly.get("as_of_ts") or anomaly["window_end_ts"]
        out += manager.on_anomaly(anomaly, float(now))
    return out
