"""A local stand-in for the Slack Web API (and its file upload URLs), for the real slack_sdk.

Answers ``auth.test``, ``chat.postMessage``, ``chat.update``, ``files.getUploadURLExternal``,
the upload URL it hands out, and ``files.completeUploadExternal`` the way Slack does, records
every request, and can be told to misbehave: ``fail_next(n, 429, retry_after=1)``, ``fail_next(n,
500)``, ``down = True`` (503 to everything) or ``refuse()`` (port closed).

    async with FakeSlack(token="xoxb-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str  # API method ("chat.postMessage") or "upload"
    params: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    ok: bool = False
    at: float = 0.0  # loop time when it arrived
    wall: float = 0.0  # wall-clock time when it arrived (to compare with other processes)


@dataclass
class FakeSlack:
    token: str = "xoxb-test-token"
    requests: list[Recorded] = field(default_factory=list)
    messages: dict[str, dict] = field(default_factory=dict)  # ts -> message
    uploads: dict[str, bytes] = field(default_factory=dict)  # file id -> content
    down: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        self._forced: deque[tuple[int, dict[str, str]]] = deque()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    # -- control --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def fail_next(self, n: int, status: int = 429, retry_after: int | None = 1) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._forced.extend([(status, headers)] * n)

    def calls(self, method: str, ok_only: bool = True) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and (r.ok or not ok_only)]

    def thread_replies(self, thread_ts: str) -> list[Recorded]:
        return [r for r in self.calls("chat.postMessage") if r.params.get("thread_ts") == thread_ts]

    async def start(self, port: int = 0) -> FakeSlack:
        self._stopping.clear()
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def refuse(self) -> None:
        """Close the port: connections are refused until :meth:`start` again."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        await self.refuse()

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers -------------------------------------------------------------------------

    async def _record(self, request: web.Request, method: str) -> Recorded:
        body = await request.read()
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json" and body:
            params.update(json.loads(body))
        elif request.content_type == "application/x-www-form-urlencoded":
            params.update(dict(await request.post()))
        rec = Recorded(method, params, dict(request.headers), body,
                       at=asyncio.get_running_loop().time(), wall=time.time())
        self.requests.append(rec)
        if self.delay:  # cut short when the server stops, so tests do not wait it out
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        return rec

    def _misbehave(self, rec: Recorded) -> web.Response | None:
        if self.down:
            rec.status = 503
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        if self._forced:
            status, headers = self._forced.popleft()
            rec.status = status
            error = "ratelimited" if status == 429 else "internal_error"
            return web.json_response({"ok": False, "error": error}, status=status,
                                     headers=headers)
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        rec = await self._record(request, method)
        bad = self._misbehave(rec)
        if bad is not None:
            return bad
        rec.status = 200
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        body = handler(rec.params)
        rec.ok = bool(body.get("ok"))
        return web.json_response(body)

    async def _upload(self, request: web.Request) -> web.Response:
        rec = await self._record(request, "upload")
        bad = self._misbehave(rec)
        if bad is not None:
            return bad
        file_id = request.match_info["file_id"]
        if file_id not in self.uploads:
            rec.status = 404
            return web.Response(status=404, text="unknown upload", content_type="text/plain")
        self.uploads[file_id] = rec.body
        rec.status, rec.ok = 200, True
        return web.Response(text=f"OK - {len(rec.body)}", content_type="text/plain")

    # -- the API methods ------------------------------------------------------------------

    def _ts(self) -> str:
        return f"1763719200.{next(self._ids):06d}"

    def _auth_test(self, p: dict) -> dict:
        return {"ok": True, "url": "https://pulse.slack.com/", "team": "Pulse", "user": "pulse",
                "team_id": "T0PULSE", "user_id": "U0PULSE", "bot_id": "B0PULSE"}

    def _chat_postMessage(self, p: dict) -> dict:
        if not p.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not p.get("text") and not p.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if p.get("thread_ts") and p["thread_ts"] not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = self._ts()
        message = {"type": "message", "ts": ts, "text": p.get("text", ""),
                   "blocks": _blocks(p.get("blocks")), "thread_ts": p.get("thread_ts"),
                   "channel": p["channel"]}
        self.messages[ts] = message
        return {"ok": True, "channel": p["channel"], "ts": ts, "message": message}

    def _chat_update(self, p: dict) -> dict:
        message = self.messages.get(p.get("ts", ""))
        if message is None or message["channel"] != p.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        message.update(text=p.get("text", ""), blocks=_blocks(p.get("blocks")))
        return {"ok": True, "channel": p["channel"], "ts": p["ts"], "text": message["text"]}

    def _files_getUploadURLExternal(self, p: dict) -> dict:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = b""
        return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
                "file_id": file_id}

    def _files_completeUploadExternal(self, p: dict) -> dict:
        files = json.loads(p.get("files", "[]"))
        if not files or any(f.get("id") not in self.uploads or not self.uploads[f["id"]]
                            for f in files):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")}
                                      for f in files]}


def _blocks(value: Any) -> list:
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value or [])
