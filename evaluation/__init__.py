"""How well the detector stage finds the simulator's labelled incidents (``pulse evaluate``).

- :mod:`evaluation.matching`: when an anomaly or alert series *matches* an incident, the one rule
  shared by the evaluation and the replay report.
- :mod:`evaluation.scoring`: recall, delays, episodes, precision and false alarms of one run.
- :mod:`evaluation.run`: simulating every scenario through the KPI engine and the detectors.
- :mod:`evaluation.report`: the table ``pulse evaluate`` prints.

Plain Python over ``simulator``, ``kpis``, ``detectors`` and ``core``: no Kafka, no Faust.
"""

from evaluation.matching import IncidentScope, delay_windows, scope_of
from evaluation.report import format_settings, format_table
from evaluation.run import SCENARIOS, START, run_evaluate
from evaluation.scoring import score

__all__ = ["SCENARIOS", "START", "IncidentScope", "delay_windows", "format_settings",
           "format_table", "run_evaluate", "scope_of", "score"]
