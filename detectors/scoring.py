"""The two standard scorings of a streaming detector on labelled series, one threshold for all.

- :func:`point_adjusted_f1`: delay-tolerant point-adjusted F1. Consecutive labelled points form
  a segment; the segment is caught (all its points true positives) when an alarm falls on one of
  its first ``delay + 1`` points, else all its points are misses; every alarm on a normal point
  is a false positive; counts are summed over all files and the best shared threshold is kept.
- :func:`nab_score`: the Numenta Anomaly Benchmark's standard profile (true positive weight 1,
  false positive 0.11, missed window 1). A window of ``10 % of the length / anomalies`` points is
  centred on each labelled segment (and stretched to hold it); the first alarm in a window earns
  a reward that falls from 1 at the window's start to 0 at its end (NAB's scaled sigmoid); an
  alarm outside windows costs up to 0.11, less just after a window; a window with no alarm
  costs 1; alarms in the probationary period (the first 15 % of a file, at most 750 points) do
  not count. The total is normalised to 0 (no alarm at all) .. 100 (every window at its start).

Both sweep every threshold at once (sorted scores, prefix maxima), so a corpus of 200,000 rows
is scored in well under a second. Inputs are plain sequences; nothing here reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Scored", "segments", "nab_windows", "point_adjusted_f1", "nab_score", "delay_for_cadence",
    "NAB_FP_WEIGHT", "NAB_FN_WEIGHT",
]

NAB_TP_WEIGHT = 1.0
NAB_FP_WEIGHT = 0.11
NAB_FN_WEIGHT = 1.0


@dataclass
class Scored:
    """One labelled series and a detector's scores for it (same length)."""

    name: str
    scores: np.ndarray        # float, one per row
    labels: np.ndarray        # bool, one per row
    delay: int = 7            # point-adjusted F1: alarms on the first delay + 1 points catch


def delay_for_cadence(seconds: float) -> int:
    """The delay tolerance of point-adjusted F1: 7 points for minutely series, 3 for hourly.

    >>> delay_for_cadence(60.0), delay_for_cadence(3600.0), delay_for_cadence(300.0)
    (7, 3, 7)
    """
    return 3 if seconds >= 1800.0 else 7


