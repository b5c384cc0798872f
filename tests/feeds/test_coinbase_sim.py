"""The local Coinbase (feeds/sim/coinbase.py) spoken to by a plain websockets client that
subscribes exactly as the adapter does; every frame must decode with feeds.coinbase and pass
the per-connection sequence check, and the books rebuilt from them must equal the sim's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from feeds.coinbase import ADAPTER, HEARTBEATS_SUBSCRIBE, CoinbaseSequence, timestamp_ns
from feeds.contract import BookMessage, InstrumentsUpdate, VenueMessage
from feeds.sim.base import ExchangeSim, SimBook
from feeds.sim.coinbase import CoinbaseProtocol, rfc3339
from monitor.domain import EventKind, Ignored, Venue
from monitor.instruments import InstrumentRegistry

pytestmark = pytest.mark.integration

MIDS = {"BTC-USD": "60000", "ETH-USD": "3000", "DOGE-USD": "0.1"}
Side = dict[Decimal, Decimal]


class Client:
    """Decodes every frame, runs the connection's sequence check, rebuilds the books."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sequence = ADAPTER.connection_sequence()
        self.sequence_ok: list[bool] = []
        self.books: dict[str, tuple[Side, Side]] = {}
        self.heartbeats = 0

    async def collect(
        self, until: Callable[[object], bool], timeout_s: float = 5.0
    ) -> list[object]:
        out: list[object] = []
        async with asyncio.timeout(timeout_s):
            while True:
                data = await self.ws.recv()
                self.sequence_ok.append(self.sequence.check(data))
                decoded = ADAPTER.decode(data, 0)
                for item in decoded if isinstance(decoded, list) else [decoded]:
                    if isinstance(item, BookMessage):
                        self.apply(item)
                    if item == Ignored("heartbeats"):
                        self.heartbeats += 1
                    out.append(item)
                    if until(item):
                        return out

    async def subscribed(self, answers: int = 2) -> list[object]:
        """Frames up to the ``answers``-th ``subscriptions`` message (level2 + heartbeats)."""
        seen = [0]

        def done(decoded: object) -> bool:
            seen[0] += decoded == Ignored("subscriptions")
            return seen[0] == answers

        return await self.collect(done)

    async def barrier(self) -> list[object]:
        """Subscribe to heartbeats again: the answer comes after every frame queued before."""
        await self.ws.send(HEARTBEATS_SUBSCRIBE)
        return (await self.collect(lambda d: d == Ignored("subscriptions")))[:-1]

    def apply(self, message: BookMessage) -> None:
        if message.kind == EventKind.SNAPSHOT:
            self.books[message.symbol] = ({}, {})
        for side, raw in zip(self.books[message.symbol], (message.bids, message.asks), strict=True):
            for px, qty in json.loads(bytes(raw)):
                if Decimal(qty) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = Decimal(qty)


def whole(book: SimBook) -> tuple[Side, Side]:
    def side(levels: list[tuple[int, int]]) -> Side:
        return {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in levels}

    return side(book.top_bids()), side(book.top_asks())


async def started(**options: float | int | None) -> ExchangeSim:
    registry = InstrumentRegistry.load_cached([Venue.COINBASE])
    sim = ExchangeSim([CoinbaseProtocol(**options)], heartbeat_s=0.05)  # type: ignore[arg-type]
    for symbol, mid in MIDS.items():
        instrument = registry.get(Venue.COINBASE, symbol)
        assert instrument is not None
        sim.add_instrument(instrument, mid=mid, levels=80)
    await sim.start()
    return sim


