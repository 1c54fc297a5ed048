"""A newcomer's mistakes get one line that says what is wrong and what to do, never a
traceback; and ``pulse worker`` starts on a fresh checkout (issue 18)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PULSE = [sys.executable, "-m", "pulse"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PULSE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


MISTAKES = [
    (["demo", "--duration", "5"], {"PULSE_WINDOW_SECONDS": "0"}, "PULSE_WINDOW_SECONDS"),
    (["demo", "--duration", "5"], {"PULSE_WINDOW_SECONDS": "7"}, "divides a day"),
    (["demo", "--duration", "5"], {"PULSE_LATENESS_SECONDS": "3600"}, "below the window"),
    (["demo", "--duration", "5"], {"PULSE_EARLY_SECONDS": "7"}, "PULSE_EARLY_SECONDS"),
    (["demo", "--duration", "5"], {"PULSE_METRICS_PORT": "70000"}, "not a TCP port"),
    (["demo", "--duration", "5"], {"PULSE_WEB_PORT": "0"}, "PULSE_WEB_PORT"),
    (["demo", "--scenario", "payment-outtage"], {}, "did you mean 'payment-outage'"),
    (["simulate", "--scenario", "churn"], {}, "unknown scenario"),
    (["silence", "add", "--kpi", "churnrate"], {}, "did you mean 'churn_rate'"),
    (["silence", "add", "--kpi", "churn_rate", "--duration", "2"], {}, "give a number and a unit"),
    (["silence", "add", "--segment", "new_grads"], {}, "did you mean 'new_grad'"),
    (["evaluate", "--scenario", "payment"], {}, "unknown scenario"),
]


@pytest.mark.parametrize("args,env,says", MISTAKES,
                         ids=[" ".join(a) + " " + " ".join(f"{k}={v}" for k, v in e.items())
                              for a, e, _ in MISTAKES])
def test_a_mistake_gets_one_line_and_a_non_zero_exit(args, env, says, tmp_path):
    started = time.monotonic()
    r = _run(args, {"PULSE_DATA_DIR": str(tmp_path / "data"), **env}, cwd=tmp_path)
    assert r.returncode != 0, r
    assert "Traceback" not in r.stderr + r.stdout
    assert says in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("usage:")
             and not ln.startswith(" ")]
    assert len(lines) == 1, r.stderr
    assert time.monotonic() - started < 60   # refused before anything starts


def test_pulse_worker_starts_on_a_fresh_checkout(tmp_path):
    """No .pulse/ yet: the worker makes its data directory and gets ready."""
    env = {**os.environ, "PULSE_METRICS_PORT": "0", "PULSE_WEB_PORT": str(free_port())}
    proc = subprocess.Popen([*PULSE, "worker"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if "Worker]: Ready" in line:
                break
        assert any("Worker]: Ready" in ln for ln in seen), "".join(seen[-30:])
        assert (tmp_path / ".pulse" / "faust").is_dir()
        assert not any("Traceback" in ln for ln in seen)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_second_demo_in_the_same_out_dir_is_refused_or_replaces_it_with_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("events.jsonl", "kpis.jsonl", "alerts.jsonl", "digest-2026-01-01.png"):
        (out / name).write_text("old run\n")
    r = _run(["demo", "--duration", "5", "--out", str(out)], cwd=tmp_path)
    assert r.returncode == 2 and "not empty" in r.stderr and "--force" in r.stderr
    assert "Traceback" not in r.stderr
    assert (out / "kpis.jsonl").read_text() == "old run\n"   # nothing touched
    r = _run(["demo", "--duration", "25", "--history-days", "1", "--out", str(out), "--force"],
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out / "digest-2026-01-01.png").exists()
    for name in ("events.jsonl", "kpis.jsonl"):
        assert "old run" not in (out / name).read_text()
