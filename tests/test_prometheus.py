"""A real Prometheus (the Debian package's server) scrapes a running worker on the embedded broker:
its HTTP API returns the KPI series with the value the worker published to the ``kpis`` topic."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kpis.messages import is_running
from stream.broker import free_port
from stream.worker_process import die_with_parent
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic
from tests.test_deploy import _require, metric_value, publish_day, wait_windows

SCANS = 'pulse_kpi{kpi="scans",segment="all",channel="all"}'


class PrometheusServer:
    """``prometheus`` on a free loopback port, scraping ``targets`` every second."""

    def __init__(self, targets: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({   # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "pulse",
                                "static_configs": [{"targets": targets}]}],
        }))
        self.log_path = workdir / "prometheus.log"
        self.cmd = [_require("prometheus"), f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir,
                                            preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"prometheus exited\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready\n{self.log_tail()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def prometheus(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusServer]:
    server = PrometheusServer([f"127.0.0.1:{pipeline.worker.metrics_port}"],
                              tmp_path_factory.mktemp("prometheus"))
    try:
        yield server.start()
    finally:
        server.stop()
        assert server.process is None


def _last_scans(pipeline: Pipeline, windows: int) -> tuple[float, float]:
    """(window end, value) of the last closed window's overall scans, from the kpis topic
    (final values only: an open window's running values, with ``as_of``, are not gauges)."""
    def final_scans(m: list[dict]) -> list[dict]:
        return [d for d in m if d.get("kpi") == "scans" and not is_running(d)]

    msgs = asyncio.run(read_topic(
        pipeline.bootstrap, pipeline.topic("kpis"), timeout=60,
        until=lambda m: len(final_scans(m)) >= windows))
    scans = final_scans(msgs)
    assert len(scans) == windows
    last = max(scans, key=lambda d: d["window_end_ts"])
    [value] = [s["value"] for s in last["series"] if s["segment"] == s["channel"] == "all"]
    return last["window_end_ts"], float(value)


def test_prometheus_scrapes_the_kpis_the_worker_published(
        pipeline: Pipeline, prometheus: PrometheusServer) -> None:
    publish_day(pipeline, seed=13)
    text = wait_windows(pipeline, 24)
    window_end, want = _last_scans(pipeline, 24)
    assert want > 0
    assert metric_value(text, 'pulse_kpi{channel="all",kpi="scans",segment="all"}') == want

    # Prometheus scrapes every second: bounded wait for a sample taken after the last window
    deadline = time.monotonic() + 30
    while True:
        result = prometheus.query(SCANS)
        if result and float(result[0]["value"][1]) == want:
            break
        assert time.monotonic() < deadline, \
            f"Prometheus has {result}, the worker published {want}\n{prometheus.log_tail()}"
        time.sleep(0.5)
    [series] = result
    assert series["metric"] == {"__name__": "pulse_kpi", "kpi": "scans", "segment": "all",
                                "channel": "all", "job": "pulse",
                                "instance": f"127.0.0.1:{pipeline.worker.metrics_port}"}

    # the target is healthy, and the events counted reached Prometheus too
    [up] = prometheus.query('up{job="pulse"}')
    assert up["value"][1] == "1"
    [events] = prometheus.query('sum(pulse_events_total{kind="scan"})')
    assert float(events["value"][1]) == metric_value(text, 'pulse_events_total{kind="scan"}')
    [watermark] = prometheus.query("pulse_event_time_watermark_seconds")
    assert float(watermark["value"][1]) == window_end
