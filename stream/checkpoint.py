"""Checkpoint files: an agent's state saved together with the offsets it covers.

Faust's tables would send every update to a changelog topic; the KPI engine changes on every
event, so the agent instead pickles its whole state every few seconds into a file and commits the
consumer offsets right after. On restart it loads the file and Kafka re-delivers only what came
after the commit: nothing is lost, and the event-id de-duplication absorbs the one message that
may be seen twice. Writes are atomic (temporary file, then rename), so a crash mid-write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["Checkpoint", "Resumable"]

_VERSION = 1


class Checkpoint:
    """One pickled state object at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Any | None:
        """The saved state, or None when there is none or it cannot be read (then start fresh)."""
        try:
            with self.path.open("rb") as f:
                version, state = pickle.load(f)
        except FileNotFoundError:
            return None
        except Exception:  # a corrupt or foreign file: keep it for a person, start fresh
            self.path.replace(self.path.with_suffix(".corrupt"))
            return None
        return state if version == _VERSION else None

    def save(self, state: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump((_VERSION, state), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class Resumable:
    """What an agent's checkpoint holds: its state and the next offset due of each (topic,
    partition) it covers (stream/resume.py)."""

    def __init__(self, state: Any, offsets: dict[tuple[str, int], int] | None = None) -> None:
        self.state = state
        self.offsets = dict(offsets or {})

    def at(self, offsets: dict[tuple[str, int], int]) -> Resumable:
        """Itself, now covering ``offsets``."""
        self.offsets = dict(offsets)
        return self
