"""A local stand-in for the Slack Web API (and its file upload URLs), for the real slack_sdk.

Answers ``auth.test``, ``chat.postMessage`` (keeping its ``metadata``), ``chat.update``,
``conversations.history`` and ``conversations.replies`` (newest first / oldest first, ``oldest``,
``limit`` and ``cursor``, metadata only with ``include_all_metadata``),
``files.getUploadURLExternal``, the upload URL it hands out, and ``files.completeUploadExternal``
the way Slack does, records every request, and can be told to misbehave: ``fail_next(n, 429,
retry_after=1)``, ``fail_next(n, 500)``, ``down = True`` (503 to everything) or ``refuse()``
(port closed). Posts can also be stored and answered badly, the failures that leave a client
not knowing whether its message is in the channel: ``answer_late(seconds, n)`` (stored, answered
after ``seconds``, past the client's timeout), ``answer_html(n, store=...)`` (a proxy's 200
``text/html`` page) and ``fail_after_storing(n, status=500)``. ``posted(key)`` lists the
messages whose metadata carries a key. ``history_scope = False`` plays a bot token without
``channels:history``: both history methods answer ``missing_scope``.

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
    history_scope: bool = True

    def __post_init__(self) -> None:
        self._forced: deque[tuple[int, dict[str, str]]] = deque()
        # how the next posts are answered once stored: ("late", s) / ("html", store) / (status,)
        self._tricks: dict[str, deque[tuple[str, Any]]] = {}  # by API method
        self.late_s = 0.0  # every post: stored, then answered this late (0: at once)
        self._ids = itertools.count(1)
        self._file_names: dict[str, str] = {}
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

    def answer_late(self, seconds: float, n: int | None = None,
                    method: str = "chat.postMessage") -> None:
        """Store the next ``n`` posts (every post while ``n`` is None, until ``late_s = 0``)
        and answer each ``seconds`` later; with ``method`` (``files.completeUploadExternal``)
        the next ``n`` calls of it."""
        if n is None:
            self.late_s = seconds
        else:
            self._tricks.setdefault(method, deque()).extend([("late", seconds)] * n)

    def answer_html(self, n: int, store: bool = False, content_type: str = "text/html") -> None:
        """Answer the next ``n`` posts 200 with an HTML page (as ``content_type``), after
        storing them if ``store``."""
        self._tricks.setdefault("chat.postMessage", deque()).extend(
            [("html", (store, content_type))] * n)

    def fail_after_storing(self, n: int, status: int = 500) -> None:
        """Store the next ``n`` posts, then answer ``status``."""
        self._tricks.setdefault("chat.postMessage", deque()).extend([("status", status)] * n)

    def posted(self, key: str | None = None) -> list[dict]:
        """Stored messages, oldest first; with ``key``, those whose metadata carries it."""
        return [m for m in self.messages.values()
                if key is None or (m.get("metadata") or {}).get("event_payload", {}).get(
                    "key") == key]

    def parents(self) -> list[dict]:
        """Stored top-level messages, oldest first."""
        return [m for m in self.messages.values() if not m.get("thread_ts")]

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
        tricks = self._tricks.get(method)
        trick = tricks.popleft() if tricks else None
        if trick is None and method == "chat.postMessage" and self.late_s:
            trick = ("late", self.late_s)
        if trick is not None and trick[0] == "html" and not trick[1][0]:
            return self._html(rec, trick[1][1])
        body = handler(rec.params)
        rec.ok = bool(body.get("ok"))
        if trick is not None:
            if trick[0] == "html":
                return self._html(rec, trick[1][1])
            if trick[0] == "status":
                rec.status, rec.ok = int(trick[1]), False
                return web.json_response({"ok": False, "error": "internal_error"},
                                         status=rec.status)
            # stored; answered after the client gave up (cut short when the server stops)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), float(trick[1]))
        return web.json_response(body)

    @staticmethod
    def _html(rec: Recorded, content_type: str) -> web.Response:
        rec.status, rec.ok = 200, False
        return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                            content_type=content_type)

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
        """Like Slack's: the wall-clock second, then a sequence number (unique, ordered)."""
        return f"{int(time.time())}.{next(self._ids):06d}"

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
        metadata = p.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if metadata is not None:
            if not isinstance(metadata, dict) or not metadata.get("event_type") or not isinstance(
                    metadata.get("event_payload"), dict):
                return {"ok": False, "error": "invalid_metadata_format"}
            message["metadata"] = metadata
        self.messages[ts] = message
        return {"ok": True, "channel": p["channel"], "ts": ts, "message": message}

    def _conversations_history(self, p: dict) -> dict:
        if not self.history_scope:
            return {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        found = [m for m in self.messages.values() if m["channel"] == p.get("channel")
                 and (not m.get("thread_ts") or m["thread_ts"] == m["ts"])]
        return self._page(sorted(found, key=lambda m: float(m["ts"]), reverse=True), p)

    def _conversations_replies(self, p: dict) -> dict:
        if not self.history_scope:
            return {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        parent = self.messages.get(str(p.get("ts")))
        if parent is None or parent["channel"] != p.get("channel"):
            return {"ok": False, "error": "thread_not_found"}
        found = [parent] + [m for m in self.messages.values()
                            if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]]
        return self._page(sorted(found, key=lambda m: float(m["ts"])), p)

    def _page(self, found: list[dict], p: dict) -> dict:
        """Slack's paging: ``oldest``/``latest`` (exclusive), ``limit`` (default 100),
        ``cursor`` (an offset here); metadata only with ``include_all_metadata``."""
        if not p.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or 1e12)
        found = [m for m in found if oldest < float(m["ts"]) < latest]
        start = int(p.get("cursor") or 0)
        limit = min(int(p.get("limit") or 100), 999)
        page = found[start:start + limit]
        meta = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = [{k: v for k, v in m.items() if k != "channel" and (meta or k != "metadata")}
                    for m in page]
        more = start + limit < len(found)
        return {"ok": True, "messages": messages, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

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
        self._file_names[file_id] = str(p["filename"])
        return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
                "file_id": file_id}

    def _files_completeUploadExternal(self, p: dict) -> dict:
        files = json.loads(p.get("files", "[]"))
        if not files or any(f.get("id") not in self.uploads or not self.uploads[f["id"]]
                            for f in files):
            return {"ok": False, "error": "invalid_arguments"}
        shared = [{"id": f["id"], "name": self._file_names.get(f["id"], ""),
                   "title": f.get("title", "")} for f in files]
        channel, thread_ts = p.get("channel_id"), p.get("thread_ts")
        if channel:   # shared in the channel (the thread): a message with the files
            ts = self._ts()
            self.messages[ts] = {"type": "message", "ts": ts, "text": "", "blocks": [],
                                 "thread_ts": thread_ts, "channel": channel, "files": shared}
        return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in shared]}


def _blocks(value: Any) -> list:
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value or [])
