"""The worker's page: dashboard/ rendered from a fixed store, and a real browser on a demo.

The browser is Debian's chromium (``make chromium``), driven by Playwright's Python package;
no browser is downloaded. ``PULSE_PAGE_SHOTS=docs/images`` makes the browser test write the
README's screenshots (page.png, page-alerts.png; page-funnel.png, page-cohorts.png too) there,
from a default demo (42 days of history) rather than the short one.
"""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from assistant.answer import parser_answer
from assistant.store import KpiStore
from dashboard import (
    PageInfo,
    alerts_page,
    ask_page,
    cohorts_page,
    funnel_page,
    overview_page,
)
from dashboard.funnel import step_share
from dashboard.overview import kpi_card, target_status
from kpis.formulas import KPIS
from stream.broker import free_port

DATA = Path(__file__).parent / "data"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TARGETED = [k for k in KPIS if k.target is not None]
PAYMENT_KPIS = {"payment_failure_rate", "payments", "revenue", "paid_conversions",
                "conversion_rate"}


@pytest.fixture(scope="module")
def week() -> KpiStore:
    """The fixed fortnight of tests/data: a churn spike, and a payment outage still open."""
    return KpiStore.from_files(DATA / "kpis_week.jsonl", DATA / "alerts_week.jsonl")


def _all_pages(store: KpiStore) -> dict[str, str]:
    info = PageInfo(as_of="Wed 11 Feb 12:00 UTC", refresh_s=15)
    return {"overview": overview_page(store, info), "funnel": funnel_page(store, info),
            "cohorts": cohorts_page(store, info), "alerts": alerts_page(store, info),
            "ask": ask_page("What's our churn rate?", "Churn rate is 3.2%.", info)}


# -- dashboard/ from a fixed store ---------------------------------------------------------

def test_overview_has_every_kpi_with_target_verdicts(week: KpiStore) -> None:
    html = overview_page(week, PageInfo())
    for k in KPIS:
        assert f'data-kpi="{k.id}"' in html, k.id
        assert k.title.replace("&", "&amp;") in html
    for k in TARGETED:
        status = re.search(rf'data-kpi="{k.id}" data-target-status="(\w+)"', html)
        assert status and status.group(1) in ("met", "missed"), k.id
    churn = week.latest("churn_rate")
    assert churn is not None and target_status("churn_rate", churn.value) == "met"   # <= 5%
    assert "$120,568" in html and "3.2%" in html   # MRR and churn, as Slack writes them
    assert html.count('<svg class="spark"') == len(KPIS)
    assert 'alert open' in html   # the payment outage marks its KPI's card


def test_flow_kpis_are_a_day_and_compare_with_a_week_before(week: KpiStore) -> None:
    assert week.now is not None
    card = kpi_card(week, "signups")
    day = week.points("signups", start=week.now - 86400)
    assert card.value == sum(p.value for p in day) and card.hour == day[-1].value
    assert card.week_ago is not None and len(card.week) == 7 * 24
    churn = kpi_card(week, "churn_rate")     # a trailing KPI: its newest value as it is
    latest = week.latest("churn_rate")
    assert latest is not None and churn.value == latest.value and churn.hour is None


def test_funnel_adds_up_the_signups_of_a_week(week: KpiStore) -> None:
    assert week.now is not None
    html = funnel_page(week, PageInfo())
    share, n = step_share(week, "funnel_signup_to_paid", "all", "all")
    points = week.points("funnel_signup_to_paid", start=week.now - 7 * 86400)
    assert n == sum(p.n for p in points) and 0 < share < 1
    assert abs(share * n - sum(p.value * p.n for p in points)) < 1e-6
    for who in ("All users", "Career changers", "New grads", "Paid search", "Referral"):
        assert f"<th>{who}</th>" in html
    assert html.count('data-kpi="funnel_scan_to_paid"') == 1 + 4 + 4


def test_cohort_heatmap(week: KpiStore) -> None:
    html = cohorts_page(week, PageInfo())
    assert 'data-cohort="2026-01-26"' in html and "33.9%" in html   # day-7 retention
    assert 'data-cohort="2025-12-22"' in html and "30.3%" in html   # day-30 retention
    one = cohorts_page(week, PageInfo(), segment="new_grad")
    assert 'class="on">New grads</a>' in one and one != html


