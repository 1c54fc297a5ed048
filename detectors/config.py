"""The one detector configuration file: load, merge over the defaults, validate.

``detectors/defaults.toml`` holds every threshold and detector choice with its default; a user
file (``PULSE_DETECTORS_CONFIG``) lists only what it changes, in the same tables. Unknown keys,
wrong types and impossible values raise ``ValueError`` naming the key and the fix.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.forecast import KINDS, SeasonalForecast
from detectors.registry import DETECTOR_NAMES
from detectors.rules import TargetRule
from detectors.series import DIRECTIONS, SeriesWatcher
from detectors.surprise import RobustSurprise

__all__ = [
    "AlertConfig", "KpiConfig", "DetectorConfig", "DEFAULTS_PATH", "load_config", "CSV_DETECTORS",
]

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
CSV_DETECTORS = DETECTOR_NAMES
ALERT_SERIES = ("all", "overall")
_RULE_KEYS = {"op": "above", "warning": 0.0, "critical": 0.0, "min_n": 0.0, "smooth": 1}


@dataclass(frozen=True)
class AlertConfig:
    """When a score becomes an alert (table ``[alert]``)."""

    warning_score: float
    critical_score: float
    warning_persistence: int
    relearn_after: int
    rules_scope: str
    sustained_min_z: float
    hold_score: float
    early_looks: int


@dataclass(frozen=True)
class KpiConfig:
    """How one KPI is watched (``[kpi_defaults]`` merged with ``[kpis.<id>]``)."""

    kind: str
    direction: str
    min_abs_change: float
    min_rel_change: float
    min_n: float
    forecast: dict[str, Any] = field(default_factory=dict)
    sustained_windows: int = 0
    alert_series: str = "all"
    relearn_after: int = 0


@dataclass(frozen=True)
class DetectorConfig:
    """Everything in the detector configuration file, validated.

    >>> cfg = load_config()
    >>> cfg.kpi("signups").kind, cfg.rules["churn_rate"]["warning"], cfg.csv_detector
    ('count', 0.05, 'surprise')
    >>> w = cfg.make_watcher("churn_rate", "all", "all")
    >>> w.kind, w.rule["op"], cfg.make_watcher("churn_rate", "smb", "all").rule is None
    ('level', 'above', True)
    """

    alert: AlertConfig
    forecast: dict[str, Any]
    kpi_defaults: KpiConfig
    kpis: dict[str, KpiConfig]
    rules: dict[str, dict[str, Any]]
    csv_detector: str
    csv: dict[str, dict[str, Any]]
    core: dict[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def kpi(self, name: str) -> KpiConfig:
        """The settings of KPI ``name`` (the defaults for a KPI the file does not list)."""
        return self.kpis.get(name, self.kpi_defaults)

    def make_watcher(self, kpi: str, segment: str = "all", channel: str = "all") -> SeriesWatcher:
        """A fresh :class:`SeriesWatcher` for one series, configured from this file."""
        k = self.kpi(kpi)
        overall = segment == "all" and channel == "all"
        rule = self.rules.get(kpi) if overall or self.alert.rules_scope == "all" else None
        a = self.alert
        return SeriesWatcher(
            kpi=kpi, kind=k.kind, direction=k.direction,
            forecast={**self.forecast, **k.forecast}, rule=dict(rule) if rule else None,
            warning_score=a.warning_score, critical_score=a.critical_score,
            warning_persistence=a.warning_persistence,
            relearn_after=k.relearn_after or a.relearn_after,
            min_abs_change=k.min_abs_change, min_rel_change=k.min_rel_change, min_n=k.min_n,
            sustained_windows=k.sustained_windows, sustained_min_z=a.sustained_min_z,
            hold_score=a.hold_score, core=dict(self.core), early_looks=a.early_looks)

    def alerts_on(self, kpi: str, segment: str = "all", channel: str = "all") -> bool:
        """Whether anomalies of this series are published (``alert_series`` of the KPI).

        >>> cfg = load_config()
        >>> cfg.alerts_on("churn_rate"), cfg.alerts_on("churn_rate", "new_grad", "all")
        (True, False)
        """
        return self.kpi(kpi).alert_series == "all" or (segment == "all" and channel == "all")


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"detector config file {str(path)!r} does not exist: "
                         "fix PULSE_DETECTORS_CONFIG or leave it empty for the defaults") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"detector config file {str(path)!r} is not valid TOML: {e}") from None


def _check_value(key: str, value: Any, default: Any) -> Any:
    """``value`` must have the type of ``default`` (an int may stand for a float)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"detector config key {key!r} must be a {type(default).__name__}, "
                         f"got {value!r}: fix it or remove the key to keep the default {default!r}")
    return value


def _merge_table(prefix: str, base: dict[str, Any], over: Any, schema: dict[str, Any]) -> None:
    if not isinstance(over, dict):
        raise ValueError(f"detector config key {prefix!r} must be a table ([{prefix}])")
    for k, v in over.items():
        key = f"{prefix}.{k}"
        if k not in schema:
            raise ValueError(f"unknown detector config key {key!r}: known keys of [{prefix}] are "
                             f"{', '.join(sorted(schema))}; fix the spelling or remove it")
        if isinstance(schema[k], dict):
            base.setdefault(k, {})
            _merge_table(key, base[k], v, schema[k])
        else:
            base[k] = _check_value(key, v, schema[k])


