"""The worker's read-only web page, on Faust's own web server (``PULSE_WEB_PORT``).

Routes: ``/`` Overview, ``/funnel``, ``/cohorts`` (``?segment=`` or ``?channel=``), ``/alerts``
and ``/ask`` (``GET ?q=`` or a form ``POST``); the HTML is ``dashboard/``'s, with no script and
no external resource. The page reads only the worker's topics, as ``load_store`` in
stream/agents/alerts.py does (``kpis`` and ``alerts`` into an ``assistant.store.KpiStore``, plus
``anomalies`` for the alert charts' history), but it follows them instead of re-reading them
for every request: from the first request on, one consumer reads them from the start and
then keeps up. The store and each tab's HTML are kept until the next window closes or an
alert changes (a ``window_closed`` marker on ``kpis``, a record on ``alerts`` or
``anomalies``), then rebuilt on the next request, off the event loop.

The web server binds to ``PULSE_WEB_BIND`` (default 127.0.0.1: no login, so not on the
network unless asked for).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from faust import web

from assistant.answer import answer_async
from assistant.periods import moment_text
from assistant.store import KpiStore
from dashboard import (
    SECURITY_HEADERS,
    PageInfo,
    alert_png,
    alerts_page,
    ask_page,
    clean_question,
    cohorts_page,
    funnel_page,
    history_key,
    overview_page,
    page,
)
from kpis.messages import docs_in, is_running
from stream.app import app, settings

__all__ = ["REFRESH_S", "PageState", "state"]

log = logging.getLogger(__name__)

REFRESH_S = 15          # the tabs reload themselves this often (cheap: cached per window)
FIRST_WAIT_S = 20.0     # the first request waits this long for the topics to be read
RETRY_S = 5.0


class PageState:
    """The documents of the ``kpis``, ``alerts`` and ``anomalies`` topics, followed from the
    first request on, and what was built from them, with the ``generation`` it was built at
    (one more for every closed window, alert record and anomaly read)."""

    def __init__(self, bootstrap: str, kpis: str, alerts: str, anomalies: str) -> None:
        self.bootstrap = bootstrap
        self.topics = {kpis: "kpis", alerts: "alerts", anomalies: "anomalies"}
        self.kpi_docs: list[dict[str, Any]] = []
        self.alert_docs: list[dict[str, Any]] = []
        self.anomalies: dict[tuple[str, str, str, float], list[dict[str, Any]]] = {}
        self.generation = 0
        self.error = ""
        self.wanted = asyncio.Event()
        self.caught_up = asyncio.Event()
        self._store: tuple[int, KpiStore] | None = None
        self._html: dict[tuple[str, ...], tuple[tuple[int, str], str]] = {}
        self._charts: dict[tuple[str, Any], bytes | None] = {}
        self._lock = asyncio.Lock()
        self._client: Any = None

    # -- reading ------------------------------------------------------------------------

    def add(self, topic: str, value: bytes | None) -> None:
        """One message of one of the topics."""
        role = self.topics.get(topic)
        try:
            docs = docs_in(value or b"null") if role == "kpis" else [orjson.loads(value or b"")]
        except ValueError:   # not Pulse's: the agents log it, the page skips it
            return
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            if role == "kpis":
                if doc.get("kind") == "window_closed":
                    self.generation += 1
                elif "series" in doc and not is_running(doc):
                    self.kpi_docs.append(doc)
            elif role == "alerts" and doc.get("id") is not None:
                self.alert_docs.append(doc)
                self.generation += 1
            elif role == "anomalies" and doc.get("history"):
                self.anomalies.setdefault(history_key(doc), []).append(doc)
                self.generation += 1

    async def follow(self) -> None:
        """Read the topics from the start, then keep up, once a page has been asked for."""
        await self.wanted.wait()
        while True:
            consumer = AIOKafkaConsumer(*self.topics, bootstrap_servers=self.bootstrap,
                                        group_id=None, enable_auto_commit=False,
                                        auto_offset_reset="earliest")
            try:
                await consumer.start()
                self.error = ""
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    for tp, records in batch.items():
                        for rec in records:
                            self.add(tp.topic, rec.value)
                    if not self.caught_up.is_set() and await _at_end(consumer, bool(batch)):
                        self.caught_up.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:   # the broker went away: say so on the page, try again
                self.error = f"cannot read the topics ({type(e).__name__}); retrying"
                log.warning("pages: %s", self.error)
            finally:
                await consumer.stop()
            await asyncio.sleep(RETRY_S)

    # -- what the tabs are drawn from ----------------------------------------------------

    async def store(self) -> KpiStore:
        """The KPI store of the documents read so far (rebuilt when the generation moved)."""
        if not self.wanted.is_set():
            self.wanted.set()
            try:
                await asyncio.wait_for(self.caught_up.wait(), FIRST_WAIT_S)
            except TimeoutError:
                pass
        async with self._lock:
            gen = self.generation
            if self._store is None or self._store[0] != gen:
                docs, alerts = list(self.kpi_docs), list(self.alert_docs)
                built = await asyncio.to_thread(KpiStore.from_docs, docs, alerts)
                self._store = (gen, built)
            return self._store[1]

    def info(self, store: KpiStore, refresh: bool = True) -> PageInfo:
        note = self.error or ("" if self.caught_up.is_set() else
                              "Still reading the worker's topics: the numbers are not all in yet.")
        if not note and store.now is None:
            note = "No KPI window has closed yet: the tabs fill in as windows close."
        return PageInfo(as_of=moment_text(store.now) if store.now is not None else "",
                        refresh_s=REFRESH_S if refresh else None, note=note,
                        open_alerts=len(store.open_alerts()))

    async def html(self, key: tuple[str, ...], render: Callable[[KpiStore, PageInfo], str]
                   ) -> str:
        """A tab's HTML, kept until the generation moves; drawn off the event loop."""
        store = await self.store()
        info = self.info(store)
        version = (self.generation, info.note)
        cached = self._html.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            text = await asyncio.to_thread(render, store, info)
        except Exception:   # a bug must not take the worker's web server down: say so
            log.exception("pages: drawing %s failed", key[0])
            return page(key[0], '<p class="note">This tab could not be drawn; the worker log '
                        "says why.</p>", info)
        self._html[key] = (version, text)
        return text

    def chart(self, snapshot: dict) -> bytes | None:
        """An alert version's chart, drawn once."""
        key = (str(snapshot.get("id")), snapshot.get("version"))
        if key not in self._charts:
            self._charts[key] = alert_png(snapshot)
        return self._charts[key]

    async def answer(self, question: str) -> tuple[str, str, KpiStore]:
        """(answer text, who planned it, the store) for ``question``; the model plans it
        when ``ANTHROPIC_API_KEY`` is set, as in Slack."""
        store = await self.store()
        if self._client is None and settings.anthropic_api_key:
            from alerting.explain import make_explainer
            self._client = make_explainer(settings, timeout=20.0).client
        a = await answer_async(question, store, client=self._client, model=settings.llm_model)
        return a.text, a.source, store


