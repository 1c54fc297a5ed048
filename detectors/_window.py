"""A fixed-size window of numbers kept in arrival and in sorted order (quantiles in O(1)).

``river.utils.SortedWindow`` does the same job, but it is a ``UserList``: ``bisect`` on it goes
through a Python ``__getitem__`` per probe, several times slower on the per-row path of
``pulse detect``. This one keeps a plain list.
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["SortedWindow"]


class SortedWindow:
    """The last ``size`` values, in arrival order (``fifo``) and sorted (``sorted``).

    >>> w = SortedWindow(3)
    >>> for v in [5.0, 1.0, 3.0, 2.0]:
    ...     w.add(v)
    >>> w.sorted, w.quartiles(), len(w)
    ([1.0, 2.0, 3.0], (1.0, 2.0, 2.0), 3)
    """

    __slots__ = ("size", "fifo", "sorted")

    def __init__(self, size: int):
        self.size = size
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, v: float) -> None:
        if len(self.fifo) == self.size:
            del self.sorted[bisect.bisect_left(self.sorted, self.fifo.popleft())]
        self.fifo.append(v)
        bisect.insort(self.sorted, v)

    def quartiles(self) -> tuple[float, float, float]:
        s = self.sorted
        n = len(s) - 1
        return s[n // 4], s[n // 2], s[(3 * n) // 4]

    def count_at_least(self, v: float) -> int:
        """How many values in the window are ``>= v``."""
        return len(self.sorted) - bisect.bisect_left(self.sorted, v)

    def __getstate__(self) -> tuple[int, list[float]]:
        return self.size, list(self.fifo)

    def __setstate__(self, state: tuple[int, list[float]]) -> None:
        self.size = state[0]
        self.fifo = deque(state[1])
        self.sorted = sorted(self.fifo)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SortedWindow) and self.__getstate__() == other.__getstate__()

    def __len__(self) -> int:
        return len(self.fifo)
