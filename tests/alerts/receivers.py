"""Real HTTP servers on 127.0.0.1 for delivery tests: a webhook receiver and a stand-in for
the Telegram Bot API (same path, same answers and error shapes)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web


@dataclass
class Scripted:
    """An answer the server gives instead of 200 (consumed in order)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver:
    """Verifies ``X-Liqmon-Signature`` and dedupes on ``Idempotency-Key``, as a careful
    receiver does. ``bodies`` keeps each distinct notification once, in arrival order;
    ``requests`` counts every request, duplicates included."""

    def __init__(self, secret: bytes | None, port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.script: deque[Scripted] = deque()
        self.bodies: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.requests = 0
        self.duplicates = 0
        self.bad_signatures = 0
        self.arrived = asyncio.Event()
        self.received_ns: list[int] = []
        self._runner: web.AppRunner | None = None
        self._seen: set[str] = set()
        self.delay_s = 0.0  # answer this late (after taking the notification)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        import time  # noqa: PLC0415

        self.requests += 1
        raw = await request.read()
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("X-Liqmon-Signature", ""), expected):
                self.bad_signatures += 1
                return web.Response(status=401)
        key = request.headers.get("Idempotency-Key")
        if not key:
            return web.Response(status=400, text="no Idempotency-Key")
        if self.script:
            answer = self.script.popleft()
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        if key in self._seen:
            self.duplicates += 1
            return web.Response(status=200, text="duplicate")
        self._seen.add(key)
        self.keys.append(key)
        self.bodies.append(msgspec.json.decode(raw))
        self.received_ns.append(time.perf_counter_ns())
        self.arrived.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        """Until ``count`` distinct notifications arrived (TimeoutError after timeout_s)."""
        async with asyncio.timeout(timeout_s):
            while len(self.bodies) < count:
                self.arrived.clear()
                await self.arrived.wait()


TELEGRAM_ERRORS = {
    400: {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
    403: {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    500: {"ok": False, "error_code": 500, "description": "Internal Server Error"},
    502: {"ok": False, "error_code": 502, "description": "Bad Gateway"},
}


def telegram_429(retry_after: int) -> Scripted:
    return Scripted(
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        },
    )


def telegram_error(status: int) -> Scripted:
    return Scripted(status, TELEGRAM_ERRORS[status])


class TelegramStandIn:
    """``POST /bot<token>/sendMessage`` with the Bot API's answers: 401 for a wrong token,
    ``{"ok": true, "result": {...}}`` on success, scripted errors in between."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.port = 0
        self.script: deque[Scripted] = deque()
        self.messages: list[dict[str, Any]] = []
        self.requests: list[tuple[int, dict[str, Any]]] = []  # (perf ns, params)
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._message_id = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._send_message)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send_message(self, request: web.Request) -> web.Response:
        import time  # noqa: PLC0415

        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        params = msgspec.json.decode(await request.read())
        self.requests.append((time.monotonic_ns(), params))
        if self.script:
            answer = self.script.popleft()
            return web.json_response(answer.body, status=answer.status)
        if not params.get("chat_id") or not params.get("text"):
            return web.json_response(TELEGRAM_ERRORS[400], status=400)
        if len(params["text"].encode("utf-16-le")) // 2 > 4096:  # the Bot API's limit
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
                status=400,
            )
        self._message_id += 1
        self.messages.append(params)
        self.arrived.set()
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": self._message_id,
                    "chat": {"id": params["chat_id"]},
                    "text": params["text"],
                },
            }
        )
