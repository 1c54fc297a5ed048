"""The `docker compose up` deployment, checked where there is no Docker engine.

- docker-compose.yml parses, and its services, images, ports, volumes, env and dependencies are
  consistent with each other, with the Dockerfile, with Pulse's settings and CLI, and with the
  Prometheus and Grafana files under deploy/;
- ``promtool check config``, ``promtool check rules`` and ``promtool test rules`` pass (promtool
  comes from the Debian package ``prometheus``, installed by ``make test``; a missing promtool is
  a failure, not a skip);
- every metric name the Grafana dashboard and the Prometheus rules use is one a running worker
  really exports (a worker on the embedded broker, after a day of simulated events).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from simulator import Simulation
from simulator.publisher import publish_simulation
from stream.topics import SINGLE_PARTITION_TOPICS
from tests.conftest import Pipeline

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "pulse.json"

WORKERS = ("worker-1", "worker-2")
PULSE_SERVICES = (*WORKERS, "simulator")
PULSE_TOPICS = ("events", *SINGLE_PARTITION_TOPICS)
# settings the lead is adding; .env.example may mention them before stream/settings.py has them
PENDING_SETTINGS: set[str] = set()

HOUR, DAY = 3600.0, 86400.0
START = 1_794_000_000 // 3600 * 3600   # 2026-11-08


# --- YAML --------------------------------------------------------------------------------------
# PyYAML when it is installed; otherwise a small parser for the subset the deploy files use
# (block mappings and sequences, plain and quoted scalars, one-line flow sequences, | and >
# block scalars). test_fallback_yaml_agrees_with_pyyaml keeps the two in step.

def load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        return mini_yaml(path.read_text())
    return yaml.safe_load(path.read_text())


_KEY = re.compile(r"""^("[^"]*"|'[^']*'|[^\s"'#\[{&*!|>%@`-][^:#]*?)\s*:(\s|$)""")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " \t[,{:-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _scalar(s: str) -> Any:
    s = s.strip()
    if s.startswith('"'):
        return json.loads(s)
    if s.startswith("'"):
        assert s.endswith("'"), s
        return s[1:-1].replace("''", "'")
    if s[:1] in ("&", "*", "!", "{") or s.startswith("<<"):
        raise ValueError(f"YAML feature not supported by the fallback parser: {s!r}")
    if s.startswith("["):
        assert s.endswith("]"), f"multi-line flow sequences are not supported: {s!r}"
        items, cur, quote = [], "", None
        for ch in s[1:-1]:
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == ",":
                items.append(cur)
                cur = ""
                continue
            elif ch in "[{":
                raise ValueError(f"nested flow collections are not supported: {s!r}")
            cur += ch
        items.append(cur)
        return [_scalar(i) for i in items if i.strip()]
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    return s


