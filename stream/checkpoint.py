"""Checkpoint files: an agent's state saved together with the offsets it covers.

Faust's tables would send every update to a changelog topic; the KPI engine changes on every
event, so the agent instead saves its whole state every few seconds into a file and commits the
consumer offsets right after. On restart it loads the file and Kafka re-delivers only what came
after the commit: nothing is lost, and the event-id de-duplication absorbs the one message that
may be seen twice.

A state file is read back, so it is input: never pickle (unpickling runs whatever the file
names). The format, version 1, is two parts:

- a header line, JSON: ``format`` ("pulse-state"), ``version``, ``identity`` (the app id, the
  topics and partition of the log the state was built from), ``cluster`` (the broker's cluster
  id when it was saved, if known), ``bytes`` and ``sha256`` of the body, ``saved_at``
  (ISO-8601 UTC, for people);
- the body, JSON (orjson) in the shape of detectors/state.py: plain values as they are, tuples,
  sets, deques, odd floats and non-string keys tagged, an object as its class name and its
  attributes. Only the classes of :data:`ALLOWED` are rebuilt, attribute by attribute (no
  constructor, no ``__setstate__``), and an object or container reached twice is saved once
  and referred to (``__ref__``), so what the state shares stays shared.

Writes are atomic and durable: a temporary file in the same folder, fsynced, renamed over the
old one, then the folder fsynced; a crash mid-write leaves the previous checkpoint intact.

A file that is corrupt (bad header, wrong checksum, unreadable body), foreign (not this format:
an old pickle, say), of an unknown version, of another log (identity), or naming a class outside
:data:`ALLOWED` is refused: an ERROR names the file and why, ``pulse_state_files_refused_total``
counts it by reason, the file is kept beside as ``<name>.refused`` for a person, and the agent
starts that state empty, so it is rebuilt from Kafka (from the group's start, as with no file).

A file saved on another cluster than the broker's now (stream/resume.py ``LOG``: the embedded
broker started again, which keeps nothing) is not refused but left behind: its offsets belong
to a log that is gone, so the state starts empty on the new one, the reset is said once
(``LogIdentity.reset``), and the next save replaces the file.

>>> import tempfile, pathlib
>>> ck = Checkpoint(pathlib.Path(tempfile.mkdtemp()) / "a.ckpt", app_id="pulse", topics=("t",))
>>> shared = [1, 2]
>>> ck.save(Resumable({"a": shared, "b": shared, (1, "x"): {3.5, float("inf")}}, {("t", 0): 7}))
>>> back = ck.load()
>>> back.state["a"] is back.state["b"], back.offsets
(True, {('t', 0): 7})
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from core.jsonvalues import plain_values
from stream.resume import LOG

__all__ = ["ALLOWED", "Checkpoint", "REFUSED_REASONS", "Refused", "Resumable", "dumps_state",
           "loads_state"]

log = logging.getLogger(__name__)

FORMAT = "pulse-state"
VERSION = 1
MAX_HEADER_BYTES = 4096

REFUSED_REASONS = ("corrupt", "foreign", "unknown_version", "mismatched", "disallowed_class")
"""Why a state file was refused (the ``reason`` label of ``pulse_state_files_refused_total``)."""

ALLOWED = frozenset({
    "stream.checkpoint.Resumable",
    "stream.partitions.PartitionState",
    "stream.agents.merge.MergeState",
    "kpis.windows.PartitionWindows",
    "kpis.windows._Window",
    "kpis.rows.Peek",
    "kpis.rows.WindowInputs",
    "kpis.merger.KpiMerger",
    "kpis.funnel.FunnelTracker",
    "kpis.cohorts.CohortTracker",
    "kpis._tracking.HeldSteps",
    "alerting.lifecycle.AlertManager",
    "alerting.lifecycle.Alert",
    "alerting.policies.Deduper",
    "alerting.policies.FiringRule",
    "alerting.digest.DigestBuilder",
    "alerting.digest._Daily",
})
"""The classes whose instances may appear in a state file (module.qualname)."""

MOVED = {
    "kpis.engine.PartitionWindows": "kpis.windows.PartitionWindows",
    "kpis.engine._Window": "kpis.windows._Window",
    "kpis.engine.Peek": "kpis.rows.Peek",
    "kpis.engine.WindowInputs": "kpis.rows.WindowInputs",
    "kpis.engine.KpiMerger": "kpis.merger.KpiMerger",
}
"""Where state classes named by older state files live now (kpis/engine.py was split in
session 12): a file saved before is read as if saved now."""


class Refused(ValueError):
    """A state file that is not loaded; ``reason`` is one of :data:`REFUSED_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class _OtherLog(Exception):
    """A state file saved on another cluster (a broker reset): not loaded, not refused."""

    def __init__(self, cluster: str) -> None:
        super().__init__(cluster)
        self.cluster = cluster


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _attrs(obj: Any) -> dict[str, Any]:
    out = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for klass in type(obj).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                out[slot] = getattr(obj, slot)
    return out


class _Encoder:
    """One pass over a state; every mutable value gets a number in the order it is first met,
    which the decoder counts the same way, so a value met again is saved as its number."""

    def __init__(self) -> None:
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []   # what the numbers stand for stays alive while encoding

    def _seen(self, obj: Any) -> dict[str, int] | None:
        i = self.memo.get(id(obj))
        if i is not None:
            return {"__ref__": i}
        self.memo[id(obj)] = len(self.keep)
        self.keep.append(obj)
        return None

    def enc(self, obj: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value
        t = type(obj)
        if obj is None or t is str or t is int or t is bool:
            return obj
        if t is float:
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if t is tuple:
            if plain_values(obj):   # a (segment, channel) key
                return {"__tuple__": list(obj)}
            return {"__tuple__": [self.enc(x) for x in obj]}
        if t is frozenset:
            return {"__frozenset__": [self.enc(x) for x in obj]}
        ref = self._seen(obj) if t in (list, dict, set, deque) or not isinstance(obj, tuple) \
            else None
        if ref is not None:
            return ref
        if t is list:
            if plain_values(obj):   # a window's counters: most lists
                return obj
            return [self.enc(x) for x in obj]
        if t is dict:
            if all(k.__class__ is str and not k.startswith("__") for k in obj):
                return {k: self.enc(v) for k, v in obj.items()}
            return {"__items__": [[self.enc(k), self.enc(v)] for k, v in obj.items()]}
        if t is set:
            return {"__set__": [self.enc(x) for x in obj]}
        if t is deque:
            return {"__deque__": [self.enc(x) for x in obj], "maxlen": obj.maxlen}
        name = _name(t)
        if name not in ALLOWED:
            raise TypeError(f"cannot save {name} in a state file; add it to "
                            "stream.checkpoint.ALLOWED")
        if isinstance(obj, tuple):   # a NamedTuple: immutable, so not numbered
            return {"__obj__": name, "__tuple__": [self.enc(x) for x in obj]}
        return {"__obj__": name, "state": {k: self.enc(v) for k, v in _attrs(obj).items()}}


class _Decoder:
    def __init__(self) -> None:
        self.made: list[Any] = []

    def _made(self, obj: Any) -> Any:
        self.made.append(obj)
        return obj

    def dec(self, doc: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per tag
        if isinstance(doc, list):
            out: list[Any] = self._made([])
            out.extend(self.dec(x) for x in doc)
            return out
        if not isinstance(doc, dict):
            return doc
        if not doc or not next(iter(doc)).startswith("__"):
            d: dict[str, Any] = self._made({})
            for k, v in doc.items():
                d[k] = self.dec(v)
            return d
        if "__ref__" in doc:
            i = doc["__ref__"]
            if type(i) is not int or not 0 <= i < len(self.made):
                raise ValueError(f"reference {i!r} to nothing saved before it")
            return self.made[i]
        if "__float__" in doc:
            text = doc["__float__"]
            if text not in ("inf", "-inf", "nan"):
                raise ValueError(f"float {text!r} is not inf, -inf or nan")
            return float(text)
        if "__obj__" in doc:
            return self._object(doc)
        if "__tuple__" in doc:
            return tuple(self.dec(x) for x in doc["__tuple__"])
        if "__frozenset__" in doc:
            return frozenset(self.dec(x) for x in doc["__frozenset__"])
        if "__items__" in doc:
            items: dict[Any, Any] = self._made({})
            for k, v in doc["__items__"]:
                key = self.dec(k)
                items[key] = self.dec(v)
            return items
        if "__set__" in doc:
            s: set[Any] = self._made(set())
            s.update(self.dec(x) for x in doc["__set__"])
            return s
        if "__deque__" in doc:
            q: deque[Any] = self._made(deque(maxlen=doc.get("maxlen")))
            q.extend(self.dec(x) for x in doc["__deque__"])
            return q
        raise ValueError(f"unknown tag {next(iter(doc))!r}")

    def _object(self, doc: dict[str, Any]) -> Any:
        name = doc["__obj__"]
        name = MOVED.get(name, name) if type(name) is str else name
        if name not in ALLOWED:
            raise Refused("disallowed_class", f"it names class {str(name)[:80]!r}, which is not "
                          "a state class (stream.checkpoint.ALLOWED)")
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        if "__tuple__" in doc:
            return tuple.__new__(cls, [self.dec(x) for x in doc["__tuple__"]])
        obj = self._made(cls.__new__(cls))
        for k, v in doc["state"].items():
            object.__setattr__(obj, k, self.dec(v))
        return obj


def dumps_state(state: Any) -> bytes:
    """The body of a state file: ``state`` as JSON bytes (only :data:`ALLOWED` classes)."""
    return orjson.dumps(_Encoder().enc(state))


def loads_state(data: bytes) -> Any:
    """Rebuild a state from :func:`dumps_state` bytes; raises :class:`Refused` when it names a
    class outside :data:`ALLOWED`, ``ValueError`` when it is not such a body."""
    return _Decoder().dec(orjson.loads(data))


class Checkpoint:
    """One state object at ``path``, belonging to the log ``app_id`` / ``topics`` /
    ``partition`` (the identity written in its header and checked when it is read)."""

    def __init__(self, path: str | os.PathLike[str], *, app_id: str = "",
                 topics: tuple[str, ...] = (), partition: int | None = None) -> None:
        self.path = Path(path)
        self.identity: dict[str, Any] = {"app": app_id, "topics": list(topics),
                                         "partition": partition}

    def load(self) -> Any | None:
        """The saved state, or None when there is none or it is refused (then start fresh)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._parse(data)
        except _OtherLog as other:
            LOG.reset(f"{self.path.name} was saved on cluster {other.cluster!r}, the broker is "
                      f"{LOG.cluster!r}")
        except Refused as r:
            self._refuse(r.reason, r.detail)
        except (ValueError, TypeError, KeyError, AttributeError, ImportError,
                RecursionError) as exc:
            self._refuse("corrupt", f"its body does not rebuild ({type(exc).__name__}: "
                         f"{str(exc)[:200]})")
        return None

    def _parse(self, data: bytes) -> Any:
        line, nl, body = data.partition(b"\n")
        if not nl or len(line) > MAX_HEADER_BYTES or not line.startswith(b"{"):
            raise Refused("foreign", "it does not start with a pulse-state header line "
                          f"(first bytes {data[:16]!r})")
        try:
            header = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Refused("corrupt", f"its header is not JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise Refused("foreign", "its header is not a pulse-state header")
        if header.get("version") != VERSION:
            raise Refused("unknown_version", f"version {header.get('version')!r}; this "
                          f"worker reads version {VERSION}")
        if header.get("identity") != self.identity:
            raise Refused("mismatched", f"it belongs to {header.get('identity')!r}, this "
                          f"worker reads {self.identity!r}")
        if LOG.moved(header.get("cluster")):
            raise _OtherLog(str(header.get("cluster")))
        if header.get("bytes") != len(body) or \
                header.get("sha256") != hashlib.sha256(body).hexdigest():
            raise Refused("corrupt", f"its body ({len(body)} bytes) does not match the "
                          "checksum of its header (truncated or altered)")
        return loads_state(body)

    def _refuse(self, reason: str, detail: str) -> None:
        from stream import metrics  # metrics imports this module's reasons

        kept = self.path.with_name(self.path.name + ".refused")
        try:
            self.path.replace(kept)
        except OSError:
            kept = self.path
        log.error("refused state file %s (%s: %s); kept as %s; this state starts empty and is "
                  "rebuilt from Kafka", self.path, reason, detail, kept.name)
        metrics.STATE_FILES_REFUSED.labels(reason).inc()

    def save(self, state: Any) -> None:
        body = dumps_state(state)
        header = orjson.dumps({
            "format": FORMAT, "version": VERSION, "identity": self.identity,
            "cluster": LOG.cluster,
            "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header + b"\n")
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(folder)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:   # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Resumable:
    """What an agent's checkpoint holds: its state, the next offset due of each (topic,
    partition) it covers (stream/resume.py) and, for an agent that says so, ``outputs``: the end
    of each (topic, partition) it writes, as far as it knew its writes had landed when it saved.

    What the agent writes after ``outputs`` and before a crash it will write again when it
    handles its input again after the saved offsets; ``outputs`` says where to look for those
    writes on the topic, so they are not written twice (stream/agents/alerts.py)."""

    outputs: dict[tuple[str, int], int] = {}   # noqa: RUF012 - read-only default: files
    # saved before session 15 have no outputs (nothing known: read from the topic's start)

    def __init__(self, state: Any, offsets: dict[tuple[str, int], int] | None = None,
                 outputs: dict[tuple[str, int], int] | None = None) -> None:
        self.state = state
        self.offsets = dict(offsets or {})
        self.outputs = dict(outputs or {})

    def at(self, offsets: dict[tuple[str, int], int],
           outputs: dict[tuple[str, int], int] | None = None) -> Resumable:
        """Itself, now covering ``offsets`` (and, if given, having written up to
        ``outputs``)."""
        self.offsets = dict(offsets)
        if outputs is not None:
            self.outputs = dict(outputs)
        return self
