"""The page around every tab: head, inline CSS, the tabs, the Ask box, the footer.

Everything is server-rendered HTML with its CSS inline: no JavaScript, no CDN, no build step,
so the page works offline and in any browser. Text that did not come from this package (KPI
values, segment and channel names, alert fields, the question asked) goes through :func:`esc`.

>>> esc('<b onclick="x">new_grad & co</b>')
'&lt;b onclick=&quot;x&quot;&gt;new_grad &amp; co&lt;/b&gt;'
>>> html = page("overview", "<p>hi</p>", PageInfo(as_of="Wed 2 Dec 15:00 UTC"))
>>> '<a href="/" class="tab active" aria-current="page">Overview</a>' in html
True
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from alerting.evidence import slice_name

__all__ = ["SECURITY_HEADERS", "TABS", "PageInfo", "esc", "page", "pill", "slice_title"]

TABS: tuple[tuple[str, str, str], ...] = (
    ("overview", "/", "Overview"),
    ("funnel", "/funnel", "Funnel"),
    ("cohorts", "/cohorts", "Cohorts"),
    ("alerts", "/alerts", "Alerts"),
    ("ask", "/ask", "Ask"),
)
"""(name, path, title) of each tab, in the order shown."""

SECURITY_HEADERS: dict[str, str] = {
    # nothing but this page's own inline CSS and data: images; forms post back here only
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Headers every page is served with (the HTML holds no script and loads nothing)."""


@dataclass(frozen=True)
class PageInfo:
    """What the frame says about the data behind a tab.

    Parameters
    ----------
    as_of
        The newest closed window's end, in words (``Wed 2 Dec 15:00 UTC``); empty before any.
    source
        Where the numbers come from, for the footer.
    refresh_s
        Seconds between automatic reloads (``<meta http-equiv="refresh">``); None: none.
    note
        A line shown above the tab (still reading the topics, no window yet).
    open_alerts
        Open alerts, counted on the Alerts tab's title.
    """

    as_of: str = ""
    source: str = "the worker's kpis, anomalies and alerts topics"
    refresh_s: int | None = None
    note: str = ""
    open_alerts: int = 0


def esc(value: object) -> str:
    """``value`` as HTML text, quotes included (safe in attributes too)."""
    return html.escape(str(value), quote=True)


def slice_title(segment: str, channel: str) -> str:
    """``All users``, ``New grads``, ``Paid search``: a slice as a heading (escape it: the
    names come from events).

    >>> slice_title("all", "all"), slice_title("new_grad", "all"), slice_title("all", "tv")
    ('All users', 'New grads', 'Channel tv')
    """
    name = slice_name(segment, channel)
    return "All users" if name == "all segments and channels" else name[:1].upper() + name[1:]


def pill(text: str, kind: str) -> str:
    """A small coloured label: ``met``, ``missed``, ``critical``, ``warning``, ``open``,
    ``resolved``, ``muted``."""
    return f'<span class="pill {esc(kind)}">{esc(text)}</span>'