class _MiniYaml:
    def __init__(self, text: str) -> None:
        self.raw = text.splitlines()
        self.i = 0

    def peek(self) -> tuple[int, str] | None:
        while self.i < len(self.raw):
            s = _strip_comment(self.raw[self.i])
            if s.strip() and s.strip() != "---":
                return len(s) - len(s.lstrip(" ")), s.strip()
            self.i += 1
        return None

    def node(self, indent: int) -> Any:
        nxt = self.peek()
        assert nxt is not None
        if nxt[1] == "-" or nxt[1].startswith("- "):
            return self.seq(indent)
        return self.mapping(indent)

    def seq(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while (n := self.peek()) and n[0] == indent and (n[1] == "-" or n[1].startswith("- ")):
            rest = n[1][1:].strip()
            if not rest:
                self.i += 1
                child = self.peek()
                out.append(self.node(child[0]) if child and child[0] > indent else None)
            elif _KEY.match(rest):   # "- key: value": a mapping whose first key is on this line
                col = indent + len(n[1]) - len(rest)
                self.raw[self.i] = " " * col + rest
                out.append(self.mapping(col))
            else:
                self.i += 1
                out.append(self.value(rest, indent))
        return out

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while (n := self.peek()) and n[0] == indent and not n[1].startswith("- "):
            m = _KEY.match(n[1])
            if not m:
                raise ValueError(f"line {self.i + 1}: not a `key: value` line: {n[1]!r}")
            key = _scalar(m.group(1))
            rest = n[1][m.end():].strip()
            self.i += 1
            if rest:
                out[key] = self.value(rest, indent)
                continue
            child = self.peek()
            if child and (child[0] > indent or (child[0] == indent and child[1].startswith("- "))):
                out[key] = self.node(child[0])
            else:
                out[key] = None
        return out

    def value(self, rest: str, indent: int) -> Any:
        if rest[0] not in "|>":
            return _scalar(rest)
        lines: list[str] = []
        while self.i < len(self.raw):
            line = self.raw[self.i]
            if line.strip() and len(line) - len(line.lstrip(" ")) <= indent:
                break
            lines.append(line)
            self.i += 1
        while lines and not lines[-1].strip():
            lines.pop()
        cut = min(len(x) - len(x.lstrip(" ")) for x in lines if x.strip())
        body = [x[cut:] for x in lines]
        text = "\n".join(body) if rest[0] == "|" else " ".join(x.strip() for x in body)
        return text if rest.endswith("-") else text + "\n"


def mini_yaml(text: str) -> Any:
    p = _MiniYaml(text)
    first = p.peek()
    if first is None:
        return None
    out = p.node(first[0])
    if p.peek() is not None:
        raise ValueError(f"line {p.i + 1}: unexpected indentation: {p.raw[p.i]!r}")
    return out


def test_fallback_yaml_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: the fallback parser is used")
    files = [COMPOSE, PROM_CONFIG, *RULES, *GRAFANA.glob("provisioning/*/*.yml")]
    for path in files:
        assert mini_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path


# --- docker-compose.yml ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume entry."""
    out = []
    for v in service.get("volumes") or []:
        assert isinstance(v, str), f"long volume syntax not expected here: {v!r}"
        source, target, *_mode = v.split(":")
        out.append((source, target))
    return out


def _host_path(compose: dict[str, Any], service: str, container_path: str) -> Path:
    """The repository path a bind mount of ``service`` shows at ``container_path``."""
    p = PurePosixPath(container_path)
    for source, target in _mounts(compose["services"][service]):
        if source.startswith((".", "/")) and (p == PurePosixPath(target)
                                              or PurePosixPath(target) in p.parents):
            return (ROOT / source / p.relative_to(target)).resolve()
    raise AssertionError(f"{service}: nothing of the repository is mounted at {container_path}")


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "kafka-init", *PULSE_SERVICES, "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana-oss:")
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image and not image.endswith(":latest") or "build" in svc, \
            f"{name}: pin the image version"
        for dep in svc.get("depends_on") or []:
            assert dep in services, f"{name} depends on unknown service {dep}"
    # one image for every Pulse service, built from this repository
    assert {services[s]["image"] for s in PULSE_SERVICES} == {"jobmetrics-pulse:latest"}