def _merge(defaults: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(defaults)
    forecast_schema = defaults["forecast"]
    kpi_schema = {**defaults["kpi_defaults"], "forecast": forecast_schema}
    for section, value in user.items():
        if section in ("kpis", "rules"):
            if not isinstance(value, dict):
                raise ValueError(f"detector config key {section!r} must be a table")
            for name, table in value.items():
                schema = kpi_schema if section == "kpis" else _RULE_KEYS
                target = merged[section].setdefault(name, {})
                if section == "rules" and not target and isinstance(table, dict):
                    missing = {"op", "warning", "critical"} - set(table)
                    if missing:
                        raise ValueError(f"detector config rule [rules.{name}] needs keys "
                                         f"{', '.join(sorted(missing))}")
                _merge_table(f"{section}.{name}", target, table, schema)
        elif section in defaults:
            _merge_table(section, merged[section], value, defaults[section])
        else:
            raise ValueError(f"unknown detector config table [{section}]: known tables are "
                             f"{', '.join(sorted(defaults))}")
    return merged


def _build(raw: dict[str, Any], source: str) -> DetectorConfig:
    a = raw["alert"]
    if not 0.0 < a["warning_score"] <= a["critical_score"] <= 1.0:
        raise ValueError("detector config keys 'alert.warning_score' and 'alert.critical_score' "
                         "need 0 < warning_score <= critical_score <= 1, got "
                         f"{a['warning_score']} and {a['critical_score']}")
    if not 0.0 < a["hold_score"] <= a["warning_score"]:
        raise ValueError("detector config key 'alert.hold_score' needs 0 < hold_score <= "
                         f"warning_score, got {a['hold_score']} and {a['warning_score']}")
    for k in ("warning_persistence", "relearn_after"):
        if a[k] < 1:
            raise ValueError(f"detector config key 'alert.{k}' must be >= 1, got {a[k]}")
    if a["early_looks"] < 0:
        raise ValueError("detector config key 'alert.early_looks' must be >= 0 (0: no early "
                         f"alerts), got {a['early_looks']}")
    if a["rules_scope"] not in ("overall", "all"):
        raise ValueError("detector config key 'alert.rules_scope' must be 'overall' or 'all', "
                         f"got {a['rules_scope']!r}")
    alert = AlertConfig(**a)

    def kpi_config(key: str, table: dict[str, Any]) -> KpiConfig:
        if table["kind"] not in KINDS:
            raise ValueError(f"detector config key '{key}.kind' must be one of {KINDS}, "
                             f"got {table['kind']!r}")
        if table["direction"] not in DIRECTIONS:
            raise ValueError(f"detector config key '{key}.direction' must be one of "
                             f"{DIRECTIONS}, got {table['direction']!r}")
        if table["alert_series"] not in ALERT_SERIES:
            raise ValueError(f"detector config key '{key}.alert_series' must be one of "
                             f"{ALERT_SERIES}, got {table['alert_series']!r}")
        if table["relearn_after"] < 0:
            raise ValueError(f"detector config key '{key}.relearn_after' must be >= 0, "
                             f"got {table['relearn_after']}")
        if table["sustained_windows"] < 0:
            raise ValueError(f"detector config key '{key}.sustained_windows' must be >= 0, "
                             f"got {table['sustained_windows']}")
        forecast = dict(table.get("forecast", {}))
        try:
            SeasonalForecast(kind=table["kind"], **{**raw["forecast"], **forecast})
        except ValueError as e:
            raise ValueError(f"detector config [{key}] / [forecast]: {e}") from None
        return KpiConfig(table["kind"], table["direction"], table["min_abs_change"],
                         table["min_rel_change"], table["min_n"], forecast,
                         table["sustained_windows"], table["alert_series"],
                         table["relearn_after"])

    defaults = kpi_config("kpi_defaults", raw["kpi_defaults"])
    kpis = {name: kpi_config(f"kpis.{name}", {**raw["kpi_defaults"], **t})
            for name, t in raw["kpis"].items()}
    rules = {}
    for name, rule in raw["rules"].items():
        full = {**_RULE_KEYS, **rule}
        try:
            TargetRule(**full)
        except ValueError as e:
            raise ValueError(f"detector config [rules.{name}]: {e}") from None
        rules[name] = full
    csv = raw["csv"]
    if csv["detector"] not in CSV_DETECTORS:
        raise ValueError(f"detector config key 'csv.detector' must be one of {CSV_DETECTORS}, "
                         f"got {csv['detector']!r}")
    params = {k: v for k, v in csv.items() if isinstance(v, dict)}
    core = dict(raw["core"])
    try:
        RobustSurprise(forecaster=SeasonalForecast(), robust_scores=False, **core)
    except ValueError as e:
        raise ValueError(f"detector config [core]: {e}") from None
    return DetectorConfig(alert, dict(raw["forecast"]), defaults, kpis, rules, csv["detector"],
                          params, core, source)


def load_config(path: str | None = None) -> DetectorConfig:
    """The defaults, with the TOML file at ``path`` (if any) merged over them, validated.

    >>> load_config().alert.warning_score
    0.5
    >>> import os, tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write("[alert]\\nwarning_scor = 0.6\\n")
    >>> load_config(f.name)
    Traceback (most recent call last):
    ValueError: unknown detector config key 'alert.warning_scor': known keys of [alert] are ...
    >>> os.unlink(f.name)
    """
    defaults = _read(DEFAULTS_PATH)
    if not path:
        return _build(defaults, "defaults")
    return _build(_merge(defaults, _read(Path(path))), str(path))
