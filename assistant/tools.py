"""The assistant's tools: what a question can ask Pulse to compute, with JSON Schema inputs.

Each :class:`Tool` is offered as is to the Anthropic Messages API (``name``, ``description``,
``input_schema``) and run on a :class:`~assistant.store.KpiStore` by the parser and the model
alike, so both answer from the same numbers. ``run`` never raises on its input: bad arguments
give ``{"error": "..."}`` naming what is wrong and what is allowed.

>>> [t.name for t in TOOLS]   # doctest: +NORMALIZE_WHITESPACE
['kpi_value', 'kpi_trend', 'breakdown', 'compare_channels', 'open_alerts', 'targets',
 'kpi_catalogue']
>>> tool_by_name("kpi_value").run(KpiStore(), {"kpi": "nps"})["error"]
"unknown KPI 'nps'; the KPIs are: signups, scans, ..."
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alerting.evidence import kpi_label, slice_phrase
from assistant import facts, scorecards
from assistant.alerts import open_alerts
from assistant.periods import COMPARISONS, PERIODS, Period, resolve
from assistant.query import LAST, rule
from assistant.store import KpiStore
from core.vocabulary import CHANNELS, SEGMENTS
from kpis.formulas import KPI_BY_ID

__all__ = ["TOOLS", "Tool", "default_period", "tool_by_name"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tool:
    """One tool: its Messages API declaration and the function that runs it on a store."""

    name: str
    description: str
    input_schema: dict
    run: Callable[[KpiStore, dict], dict]


class _BadInput(ValueError):
    pass


_KPI = {"type": "string", "enum": list(KPI_BY_ID),
        "description": "KPI id: " + ", ".join(f"{k} ({d.title})" for k, d in KPI_BY_ID.items())}
_SEGMENT = {"type": "string", "enum": ["all", *SEGMENTS],
            "description": "segment (default all); KPIs are per segment or per channel, not both"}
_CHANNEL = {"type": "string", "enum": ["all", *CHANNELS],
            "description": "acquisition channel (default all)"}
_PERIOD = {
    "period": {"type": "string", "enum": list(PERIODS),
               "description": "UTC period up to the newest data (default: the latest value for "
                              "levels and 30-day KPIs, the last 7 days for counts and rates)"},
    "start": {"type": "string", "description": "with period=range: first day, YYYY-MM-DD"},
    "end": {"type": "string", "description": "with period=range: last day (included)"},
    "days": {"type": "integer", "minimum": 1, "maximum": 366,
             "description": "with period=last_n_days: how many days"},
}


def _schema(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


def default_period(kpi: str) -> str:
    """``last_window`` for a level or trailing KPI (its latest value), ``last_7_days`` for a
    count or a window ratio (an hour of them says little)."""
    return "last_window" if rule(kpi) == LAST else "last_7_days"


def _kpi(args: dict) -> str:
    kpi = args.get("kpi")
    if kpi not in KPI_BY_ID:
        raise _BadInput(f"unknown KPI {kpi!r}; the KPIs are: " + ", ".join(KPI_BY_ID))
    return str(kpi)


def _choice(args: dict, name: str, allowed: tuple[str, ...] | list[str], default: str) -> str:
    value = args.get(name, default)
    if value is None:
        return default
    if value not in allowed:
        raise _BadInput(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _slice(store: KpiStore, kpi: str, args: dict) -> tuple[str, str]:
    segment = args.get("segment") or "all"
    channel = args.get("channel") or "all"
    if segment != "all" and channel != "all":
        raise _BadInput("Pulse keeps each KPI per segment or per channel, not both at once; "
                        "ask for one of them")
    if segment != "all" and not KPI_BY_ID[kpi].per_segment:
        raise _BadInput(f"{kpi_label(kpi)} has no value {slice_phrase(segment, 'all')}: "
                        "marketing spend is known per channel only, so it exists overall and "
                        "per channel, not per segment")
    held = store.segments() if segment != "all" else store.channels()
    name = segment if segment != "all" else channel
    if name != "all" and name not in held and store.series:
        what = "segment" if segment != "all" else "channel"
        raise _BadInput(f"the data has no {what} {name!r}; it has: " + ", ".join(held))
    return str(segment), str(channel)


def _period(store: KpiStore, args: dict, default: str) -> Period:
    now = store.now
    if now is None:
        raise _BadInput("the store holds no KPI windows yet")
    name = _choice(args, "period", PERIODS, default)
    try:
        return resolve(name, now, store.window_s, start=args.get("start"),
                       end=args.get("end"), days=args.get("days"))
    except ValueError as e:
        raise _BadInput(str(e)) from None


def _safe(fn: Callable[[KpiStore, dict], dict]) -> Callable[[KpiStore, dict], dict]:
    def run(store: KpiStore, args: dict) -> dict:
        if not isinstance(args, dict):
            return {"error": "the tool input must be a JSON object"}
        try:
            return fn(store, args)
        except _BadInput as e:
            return {"error": str(e)}
        except Exception as e:   # data Pulse did not expect: a result, not a crash
            log.warning("tool %s failed (%s: %s)", fn.__name__, type(e).__name__, e)
            return {"error": f"Pulse could not compute this ({type(e).__name__}); try asking "
                             "for one KPI and one period"}
    run.__doc__ = fn.__doc__
    return run


def _kpi_value(store: KpiStore, args: dict) -> dict:
    """Value of one KPI for a slice and period, compared as asked, with its target."""
    kpi = _kpi(args)
    segment, channel = _slice(store, kpi, args)
    period = _period(store, args, default_period(kpi))
    default = "week_earlier" if period.name == "last_window" else "previous_period"
    compare = _choice(args, "compare", COMPARISONS, default)
    return facts.kpi_value(store, kpi, segment, channel, period, compare)


def _kpi_trend(store: KpiStore, args: dict) -> dict:
    kpi = _kpi(args)
    segment, channel = _slice(store, kpi, args)
    period = _period(store, args, "last_7_days")
    step = _choice(args, "step", ("day", "window"),
                   "window" if period.seconds <= 2 * 86_400 else "day")
    return facts.kpi_trend(store, kpi, segment, channel, period, step)


def _breakdown(store: KpiStore, args: dict) -> dict:
    kpi = _kpi(args)
    by = _choice(args, "by", ("segment", "channel", "both"), "both")
    compare = _choice(args, "compare", ("previous_period", "week_earlier", "none"),
                      "previous_period")
    period = _period(store, args, default_period(kpi) if compare == "none" else "last_7_days")
    sort = _choice(args, "sort", ("contribution", "value"), "contribution")
    return scorecards.breakdown(store, kpi, by, period, compare, sort)


def _compare_channels(store: KpiStore, args: dict) -> dict:
    return scorecards.channels(store, _period(store, args, "last_7_days"))


def _open_alerts(store: KpiStore, args: dict) -> dict:
    kpi = args.get("kpi")
    if kpi is not None:
        kpi = _kpi(args)
    severity = args.get("severity")
    if severity is not None:
        severity = _choice(args, "severity", ("warning", "critical"), "warning")
    return open_alerts(store, kpi, severity)


def _targets(store: KpiStore, args: dict) -> dict:
    now = store.now
    if now is None:
        raise _BadInput("the store holds no KPI windows yet")
    result = scorecards.targets(store, lambda k: resolve(default_period(k), now, store.window_s))
    if args.get("kpi") is not None:
        kpi = _kpi(args)
        result["targets"] = [r for r in result["targets"] if r["kpi"] == kpi]
        if not result["targets"]:
            raise _BadInput(f"{kpi_label(kpi)} has no target")
    return result


def _catalogue(store: KpiStore, args: dict) -> dict:
    return scorecards.catalogue(store)


TOOLS: tuple[Tool, ...] = (
    Tool("kpi_value",
         "A KPI's value for one slice (overall, a segment or a channel) and period, with the "
         "comparison asked for (previous period, the same period a week earlier, target) and "
         "its target. Use for 'what is our churn rate', 'signups on referral compared to last "
         "week', 'LTV for new grads'.",
         _schema({"kpi": _KPI, "segment": _SEGMENT, "channel": _CHANNEL, **_PERIOD,
                  "compare": {"type": "string", "enum": list(COMPARISONS),
                              "description": "default: a week earlier for a latest value, "
                                             "the previous period otherwise"}}, ("kpi",)),
         _safe(_kpi_value)),
    Tool("kpi_trend",
         "A KPI over a period, day by day (or window by window): where it started, where it "
         "is, the change, the low and the high. Use for 'how is MRR trending this month'.",
         _schema({"kpi": _KPI, "segment": _SEGMENT, "channel": _CHANNEL, **_PERIOD,
                  "step": {"type": "string", "enum": ["day", "window"]}}, ("kpi",)),
         _safe(_kpi_trend)),
    Tool("breakdown",
         "A KPI per segment and/or per channel over a period; with a comparison, each slice's "
         "contribution to the overall change in the KPI's unit (points for a rate), largest "
         "first. Use for 'why' / 'what is driving' questions and for rankings (sort=value).",
         _schema({"kpi": _KPI, "by": {"type": "string", "enum": ["segment", "channel", "both"]},
                  **_PERIOD,
                  "compare": {"type": "string",
                              "enum": ["previous_period", "week_earlier", "none"]},
                  "sort": {"type": "string", "enum": ["contribution", "value"]}}, ("kpi",)),
         _safe(_breakdown)),
    Tool("compare_channels",
         "Every acquisition channel's signups, paid conversions, conversion rate, CAC, LTV and "
         "LTV:CAC over a period (default the last 7 days; CAC, LTV and LTV:CAC are their "
         "latest 30-day values), each against the period before and its target, ranked by "
         "LTV:CAC. Use for 'which channel should we invest in'.",
         _schema(dict(_PERIOD)), _safe(_compare_channels)),
    Tool("open_alerts",
         "The alerts still open: KPI, where, severity, how long, value against expected.",
         _schema({"kpi": _KPI, "severity": {"type": "string", "enum": ["warning", "critical"]}}),
         _safe(_open_alerts)),
    Tool("targets",
         "Every KPI that has a business target, its current overall value and whether it "
         "meets the target.", _schema({"kpi": _KPI}), _safe(_targets)),
    Tool("kpi_catalogue",
         "What Pulse can answer about: the KPIs (with what they mean), the segments and "
         "channels in the data, and the time the data covers.", _schema({}),
         _safe(_catalogue)),
)
_BY_NAME = {t.name: t for t in TOOLS}


def tool_by_name(name: str) -> Tool | None:
    """The tool called ``name``, or None."""
    return _BY_NAME.get(name)
