"""The one settings object of Pulse.

Every setting is declared once, here, with its type, default, environment variable and a line of
doc (the way ``faust.types.settings`` does it). Entry points call :func:`Settings.from_env` once and
pass plain values down; nothing else reads the environment. Defaults run with nothing set.

It lives in :mod:`core` and imports only the standard library, so the simulator, detectors and
alerting use it without pulling in Kafka (``stream.settings`` re-exports it for the stream code).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Settings", "SettingsError", "describe_settings"]


class SettingsError(ValueError):
    """A setting from the environment has a value Pulse cannot use."""


def _setting(default: Any, env: str, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Pulse configuration; ``Settings.from_env()`` reads the ``PULSE_*`` variables."""

    kafka_bootstrap: str = _setting(
        "", "PULSE_KAFKA_BOOTSTRAP",
        "host:port of a Kafka cluster; empty starts an embedded Tansu broker on loopback.")
    topic_prefix: str = _setting(
        "", "PULSE_TOPIC_PREFIX",
        "Prefix of every topic name, so replays and tests stay out of production topics.")
    app_id: str = _setting("pulse", "PULSE_APP_ID", "Faust app id (consumer group and tables).")
    events_partitions: int = _setting(
        4, "PULSE_EVENTS_PARTITIONS", "Partitions of the events topic when Pulse creates it.")
    window_seconds: int = _setting(
        3600, "PULSE_WINDOW_SECONDS", "Size of the KPI windows in event-time seconds.")
    lateness_seconds: int = _setting(
        600, "PULSE_LATENESS_SECONDS",
        "How long after its end (event time) a window waits for late events before it closes.")
    early_seconds: int = _setting(
        300, "PULSE_EARLY_SECONDS",
        "Every this many seconds of event time an open window's running counts are judged, so "
        "a clear incident alerts before the window closes (0: only at window close).")
    early_max_age_seconds: int = _setting(
        10800, "PULSE_EARLY_MAX_AGE_SECONDS",
        "Early looks are taken only at ticks at most this many seconds behind the wall clock: "
        "a backlog's windows close seconds later anyway (0: at any age, as replays do, to show "
        "when an early alert would have come).")
    session_timeout_s: int = _setting(
        10, "PULSE_SESSION_TIMEOUT",
        "Consumer-group session timeout in seconds: how soon a dead worker's partitions move "
        "(Kafka's minimum is 6; workers on the embedded broker use 5).")
    fetch_max_wait_ms: int = _setting(
        1500, "PULSE_FETCH_MAX_WAIT_MS",
        "How long (ms) the broker may hold a fetch that finds nothing new before it answers: "
        "the most a message waits for a stage to see it when a topic is quiet (1-60000; "
        "workers on the embedded broker use 100, Faust's own is 1500).")
    metrics_port: int = _setting(
        9464, "PULSE_METRICS_PORT", "Port of the Prometheus /metrics endpoint (0: none).")
    web_port: int = _setting(
        6066, "PULSE_WEB_PORT", "Port of Faust's own web server in the worker.")
    broker_max_mb: int = _setting(
        1024, "PULSE_BROKER_MAX_MB",
        "Memory (MB) the embedded broker may hold; past it, it is started again, empty (it has "
        "no retention; workers take it as a broker reset). 0: no limit.")
    broker_log: str = _setting(
        "warn", "PULSE_BROKER_LOG", "Log level (RUST_LOG) of the embedded broker's own log.")
    web_bind: str = _setting(
        "127.0.0.1", "PULSE_WEB_BIND",
        "Address the worker's web server (its page, no login) listens on: loopback unless "
        "set, e.g. 0.0.0.0 for every interface.")
    metrics_bind: str = _setting(
        "127.0.0.1", "PULSE_METRICS_BIND",
        "Address the Prometheus /metrics endpoint listens on: loopback unless set, e.g. 0.0.0.0 "
        "for a Prometheus on another host or container.")
    feedback_bind: str = _setting(
        "127.0.0.1", "PULSE_FEEDBACK_BIND",
        "Address the Slack interactivity endpoint listens on: loopback unless set (e.g. 0.0.0.0, "
        "or behind a TLS proxy on the same host).")
    data_dir: str = _setting(
        ".pulse", "PULSE_DATA_DIR", "Where workers keep local state (Faust tables, checkpoints).")
    log_level: str = _setting("info", "PULSE_LOG_LEVEL", "Worker log level.")
    alerts_file: str = _setting(
        "", "PULSE_ALERTS_FILE", "alerts.jsonl the worker appends to (empty: in the data dir).")
    digest_file: str = _setting(
        "", "PULSE_DIGEST_FILE",
        "digest.jsonl the worker appends each day's digest to; its charts go beside it "
        "(empty: in the data dir).")
    processing_guarantee: str = _setting(
        "at_least_once", "PULSE_PROCESSING_GUARANTEE",
        "Faust processing guarantee: at_least_once, or exactly_once (Kafka transactions; real "
        "Kafka only, the embedded broker has no transactions).")
    max_ahead_seconds: int = _setting(
        86400, "PULSE_MAX_AHEAD_SECONDS",
        "How far ahead of the wall clock an event or watermark may be before it is "
        "dead-lettered as future (0: no bound, for simulated time that runs ahead of the clock, "
        "as pulse demo's live phase does).")
    notify_after: int = _setting(
        0, "PULSE_NOTIFY_AFTER",
        "Event time (epoch s) before which alerts are recorded but not posted to Slack nor "
        "explained by the model (the demo's history).")
    feedback_port: int = _setting(
        0, "PULSE_FEEDBACK_PORT",
        "Port of the Slack interactivity endpoint POST /slack/actions (0: off).")
    slack_signing_secret: str = _setting(
        "", "SLACK_SIGNING_SECRET", "Verifies button clicks sent by Slack.", secret=True)
    detectors_config: str = _setting(
        "", "PULSE_DETECTORS_CONFIG", "Path of a detector configuration file (empty: defaults).")
    calendar_file: str = _setting(
        "", "PULSE_CALENDAR",
        "Path of a calendar of known events (TOML, docs/calendar.md; empty: none), re-read when "
        "it changes.")
    slack_token: str = _setting(
        "", "SLACK_BOT_TOKEN", "Slack bot token; with a channel, alerts go to Slack.", secret=True)
    slack_channel: str = _setting("", "PULSE_SLACK_CHANNEL", "Slack channel id for alerts.")
    slack_app_token: str = _setting(
        "", "SLACK_APP_TOKEN",
        "Slack app-level token (xapp-, scope connections:write); when set, the worker takes "
        "button clicks, /pulse and @-mentions through Socket Mode (docs/slack-app.md).",
        secret=True)
    slack_api_url: str = _setting(
        "https://slack.com/api/", "PULSE_SLACK_API_URL", "Base URL of the Slack Web API.")
    grafana_url: str = _setting(
        "http://localhost:3000", "PULSE_GRAFANA_URL", "Grafana base URL linked from alerts.")
    anthropic_api_key: str = _setting(
        "", "ANTHROPIC_API_KEY", "Anthropic API key; when set, Claude words explanations.",
        secret=True)
    anthropic_base_url: str = _setting(
        "", "ANTHROPIC_BASE_URL", "Anthropic API base URL (empty: the SDK's default).")
    llm_model: str = _setting(
        "claude-sonnet-5-5", "PULSE_LLM_MODEL", "Claude model that writes explanations.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name in env and env[name] != "":
                values[f.name] = _parse(f, env[name])
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def early_from(self, now: float) -> float:
        """The event time of the oldest tick an early look is taken at, ``now`` being the wall
        clock (``PULSE_EARLY_MAX_AGE_SECONDS``; 0.0, the epoch, when any age will do)."""
        age = self.early_max_age_seconds
        return now - age if age > 0 else 0.0

    def check(self) -> None:
        """Refuse settings that cannot work, with what to do instead (SettingsError)."""
        w, late, early = self.window_seconds, self.lateness_seconds, self.early_seconds
        if w <= 0 or w > 86400 or 86400 % w:
            raise SettingsError(
                f"PULSE_WINDOW_SECONDS={w} must be a positive number of seconds that divides a "
                "day (86400), so windows line up with days: e.g. 3600 (the default), 900, 60.")
        if late >= w:
            raise SettingsError(f"PULSE_LATENESS_SECONDS={late} must be below the window "
                                f"(PULSE_WINDOW_SECONDS={w}): e.g. 600 for hourly windows.")
        if early and (early >= w or w % early):
            raise SettingsError(
                f"PULSE_EARLY_SECONDS={early} must divide the window (PULSE_WINDOW_SECONDS={w}) "
                "and be shorter than it: e.g. 300 for hourly windows, or 0 for no early looks.")
        for env, port in (("PULSE_METRICS_PORT", self.metrics_port),
                          ("PULSE_WEB_PORT", self.web_port),
                          ("PULSE_FEEDBACK_PORT", self.feedback_port)):
            if port > 65535:
                raise SettingsError(f"{env}={port} is not a TCP port: give one of 1-65535, or 0 "
                                    "where the setting allows none.")
        if self.web_port < 1:
            raise SettingsError("PULSE_WEB_PORT=0: the worker's web server needs a port (1-65535, "
                                "default 6066).")
        if self.events_partitions < 1:
            raise SettingsError("PULSE_EVENTS_PARTITIONS must be at least 1 (the default is 4).")
        if self.session_timeout_s < 1:
            raise SettingsError("PULSE_SESSION_TIMEOUT must be at least 1 second (default 10).")
        if not 1 <= self.fetch_max_wait_ms <= 60000:
            raise SettingsError(f"PULSE_FETCH_MAX_WAIT_MS={self.fetch_max_wait_ms} must be 1-60000 "
                                "ms (default 1500; 100 on the embedded broker).")

    def topic(self, name: str) -> str:
        """Full name of one of Pulse's topics (``events``, ``kpis``, ...)."""
        return f"{self.topic_prefix}{name}"

    def __repr__(self) -> str:  # secrets never reach a log line through repr
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    env = f.metadata["env"]
    if f.type in ("int", int):
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{env}={raw!r} is not a whole number; unset it or give one "
                                f"(default {f.default}).") from None
        if value < 0:
            raise SettingsError(f"{env}={raw!r} must not be negative.")
        return value
    return raw


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, doc) of every setting, for ``pulse --help``."""
    return [(f.metadata["env"], str(f.default), f.metadata["doc"])
            for f in dataclasses.fields(Settings)]
