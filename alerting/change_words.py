"""What changed in an alert since its last message, in words (plain text, unescaped).

The Slack thread reply (alerting/slack.py ``change_reply``) and the terminal of ``pulse demo``
(pulse/kpi_view.py ``alert_line``) say the same thing from the same fields of an alert change:
``changes`` (the codes of what changed), ``joined`` (the series that joined) and ``previous``
(the lead at the last message). Records from before the lifecycle said what changed fall back to
their ``reason`` text.
"""

from __future__ import annotations

from alerting.evidence import abnormal_for, kpi_label, plain_ids, series_label, slice_phrase

__all__ = ["what_changed"]


def what_changed(alert: dict) -> list[str]:
    """``["Now led by Payment failure rate overall", "Now also on paid search"]``: one
    sentence per change (empty: nothing but "still abnormal" to say)."""
    kpi = str(alert["kpi"])
    label = kpi_label(kpi)
    codes = alert.get("changes")
    if codes is None:   # a snapshot from before the lifecycle said what changed
        what = [plain_ids(str(alert.get("reason") or "still abnormal"))]
    else:
        what = []
        for code in codes:
            if code == "joined":
                what.append(_joined_words(alert))
            elif code == "severity":
                what.append(f"Severity now {alert['severity']}")
            elif code == "lead" and _lead_moved(alert):
                what.append(f"Now led by "
                            f"{series_label(kpi, str(alert['segment']), str(alert['channel']))}")
            elif code == "final":
                what.append("The window closed: final numbers replace the running ones")
            elif code == "still" and alert.get("streak"):
                what.append(f"Still abnormal after {int(alert['streak'])} windows "
                            f"({abnormal_for(alert, int(alert['streak']))})")
            elif code == "still":
                what.append("Still abnormal")
            elif code == "reopened":
                what.append(f"Abnormal again: {label} had gone back to normal (flapping)")
    return [w for w in what if w]


def _lead_moved(alert: dict) -> bool:
    """Whether the lead series differs from the one of the last message."""
    prev = alert.get("previous") or {}
    return (prev.get("kpi"), prev.get("segment"), prev.get("channel")) != (
        alert["kpi"], alert["segment"], alert["channel"])


def _joined_words(alert: dict) -> str:
    """``Now also on organic, for new grads and Revenue overall``."""
    lead_kpi = str(alert["kpi"])
    same, overall, other = [], [], []
    for j in alert.get("joined") or []:
        seg, ch, kpi = str(j.get("segment", "all")), str(j.get("channel", "all")), str(j["kpi"])
        if (kpi, seg, ch) == (lead_kpi, alert["segment"], alert["channel"]) and _lead_moved(alert):
            continue   # "Now led by" says it
        if kpi == lead_kpi and seg == ch == "all":
            overall.append("in the overall numbers")
        elif kpi == lead_kpi:
            same.append(slice_phrase(seg, ch))
        else:
            other.append(series_label(kpi, seg, ch))
    parts = list(dict.fromkeys(same + overall + other))
    if not parts:
        return ""
    return "Now also " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1
                          else parts[0])
