"""The assistant on a fixed week of KPIs: every number checked against the file itself.

``tests/data/kpis_week.jsonl`` and ``alerts_week.jsonl`` come from the simulator run through
the KPI engine, the detectors and the alert lifecycle (``tests/data/make_kpis_week.py``): data
from Wed 28 Jan to Wed 11 Feb 2026 12:00 UTC, a churn spike on 5-6 February and a payment
outage still open at the end. Expected numbers are computed here with plain Python over the
rows (sums, ratios of sums, the row at an instant), not with the assistant's own functions.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from assistant import TOOLS, Answer, KpiStore, StoreError, answer, tool_by_name
from assistant.query import rule
from kpis.formulas import KPI_BY_ID, KPIS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
KPIS_FILE, ALERTS_FILE = DATA / "kpis_week.jsonl", DATA / "alerts_week.jsonl"
ROWS = [json.loads(line) for line in KPIS_FILE.read_text().splitlines() if line]
DAY = 86_400.0
SEGMENTS = ("career_changer", "new_grad", "experienced", "executive")
CHANNELS = ("organic", "paid_search", "referral", "social")
WORDS = {"career_changer": "career changers", "new_grad": "new grads",
         "experienced": "experienced hires", "executive": "executives",
         "organic": "organic", "paid_search": "paid search", "referral": "referral",
         "social": "social"}
IDS = re.compile(r"\b(" + "|".join(k for k in KPI_BY_ID if "_" in k)
                 + r"|new_grad|paid_search|career_changer)\b")


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


NOW = max(ts(r["window_end"]) for r in ROWS)


def rows(kpi: str, segment: str = "all", channel: str = "all") -> list[dict]:
    return sorted((r for r in ROWS if r["kpi"] == kpi and r["segment"] == segment
                   and r["channel"] == channel and "cohort" not in r),
                  key=lambda r: r["window_end"])


def at(kpi: str, when: float, segment: str = "all", channel: str = "all") -> dict:
    """The row of the window ending at ``when``."""
    (row,) = [r for r in rows(kpi, segment, channel) if ts(r["window_end"]) == when]
    return row


def total(kpi: str, start: float, end: float, segment: str = "all",
          channel: str = "all") -> float:
    return sum(r["value"] for r in rows(kpi, segment, channel)
               if ts(r["window_start"]) >= start and ts(r["window_end"]) <= end)


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def usd(x: float) -> str:
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"


def fact(a: Answer, tool: str, **match: str) -> dict:
    (found,) = [f for f in a.facts if f["tool"] == tool
                and all(f.get(k, f["input"].get(k)) == v for k, v in match.items())]
    return found


@pytest.fixture(scope="module")
def store() -> KpiStore:
    return KpiStore.from_files(KPIS_FILE, ALERTS_FILE)


def readable(a: Answer) -> str:
    """The answer as a finance person reads it: no KPI or slice ids, no empty numbers."""
    assert not IDS.search(a.text), a.text
    assert "nan" not in a.text and "n/a" not in a.text and "None" not in a.text, a.text
    assert a.source == "parser" and a.blocks and a.blocks[-1]["type"] == "context"
    return a.text


# -- the seed's questions ------------------------------------------------------------------

def test_churn_rate_now_its_seven_day_trend_and_target(store):
    a = answer("What's our churn rate?", store)
    text = readable(a)
    now, week_ago = at("churn_rate", NOW)["value"], at("churn_rate", NOW - 7 * DAY)["value"]
    f = fact(a, "kpi_value", kpi="churn_rate")
    assert f["value"] == now and f["comparison"]["value"] == week_ago
    assert math.isclose(f["comparison"]["change"], now - week_ago)
    assert f["target"]["target"] == 0.05 and f["target"]["met"] == (now <= 0.05)
    assert pct(now) in text and pct(week_ago) in text
    assert f"{abs(now - week_ago) * 100:.1f} pp" in text
    assert "Target: at most 5% per month" in text and "Wed 11 Feb 12:00 UTC" in text


def test_what_drives_churn_is_split_by_segment_and_channel_largest_first(store):
    a = answer("What's driving our churn rate?", store)
    text = readable(a)
    f = fact(a, "breakdown", kpi="churn_rate")
    then = NOW - 7 * DAY
    overall_now, overall_then = at("churn_rate", NOW), at("churn_rate", then)
    change = overall_now["value"] - overall_then["value"]
    assert math.isclose(f["overall"]["change"], change)
    assert f"{abs(change) * 100:.1f} pp" in text
    for dim, names in (("segment", SEGMENTS), ("channel", CHANNELS)):
        expected = {}
        for name in names:
            seg, ch = (name, "all") if dim == "segment" else ("all", name)
            a_now, a_then = at("churn_rate", NOW, seg, ch), at("churn_rate", then, seg, ch)
            # cancellations of the slice over all subscriptions, after minus before
            expected[name] = (a_now["value"] * a_now["n"] / overall_now["n"]
                              - a_then["value"] * a_then["n"] / overall_then["n"])
        got = [(r[dim], r["contribution"]) for r in f[f"by_{dim}"]]
        assert [n for n, _ in got] == sorted(expected, key=lambda n: -abs(expected[n]))
        for name, part in got:
            assert math.isclose(part, expected[name], abs_tol=1e-12)
        assert math.isclose(sum(expected.values()), change, abs_tol=1e-9)   # adds up
        line = next(p for p in text.splitlines() if p.startswith(f"By {dim}"))
        order = [line.index(WORDS[n]) for n, _ in got]
        assert order == sorted(order)
        top = got[0]
        assert f"{WORDS[top[0]]} {'+' if top[1] >= 0 else '-'}{abs(top[1]) * 100:.1f} pp" in line


def test_which_channel_to_invest_in_ranks_every_channel_by_ltv_cac(store):
    a = answer("Which channel should we invest in?", store)
    text = readable(a)
    f = fact(a, "compare_channels")
    start = NOW - 7 * DAY
    by_channel = {c["channel"]: c for c in f["channels"]}
    assert set(by_channel) == set(CHANNELS)
    ltv_cac = {}
    for ch in CHANNELS:
        c = by_channel[ch]
        cac, ltv = at("cac", NOW, channel=ch)["value"], at("ltv", NOW, channel=ch)["value"]
        signups = total("signups", start, NOW, channel=ch)
        conv = total("paid_conversions", start, NOW, channel=ch) / signups
        assert c["cac"]["value"] == cac and c["ltv"]["value"] == ltv
        assert c["signups"]["value"] == signups
        assert math.isclose(c["conversion_rate"]["value"], conv)
        assert c["paying_users_30d"] == at("cac", NOW, channel=ch)["n"]
        line = next(p for p in text.splitlines() if WORDS[ch] in p.lower().split(":")[0])
        assert usd(ltv) in line and pct(conv) in line and f"Signups {signups:,.0f}" in line
        if cac > 0:
            ltv_cac[ch] = at("ltv_cac", NOW, channel=ch)["value"]
            assert c["ltv_cac"]["value"] == ltv_cac[ch]
            assert usd(cac) in line and f"LTV:CAC {ltv_cac[ch]:,.2f}" in line
        else:
            assert "no marketing spend" in line
    ranked = [c["channel"] for c in f["channels"] if "rank" in c]
    assert ranked == sorted(ltv_cac, key=lambda ch: -ltv_cac[ch]) and ranked
    assert "Targets:" in text and "CAC at most 50 USD" in text and "LTV:CAC at least 3" in text


def test_mrr_trend_this_month(store):
    a = answer("How is MRR trending this month?", store)
    text = readable(a)
    f = fact(a, "kpi_trend", kpi="mrr")
    feb = [r for r in rows("mrr") if ts(r["window_start"]) >= ts("2026-02-01T00:00:00Z")]
    first, last = feb[0]["value"], feb[-1]["value"]
    assert f["from"]["value"] == first and f["to"]["value"] == last
    assert math.isclose(f["change"], last - first)
    assert usd(first) in text and usd(last) in text and usd(abs(last - first)) in text
    end_of_day = {r["window_start"][:10]: r["value"] for r in feb}   # each day's last window
    days = f["points"]
    assert [p["start"][:10] for p in days] == sorted(end_of_day)
    assert [p["value"] for p in days] == [end_of_day[d] for d in sorted(end_of_day)]
    assert days[-1]["partial"] and not any(p["partial"] for p in days[:-1])
    assert all(usd(p["value"]) in text for p in days)


def test_signups_on_referral_against_the_same_part_of_last_week(store):
    a = answer("Signups on referral compared to last week", store)
    text = readable(a)
    monday = ts("2026-02-09T00:00:00Z")
    this_week = total("signups", monday, NOW, channel="referral")
    last_week = total("signups", monday - 7 * DAY, NOW - 7 * DAY, channel="referral")
    f = fact(a, "kpi_value", kpi="signups")
    assert f["channel"] == "referral" and f["value"] == this_week
    assert f["comparison"]["value"] == last_week
    assert f"{this_week:,.0f}" in text and f"{last_week:,.0f}" in text
    assert f"{abs(this_week - last_week) / last_week:.0%}" in text
    assert "on referral this week so far (Mon 9 Feb 00:00 – Wed 11 Feb 12:00 UTC)" in text
    assert "same part of last week (Mon 2 Feb 00:00 – Wed 4 Feb 12:00 UTC)" in text


def test_ltv_cac_for_new_grads_is_answered_for_new_grads_not_everyone(store):
    a = answer("LTV:CAC for new grads", store)
    text = readable(a)
    paragraphs = text.splitlines()
    assert "LTV:CAC has no value for new grads" in paragraphs[0]
    assert "per channel" in paragraphs[0]
    grads = at("ltv", NOW, segment="new_grad")["value"]
    assert fact(a, "kpi_value", kpi="ltv")["value"] == grads
    assert f"LTV for new grads is {usd(grads)}" in text
    overall = f"{at('ltv_cac', NOW)['value']:,.2f}"
    for p in paragraphs:   # the overall ratio only where it says it is the overall one
        if overall in p:
            assert p.startswith("For comparison, across all segments and channels")


@pytest.mark.parametrize("question, says", [
    ("What was our churn rate in March 2025?", "has nothing for Sat 1 Mar 2025 – Mon 31 Mar 2025"),
    ("What's our NPS?", "did not find a KPI it tracks"),
    ("What's our churm?", "Did you mean Churn rate?"),
    ("Churn for annual plan users", "not split by plan"),
    ("MRR for pro users", "no segment or channel called “pro”"),
    ("Churn for new grads on paid search", "not for a segment on one channel"),
])
def test_a_question_the_data_cannot_answer_says_so_without_a_number(store, question, says):
    a = answer(question, store)
    text = readable(a)
    assert says in text
    assert not re.search(r"\d%|\$\d| pp\b", text), text   # no value of any KPI


def test_the_other_shapes_of_question(store):
    yesterday = answer("How many scans yesterday?", store)
    day = ts("2026-02-10T00:00:00Z")
    assert fact(yesterday, "kpi_value")["value"] == total("scans", day, day + DAY)
    ranked = answer("Which segment has the highest churn?", store)
    order = [r["segment"] for r in fact(ranked, "breakdown")["by_segment"]]
    assert order == sorted(SEGMENTS, key=lambda s: -at("churn_rate", NOW, s)["value"])
    assert "Payment failure rate" in readable(answer("Any open alerts?", store))
    targets = fact(answer("Are we on target?", store), "targets")["targets"]
    assert {t["kpi"] for t in targets} == {k.id for k in KPIS if k.target is not None}
    dated = answer("Revenue between Feb 2 and Feb 5", store)
    expected = total("revenue", ts("2026-02-02T00:00:00Z"), ts("2026-02-06T00:00:00Z"))
    assert math.isclose(fact(dated, "kpi_value")["value"], expected)
    for q in ("signups today vs yesterday", "What can you answer?", "day-7 retention",
              "Conversion rate by channel", "why did revenue drop this week?"):
        readable(answer(q, store))


# -- tools, store, blocks, the model path ----------------------------------------------------

def test_tools_declare_objects_and_never_raise_on_bad_input(store):
    assert {"kpi_value", "kpi_trend", "breakdown", "compare_channels", "open_alerts",
            "targets"} <= {t.name for t in TOOLS}
    bad = [None, [], {"kpi": None}, {"kpi": "nps"}, {"kpi": "mrr", "period": "someday"},
           {"kpi": "mrr", "segment": "pro"}, {"kpi": "cac", "segment": "new_grad"},
           {"kpi": "mrr", "segment": "new_grad", "channel": "social"},
           {"kpi": "mrr", "period": "last_n_days", "days": "x"},
           {"kpi": "mrr", "period": "range", "start": "yesterday"},
           {"kpi": "mrr", "by": "plan"}, {"kpi": "mrr", "compare": "soon"}]
    for tool in TOOLS:
        schema = tool.input_schema
        assert schema["type"] == "object" and isinstance(schema["properties"], dict)
        assert set(schema.get("required", ())) <= set(schema["properties"])
        json.dumps(tool.run(store, {} if not schema.get("required") else {"kpi": "mrr"}))
        for args in bad:
            out = tool.run(store, args)
            assert isinstance(out, dict)
            json.dumps(out)
    assert "error" in tool_by_name("kpi_value").run(store, {"kpi": "nps"})
    assert tool_by_name("nope") is None
    value = tool_by_name("kpi_value").run(store, {"kpi": "churn_rate"})
    assert value["value_text"] == pct(value["value"]) and value["label"] == "Churn rate"


def test_store_reads_files_docs_and_says_what_is_wrong(tmp_path):
    mixed = tmp_path / "kpis.jsonl"
    mixed.write_text("not json\n" + "\n".join(json.dumps(r) for r in ROWS[:50]) + "\n[1]\n")
    s = KpiStore.from_files(mixed)
    assert s.bad_lines == 2 and s.kpis()
    for content, says in (("", "is empty"), ("{oops\n", "has no KPI rows")):
        (tmp_path / "k.jsonl").write_text(content)
        with pytest.raises(StoreError, match=says):
            KpiStore.from_files(tmp_path / "k.jsonl")
    with pytest.raises(StoreError, match="does not exist"):
        KpiStore.from_files(tmp_path / "missing.jsonl")
    with pytest.raises(StoreError, match="does not exist"):
        KpiStore.from_files(mixed, tmp_path / "alerts.jsonl")
    doc = {"kpi": "signups", "window_start": "2026-02-11T10:00:00Z", "complete": True,
           "window_end": "2026-02-11T11:00:00Z", "window_start_ts": ts("2026-02-11T10:00:00Z"),
           "window_end_ts": ts("2026-02-11T11:00:00Z"),
           "series": [{"segment": "all", "channel": "all", "value": 4.0, "n": 4.0}]}
    running = {**doc, "as_of_ts": doc["window_end_ts"], "series": [
        {"segment": "all", "channel": "all", "value": 99.0, "n": 99.0}]}
    s = KpiStore.from_docs([doc, {"kind": "window_closed"}, running])
    assert s.latest("signups").value == 4.0


def test_blocks_escape_names_that_came_from_events():
    row = {"kpi": "signups", "segment": "<!channel>", "channel": "all", "value": 3.0,
           "n": 3.0, "window_start": "2026-02-11T10:00:00Z",
           "window_end": "2026-02-11T11:00:00Z"}
    s = KpiStore.from_rows([row, {**row, "segment": "all"}])
    a = answer("signups by segment", s)
    assert "<!channel>" not in json.dumps(a.blocks)
    assert all(b["type"] in ("section", "context") for b in a.blocks)


def test_the_model_path_falls_back_to_the_parser(store, monkeypatch):
    import assistant.llm as llm

    def broken(*args, **kwargs):
        raise RuntimeError("no network")

    async def silent(*args, **kwargs):
        return None

    async def speaks(client, question, s, tools, model):
        assert tools is TOOLS and s is store
        return Answer("Churn is fine.", [], [], "model")

    for fn, source in ((broken, "parser"), (silent, "parser"), (speaks, "model")):
        monkeypatch.setattr(llm, "answer_with_tools", fn)
        assert answer("What's our churn rate?", store, client=object()).source == source


def test_period_rules_match_the_digest():
    from alerting.digest import daily_rule
    for k in KPIS:
        if k.id not in ("mrr_growth",) and not k.id.startswith("funnel_"):
            assert rule(k.id) == daily_rule(k), k.id


# -- the command line ------------------------------------------------------------------------

def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "PULSE_KAFKA_BOOTSTRAP")}
    return subprocess.run([sys.executable, "-m", "pulse.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_answers_and_lists_open_alerts():
    out = _cli(["ask", "What's our churn rate?", "--kpis", str(KPIS_FILE)])
    assert out.returncode == 0, out.stderr
    assert pct(at("churn_rate", NOW)["value"]) in out.stdout
    alerts = _cli(["alerts", "--alerts", str(ALERTS_FILE)])
    assert alerts.returncode == 0, alerts.stderr
    assert alerts.stdout.startswith("1 open alert")
    assert "Payment failure rate" in alerts.stdout and "Open for 4 h" in alerts.stdout
    assert "Grafana: http" in alerts.stdout


@pytest.mark.parametrize("args, says", [
    (["ask", "churn?", "--kpis", "{tmp}/missing.jsonl"], "does not exist"),
    (["ask", "churn?", "--kpis", "{tmp}/bad.jsonl"], "has no KPI rows"),
    (["ask", "churn?", "--kpis", "{tmp}/empty.jsonl"], "is empty"),
    (["ask", "churn?", "--broker", "127.0.0.1:1"], "cannot read the pipeline's topics"),
    (["ask", "churn?"], "give --kpis FILE"),
    (["alerts", "--alerts", "{tmp}/bad.jsonl"], "has no alert records"),
    (["alerts", "--alerts", "{tmp}/missing.jsonl"], "does not exist"),
    (["alerts", "--broker", "127.0.0.1:1"], "cannot read the pipeline's topics"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, args, says):
    (tmp_path / "bad.jsonl").write_text("this is not json\n{\n")
    (tmp_path / "empty.jsonl").write_text("")
    out = _cli([a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and says in out.stderr, out.stderr
