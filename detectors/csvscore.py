"""``pulse detect IN.csv OUT.csv``: score a ``timestamp,value`` CSV causally, one row at a time.

Run as ``python -m detectors.csvscore IN.csv OUT.csv [--detector NAME] [--config FILE]``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.config import load_config
from detectors.registry import DEFAULT_DETECTOR, DETECTOR_NAMES, make_detector

__all__ = ["CsvError", "DEFAULT", "describe_stats", "parse_timestamp", "parse_value", "score_csv",
           "main"]

DEFAULT = DEFAULT_DETECTOR


class CsvError(ValueError):
    """The input CSV cannot be scored; the message says why and what to do."""


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds from ISO-8601, ``YYYY-MM-DD HH:MM:SS`` or an epoch number (s or ms).

    Naive times are taken as UTC; ``None`` when the text is not a time.

    >>> parse_timestamp("2015-02-26 21:42:53"), parse_timestamp("2015-02-26T21:42:53Z")
    (1424986973.0, 1424986973.0)
    >>> parse_timestamp("1424986973"), parse_timestamp("1424986973000"), parse_timestamp("x")
    (1424986973.0, 1424986973.0, None)
    """
    text = text.strip()
    try:
        t = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(t):
            return None
        return t / 1000.0 if abs(t) > 1e11 else t
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def parse_value(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        return math.nan
    return v if math.isfinite(v) else math.nan


def score_csv(
    in_path: str | Path,
    out_path: str | Path,
    detector: str | None = None,
    config: str | None = None,
) -> dict[str, Any]:
    """Write ``timestamp,value,anomaly_score`` for every row of ``in_path``; return statistics.

    ``detector`` is one of ``DETECTOR_NAMES`` (None: the config file's ``csv.detector``,
    ``surprise`` by default); ``config`` a detector configuration file (None: the defaults).
    Each score uses only its row and the rows before it. Rows with an empty or non-numeric value
    get score 0 and are not learned; rows with an unreadable timestamp keep the previous one.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> src, dst = os.path.join(d, "in.csv"), os.path.join(d, "out.csv")
    >>> rows = [f"2024-01-01 00:{i:02d}:00,{10 + i % 3}" for i in range(50)]
    >>> _ = open(src, "w").write("timestamp,value\\n" + "\\n".join(rows) + "\\n")
    >>> score_csv(src, dst)["rows"]
    50
    >>> open(dst).read().splitlines()[:2]
    ['timestamp,value,anomaly_score', '2024-01-01 00:00:00,10,0.000000']
    """
    cfg = load_config(config)
    detector = detector or cfg.csv_detector
    if detector not in DETECTOR_NAMES:
        raise CsvError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTOR_NAMES)}")
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise CsvError(f"input file {str(in_path)!r} does not exist or is not a file")
    det = make_detector(detector, cfg.csv)
    try:
        return _score(in_path, out_path, det, detector)
    except csv.Error as e:
        raise CsvError(f"input file {str(in_path)!r} is not a readable CSV: {e}") from None
    except UnicodeDecodeError:
        raise CsvError(f"input file {str(in_path)!r} is not UTF-8 text") from None


def _score(in_path: Path, out_path: Path, det: Any, detector: str) -> dict[str, Any]:
    score_one, learn_one = det.score_one, det.learn_one
    started = time.perf_counter()
    rows = missing = bad_ts = 0
    with in_path.open(newline="", encoding="utf-8-sig") as fin:
        reader = csv.reader(fin)
        header = next(reader, None)
        names = [h.strip().lower() for h in header] if header else []
        if "timestamp" not in names or "value" not in names:
            raise CsvError(f"input file {str(in_path)!r} needs a header with columns "
                           f"'timestamp' and 'value', found {header!r}")
        i_ts, i_v = names.index("timestamp"), names.index("value")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("w", newline="", encoding="utf-8") as fout:
            write = fout.write
            write("timestamp,value,anomaly_score\n")
            last_ts = 0.0
            for row in reader:
                if not row:
                    continue
                rows += 1
                ts_text = row[i_ts] if len(row) > i_ts else ""
                v_text = row[i_v] if len(row) > i_v else ""
                ts = parse_timestamp(ts_text) if ts_text else None
                if ts is None:
                    bad_ts += 1
                    ts = last_ts
                last_ts = ts
                v = parse_value(v_text) if v_text.strip() else math.nan
                if v != v:
                    missing += 1
                    score = 0.0
                else:
                    x = {"value": v, "ts": ts}
                    score = min(1.0, max(0.0, float(score_one(x))))
                    learn_one(x)
                write(f"{_quote(ts_text)},{_quote(v_text)},{score:.6f}\n")
    seconds = time.perf_counter() - started
    return {"rows": rows, "missing_values": missing, "bad_timestamps": bad_ts,
            "seconds": round(seconds, 4), "detector": detector,
            "rows_per_second": round(rows / seconds) if seconds else 0}


def _quote(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m detectors.csvscore IN OUT [--detector NAME] [--config FILE]``."""
    p = argparse.ArgumentParser(
        prog="pulse detect",
        description="Score a timestamp,value CSV; writes timestamp,value,anomaly_score.")
    p.add_argument("input", help="CSV with columns timestamp,value")
    p.add_argument("output", help="CSV to write (timestamp,value,anomaly_score)")
    p.add_argument("--detector", default=None, choices=DETECTOR_NAMES,
                   help=f"detector (default: the config's csv.detector, {DEFAULT})")
    p.add_argument("--config", default=None, help="detector configuration TOML (default: built-in)")
    args = p.parse_args(argv)
    try:
        stats = score_csv(args.input, args.output, args.detector, args.config)
    except (ValueError, OSError) as e:
        print(f"pulse detect: error: {e}", file=sys.stderr)
        return 2
    print(describe_stats(stats), file=sys.stderr)
    return 0


def describe_stats(stats: dict[str, Any]) -> str:
    """The line ``pulse detect`` ends with, from :func:`score_csv`'s statistics."""
    return (f"pulse detect: {stats['rows']} rows in {stats['seconds']:.2f} s "
            f"({stats['rows_per_second']} rows/s), detector {stats['detector']}")


if __name__ == "__main__":
    sys.exit(main())
