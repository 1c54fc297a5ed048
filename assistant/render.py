"""Tool results into sentences a finance person reads: labels not ids, units on every number.

Each function takes one tool result (:mod:`assistant.facts`) and returns paragraphs; it only
copies the result's ``*_text`` strings, so a number appears here exactly as Pulse formatted it.
"""

from __future__ import annotations

from typing import Any

from alerting.evidence import CHANNEL_NAMES, SEGMENT_NAMES, kpi_label, slice_phrase
from assistant.query import rule
from assistant.vocab import kpi_names
from core.vocabulary import CHANNELS, SEGMENTS
from kpis.formulas import KPIS as KPI_DEFS

__all__ = ["render", "render_plan_problem"]

_CALENDAR_NAMES = ("today", "yesterday", "this_week", "last_week", "this_month", "last_month")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(text: str) -> str:
    text = _cap(text.strip())
    return text if text.endswith((".", "?", "!", ":")) else text + "."


def _no_figure(what: str, why: str) -> str:
    """``Churn rate: no figure, because …``: a value Pulse does not have, and why."""
    return _sentence(f"{what}: no figure, because {why[:1].lower() + why[1:]}"
                     if not why.startswith("Pulse") else f"{what}: no figure, because {why}")


def _during(period: dict[str, Any]) -> str:
    """``this week so far (…)``, ``in the last 7 days (…)``, ``on the day before (…)``: a
    period after a value."""
    text = str(period.get("text", ""))
    if period.get("name") in _CALENDAR_NAMES or not text.startswith("the "):
        return text
    return ("on " if period.get("kind") == "day" else "in ") + text


def _where(r: dict[str, Any]) -> str:
    seg, ch = r.get("segment", "all"), r.get("channel", "all")
    return "" if seg == ch == "all" else " " + slice_phrase(seg, ch)


def _compare_words(kpi: str, c: dict[str, Any]) -> str:
    """`` Up 7 (+18%) from 38 in the same part of last week (…)``."""
    if "error" in c:
        return f" No comparison: {c['error']}."
    if rule(kpi) == "last":   # a level: compared with its value at one instant
        when = (f"a week earlier ({c['as_of_text']})" if c.get("how") == "week_earlier"
                else f"on {c['as_of_text']}")
    else:
        when = _during(c["period"])
    if c["direction"] == "flat":
        return f" Unchanged from {when}."
    size = c["change_text"].lstrip("+-")
    rel = f" ({c['relative_text']})" if c.get("relative_text") else ""
    good = {"better": ", an improvement", "worse": ", a change for the worse"}.get(
        c.get("meaning", ""), "")
    return f" {_cap(c['direction'])} {size}{rel} from {c['value_text']} {when}{good}."


def _target_words(kpi: str, t: dict[str, Any]) -> str:
    rule = t.get("rule_text") or f"{t['target_text']}"
    if t["met"]:
        return f" Target: {rule}, so it is on target."
    return f" Target: {rule}, so it misses it by {t['gap_text'].lstrip('+-')}."


def value_text(r: dict[str, Any]) -> list[str]:
    """A ``kpi_value`` result: the value, its comparison, its target."""
    label, kpi = r["label"], r["kpi"]
    if "error" in r:
        return [_no_figure(f"{label}{_where(r)}", r["error"])]
    if "cohort" in r:
        text = (f"{label}{_where(r)} is {r['value_text']} for the {r['cohort_text']} "
                f"(reported {r['as_of_text']}).")
        c = r.get("comparison")
        if c:
            text += (f" The cohort before ({c['cohort']}) had {c['value_text']} "
                     f"({c['change_text']}).")
        return [text]
    period = r["period"]
    if r.get("rule") == "last" and r.get("latest"):
        text = (f"{label}{_where(r)} is {r['value_text']} (as of {r['as_of_text']}): "
                f"{r['meaning']}.")
    elif r.get("rule") == "last":
        text = (f"{label}{_where(r)} was {r['value_text']} at the end of "
                f"{period['text'].split(' (')[0]} ({r['as_of_text']}): {r['meaning']}.")
    else:
        text = f"{label}{_where(r)} {_during(period)}: {r['value_text']}"
        text += f" (from {r['basis_text']})." if r.get("basis_text") else "."
    if "comparison" in r:
        text += _compare_words(kpi, r["comparison"])
    if "target" in r:
        text += _target_words(kpi, r["target"])
    if r.get("note"):
        text += f" Note: {r['note']}."
    return [text]


