"""KPIs of docs/kpis.md: the catalogue and formulas (:mod:`kpis.formulas`); the event-time
windows of one input partition (:mod:`kpis.windows`), which hand integer rows
(:mod:`kpis.rows`) to the merger that adds partitions up and applies the formulas
(:mod:`kpis.merger`); both in one process as :class:`KpiEngine` (:mod:`kpis.engine`); the
per-user trackers of the signup funnel (:mod:`kpis.funnel`) and weekly cohorts
(:mod:`kpis.cohorts`). Pure Python: no Kafka, no Faust."""

from core.vocabulary import ALL, CHANNELS, SEGMENTS
from kpis.cohorts import CohortTracker, cohort_of
from kpis.engine import KpiEngine
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
from kpis.merger import KpiSnapshot, snapshots_by_window

__all__ = ["ALL", "CHANNELS", "SEGMENTS", "CohortTracker", "FunnelTracker", "KpiEngine",
           "KpiSnapshot", "cohort_of", "snapshots_by_window",
           # the catalogue and formulas (kpis.formulas)
           "COHORT_KPIS", "FUNNEL_INPUTS", "KPIS", "KPI_BY_ID", "KpiDef", "KpiInputs",
           "cohort_value", "evaluate", "growth", "ltv", "ltv_cac", "mean", "monthly_value",
           "ratio", "subscription_days"]
