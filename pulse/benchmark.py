"""``pulse benchmark DIR``: score detectors over labelled CSVs and print both scorings."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from detectors.corpus import benchmark, format_report, load_dir
from detectors.csvscore import CsvError
from detectors.registry import DETECTOR_NAMES
from pulse.progress import ProgressBar

__all__ = ["run"]


def run(root: str, detectors: Sequence[str] = (), json_path: str | None = None,
        per_file: bool = True, quiet: bool = False) -> int:
    """Load, score, print the tables, write ``json_path``; an exit code."""
    names = list(detectors) or [DETECTOR_NAMES[0]]
    if names == ["all"]:
        names = list(DETECTOR_NAMES)
    unknown = [n for n in names if n not in DETECTOR_NAMES]
    if unknown:
        print(f"pulse benchmark: error: unknown detector {unknown[0]!r}: choose from "
              f"{', '.join(DETECTOR_NAMES)} or all", file=sys.stderr)
        return 2
    try:
        series = load_dir(root)
    except (CsvError, OSError) as e:
        print(f"pulse benchmark: error: {e}", file=sys.stderr)
        return 2
    total = len(series) * len(names)
    bar = ProgressBar("scoring", unit="files", quiet=quiet)
    done = [0]

    def progress(label: str) -> None:
        bar.update(done[0] / total, done[0], label[-40:])
        done[0] += 1

    result = benchmark(series, names, progress=progress)
    bar.update(1.0, total, force=True)
    bar.close()
    print(format_report(result, per_file=per_file))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