def trend_text(r: dict[str, Any]) -> list[str]:
    """A ``kpi_trend`` result: from, to, low, high, then the steps."""
    label = r["label"]
    if "error" in r:
        return [_no_figure(f"{label}{_where(r)}", r["error"])]
    a, b = r["from"], r["to"]
    at_a = a.get("as_of_text") or a.get("text")
    at_b = b.get("as_of_text") or b.get("text")
    rel = f" ({r['relative_text']})" if r.get("relative_text") else ""
    move = ("unchanged" if r["direction"] == "flat"
            else f"{r['direction']} {r['change_text'].lstrip('+-')}{rel}")
    if a.get("basis") == "same_weekday":
        at_a = f"on the same weekday a week before, {at_a}"
    if a.get("basis"):
        at_b = f"{at_b}, the last full day"
    head = (f"{label}{_where(r)} {_during(r['period'])}: {move}, from {a['value_text']} "
            f"({at_a}) to {b['value_text']} ({at_b}).")
    if "period_value" in r:
        head += f" Over the whole period: {r['period_value']['value_text']}."
    out = [head, f"Lowest {r['low']['value_text']} ({r['low']['text']}), highest "
                 f"{r['high']['value_text']} ({r['high']['text']})."]
    kind = " (end of day)" if rule(r["kpi"]) == "last" and r["step"] == "day" else ""
    steps = "; ".join(f"{p['text']}{' (so far)' if p['partial'] else ''} {p['value_text']}"
                      for p in r["points"][-14:])
    out.append(f"{'Day by day' if r['step'] == 'day' else 'Window by window'}{kind}: "
               f"{steps}.")
    return out


def _slice_list(rows: list[dict[str, Any]], with_parts: bool) -> str:
    parts = []
    for row in rows:
        if with_parts and "contribution_text" in row:
            was = f"{row['before_text']} → {row['value_text']}" if "before_text" in row and \
                "value_text" in row else row.get("value_text", "n/a")
            parts.append(f"{row['slice']} {row['contribution_text']} ({was})")
        elif "change_text" in row and with_parts:
            parts.append(f"{row['slice']} {row['before_text']} → {row['value_text']} "
                         f"({row['change_text']})")
        elif "value_text" in row:
            parts.append(f"{row['slice']} {row['value_text']}")
        else:
            parts.append(f"{row['slice']} no value")
    return "; ".join(parts)


def breakdown_text(r: dict[str, Any]) -> list[str]:
    """A ``breakdown`` result: the overall change and each slice's part, or a ranking."""
    label = r["label"]
    if "error" in r:
        return [_no_figure(label, r["error"])]
    overall = r["overall"]
    changed = "change_text" in overall
    out = []
    if changed:
        before = r["compared_with"]
        rel = f" ({overall['relative_text']})" if overall.get("relative_text") else ""
        move = ("did not change" if overall["direction"] == "flat" else
                f"is {overall['direction']} {overall['change_text'].lstrip('+-')}{rel}")
        if rule(r["kpi"]) == "last":
            out.append(f"{label} {move}: {overall['before_text']} on "
                       f"{overall['before_as_of_text']}, {overall['value_text']} on "
                       f"{overall['as_of_text']}.")
        else:
            out.append(f"{label} {move}: {overall['value_text']} {_during(r['period'])}, "
                       f"against {overall['before_text']} {_during(before)}.")
    elif rule(r["kpi"]) == "last" and r["period"].get("name") == "last_window":
        out.append(f"{label} as of {overall['as_of_text']}: {overall['value_text']} overall.")
    else:
        out.append(f"{label} {_during(r['period'])}: {overall['value_text']} overall.")
        if "comparison_error" in r:
            out.append(_sentence(f"No comparison: {r['comparison_error']}"))
    for dim in ("segment", "channel"):
        if f"by_{dim}_error" in r:
            out.append(_sentence(r[f"by_{dim}_error"]))
        rows = r.get(f"by_{dim}")
        if not rows:
            continue
        if changed and r["adds_up"]:
            out.append(f"By {dim}, largest contribution first: "
                       f"{_slice_list(rows, True)}.")
        elif changed:
            out.append(f"By {dim} (each group's own change): {_slice_list(rows, True)}.")
        else:
            out.append(f"By {dim}, highest first: {_slice_list(rows, False)}.")
    if changed and r["adds_up"]:
        out.append("A contribution is the part of the overall change that comes from that "
                   "group; the parts add up to the overall change.")
    elif changed:
        out.append(f"{label} is not a sum over groups, so the groups' changes do not add up to "
                   "the overall one.")
    return out


