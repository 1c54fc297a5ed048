"""A local stand-in for the Anthropic Messages API (``POST /v1/messages``), for the real SDK.

Answers with a proper Message object, records each request (headers, JSON body), and can be
told to reply with given text (or a function of the request), fail with a status, or wait
``delay`` seconds (to trigger the client's timeout).

    async with FakeAnthropic(reply="Likely a gateway outage.") as api:
        client = anthropic.AsyncAnthropic(api_key="k", base_url=api.base_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakeAnthropic:
    reply: str | Callable[[dict], str] = "The cause is inconclusive; check the payment logs."
    api_key: str = "sk-ant-test-key"
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"headers", "json"}

    def __post_init__(self) -> None:
        self._forced: deque[int] = deque()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, n: int, status: int = 500) -> None:
        self._forced.extend([status] * n)

    async def start(self) -> FakeAnthropic:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropic:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _messages(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests.append({"headers": dict(request.headers), "json": body})
        if self.delay:  # cut short when the server stops, so tests do not wait it out
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        if self._forced:
            status = self._forced.popleft()
            return web.json_response({"type": "error", "error": {
                "type": "api_error", "message": "Internal server error"}}, status=status)
        if self.api_key not in (request.headers.get("x-api-key"),
                                request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response({"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}}, status=401)
        for key in ("model", "max_tokens", "messages"):
            if key not in body:
                return web.json_response({"type": "error", "error": {
                    "type": "invalid_request_error", "message": f"{key}: Field required"}},
                    status=400)
        text = self.reply(body) if callable(self.reply) else self.reply
        return web.json_response({
            "id": f"msg_fake{next(self._ids):06d}", "type": "message", "role": "assistant",
            "model": body["model"], "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": len(json.dumps(body)) // 4,
                      "output_tokens": len(text) // 4},
        })
