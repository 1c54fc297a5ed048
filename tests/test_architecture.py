"""The import rules of docs/architecture.md, and the size rule of the agents."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA = {"stream", "faust", "aiokafka", "mode"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_plain_python_packages_never_import_kafka() -> None:
    for package in ("core", "kpis", "detectors", "alerting", "evaluation", "assistant",
                    "dashboard"):
        for path in _modules(package):
            assert not _imports(path) & KAFKA, path
    for path in _modules("simulator"):
        if path.name != "publisher.py":   # the one module of the simulator that talks Kafka
            assert not _imports(path) & KAFKA, path


def test_core_needs_only_the_standard_library() -> None:
    for path in _modules("core"):
        outside = _imports(path) - set(sys.stdlib_module_names) - {"core", "__future__"}
        assert not outside, (path, outside)


def test_agents_stay_small() -> None:
    for path in (ROOT / "stream" / "agents").glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 200, path
