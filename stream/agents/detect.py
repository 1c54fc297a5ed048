"""Anomaly detection: ``kpis`` in, ``anomalies`` out.

Each KPI document of a ``kpis`` message (one closed window: per KPI, all its series) goes
through that KPI's detector state (detectors/watch.py); flagged points are published to
``anomalies`` as docs/anomalies.md describes, and the ``window_closed`` markers are passed on
after them. The state lives in a Faust table keyed by KPI id, so a restarted worker (or the
worker that takes the ``kpis`` partition over) recovers it from the changelog and carries on
learning instead of starting cold (no burst of false alarms). Table values are JSON
(detectors/state.py), never pickle: the changelog is a topic anyone on the cluster could write
to.

Each saved value carries the ``kpis`` offset its state reaches; the agent resumes from the
oldest of them through stream/resume.py. After a restart Kafka re-delivers from the last
commit, which may be before or after that offset: messages the state already learned are
skipped (learning one twice would feed the forecaster a window out of order), per KPI, and
messages processed after the last save are learned again without publishing their anomalies a
second time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from detectors import load_config, state
from detectors.calendar import CalendarError, CalendarFile
from detectors.watch import KpiWatch
from stream import metrics
from stream.agents.merge import dead_letter, kpis_topic
from stream.app import app, make_resume, settings
from stream.custody import Custody
from stream.internal import kpi_docs_in
from stream.resume import Offsets

__all__ = ["anomalies_topic", "detector_state", "detect_anomalies", "DetectorStates"]

log = logging.getLogger(__name__)

anomalies_topic = app.topic(settings.topic("anomalies"), key_serializer="raw",
                            value_serializer="raw", partitions=1)
detector_state = app.Table("detector-state", key_type=str, value_type=str, partitions=1)

# Every KPI's state is ~0.6 MB of JSON and 0.1 s of CPU to write. 10 s between saves was tried:
# a SIGKILL in a backlog's first seconds then found no saved state and the restarted detectors
# missed the next incident (tests/test_detector_restart.py), so every 2 s of a backlog.
SAVE_EVERY_S = 2.0


class DetectorStates:
    """The detectors of every KPI, with the ``kpis`` offset each one's state has learned up to.

    ``table`` is any mapping of KPI id to saved JSON text: the Faust table in the worker, a
    dict in tests.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.watch = KpiWatch(load_config(settings.detectors_config or None))
        self.calendar = (CalendarFile(settings.calendar_file, on_error=_calendar_error)
                         if settings.calendar_file else None)
        self.due: dict[str, int] = {}      # KPI -> first kpis offset its state has not learned
        self.restored = False

    def restore_all(self) -> None:
        """Load every KPI state the table holds (before the first message, and whenever the
        partition comes back to this worker)."""
        self.restored = True
        for kpi, saved in list(self.table.items()):
            try:
                doc = state.loads(saved.encode())
                self.watch.put(kpi, doc["watch"])
                self.due[kpi] = int(doc["next_offset"])
            except Exception as exc:   # an old or foreign value: start that KPI cold
                log.warning("detector state of %s not restored (%s); it starts cold", kpi, exc)
                continue
            log.info("restored the detectors of %s (%d series) up to kpis offset %d", kpi,
                     len(self.watch.kpis[kpi].watchers), self.due[kpi])

    def forget(self) -> None:
        """Drop the states held here, to be restored from the table again: the ``kpis``
        partition came (back) to this worker, and another may have moved them on."""
        self.watch.kpis.clear()
        self.due.clear()
        self.restored = False

    def learned(self, kpi: str, offset: int) -> bool:
        """Whether the state of ``kpi`` already includes the message at ``offset``."""
        return offset < self.due.get(kpi, 0)

    def observe(self, doc: dict[str, Any], offset: int) -> list[dict[str, Any]]:
        if self.calendar is not None:
            cal = self.calendar.current()
            self.watch.calendar = cal if len(cal) else None
        anomalies = self.watch.observe(doc)
        self.due[doc["kpi"]] = offset + 1
        return anomalies

    def save(self, next_offset: int) -> None:
        """Write every KPI's state, as learned up to (not including) ``next_offset``."""
        for kpi, watch in self.watch.kpis.items():
            self.due[kpi] = max(self.due.get(kpi, 0), next_offset)
            self.table[kpi] = state.dumps(
                {"next_offset": self.due[kpi], "watch": watch}).decode()

    async def save_and_flush(self, offsets: Offsets) -> None:
        """The resume protocol's save: every KPI state to the table, and the table's changelog
        on the broker before the offset is committed."""
        if offsets:
            self.save(max(offsets.values()))
        await app.producer.flush()

    def oldest_due(self) -> int | None:
        return min(self.due.values(), default=None)