def segments(labels: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive labelled points, as ``[start, end)`` index pairs.

    >>> segments([0, 1, 1, 0, 0, 1])
    [(1, 3), (5, 6)]
    """
    lab = np.asarray(labels, dtype=bool)
    if not lab.any():
        return []
    d = np.diff(np.concatenate(([0], lab.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


# -- point-adjusted F1 ------------------------------------------------------------------------

def point_adjusted_f1(files: Sequence[Scored]) -> dict:
    """Best delay-tolerant point-adjusted F1 over one threshold shared by all ``files``.

    Returns the threshold, F1, precision, recall and the summed counts, and per file the counts
    at that threshold.

    >>> s = Scored("a", np.array([0, .2, .9, .1, 0, .3, 0, 0]), np.array([0, 0, 0, 1, 1, 0, 0, 0]),
    ...            delay=1)
    >>> r = point_adjusted_f1([s])   # the 0.9 is a false alarm; 0.1 on the segment catches it
    >>> r["threshold"], r["tp"], r["fp"], round(r["f1"], 3)
    (0.1, 2, 3, 0.571)
    """
    seg_len: list[np.ndarray] = []
    seg_best: list[np.ndarray] = []
    normal: list[np.ndarray] = []
    positives = 0
    for f in files:
        sc = np.nan_to_num(np.asarray(f.scores, dtype=float), nan=0.0)
        lab = np.asarray(f.labels, dtype=bool)
        segs = segments(lab)
        seg_len.append(np.array([b - a for a, b in segs], dtype=float))
        seg_best.append(np.array([sc[a:min(b, a + f.delay + 1)].max() for a, b in segs]))
        normal.append(sc[~lab])
        positives += int(lab.sum())
    lens = np.concatenate(seg_len) if seg_len else np.zeros(0)
    best = np.concatenate(seg_best) if seg_best else np.zeros(0)
    norm = np.sort(np.concatenate(normal)) if normal else np.zeros(0)
    # candidate thresholds: every segment's best score (only they can change TP)
    cands = np.unique(best[best > 0]) if best.size else np.zeros(0)
    if cands.size == 0 or positives == 0:
        th, tp, fp = math.inf, 0, 0
        f1 = prec = rec = 0.0
    else:
        order = np.argsort(best)
        sorted_best, sorted_len = best[order], lens[order]
        # TP(th) = total length of segments whose best >= th
        suffix = np.concatenate((np.cumsum(sorted_len[::-1])[::-1], [0.0]))
        tps = suffix[np.searchsorted(sorted_best, cands, side="left")]
        fps = norm.size - np.searchsorted(norm, cands, side="left")
        precs = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1), 0.0)
        recs = tps / positives
        f1s = np.where(precs + recs > 0, 2 * precs * recs / np.maximum(precs + recs, 1e-12), 0.0)
        k = int(np.argmax(f1s))
        th, tp, fp = float(cands[k]), int(tps[k]), int(fps[k])
        f1, prec, rec = float(f1s[k]), float(precs[k]), float(recs[k])
    per_file = []
    for f, ln, bs, nm in zip(files, seg_len, seg_best, normal, strict=True):
        ftp = int(ln[bs >= th].sum()) if ln.size else 0
        per_file.append({"file": f.name, "tp": ftp, "fp": int((nm >= th).sum()),
                         "fn": int(ln.sum()) - ftp, "segments": int(ln.size),
                         "caught": int((bs >= th).sum())})
    return {"threshold": th, "f1": f1, "precision": prec, "recall": rec, "tp": tp, "fp": fp,
            "fn": positives - tp, "files": per_file}


# -- NAB --------------------------------------------------------------------------------------

def nab_windows(labels: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """NAB windows ``[start, end]`` (inclusive): 10 % of the length over the anomaly count each,
    centred on each labelled segment and at least as wide; overlapping windows are merged.

    >>> nab_windows([0] * 45 + [1] + [0] * 54)
    [(40, 50)]
    """
    lab = np.asarray(labels, dtype=bool)
    segs = segments(lab)
    if not segs:
        return []
    n = lab.size
    width = max(1, int(0.1 * n / len(segs)))
    out: list[list[int]] = []
    for a, b in segs:
        mid = (a + b - 1) / 2.0
        lo = max(0, min(a, int(math.floor(mid - width / 2.0))))
        hi = min(n - 1, max(b - 1, int(math.floor(mid + width / 2.0))))
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def _scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(np.minimum(5.0 * x, 700.0))) - 1.0)


def _probation(n: int) -> int:
    return int(min(math.floor(0.15 * n), 0.15 * 5000))


def _nab_file_parts(sc: np.ndarray, labels: np.ndarray):
    """Per-file pieces of the NAB sweep that do not depend on the threshold."""
    n = sc.size
    prob = _probation(n)
    wins = [(lo, hi) for lo, hi in nab_windows(labels) if hi >= prob]
    inside = np.zeros(n, dtype=bool)
    fp_weight = np.full(n, -NAB_FP_WEIGHT)  # before the first window: the full cost
    max_tp = float(_scaled_sigmoid(np.array([-1.0]))[0])
    tp_parts = []
    for k, (lo, hi) in enumerate(wins):
        inside[lo:hi + 1] = True
        width = hi - lo + 1
        idx = np.arange(lo, hi + 1)
        reward = _scaled_sigmoid(-(hi - idx + 1) / width) * NAB_TP_WEIGHT / max_tp
        lo_eff = max(lo, prob)
        seg = sc[lo_eff:hi + 1]
        tp_parts.append((np.maximum.accumulate(seg) if seg.size else seg,
                         reward[lo_eff - lo:]))
        nxt = wins[k + 1][0] if k + 1 < len(wins) else n
        after = np.arange(hi + 1, nxt)
        if after.size:
            denom = max(width - 1, 1)
            fp_weight[hi + 1:nxt] = _scaled_sigmoid(np.abs(hi - after) / denom) * NAB_FP_WEIGHT
    fp_weight[inside] = 0.0
    fp_weight[:prob] = 0.0
    return wins, fp_weight, tp_parts


def _nab_raw(sc: np.ndarray, fp_weight: np.ndarray, tp_parts, ths: np.ndarray) -> np.ndarray:
    """Raw NAB score of one file at every threshold in ``ths``."""
    raw = np.zeros(ths.size)
    mask = fp_weight != 0.0
    if mask.any():
        s, w = sc[mask], fp_weight[mask]
        order = np.argsort(s)
        s, w = s[order], w[order]
        suffix = np.concatenate((np.cumsum(w[::-1])[::-1], [0.0]))
        raw += suffix[np.searchsorted(s, ths, side="left")]
    for pm, reward in tp_parts:
        if pm.size == 0:
            raw -= NAB_FN_WEIGHT
            continue
        first = np.searchsorted(pm, ths, side="left")   # first index whose prefix max >= th
        hit = first < pm.size
        raw += np.where(hit, reward[np.minimum(first, pm.size - 1)], -NAB_FN_WEIGHT)
    return raw


def nab_score(files: Sequence[Scored], thresholds: np.ndarray | None = None) -> dict:
    """NAB standard-profile score, normalised over all ``files``, at the best shared threshold.

    >>> lab = np.zeros(1000, dtype=bool); lab[500] = True    # its window is [450, 550]
    >>> early, late = np.zeros(1000), np.zeros(1000)
    >>> early[451], late[540] = 1.0, 1.0
    >>> [round(nab_score([Scored("a", s, lab)])["score"], 1) for s in (early, late)]
    [100.0, 63.5]
    >>> nab_score([Scored("a", np.zeros(1000), lab)])["score"]
    0.0
    """
    prepared = []
    all_scores = []
    for f in files:
        sc = np.nan_to_num(np.asarray(f.scores, dtype=float), nan=0.0)
        wins, fpw, tps = _nab_file_parts(sc, np.asarray(f.labels, dtype=bool))
        prepared.append((f.name, sc, wins, fpw, tps))
        all_scores.append(sc[_probation(sc.size):])
    if thresholds is None:
        pool = np.concatenate(all_scores) if all_scores else np.zeros(0)
        pool = pool[pool > 0]
        qs = np.quantile(pool, np.linspace(0.0, 1.0, 801)) if pool.size else np.zeros(0)
        thresholds = np.unique(np.concatenate((qs, np.linspace(0.0025, 1.0, 400), [np.inf])))
    ths = np.asarray(thresholds, dtype=float)
    total = np.zeros(ths.size)
    null = perfect = 0.0
    raws = []
    for _name, sc, wins, fpw, tps in prepared:
        r = _nab_raw(sc, fpw, tps, ths)
        raws.append(r)
        total += r
        null -= NAB_FN_WEIGHT * len(wins)
        perfect += NAB_TP_WEIGHT * len(wins)
    k = int(np.argmax(total)) if ths.size else 0
    span = perfect - null

    def norm(raw: float, lo: float, hi: float) -> float | None:
        return None if hi - lo <= 0 else 100.0 * (raw - lo) / (hi - lo)

    per_file = []
    for (name, _sc, wins, _fpw, _tps), r in zip(prepared, raws, strict=True):
        nw = len(wins)
        per_file.append({"file": name, "windows": nw, "raw": float(r[k]),
                         "score": norm(float(r[k]), -NAB_FN_WEIGHT * nw, NAB_TP_WEIGHT * nw)})
    score = 100.0 * (float(total[k]) - null) / span if span > 0 else 0.0
    return {"threshold": float(ths[k]), "score": score, "raw": float(total[k]),
            "windows": int(perfect), "files": per_file}
