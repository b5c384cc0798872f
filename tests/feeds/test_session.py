"""WsSession against the local exchange's Binance: subscribe, frames, drops, silence, refusal,
1008."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from feeds.session import Backoff, ConnectionPolicy, DisconnectReason, FeedHealth, WsSession
from feeds.sim import BinanceProtocol, ExchangeSim, SimConnection
from feeds.sim.base import Change
from monitor.domain import Venue

pytestmark = pytest.mark.integration

VENUE = Venue.BINANCE
SYMBOL = "BTCUSDT"
STREAM = "btcusdt@depth@100ms"
SUBSCRIBE = json.dumps({"method": "SUBSCRIBE", "params": [STREAM], "id": 1})
FAST = ConnectionPolicy(
    connect_timeout_s=2.0,
    receive_timeout_s=5.0,
    backoff_initial_s=1.0,
    backoff_max_s=8.0,
    healthy_after_s=60.0,
)


class Changes:
    """Wakes waiters whenever a client-side callback fires."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()


class Client:
    """Callbacks and injected sleep of one session under test, with everything they saw."""

    def __init__(self) -> None:
        self.changes = Changes()
        self.frames: list[tuple[str | bytes, int]] = []
        self.connects = 0
        self.disconnects: list[DisconnectReason] = []
        self.sleeps: list[float] = []

    def on_frame(self, data: str | bytes, recv_ns: int) -> None:
        self.frames.append((data, recv_ns))
        self.changes.notify()

    def on_connect(self) -> None:
        self.connects += 1
        self.changes.notify()

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self.disconnects.append(reason)
        self.changes.notify()

    async def sleep(self, delay_s: float) -> None:
        self.sleeps.append(delay_s)
        self.changes.notify()
        await asyncio.sleep(0)  # yield only: tests never wait for real backoff time

    def session(self, url: str, **options: object) -> WsSession:
        options.setdefault("policy", FAST)
        return WsSession(
            url,
            venue="binance",
            on_frame=self.on_frame,
            on_connect=self.on_connect,
            on_disconnect=self.on_disconnect,
            sleep=self.sleep,
            **options,  # type: ignore[arg-type]
        )

    def connected(self, times: int) -> Callable[[], bool]:
        return lambda: self.connects == times

    def payloads(self) -> list[str | bytes]:
        return [data for data, _ in self.frames]


@contextlib.asynccontextmanager
async def running(session: WsSession) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def local_binance(server_ping_s: float | None = None) -> AsyncIterator[ExchangeSim]:
    """The local exchange serving Binance spot with one book, BTCUSDT."""
    async with ExchangeSim([BinanceProtocol(VENUE, server_ping_s=server_ping_s)]) as server:
        server.add_book(VENUE, SYMBOL, mid="100", levels=5)
        yield server


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    async with local_binance() as server:
        yield server


def push_depth(sim: ExchangeSim) -> int:
    """One update of the book, sent to every connection subscribed to it; returns its id."""
    book = sim.book(VENUE, SYMBOL)
    best = book.best_bid()
    assert best is not None
    sim.update(VENUE, SYMBOL, [Change("bid", best, book.bids[best] + 1)])
    return book.seq


def subscribers(sim: ExchangeSim) -> int:
    return sum(SYMBOL in conn.subscriptions for conn in sim.open_connections())


def is_depth(payload: str | bytes, update_id: int) -> bool:
    """``payload`` is the raw depthUpdate of the book's update ``update_id``."""
    message = json.loads(payload)
    return bool(message.get("e") == "depthUpdate" and message["s"] == SYMBOL) and (
        message["U"] == message["u"] == update_id
    )


def subscribe_requests(conn: SimConnection) -> list[dict[str, object]]:
    """The JSON control messages the server received on ``conn`` (SUBSCRIBE and friends)."""
    messages = [json.loads(text) for text in conn.received]
    return [m for m in messages if isinstance(m, dict) and "method" in m]


