"""The local Kraken (feeds/sim/kraken.py) speaks what the Kraken adapter reads.

A plain websockets client subscribes exactly as ``KrakenAdapter.subscribe_frames`` says;
every frame must decode with the adapter, the book rebuilt from the decoded frames (Decimal
values, truncated to the subscribed depth after every message) must equal the sim's book,
and every checksum must match the rebuilt book (``feeds.kraken.checksum``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from feeds.contract import BookMessage, VenueMessage
from feeds.kraken import KrakenAdapter, checksum
from feeds.sim.base import Change, ExchangeSim, SimBook
from feeds.sim.kraken import KrakenProtocol
from monitor.domain import EventKind, Ignored, Instrument, Venue
from monitor.instruments import InstrumentRegistry

BTC, ETH = "BTC/USD", "ETH/USD"
PATH = "/v2"
REGISTRY = InstrumentRegistry.load_cached([Venue.KRAKEN])


@asynccontextmanager
async def kraken_sim(**options: Any) -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim([KrakenProtocol()], **options) as sim:
        for symbol, mid in ((BTC, "60000"), (ETH, "3000")):
            instrument = REGISTRY.get(Venue.KRAKEN, symbol)
            assert instrument is not None
            sim.add_instrument(instrument, mid=mid, levels=40)
        yield sim


@dataclass
class Book:
    """A Kraken book rebuilt from decoded messages: apply, truncate, check the checksum."""

    instrument: Instrument
    depth: int
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    checked: int = 0
    mismatches: int = 0
    shallow: int = 0  # messages after which a side held fewer levels than the depth

    def apply(self, message: BookMessage) -> None:
        if message.kind == EventKind.SNAPSHOT:
            self.bids.clear()
            self.asks.clear()
        for side, raw in ((self.bids, message.bids), (self.asks, message.asks)):
            for px, qty in json.loads(bytes(raw), parse_float=Decimal, parse_int=Decimal):
                if qty == 0:
                    side.pop(px, None)
                else:
                    side[px] = qty
        for side, best_first in ((self.bids, True), (self.asks, False)):
            for px in sorted(side, reverse=best_first)[self.depth :]:
                del side[px]
        if min(len(self.bids), len(self.asks)) < self.depth:
            self.shallow += 1
        if message.has_checksum:
            self.checked += 1
            mine = checksum(
                self.bids.items(),
                self.asks.items(),
                self.instrument.price_precision,
                self.instrument.qty_precision,
            )
            if mine != message.checksum:
                self.mismatches += 1


def sim_values(book: SimBook, depth: int) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in book.top_bids(depth)},
        {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in book.top_asks(depth)},
    )


@dataclass
class Client:
    """A websockets client that decodes every frame with the Kraken adapter."""

    ws: ClientConnection
    adapter: KrakenAdapter
    books: dict[str, Book] = field(default_factory=dict)
    decoded: list[Any] = field(default_factory=list)
    book_messages: list[BookMessage] = field(default_factory=list)
    pongs: int = 0

    async def send(self, frames: list[str]) -> None:
        for frame in frames:
            await self.ws.send(frame)

    async def receive_one(self) -> None:
        text = await self.ws.recv()
        assert isinstance(text, str)
        decoded = self.adapter.decode(text, 0)
        for item in decoded if isinstance(decoded, list) else [decoded]:
            self.decoded.append(item)
            if item == Ignored("pong"):
                self.pongs += 1
            if isinstance(item, BookMessage):
                self.book_messages.append(item)
                instrument = REGISTRY.get(Venue.KRAKEN, item.symbol)
                assert instrument is not None
                book = self.books.setdefault(item.symbol, Book(instrument, self.adapter.book_depth))
                book.apply(item)

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self.receive_one()

    def of_venue_messages(self) -> list[VenueMessage]:
        return [d for d in self.decoded if isinstance(d, VenueMessage)]

    async def drain(self) -> None:
        """Everything the sim queued before now: a ping's pong comes after it."""
        expected = self.pongs + 1
        await self.ws.send(json.dumps({"method": "ping", "req_id": 900 + expected}))
        await self.until(lambda: self.pongs >= expected)


