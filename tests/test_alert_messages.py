"""The words and numbers of alert messages (issue 16), rendered from recorded evidence.

``tests/data/alerts/*.json`` hold the alert snapshots the project's own pipeline gave for each
incident kind, normal and subtle (recorded by ``tests/data/alerts/record.py``, run by hand).
Every open, update and resolution message rendered from them goes through
:func:`check_message`, which ``tests/test_demo.py`` runs on what ``pulse demo`` posts too:

- rates in %, their changes in percentage points (never ``+1803%``);
- the normal band cut to what the KPI can take, the same string in the field, the
  explanation and the prompt;
- the headline names the scope the contribution analysis gives (overall unless concentrated);
- an impact line; no KPI id (or ``kpi (segment/channel)``) in any text a person reads;
- early alerts say ``(so far)``.

:func:`check_severity` (no critical inside its own band) is kept apart: it checks the
detectors' output rather than the message.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from alerting.evidence import (
    CHANNEL_NAMES,
    KPIS,
    SEGMENT_NAMES,
    build_evidence,
    feasible_range,
    impact_line,
    kpi_label,
)
from alerting.explain import evidence_block
from alerting.slack import alert_message, change_reply
from alerting.template import template_explanation
from core.vocabulary import CHANNELS, SEGMENTS
from kpis.formulas import KPI_BY_ID
from simulator import INCIDENT_KINDS

DATA = Path(__file__).parent / "data" / "alerts"
GRAFANA = "http://grafana.test:3000"
CONCENTRATED = 0.6   # a slice with this share of the overall change is where the change is

_IDS = sorted({k for k in KPI_BY_ID if "_" in k} | {v for v in SEGMENTS + CHANNELS if "_" in v},
              key=len, reverse=True)
_ID_SLICE = re.compile(r"\b[a-z][a-z_]*\s?\((?:all|[a-z_]+)/(?:all|[a-z_]+)\)")
_LINK = re.compile(r"<(?:https?://|mailto:)[^|>]*\|([^>]*)>")
_BIG_SIGNED_PERCENT = re.compile(r"\+\d{3,}(?:,\d{3})*(?:\.\d+)?\s?%")   # a rise: say "3× normal"
_PERCENT_CHANGE = re.compile(r"(?:\b(?:up|down|rose|fell)(?: by)?\s|[+\-−])\d[\d,]*(?:\.\d+)?\s?%")
_OLD_REASONS = ("joined:", "now led by", "severity now warning;", "still abnormal after")


# -- the checker -------------------------------------------------------------------------------

def human_texts(text: str | None, blocks: list[dict] | None) -> dict[str, list[str]]:
    """Every text a person reads in a message, by where it is (links reduced to their label)."""
    found: dict[str, list[str]] = {"text": [text] if text else [], "header": [], "section": [],
                                   "field": [], "context": [], "button": []}
    for b in blocks or []:
        if b["type"] == "header":
            found["header"].append(b["text"]["text"])
        elif b["type"] == "section":
            if "text" in b:
                found["section"].append(b["text"]["text"])
            found["field"] += [f["text"] for f in b.get("fields", [])]
        elif b["type"] == "context":
            found["context"] += [e["text"] for e in b["elements"]]
        elif b["type"] == "actions":
            for e in b["elements"]:
                found["button"].append(e["text"]["text"])
                confirm = e.get("confirm") or {}
                found["button"] += [confirm[k]["text"] for k in confirm]
    return {k: [_LINK.sub(r"\1", t) for t in v] for k, v in found.items()}


def _fields(texts: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for f in texts["field"]:
        name, _, value = f.partition("\n")
        out[name.strip("*")] = value
    return out


def _slice_words(segment: str, channel: str) -> list[str]:
    words = []
    if segment != "all":
        words.append(SEGMENT_NAMES.get(segment, segment))
    if channel != "all":
        words.append(CHANNEL_NAMES.get(channel, channel))
    return words


def _shown(token: str) -> tuple[float, float]:
    """(value, half its last digit) of a number as shown: ``2.49%``, ``$1,234``, ``15``."""
    token = token.strip().split(" ")[0]
    scale = 0.01 if token.endswith("%") else 1.0
    digits = token.strip("$%").replace(",", "").replace("$", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return float(digits) * scale, 0.5 * 10.0 ** -decimals * scale + 1e-12


def _check_band(alert: dict, shown: str) -> tuple[float, float]:
    """The band as shown is the detector's cut to what the KPI can take, as rounded."""
    kpi = str(alert["kpi"])
    lo, hi = feasible_range(kpi)
    lower, upper = float(alert["lower"]), float(alert["upper"])
    cut = (min(max(lower, lo), hi), max(min(upper, hi), lo))
    low_s, sep, high_s = shown.partition(" to ")
    assert sep, f"band {shown!r}"
    edges = (_shown(low_s), _shown(high_s))
    whole = KPIS[kpi].kind == "count" if kpi in KPIS else False
    for (x, tol), want in zip(edges, cut, strict=True):
        if whole:   # a count's band: the whole numbers inside it
            tol = 1.0
        assert abs(x - want) <= tol, f"band {shown!r} is not [{lower:g}, {upper:g}] cut"
        assert lo - 1e-12 <= x <= hi + 1e-12, f"band {shown!r} outside what {kpi} can take"
    return edges[0][0], edges[1][0]


