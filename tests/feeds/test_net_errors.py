"""Network errors read as one short sentence: real failures from aiohttp, websockets and
sockets on loopback (a closed port, a name that cannot resolve, a server that never answers,
a handshake refused), described by feeds.net_errors and logged that way by the session and
the REST client."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from feeds.net_errors import describe_error
from feeds.rest import RestClient, RestError, RestTimeout
from feeds.session import ConnectionPolicy, WsSession

pytestmark = pytest.mark.integration

UNRESOLVABLE = "nonexistent.invalid"  # .invalid never resolves (RFC 2606), online or not


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def caught(attempt: Callable[[], Awaitable[object]]) -> BaseException:
    try:
        await attempt()
    except Exception as error:  # the error under test, whatever its type
        return error
    raise AssertionError("no error raised")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def mute_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never says anything; yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def http_404() -> AsyncIterator[int]:
    """An HTTP server answering 404 to everything (a websocket URL that is wrong)."""

    async def not_found(_request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


class TestRealErrors:
    async def test_websocket_to_a_closed_port_is_connection_refused(self) -> None:
        port = closed_port()
        url = f"ws://127.0.0.1:{port}/ws"
        error = await caught(lambda: connect(url, open_timeout=None))
        assert isinstance(error, ConnectionRefusedError)
        assert describe_error(error, url) == f"connection refused by 127.0.0.1:{port}"

    async def test_http_to_a_closed_port_is_connection_refused(
        self, http: aiohttp.ClientSession
    ) -> None:
        port = closed_port()
        error = await caught(lambda: http.get(f"http://127.0.0.1:{port}/api"))
        assert isinstance(error, aiohttp.ClientConnectorError)
        assert describe_error(error) == f"connection refused by 127.0.0.1:{port}"

    async def test_websocket_to_an_unresolvable_host_cannot_resolve(self) -> None:
        url = f"wss://{UNRESOLVABLE}/ws"
        error = await caught(lambda: connect(url, open_timeout=None))
        assert isinstance(error, socket.gaierror)
        assert describe_error(error, url) == f"cannot resolve {UNRESOLVABLE}"

    async def test_http_to_an_unresolvable_host_cannot_resolve(
        self, http: aiohttp.ClientSession
    ) -> None:
        error = await caught(lambda: http.get(f"https://{UNRESOLVABLE}/api/v3/exchangeInfo"))
        assert isinstance(error, aiohttp.ClientConnectorError)
        assert describe_error(error) == f"cannot resolve {UNRESOLVABLE}"

    async def test_a_connect_that_never_completes_timed_out_after_the_timeout(
        self, mute_server: int
    ) -> None:
        url = f"ws://127.0.0.1:{mute_server}/ws"
        error = await caught(lambda: asyncio.wait_for(connect(url, open_timeout=None), 0.2))
        assert isinstance(error, TimeoutError)
        assert describe_error(error, url, timeout_s=0.2) == "timed out after 0.2 s"

    async def test_a_refused_websocket_handshake_names_the_http_status(self, http_404: int) -> None:
        url = f"ws://127.0.0.1:{http_404}/ws"
        error = await caught(lambda: connect(url, open_timeout=None))
        assert describe_error(error, url) == (
            f"websocket handshake refused by 127.0.0.1:{http_404}: HTTP 404"
        )

    async def test_a_server_close_names_code_and_reason(self) -> None:
        async def close_at_once(request: web.Request) -> web.WebSocketResponse:
            websocket = web.WebSocketResponse()
            await websocket.prepare(request)
            await websocket.close(code=1008, message=b"too many requests")
            return websocket

        app = web.Application()
        app.router.add_get("/ws", close_at_once)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws") as websocket:
                error = await caught(websocket.recv)
        finally:
            await runner.cleanup()
        assert isinstance(error, ConnectionClosed)
        assert describe_error(error) == "connection closed with code 1008: too many requests"

    def test_an_unknown_error_keeps_its_type_and_message(self) -> None:
        assert describe_error(ValueError("bad level")) == "ValueError: bad level"


class TestLoggedAsText:
    async def test_session_logs_a_refused_connect_as_one_sentence(self) -> None:
        port = closed_port()
        failed = asyncio.Event()

        async def sleep(_delay_s: float) -> None:
            failed.set()
            await asyncio.sleep(0)

        session = WsSession(
            f"ws://127.0.0.1:{port}/ws",
            venue="binance",
            on_frame=lambda _data, _ns: None,
            policy=ConnectionPolicy(connect_timeout_s=2.0),
            sleep=sleep,
            rng=random.Random(1),
        )
        with capture_logs() as logs:
            task = asyncio.create_task(session.run())
            async with asyncio.timeout(5):
                await failed.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        expected = f"connection refused by 127.0.0.1:{port}"
        assert session.health.last_error == expected
        (first, *_) = [e for e in logs if e["event"] == "feed.connect_failed"]
        assert first["error"] == expected

    async def test_session_logs_a_connect_timeout_with_its_seconds(self, mute_server: int) -> None:
        failed = asyncio.Event()

        async def sleep(_delay_s: float) -> None:
            failed.set()
            await asyncio.sleep(0)

        session = WsSession(
            f"ws://127.0.0.1:{mute_server}/ws",
            venue="okx",
            on_frame=lambda _data, _ns: None,
            policy=ConnectionPolicy(connect_timeout_s=0.2),
            sleep=sleep,
        )
        task = asyncio.create_task(session.run())
        async with asyncio.timeout(5):
            await failed.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert session.health.last_error == "timed out after 0.2 s"

    async def test_rest_errors_carry_the_sentence(
        self, http: aiohttp.ClientSession, mute_server: int
    ) -> None:
        async def no_wait(_delay_s: float) -> None:
            await asyncio.sleep(0)

        client = RestClient(http, venue="binance", timeout_s=0.2, max_retries=0, sleep=no_wait)
        unresolvable = await caught(lambda: client.get_text(f"https://{UNRESOLVABLE}/api/v3/time"))
        assert isinstance(unresolvable, RestError)
        assert unresolvable.problem == f"cannot resolve {UNRESOLVABLE}"
        assert str(unresolvable).endswith(f": cannot resolve {UNRESOLVABLE}")
        slow = await caught(lambda: client.get_text(f"http://127.0.0.1:{mute_server}/x"))
        assert isinstance(slow, RestTimeout)
        assert slow.problem == "timed out after 0.2 s"