_CSS = """
:root{--ink:#111827;--soft:#4b5563;--faint:#6b7280;--line:#e5e7eb;--bg:#f3f4f6;--card:#fff;
--brand:#1e3a8a;--met:#15803d;--met-bg:#dcfce7;--miss:#b91c1c;--miss-bg:#fee2e2;
--warn:#92400e;--warn-bg:#fef3c7;--blue:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:var(--ink);background:var(--bg)}
header{background:var(--brand);color:#fff}
.bar{max-width:1240px;margin:0 auto;padding:12px 20px 0;display:flex;flex-wrap:wrap;
align-items:center;gap:10px 24px}
.brand{font-weight:700;font-size:18px;letter-spacing:.2px;margin-right:auto}
.brand small{font-weight:400;opacity:.8;font-size:13px;margin-left:8px}
form.ask{display:flex;gap:6px;flex:0 1 430px}
form.ask input{flex:1;min-width:0;padding:7px 10px;border-radius:7px;border:1px solid #93c5fd;
font:inherit;font-size:14px}
button{padding:7px 14px;border-radius:7px;border:0;background:#fbbf24;color:#1f2937;
font:inherit;font-size:14px;font-weight:600;cursor:pointer}
nav{max-width:1240px;margin:0 auto;padding:8px 20px 0;display:flex;gap:4px;flex-wrap:wrap}
.tab{color:#dbeafe;text-decoration:none;padding:8px 14px;border-radius:8px 8px 0 0;
font-weight:600}
.tab:hover{background:rgba(255,255,255,.12)}
.tab.active{background:var(--bg);color:var(--brand)}
.count{display:inline-block;min-width:20px;padding:0 6px;margin-left:4px;border-radius:10px;
background:#dc2626;color:#fff;font-size:12px;text-align:center}
main{max-width:1240px;margin:0 auto;padding:18px 20px 28px}
h1{font-size:22px;margin:4px 0 4px}
h2{font-size:16px;margin:26px 0 10px;color:var(--soft);text-transform:uppercase;
letter-spacing:.6px}
.lede{color:var(--soft);margin:0 0 14px;max-width:900px}
.note{background:var(--warn-bg);color:var(--warn);padding:9px 13px;border-radius:8px;
margin:0 0 14px}
.summary{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 4px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 16px;
min-width:170px}
.stat b{display:block;font-size:22px}
.stat span{color:var(--faint);font-size:13px}
.stat a{color:inherit}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:13px 15px;
box-shadow:0 1px 2px rgba(0,0,0,.04)}
.card.alerting{border-color:#fca5a5;box-shadow:0 0 0 2px #fee2e2}
.kpi-head{display:flex;justify-content:space-between;gap:8px;align-items:center}
.kpi-name{font-weight:600;color:var(--soft)}
.kpi-value{font-size:28px;font-weight:700;margin:2px 0 0;font-variant-numeric:tabular-nums}
.kpi-sub{display:flex;justify-content:space-between;gap:8px;font-size:13px;color:var(--faint)}
.better{color:var(--met)}.worse{color:var(--miss)}
.kpi-target{display:flex;justify-content:space-between;align-items:center;gap:8px;
font-size:13px;color:var(--soft);margin-top:4px;min-height:24px}
.spark{display:block;width:100%;height:auto;margin-top:6px}
.spark-caption{display:flex;justify-content:space-between;color:var(--faint);font-size:11.5px}
.pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:700;
white-space:nowrap}
.pill.met{background:var(--met-bg);color:var(--met)}
.pill.missed,.pill.critical,.pill.open{background:var(--miss-bg);color:var(--miss)}
.pill.warning{background:var(--warn-bg);color:var(--warn)}
.pill.resolved{background:var(--met-bg);color:var(--met)}
.pill.muted{background:#e5e7eb;color:var(--soft)}
.warm{font-size:12px;color:var(--warn);margin-top:3px}
table{border-collapse:collapse;background:var(--card);border:1px solid var(--line);
border-radius:12px;overflow:hidden;font-variant-numeric:tabular-nums}
th,td{padding:8px 12px;text-align:left;border-bottom:1px solid var(--line)}
th{font-size:13px;color:var(--soft);background:#f9fafb}
tr.group th{background:#eef2ff;color:var(--brand);font-size:12px;text-transform:uppercase;
letter-spacing:.5px}
td.num{text-align:right}
.meter{display:flex;align-items:center;gap:8px;min-width:170px}
.meter i{display:block;height:9px;border-radius:5px;background:var(--blue)}
.meter span{min-width:52px;text-align:right;font-weight:600}
.funnel{display:flex;flex-direction:column;gap:8px;max-width:820px}
.stage{display:grid;grid-template-columns:230px 1fr;align-items:center;gap:12px}
.stage-bar{height:34px;border-radius:7px;background:linear-gradient(90deg,#1d4ed8,#3b82f6);
color:#fff;font-weight:700;display:flex;align-items:center;padding:0 10px;min-width:64px}
.stage-label b{display:block}.stage-label span{color:var(--faint);font-size:13px}
.step{margin-left:242px;color:var(--soft);font-size:13px}
.heat td.cell{text-align:center;font-weight:600;min-width:120px}
.heat td.cell small{display:block;font-weight:400;font-size:11.5px;opacity:.85}
.slices{display:flex;flex-wrap:wrap;gap:6px;margin:0 0 12px}
.slices a{padding:4px 11px;border-radius:999px;background:var(--card);border:1px solid
var(--line);color:var(--soft);text-decoration:none;font-size:13px}
.slices a.on{background:var(--brand);border-color:var(--brand);color:#fff}
.alert{display:grid;grid-template-columns:minmax(300px,1fr) minmax(300px,520px);gap:16px;
margin-bottom:14px}
.alert h3{margin:6px 0 6px;font-size:17px}
.alert img{width:100%;height:auto;border:1px solid var(--line);border-radius:8px}
dl.ev{display:grid;grid-template-columns:max-content 1fr;gap:5px 14px;margin:10px 0 0;
font-size:14px}
dl.ev dt{color:var(--faint)}dl.ev dd{margin:0}
.why{margin-top:10px;padding:9px 12px;background:#f9fafb;border-radius:8px;font-size:14px}
details.card{margin-bottom:10px}
details.card summary{cursor:pointer;font-weight:600}
.answer{background:var(--card);border:1px solid var(--line);border-radius:12px;
padding:16px 20px;max-width:900px;font-size:16px}
.answer p{margin:0 0 10px}
.q{font-size:18px;font-weight:600;margin:0 0 10px}
.suggest{display:flex;flex-wrap:wrap;gap:8px;margin-top:12px}
.suggest a{padding:5px 12px;border-radius:999px;background:#e0e7ff;color:var(--brand);
text-decoration:none;font-size:14px}
.muted{color:var(--faint)}
footer{max-width:1240px;margin:0 auto;padding:0 20px 24px;color:var(--faint);font-size:12.5px}
@media (max-width:760px){.alert{grid-template-columns:1fr}.stage{grid-template-columns:1fr}
.step{margin-left:0}}
"""


