"""The one send loop of Slack deliveries, shared by alerts and daily digests.

An :class:`~alerting.outbox.Outbox` holds what is to be sent (persisted, keyed, in order);
:class:`Sender` sends it: :meth:`Sender.flush` now, and after :meth:`Sender.kick` in a
background task that flushes again, with growing pauses, while Slack is unavailable. Each
call's own retries (connection errors, 429 with ``Retry-After``, 5xx) are slack_sdk's retry
handlers (alerting/slack.py ``make_slack_client``): this loop only waits between flushes of
what those gave up on, so nothing is retried in two layers at once. A post whose outcome is
unknown (a timeout, a 5xx, a 200 that is not JSON) is one those handlers leave alone: the next
flush looks for it in Slack before posting it again (:class:`~alerting.outbox.Outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from alerting.outbox import Outbox, SendFn

__all__ = ["Sender", "RETRY_DELAYS_S"]

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Sender:
    """Flushes ``outbox`` through ``send``, now or in the background (one flush at a time)."""

    def __init__(self, outbox: Outbox, send: SendFn,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.outbox = outbox
        self.send = send
        self.retry_delays = retry_delays
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def flush(self) -> bool:
        """Send what is pending; True when none is left (False: Slack unavailable, the
        deliveries stay in the outbox)."""
        async with self._lock:
            return await self.outbox.flush(self.send)

    def kick(self) -> None:
        """Have the background loop flush soon (started on first use)."""
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and make a last flush of up to ``timeout`` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)

    async def _loop(self) -> None:
        attempt = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if await self.flush():
                    attempt = 0
                    continue
            except Exception:  # keep the sender alive; the deliveries stay pending
                log.exception("unexpected error while sending to Slack")
            delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
            attempt += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.set()
