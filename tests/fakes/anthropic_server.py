"""A local stand-in for the Anthropic Messages API (``POST /v1/messages``), for the real SDK.

Answers with a proper Message object, records each request (headers, JSON body), and can be
told to reply with given text (or a function of the request), fail with a status, or wait
``delay`` seconds (to trigger the client's timeout).

    async with FakeAnthropic(reply="Likely a gateway outage.") as api:
        client = anthropic.AsyncAnthropic(api_key="k", base_url=api.base_url)

It can also play a script of turns, one per request, before falling back to ``reply``:

    FakeAnthropic(turns=[
        {"tool": "kpi_value", "input": {"kpi": "churn_rate"}},   # stop_reason "tool_use"
        [{"tool": "breakdown", "input": {...}}, {"tool": "targets", "input": {}}],  # two blocks
        "Churn is 3.7%.",                                        # final text, "end_turn"
    ])

A turn is a text (the final answer), a ``{"tool", "input"}`` dict (optional ``"id"``), a list
of those and texts (one message with several blocks), ``{"text", "stop_reason"}`` (a text
that stops for another reason, e.g. ``"max_tokens"``), ``{"status": 500}`` (an error reply),
a broken answer — ``{"raw": "{not json"}`` (a 200 whose body is that text, as
``application/json``), ``{"body": {...}}`` (a 200 with that JSON, a Message or not), either
with ``"every": s`` to send it a few bytes at a time, ``s`` apart (a trickle that stays under
the client's read timeout) — or a function of the request body returning a turn.
``script(*turns)`` queues more.

Like the real API it answers 400 to a tool without a name or an object ``input_schema``, and
to a ``tool_use`` that the next user message does not answer with a ``tool_result`` first.
``tool_results(i)`` gives the ``tool_result`` blocks of request ``i``; ``replies`` holds the
messages sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web

Turn: TypeAlias = "str | dict[str, Any] | list[str | dict[str, Any]] | Callable[[dict], Turn]"

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass
class FakeAnthropic:
    reply: str | Callable[[dict], str] = "The cause is inconclusive; check the payment logs."
    api_key: str = "sk-ant-test-key"
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)  # {"headers", "json"}
    turns: list[Turn] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)  # the Message objects sent

    def __post_init__(self) -> None:
        self._forced: deque[int] = deque()
        self._script: deque[Turn] = deque(self.turns)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, n: int, status: int = 500) -> None:
        self._forced.extend([status] * n)

    def script(self, *turns: Turn) -> None:
        """Queue ``turns``, answered one per request after those already queued."""
        self._script.extend(turns)

    def tool_results(self, i: int = -1) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last message of request ``i``."""
        content = self.requests[i]["json"]["messages"][-1]["content"]
        if isinstance(content, str):
            return []
        return [b for b in content if b.get("type") == "tool_result"]

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

    async def _messages(self, request: web.Request) -> web.StreamResponse:
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
        problem = _tool_protocol_error(body)
        if problem:
            return web.json_response({"type": "error", "error": {
                "type": "invalid_request_error", "message": problem}}, status=400)
        if self._script:
            turn = self._script.popleft()
            while callable(turn):
                turn = turn(body)
        else:
            turn = self.reply(body) if callable(self.reply) else self.reply
        if isinstance(turn, dict) and "status" in turn:
            return web.json_response({"type": "error", "error": {
                "type": "api_error", "message": "Internal server error"}},
                status=int(turn["status"]))
        if isinstance(turn, dict) and ("raw" in turn or "body" in turn):
            return await self._broken(request, turn)
        content, stop_reason = self._content(turn)
        message = {
            "id": f"msg_fake{next(self._ids):06d}", "type": "message", "role": "assistant",
            "model": body["model"], "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": len(json.dumps(body)) // 4,
                      "output_tokens": len(json.dumps(content)) // 4},
        }
        self.replies.append(message)
        return web.json_response(message)

    async def _broken(self, request: web.Request, turn: dict[str, Any]) -> web.StreamResponse:
        """A 200 that is not a proper Message: ``raw`` text or a ``body`` of any shape."""
        data = (str(turn["raw"]) if "raw" in turn else json.dumps(turn["body"])).encode()
        every = float(turn.get("every") or 0.0)
        if not every:
            return web.Response(body=data, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for i in range(0, len(data), 8):
            await response.write(data[i:i + 8])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), every)
            if self._stopping.is_set():
                break
        await response.write_eof()
        return response

    def _content(self, turn: Turn) -> tuple[list[dict[str, Any]], str]:
        """A turn's content blocks and stop reason."""
        parts = turn if isinstance(turn, list) else [turn]
        content: list[dict[str, Any]] = []
        stop_reason = "end_turn"
        for part in parts:
            if isinstance(part, str):
                content.append({"type": "text", "text": part})
            elif isinstance(part, dict) and "tool" in part:
                content.append({"type": "tool_use",
                                "id": part.get("id") or f"toolu_fake{next(self._ids):06d}",
                                "name": part["tool"], "input": part.get("input", {})})
                stop_reason = "tool_use"
            elif isinstance(part, dict) and "text" in part:
                content.append({"type": "text", "text": part["text"]})
                stop_reason = part.get("stop_reason", stop_reason)
            else:
                raise ValueError(f"not a turn: {part!r}")
        return content, stop_reason


def _tool_protocol_error(body: dict) -> str | None:
    """What the real API would reject in the tools or the tool_use / tool_result pairing."""
    for tool in body.get("tools", []):
        if not _TOOL_NAME.fullmatch(str(tool.get("name", ""))):
            return f"tools: invalid tool name {tool.get('name')!r}"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{tool['name']}.input_schema: must be a JSON schema of type object"
    messages = body["messages"]
    for i, m in enumerate(messages):
        content = m.get("content")
        blocks = content if isinstance(content, list) else []
        if m.get("role") == "assistant":
            ids = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
            if not ids:
                continue
            if not body.get("tools"):
                return "tools: required when messages contain tool_use blocks"
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            answered = nxt["content"] if nxt and nxt.get("role") == "user" and isinstance(
                nxt.get("content"), list) else []
            head = [b.get("tool_use_id") for b in answered[:len(ids)]
                    if b.get("type") == "tool_result"]
            if sorted(map(str, head)) != sorted(map(str, ids)):
                return (f"messages.{i + 1}: tool_use ids were found without tool_result blocks "
                        "immediately after: " + ", ".join(map(str, ids)))
        elif m.get("role") == "user":
            prev = messages[i - 1] if i > 0 else {}
            prev_blocks = prev.get("content") if isinstance(prev.get("content"), list) else []
            known = {b.get("id") for b in prev_blocks or [] if b.get("type") == "tool_use"}
            for b in blocks:
                if b.get("type") == "tool_result" and b.get("tool_use_id") not in known:
                    return (f"messages.{i}: unexpected tool_use_id found in tool_result blocks: "
                            f"{b.get('tool_use_id')}")
    return None