@pytest.fixture
def client() -> Client:
    return Client()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestConnectAndSubscribe:
    async def test_sends_subscribe_frame_and_delivers_frames_with_receive_time(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        """The SUBSCRIBE frame reaches the server; frames arrive text, stamped on receipt."""
        session = client.session(f"{sim.ws_url(VENUE)}/ws", subscribe_frames=[SUBSCRIBE])
        before_ns = time.time_ns()
        async with running(session):
            await sim.wait_for(lambda: bool(sim.connections and sim.connections[0].subscriptions))
            assert subscribe_requests(sim.connections[0]) == [json.loads(SUBSCRIBE)]
            assert subscribers(sim) == 1
            update_id = push_depth(sim)
            await client.changes.wait_for(lambda: len(client.frames) == 2)
        after_ns = time.time_ns()
        ack, depth = client.frames
        assert json.loads(ack[0]) == {"result": None, "id": 1}
        assert isinstance(depth[0], str)
        assert is_depth(depth[0], update_id)
        assert before_ns <= ack[1] <= depth[1] <= after_ns
        assert client.connects == 1
        assert session.health.connects == 1
        assert session.health.frames == 2

    async def test_combined_stream_url_delivers_the_envelope_as_sent(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}")
        async with running(session):
            await client.changes.wait_for(lambda: client.connects == 1)
            await sim.wait_for(lambda: subscribers(sim) == 1)
            update_id = push_depth(sim)
            await client.changes.wait_for(lambda: len(client.frames) == 1)
        (envelope,) = client.payloads()
        assert isinstance(envelope, str)
        assert envelope.startswith(f'{{"stream":"{STREAM}","data":{{"e":"depthUpdate",')
        assert is_depth(json.dumps(json.loads(envelope)["data"]), update_id)
        assert sim.connections[0].received == []  # streams in the URL: nothing to subscribe

    async def test_server_pings_are_answered_and_the_connection_stays_up(
        self, client: Client
    ) -> None:
        async with local_binance(server_ping_s=0.02) as sim:
            session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}")
            async with running(session):
                await sim.wait_for(lambda: bool(sim.connections) and sim.connections[0].pongs >= 3)
                assert len(sim.open_connections()) == 1
        assert session.health.connects == 1
        assert client.frames == []  # pings never reach on_frame

    async def test_cancelling_run_closes_the_connection(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}")
        async with running(session):
            await sim.wait_for(lambda: len(sim.open_connections()) == 1)
        await sim.wait_for(lambda: not sim.open_connections())
        assert session.health.open_connections == 0