def _check_plain(where: str, t: str) -> None:
    for ident in _IDS:
        assert ident not in t, f"id {ident!r} in {where}: {t!r}"
    assert not _ID_SLICE.search(t), f"'kpi (segment/channel)' in {where}: {t!r}"
    assert not _BIG_SIGNED_PERCENT.search(t), f"a change like +1803% in {where}: {t!r}"


def _check_scope(alert: dict, header: str) -> None:
    seg, ch = str(alert["segment"]), str(alert["channel"])
    rows = [c for c in alert.get("contributors") or [] if c.get("share") is not None]
    everyone = "all segments and channels" in header
    named = [(c, _slice_words(str(c["segment"]), str(c["channel"]))) for c in rows]
    scope = alert.get("scope")
    if scope:   # the lifecycle's contribution analysis: the headline names what it found
        if scope["segment"] == scope["channel"] == "all":
            assert everyone, f"scope is overall, headline: {header!r}"
        else:
            words = _slice_words(scope["segment"], scope["channel"])
            assert all(w in header for w in words) and not everyone, (scope, header)
    if (seg, ch) != ("all", "all"):
        assert all(w in header for w in _slice_words(seg, ch)), (seg, ch, header)
        assert not everyone, header
        return
    # an overall lead: overall unless the contribution analysis puts most of it on one slice
    top = max((float(c["share"]) for c in rows), default=0.0)
    if top < CONCENTRATED:
        assert everyone, f"no slice holds {CONCENTRATED:.0%} of the change: {header!r}"
    for c, words in named:
        if words and all(w in header for w in words):
            assert float(c["share"]) >= CONCENTRATED, (c, header)


