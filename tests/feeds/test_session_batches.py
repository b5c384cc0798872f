"""WsSession's ``on_batch``: called once per socket read, right after its last frame.

A bare websocket server (asyncio streams, RFC 6455 handshake, no extension) writes several
frames with one ``write`` so that they reach the client in one read, as a venue's burst
does, and single frames apart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType

from feeds.coalesce import ReadCoalescer
from feeds.session import ConnectionPolicy, WsSession

pytestmark = pytest.mark.integration

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
POLICY = ConnectionPolicy(connect_timeout_s=2.0, receive_timeout_s=10.0)


def text_frame(payload: bytes) -> bytes:
    """A server-to-client text frame (unmasked, payload under 126 bytes)."""
    assert len(payload) < 126
    return bytes((0x81, len(payload))) + payload


class BurstServer:
    """One client at a time; :meth:`write` sends frames in one transport write."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        self.writer = writer
        self.connected.set()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client goes

    async def write(self, *payloads: bytes) -> None:
        assert self.writer is not None
        self.writer.write(b"".join(text_frame(p) for p in payloads))
        await self.writer.drain()


@contextlib.asynccontextmanager
async def burst_server() -> AsyncIterator[BurstServer]:
    server = BurstServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        if server.writer is not None:
            server.writer.close()
        listener.close()


class Seen:
    """What the session handed over, in order: ("frame", data) and ("batch",)."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.batch_ended = asyncio.Event()

    def on_frame(self, data: str | bytes, recv_ns: int) -> None:
        self.events.append(("frame", data))

    def on_batch(self) -> None:
        self.events.append(("batch",))
        self.batch_ended.set()

    async def next_batch(self) -> None:
        await asyncio.wait_for(self.batch_ended.wait(), 5.0)
        self.batch_ended.clear()


def bytes_session(server: BurstServer, seen: Seen, **options: Any) -> WsSession:
    """A session to the burst server that hands text frames over as bytes to ``seen``."""
    return WsSession(
        f"ws://127.0.0.1:{server.port}/ws",
        venue="test",
        on_frame=seen.on_frame,
        on_batch=seen.on_batch,
        policy=POLICY,
        text_as_bytes=True,
        **options,
    )


async def test_on_batch_follows_the_last_frame_of_each_read() -> None:
    seen = Seen()
    async with burst_server() as server:
        session = bytes_session(server, seen)
        task = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(server.connected.wait(), 5.0)
            await server.write(b"a1", b"a2", b"a3")
            await seen.next_batch()
            await server.write(b"b1")
            await seen.next_batch()
            await server.write(b"c1", b"c2")
            await seen.next_batch()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    f = "frame"
    assert seen.events == [
        (f, b"a1"),
        (f, b"a2"),
        (f, b"a3"),
        ("batch",),
        (f, b"b1"),
        ("batch",),
        (f, b"c1"),
        (f, b"c2"),
        ("batch",),
    ]
    assert session.health.frames == 6


async def test_a_failing_batch_handler_is_counted_and_the_connection_stays() -> None:
    seen = Seen()
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        seen.batch_ended.set()
        raise RuntimeError("bug in the owner's flush")

    async with burst_server() as server:
        session = WsSession(
            f"ws://127.0.0.1:{server.port}/ws",
            venue="test",
            on_frame=seen.on_frame,
            on_batch=broken,
            policy=POLICY,
        )
        task = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(server.connected.wait(), 5.0)
            await server.write(b"x1", b"x2")
            await seen.next_batch()
            await server.write(b"y1")
            await seen.next_batch()
            disconnects = session.health.disconnects
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [e[1] for e in seen.events] == ["x1", "x2", "y1"]
    assert calls == 2
    assert session.health.errors == 2
    assert session.health.connects == 1
    assert disconnects == 0


class ScriptedSocket:
    """A websocket whose frames are all there at once, without aiohttp's parsed-frame queue
    (``_reader._buffer``): the session cannot see where a read ends."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.messages = [WSMessage(WSMsgType.TEXT, p, None) for p in payloads]

    async def receive(self) -> WSMessage:
        if self.messages:
            return self.messages.pop(0)
        return WSMessage(WSMsgType.CLOSED, None, None)


async def test_without_the_parsed_frame_queue_on_batch_runs_once_at_the_end_of_the_turn() -> None:
    seen = Seen()
    session = WsSession("ws://unused", venue="test", on_frame=seen.on_frame, on_batch=seen.on_batch)
    socket = ScriptedSocket([b"a", b"b", b"c"])
    await session._read(socket)  # type: ignore[arg-type]
    assert seen.events == [("frame", b"a"), ("frame", b"b"), ("frame", b"c")]
    await seen.next_batch()  # the end of the turn that handed them over
    assert seen.events[3:] == [("batch",)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_RCVLOWAT: Linux only")
async def test_coalesced_reads_wait_for_a_release_and_come_as_one_batch() -> None:
    """Under the read coalescer small frames stay in the kernel until it lets them through
    (on its timer or before a tick); then they come in one read, and the socket is held
    again. A write of low_water bytes or more comes through at once."""
    seen = Seen()
    coalescer = ReadCoalescer(4096, 3600.0)  # no timer here: the test releases
    async with burst_server() as server:
        session = bytes_session(server, seen, coalescer=coalescer)
        task = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(server.connected.wait(), 5.0)
            await asyncio.wait_for(session.connected.wait(), 5.0)
            held = session._coalesced
            assert held is not None
            await server.write(b"a1")
            await server.write(b"a2")
            await asyncio.sleep(0.2)
            assert seen.events == []  # in the kernel, below the mark
            assert coalescer.release() == 1
            await seen.next_batch()
            assert seen.events == [("frame", b"a1"), ("frame", b"a2"), ("batch",)]
            assert not held.lowered  # held again after that read
            await server.write(b"b1")
            await asyncio.sleep(0.2)
            assert len(seen.events) == 3
            big = [bytes([65 + k % 26]) * 120 for k in range(40)]  # 4.9 KB in one write
            await server.write(*big)
            await seen.next_batch()  # no release: a full mark wakes the reader
            assert [e[1] for e in seen.events[3:] if e[0] == "frame"] == [b"b1", *big]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert session._coalesced is None  # detached when the connection ended
    assert session.health.frames == 43