def test_alerts_show_evidence_and_chart(week: KpiStore) -> None:
    html = alerts_page(week, PageInfo())
    card = html.split('data-kpi="payment_failure_rate" data-status="updated"')[1]
    for field in ("Value", "Expected", "Normal band", "Since", "Scope", "Impact"):
        assert f"<dt>{field}</dt>" in card
    assert "Payment failure rate up" in card and "2026-02-11 07:00 UTC" in card
    assert 'src="data:image/png;base64,iVBOR' in card
    assert 'data-status="resolved"' in html   # the churn spike's alert, resolved that week


def test_everything_from_events_or_users_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    rows = [{"kpi": k, "segment": seg, "channel": "all", "value": 0.5, "n": 10.0,
             "window_start": f"2026-02-11T0{h}:00:00Z", "window_end": f"2026-02-11T0{h + 1}:00:00Z",
             **({"cohort": "2026-01-26"} if k == "retention_d7" else {})}
            for k in ("funnel_signup_to_scan", "retention_d7", "signups")
            for seg in ("all", evil) for h in range(3)]
    alert = {"id": evil, "status": "open", "kpi": "signups", "segment": evil, "channel": "all",
             "severity": "critical", "window_start": "2026-02-11T02:00:00Z",
             "window_end": "2026-02-11T03:00:00Z", "value": 0.5, "expected": 9.0,
             "lower": 4.0, "upper": 14.0, "score": 1.0, "since": "2026-02-11T02:00:00Z",
             "explanation": evil, "direction": "down", "related": [], "contributors": []}
    store = KpiStore.from_rows(rows, [alert])
    pages = _all_pages(store)
    pages["ask"] = ask_page(evil, evil, PageInfo())
    pages["cohorts-evil"] = cohorts_page(store, PageInfo(), segment=evil)
    for name, html in pages.items():
        assert "<script" not in html, name
        assert not re.search(r'(src|href|action)="(https?:)?//', html), name   # nothing external


def test_ask_page_shows_the_assistants_answer(week: KpiStore) -> None:
    answer = parser_answer("What's our churn rate?", week)
    html = ask_page("What's our churn rate?", answer.text, PageInfo(), answer.source)
    assert "Churn rate is 3.2%" in html and 'id="answer"' in html
    assert 'method="post" action="/ask"' in html


# -- the page of a running demo, in a browser ------------------------------------------------

