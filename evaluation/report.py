"""The table ``pulse evaluate`` prints from a :func:`~evaluation.run.run_evaluate` result."""

from __future__ import annotations

from typing import Any

__all__ = ["format_settings", "format_table"]

_COLUMNS = (("incidents", "incidents", "{:d}"), ("detected", "detected", "{:d}"),
            ("recall", "recall", "{:.3f}"), ("anomaly_events", "events", "{:d}"),
            ("precision", "precision", "{:.3f}"), ("false_alarms", "false alarms", "{:d}"),
            ("false_alarms_per_day", "FA/day", "{:.3f}"),
            ("median_delay_windows", "median delay", "{:g}"),
            ("p95_delay_windows", "p95 delay", "{:g}"),
            ("median_ttd_minutes", "TTD min", "{:.0f}"),
            ("p95_ttd_minutes", "p95 TTD", "{:.0f}"),
            ("floor_ttd_minutes", "floor min", "{:.0f}"),
            ("reachable_recall", "reachable", "{:.3f}"))


def format_table(result: dict[str, Any]) -> str:
    """The per-scenario and overall table of a :func:`run_evaluate` result.

    >>> row = {"incidents": 1, "detected": 1, "recall": 1.0, "anomaly_events": 3,
    ...        "precision": 1.0, "false_alarms": 0, "false_alarms_per_day": 0.0,
    ...        "median_delay_windows": 0, "p95_delay_windows": 0}
    >>> print(format_table({"overall": row, "scenarios": {"churn-spike": row}}))
    scenario     incidents  detected  recall  events  precision  false alarms  FA/day  ...
    churn-spike          1         1   1.000       3      1.000             0   0.000  ...
    overall              1         1   1.000       3      1.000             0   0.000  ...
    """
    rows = [(name, s) for name, s in result["scenarios"].items()]
    rows.append(("overall", result["overall"]))
    width = max(len("scenario"), *(len(name) for name, _ in rows))
    lines = ["  ".join([f"{'scenario':<{width}}", *(h for _, h, _ in _COLUMNS)])]
    for name, s in rows:
        cells = [f"{name:<{width}}"]
        for key, head, fmt in _COLUMNS:
            v = s.get(key)
            cells.append(f"{'-' if v is None else fmt.format(v):>{len(head)}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_settings(result: dict[str, Any]) -> str:
    """The line under the table: what was run, and how long it took.

    >>> format_settings({"settings": {"seeds": 2, "eval_days": 7.0, "difficulty": "normal",
    ...                               "scale": 1.0, "calendar": True, "runtime_s": 61.4}})
    '2 seeds, 7 evaluated days per scenario and seed, difficulty normal, scale 1, calendar on, 61 s'
    """
    st = result["settings"]
    return (f"{st['seeds']} seeds, {st['eval_days']:g} evaluated days per scenario and seed, "
            f"difficulty {st['difficulty']}, scale {st['scale']:g}, "
            f"calendar {'on' if st['calendar'] else 'off'}, {st['runtime_s']:.0f} s")
