"""A real Prometheus (the Debian package's server) scrapes a running worker on the embedded broker.

- Before any event, the worker already exports every ``pulse_*`` series the Grafana dashboard and
  the Prometheus rules use, the counters of things that did not happen yet at 0 for each value of
  their closed label sets; the dashboard's panels have data and no rule fires.
- After a day of events, its HTTP API returns the KPI series with the value the worker published
  to the ``kpis`` topic.
- The label values that only string literals spell (alert statuses, call outcomes, dead-letter
  reasons) are read from the code that passes them, so stream/metrics.py cannot drift from it.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerting.policies import SEVERITY_RANK
from core.vocabulary import EVENT_KINDS
from kpis.formulas import KPIS
from kpis.messages import is_running
from stream import metrics
from stream.broker import free_port
from stream.checkpoint import REFUSED_REASONS
from stream.events import DEAD_LETTER_REASONS
from stream.worker_process import die_with_parent
from tests.conftest import Pipeline
from tests.kafka_helpers import read_topic
from tests.test_deploy import (
    DASHBOARD,
    ROOT,
    RULES,
    _dashboard_exprs,
    _panels,
    _require,
    _rule_exprs,
    load_yaml,
    metric_value,
    promql_metric_names,
    publish_day,
    wait_windows,
)

SCANS = 'pulse_kpi{kpi="scans",segment="all",channel="all"}'


class PrometheusServer:
    """``prometheus`` on a free loopback port, scraping ``targets`` every second."""

    def __init__(self, targets: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({   # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "pulse",
                                "static_configs": [{"targets": targets}]}],
        }))
        self.log_path = workdir / "prometheus.log"
        self.cmd = [_require("prometheus"), f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir,
                                            preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"prometheus exited\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready\n{self.log_tail()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def prometheus(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[PrometheusServer]:
    server = PrometheusServer([f"127.0.0.1:{pipeline.worker.metrics_port}"],
                              tmp_path_factory.mktemp("prometheus"))
    try:
        yield server.start()
    finally:
        server.stop()
        assert server.process is None


# --- a fresh worker: every series the dashboard and the rules use, before any event ------------

# Gauges whose series only data makes (a KPI's value, a cohort's, a partition's backlog): 0 would
# be a false reading, so a fresh worker declares them (# TYPE) with no series yet.
UNTIL_DATA = {"pulse_kpi", "pulse_cohort_kpi", "pulse_consumer_lag_messages"}
SAMPLE_SUFFIXES = {"counter": ("_total",), "gauge": ("",),
                   "histogram": ("_bucket", "_sum", "_count")}


def _used_names() -> dict[str, set[str]]:
    """The ``pulse_*`` metric names in the dashboard's and the rules' PromQL."""
    dash = json.loads(DASHBOARD.read_text())
    return {where: {n for e in exprs for n in promql_metric_names(e) if n.startswith("pulse_")}
            for where, exprs in [("dashboard", _dashboard_exprs(dash)),
                                 ("rules", _rule_exprs())]}


def closed_label_sets() -> dict[str, set[frozenset[tuple[str, str]]]]:
    """Counter sample -> the label sets its series have from the start, each value read from
    where it is made (constants, or the literals of the code that passes it)."""
    def one(label: str, values: Any) -> set[frozenset[tuple[str, str]]]:
        return {frozenset({(label, v)}) for v in values}

    outcomes = observer_outcomes()
    return {
        "pulse_events_total": one("kind", EVENT_KINDS),
        "pulse_dead_letters_total": one("reason", dead_letter_reasons()),
        "pulse_anomalies_total": {frozenset({("kpi", k.id), ("severity", s)})
                                  for k in KPIS for s in SEVERITY_RANK},
        "pulse_alert_changes_total": one("status", alert_statuses()),
        # stream/agents/alerts.py record_call: "slack" to the Slack counter, the rest to the LLM's
        "pulse_slack_calls_total": one("outcome", {o for s, o in outcomes if s == "slack"}),
        "pulse_llm_calls_total": one("outcome", {o for s, o in outcomes if s != "slack"}),
        "pulse_state_files_refused_total": one("reason", refused_reasons()),
    }


def _samples(text: str) -> tuple[dict[str, str], dict[str, list[tuple[dict[str, str], float]]]]:
    """(sample name -> its family's type, for every declared family; sample name -> series)."""
    declared: dict[str, str] = {}
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            declared[family.name + suffix] = family.type
        for s in family.samples:
            series[s.name].append((s.labels, s.value))
    return declared, series


def _grafana(expr: str) -> str:
    """A dashboard expression as Grafana sends it (one KPI, the overall series, 1 m rates)."""
    for var, value in [("$__rate_interval", "1m"), ("$kpi", KPIS[0].id), ("$segment", "all"),
                       ("$channel", "all")]:
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def test_a_fresh_worker_exports_what_the_dashboard_and_rules_use(
        pipeline: Pipeline, prometheus: PrometheusServer) -> None:
    declared, series = _samples(pipeline.metrics_text(timeout=60))
    assert series["pulse_messages_total"] == [({}, 0.0)], \
        "not a fresh worker: this test runs before the module's tests that publish events"

    used = _used_names()
    assert len(used["dashboard"]) >= 15 and len(used["rules"]) >= 6, used
    for where, names in used.items():
        for name in sorted(names):
            assert name in declared, f"{where} uses {name}, which the worker does not declare"
            has_series = bool(series.get(name))
            if name in UNTIL_DATA:
                assert declared[name] == "gauge" and not has_series, \
                    f"{name} has series before any event: take it out of UNTIL_DATA"
            else:
                assert has_series, f"{where} uses {name}: no series before any event"
    assert UNTIL_DATA <= used["dashboard"] | used["rules"], "exempt but used nowhere"

    # counters of things that did not happen yet: at 0, every labelled one for each closed value
    counters = {n for n, kind in declared.items() if kind == "counter" and n.startswith("pulse_")}
    assert counters >= {"pulse_events_total", "pulse_messages_total"}
    for name in counters:
        values = [v for _, v in series.get(name, [])]
        assert values, f"{name}: a labelled counter with no series (give it its label values)"
        assert set(values) == {0.0}, f"{name} is {values} before any event"
    labelled = {n for n in counters if any(labels for labels, _ in series[n])}
    expected = closed_label_sets()
    assert labelled == set(expected)
    for name, label_sets in expected.items():
        got = {frozenset(labels.items()) for labels, _ in series[name]}
        assert got == label_sets, \
            f"{name}: missing {label_sets - got}, not from the code {got - label_sets}"

    # Prometheus has data for every panel (0 for the counters, not "No data"), no rule fires
    dash = json.loads(DASHBOARD.read_text())
    panels = [(p["title"], _grafana(t["expr"])) for p in _panels(dash)
              for t in p.get("targets", []) if t.get("expr")
              and not {n for n in promql_metric_names(t["expr"]) if n.startswith("pulse_")}
              <= UNTIL_DATA]
    assert len(panels) >= 15
    deadline = time.monotonic() + 30
    while no_data := [title for title, expr in panels if not prometheus.query(expr)]:
        assert time.monotonic() < deadline, f"panels with no data: {no_data}"
        time.sleep(0.5)
    rules = [r for f in RULES for g in load_yaml(f)["groups"] for r in g["rules"]]
    firing = [r["alert"] for r in rules if prometheus.query(r["expr"])]
    assert not firing, f"rules firing on an idle fresh worker: {firing}"


def _last_scans(pipeline: Pipeline, windows: int) -> tuple[float, float]:
    """(window end, value) of the last closed window's overall scans, from the kpis topic
    (final values only: an open window's running values, with ``as_of``, are not gauges)."""
    def final_scans(m: list[dict]) -> list[dict]:
        return [d for d in m if d.get("kpi") == "scans" and not is_running(d)]

    msgs = asyncio.run(read_topic(
        pipeline.bootstrap, pipeline.topic("kpis"), timeout=60,
        until=lambda m: len(final_scans(m)) >= windows))
    scans = final_scans(msgs)
    assert len(scans) == windows
    last = max(scans, key=lambda d: d["window_end_ts"])
    [value] = [s["value"] for s in last["series"] if s["segment"] == s["channel"] == "all"]
    return last["window_end_ts"], float(value)


def test_prometheus_scrapes_the_kpis_the_worker_published(
        pipeline: Pipeline, prometheus: PrometheusServer) -> None:
    publish_day(pipeline, seed=13)
    text = wait_windows(pipeline, 24)
    window_end, want = _last_scans(pipeline, 24)
    assert want > 0
    assert metric_value(text, 'pulse_kpi{channel="all",kpi="scans",segment="all"}') == want

    # Prometheus scrapes every second: bounded wait for a sample taken after the last window
    deadline = time.monotonic() + 30
    while True:
        result = prometheus.query(SCANS)
        if result and float(result[0]["value"][1]) == want:
            break
        assert time.monotonic() < deadline, \
            f"Prometheus has {result}, the worker published {want}\n{prometheus.log_tail()}"
        time.sleep(0.5)
    [series] = result
    assert series["metric"] == {"__name__": "pulse_kpi", "kpi": "scans", "segment": "all",
                                "channel": "all", "job": "pulse",
                                "instance": f"127.0.0.1:{pipeline.worker.metrics_port}"}

    # the target is healthy, and the events counted reached Prometheus too
    [up] = prometheus.query('up{job="pulse"}')
    assert up["value"][1] == "1"
    [events] = prometheus.query('sum(pulse_events_total{kind="scan"})')
    assert float(events["value"][1]) == metric_value(text, 'pulse_events_total{kind="scan"}')
    [watermark] = prometheus.query("pulse_event_time_watermark_seconds")
    assert float(watermark["value"][1]) == window_end


# --- the label values only string literals spell -----------------------------------------------

Spec = tuple[int, str]            # an argument: its position in a call, and its name
Fn = ast.FunctionDef | ast.AsyncFunctionDef


def _called(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _params(fn: Fn) -> dict[str, Spec]:
    args = [*fn.args.posonlyargs, *fn.args.args]
    if args and args[0].arg in ("self", "cls"):
        args = args[1:]
    return {a.arg: (i, a.arg) for i, a in enumerate(args)} | \
        {a.arg: (-1, a.arg) for a in fn.args.kwonlyargs}


def _argument(call: ast.Call, spec: Spec) -> ast.expr:
    index, name = spec
    if 0 <= index < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args):
        return call.args[index]
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    raise AssertionError(f"line {call.lineno}: {ast.unparse(call)} does not pass {name}")


def _assigned(fn: Fn | None, name: str) -> list[ast.expr]:
    """The values ``fn`` assigns to the local ``name``."""
    if fn is None:
        return []
    return [node.value for node in ast.walk(fn) if isinstance(node, ast.Assign | ast.AnnAssign)
            and node.value is not None
            and any(isinstance(t, ast.Name) and t.id == name
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]


class Literals:
    """The string literals that reach the arguments of a function in some source files: through
    constants, ``a if c else b``, local variables, tuples returned by a function, and the
    caller's arguments when a function passes its own parameter on. Anything else is an error,
    so code that computes a label value fails the test instead of hiding it. Functions are
    known by name only (two methods of one name are taken as one)."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.calls: dict[str, list[tuple[Fn | None, ast.Call]]] = defaultdict(list)
        self.defs: dict[str, list[Fn]] = defaultdict(list)
        for path in files:
            self._index(ast.parse(path.read_text(), str(path)), None)

    @classmethod
    def under(cls, *folders: str) -> Literals:
        return cls(p for folder in folders for p in sorted((ROOT / folder).rglob("*.py")))

    def _index(self, node: ast.AST, fn: Fn | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                self.defs[child.name].append(child)
                self._index(child, child)
                continue
            if isinstance(child, ast.Call) and (name := _called(child)):
                self.calls[name].append((fn, child))
            self._index(child, fn)

    def reaching(self, func: str, specs: tuple[Spec, ...], depth: int = 0
                 ) -> set[tuple[str, ...]]:
        """Every combination of strings the calls of ``func`` pass as ``specs``."""
        assert depth < 5 and self.calls[func], f"no calls of {func} (or passed on too deep)"
        out: set[tuple[str, ...]] = set()
        for fn, call in self.calls[func]:
            nodes = [_argument(call, spec) for spec in specs]
            params = _params(fn) if fn is not None else {}
            passed = {i: params[n.id] for i, n in enumerate(nodes)   # the caller's arguments
                      if isinstance(n, ast.Name) and n.id in params and not _assigned(fn, n.id)}
            upstream = ({()} if fn is None or not passed
                        else self.reaching(fn.name, tuple(passed.values()), depth + 1))
            for up in upstream:
                given = dict(zip(passed, up, strict=True))
                choices = [{given[i]} if i in given else self.values(n, fn)
                           for i, n in enumerate(nodes)]
                out |= set(itertools.product(*choices))
        return out

    def values(self, node: ast.expr, fn: Fn | None) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return self.values(node.body, fn) | self.values(node.orelse, fn)
        if isinstance(node, ast.Name) and (assigned := _assigned(fn, node.id)):
            return set().union(*(self.values(v, fn) for v in assigned))
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)
                and (assigned := _assigned(fn, node.value.id))):
            return set().union(*(self.returned(v, node.slice.value) for v in assigned))
        raise AssertionError(f"line {node.lineno}: cannot tell which strings "
                             f"{ast.unparse(node)} holds")

    def returned(self, node: ast.expr, index: int) -> set[str]:
        """Item ``index`` of the tuples the function called in ``node`` returns."""
        name = _called(node) if isinstance(node, ast.Call) else None
        assert name and self.defs[name], f"line {node.lineno}: {ast.unparse(node)} is no call"
        out: set[str] = set()
        for fn in self.defs[name]:
            for ret in (r for r in ast.walk(fn) if isinstance(r, ast.Return)):
                v = ret.value
                if v is None or isinstance(v, ast.Constant) and v.value is None:
                    continue
                out |= (self.values(v.elts[index], fn) if isinstance(v, ast.Tuple)
                        else self.returned(v, index))
        return out


def alert_statuses() -> set[str]:
    """``AlertChange.status`` values, as alerting/ builds its changes."""
    return {s for (s,) in Literals.under("alerting").reaching("AlertChange", ((0, "status"),))}


def observer_outcomes() -> set[tuple[str, str]]:
    """(service, outcome) pairs alerting/ and stream/ report to an ``Observer``."""
    pairs = Literals.under("alerting", "stream").reaching(
        "observer", ((0, "service"), (1, "outcome")))
    return {(s, o) for s, o in pairs}


def dead_letter_reasons() -> set[str]:
    """Reasons of the ``Rejected`` payloads stream/ makes (the dead letters' label)."""
    return {r for (r,) in Literals.under("stream").reaching("Rejected", ((0, "reason"),))}


def refused_reasons() -> set[str]:
    """Reasons of the ``Refused`` state files stream/checkpoint.py makes (the metric's label)."""
    return {r for (r,) in Literals.under("stream").reaching("Refused", ((0, "reason"),))}


def test_label_values_in_metrics_are_the_ones_the_code_passes() -> None:
    from detectors.rules import SEVERITIES
    from detectors.series import _RANK
    assert set(metrics.ALERT_STATUSES) == alert_statuses() == {"open", "updated", "resolved"}
    pairs = observer_outcomes()
    assert {s for s, _ in pairs} == {"slack", "llm"}
    assert {o for s, o in pairs if s == "slack"} == set(metrics.SLACK_OUTCOMES)
    assert {o for s, o in pairs if s == "llm"} == set(metrics.LLM_OUTCOMES)
    assert dead_letter_reasons() == set(DEAD_LETTER_REASONS)
    assert refused_reasons() == set(REFUSED_REASONS)
    assert set(metrics.SEVERITIES) == set(SEVERITIES) == set(_RANK) - {None}
    for values in (metrics.ALERT_STATUSES, metrics.SLACK_OUTCOMES, metrics.LLM_OUTCOMES,
                   metrics.SEVERITIES, DEAD_LETTER_REASONS):
        assert len(set(values)) == len(values), values


def test_literals_follows_what_it_says_and_refuses_the_rest(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def check(x):\n"
        "    if x: return 'a', 'why'\n"
        "    return inner(x)\n"
        "def inner(x):\n"
        "    if x: return None\n"
        "    return 'b', 'why'\n"
        "def report(service, outcome):\n"
        "    sink(service, outcome)\n"
        "def go(flag):\n"
        "    problem = check(flag)\n"
        "    sink('s', 'p' if flag else 'q')\n"
        "    report('t', problem[0])\n")
    both = ((0, "service"), (1, "outcome"))
    assert Literals([source]).reaching("sink", both) == \
        {("s", "p"), ("s", "q"), ("t", "a"), ("t", "b")}
    with pytest.raises(AssertionError, match="no calls"):
        Literals([source]).reaching("nowhere", both)
    source.write_text(source.read_text() + "def computed(k):\n    sink('s', k.upper())\n")
    with pytest.raises(AssertionError, match=r"cannot tell which strings k.upper\(\) holds"):
        Literals([source]).reaching("sink", both)