async def _at_end(consumer: AIOKafkaConsumer, got: bool) -> bool:
    """Whether every assigned partition has been read to its high watermark (or, when the
    broker gives none, nothing came in the last poll)."""
    parts = consumer.assignment()
    if not parts:
        return False
    for tp in parts:
        high = consumer.highwater(tp)
        if high is None:
            return not got
        if await consumer.position(tp) < high:
            return False
    return True


state = PageState(settings.kafka_bootstrap, settings.topic("kpis"), settings.topic("alerts"),
                  settings.topic("anomalies"))


@app.task
async def follow_topics() -> None:
    """Follows ``kpis``, ``alerts`` and ``anomalies`` for the page, from its first request."""
    await state.follow()


def _respond(view: web.View, text: str, status: int = 200) -> web.Response:
    return view.html(text, status=status, headers=dict(SECURITY_HEADERS))


@app.page("/")
class Overview(web.View):
    """Every KPI now, against its target, with its last 7 days."""

    async def get(self, request: web.Request) -> web.Response:
        return _respond(self, await state.html(("overview",), overview_page))


@app.page("/funnel")
class Funnel(web.View):
    """Signup to first scan to paid, by segment and channel."""

    async def get(self, request: web.Request) -> web.Response:
        return _respond(self, await state.html(("funnel",), funnel_page))


@app.page("/cohorts")
class Cohorts(web.View):
    """The retention heatmap of the weekly signup cohorts (one slice)."""

    async def get(self, request: web.Request) -> web.Response:
        store = await state.store()
        segment = str(request.query.get("segment", "all"))
        channel = str(request.query.get("channel", "all"))
        if segment not in store.segments() or channel != "all":
            segment = "all"
        if channel not in store.channels() or segment != "all":
            channel = "all"
        return _respond(self, await state.html(
            ("cohorts", segment, channel),
            lambda s, info: cohorts_page(s, info, segment, channel)))


@app.page("/alerts")
class Alerts(web.View):
    """Open and recent alerts, their evidence and their chart."""

    async def get(self, request: web.Request) -> web.Response:
        return _respond(self, await state.html(
            ("alerts",), lambda s, info: alerts_page(s, info, state.anomalies, state.chart)))


@app.page("/ask")
class Ask(web.View):
    """A question about the KPIs (``q``), answered by the assistant."""

    async def get(self, request: web.Request) -> web.Response:
        return await self._ask(clean_question(request.query.get("q", "")))

    async def post(self, request: web.Request) -> web.Response:
        form = await request.post()
        return await self._ask(clean_question(form.get("q", "")))

    async def _ask(self, question: str) -> web.Response:
        if not question:
            store = await state.store()
            return _respond(self, ask_page("", None, state.info(store, refresh=False)))
        text, source, store = await state.answer(question)
        return _respond(self, ask_page(question, text, state.info(store, refresh=False), source))
