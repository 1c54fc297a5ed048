"""The evaluation's progress line: a text bar with elapsed time and an ETA, on stderr."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A one-line text bar with an ETA on a stream (``None``: draws nothing)."""

    def __init__(self, total: float, out: TextIO | None, width: int = 30):
        self.total, self.out, self.width = total, out, width
        self.done = 0.0
        self.started = time.monotonic()
        self.label = ""

    def tick(self, amount: float) -> None:
        self.done += amount
        self.draw()

    def draw(self) -> None:
        if self.out is None:
            return
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        elapsed = time.monotonic() - self.started
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(frac * self.width)
        self.out.write(f"\r[{bar:<{self.width}}] {frac:4.0%} {_clock(elapsed)} elapsed, "
                       f"ETA {_clock(eta)}  {self.label:<28.28}")
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}m{s:02d}s"
