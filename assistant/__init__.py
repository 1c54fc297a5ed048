"""The assistant: questions about the KPIs answered from Pulse's own numbers.

Plain Python (no Kafka, no Faust). :class:`KpiStore` holds the KPI windows, alerts and digests
(from files, or documents the caller read from the topics); :data:`TOOLS` are the queries a
question can make (offered as is to the model); :func:`answer` plans them with the
deterministic parser, or with the model when a client is given, and words the results.
``pulse ask``, ``pulse alerts`` and the Slack app all go through here.
"""

from assistant.answer import Answer, answer, answer_async, parser_answer
from assistant.store import KpiStore, StoreError
from assistant.tools import TOOLS, Tool, tool_by_name

__all__ = ["TOOLS", "Answer", "KpiStore", "StoreError", "Tool", "answer", "answer_async",
           "parser_answer", "tool_by_name"]