def check_message(alert: dict, text: str | None = None, blocks: list[dict] | None = None,
                  reply: str | None = None, prompt: str | None = None) -> None:
    """Assert issue 16's rules on one message of ``alert`` (a snapshot, or an alerts.jsonl
    record: checks that need a field it lacks are skipped): the parent's ``text`` and
    ``blocks``, a thread ``reply``, the model's ``prompt``."""
    kpi = str(alert["kpi"])
    rate = KPIS[kpi].kind == "percent" if kpi in KPIS else False
    resolved = alert["status"] == "resolved"
    has_band = alert.get("lower") is not None and alert.get("upper") is not None
    band = None
    if blocks is not None:
        texts = human_texts(text, blocks)
        for where, items in texts.items():
            for t in items:
                _check_plain(where, t)
        assert text and len(text) <= 3000
        (header,) = texts["header"]
        assert kpi_label(kpi) in header, header
        assert header in text, "the fallback text starts from the headline"
        fields = _fields(texts)
        if rate:
            change = fields["Change"]
            assert "pp" in change and not _PERCENT_CHANGE.search(change), change
            if not resolved:
                assert " pp " in header and not _PERCENT_CHANGE.search(header), header
        if has_band:
            band = fields["Normal band"]
            low, high = _check_band(alert, band)
            value, _ = _shown(fields["Observed" if not resolved else "Last abnormal"])
            outside = not float(alert["lower"]) <= float(alert["value"]) <= float(alert["upper"])
            if outside and alert["severity"] == "critical":   # it reads outside too
                assert value < low or value > high, (fields, band)
            for where in ("section", "text"):
                for t in texts[where]:
                    if "normal range" in t:
                        assert f"normal range {band}" in t, (band, t)
        lead = texts["section"][0]
        marker = "*In all:*" if resolved else "*Impact:*"
        assert marker in lead, lead
        impact = lead.split(marker, 1)[1].split("\n", 1)[0].strip()
        assert impact and ("≈" in impact or "< 1" in impact or "not countable" in impact), lead
        assert "Impact:" in text
        _check_scope(alert, header)
        if alert.get("early") and not resolved:
            assert "(so far)" in header and "(so far)" in text, header
    if reply is not None:
        _check_plain("thread reply", reply)
        assert reply.startswith("Resolved:" if resolved else "Update:"), reply
        assert not any(r in reply for r in _OLD_REASONS) or alert.get("changes") is None, reply
        assert kpi_label(kpi) in reply, reply
        if rate:
            assert not _PERCENT_CHANGE.search(reply), reply
        if resolved:
            assert "In all:" in reply, reply
    if prompt is not None and band is not None:   # the model sees the message's strings
        assert f'"normal_band": "{band}"' in prompt, prompt
        assert json.dumps(impact_line(alert), ensure_ascii=False) in prompt


def check_severity(alert: dict) -> None:
    """A critical alert's lead is strictly outside its own band (the band the message shows)."""
    if alert["severity"] != "critical" or alert["status"] == "resolved":
        return
    value, lower, upper = float(alert["value"]), float(alert["lower"]), float(alert["upper"])
    assert value < lower or value > upper, (
        f"critical inside its band: {alert['kpi']} {alert['segment']}/{alert['channel']} "
        f"{value:g} in [{lower:g}, {upper:g}] (detector {alert.get('detector')}, "
        f"window {alert.get('window_start')})")


def render(alert: dict) -> tuple[dict, str, list[dict], str | None, str]:
    """What the service sends for a change: the template explanation, the parent message,
    the thread reply (not for ``open``) and the model's prompt."""
    alert = copy.deepcopy(alert)
    evidence = build_evidence(alert)
    if alert.get("explanation_source") != "llm":
        alert["explanation"], alert["explanation_source"] = (
            template_explanation(evidence), "template")
    text, blocks = alert_message(alert, GRAFANA)
    reply = None if alert["status"] == "open" else change_reply(alert)
    return alert, text, blocks, reply, evidence_block(evidence)


# -- the recorded incidents --------------------------------------------------------------------

def _cases() -> list[str]:
    """The recorded incidents that raised an alert (a subtle churn spike may raise none: the
    fixture is kept, and the coverage test below still sees it, but there is nothing to render)."""
    return sorted(p.stem for p in DATA.glob("*.json")
                  if json.loads(p.read_text(encoding="utf-8"))["changes"])


def _all_cases() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.json"))


def _load(case: str) -> dict:
    return json.loads((DATA / f"{case}.json").read_text(encoding="utf-8"))


def _changes(case: str) -> list[dict]:
    return list(_load(case)["changes"])


def test_fixtures_cover_every_incident_kind_normal_and_subtle() -> None:
    cases = _all_cases()
    for kind in INCIDENT_KINDS:
        for difficulty in ("normal", "subtle"):
            assert f"{kind}-{difficulty}" in cases
        assert _load(f"{kind}-normal")["changes"] or kind == "churn-spike", kind
    slices = {(d["incident"]["segment"], d["incident"]["channel"]) != ("all", "all")
              for d in map(_load, cases) if d["changes"]}
    assert slices == {True, False}, "overall and single-slice incidents"