def _metric(row: dict[str, Any], kpi: str, trend: bool = True) -> str:
    fact = row[kpi]
    if "value_text" not in fact:
        return f"{fact['label']} n/a"
    text = f"{fact['label']} {fact['value_text']}"
    t = fact.get("trend")
    if trend and t:
        text += f" ({t['change_text']})"
    return text


def channels_text(r: dict[str, Any]) -> list[str]:
    """A ``compare_channels`` result: the channels ranked, the free ones, the targets."""
    if "error" in r:
        return [_sentence(r["error"])]
    ranked = [c for c in r["channels"] if "rank" in c]
    free = [c for c in r["channels"] if "rank" not in c]
    out = [f"Channels ranked by LTV:CAC (lifetime value per dollar spent to acquire a paying "
           f"user; CAC, LTV and LTV:CAC over the last 30 days, as of {r['as_of_text']}). "
           f"Signups, paid conversions and conversion rate are {_during(r['period'])}. "
           f"Changes in brackets: CAC, LTV and LTV:CAC against a week earlier, the others "
           f"against {r['compared_with']['text']}."]
    for c in ranked:
        paying = (f"; {c['paying_users_30d']:,.0f} new paying users in the last 30 days"
                  if c.get("paying_users_30d") is not None else "")
        out.append(f"{c['rank']}. {_cap(c['slice'])}: "
                   + ", ".join(_metric(c, k) for k in ("ltv_cac", "cac", "ltv")) + "; "
                   + ", ".join(_metric(c, k) for k in ("signups", "paid_conversions",
                                                       "conversion_rate")) + paying + ".")
    for c in free:
        why = ("no marketing spend, so CAC is $0.00 and LTV:CAC does not apply"
               if c.get("no_spend") else "no LTV:CAC (no paying user in the last 30 days)")
        paying = (f"{c['paying_users_30d']:,.0f} new paying users in the last 30 days, "
                  if c.get("paying_users_30d") is not None else "")
        out.append(f"{_cap(c['slice'])}: {why}; {paying}"
                   + ", ".join(_metric(c, k) for k in ("ltv", "signups", "paid_conversions",
                                                       "conversion_rate")) + ".")
    targets = [f"{kpi_label(k)} {t}" for k, t in r["targets"].items()]
    out.append("Targets: " + "; ".join(targets) + ".")
    verdicts = []
    for c in r["channels"]:
        missed = [k for k in r["targets"] if c[k].get("target_met") is False]
        verdicts.append(f"{c['slice']} misses {kpi_names(missed)}" if missed
                        else f"{c['slice']} meets every target it has")
    out.append(_sentence("Against them: " + "; ".join(verdicts)))
    if ranked:
        top = ranked[0]
        most = max(ranked, key=lambda c: c.get("paying_users_30d") or 0)
        text = (f"On these numbers, {top['slice']} returns the most lifetime value per "
                f"marketing dollar (LTV:CAC {top['ltv_cac']['value_text']})")
        if most is top or len(ranked) == 1:
            text += " and brings the most paying users of the paid channels."
        else:
            text += (f"; {most['slice']} brings more paying users "
                     f"({most['paying_users_30d']:,.0f} against "
                     f"{top.get('paying_users_30d') or 0:,.0f}).")
        out.append(text)
    return out


