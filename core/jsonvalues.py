"""Which values JSON holds as they are: the one test of both state encoders (stream/checkpoint.py
for the agents' files, detectors/state.py for the detectors' table), each of which otherwise
walks every item of a state.

>>> plain_values([1, 2.5, "a", None, True]), plain_values((float("nan"), 1)), plain_values([[1]])
(True, False, False)
"""

from __future__ import annotations

from typing import Any

__all__ = ["plain_values"]

_AS_THEY_ARE = frozenset((int, str, bool, type(None)))


def plain_values(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether every item is written as it is: an int, a string, a bool, None or a finite float
    (NaN and infinities need a tag). A loop, not all() over a generator: the encoders meet
    thousands of small lists and (segment, channel) tuples in every save."""
    for x in items:
        if x.__class__ is float:
            if x - x != 0.0:   # NaN or an infinity
                return False
        elif x.__class__ not in _AS_THEY_ARE:
            return False
    return True
