"""PULSE_FETCH_MAX_WAIT_MS reaches the fetcher of the Kafka consumer Faust creates, and workers on
the embedded broker get the short wait (stream/broker.py EMBEDDED_FETCH_MAX_WAIT_MS)."""

from __future__ import annotations

import asyncio

import pytest

from core.settings import Settings, SettingsError
from stream.app import create_app
from stream.broker import (
    EMBEDDED_FETCH_MAX_WAIT_MS,
    EMBEDDED_SESSION_TIMEOUT_S,
    EmbeddedBroker,
    embedded_worker_env,
)


def test_default_and_bounds() -> None:
    assert Settings.from_env({}).fetch_max_wait_ms == 1500
    assert Settings.from_env({"PULSE_FETCH_MAX_WAIT_MS": "100"}).fetch_max_wait_ms == 100
    for bad in ("0", "60001"):
        with pytest.raises(SettingsError, match="PULSE_FETCH_MAX_WAIT_MS"):
            Settings.from_env({"PULSE_FETCH_MAX_WAIT_MS": bad})


def test_embedded_worker_env_keeps_what_is_given() -> None:
    assert embedded_worker_env({}) == {
        "PULSE_SESSION_TIMEOUT": str(EMBEDDED_SESSION_TIMEOUT_S),
        "PULSE_FETCH_MAX_WAIT_MS": str(EMBEDDED_FETCH_MAX_WAIT_MS)}
    given = {"PULSE_FETCH_MAX_WAIT_MS": "700"}
    assert embedded_worker_env(given)["PULSE_FETCH_MAX_WAIT_MS"] == "700"


def test_the_started_consumer_fetches_with_the_setting(broker: EmbeddedBroker) -> None:
    """On a real broker: the aiokafka consumer Faust builds starts its fetcher with the wait of
    the app it belongs to, not Faust's written-in 1500 ms, and each app keeps its own."""
    async def fetch_waits() -> tuple[int, int]:
        apps = [create_app(Settings(kafka_bootstrap=broker.bootstrap, fetch_max_wait_ms=ms,
                                    app_id=f"fetch-wait-{ms}")) for ms in (100, 1500)]
        waits = []
        for app in apps:   # both apps made first: each consumer takes its own app's wait
            consumer = app.consumer._thread._create_worker_consumer(app.transport)
            await consumer.start()
            try:
                waits.append(consumer._fetcher._fetch_max_wait_ms)
            finally:
                await consumer.stop()
        return waits[0], waits[1]

    assert asyncio.run(fetch_waits()) == (100, 1500)
