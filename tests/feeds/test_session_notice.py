"""WsSession and a venue's advance notice of a disconnect (OKX 64008), against the local
OKX: without an owner's hook the session reconnects at once, by itself; with one it hands
the notice over exactly once per connection and keeps the connection until told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from feeds.okx import OKX
from feeds.session import ConnectionPolicy, DisconnectReason, WsSession
from feeds.sim.base import ExchangeSim
from feeds.sim.okx import OkxProtocol
from monitor.domain import Venue

pytestmark = pytest.mark.integration

POLICY = ConnectionPolicy(connect_timeout_s=2.0, receive_timeout_s=5.0, backoff_initial_s=0.01)


class Seen:
    """What the session's callbacks saw; wakes waiters whenever one fires."""

    def __init__(self) -> None:
        self.connects = 0
        self.frames: list[str | bytes] = []
        self.disconnects: list[DisconnectReason] = []
        self.notices: list[str] = []
        self._changed = asyncio.Event()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()

    def notice_frames(self) -> int:
        return sum(1 for f in self.frames if '"notice"' in str(f))


def session(sim: ExchangeSim, seen: Seen, *, hook: bool) -> WsSession:
    def on_frame(data: str | bytes, _recv_ns: int) -> None:
        seen.frames.append(data)
        seen.notify()

    def on_connect() -> None:
        seen.connects += 1
        seen.notify()

    def on_disconnect(reason: DisconnectReason) -> None:
        seen.disconnects.append(reason)
        seen.notify()

    def on_notice(why: str) -> None:
        seen.notices.append(why)
        seen.notify()

    return WsSession(
        sim.ws_url(Venue.OKX, "/ws/v5/public"),
        venue="okx",
        on_frame=on_frame,
        on_connect=on_connect,
        on_disconnect=on_disconnect,
        policy=POLICY,
        notice=OKX.reconnect_notice,
        on_notice=on_notice if hook else None,
    )


@contextlib.asynccontextmanager
async def local_okx() -> AsyncIterator[tuple[ExchangeSim, OkxProtocol]]:
    protocol = OkxProtocol()
    async with ExchangeSim([protocol]) as sim:
        yield sim, protocol


@contextlib.asynccontextmanager
async def running(ws: WsSession) -> AsyncIterator[None]:
    task = asyncio.create_task(ws.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_a_hook_the_session_reconnects_at_once() -> None:
    seen = Seen()
    async with local_okx() as (sim, protocol):
        ws = session(sim, seen, hook=False)
        async with running(ws):
            await seen.until(lambda: seen.connects == 1)
            (first,) = sim.open_connections(Venue.OKX)
            assert protocol.notice(sim, close_after_s=30.0) == 1  # the venue would wait 30 s
            await seen.until(lambda: seen.connects == 2)
            assert first.closed
            assert seen.disconnects == [DisconnectReason.RECONNECT]
            assert ws.health.reconnect_requests == 1
            assert ws.health.close_codes.get(1012, 0) == 0


async def test_with_a_hook_the_owner_gets_the_notice_once_and_the_connection_stays() -> None:
    seen = Seen()
    async with local_okx() as (sim, protocol):
        ws = session(sim, seen, hook=True)
        async with running(ws):
            await seen.until(lambda: seen.connects == 1)
            protocol.notice(sim)
            protocol.notice(sim)  # repeated on the same connection: one hand-over
            await seen.until(lambda: seen.notice_frames() == 2)
            (sent,) = sim.open_connections(Venue.OKX)
            assert seen.notices == [
                "notice 64008: The connection will soon be closed for a service upgrade. "
                "Please reconnect."
            ]
            assert ws.health.reconnect_requests == 1
            assert seen.disconnects == [] and not sent.closed
            await ws.stop()  # what the owner does once its replacement is up
            await seen.until(lambda: seen.disconnects == [DisconnectReason.ROTATED])