class Demo:
    """``pulse demo`` in a child process; its printed lines are read as they come."""

    def __init__(self, out: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("ANTHROPIC_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                            "PULSE_FEEDBACK_PORT")}
        env["PULSE_METRICS_PORT"] = str(free_port())
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulse.cli", "demo", "--out", str(out), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "the demo ended:\n" + "".join(self.seen)
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no {pattern!r} in:\n" + "".join(self.seen))

    def open_alert(self, kpis: set[str], timeout: float) -> dict:
        """The first alert of one of ``kpis`` whose newest record in alerts.jsonl is open."""
        deadline = time.monotonic() + timeout
        path = self.out / "alerts.jsonl"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the demo ended before an alert opened"
            latest: dict[str, dict] = {}
            if path.exists():
                for line in path.read_bytes().splitlines():
                    if line.strip():
                        record = orjson.loads(line)
                        latest[record["id"]] = record
            for record in latest.values():
                if record["kpi"] in kpis and record["status"] in ("open", "updated"):
                    return record
            time.sleep(0.3)
        raise AssertionError("no open payment alert in time")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A short demo: 15 days of history (the funnel's 14 days and a first day-7 cohort) of a
    business half the default size; for the README's screenshots, the default demo."""
    short = ("--duration", "150", "--history-days", "15", "--scale", "0.5")
    full = ("--duration", "330")
    d = Demo(tmp_path / "out", *(full if os.environ.get("PULSE_PAGE_SHOTS") else short),
             "--scenario", "payment-outage", "--quiet")
    try:
        yield d
    finally:
        d.stop()


def _non_trivial(png: bytes, min_height: int = 700) -> None:
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] >= min_height and pixels.shape[1] >= 1000, pixels.shape
    colours = {tuple(p) for p in (pixels[::7, ::7, :3] * 255).astype("uint8").reshape(-1, 3)}
    assert len(colours) > 60 and pixels[..., :3].std() > 0.08, (len(colours), pixels.std())


@pytest.mark.timeout(600)
def test_the_page_of_a_running_demo(demo: Demo) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "no /usr/bin/chromium: `make chromium` installs it"

    t0 = time.monotonic()
    url = demo.wait_for_line(r"page: (http://127\.0\.0\.1:\d+/)", 30).group(1)
    alert = demo.open_alert(PAYMENT_KPIS, 400)
    print(f"alert open after {time.monotonic() - t0:.1f} s")
    shots = os.environ.get("PULSE_PAGE_SHOTS")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page = browser.new_page()
        expect.set_options(timeout=30_000)

        # Alerts first: the outage's alert is open for a few seconds of a demo's minute
        page.goto(url + "alerts")
        card = page.locator(f'.alert[data-alert="{alert["id"]}"]')
        expect(card).to_have_attribute("data-status", re.compile("open|updated"))
        for field in ("Value", "Expected", "Normal band", "Since", "Scope"):
            expect(card.locator("dt", has_text=field)).to_have_count(1)
        expect(card.locator("h3")).to_contain_text(re.compile(r"\d%"))
        assert card.locator("img").evaluate("i => i.naturalWidth") >= 500
        alerts_png = page.screenshot(full_page=True)

        page.goto(url)
        expect(page.locator(".kpi")).to_have_count(len(KPIS))
        for k in KPIS:
            expect(page.locator(f'.kpi[data-kpi="{k.id}"] .kpi-name')).to_contain_text(k.title)
        for k in TARGETED:
            kpi = page.locator(f'.kpi[data-kpi="{k.id}"]')
            expect(kpi.locator(".kpi-target")).to_contain_text(re.compile("Target [≥≤] "))
            expect(kpi.locator(".pill")).to_have_text(re.compile(r"Target (met|missed)"))
        expect(page.locator('.kpi[data-kpi="mrr"] .kpi-value')).to_have_text(re.compile(r"^\$"))
        overview_png = page.screenshot(full_page=True)

        page.click("text=Funnel")
        row = page.locator('tr[data-segment="all"][data-channel="all"]')
        for step in ("funnel_signup_to_scan", "funnel_scan_to_paid", "funnel_signup_to_paid"):
            expect(row.locator(f'td[data-kpi="{step}"]')).to_have_text(re.compile(r"\d%"))
        expect(page.locator("tr[data-segment]")).to_have_count(1 + 4 + 4)

        funnel_png = page.screenshot(full_page=True)

        page.click("text=Cohorts")
        expect(page.locator('.heat td.cell[data-kpi="retention_d7"][style]').first
               ).to_have_text(re.compile(r"\d%"))
        cohorts_png = page.screenshot(full_page=True)

        page.fill("header input[name=q]", "What's our churn rate?")
        page.click("header button[type=submit]")
        expect(page.locator("#answer")).to_contain_text("Churn rate")   # filling up, or its %
        assert page.url.endswith("/ask")
        browser.close()
    print(f"browser done after {time.monotonic() - t0:.1f} s")
    _non_trivial(overview_png, 1500)
    _non_trivial(alerts_png)
    if shots:
        for name, png in (("page", overview_png), ("page-alerts", alerts_png),
                          ("page-funnel", funnel_png), ("page-cohorts", cohorts_png)):
            Path(shots, f"{name}.png").write_bytes(png)
    assert demo.stop() == 0


# -- stream/pages.py without a broker --------------------------------------------------------

async def test_page_state_rebuilds_once_a_window_closes() -> None:
    from kpis.merger import KpiSnapshot
    from kpis.messages import group_snapshots, window_messages
    from stream.pages import PageState

    state = PageState("", "kpis", "alerts", "anomalies")
    snaps = [KpiSnapshot("signups", "all", "all", h * 3600.0, (h + 1) * 3600.0, 4.0 + h, 4.0)
             for h in range(2)]
    first, second = window_messages(group_snapshots(snaps))
    state.add("kpis", orjson.dumps(first))
    state.add("kpis", orjson.dumps([{**first[0], "as_of": "x", "as_of_ts": 10.0}]))  # running
    state.add("kpis", b"not json")
    state.add("alerts", orjson.dumps({"id": "a1", "status": "open", "kpi": "signups"}))
    assert (state.generation, len(state.kpi_docs), len(state.alert_docs)) == (2, 1, 1)
    state.caught_up.set()
    store = await state.store()
    point = store.latest("signups")
    assert point is not None and point.value == 4.0 and store.open_alerts()
    html = await state.html(("overview",), overview_page)
    assert await state.html(("overview",), overview_page) is html   # kept: nothing closed
    state.add("kpis", orjson.dumps(second))
    assert await state.html(("overview",), overview_page) != html   # the next window
    assert (await state.store()).now == 7200.0
