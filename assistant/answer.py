"""One question in, one answer out: the parser's tool calls (or the model's), worded.

Without a client the deterministic parser (:mod:`assistant.parse`) picks the tools and
:mod:`assistant.render` words their results. With a client, ``assistant.llm.answer_with_tools``
lets the model pick them; if that module is missing, raises or gives no answer, the parser
answers. Either way every number is Pulse's, from :mod:`assistant.tools`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from alerting.escape import clean_event_text, escape_mrkdwn, truncate
from assistant.parse import plan
from assistant.periods import span_text
from assistant.render import render, render_plan_problem
from assistant.store import KpiStore
from assistant.tools import TOOLS, tool_by_name

__all__ = ["Answer", "answer", "answer_async", "parser_answer"]

log = logging.getLogger(__name__)
_SECTION_LIMIT = 3000   # Slack's limit for a section's text


@dataclass
class Answer:
    """An answer: plain ``text`` (terminal), Slack ``blocks``, the tool results it rests on
    (``facts``) and who planned it (``source``: ``parser`` or ``model``)."""

    text: str
    blocks: list[dict] = field(default_factory=list)
    facts: list[dict] = field(default_factory=list)
    source: str = "parser"


def _blocks(paragraphs: list[str], store: KpiStore) -> list[dict]:
    """Slack Block Kit: a section per paragraph (escaped: slice names come from events), and
    where the numbers come from."""
    blocks: list[dict] = [{"type": "section", "text": {
        "type": "mrkdwn", "text": truncate(escape_mrkdwn(p), _SECTION_LIMIT)}}
        for p in paragraphs[:20]]
    span = (span_text(store.first, store.now) if store.first is not None
            and store.now is not None else "no KPI windows")
    source = clean_event_text(store.source, 120)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape_mrkdwn(
        f"Computed by Pulse from {source} ({span}).")}]})
    return blocks


def parser_answer(question: str, store: KpiStore) -> Answer:
    """The deterministic answer: the parser's plan, run and worded."""
    p = plan(question, store)
    facts: list[dict] = []
    paragraphs: list[str] = []
    if p.problem is not None or p.intent == "unknown":
        paragraphs = render_plan_problem(p.problem or "", store.kpis(), p.suggestion,
                                         store.segments(), store.channels())
    for i, (name, args) in enumerate(p.calls):
        tool = tool_by_name(name)
        if tool is None:
            continue
        result = tool.run(store, dict(args))
        facts.append({"tool": name, "input": args, **result})
        words = render(name, result)
        if i in p.prefixes and words:
            words[0] = p.prefixes[i] + words[0]
        paragraphs += words
    if not paragraphs:
        paragraphs = ["Pulse could not answer that from its KPIs."]
    return Answer("\n".join(paragraphs), _blocks(paragraphs, store), facts, "parser")


async def answer_async(question: str, store: KpiStore, client: Any = None,
                       model: str = "") -> Answer:
    """:func:`answer` for callers inside an event loop (the Slack app, ``pulse ask``)."""
    if client is not None:
        try:
            from assistant.llm import answer_with_tools
        except ImportError:
            log.info("assistant.llm is not available; the parser answers")
        else:
            try:
                result: Any = answer_with_tools(client, question, store, TOOLS, model)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as e:   # the model path must never take the answer down
                log.warning("model answer failed (%s); the parser answers", type(e).__name__)
                result = None
            if isinstance(result, Answer):
                return result
    return parser_answer(question, store)


def answer(question: str, store: KpiStore, client: Any = None, model: str = "") -> Answer:
    """The answer to ``question`` from ``store``: the model's through the tools when
    ``client`` is given and it answers, else the parser's.

    Synchronous; inside a running event loop the model's call runs on a thread of its own
    (prefer :func:`answer_async` there).
    """
    if client is None:
        return parser_answer(question, store)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(answer_async(question, store, client, model))
    box: list[Answer] = []
    thread = threading.Thread(
        target=lambda: box.append(asyncio.run(answer_async(question, store, client, model))))
    thread.start()
    thread.join()
    return box[0] if box else parser_answer(question, store)
