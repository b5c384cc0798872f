"""Live push over the WebSocket: filters, events, and a slow client dropped, never waited for."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from monitor.domain import Venue
from tests.api.conftest import Stack, api_stack
from tests.e2e.harness import until

pytestmark = pytest.mark.integration


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10.0):
        while True:
            msg: dict[str, Any] = await ws.receive_json()
            if msg["type"] == kind:
                return msg


async def test_filters_and_resubscribe(stack: Stack) -> None:
    url = stack.url.replace("http://", "ws://") + "/api/v1/live/ws"
    async with stack.http.ws_connect(url, params={"assets": "btc", "kinds": "tick"}) as ws:
        hello = await _next(ws, "hello")
        assert hello["filters"]["assets"] == ["BTC"] and hello["filters"]["kinds"] == ["tick"]
        for _ in range(3):
            tick = await _next(ws, "tick")
            assert {r["asset"] for r in tick["rows"]} == {"BTC"} and len(tick["rows"]) == 3
        await ws.send_json({"subscribe": {"assets": ["SOL"], "venues": "coinbase"}})
        assert (await _next(ws, "subscribed"))["filters"]["venues"] == ["coinbase"]
        tick = await _next(ws, "tick")
        while {(r["venue"], r["asset"]) for r in tick["rows"]} != {("coinbase", "SOL")}:
            tick = await _next(ws, "tick")  # ticks queued before the change
        await ws.send_json({"subscribe": {"kinds": ["nonsense"]}})
        assert "kinds" in (await _next(ws, "error"))["message"]
    async with stack.http.get(url, params={"kinds": "bogus"}) as r:
        assert r.status == 400 and (await r.json())["error"]["parameter"] == "kinds"


async def test_state_change_is_pushed_as_an_event(stack: Stack) -> None:
    url = stack.url.replace("http://", "ws://") + "/api/v1/live/ws"
    async with stack.http.ws_connect(url, params={"kinds": "event", "venues": "coinbase"}) as ws:
        await _next(ws, "hello")
        # the venue goes quiet: its books are stale after stale_after_s
        stack.sim.set_silent(Venue.COINBASE)
        event = (await _next(ws, "event"))["event"]
        while event["kind"] != "book_state" or event["from"] != "live":
            event = (await _next(ws, "event"))["event"]  # score changes come too
        stack.sim.set_silent(Venue.COINBASE, False)
    assert event["kind"] == "book_state" and event["venue"] == "coinbase"
    assert event["to"] == "stale"
    async with stack.http.get(f"{stack.url}/api/v1/events", params={"venue": "coinbase"}) as r:
        events = (await r.json())["events"]
    assert any(e["id"] == event["id"] for e in events)
    # the analytics' score of a stale book is DATA: that state change is an event too
    live = stack.ctx.live
    assert live is not None
    await until(
        lambda: any(
            e["kind"] == "score" and e["venue"] == "coinbase" and e["to"] == "data"
            for e in live.events
        )
    )


async def _stuck_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (parts.hostname, parts.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    async with asyncio.timeout(5.0):
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)  # byte by byte: nothing after the head
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_slow_client_is_dropped_and_never_stalls_the_daemon(tmp_path: Path) -> None:
    async with api_stack(tmp_path, ws_queue=8) as stack:
        live = stack.ctx.live
        assert live is not None and stack.daemon is not None
        hub = live.hub
        queue = next(q for q in stack.daemon.sink_queues if q.sink is live)
        url = stack.url.replace("http://", "ws://") + "/api/v1/live/ws"
        stuck = await _stuck_client(url)
        received = 0
        async with stack.http.ws_connect(url) as fast:
            await until(lambda: len(hub.clients) == 2)

            async def read_fast() -> None:
                nonlocal received
                async for msg in fast:
                    if msg.type == aiohttp.WSMsgType.TEXT and '"tick"' in msg.data[:20]:
                        received += 1

            reader = asyncio.create_task(read_fast())
            sample = live.sample
            assert sample is not None
            max_depth = 0
            published = 0
            # the daemon's own queue for this sink, fed as fast as the loop allows
            async with asyncio.timeout(30.0):
                while hub.dropped_total == 0:
                    queue.put(sample)
                    published += 1
                    max_depth = max(max_depth, queue.depth)
                    while queue.depth:  # delivered before the next one: no backlog builds
                        await asyncio.sleep(0)
            assert hub.dropped_total == 1 and len(hub.clients) == 1
            assert queue.overflow == 0 and max_depth <= 1
            # the fast client kept up the whole time and still gets every tick
            before = received
            await until(lambda: received >= before + 5, timeout_s=10.0)
            reader.cancel()
        stuck.close()
        async with stack.http.get(f"{stack.url}/metrics") as r:
            assert "liqmon_ws_clients_dropped_total 1.0" in await r.text()
        assert published > hub.queue_size  # it took a backlog, not one message, to drop it