def test_compose_volumes_and_mounts(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in compose["services"].items():
        for source, target in _mounts(svc):
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    # every stateful service keeps its data in a named volume of its own
    for name, path in [("kafka", "/var/lib/kafka/data"), ("prometheus", "/prometheus"),
                       ("grafana", "/var/lib/grafana"), *[(w, "/data") for w in WORKERS]]:
        sources = [s for s, t in _mounts(compose["services"][name]) if t == path]
        assert len(sources) == 1 and sources[0] in declared, (name, path)
    own = [s for w in WORKERS for s, t in _mounts(compose["services"][w]) if t == "/data"]
    assert len(own) == len(set(own)), "workers must not share a data dir"
    shared = {w: [s for s, t in _mounts(compose["services"][w]) if t == "/data/checkpoints"]
              for w in WORKERS}   # ... but do share the partitions' checkpoints
    assert all(len(s) == 1 for s in shared.values()), shared
    assert len({s[0] for s in shared.values()}) == 1, shared
    kafka_env = _env(compose["services"]["kafka"])
    assert kafka_env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_compose_ports(compose: dict[str, Any]) -> None:
    host_ports: dict[int, str] = {}
    for name, svc in compose["services"].items():
        for spec in svc.get("ports") or []:
            assert isinstance(spec, str), f"{name}: quote port mappings ({spec!r})"
            *_ip, host, _container = spec.split(":")
            assert int(host) not in host_ports, f"host port {host}: {name} and {host_ports}"
            host_ports[int(host)] = name
    assert host_ports == {9094: "kafka", 9090: "prometheus", 3000: "grafana"}
    # the host port of Kafka is its EXTERNAL listener, advertised as localhost
    env = _env(compose["services"]["kafka"])
    advertised = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(x.split("://") for x in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(x.split(":") for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised["EXTERNAL"] == "localhost:9094" and listeners["EXTERNAL"] == ":9094"
    assert advertised["INTERNAL"] == "kafka:9092" and listeners["INTERNAL"] == ":9092"
    assert set(listeners) == set(protocols)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@kafka{listeners['CONTROLLER']}"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]


def test_compose_pulse_services(compose: dict[str, Any]) -> None:
    from pulse.cli import build_parser
    from stream.settings import describe_settings
    settings_env = {env for env, _default, _doc in describe_settings()}
    services = compose["services"]
    for name in PULSE_SERVICES:
        svc = services[name]
        assert (ROOT / svc["build"] / "Dockerfile").is_file(), name
        args = build_parser().parse_args(svc["command"])   # the CLI accepts the command
        env = _env(svc)
        assert set(env) <= settings_env, f"{name}: unknown settings {set(env) - settings_env}"
        deps = svc["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully", name
        if name in WORKERS:
            assert args.command == "worker"
            assert env["PULSE_KAFKA_BOOTSTRAP"] == "kafka:9092"
            assert int(env["PULSE_SESSION_TIMEOUT"]) >= 6, \
                "Kafka refuses sessions under group.min.session.timeout.ms (6 s by default)"
            assert svc["env_file"] == [{"path": ".env", "required": False}]
            assert str(env["PULSE_METRICS_PORT"]) in [str(p) for p in svc["expose"]]
            assert svc.get("init") is True
        else:
            assert args.command == "simulate" and args.broker == "kafka:9092"
            assert args.scenario == "mixed" and not args.max
    worker_envs = [_env(services[w]) for w in WORKERS]
    assert all(e == worker_envs[0] for e in worker_envs), "workers of one group, one config"
    assert worker_envs[0]["PULSE_APP_ID"]   # one consumer group: they share the partitions
    assert _env(services["simulator"])["PULSE_EVENTS_PARTITIONS"] == \
        worker_envs[0]["PULSE_EVENTS_PARTITIONS"]
    # Grafana's admin login comes from .env, never a literal in the compose file
    genv = _env(services["grafana"])
    assert genv["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GF_SECURITY_ADMIN_PASSWORD")


def test_kafka_init_creates_the_topics(compose: dict[str, Any]) -> None:
    svc = compose["services"]["kafka-init"]
    assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert compose["services"]["kafka"]["healthcheck"]["test"][0] == "CMD-SHELL"
    script = "\n".join(svc["command"]).replace("$$", "$")
    created = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"--create --if-not-exists --topic (\S+) --partitions (\d+) --replication-factor 1",
        script)}
    assert set(created) == set(PULSE_TOPICS)
    partitions = int(_env(compose["services"]["worker-1"])["PULSE_EVENTS_PARTITIONS"])
    assert created["events"] == partitions >= 2 * len(WORKERS)   # room to add workers
    assert all(created[t] == 1 for t in PULSE_TOPICS if t != "events")


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert 'ENTRYPOINT ["pulse"]' in lines
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    copied = set()
    for ln in lines:
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), src
                copied.add(src)
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied, "every package goes into the image"
    assert project["project"]["readme"] in copied
    assert "pip install ." in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored


def test_env_example_and_gitignore() -> None:
    from stream.settings import describe_settings
    settings_env = {env for env, _default, _doc in describe_settings()}
    secrets = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "ANTHROPIC_API_KEY"}
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if not m:
            continue
        name, value = m.groups()
        names.add(name)
        assert (name in settings_env or name in PENDING_SETTINGS or name.startswith("GF_")
                or name == "KAFKA_CLUSTER_ID"), f".env.example: {name} is no setting"
        if name in secrets:
            assert value == "", f".env.example must not hold a value for {name}"
    assert secrets <= names
    # exactly_once does not work with Faust 0.15.3 (tests/real_kafka): never offered as a switch
    assert not re.search(r"^# ?PULSE_PROCESSING_GUARANTEE=exactly_once$",
                         (ROOT / ".env.example").read_text(), re.M)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# --- Prometheus and Grafana files --------------------------------------------------------------

