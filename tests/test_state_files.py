"""State files (stream/checkpoint.py): no pickle where state is read back.

Every agent's state round-trips through the JSON format and carries on exactly as the original;
a crafted pickle, an altered, truncated, foreign or mismatched file is refused with an ERROR
naming it and a metric, runs nothing, and the worker rebuilds that state from Kafka, counting
the events exactly."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from alerting import AlertManager
from alerting.service import AlertService
from kpis.merger import KpiMerger
from kpis.messages import is_running
from kpis.windows import PartitionWindows
from simulator import Simulation
from stream.broker import EmbeddedBroker
from stream.checkpoint import ALLOWED, MOVED, Checkpoint, Resumable, dumps_state, loads_state
from stream.partitions import PartitionState
from stream.settings import Settings
from tests.conftest import Pipeline
from tests.fakes.anomalies import anomaly, closed
from tests.kafka_helpers import read_topic
from tests.test_digest import fed_builder
from tests.test_restart import START, _publish, _publish_final

DAY = 86400.0


class _Crafted:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def crafted_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps((1, _Crafted(marker))))


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("pulse_state_files_refused_total", {"reason": reason}) or 0.0


def loaded(ck: Checkpoint) -> Any:
    saved = ck.load()
    assert saved is not None
    return saved


def same(a: Any, b: Any) -> bool:
    """Equal states: same classes, attributes and values (sets in any order)."""
    def norm(x: Any) -> Any:
        body = orjson.loads(dumps_state(x))

        def walk(v: Any) -> Any:
            if isinstance(v, list):
                return [walk(i) for i in v]
            if isinstance(v, dict):
                if "__set__" in v:
                    return sorted((walk(i) for i in v["__set__"]), key=repr)
                return {k: walk(i) for k, i in v.items()}
            return v
        return walk(body)
    return bool(norm(a) == norm(b))


def _windows(days: float) -> tuple[PartitionWindows, Simulation]:
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    pw = PartitionWindows(window_s=3600, lateness_s=600, peek_s=300)
    for ev in sim.advance(START + days * DAY):
        pw.add(ev)
    pw.advance(START + days * DAY - 3 * 3600, close_empty=True)
    pw.take_peeks()
    return pw, sim


def test_kpi_windows_round_trip_and_carry_on_identically(tmp_path: Path) -> None:
    pw, sim = _windows(3)
    ck = Checkpoint(tmp_path / "p0.ckpt", app_id="pulse", topics=("events",), partition=0)
    ck.save(PartitionState(pw, 1234))
    back = ck.load()
    assert isinstance(back, PartitionState) and back.next_offset == 1234
    # the funnel's and cohorts' per-window lists are the users' records themselves: still shared
    funnel = back.windows._funnel
    assert funnel is not None
    assert all(rec is funnel._users[rec[-1]] for recs in funnel._windows.values() for rec in recs)
    more = sim.advance(START + 5 * DAY)
    for ev in more:
        assert pw.add(ev) == back.windows.add(ev)
    end = START + 5 * DAY
    assert pw.advance(end, close_empty=True) == back.windows.advance(end, close_empty=True)
    assert same(pw, back.windows)


def test_merger_alerts_and_digest_round_trip(tmp_path: Path) -> None:
    merger = KpiMerger(3600, partitions=1)
    pw, _ = _windows(2)
    windows = pw.advance(START + 2 * DAY + 7200, close_empty=True)
    assert merger.add(0, pw.closed_before, windows, [])
    ck = Checkpoint(tmp_path / "m.ckpt", app_id="a", topics=("kpi-partials",))
    ck.save(Resumable(merger, {("kpi-partials", 0): 9}))
    back = loaded(ck)
    assert same(back.state, merger)
    assert back.offsets == {("kpi-partials", 0): 9}

    async def alerts() -> tuple[AlertManager, AlertManager]:
        svc = AlertService(Settings(data_dir=str(tmp_path)), console=None)
        await svc.handle(anomaly("payments", 0, 40.0, 120.0))
        await svc.close()
        ck.save(Resumable(svc.manager))
        return svc.manager, loaded(ck).state

    manager, again = asyncio.run(alerts())
    assert type(again) is AlertManager and same(again, manager)
    builder, _ = fed_builder()
    ck.save(Resumable(builder))
    copy = loaded(ck).state
    end = {"kind": "window_closed", "window_end_ts": max(builder.days) * DAY + 2 * DAY}
    assert copy.add_message(end) == builder.add_message(end)
    assert closed(0)["kind"] == "window_closed"


def test_states_saved_under_the_old_class_names_load_as_the_new_classes() -> None:
    """kpis/engine.py held PartitionWindows, KpiMerger and their messages until session 12; a
    state file written then names them there (stream.checkpoint.MOVED)."""
    pw, _ = _windows(2)
    merger = KpiMerger(3600, partitions=1)
    merger.add(0, pw.closed_before, pw.advance(START + 2 * DAY + 7200, close_empty=True), [])
    body = dumps_state([PartitionState(pw, 7), merger, pw.take_peeks()])
    old = body
    for was, now in MOVED.items():
        assert now.encode() in body or now.endswith(("Peek", "_Window")), now
        old = old.replace(f'"{now}"'.encode(), f'"{was}"'.encode())
    assert b"kpis.engine.PartitionWindows" in old and b"kpis.windows" not in old
    back = loads_state(old)
    assert type(back[0].windows) is PartitionWindows and type(back[1]) is KpiMerger
    assert same(back[0], PartitionState(pw, 7)) and same(back[1], merger)
    assert not set(MOVED.values()) - ALLOWED


def test_the_file_has_a_checksummed_header_with_its_log(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path / "x.ckpt", app_id="pulse", topics=("events",), partition=3)
    ck.save(Resumable({"a": 1}))
    line, _, body = (tmp_path / "x.ckpt").read_bytes().partition(b"\n")
    header = orjson.loads(line)
    assert header["format"] == "pulse-state" and header["version"] == 1
    assert header["identity"] == {"app": "pulse", "topics": ["events"], "partition": 3}
    assert header["bytes"] == len(body) and len(header["sha256"]) == 64
    assert not list(tmp_path.glob("*.tmp"))


def test_writes_are_fsynced_then_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(a: Any, b: Any) -> None:
        calls.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    Checkpoint(tmp_path / "y.ckpt").save(Resumable([1]))
    assert calls == ["fsync", "rename", "fsync"]   # the file, the rename, its folder


def _altered(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 1
    path.write_bytes(bytes(data))


def _disallowed(path: Path) -> None:
    import hashlib
    body = b'{"__obj__": "os.system", "state": {}}'
    head = orjson.dumps({"format": "pulse-state", "version": 1,
                         "identity": {"app": "pulse", "topics": ["t"], "partition": None},
                         "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    path.write_bytes(head + b"\n" + body)


@pytest.mark.parametrize("spoil,reason", [
    (lambda p: crafted_pickle(p, p.parent / "marker"), "foreign"),
    (_altered, "corrupt"),
    (lambda p: p.write_bytes(p.read_bytes()[:-5]), "corrupt"),
    (lambda p: p.write_bytes(b""), "foreign"),
    (lambda p: p.write_bytes(p.read_bytes().replace(b'"version":1', b'"version":7')),
     "unknown_version"),
    (lambda p: p.write_bytes(p.read_bytes().replace(b'"app":"pulse"', b'"app":"other"')),
     "mismatched"),
    (_disallowed, "disallowed_class"),
], ids=["pickle", "altered", "truncated", "empty", "version", "other-app", "class"])
def test_a_bad_file_is_refused_loudly_and_runs_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Any, reason: str) -> None:
    path = tmp_path / "s.ckpt"
    ck = Checkpoint(path, app_id="pulse", topics=("t",))
    ck.save(Resumable({"n": 1}))
    spoil(path)
    before = refused(reason)
    with caplog.at_level(logging.ERROR, logger="stream.checkpoint"):
        assert ck.load() is None
    assert refused(reason) == before + 1
    (rec,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert str(path) in rec.getMessage() and reason in rec.getMessage()
    assert not (tmp_path / "marker").exists()
    assert (tmp_path / "s.ckpt.refused").exists() and not path.exists()
    assert ck.load() is None   # nothing left to refuse: a plain fresh start


def test_saving_an_unlisted_class_fails_at_once() -> None:
    with pytest.raises(TypeError, match="ALLOWED"):
        dumps_state(Resumable(Path("/")))
    assert "builtins.object" not in ALLOWED and all("." in n for n in ALLOWED)


def test_crafted_pickles_at_every_agent_checkpoint_are_refused_and_events_counted_exactly(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    p = Pipeline(broker)
    app, prefix = p.env["PULSE_APP_ID"], p.prefix
    folder = Path(p.worker.data_dir) / "checkpoints"
    marker = tmp_path / "ran"
    names = [f"{app}-{prefix}events-p{n}.ckpt" for n in range(p.partitions)] + [
        f"{app}-{prefix}kpi-partials-merge.ckpt", f"{app}-alerts.ckpt", f"{app}-digest.ckpt"]
    for name in names:
        crafted_pickle(folder / name, marker)
    t0 = time.monotonic()
    p.start()
    sim = Simulation(seed=5, start_ts=START, scenario="none")
    produced: list[dict] = []
    try:
        asyncio.run(_publish(p, sim, START, START + DAY, produced))
        end = START + DAY
        asyncio.run(_publish_final(p, end + 600))
        kpis = asyncio.run(read_topic(
            p.bootstrap, p.topic("kpis"), timeout=120,
            until=lambda m: any(d["window_end_ts"] >= end and d.get("kpi") == "scans"
                                and not is_running(d) for d in m)))
        text = p.metrics_text()
        log = p.worker.log_tail(400)
    finally:
        p.stop()
    assert not marker.exists()
    assert f'pulse_state_files_refused_total{{reason="foreign"}} {float(len(names))}' in text
    for name in names:
        assert f"refused state file {folder / name}" in log, name
    last = {d["window_start_ts"]: d["series"][0]["value"] for d in kpis
            if d.get("kpi") == "scans" and not is_running(d)}
    want: dict[float, int] = {}
    for e in produced:
        if e["kind"] == "scan":
            w = e["ts"] // 3600 * 3600
            want[w] = want.get(w, 0) + 1
    assert {w: last.get(w) for w in want} == want
    assert time.monotonic() - t0 < 150
