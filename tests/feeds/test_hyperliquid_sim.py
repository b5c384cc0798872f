"""The local Hyperliquid (feeds/sim/hyperliquid.py) speaks what the Hyperliquid adapter reads.

A plain websockets client subscribes exactly as ``HyperliquidAdapter.subscribe_frames`` says;
every frame must decode with the adapter, and the last full book of each coin must equal
the sim's top 20 levels.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from feeds.contract import BookMessage, VenueMessage
from feeds.hyperliquid import PERP
from feeds.sim.base import ExchangeSim, SimBook
from feeds.sim.hyperliquid import HyperliquidProtocol
from monitor.domain import EventKind, Ignored, Instrument, InstrumentKind, MarkPriceEvent, Venue
from monitor.instruments import InstrumentRegistry

PATH = "/ws"
REGISTRY = InstrumentRegistry.load_cached([Venue.HYPERLIQUID])
COINS = ["BTC", "ETH"]


@asynccontextmanager
async def hyperliquid_sim(
    protocol: HyperliquidProtocol | None = None, **options: Any
) -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim([protocol or HyperliquidProtocol()], **options) as sim:
        for coin, mid in (("BTC", "60000"), ("ETH", "3000"), ("@107", "30")):
            instrument = REGISTRY.get(Venue.HYPERLIQUID, coin)
            assert instrument is not None
            sim.add_instrument(instrument, mid=mid, levels=30)
        yield sim


def decimal_levels(raw: bytes) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in json.loads(raw)]


def sim_top(book: SimBook) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    return (
        [(Decimal(book.px(p)), Decimal(book.qty(q))) for p, q in book.top_bids(20)],
        [(Decimal(book.px(p)), Decimal(book.qty(q))) for p, q in book.top_asks(20)],
    )


@dataclass
class Client:
    """A websockets client that decodes every frame with the Hyperliquid adapter."""

    ws: ClientConnection
    decoded: list[Any] = field(default_factory=list)
    books: dict[str, BookMessage] = field(default_factory=dict)  # the last full book per coin
    book_messages: list[BookMessage] = field(default_factory=list)
    pongs: int = 0

    async def send(self, frames: list[str]) -> None:
        for frame in frames:
            await self.ws.send(frame)

    async def receive_one(self) -> None:
        text = await self.ws.recv()
        assert isinstance(text, str)
        item = PERP.decode(text, 1_000)
        self.decoded.append(item)
        if item == Ignored("pong"):
            self.pongs += 1
        if isinstance(item, BookMessage):
            self.book_messages.append(item)
            self.books[item.symbol] = item

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self.receive_one()

    async def drain(self) -> None:
        expected = self.pongs + 1
        await self.send([PERP.keepalive_frame() or ""])
        await self.until(lambda: self.pongs >= expected)

    def of(self, kind: type) -> list[Any]:
        return [d for d in self.decoded if isinstance(d, kind)]


@asynccontextmanager
async def client(sim: ExchangeSim) -> AsyncIterator[Client]:
    async with connect(sim.ws_url(Venue.HYPERLIQUID, PATH), max_size=None) as ws:
        yield Client(ws)


class TestBooks:
    async def test_every_message_is_the_full_top_20_of_the_sim_book(self) -> None:
        async with hyperliquid_sim() as sim, client(sim) as c:
            frames = PERP.subscribe_frames(COINS, ["l2Book"])
            await c.send(frames)
            await c.until(lambda: len(c.book_messages) == 2)
            (conn,) = sim.open_connections(Venue.HYPERLIQUID)
            assert conn.received == frames
            assert c.decoded.count(Ignored("subscriptionResponse")) == 2
            for coin in COINS:
                book = c.books[coin]
                top = sim_top(sim.book(Venue.HYPERLIQUID, coin))
                assert (decimal_levels(bytes(book.bids)), decimal_levels(bytes(book.asks))) == top
            for _ in range(200):
                sim.step(Venue.HYPERLIQUID)
            await c.drain()
            assert all(m.kind == EventKind.SNAPSHOT and m.limit == 20 for m in c.book_messages)
            assert 2 < len(c.book_messages) <= 2 + 2 * 200
            for coin in COINS:
                book = c.books[coin]
                top = sim_top(sim.book(Venue.HYPERLIQUID, coin))
                assert (decimal_levels(bytes(book.bids)), decimal_levels(bytes(book.asks))) == top
                times = [m.last_seq for m in c.book_messages if m.symbol == coin]
                assert all(a < b for a, b in itertools.pairwise(times))

    async def test_spot_books_are_named_by_index(self) -> None:
        async with hyperliquid_sim() as sim, client(sim) as c:
            await c.send(PERP.subscribe_frames(["@107"], ["l2Book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            assert c.book_messages[0].symbol == "@107"


class TestOtherMessages:
    async def test_active_asset_ctx_gives_the_mark_of_the_book(self) -> None:
        async with hyperliquid_sim(mark_s=0.05) as sim, client(sim) as c:
            await c.send(PERP.subscribe_frames(["BTC"], ["activeAssetCtx"]))
            await c.until(lambda: len(c.of(MarkPriceEvent)) >= 2)
            event = c.of(MarkPriceEvent)[-1]
            book = sim.book(Venue.HYPERLIQUID, "BTC")
            assert (event.venue, event.symbol) == (Venue.HYPERLIQUID, "BTC")
            assert Decimal(repr(event.mark_price)) == Decimal(book.px(book.mark_px))
            assert event.funding_rate == book.funding_rate
            assert event.index_price < event.mark_price
            assert not c.book_messages  # no book without an l2Book subscription

    async def test_bad_and_duplicate_subscriptions_are_errors(self) -> None:
        async with hyperliquid_sim() as sim, client(sim) as c:
            await c.send(PERP.subscribe_frames(["NOPE"], ["l2Book"]))
            await c.send(PERP.subscribe_frames(["ETH"], ["l2Book"]) * 2)
            await c.until(lambda: len(c.of(VenueMessage)) == 2)
            missing, duplicate = c.of(VenueMessage)
            assert (missing.code, missing.symbol) == ("error", "NOPE")
            assert duplicate.message.startswith("Already subscribed") and duplicate.symbol == "ETH"

    async def test_unsubscribe_stops_the_books(self) -> None:
        async with hyperliquid_sim() as sim, client(sim) as c:
            await c.send(PERP.subscribe_frames(["ETH"], ["l2Book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            await c.send(PERP.unsubscribe_frames(["ETH"], ["l2Book"]))
            await c.until(lambda: c.decoded.count(Ignored("subscriptionResponse")) == 2)
            for _ in range(20):
                sim.step(Venue.HYPERLIQUID)
            await c.drain()
            assert len(c.book_messages) == 1


class TestIdleClients:
    async def test_a_silent_client_is_disconnected_and_a_pinging_one_is_not(self) -> None:
        protocol = HyperliquidProtocol(client_idle_timeout_s=0.3)

        async def keep_alive(c: Client) -> None:
            while True:  # a client's keepalive interval, well inside the idle timeout
                await c.drain()
                await asyncio.sleep(0.1)

        async with (
            hyperliquid_sim(protocol, heartbeat_s=0.05) as sim,
            client(sim) as pinging,
            client(sim) as silent,
        ):
            pinging_conn, silent_conn = sim.open_connections(Venue.HYPERLIQUID)
            task = asyncio.ensure_future(keep_alive(pinging))
            try:
                await sim.wait_for(lambda: silent_conn.closed, timeout_s=3.0)
                assert not pinging_conn.closed
                assert sim.open_connections(Venue.HYPERLIQUID) == [pinging_conn]
            finally:
                task.cancel()
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(2.0):
                    await silent.receive_one()


class TestRest:
    async def post(self, url: str, body: str) -> str:
        async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
            assert response.status == 200
            return await response.text()

    async def test_meta_and_spot_meta_describe_the_books_as_the_adapter_reads_them(self) -> None:
        async with hyperliquid_sim() as sim:
            parsed: dict[str, Instrument] = {}
            for request in PERP.instruments_requests(sim.rest_url(Venue.HYPERLIQUID)):
                assert request.body is not None
                text = await self.post(request.url, request.body)
                parsed.update((i.symbol, i) for i in PERP.parse_instruments(request.key, text))
            assert {s: parsed[s] for s in COINS} == {
                s: REGISTRY.get(Venue.HYPERLIQUID, s) for s in COINS
            }
            spot = parsed["@107"]
            assert (spot.base, spot.quote, spot.kind, spot.tick) == (
                "HYPE",
                "USDC",
                InstrumentKind.SPOT,
                "0.000001",
            )

    async def test_l2book_over_rest(self) -> None:
        async with hyperliquid_sim() as sim:
            text = await self.post(
                f"{sim.rest_url(Venue.HYPERLIQUID)}/info", '{"type":"l2Book","coin":"ETH"}'
            )
            data = json.loads(text)
            book = sim.book(Venue.HYPERLIQUID, "ETH")
            assert [(Decimal(x["px"]), Decimal(x["sz"])) for x in data["levels"][0]] == sim_top(
                book
            )[0]
