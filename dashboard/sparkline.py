"""A KPI's recent values as a small inline SVG: a line, its last point, and the target.

>>> svg = sparkline([(0, 1.0), (3600, 3.0), (7200, 2.0)], target=2.5, label="Signups")
>>> svg.startswith('<svg class="spark"'), "polyline" in svg, 'class="target"' in svg
(True, True, True)
>>> sparkline([], label="Signups")
''
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dashboard.html import esc

__all__ = ["sparkline"]

WIDTH, HEIGHT, PAD = 260.0, 46.0, 4.0


def _y_range(values: Sequence[float], target: float | None) -> tuple[float, float, bool]:
    """(low, high, whether the target is drawn): the target widens the range only when it is
    near the values, so a far target does not flatten the line."""
    lo, hi = min(values), max(values)
    span = hi - lo
    show = target is not None and math.isfinite(target)
    if show and target is not None:
        near = max(span, abs(hi) * 0.2, 1e-9)
        if lo - near <= target <= hi + near:
            lo, hi = min(lo, target), max(hi, target)
        else:
            show = False
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi, show


def sparkline(points: Sequence[tuple[float, float]], *, target: float | None = None,
              label: str = "", good: bool | None = None) -> str:
    """``<svg>`` of ``points`` (time, value), oldest first, scaled to fit; ``target`` as a
    dashed line when it is in view; the last point green (``good``), red (not ``good``) or
    blue (None). ``label`` is its accessible name. Empty for no finite point."""
    pts = [(float(t), float(v)) for t, v in points if math.isfinite(v)]
    if not pts:
        return ""
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi, show_target = _y_range([v for _, v in pts], target)

    def x(t: float) -> float:
        return PAD + (t - t0) / ((t1 - t0) or 1.0) * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - (v - lo) / (hi - lo) * (HEIGHT - 2 * PAD)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
    area = f"{x(t0):.1f},{HEIGHT:.1f} {line} {x(pts[-1][0]):.1f},{HEIGHT:.1f}"
    dot = {True: "#15803d", False: "#dc2626", None: "#1d4ed8"}[good]
    target_line = ""
    if show_target and target is not None:
        ty = y(target)
        target_line = (f'<line class="target" x1="{PAD}" x2="{WIDTH - PAD}" y1="{ty:.1f}" '
                       f'y2="{ty:.1f}" stroke="#6b7280" stroke-width="1" '
                       'stroke-dasharray="4 3"/>')
    lx, ly = x(pts[-1][0]), y(pts[-1][1])
    return (f'<svg class="spark" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" '
            f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>'
            f'<polygon points="{area}" fill="#dbeafe" opacity="0.7"/>{target_line}'
            f'<polyline points="{line}" fill="none" stroke="#1e3a8a" stroke-width="1.4" '
            'stroke-linejoin="round"/>'
            f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="2.8" fill="{dot}"/></svg>')
