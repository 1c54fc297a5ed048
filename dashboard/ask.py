"""Ask: a question about the KPIs, answered by the assistant from the same numbers.

A plain form (``POST /ask``, field ``q``; ``GET /ask?q=...`` too), so it works without
JavaScript; the answer is :attr:`assistant.answer.Answer.text`, escaped, a paragraph per line.

>>> html = ask_page("What's <our> churn?", "Churn rate is 3.2%.", PageInfo())
>>> "What&#x27;s &lt;our&gt; churn?" in html, '<p>Churn rate is 3.2%.</p>' in html
(True, True)
"""

from __future__ import annotations

from urllib.parse import urlencode

from dashboard.html import PageInfo, esc, page

__all__ = ["MAX_QUESTION", "SUGGESTIONS", "ask_page", "clean_question"]

MAX_QUESTION = 300
SUGGESTIONS = (
    "What's our churn rate?",
    "How is MRR trending this week?",
    "Which channel has the best conversion rate?",
    "Why did revenue drop?",
    "What alerts are open?",
    "What is day-7 retention for the latest cohort?",
)


def clean_question(raw: object) -> str:
    """The question as asked, on one line and at most :data:`MAX_QUESTION` characters.

    >>> clean_question("  What's\\nour churn?  "), len(clean_question("x" * 999))
    ("What's our churn?", 300)
    """
    return " ".join(str(raw or "").split())[:MAX_QUESTION]


def ask_page(question: str, answer: str | None, info: PageInfo, source: str = "") -> str:
    """The Ask tab: the question and its answer (``answer`` None: only the form and a few
    questions to try); ``source`` says who planned the answer (``parser`` or ``model``)."""
    tries = "".join(f'<a href="/ask?{esc(urlencode({"q": q}))}">{esc(q)}</a>'
                    for q in SUGGESTIONS)
    form = ('<form class="ask" method="post" action="/ask" style="max-width:720px;margin:12px 0">'
            f'<input name="q" maxlength="{MAX_QUESTION}" autofocus value="{esc(question)}" '
            'aria-label="Your question" placeholder="Ask about any KPI, segment, channel or '
            'alert"><button type="submit">Ask</button></form>')
    if answer is None:
        body = ('<h1>Ask</h1><p class="lede">Questions in plain words about the KPIs, '
                "segments, channels, cohorts and alerts, answered from Pulse's own numbers."
                f'</p>{form}<div class="suggest">{tries}</div>')
    else:
        paragraphs = "".join(f"<p>{esc(line)}</p>" for line in answer.splitlines()
                             if line.strip())
        by = {"model": "Claude, from Pulse's numbers", "parser": "Pulse's question parser"}.get(
            source, "")
        credit = f'<p class="muted">Answered by {esc(by)}.</p>' if by else ""
        body = (f'<h1>Ask</h1><p class="q">{esc(question)}</p>'
                f'<div class="answer" id="answer">{paragraphs}</div>{credit}{form}'
                f'<h2>Try also</h2><div class="suggest">{tries}</div>')
    return page("ask", body, info)
