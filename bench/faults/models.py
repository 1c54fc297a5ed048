"""Rows where the model (Claude, through tests/fakes/anthropic_server.py) misbehaves for the
whole run: errors, answers after the client's timeout, bodies that are not a Message. The
explanation falls back to the template, so every alert must still be posted exactly once."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import web

from bench.faults.harness import FaultySlack, Rig
from bench.faults.slack import incident_run
from stream.broker import EmbeddedBroker
from tests.fakes.anthropic_server import FakeAnthropic

__all__ = ["FaultyModel", "model_errors", "model_invalid_json", "model_timeouts"]

KEY = "sk-ant-faults"


class FaultyModel(FakeAnthropic):
    """The fake Messages API, answering every call with ``mode``: ``errors`` (500, 529
    overloaded, 503 in turn), ``timeouts`` (``delay`` seconds late), ``invalid_json`` (a 200 with
    a cut-off JSON body, a JSON object that is not a Message, a text/html page, in turn)."""

    def __init__(self, mode: str) -> None:
        super().__init__(api_key=KEY, delay=15.0 if mode == "timeouts" else 0.0)
        self.mode = mode
        self.calls = 0
        self._turn = itertools.count()

    async def __aenter__(self) -> FaultyModel:
        await self.start()
        return self

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        turn = next(self._turn) % 3
        if self.mode == "errors":
            status = (500, 529, 503)[turn]
            await request.read()
            return web.json_response({"type": "error", "error": {
                "type": "overloaded_error" if status == 529 else "api_error",
                "message": "Overloaded" if status == 529 else "Internal server error"}},
                status=status)
        if self.mode == "invalid_json":
            await request.read()
            if turn == 0:
                return web.Response(status=200, text='{"id": "msg_01", "type": "message", "con',
                                    content_type="application/json")
            if turn == 1:
                return web.json_response({"ok": True, "answer": None})
            return web.Response(status=200, text="<html>gateway</html>",
                                content_type="text/html")
        return await super()._messages(request)


async def _model_run(broker: EmbeddedBroker, mode: str) -> dict[str, Any]:
    async with FaultySlack() as slack, FaultyModel(mode) as model:
        rig = await Rig(broker.bootstrap, f"model-{mode}", slack=slack, env_extra={
            "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": model.base_url}).setup()
        try:
            out = await incident_run(rig, settle_s=120.0)
        finally:
            await rig.stop()
            await asyncio.sleep(0)
    out["model_calls"] = model.calls
    out["checks"] = {"the model was called": model.calls > 0}
    return out


async def model_errors(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _model_run(broker, "errors")


async def model_timeouts(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _model_run(broker, "timeouts")


async def model_invalid_json(broker: EmbeddedBroker) -> dict[str, Any]:
    return await _model_run(broker, "invalid_json")
