"""KPIs of docs/kpis.md: the catalogue and formulas (:mod:`kpis.formulas`) and the windowed
engine that computes them from events (:mod:`kpis.engine`). Pure Python: no Kafka, no Faust."""

from kpis.engine import KpiEngine, KpiSnapshot, snapshots_by_window
from kpis.formulas import (
    ALL,
    CHANNELS,
    KPI_BY_ID,
    KPIS,
    SEGMENTS,
    KpiDef,
    KpiInputs,
    evaluate,
    growth,
    ltv,
    ltv_cac,
    mean,
    monthly_value,
    ratio,
    subscription_days,
)

__all__ = [
    "ALL",
    "CHANNELS",
    "KPIS",
    "KPI_BY_ID",
    "SEGMENTS",
    "KpiDef",
    "KpiEngine",
    "KpiInputs",
    "KpiSnapshot",
    "evaluate",
    "growth",
    "ltv",
    "ltv_cac",
    "mean",
    "monthly_value",
    "ratio",
    "snapshots_by_window",
    "subscription_days",
]
