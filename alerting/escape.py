"""Make text that came from events safe to show in Slack.

Slack ``mrkdwn`` gives ``&``, ``<`` and ``>`` a meaning (``<!channel>`` pings a whole channel,
``<url|text>`` is a link), and ``*``, ``_``, ``~`` and backticks format text. Everything Pulse
shows that it did not write itself (KPI ids, segments, channels, detector names, the model's
words) goes through :func:`escape_mrkdwn` first.

>>> escape_mrkdwn("<!channel> @here *bold* a&b")
'&lt;!channel&gt; @\u200bhere \u2217bold\u2217 a&amp;b'
>>> truncate("abcdef", 4)
'abc…'
"""

from __future__ import annotations

import re

__all__ = ["clean_event_text", "escape_mrkdwn", "truncate"]

_MENTION = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Formatting characters swapped for look-alikes that Slack does not interpret.
_FORMAT = str.maketrans({"*": "\u2217", "`": "\u02cb", "~": "\u223c"})
# An underscore only italicises at a word boundary: keep `payment_failure_rate` as it is.
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def clean_event_text(value: object, limit: int = 80) -> str:
    """A one-line, bounded string from an event field (no control or direction characters)."""
    text = _CONTROL.sub(" ", str(value)).replace("\n", " ").strip()
    return truncate(text, limit)


def escape_mrkdwn(text: str) -> str:
    """Escape ``text`` so Slack shows it literally: no mentions, links or formatting."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MENTION.sub("@\u200b", text)
    text = text.translate(_FORMAT)
    return _UNDERSCORE.sub("\uff3f", text)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"
