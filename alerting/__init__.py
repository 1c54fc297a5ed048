"""Alerting: anomalies → grouped alerts → console, alerts.jsonl, Slack, Claude explanations.

Plain Python (no Kafka). The ``anomalies`` agent feeds :class:`AlertService` (``handle``);
``pulse silence`` uses :mod:`alerting.silence`; ``pulse ask`` uses
:func:`alerting.ask.answer_question`.
"""

from alerting.ask import answer_question
from alerting.explain import Explainer, Explanation, make_explainer
from alerting.lifecycle import Alert, AlertChange, AlertManager
from alerting.policies import CallBudget, Deduper, FiringRule, Silence, Silences, parse_duration
from alerting.service import AlertService
from alerting.silence import add_silence, describe_silence, list_silences, remove_silence
from alerting.slack import make_slack_client

__all__ = [
    "Alert",
    "AlertChange",
    "AlertManager",
    "AlertService",
    "CallBudget",
    "Deduper",
    "Explainer",
    "Explanation",
    "FiringRule",
    "Silence",
    "Silences",
    "add_silence",
    "answer_question",
    "describe_silence",
    "list_silences",
    "make_explainer",
    "make_slack_client",
    "parse_duration",
    "remove_silence",
]
