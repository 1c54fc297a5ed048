"""The HTTP server of Slack's interactivity endpoint (``POST /slack/actions``).

alerting/feedback.py makes the aiohttp application (signature check, parsing the clicks);
:class:`FeedbackServer` runs it on a port until closed.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["FeedbackServer"]


class FeedbackServer:
    """Serves one aiohttp application."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 3001) -> int:
        """Start serving; returns the bound port (useful with ``port=0``)."""
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # aiohttp 3 has no public accessor for the bound port of a TCPSite: ``_server`` is its
        # asyncio Server
        sockets = getattr(site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
