"""Anomaly events shaped like docs/anomalies.md, for the alerting tests."""

from __future__ import annotations

from datetime import UTC, datetime

HOUR = 3600.0
T0 = 1_795_255_200.0  # 2026-11-21T10:00:00Z, a window boundary

UNITS = {"payment_failure_rate": "ratio 0–1", "conversion_rate": "ratio", "revenue": "USD",
         "payments": "payments", "signups": "users", "churn_rate": "ratio per month"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anomaly(kpi: str, window: int, value: float, expected: float, *, severity: str = "critical",
            score: float = 0.95, segment: str = "all", channel: str = "all",
            detector: str = "forecast", spread: float = 0.1, contributors: list | None = None,
            history: bool = True) -> dict:
    """The anomaly of ``kpi`` in the ``window``-th hour after :data:`T0`."""
    ws = T0 + window * HOUR
    lower, upper = expected * (1 - spread), expected * (1 + spread)
    points = [{"window_start_ts": ws - (24 - i) * HOUR, "value": expected * (1 + 0.02 * (i % 3)),
               "expected": expected, "lower": lower, "upper": upper} for i in range(24)]
    return {
        "kpi": kpi, "segment": segment, "channel": channel,
        "window_start": iso(ws), "window_end": iso(ws + HOUR),
        "window_start_ts": ws, "window_end_ts": ws + HOUR,
        "value": value, "expected": expected, "lower": lower, "upper": upper,
        "score": score, "severity": severity, "direction": "up" if value > expected else "down",
        "detector": detector, "unit": UNITS.get(kpi, ""), "n": 500,
        "contributors": contributors or [], "history": points if history else [],
    }


def closed(window: int) -> dict:
    """The ``window_closed`` marker of the ``window``-th hour."""
    return {"kind": "window_closed", "window_end_ts": T0 + (window + 1) * HOUR}


def payment_outage(window: int) -> list[dict]:
    """One payment outage as the detectors see it: four KPIs in the same window."""
    return [
        anomaly("conversion_rate", window, 0.06, 0.15, severity="warning", score=0.81),
        anomaly("payment_failure_rate", window, 0.41, 0.02, score=0.99, spread=0.5),
        anomaly("payments", window, 40.0, 120.0, score=0.93),
        anomaly("revenue", window, 1400.0, 4100.0, score=0.9),
    ]