def _calendar_error(error: CalendarError) -> None:
    log.error("calendar not used: %s (the detectors keep the last good calendar, if any; fix "
              "the file and it is read again)", error)


async def _process(states: DetectorStates, docs: list[dict[str, Any]], offset: int,
                   silent: bool = False) -> None:
    """Detect on one ``kpis`` message (a window's KPI documents, marker last). ``silent``: it
    was processed before the restart (fetched from before the group's committed offset) and
    its anomalies are out: its KPIs the saved states do not cover learn it, nothing is sent."""
    if silent:
        for doc in docs:
            if "kpi" in doc and not states.learned(doc["kpi"], offset):
                states.observe(doc, offset)
        return
    # processed before a restart when a state saved since has learned past it: its markers
    # were forwarded then, and every KPI in it is skipped below
    replayed = offset < max(states.due.values(), default=0)
    for doc in docs:
        if doc.get("kind") == "window_closed":
            if not replayed:
                await anomalies_topic.send(key=b"window", value=orjson.dumps(doc))
            continue
        if "kpi" not in doc or states.learned(doc["kpi"], offset):
            continue
        kpi = doc["kpi"]
        for anomaly in states.observe(doc, offset):
            metrics.ANOMALIES.labels(kpi, anomaly["severity"]).inc()
            await anomalies_topic.send(key=kpi.encode(), value=orjson.dumps(anomaly))


@app.agent(kpis_topic)
async def detect_anomalies(stream: Any) -> None:
    """Consumes ``kpis``; publishes anomaly events and window markers to ``anomalies``.

    Detector state goes to the table after a window, at most every ``SAVE_EVERY_S``: at live
    pace that is every window, and while a backlog is read it keeps the changelog (every KPI's
    state) from becoming the bottleneck at hundreds of windows a second.
    """
    states = DetectorStates(detector_state)
    # after a broker reset the detectors keep what they learned; the offsets start over
    resume = make_resume((settings.topic("kpis"),), states.save_and_flush, SAVE_EVERY_S,
                         on_reset=states.due.clear)
    custody = Custody(settings.topic("kpis"))
    async for event in stream.events():
        msg = event.message
        while app.in_recovery:   # Faust resumes streams before the table is fully recovered
            await asyncio.sleep(0.05)
        if custody.gained():   # (again) this worker's: the table holds the last reader's state
            states.forget()
        if not states.restored:   # from the oldest KPI state: the rest is skipped per KPI
            states.restore_all()
            resume.resumed((msg.topic, msg.partition), states.oldest_due())
        closed = False
        async for rec in resume.records(msg.topic, msg.partition, msg.offset, event.value,
                                        msg.timestamp):
            docs, bad = kpi_docs_in(rec.value)   # the bad ones to dead-letters, once
            for rej in () if rec.replayed else bad:
                await dead_letter(rej, rec.topic, rec.partition, rec.offset)
            await _process(states, docs, rec.offset, silent=rec.replayed)
            closed = closed or any(d.get("kind") == "window_closed" for d in docs)
        if closed:   # saved after a whole window
            await resume.checkpoint()
