"""The worker's web page: the product's four tabs and its assistant, as HTML from a KpiStore.

Plain Python (no Kafka, no Faust): ``stream/pages.py`` reads the worker's topics into an
:class:`assistant.store.KpiStore` and serves what these functions return. Each tab is a whole
HTML document with inline CSS and no script (:mod:`dashboard.html`); numbers are written by
``alerting.evidence`` (the strings of the Slack messages).

- :func:`overview_page`: every KPI now, against its target, with its last 7 days;
- :func:`funnel_page`: signup to first scan to paid, by segment and channel;
- :func:`cohorts_page`: the retention heatmap of the weekly signup cohorts;
- :func:`alerts_page`: open and recent alerts, their evidence and chart;
- :func:`ask_page`: a question and the assistant's answer.
"""

from dashboard.alerts import alert_png, alert_snapshot, alerts_page, history_key
from dashboard.ask import ask_page, clean_question
from dashboard.cohorts import cohorts_page
from dashboard.funnel import funnel_page
from dashboard.html import SECURITY_HEADERS, TABS, PageInfo, esc, page
from dashboard.overview import overview_page

__all__ = ["SECURITY_HEADERS", "TABS", "PageInfo", "alert_png", "alert_snapshot", "alerts_page",
           "ask_page", "clean_question", "cohorts_page", "esc", "funnel_page", "history_key",
           "overview_page", "page"]