def alerts_text(r: dict[str, Any]) -> list[str]:
    """An ``open_alerts`` result."""
    if "error" in r:
        return [_sentence(r["error"])]
    as_of = f" (as of {r['as_of_text']})" if r.get("as_of_text") else ""
    if not r["alerts"]:
        note = f" Note: {r['note']}." if r.get("note") else ""
        return [f"No open alerts{as_of}.{note}"]
    out = [f"{r['count']} open alert{'s' if r['count'] != 1 else ''}{as_of}:"]
    for a in r["alerts"]:
        age = f", open for {a['age_text']} (since {a['since_text']})" if a.get("age_text") else ""
        out.append(f"{a['label']}: {a['change_text']}, expected {a['expected_text']}. "
                   f"{a['scope']}. {_cap(a['severity'])}{age}.")
    return out


def targets_text(r: dict[str, Any]) -> list[str]:
    """A ``targets`` result."""
    if "error" in r:
        return [_sentence(r["error"])]
    lines = []
    for t in r["targets"]:
        if "error" in t:
            lines.append(f"{t['label']}: no value ({t['error']})")
            continue
        verdict = "on target" if t["met"] else f"misses by {t['gap_text'].lstrip('+-')}"
        lines.append(f"{t['label']} {t['value_text']} (target {t['rule_text']}): {verdict}")
    return [f"{r['met']} of {len(r['targets'])} KPIs with a target are on it.",
            "; ".join(lines) + "."]


def catalogue_text(r: dict[str, Any]) -> list[str]:
    """A ``kpi_catalogue`` result."""
    names = kpi_names(k["kpi"] for k in r["kpis"]) if r["kpis"] else "nothing yet"
    segs = ", ".join(s["name"] for s in r["segments"]) or "none"
    chans = ", ".join(c["name"] for c in r["channels"]) or "none"
    return [f"Pulse can answer about {names}.",
            f"Per segment ({segs}) and per channel ({chans}); not per plan. "
            f"The data covers {r['data_text']}."]


_RENDERERS = {"kpi_value": value_text, "kpi_trend": trend_text, "breakdown": breakdown_text,
              "compare_channels": channels_text, "open_alerts": alerts_text,
              "targets": targets_text, "kpi_catalogue": catalogue_text}


def render(tool: str, result: dict[str, Any]) -> list[str]:
    """The paragraphs of one tool result."""
    if "error" in result and tool not in _RENDERERS:
        return [_sentence(result["error"])]
    try:
        return _RENDERERS[tool](result)
    except KeyError:
        return [_sentence(str(result.get("error", "Pulse could not word this result")))]


def _known() -> str:
    segs = ", ".join(SEGMENT_NAMES[s] for s in SEGMENTS)
    chans = ", ".join(CHANNEL_NAMES[c] for c in CHANNELS)
    return f"segments: {segs}; channels: {chans}"


def render_plan_problem(problem: str, kpis: list[str], suggestion: str | None,
                        segments: list[str], channels: list[str]) -> list[str]:
    """Why a question cannot be answered as asked, and what can be asked instead (``kpis``:
    those the data holds)."""
    if problem == "plan":
        return ["Pulse's KPIs are not split by plan (monthly or annual), so it cannot answer "
                "that for one plan.",
                f"It can answer per segment or per channel ({_known()})."]
    if problem.startswith("slice:"):
        name = problem.split(":", 1)[1]
        have_s = ", ".join(SEGMENT_NAMES.get(s, s) for s in segments) or "none"
        have_c = ", ".join(CHANNEL_NAMES.get(c, c) for c in channels) or "none"
        return [f"The data has no segment or channel called “{name}”, so Pulse has no number "
                "for it.",
                f"It has segments {have_s} and channels {have_c}."]
    if problem == "cross":
        return ["Pulse keeps each KPI per segment or per channel, not for a segment on one "
                "channel, so it cannot answer for both at once.",
                "Ask for the segment or the channel on its own."]
    listed = kpi_names(kpis or [k.id for k in KPI_DEFS])
    out = ["Pulse did not find a KPI it tracks in that question, so it has no number to give."]
    if suggestion:
        out.append(f"Did you mean {kpi_label(suggestion)}?")
    out.append(f"Pulse tracks {listed}.")
    return out