def _nav(active: str, open_alerts: int) -> str:
    links = []
    for name, path, title in TABS:
        count = (f'<span class="count">{open_alerts}</span>'
                 if name == "alerts" and open_alerts else "")
        current = ' class="tab active" aria-current="page"' if name == active else ' class="tab"'
        links.append(f'<a href="{path}"{current}>{esc(title)}{count}</a>')
    return "".join(links)


def page(active: str, body: str, info: PageInfo, *, title: str = "") -> str:
    """A whole HTML document: the frame around ``body`` (HTML this package built), with
    ``active`` the tab shown."""
    name = title or dict((n, t) for n, _, t in TABS).get(active, "")
    refresh = (f'<meta http-equiv="refresh" content="{int(info.refresh_s)}">'
               if info.refresh_s else "")
    note = f'<p class="note">{esc(info.note)}</p>' if info.note else ""
    as_of = f"Data through {esc(info.as_of)}" if info.as_of else "No KPI window closed yet"
    reload = f" · reloads every {int(info.refresh_s)} s" if info.refresh_s else ""
    ask = "" if active == "ask" else (   # the Ask tab has its own, larger box
        '<form class="ask" method="post" action="/ask" role="search">'
        '<input name="q" maxlength="300" aria-label="Ask a question about the KPIs" '
        'placeholder="Ask: What\'s our churn rate?">'
        '<button type="submit">Ask</button></form>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>{esc(name)} · JobMetrics Pulse</title><style>{_CSS}</style></head>"
        '<body><header><div class="bar"><div class="brand">JobMetrics Pulse'
        f"<small>{as_of}</small></div>"
        f"{ask}</div>"
        f"<nav>{_nav(active, info.open_alerts)}</nav></header>"
        f"<main>{note}{body}</main>"
        f"<footer>Computed by Pulse from {esc(info.source)}{reload}. Times are UTC; rates in %, "
        "money in US dollars.</footer></body></html>")
