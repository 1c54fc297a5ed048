"""KPIs of docs/kpis.md: the catalogue and formulas (:mod:`kpis.formulas`), the windowed
engine that computes them from events (:mod:`kpis.engine`) and the per-user trackers of the
signup funnel (:mod:`kpis.funnel`) and weekly cohorts (:mod:`kpis.cohorts`). Pure Python: no
Kafka, no Faust."""

from core.vocabulary import ALL, CHANNELS, SEGMENTS
from kpis.cohorts import CohortTracker, cohort_of
from kpis.engine import KpiEngine, KpiSnapshot, snapshots_by_window
from kpis.formulas import (
    COHORT_KPIS,
    FUNNEL_INPUTS,
    KPI_BY_ID,
    KPIS,
    KpiDef,
    KpiInputs,
    cohort_value,
    evaluate,
    growth,
    ltv,
    ltv_cac,
    mean,
    monthly_value,
    ratio,
    subscription_days,
)
from kpis.funnel import FunnelTracker

__all__ = ["ALL", "CHANNELS", "SEGMENTS", "CohortTracker", "FunnelTracker", "KpiEngine",
           "KpiSnapshot", "cohort_of", "snapshots_by_window",
           # the catalogue and formulas (kpis.formulas)
           "COHORT_KPIS", "FUNNEL_INPUTS", "KPIS", "KPI_BY_ID", "KpiDef", "KpiInputs",
           "cohort_value", "evaluate", "growth", "ltv", "ltv_cac", "mean", "monthly_value",
           "ratio", "subscription_days"]