@asynccontextmanager
async def client(sim: ExchangeSim, depth: int = 10) -> AsyncIterator[Client]:
    async with connect(sim.ws_url(Venue.KRAKEN, PATH), max_size=None) as ws:
        yield Client(ws, KrakenAdapter(depth=depth))


class TestBooks:
    async def test_snapshot_and_updates_rebuild_the_sim_books_with_matching_checksums(self) -> None:
        async with kraken_sim() as sim, client(sim, depth=10) as c:
            frames = c.adapter.subscribe_frames([BTC, ETH], ["book"])
            await c.send(frames)
            await c.until(lambda: len(c.book_messages) == 2)
            (conn,) = sim.open_connections(Venue.KRAKEN)
            assert conn.received == frames
            assert c.decoded[0] == Ignored("status")
            assert c.decoded.count(Ignored("subscribe")) == 2
            for message in c.book_messages:
                assert (message.kind, message.limit, message.has_checksum) == (
                    EventKind.SNAPSHOT,
                    10,
                    True,
                )
            for _ in range(300):
                sim.step(Venue.KRAKEN)
            await c.drain()
            updates = [m for m in c.book_messages if m.kind == EventKind.DELTA]
            assert len(updates) > 100  # changes outside the 10-level window send nothing
            for symbol in (BTC, ETH):
                rebuilt = c.books[symbol]
                assert (rebuilt.bids, rebuilt.asks) == sim_values(
                    sim.book(Venue.KRAKEN, symbol), 10
                )
                assert rebuilt.checked == len([m for m in c.book_messages if m.symbol == symbol])
                assert (rebuilt.mismatches, rebuilt.shallow) == (0, 0)

    async def test_a_deep_subscription_carries_the_whole_synthetic_book(self) -> None:
        async with kraken_sim() as sim, client(sim, depth=100) as c:
            await c.send(c.adapter.subscribe_frames([BTC], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            assert c.book_messages[0].limit == 100
            for _ in range(100):
                sim.step(Venue.KRAKEN)
            await c.drain()
            rebuilt = c.books[BTC]
            assert (rebuilt.bids, rebuilt.asks) == sim_values(sim.book(Venue.KRAKEN, BTC), 100)
            assert rebuilt.mismatches == 0 and rebuilt.checked == len(c.book_messages)

    async def test_a_deletion_inside_the_window_brings_in_the_next_level(self) -> None:
        async with kraken_sim() as sim, client(sim, depth=10) as c:
            await c.send(c.adapter.subscribe_frames([BTC], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            book = sim.book(Venue.KRAKEN, BTC)
            best = book.best_bid()
            assert best is not None
            entering = book.top_bids(11)[10]
            sim.update(Venue.KRAKEN, BTC, [Change("bid", best, 0)])
            await c.until(lambda: len(c.book_messages) == 2)
            update = c.book_messages[1]
            assert json.loads(bytes(update.bids), parse_float=Decimal) == [
                [Decimal(book.px(entering[0])), Decimal(book.qty(entering[1]))],
                [Decimal(book.px(best)), 0],
            ]
            assert bytes(update.asks) == b"[]"
            assert c.books[BTC].mismatches == 0 and len(c.books[BTC].bids) == 10

    async def test_a_better_level_pushes_the_last_one_out_without_a_delete(self) -> None:
        async with kraken_sim() as sim, client(sim, depth=10) as c:
            await c.send(c.adapter.subscribe_frames([BTC], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            book = sim.book(Venue.KRAKEN, BTC)
            best_bid, best_ask = book.best_bid(), book.best_ask()
            assert best_bid is not None and best_ask is not None
            inside = best_bid + book.tick_units
            assert inside < best_ask
            sim.update(Venue.KRAKEN, BTC, [Change("bid", inside, 12345)])
            await c.until(lambda: len(c.book_messages) == 2)
            assert len(json.loads(bytes(c.book_messages[1].bids))) == 1
            rebuilt = c.books[BTC]
            assert (rebuilt.bids, rebuilt.asks) == sim_values(book, 10)
            assert rebuilt.mismatches == 0


class TestFaults:
    async def test_a_corrupt_checksum_is_caught_once(self) -> None:
        async with kraken_sim() as sim, client(sim) as c:
            await c.send(c.adapter.subscribe_frames([BTC], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            book = sim.book(Venue.KRAKEN, BTC)
            best = book.best_ask()
            assert best is not None
            sim.corrupt_checksum(Venue.KRAKEN, BTC)
            sim.update(Venue.KRAKEN, BTC, [Change("ask", best, 777)])
            sim.update(Venue.KRAKEN, BTC, [Change("ask", best, 778)])
            await c.until(lambda: len(c.book_messages) == 3)
            assert (c.books[BTC].checked, c.books[BTC].mismatches) == (3, 1)

    async def test_a_lost_update_makes_the_next_checksum_fail(self) -> None:
        async with kraken_sim() as sim, client(sim) as c:
            await c.send(c.adapter.subscribe_frames([BTC], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            book = sim.book(Venue.KRAKEN, BTC)
            best = book.best_bid()
            assert best is not None
            sim.lose_next(Venue.KRAKEN, BTC)
            sim.update(Venue.KRAKEN, BTC, [Change("bid", best, 4242)])
            sim.update(Venue.KRAKEN, BTC, [Change("ask", book.best_ask() or 0, 4343)])
            await c.until(lambda: len(c.book_messages) == 2)
            assert c.books[BTC].mismatches == 1


class TestControl:
    async def test_refusals_are_venue_messages(self) -> None:
        async with kraken_sim() as sim, client(sim) as c:
            await c.send(c.adapter.subscribe_frames(["NOPE/USD"], ["book"]))
            await c.send(
                [
                    '{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":7},"req_id":5}'
                ]
            )
            await c.until(lambda: len(c.of_venue_messages()) == 2)
            first, second = c.of_venue_messages()
            assert first == VenueMessage(
                "subscribe", "Currency pair not supported NOPE/USD", symbol="NOPE/USD"
            )
            assert second.code == "subscribe" and "depth" in second.message

    async def test_heartbeats_follow_a_subscription_and_pings_are_answered(self) -> None:
        async with kraken_sim(heartbeat_s=0.05) as sim, client(sim) as c:
            keepalive = c.adapter.keepalive_frame()
            assert keepalive is not None
            await c.send([keepalive])
            await c.until(lambda: c.pongs == 1)
            assert Ignored("heartbeat") not in c.decoded  # none before a subscription
            await c.send(c.adapter.subscribe_frames([ETH], ["book"]))
            await c.until(lambda: c.decoded.count(Ignored("heartbeat")) >= 2)
            await c.send(c.adapter.unsubscribe_frames([ETH], ["book"]))
            await c.until(lambda: Ignored("unsubscribe") in c.decoded)
            (conn,) = sim.open_connections(Venue.KRAKEN)
            assert ETH not in conn.subscriptions


class TestRest:
    async def test_asset_pairs_describe_the_books_as_the_adapter_reads_them(self) -> None:
        async with kraken_sim() as sim:
            adapter = KrakenAdapter()
            (request,) = adapter.instruments_requests(sim.rest_url(Venue.KRAKEN))
            async with aiohttp.ClientSession() as session, session.get(request.url) as response:
                assert response.status == 200
                text = await response.text()
            parsed = {i.symbol: i for i in adapter.parse_instruments(request.key, text)}
            assert parsed == {s: REGISTRY.get(Venue.KRAKEN, s) for s in (BTC, ETH)}
            assert '"wsname":"XBT/USD"' in text  # AssetPairs keeps the v1 names
