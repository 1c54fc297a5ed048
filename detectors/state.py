"""Detector state as JSON: safe to keep in a Faust table, whose changelog is a Kafka topic.

Pickle would run code from whoever can write to that topic (faust's own codecs warn about it),
so the detector agent stores state in this form instead: plain JSON, where an object becomes its
class name plus its attributes, and only the classes in :data:`ALLOWED` can be rebuilt. The
detectors keep their learned state in plain attributes (River's convention), which is what makes
this generic codec enough.

>>> from collections import deque
>>> from detectors.rules import TargetRule
>>> rule = TargetRule(op="above", warning=0.05, critical=0.08)
>>> again = loads(dumps({"rule": rule, "recent": deque([1.0, float("nan")], maxlen=3)}))
>>> type(again["rule"]).__name__, again["rule"].warning, again["recent"].maxlen
('TargetRule', 0.05, 3)
>>> loads(b'{"__obj__": "os.system", "state": {}}')
Traceback (most recent call last):
...
ValueError: detector state names class 'os.system', which is not a detector class
"""

from __future__ import annotations

import importlib
import math
from collections import deque
from typing import Any

import orjson

from core.jsonvalues import plain_values

__all__ = ["ALLOWED", "dumps", "loads", "to_jsonable", "from_jsonable"]

ALLOWED = frozenset({
    "detectors.watch.KpiSeriesWatch",
    "detectors.series.SeriesWatcher",
    "detectors.series.Verdict",
    "detectors.forecast.SeasonalForecast",
    "detectors.forecast.Forecast",
    "detectors.rules.TargetRule",
    "detectors.robust.RollingRobustZ",
    "detectors.likelihood.AnomalyLikelihood",
    "detectors.surprise.RobustSurprise",
    "detectors.tail.TailSurprise",
    "detectors._window.SortedWindow",
})
"""The classes whose instances may appear in saved state (module.qualname)."""


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def to_jsonable(obj: Any) -> Any:
    """``obj`` as JSON-ready values (tagged dicts for tuples, deques, odd floats, objects)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, list):
        return obj if plain_values(obj) else [to_jsonable(x) for x in obj]
    if isinstance(obj, tuple):
        return {"__tuple__": list(obj) if plain_values(obj) else [to_jsonable(x) for x in obj]}
    if isinstance(obj, deque):
        return {"__deque__": [to_jsonable(x) for x in obj], "maxlen": obj.maxlen}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: to_jsonable(v) for k, v in obj.items()}
        return {"__items__": [[to_jsonable(k), to_jsonable(v)] for k, v in obj.items()]}
    name = _name(type(obj))
    if name not in ALLOWED:
        raise TypeError(f"cannot save {name} in detector state; add it to detectors.state.ALLOWED")
    if hasattr(obj, "__dict__"):
        attrs = dict(vars(obj))
    else:
        attrs = {s: getattr(obj, s) for s in getattr(type(obj), "__slots__", ())}
    return {"__obj__": name, "state": {k: to_jsonable(v) for k, v in attrs.items()}}


def from_jsonable(doc: Any) -> Any:
    """The inverse of :func:`to_jsonable`; refuses any class outside :data:`ALLOWED`."""
    if isinstance(doc, list):
        return [from_jsonable(x) for x in doc]
    if not isinstance(doc, dict):
        return doc
    if "__float__" in doc:
        return float(doc["__float__"])
    if "__tuple__" in doc:
        return tuple(from_jsonable(x) for x in doc["__tuple__"])
    if "__deque__" in doc:
        return deque((from_jsonable(x) for x in doc["__deque__"]), maxlen=doc.get("maxlen"))
    if "__items__" in doc:
        return {_hashable(from_jsonable(k)): from_jsonable(v) for k, v in doc["__items__"]}
    if "__obj__" in doc:
        name = doc["__obj__"]
        if name not in ALLOWED:
            raise ValueError(f"detector state names class {name!r}, which is not a detector class")
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        obj = cls.__new__(cls)
        for k, v in doc["state"].items():
            object.__setattr__(obj, k, from_jsonable(v))
        return obj
    return {k: from_jsonable(v) for k, v in doc.items()}


def _hashable(x: Any) -> Any:
    return tuple(_hashable(i) for i in x) if isinstance(x, list) else x


def dumps(obj: Any) -> bytes:
    """JSON bytes of a detector state object."""
    return orjson.dumps(to_jsonable(obj))


def loads(data: bytes) -> Any:
    """Rebuild a state object saved with :func:`dumps` (only detector classes)."""
    return from_jsonable(orjson.loads(data))
