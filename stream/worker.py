"""Run one Pulse stream worker: the Faust app with every agent, plus the /metrics endpoint.

``python -m stream.worker`` is what ``pulse worker`` and ``pulse demo`` start in a child process;
it needs ``PULSE_KAFKA_BOOTSTRAP`` (the CLI sets it to the embedded broker when none is given).
"""

from __future__ import annotations

import sys

from prometheus_client import start_http_server

from stream.app import app, settings

__all__ = ["main", "AGENT_MODULES"]

AGENT_MODULES = ("stream.agents.kpis", "stream.agents.detect", "stream.agents.alerts")


def main(argv: list[str] | None = None) -> None:
    for name in AGENT_MODULES:
        __import__(name)
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, addr="0.0.0.0")
        except OSError as e:
            sys.exit(f"pulse worker: cannot serve /metrics on port {settings.metrics_port} ({e}); "
                     "set PULSE_METRICS_PORT to a free port, or 0 to turn it off.")
    level = {"debug": "debug", "info": "info", "warning": "warn", "warn": "warn",
             "error": "error"}.get(settings.log_level.lower(), "info")
    sys.argv = ["pulse-worker", "worker", "--loglevel", level,
                "--web-port", str(settings.web_port), *(argv or [])]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