@pytest.mark.parametrize("case", _cases())
def test_recorded_messages_read_in_plain_numbers_and_words(case: str) -> None:
    statuses = set()
    for change in _changes(case):
        alert, text, blocks, reply, prompt = render(change["alert"])
        statuses.add(alert["status"])
        try:
            check_message(alert, text, blocks, reply, prompt)
        except AssertionError as e:
            raise AssertionError(f"{case} v{alert['version']} {alert['status']}: {e}") from e
    assert "open" in statuses


@pytest.mark.parametrize("case", _cases())
def test_recorded_criticals_are_outside_their_band(case: str) -> None:
    for change in _changes(case):
        check_severity(change["alert"])


@pytest.mark.parametrize("case", _cases())
def test_the_first_message_names_where_the_incident_is(case: str) -> None:
    changes = _changes(case)
    incident = _load(case)["incident"]
    alert, _, blocks, _, _ = render(changes[0]["alert"])
    header = blocks[0]["text"]["text"]
    if incident["segment"] == incident["channel"] == "all" and (
            alert["segment"], alert["channel"]) == ("all", "all"):
        # the numbers are everyone's: the headline must not read as one slice's problem
        assert "all segments and channels" in header or "overall, mostly" in header, header
    words = _slice_words(incident["segment"], incident["channel"])
    if words and (alert["segment"], alert["channel"]) != ("all", "all"):
        assert all(w in header for w in words), (incident, header)


# -- the issue's own example -------------------------------------------------------------------

def _issue_alert(**kw: object) -> dict:
    ws = 1_795_255_200.0
    alert = {"id": "a1", "status": "open", "kpi": "payment_failure_rate", "segment": "all",
             "channel": "all", "severity": "critical", "window_start": "2026-11-21T10:00:00Z",
             "window_end": "2026-11-21T11:00:00Z", "window_start_ts": ws,
             "window_end_ts": ws + 3600, "value": 0.667, "expected": 0.035, "lower": -0.43,
             "upper": 0.5, "score": 0.99, "direction": "up", "unit": "ratio 0-1",
             "detector": "forecast", "n": 36.0, "since_ts": ws - 7200, "duration_windows": 3,
             "explanation": "", "explanation_source": "template", "version": 1,
             "related": [{"kpi": "revenue", "segment": "all", "channel": "all",
                          "severity": "critical", "value": 400.0, "expected": 1500.0,
                          "direction": "down", "window_start": "2026-11-21T10:00:00Z"}],
             "contributors": [{"segment": "new_grad", "channel": "all", "value": 0.7,
                               "expected": 0.04, "delta": 0.66, "share": 0.3}],
             "history": [{"window_start_ts": ws - 3600 * k, "value": v, "expected": 0.035,
                          "lower": -0.43, "upper": 0.5, "n": 40.0}
                         for k, v in ((3, 0.03), (2, 0.6), (1, 0.62))],
             "scope": {"segment": "all", "channel": "all", "share": None, "spread": True},
             "changes": ["opened"], "joined": [], "previous": None}
    return {**alert, **kw}


def test_the_issue_example_reads_in_points_with_the_cut_band_and_the_cost() -> None:
    alert, text, blocks, reply, prompt = render(_issue_alert())
    check_message(alert, text, blocks, reply, prompt)
    header = blocks[0]["text"]["text"]
    assert header == ("Critical: Payment failure rate up 63.2 pp to 66.7% (19× normal) across "
                      "all segments and channels")
    fields = _fields(human_texts(text, blocks))
    assert fields["Normal band"] == "0.0% to 50.0%" and fields["Change"] == "+63.2 pp (19× normal)"
    # 56.5 and 58.5 pp above normal on 40 attempts, then 63.2 pp on 36: 22.6 + 23.4 + 22.8
    assert blocks[1]["text"]["text"].startswith(
        ":red_circle: *Impact:* ≈ 69 more failed payments than usual in 3 h; ≈ $1,100 of "
        "revenue at risk in the same window.")
    assert "normal range 0.0% to 50.0%" in blocks[3]["text"]["text"]


