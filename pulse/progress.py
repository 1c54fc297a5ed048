"""A one-line progress bar with rate and ETA, the look of ``KpiView.progress``.

On a terminal the line is redrawn in place; elsewhere (CI, a pipe) one line per tenth.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import IO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``update(fraction, count)`` draws ``label ████░░ 42.0%  1,234 events  5,678 ev/s  ETA``."""

    def __init__(self, label: str, *, unit: str = "events", stream: IO[str] | None = None,
                 quiet: bool = False, width: int = 30) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.width = width
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._shown = False
        self._decile = -1
        self._last_draw = 0.0

    def update(self, fraction: float, count: int, extra: str = "", *,
               force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty and not force and now - self._last_draw < 0.1:
            return
        fraction = min(1.0, max(0.0, fraction))
        elapsed = now - self.started
        filled = int(fraction * self.width)
        bar = "█" * filled + "░" * (self.width - filled)
        rate = count / elapsed if elapsed > 0 else 0.0
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        head = f"{self.label} "
        tail = f" {fraction * 100:5.1f}%  {count:,} {self.unit}  {rate:,.0f}/s  ETA {eta:4.0f} s"
        if extra:
            tail += f"  {extra}"
        if self.tty:   # one line that fits the terminal: a wrapped bar fills the screen
            cols = shutil.get_terminal_size((80, 24)).columns - 1
            room = cols - len(head) - len(tail)
            if room < 10:   # the bar's own width first, then the extras
                tail = f" {fraction * 100:5.1f}%  ETA {eta:4.0f} s"
                room = cols - len(head) - len(tail)
            width = max(0, min(self.width, room))
            filled = int(fraction * width)
            bar = "█" * filled + "░" * (width - filled)
            line = (head + bar + tail)[:cols]
        else:
            line = head + bar + tail
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._shown = True
        elif int(fraction * 10) != self._decile or force:
            self._decile = int(fraction * 10)
            self.stream.write(line + "\n")
        else:
            return
        self._last_draw = now
        self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
