"""Deterministic event stream of a job-search SaaS, with labelled incidents.

``Simulation(seed, start_ts, scenario).advance(until_ts)`` returns the events of docs/events.md
(signup, scan, payment, cancel, spend, activity) up to ``until_ts``; ``.incidents`` are the
ground-truth labels. Watermarks are the publisher's job, not the simulator's.
"""

from core.vocabulary import CHANNELS, PLANS, SEGMENTS
from simulator.generator import Simulation
from simulator.model import BusinessModel
from simulator.scenarios import (
    DIFFICULTIES,
    INCIDENT_KINDS,
    SCENARIOS,
    Incident,
    plan_incidents,
)

__all__ = [
    "CHANNELS",
    "DIFFICULTIES",
    "INCIDENT_KINDS",
    "PLANS",
    "SCENARIOS",
    "SEGMENTS",
    "BusinessModel",
    "Incident",
    "Simulation",
    "plan_incidents",
]
