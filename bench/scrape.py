"""Read one sample from a worker's /metrics endpoint (0 when it is not up yet)."""

from __future__ import annotations

import re
import urllib.request

__all__ = ["metric_value"]


def metric_value(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0
