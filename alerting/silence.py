"""What ``pulse silence …`` calls: add, list and remove silences in ``<data_dir>/silences.json``;
and :class:`LiveSilences`, the worker's view of the same file.

The running worker re-reads the file when it changes, so a silence added from the CLI applies
to the next alert change.

Silences are bounded (:data:`MAX_SILENCES` live ones) and a second silence of the same target
for the same reason only extends the first. In the worker, :class:`LiveSilences` changes its
list in memory at once (so the next alert already sees it) and writes the file off the event
loop, in a thread, one write at a time, coalescing a burst of changes into one write: a click
never waits on the disk. Every write is atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from alerting.policies import Silence, Silences, parse_duration, silences_path

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]
from core.timefmt import human_utc

__all__ = [
    "MAX_SILENCES",
    "LiveSilences",
    "SilenceLimitError",
    "add_silence",
    "describe_silence",
    "list_silences",
    "remove_silence",
    "write_silences",
]

log = logging.getLogger(__name__)

MAX_SILENCES = 1000
"""Live silences kept at most. Pulse mutes a few series at a time; a thousand is far beyond any
real use and keeps a rewrite of the file in the milliseconds (6,000 took 0.18 s)."""

E_TOO_MANY_SILENCES = (
    "{n} silences are live, the most Pulse keeps: this one is NOT added, and alerts keep "
    "reaching Slack. `pulse silence list` shows them, `pulse silence remove <id>` ends one; "
    "they also end by themselves when they expire.")

Version = tuple[int, int, int]  # (inode, mtime_ns, size): a rename makes a new inode


class SilenceLimitError(ValueError):
    """A new silence was refused: :data:`MAX_SILENCES` are live."""


def write_silences(path: Path, items: Sequence[Silence]) -> Version:
    """Write ``items`` to ``path`` atomically (temporary file, fsync, rename); its version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".silences.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"silences": [asdict(s) for s in items]}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the directory is synced
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        pass
    else:
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
    return _version(path) or (0, 0, 0)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively, so a worker and ``pulse silence`` never interleave a
    read-merge-write of the same file (POSIX ``flock``; no lock where there is none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _version(path: Path) -> Version | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read(path: Path) -> list[Silence]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [Silence(**s) for s in json.loads(text or "{}").get("silences", [])]


def _target(s: Silence) -> tuple[str | None, ...]:
    return (s.kpi, s.segment, s.channel, s.alert_id, s.reason)


class LiveSilences(Silences):
    """:class:`~alerting.policies.Silences`, bounded, that writes off the event loop.

    * **Bounded.** At most ``max_silences`` live silences: beyond that a new one is refused
      with :class:`SilenceLimitError` (:data:`E_TOO_MANY_SILENCES`), and expired ones are
      dropped at every write. Refusing is the safe side for a monitor: evicting the oldest
      live silence instead would let a burst of new ones (a click flood) quietly end the
      silences people chose, and a refused silence only means an alert still reaches Slack.
      A silence of a target already silenced for the same reason (same KPI, segment,
      channel, alert id and reason) extends that one rather than adding another, so
      repeated snoozes do not pile up.
    * **Off the loop.** Inside a running event loop a change applies to :attr:`items` at
      once and the file is written by a background task through :func:`asyncio.to_thread`,
      one write in flight, later changes coalesced into the next write; :meth:`flush` waits
      for it. Without a running loop (``pulse silence``, a thread), or with
      ``write_behind=False``, it writes straight away.
      Before each write the file is merged with what another process (``pulse silence``)
      added or removed since the last read, so neither side loses the other's change.

    ``write`` writes a list to the file and returns its version (default
    :func:`write_silences`; tests pass a slow one).
    """

    def __init__(self, path: str | os.PathLike[str], *, max_silences: int = MAX_SILENCES,
                 write: Callable[[Path, Sequence[Silence]], Version] = write_silences,
                 write_behind: bool = True):
        if max_silences < 1:
            raise ValueError("max_silences must be at least 1")
        self.max_silences = max_silences
        self.write_behind = write_behind
        self._write_file = write
        self._version: Version | None = None
        self._synced: set[str] = set()   # ids in the file at the last read or write
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None
        self._lock = threading.Lock()    # one write at a time, whichever thread
        self.writes = 0
        super().__init__(path)

    # -- reading --------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the file if another process changed it (not while a write is due: the
        write merges it)."""
        if self._pending():
            return
        version = _version(self.path)
        if version == self._version:
            return
        self.items = _read(self.path) if version is not None else []
        self._version, self._synced = version, {s.id for s in self.items}

    # -- changes --------------------------------------------------------------------------

    def add(self, *, now: float, duration_s: float, kpi: str | None = None,
            segment: str | None = None, channel: str | None = None,
            alert_id: str | None = None, reason: str = "", created_by: str = "") -> Silence:
        """Add (or extend) a silence; :class:`SilenceLimitError` when the cap is reached."""
        if duration_s <= 0:
            raise ValueError("a silence needs a positive duration")
        self.reload()
        live = [s for s in self.items if s.until_ts > now]
        target = (kpi, segment, channel, alert_id, reason)
        same = next((s for s in live if _target(s) == target), None)
        if same is not None:
            same.until_ts = max(same.until_ts, now + duration_s)
            self._write(live)
            return same
        if len(live) >= self.max_silences:
            raise SilenceLimitError(E_TOO_MANY_SILENCES.format(n=len(live)))
        return super().add(now=now, duration_s=duration_s, kpi=kpi, segment=segment,
                           channel=channel, alert_id=alert_id, reason=reason,
                           created_by=created_by)

    async def flush(self) -> None:
        """Wait until every change is in the file."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._dirty:  # a write that failed earlier, or a change made with no task
            self._dirty = False
            await self._save_async()

    # -- writing --------------------------------------------------------------------------

    def _pending(self) -> bool:
        return self._dirty or (self._flusher is not None and not self._flusher.done())

    def _write(self, items: list[Silence]) -> None:
        self.items = items
        try:
            loop = asyncio.get_running_loop() if self.write_behind else None
        except RuntimeError:
            loop = None
        if loop is None:  # no event loop here (or asked not to defer): write now
            self._merge(*self._save(list(items)))
            return
        self._dirty = True
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._write_behind())

    async def _write_behind(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._save_async()
            except Exception:
                self._dirty = True  # the next change (or flush) tries again
                log.exception("could not write %s; the silences stay in memory", self.path)
                return

    async def _save_async(self) -> None:
        self._merge(*await asyncio.to_thread(self._save, list(self.items)))

    def _merge(self, theirs_added: list[Silence], theirs_removed: set[str]) -> None:
        """Another process's changes, found by :meth:`_save`, into memory too."""
        if theirs_added or theirs_removed:
            mine = {s.id for s in self.items}
            self.items = [s for s in self.items if s.id not in theirs_removed] + [
                s for s in theirs_added if s.id not in mine]

    def _save(self, items: list[Silence]) -> tuple[list[Silence], set[str]]:
        """Merge the file's outside changes into ``items`` and write them (any thread)."""
        with self._lock, _locked(self.path):
            added: list[Silence] = []
            removed: set[str] = set()
            if _version(self.path) != self._version:   # someone else wrote it
                theirs = _read(self.path)
                ids = {s.id for s in theirs}
                removed = self._synced - ids
                mine = {s.id for s in items}
                added = [s for s in theirs if s.id not in self._synced and s.id not in mine]
                items = [s for s in items if s.id not in removed] + added
            self._version = self._write_file(self.path, items)
            self._synced = {s.id for s in items}
            self.writes += 1
            return added, removed


def add_silence(data_dir: str | os.PathLike[str], *, duration: str | float,
                kpi: str | None = None, segment: str | None = None, channel: str | None = None,
                alert_id: str | None = None, reason: str = "", created_by: str = "cli",
                now: float | None = None) -> Silence:
    """Silence alerts led by a matching series (``None`` matches any) for ``duration``
    (seconds or ``30m``/``2h``/``1d``). Raises ``ValueError`` on a bad duration or no filter,
    :class:`SilenceLimitError` when :data:`MAX_SILENCES` are live."""
    seconds = parse_duration(duration) if isinstance(duration, str) else float(duration)
    return LiveSilences(silences_path(data_dir), write_behind=False).add(
        now=time.time() if now is None else now, duration_s=seconds, kpi=kpi, segment=segment,
        channel=channel, alert_id=alert_id, reason=reason, created_by=created_by)


def list_silences(data_dir: str | os.PathLike[str], now: float | None = None) -> list[Silence]:
    """Silences that have not expired."""
    return LiveSilences(silences_path(data_dir), write_behind=False).active(
        time.time() if now is None else now)


def remove_silence(data_dir: str | os.PathLike[str], silence_id: str) -> bool:
    """Remove a silence by id; False if there is none."""
    return LiveSilences(silences_path(data_dir), write_behind=False).remove(silence_id)


def describe_silence(s: Silence) -> str:
    """One line for ``pulse silence list``."""
    match = ", ".join(f"{k}={v}" for k, v in (("kpi", s.kpi), ("segment", s.segment),
                                               ("channel", s.channel), ("alert", s.alert_id))
                      if v is not None)
    why = f" — {s.reason}" if s.reason else ""
    return f"{s.id}  {match}  until {human_utc(s.until_ts)}{why}"