class TestReconnect:
    async def test_dropped_connection_reconnects_and_resubscribes(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        session = client.session(f"{sim.ws_url(VENUE)}/ws", subscribe_frames=[SUBSCRIBE])
        async with running(session):
            await sim.wait_for(lambda: bool(sim.connections and sim.connections[0].subscriptions))
            await sim.drop()
            await sim.wait_for(
                lambda: len(sim.connections) == 2 and bool(sim.connections[1].subscriptions)
            )
            await client.changes.wait_for(lambda: client.connects == 2)
            update_id = push_depth(sim)
            await client.changes.wait_for(
                lambda: any(is_depth(p, update_id) for p in client.payloads()[1:])
            )
        assert [subscribe_requests(c) for c in sim.connections] == [[json.loads(SUBSCRIBE)]] * 2
        assert client.disconnects[0] == DisconnectReason.CLOSED
        assert session.health.connects == 2
        assert session.health.disconnects >= 1
        assert 0.0 <= client.sleeps[0] <= FAST.backoff_initial_s

    async def test_silence_past_receive_timeout_reconnects_and_counts_stale(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        policy = ConnectionPolicy(receive_timeout_s=0.1, backoff_initial_s=1.0, backoff_max_s=2.0)
        session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}", policy=policy)
        sim.set_silent(VENUE)
        with capture_logs() as logs:
            async with running(session):
                await sim.wait_for(lambda: len(sim.connections) >= 2, timeout_s=5.0)
                sim.set_silent(VENUE, False)
                await client.changes.wait_for(lambda: client.connects >= 2)
                await sim.wait_for(lambda: subscribers(sim) == 1)
                push_depth(sim)
                await client.changes.wait_for(lambda: len(client.frames) == 1)
        assert client.disconnects[0] == DisconnectReason.STALE
        assert session.health.stale >= 1
        assert any(entry["event"] == "feed.stale" for entry in logs)

    async def test_unreachable_venue_keeps_retrying_with_capped_full_jitter(
        self, client: Client
    ) -> None:
        policy = ConnectionPolicy(connect_timeout_s=1.0, backoff_initial_s=0.5, backoff_max_s=4.0)
        session = client.session(
            f"ws://127.0.0.1:{closed_port()}/stream?streams={STREAM}",
            policy=policy,
            rng=random.Random(7),
        )
        with capture_logs() as logs:
            async with running(session):
                await client.changes.wait_for(lambda: len(client.sleeps) >= 12)
        twin = random.Random(7)
        caps = [min(4.0, 0.5 * 2**attempt) for attempt in range(12)]
        assert client.sleeps[:12] == [twin.uniform(0.0, cap) for cap in caps]
        assert all(0.0 <= delay <= cap for delay, cap in zip(client.sleeps, caps, strict=False))
        assert caps[-1] == 4.0
        assert client.connects == 0
        assert session.health.connect_failures >= 12
        assert session.health.last_error is not None
        failures = [entry for entry in logs if entry["event"] == "feed.connect_failed"]
        assert len(failures) >= 12
        assert failures[0]["venue"] == "binance"
        assert "Connect" in failures[0]["error"] or "refused" in failures[0]["error"].lower()
        assert [entry["attempt"] for entry in failures[:3]] == [0, 1, 2]

    async def test_close_1008_too_many_requests_backs_off_at_least_a_minute(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}")
        with capture_logs() as logs:
            async with running(session):
                await sim.wait_for(lambda: len(sim.open_connections()) == 1)
                await sim.drop(code=1008, reason="Too many requests")
                await client.changes.wait_for(lambda: client.connects == 2)
        assert client.sleeps[0] >= 60.0
        disconnect = next(entry for entry in logs if entry["event"] == "feed.disconnect")
        assert disconnect["close_code"] == 1008
        assert disconnect["delay_s"] == client.sleeps[0]
        assert "1008" in (session.health.last_error or "")

    async def test_backoff_restarts_after_a_healthy_connection(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        now = [0.0]
        session = client.session(
            f"{sim.ws_url(VENUE)}/stream?streams={STREAM}",
            policy=ConnectionPolicy(
                backoff_initial_s=1.0, backoff_max_s=64.0, healthy_after_s=10.0
            ),
            clock=lambda: now[0],
        )
        async with running(session):
            for connects in (1, 2, 3):  # short-lived connections: the backoff grows
                await client.changes.wait_for(client.connected(connects))
                await sim.drop()
            await client.changes.wait_for(lambda: client.connects == 4)
            assert session.backoff.attempt == 3
            now[0] += 10.0  # this one stays up long enough to count as healthy
            await sim.drop()
            await client.changes.wait_for(lambda: client.connects == 5)
        assert session.backoff.attempt == 1
        assert client.sleeps[3] <= 1.0

    async def test_a_failing_frame_handler_is_logged_and_the_connection_kept(
        self, sim: ExchangeSim
    ) -> None:
        received: list[str | bytes] = []
        changes = Changes()

        def on_frame(data: str | bytes, recv_ns: int) -> None:
            received.append(data)
            changes.notify()
            if len(received) == 1:
                raise ValueError("handler bug")

        health = FeedHealth()
        session = WsSession(
            f"{sim.ws_url(VENUE)}/stream?streams={STREAM}",
            venue="binance",
            on_frame=on_frame,
            health=health,
        )
        with capture_logs() as logs:
            async with running(session):
                await sim.wait_for(lambda: len(sim.open_connections()) == 1)
                await sim.wait_for(lambda: subscribers(sim) == 1)
                push_depth(sim)
                push_depth(sim)
                await changes.wait_for(lambda: len(received) == 2)
        assert health.errors == 1
        assert health.connects == 1
        assert "handler bug" in (health.last_error or "")
        assert any(entry["event"] == "feed.frame_handler_failed" for entry in logs)


class TestFramesAndLimits:
    async def test_text_frames_as_bytes_are_the_server_text_undecoded(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        """The daemon's mode: text frames reach on_frame as their UTF-8 bytes."""
        session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}", text_as_bytes=True)
        async with running(session):
            await client.changes.wait_for(lambda: client.connects == 1)
            await sim.wait_for(lambda: subscribers(sim) == 1)
            update_id = push_depth(sim)
            await client.changes.wait_for(lambda: len(client.frames) == 1)
        (envelope,) = client.payloads()
        assert isinstance(envelope, bytes)
        assert is_depth(json.dumps(json.loads(envelope)["data"]), update_id)

    async def test_a_frame_over_the_size_limit_closes_1009_and_reconnects(
        self, sim: ExchangeSim, client: Client
    ) -> None:
        session = client.session(f"{sim.ws_url(VENUE)}/stream?streams={STREAM}", max_frame_bytes=64)
        with capture_logs() as logs:
            async with running(session):
                await client.changes.wait_for(lambda: client.connects == 1)
                await sim.wait_for(lambda: subscribers(sim) == 1)
                push_depth(sim)  # its frame is well over 64 bytes
                await client.changes.wait_for(lambda: client.connects == 2)
        assert client.frames == []
        assert client.disconnects[0] == DisconnectReason.CLOSED
        assert session.health.close_codes[1009] == 1
        assert "1009" in (session.health.last_error or "")
        disconnect = next(entry for entry in logs if entry["event"] == "feed.disconnect")
        assert disconnect["close_code"] == 1009


class TestBackoff:
    def test_delays_are_full_jitter_under_a_doubling_cap(self) -> None:
        backoff = Backoff(0.25, 5.0, random.Random(1))
        caps = []
        for _ in range(10):
            caps.append(backoff.cap_s())
            assert 0.0 <= backoff.next_delay_s() <= caps[-1]
        assert caps == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0]

    def test_reset_starts_again_from_the_initial_cap(self) -> None:
        backoff = Backoff(1.0, 60.0, random.Random(1))
        for _ in range(5):
            backoff.next_delay_s()
        backoff.reset()
        assert backoff.cap_s() == 1.0

    def test_the_cap_survives_thousands_of_attempts(self) -> None:
        backoff = Backoff(1.0, 60.0, random.Random(1))
        backoff.attempt = 5000
        assert backoff.cap_s() == 60.0
