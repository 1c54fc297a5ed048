"""Every Prometheus metric Pulse exports, declared once at import.

Agents record around their calls; detectors/ and alerting/ never import this module. Label values
come from closed sets (KPI ids, segments, channels, event kinds, dead-letter reasons), never ids.

Each counter whose label values form a closed set has all its series created at 0 here, at import
(before the worker serves ``/metrics``), so a dashboard panel or an alert rule on a thing that
has not happened yet reads 0, not "No data". The sets come from where the values are made; the
ones that are only string literals there are spelled below, and tests/test_prometheus.py derives
them from those literals so the two cannot drift apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from alerting.policies import SEVERITY_RANK
from core.vocabulary import EVENT_KINDS
from kpis.formulas import KPIS
from stream.checkpoint import REFUSED_REASONS
from stream.events import DEAD_LETTER_REASONS

__all__ = [
    "KPI", "EVENTS", "DEAD_LETTERS", "DUPLICATES", "MESSAGES", "REDELIVERED", "OFFSET_GAPS",
    "REREADS", "RECOVERY_GIVEN_UP",
    "PROCESSING_LAG", "CONSUMER_LAG", "FETCH_HELD", "COHORT_KPI",
    "WATERMARK", "WINDOWS_CLOSED", "ANOMALIES", "ALERTS", "SLACK_CALLS", "LLM_CALLS",
    "SLACK_LATENCY", "LLM_LATENCY", "STATE_FILES_REFUSED",
    "SEVERITIES", "ALERT_STATUSES", "SLACK_OUTCOMES", "LLM_OUTCOMES",
]

SEVERITIES: tuple[str, ...] = tuple(SEVERITY_RANK)
"""Severities of an anomaly (``alerting.policies.SEVERITY_RANK``)."""
ALERT_STATUSES: tuple[str, ...] = ("open", "updated", "resolved")
"""``AlertChange.status`` values: the literals ``AlertManager`` passes to ``_change``
(alerting/lifecycle.py)."""
SLACK_OUTCOMES: tuple[str, ...] = ("ok", "error")
"""Outcomes of a Slack call: what ``alerting.outbox.observed_call`` reports."""
LLM_OUTCOMES: tuple[str, ...] = ("ok", "fallback", "error")
"""Outcomes of a model call: what ``_observe("llm", ...)`` reports in alerting/service.py and
alerting/digest_delivery.py ("fallback": the template or summary stood in for the model's)."""

KPI = Gauge("pulse_kpi", "Value of a KPI in its latest closed window.",
            ["kpi", "segment", "channel"])
EVENTS = Counter("pulse_events", "Valid events consumed, by kind.", ["kind"])
DEAD_LETTERS = Counter("pulse_dead_letters", "Payloads sent to the dead-letter topic, by reason.",
                       ["reason"])
DUPLICATES = Counter("pulse_duplicate_events",
                     "Re-delivered events (same event_id) that were not counted again.")
REDELIVERED = Counter("pulse_redelivered_messages",
                      "Messages of Pulse's topics seen again after a restart and skipped, by "
                      "any agent (what they hold is already in its saved state).")
OFFSET_GAPS = Counter("pulse_offset_gap_messages",
                      "Messages Faust skipped that the worker fetched itself (faust#596).")
REREADS = Counter("pulse_undelivered_rereads",
                  "Partitions read again because the log held messages Faust fetched but never "
                  "handed to its agent or table recovery (dropped in a rebalance).")
RECOVERY_GIVEN_UP = Counter("pulse_table_recoveries_given_up",
                            "Table changelog recoveries that received nothing for long while the "
                            "log held records, and stopped waiting (the streams resumed).")
MESSAGES = Counter("pulse_messages", "Kafka messages consumed from the events topic.")
PROCESSING_LAG = Gauge("pulse_processing_lag_seconds",
                       "Wall-clock seconds between a message's append to Kafka and its "
                       "processing by the worker.")
COHORT_KPI = Gauge("pulse_cohort_kpi",
                   "Cohort KPIs (retention_d7, retention_d30, paid_retention_m1) of a weekly "
                   "signup cohort (the ISO date of its Monday), set once its horizon passed.",
                   ["kpi", "cohort", "segment", "channel"])
CONSUMER_LAG = Gauge("pulse_consumer_lag_messages",
                     "Messages of an events partition not yet processed by the worker reading "
                     "it (high watermark minus position).", ["topic", "partition"])
FETCH_HELD = Gauge("pulse_fetch_held_partitions",
                   "Partitions of a topic not fetched for now because they ran ahead of the "
                   "slowest one in event time (while a backlog is read).", ["topic"])
WATERMARK = Gauge("pulse_event_time_watermark_seconds",
                  "Event time up to which KPI windows are closed (seconds since the epoch).")
WINDOWS_CLOSED = Counter("pulse_windows_closed", "KPI windows closed and published.")
ANOMALIES = Counter("pulse_anomalies", "Anomalies flagged, by KPI and severity.",
                    ["kpi", "severity"])
ALERTS = Counter("pulse_alert_changes", "Alert state changes, by status.", ["status"])
SLACK_CALLS = Counter("pulse_slack_calls", "Slack Web API calls, by outcome.", ["outcome"])
LLM_CALLS = Counter("pulse_llm_calls", "Calls to the explanation model, by outcome.",
                    ["outcome"])
SLACK_LATENCY = Histogram("pulse_slack_call_seconds", "Latency of Slack Web API calls.")
LLM_LATENCY = Histogram("pulse_llm_call_seconds", "Latency of explanation model calls.")
STATE_FILES_REFUSED = Counter(
    "pulse_state_files_refused",
    "State files (checkpoints) refused at load and rebuilt from Kafka, by reason.", ["reason"])
# the broker (stream/broker.py BrokerWatch; resets: stream/resume.py LogIdentity)
BROKER_UP = Gauge("pulse_broker_up", "1 while the worker's Kafka broker answers, 0 while not.")
BROKER_RESETS = Counter("pulse_broker_resets",
                        "Broker resets detected: a log whose cluster id changed or whose "
                        "offsets went backwards; its topics were read again from their start.")


def _zero(counter: Counter, **values: Iterable[str]) -> None:
    """Create the series of ``counter`` for every combination of ``values`` (label -> values),
    at 0."""
    for combination in itertools.product(*values.values()):
        counter.labels(**dict(zip(values, combination, strict=True)))


_zero(EVENTS, kind=EVENT_KINDS)
_zero(DEAD_LETTERS, reason=DEAD_LETTER_REASONS)
_zero(STATE_FILES_REFUSED, reason=REFUSED_REASONS)
_zero(ANOMALIES, kpi=[k.id for k in KPIS], severity=SEVERITIES)  # cohort KPIs are never flagged
_zero(ALERTS, status=ALERT_STATUSES)
_zero(SLACK_CALLS, outcome=SLACK_OUTCOMES)
_zero(LLM_CALLS, outcome=LLM_OUTCOMES)