def test_prometheus_targets_are_the_workers(compose: dict[str, Any]) -> None:
    config = load_yaml(PROM_CONFIG)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = {t for sc in jobs["pulse"]["static_configs"] for t in sc["targets"]}
    services = compose["services"]
    workers = sorted(s for s, svc in services.items() if (svc.get("command") or [""])[0] ==
                     "worker")
    assert workers == sorted(WORKERS)
    assert targets == {f"{w}:{_env(services[w])['PULSE_METRICS_PORT']}" for w in workers}
    prom = services["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert _host_path(compose, "prometheus", "/etc/prometheus/prometheus.yml") == PROM_CONFIG
    # rule_files are relative to the config file: the same files here and in the container
    in_container = PurePosixPath("/etc/prometheus")
    for pattern in config["rule_files"]:
        host_dir = _host_path(compose, "prometheus", str(in_container / pattern).rsplit("/", 1)[0])
        assert sorted(host_dir.glob(pattern.rsplit("/", 1)[1])) == RULES
    assert RULES


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    from alerting.slack import GRAFANA_DASHBOARD_PATH
    prov = _host_path(compose, "grafana", "/etc/grafana/provisioning")
    assert prov == (GRAFANA / "provisioning").resolve()
    sources = [ds for f in sorted((prov / "datasources").glob("*.yml"))
               for ds in load_yaml(f)["datasources"]]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    prom_port = compose["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert sources[0]["url"] == f"http://prometheus:{prom_port}"
    providers = [p for f in sorted((prov / "dashboards").glob("*.yml"))
                 for p in load_yaml(f)["providers"]]
    assert len(providers) == 1
    dash_dir = _host_path(compose, "grafana", providers[0]["options"]["path"])
    assert DASHBOARD in list(dash_dir.glob("*.json"))
    home = _env(compose["services"]["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(compose, "grafana", home) == DASHBOARD

    dash = json.loads(DASHBOARD.read_text())
    # alerts link to /d/<uid>/<slug>?var-kpi=…&var-segment=…&var-channel=…
    assert GRAFANA_DASHBOARD_PATH == f"/d/{dash['uid']}/jobmetrics-pulse"
    assert dash["uid"] == "pulse-kpis" and dash["title"] == "JobMetrics Pulse"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) == {"kpi", "segment", "channel"}
    for v in variables.values():
        assert v["type"] == "query" and v["definition"].startswith("label_values(pulse_kpi")
    assert variables["segment"]["current"]["value"] == ["all"]
    uid = sources[0]["uid"]
    panels = _panels(dash)
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == uid, p["title"]
            assert all(t["datasource"]["uid"] == uid for t in p["targets"]), p["title"]
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            assert a["datasource"]["uid"] == uid
    exprs = " ".join(_dashboard_exprs(dash))
    kpi_panels = [p for p in panels if p.get("repeat") == "kpi"]
    assert kpi_panels and all('segment=~"$segment"' in t["expr"] and 'channel=~"$channel"'
                              in t["expr"] for p in kpi_panels for t in p["targets"])
    assert "increase(pulse_anomalies_total" in exprs
    assert any("pulse_alert_changes_total" in a.get("expr", "")
               for a in dash["annotations"]["list"])
    for health in ("pulse_events_total", "pulse_processing_lag_seconds",
                   "pulse_dead_letters_total", "pulse_slack_calls_total",
                   "pulse_llm_calls_total", "pulse_slack_call_seconds_bucket",
                   "pulse_llm_call_seconds_bucket"):
        assert health in exprs, health
    # no two panels overlap on the 24-column grid
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


def _require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, (f"{tool} not found: install the Debian package `prometheus` "
                  "(`make promtool`, which `make test` runs)")
    return path


def _promtool(*args: str) -> None:
    proc = subprocess.run([_require("promtool"), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_check_config() -> None:
    _promtool("check", "config", str(PROM_CONFIG))


def test_promtool_check_rules() -> None:
    _promtool("check", "rules", *map(str, RULES))


def test_promtool_rule_unit_tests() -> None:
    assert RULE_TESTS
    _promtool("test", "rules", *map(str, RULE_TESTS))


# --- metric names against a running worker -----------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}
# series Prometheus makes itself for every target
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    >>> sorted(promql_metric_names(
    ...     'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"$y"}[$__rate_interval])))'
    ...     ' / on (instance) group_left b_total offset 5m > 1e-9'))
    ['a_bucket', 'b_total']
    >>> sorted(promql_metric_names('label_values(pulse_kpi{kpi=~"$kpi"}, segment)'))
    ['pulse_kpi']
    """
    e = re.sub(r"label_values\(\s*([^,()]+?)(\{[^}]*\})?\s*,\s*\w+\s*\)", r" \1 ", expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'", " ", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = re.sub(r"(?<![\w$])\d+(\.\d*)?([eE][-+]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"\$?[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group()
        if tok.startswith("$") or tok in _PROMQL_WORDS or e[m.end():].lstrip().startswith("("):
            continue
        names.add(tok)
    return names


def exported_names(text: str) -> set[str]:
    """Metric names in a /metrics exposition: families (also those without samples yet, from
    their # TYPE line; a histogram's _bucket, _sum and _count) and every sample name."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {f"{name}_sum", f"{name}_count"}
                names |= {f"{name}_bucket"} if kind == "histogram" else set()
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _dashboard_exprs(dash: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", []) if t.get("expr")]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if a.get("expr")]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    return exprs


def _rule_exprs() -> list[str]:
    return [r["expr"] for f in RULES for g in load_yaml(f)["groups"] for r in g["rules"]]


def publish_day(p: Pipeline, days: float = 1.0, seed: int = 7) -> int:
    """A day of simulated events to the pipeline, closing every window; the events sent."""
    async def run() -> int:
        sim = Simulation(seed=seed, start_ts=START, scenario="none")
        end = START + days * DAY
        pub = await publish_simulation(p.bootstrap, p.topic("events"), sim, START, end,
                                       watermark=end + 600)
        return pub.sent
    return asyncio.run(run())


def metric_value(text: str, sample: str) -> float | None:
    m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def wait_windows(p: Pipeline, windows: int, timeout: float = 90.0) -> str:
    """/metrics once the worker has closed ``windows`` KPI windows."""
    deadline = time.monotonic() + timeout
    while True:
        text = p.metrics_text()
        if (metric_value(text, "pulse_windows_closed_total") or 0) >= windows:
            return text
        assert time.monotonic() < deadline, \
            f"{windows} windows not closed in {timeout} s\n{p.worker.log_tail()}"
        time.sleep(0.5)


def test_dashboard_and_rules_use_only_exported_metrics(pipeline: Pipeline) -> None:
    sent = publish_day(pipeline)
    assert sent > 5_000
    text = wait_windows(pipeline, 24)
    exported = exported_names(text) | PROMETHEUS_SERIES
    # the worker really is working: KPI series with the dashboard's labels, events by kind
    assert re.search(r'^pulse_kpi\{channel="all",kpi="scans",segment="all"\} ', text, re.M)
    assert re.search(r'^pulse_events_total\{kind="scan"\} ', text, re.M)

    dash = json.loads(DASHBOARD.read_text())
    used = {"dashboard": set().union(*map(promql_metric_names, _dashboard_exprs(dash))),
            "rules": set().union(*map(promql_metric_names, _rule_exprs()))}
    assert len(used["dashboard"]) >= 15 and len(used["rules"]) >= 6
    for where, names in used.items():
        missing = sorted(names - exported)
        assert not missing, f"{where} uses metrics no worker exports: {missing}"
