"""``pulse benchmark DIR``: score detectors over a directory of labelled CSVs, both scorings.

Each CSV has a header with a time column (``timestamp`` or ``TimeStamp``), ``value`` and
``label`` (1 for an anomalous row), in any case and order; values may be quoted. Every file gets
a fresh detector that scores each row before learning it (causal, as ``pulse detect``), then
:mod:`detectors.scoring` judges all files with one threshold per scoring.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from detectors.csvscore import CsvError, parse_timestamp, parse_value
from detectors.registry import DETECTOR_NAMES, make_detector
from detectors.scoring import Scored, delay_for_cadence, nab_score, point_adjusted_f1

__all__ = ["LabelledSeries", "load_labelled", "load_dir", "score_series", "benchmark",
           "format_report"]


@dataclass
class LabelledSeries:
    """One labelled CSV in memory."""

    name: str
    ts: list[float]
    values: list[float]      # NaN where the value is missing or not a number
    labels: np.ndarray       # bool

    @property
    def cadence(self) -> float:
        """Median seconds between rows (0 for fewer than two rows)."""
        if len(self.ts) < 2:
            return 0.0
        return float(np.median(np.diff(np.asarray(self.ts))))


def _column(names: list[str], *wanted: str) -> int | None:
    for w in wanted:
        if w in names:
            return names.index(w)
    return None


def load_labelled(path: str | Path, name: str | None = None) -> LabelledSeries:
    """Read one ``timestamp,value,label`` CSV; :class:`~detectors.csvscore.CsvError` if not one."""
    path = Path(path)
    ts: list[float] = []
    values: list[float] = []
    labels: list[bool] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None) or []
            names = [h.strip().lower() for h in header]
            i_ts = _column(names, "timestamp", "time", "ts")
            i_v = _column(names, "value")
            i_l = _column(names, "label", "is_anomaly", "anomaly")
            if i_ts is None or i_v is None or i_l is None:
                raise CsvError(f"{path}: needs a header with timestamp, value and label columns, "
                               f"found {header!r}")
            last = 0.0
            for row in reader:
                if not row:
                    continue
                t = parse_timestamp(row[i_ts]) if len(row) > i_ts else None
                last = last if t is None else t
                ts.append(last)
                values.append(parse_value(row[i_v]) if len(row) > i_v else math.nan)
                lab = row[i_l].strip() if len(row) > i_l else "0"
                labels.append(lab not in ("", "0", "0.0", "false", "False"))
    except UnicodeDecodeError:
        raise CsvError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise CsvError(f"{path}: not a readable CSV: {e}") from None
    return LabelledSeries(name or path.stem, ts, values, np.array(labels, dtype=bool))


def load_dir(root: str | Path) -> list[LabelledSeries]:
    """Every ``*.csv`` under ``root`` (recursively), named by its path relative to ``root``."""
    root = Path(root)
    if root.is_file():
        return [load_labelled(root, root.name)]
    if not root.is_dir():
        raise CsvError(f"{root}: no such directory; give a folder of labelled CSVs "
                       "(timestamp,value,label)")
    files = sorted(p for p in root.rglob("*.csv") if p.is_file())
    if not files:
        raise CsvError(f"{root}: no .csv files in it")
    return [load_labelled(p, str(p.relative_to(root))) for p in files]


def score_series(series: LabelledSeries, factory: Callable[[], Any]) -> np.ndarray:
    """Causal scores of one series by a fresh detector (score, then learn, row by row)."""
    det = factory()
    score_one, learn_one = det.score_one, det.learn_one
    out = np.zeros(len(series.values))
    for i, (t, v) in enumerate(zip(series.ts, series.values, strict=True)):
        if v != v:
            continue
        x = {"value": v, "ts": t}
        out[i] = score_one(x)
        learn_one(x)
    return out


def benchmark(series: Sequence[LabelledSeries], detectors: Iterable[str] = (DETECTOR_NAMES[0],),
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both scorings of each detector over ``series``; a dict ready for JSON."""
    out: dict[str, Any] = {"files": len(series), "rows": sum(len(s.values) for s in series),
                           "anomalous_rows": int(sum(int(s.labels.sum()) for s in series)),
                           "detectors": {}}
    for name in detectors:
        factory = partial(make_detector, name)
        started = time.perf_counter()
        scored = []
        for s in series:
            if progress:
                progress(f"{name}: {s.name}")
            scored.append(Scored(s.name, score_series(s, factory), s.labels,
                                 delay_for_cadence(s.cadence)))
        seconds = time.perf_counter() - started
        pa = point_adjusted_f1(scored)
        nab = nab_score(scored)
        out["detectors"][name] = {
            "rows_per_second": round(out["rows"] / seconds) if seconds else 0,
            "point_adjusted_f1": pa, "nab": nab}
    return out


def format_report(result: dict[str, Any], per_file: bool = True) -> str:
    """The per-file and total tables of :func:`benchmark`, as text."""
    lines = []
    for name, r in result["detectors"].items():
        pa, nab = r["point_adjusted_f1"], r["nab"]
        if per_file:
            lines.append(f"detector {name}")
            lines.append(f"  {'file':<52} {'segs':>4} {'caught':>6} {'TP':>6} {'FP':>6} "
                         f"{'FN':>6} {'NAB':>7}")
            for pf, nf in zip(pa["files"], nab["files"], strict=True):
                ns = "-" if nf["score"] is None else f"{nf['score']:.1f}"
                lines.append(f"  {pf['file']:<52} {pf['segments']:>4} {pf['caught']:>6} "
                             f"{pf['tp']:>6} {pf['fp']:>6} {pf['fn']:>6} {ns:>7}")
        lines.append(f"{name}: point-adjusted F1 {pa['f1']:.3f} (precision {pa['precision']:.3f}, "
                     f"recall {pa['recall']:.3f}, threshold {pa['threshold']:.4f}); "
                     f"NAB {nab['score']:.1f} (threshold {nab['threshold']:.4f}); "
                     f"{r['rows_per_second']:,} rows/s")
    lines.append(f"{result['files']} files, {result['rows']:,} rows, "
                 f"{result['anomalous_rows']:,} labelled anomalous")
    return "\n".join(lines)