def test_thread_replies_say_what_changed_in_words() -> None:
    alert = _issue_alert(status="updated", value=0.78, changes=["joined", "severity"],
                         joined=[{"kpi": "payment_failure_rate", "segment": "all",
                                  "channel": "organic"},
                                 {"kpi": "payment_failure_rate", "segment": "all",
                                  "channel": "paid_search"}],
                         previous={"kpi": "payment_failure_rate", "segment": "all",
                                   "channel": "all", "value": 0.667})
    reply = change_reply(alert)
    check_message(alert, reply=reply)
    assert reply == ("Update: Now also on organic and on paid search. Severity now critical. "
                     "Payment failure rate 78.0% (expected 3.5%), was 66.7%.")
    resolved = change_reply({**alert, "status": "resolved", "changes": ["resolved"]})
    assert resolved.startswith("Resolved: Payment failure rate across all segments and "
                               "channels is back to normal after 3 h. In all: ≈ ")


def test_an_old_snapshot_without_change_codes_keeps_its_reason_in_plain_words() -> None:
    alert = _issue_alert(status="updated", changes=None, scope=None,
                         reason="now led by payment_failure_rate; joined: match_rate")
    reply = change_reply(alert)
    _check_plain("reply", reply)
    assert "now led by Payment failure rate; joined: Match rate" in reply


def test_a_surge_is_not_a_regression_and_a_drop_is_not_a_campaign() -> None:
    base = {"kpi": "signups", "kpi_name": "Signups", "where": "referral", "value": "412",
            "expected": "105", "normal_band": "60 to 150", "change": "+307",
            "relative_change": "3.9× normal", "duration": "1 h", "confidence": "99%",
            "since": "2026-11-21 10:00 UTC", "scope": "Referral",
            "related_kpis_same_windows": [], "top_contributors": []}
    surge = template_explanation({**base, "direction": "up", "direction_meaning": "better"})
    drop = template_explanation({**base, "direction": "down", "direction_meaning": "worse",
                                 "value": "3", "change": "-102", "relative_change": "-97%"})
    assert "campaign" in surge and "bot" in surge and "counted twice" in surge
    assert "regression" not in surge and "good direction" in surge
    assert "tracking" in drop and "outage" in drop and "campaign" not in drop
    scans = template_explanation({**base, "kpi": "scans", "kpi_name": "Scans",
                                  "direction": "up", "direction_meaning": "better"})
    assert "regression" not in scans and "surge" in scans


def test_money_and_counts_have_units_and_separators() -> None:
    alert = _issue_alert(kpi="revenue", value=1400.0, expected=4100.0, lower=3000.0,
                         upper=5200.0, direction="down", unit="USD", related=[], history=[],
                         duration_windows=1, since_ts=1_795_255_200.0)
    alert, text, blocks, reply, prompt = render(alert)
    check_message(alert, text, blocks, reply, prompt)
    assert blocks[0]["text"]["text"].startswith("Critical: Revenue down 66% to $1,400")
    assert "*Impact:* ≈ $2,700 of revenue short in 1 h" in blocks[1]["text"]["text"]


def test_an_early_alert_says_so_far_everywhere() -> None:
    ws = 1_795_255_200.0
    alert, text, blocks, _, prompt = render(_issue_alert(
        early=True, as_of_ts=ws + 900, elapsed_minutes=15.0, span_start_ts=ws, history=[],
        since_ts=ws, duration_windows=1))
    check_message(alert, text, blocks, None, prompt)
    assert "in the first 15 min of the 10:00–11:00 UTC window (so far)" in text
    assert "in 15 min so far" in blocks[1]["text"]["text"]


def test_an_alert_without_a_band_says_so() -> None:
    alert, text, blocks, _, _ = render(_issue_alert(lower=None, upper=None, history=[]))
    assert _fields(human_texts(text, blocks))["Normal band"] == "n/a"
