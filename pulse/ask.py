"""``pulse ask`` and ``pulse alerts``: the assistant on the terminal.

The KPI windows and alerts come from files (``--kpis``, ``--alerts``; by default the
``alerts.jsonl`` beside ``--kpis``) or from the ``kpis`` and ``alerts`` topics of a running
pipeline (``--broker``, or ``PULSE_KAFKA_BOOTSTRAP``); :mod:`assistant` answers. Whatever goes
wrong reading them is one line on stderr, naming the problem and the fix, and exit status 2.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from assistant import KpiStore, StoreError, answer_async
from assistant.alerts import alerts_lines, open_alerts
from assistant.store import alerts_beside
from core.settings import Settings

__all__ = ["run_alerts", "run_ask"]

_NO_SOURCE = ("give --kpis FILE with a kpis.jsonl (`pulse demo --out DIR` writes one), or "
              "--broker HOST:PORT (or PULSE_KAFKA_BOOTSTRAP) of a running pipeline")


def _fail(command: str, message: str) -> int:
    print(f"pulse {command}: {message}", file=sys.stderr)
    return 2


def _read_topics(bootstrap: str, settings: Settings, kpis: bool,
                 instead: str = "--kpis FILE") -> tuple[list, list]:
    """(kpis documents, alert snapshots) of the pipeline at ``bootstrap``."""
    from stream.kpi_state import docs_from_topic
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)   # the failure is reported below

    async def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        docs = await docs_from_topic(bootstrap, settings.topic("kpis")) if kpis else []
        alerts = await docs_from_topic(bootstrap, settings.topic("alerts"))
        return docs, alerts

    try:
        return asyncio.run(read())
    except Exception as e:   # aiokafka's errors, DNS, refused connections: one line
        raise StoreError(f"cannot read the pipeline's topics at {bootstrap} "
                         f"({type(e).__name__}); start it (`pulse demo`) or check --broker, "
                         f"or give {instead}") from None


def _store(kpis: str | None, alerts: str | None, broker: str, settings: Settings) -> KpiStore:
    if kpis:
        return KpiStore.from_files(kpis, alerts or alerts_beside(kpis))
    bootstrap = broker or settings.kafka_bootstrap
    if not bootstrap:
        raise StoreError(_NO_SOURCE)
    docs, alert_docs = _read_topics(bootstrap, settings, kpis=True)
    if alerts:
        alert_docs = KpiStore.read_alerts(alerts)
    store = KpiStore.from_docs(docs, alert_docs)
    if not store.series:
        raise StoreError(f"the topic {settings.topic('kpis')} at {bootstrap} has no KPI window "
                         "yet; let the pipeline run for a window, or give --kpis FILE")
    return store


def run_ask(question: str, kpis: str | None, alerts: str | None, broker: str,
            settings: Settings) -> int:
    """Print the answer to ``question``; the model plans it when a key is set."""
    try:
        store = _store(kpis, alerts, broker, settings)
    except StoreError as e:
        return _fail("ask", str(e))

    async def ask() -> str:
        client = None
        if settings.anthropic_api_key:
            from alerting.explain import make_explainer
            client = make_explainer(settings, timeout=20.0).client
        try:
            return (await answer_async(question, store, client, settings.llm_model)).text
        finally:
            if client is not None:
                await client.close()

    print(asyncio.run(ask()))
    return 0


def run_alerts(alerts: str | None, broker: str, settings: Settings) -> int:
    """Print the open alerts: age, severity, KPI, scope, Grafana link."""
    try:
        if alerts:
            store = KpiStore.from_rows([], KpiStore.read_alerts(alerts))
        else:
            bootstrap = broker or settings.kafka_bootstrap
            if not bootstrap:
                raise StoreError("give --alerts FILE with an alerts.jsonl (`pulse demo --out "
                                 "DIR` writes one), or --broker HOST:PORT (or "
                                 "PULSE_KAFKA_BOOTSTRAP) of a running pipeline")
            store = KpiStore.from_rows(
                [], _read_topics(bootstrap, settings, kpis=False, instead="--alerts FILE")[1])
    except StoreError as e:
        return _fail("alerts", str(e))
    from alerting.slack import grafana_link
    result = open_alerts(store, link=lambda a: grafana_link(settings.grafana_url, a))
    print("\n".join(alerts_lines(result)))
    return 0