async def test_books_rebuilt_from_the_stream_equal_the_sim() -> None:
    sim = await started()
    try:
        async with connect(sim.ws_url(Venue.COINBASE, "/")) as ws:
            client = Client(ws)
            products = ["BTC-USD", "ETH-USD", "DOGE-USD"]
            for text in ADAPTER.subscribe_frames(products, ["level2"]):
                await ws.send(text)
            first = await client.subscribed()
            assert first[0] == first[-1] == Ignored("subscriptions")
            snapshots = [d for d in first if isinstance(d, BookMessage)]
            assert [(d.symbol, d.kind, d.limit) for d in snapshots] == [
                (p, EventKind.SNAPSHOT, 0) for p in products
            ]
            for product in products:
                assert client.books[product] == whole(sim.book(Venue.COINBASE, product))
            for _ in range(50):
                sim.step(Venue.COINBASE, n_changes=4)
            updates = [d for d in await client.barrier() if isinstance(d, BookMessage)]
            assert len(updates) >= 50 and all(d.kind == EventKind.DELTA for d in updates)
            for product in products:
                assert client.books[product] == whole(sim.book(Venue.COINBASE, product))
            # heartbeats flow once subscribed (one per sim heartbeat period)
            await client.collect(lambda d: d == Ignored("heartbeats"))
            assert client.heartbeats >= 1
            assert all(client.sequence_ok)
    finally:
        await sim.close()


async def test_a_lost_message_fails_the_connection_sequence_check() -> None:
    sim = await started()
    try:
        async with connect(sim.ws_url(Venue.COINBASE, "/")) as ws:
            client = Client(ws)
            for text in ADAPTER.subscribe_frames(["BTC-USD"], ["level2"]):
                await ws.send(text)
            await client.subscribed()
            assert all(client.sequence_ok)
            sim.lose_next(Venue.COINBASE, "BTC-USD")
            sim.step(Venue.COINBASE)
            sim.step(Venue.COINBASE)
            await client.barrier()
            assert client.sequence_ok.count(False) == 1
            # the book itself is off now: the one update that arrived is not enough
            assert client.books["BTC-USD"] != whole(sim.book(Venue.COINBASE, "BTC-USD"))
    finally:
        await sim.close()


async def test_errors_come_as_venue_messages() -> None:
    sim = await started(max_l2_products=2)
    try:
        async with connect(sim.ws_url(Venue.COINBASE, "/")) as ws:
            client = Client(ws)
            (text, _) = ADAPTER.subscribe_frames(["NOPE-USD"], ["level2"])
            await ws.send(text)
            (error,) = await client.collect(lambda d: isinstance(d, VenueMessage))
            assert isinstance(error, VenueMessage) and error.symbol == "NOPE-USD"
            (text, _) = ADAPTER.subscribe_frames(list(MIDS), ["level2"])
            await ws.send(text)
            (error,) = await client.collect(lambda d: isinstance(d, VenueMessage))
            assert isinstance(error, VenueMessage)
            assert error.message == "too many L2 streams requested in a single session"
            (text,) = ADAPTER.unsubscribe_frames(["BTC-USD"], ["level2"])
            await ws.send(text)
            assert await client.collect(lambda d: True) == [Ignored("subscriptions")]
    finally:
        await sim.close()


async def test_a_connection_that_never_subscribes_is_closed() -> None:
    sim = await started(subscribe_deadline_s=0.1)
    try:
        async with connect(sim.ws_url(Venue.COINBASE, "/")) as ws:
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    await ws.recv()
    finally:
        await sim.close()


async def test_products_endpoint_describes_the_sim_books() -> None:
    sim = await started()
    try:
        (request,) = ADAPTER.instruments_requests(sim.rest_url(Venue.COINBASE))
        async with aiohttp.ClientSession() as http, http.get(request.url) as response:
            body = await response.text()
        assert isinstance(ADAPTER.decode_http(request.key, body, 0), InstrumentsUpdate)
        registry = InstrumentRegistry.load_cached([Venue.COINBASE])
        parsed = {i.symbol: i for i in ADAPTER.parse_instruments(request.key, body)}
        assert set(parsed) == set(MIDS)
        for symbol, instrument in parsed.items():
            known = registry.get(Venue.COINBASE, symbol)
            assert known is not None
            assert (instrument.base, instrument.quote, instrument.tick, instrument.lot) == (
                known.base,
                known.quote,
                known.tick,
                known.lot,
            )
    finally:
        await sim.close()


def test_sim_timestamps_read_back_exactly() -> None:
    ns = 1_784_021_400_123_456_789
    assert rfc3339(ns) == "2026-07-14T09:30:00.123456789Z"
    assert timestamp_ns(rfc3339(ns)) == ns
    check = CoinbaseSequence()
    assert check.check('{"channel":"heartbeats","sequence_num":0,"events":[]}')
