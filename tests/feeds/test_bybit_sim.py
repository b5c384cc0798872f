"""The local Bybit (feeds/sim/bybit.py) spoken to by a plain websockets client that subscribes
exactly as the adapter does; every frame must decode with feeds.bybit, and the books rebuilt
from them must equal the sim's books."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from decimal import Decimal

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from feeds.bybit import LINEAR, SPOT, BybitAdapter
from feeds.contract import BookMessage, InstrumentsUpdate, VenueMessage
from feeds.sim.base import Change, ExchangeSim, SimBook
from feeds.sim.bybit import BybitProtocol
from monitor.domain import EventKind, Ignored, MarkPriceEvent, Venue
from monitor.instruments import InstrumentRegistry

pytestmark = pytest.mark.integration

MIDS = {"BTCUSDT": "60000", "ETHUSDT": "3000", "BTC-25SEP26": "60500"}
Side = dict[Decimal, Decimal]


class Rebuilt:
    """Books rebuilt from decoded frames, exactly (Decimal), and the ``u`` seen per symbol."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[Side, Side]] = {}
        self.last_u: dict[str, int] = {}
        self.gaps: list[tuple[str, int, int]] = []

    def apply(self, message: BookMessage) -> None:
        if message.kind == EventKind.SNAPSHOT:
            self.books[message.symbol] = ({}, {})
        else:
            last = self.last_u[message.symbol]
            if message.first_seq != last + 1:
                self.gaps.append((message.symbol, last, message.first_seq))
        self.last_u[message.symbol] = message.last_seq
        for side, raw in zip(self.books[message.symbol], (message.bids, message.asks), strict=True):
            for px, qty in json.loads(bytes(raw)):
                if Decimal(qty) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = Decimal(qty)


def window(book: SimBook, depth: int) -> tuple[Side, Side]:
    def side(levels: list[tuple[int, int]]) -> Side:
        return {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in levels}

    return side(book.top_bids(depth)), side(book.top_asks(depth))


async def collect(
    ws: ClientConnection,
    adapter: BybitAdapter,
    until: Callable[[object], bool],
    timeout_s: float = 5.0,
) -> list[object]:
    """Decoded frames as they come, up to and including the first for which ``until`` holds."""
    out: list[object] = []
    async with asyncio.timeout(timeout_s):
        while True:
            decoded = adapter.decode(await ws.recv(), 0)
            out.append(decoded)
            if until(decoded):
                return out


async def barrier(ws: ClientConnection, adapter: BybitAdapter, rebuilt: Rebuilt) -> list[object]:
    """Ping, and apply every frame that arrives before the pong (the sim queues in order)."""
    keepalive = adapter.keepalive_frame()
    assert keepalive is not None
    await ws.send(keepalive)
    seen = await collect(ws, adapter, lambda d: d == Ignored("pong"))
    for decoded in seen:
        if isinstance(decoded, BookMessage):
            rebuilt.apply(decoded)
    return seen[:-1]


@pytest.fixture
def registry() -> InstrumentRegistry:
    return InstrumentRegistry.load_cached([Venue.BYBIT, Venue.BYBIT_LINEAR])


async def started(registry: InstrumentRegistry) -> tuple[ExchangeSim, BybitProtocol]:
    linear = BybitProtocol(Venue.BYBIT_LINEAR)
    # mark frames are sent by the tests (mark_frames, as the sim's timer would): no timing
    sim = ExchangeSim([BybitProtocol(Venue.BYBIT), linear], heartbeat_s=0.05, mark_s=3600)
    for venue, symbols in (
        (Venue.BYBIT, ["BTCUSDT", "ETHUSDT"]),
        (Venue.BYBIT_LINEAR, ["BTCUSDT", "BTC-25SEP26"]),
    ):
        for symbol in symbols:
            instrument = registry.get(venue, symbol)
            assert instrument is not None
            sim.add_instrument(instrument, mid=MIDS[symbol], levels=60)
    await sim.start()
    return sim, linear


async def test_spot_books_rebuilt_from_the_stream_equal_the_sim(
    registry: InstrumentRegistry,
) -> None:
    sim, _ = await started(registry)
    try:
        async with connect(sim.ws_url(Venue.BYBIT, "/v5/public/spot")) as ws:
            for text in SPOT.subscribe_frames(["BTCUSDT", "ETHUSDT"], ["orderbook.50"]):
                await ws.send(text)
            rebuilt = Rebuilt()
            first = await barrier(ws, SPOT, rebuilt)
            assert first[0] == Ignored("ack subscribe")
            snapshots = [d for d in first if isinstance(d, BookMessage)]
            assert [(d.symbol, d.kind, d.limit) for d in snapshots] == [
                ("BTCUSDT", EventKind.SNAPSHOT, 50),
                ("ETHUSDT", EventKind.SNAPSHOT, 50),
            ]
            for symbol in ("BTCUSDT", "ETHUSDT"):
                assert rebuilt.books[symbol] == window(sim.book(Venue.BYBIT, symbol), 50)
            for _ in range(40):
                sim.step(Venue.BYBIT, n_changes=4)
            deltas = [d for d in await barrier(ws, SPOT, rebuilt) if isinstance(d, BookMessage)]
            assert deltas and all(d.kind == EventKind.DELTA for d in deltas)
            assert rebuilt.gaps == []  # u is +1 per message of a topic
            for symbol in ("BTCUSDT", "ETHUSDT"):
                assert rebuilt.books[symbol] == window(sim.book(Venue.BYBIT, symbol), 50)
    finally:
        await sim.close()


async def test_linear_books_and_tickers(registry: InstrumentRegistry) -> None:
    sim, linear = await started(registry)
    try:
        async with connect(sim.ws_url(Venue.BYBIT_LINEAR, "/v5/public/linear")) as ws:
            symbols = ["BTCUSDT", "BTC-25SEP26"]
            for text in LINEAR.subscribe_frames(symbols, ["orderbook.50", "tickers"]):
                await ws.send(text)
            rebuilt = Rebuilt()
            first = await barrier(ws, LINEAR, rebuilt)
            marks = {d.symbol: d for d in first if isinstance(d, MarkPriceEvent)}
            perp, future = marks["BTCUSDT"], marks["BTC-25SEP26"]
            assert perp.mark_price > 0 and perp.index_price > 0
            assert perp.funding_rate == pytest.approx(0.0001) and perp.next_funding_ns > 0
            assert math.isnan(future.funding_rate) and future.next_funding_ns == 0
            for _ in range(30):
                sim.step(Venue.BYBIT_LINEAR, n_changes=4)
            await barrier(ws, LINEAR, rebuilt)
            assert rebuilt.gaps == []
            for symbol in symbols:
                assert rebuilt.books[symbol] == window(sim.book(Venue.BYBIT_LINEAR, symbol), 50)
            # ticker deltas carry only what changed: the rest is NaN (unchanged)
            book = sim.book(Venue.BYBIT_LINEAR, "BTCUSDT")
            (conn,) = sim.open_connections(Venue.BYBIT_LINEAR)
            for text in linear.mark_frames(conn, book):  # the mark moved with the steps
                conn.send(text)
            moved = [d for d in await barrier(ws, LINEAR, rebuilt) if isinstance(d, MarkPriceEvent)]
            for event in moved:
                assert event.mark_price == float(book.px(book.mark_px, fixed=True))
                assert math.isnan(event.funding_rate)
            book.funding_rate = 0.0002
            for text in linear.mark_frames(conn, book):
                conn.send(text)
            (funding,) = await barrier(ws, LINEAR, rebuilt)
            assert isinstance(funding, MarkPriceEvent) and funding.symbol == "BTCUSDT"
            assert funding.funding_rate == 0.0002
            assert math.isnan(funding.mark_price) and math.isnan(funding.index_price)
            assert funding.next_funding_ns == 0
    finally:
        await sim.close()


async def test_restart_with_u_1_overwrites_and_deltas_go_on_from_2(
    registry: InstrumentRegistry,
) -> None:
    sim, linear = await started(registry)
    try:
        async with connect(sim.ws_url(Venue.BYBIT_LINEAR, "/v5/public/linear")) as ws:
            for text in LINEAR.subscribe_frames(["BTCUSDT"], ["orderbook.50"]):
                await ws.send(text)
            rebuilt = Rebuilt()
            await barrier(ws, LINEAR, rebuilt)
            assert linear.restart(sim, "BTCUSDT") == 1
            sim.step(Venue.BYBIT_LINEAR)
            seen = [d for d in await barrier(ws, LINEAR, rebuilt) if isinstance(d, BookMessage)]
            assert [(d.kind, d.first_seq) for d in seen][:2] == [
                (EventKind.SNAPSHOT, 1),
                (EventKind.DELTA, 2),
            ]
            assert rebuilt.gaps == []
            assert rebuilt.books["BTCUSDT"] == window(sim.book(Venue.BYBIT_LINEAR, "BTCUSDT"), 50)
    finally:
        await sim.close()


async def test_a_lost_message_shows_as_a_u_gap(registry: InstrumentRegistry) -> None:
    sim, _ = await started(registry)
    try:
        async with connect(sim.ws_url(Venue.BYBIT, "/v5/public/spot")) as ws:
            for text in SPOT.subscribe_frames(["BTCUSDT"], ["orderbook.50"]):
                await ws.send(text)
            rebuilt = Rebuilt()
            await barrier(ws, SPOT, rebuilt)
            book = sim.book(Venue.BYBIT, "BTCUSDT")
            best_bid = book.best_bid()
            assert best_bid is not None
            sim.lose_next(Venue.BYBIT, "BTCUSDT")
            sim.update(Venue.BYBIT, "BTCUSDT", [Change("bid", best_bid, 7)])
            sim.update(Venue.BYBIT, "BTCUSDT", [Change("bid", best_bid, 9)])
            await barrier(ws, SPOT, rebuilt)
            ((symbol, last, got),) = rebuilt.gaps
            assert symbol == "BTCUSDT" and got == last + 2
    finally:
        await sim.close()


async def test_refusals_pings_and_limits(registry: InstrumentRegistry) -> None:
    sim, _ = await started(registry)
    try:
        async with connect(sim.ws_url(Venue.BYBIT, "/v5/public/spot")) as ws:
            (text,) = SPOT.subscribe_frames(["NOPEUSDT"], ["orderbook.50"])
            await ws.send(text)
            refused = SPOT.decode(await asyncio.wait_for(ws.recv(), 5), 0)
            assert isinstance(refused, VenueMessage) and refused.symbol == "NOPEUSDT"
            too_many = [f"orderbook.50.S{i}USDT" for i in range(11)]
            await ws.send(json.dumps({"req_id": "x", "op": "subscribe", "args": too_many}))
            refused = SPOT.decode(await asyncio.wait_for(ws.recv(), 5), 0)
            assert refused == VenueMessage("subscribe_failed", "args size >10")
            for text in SPOT.subscribe_frames(["BTCUSDT"], ["orderbook.50"]) * 2:
                await ws.send(text)
            decoded = [SPOT.decode(await asyncio.wait_for(ws.recv(), 5), 0) for _ in range(3)]
            assert decoded[0] == Ignored("ack subscribe")
            assert isinstance(decoded[1], BookMessage)
            assert isinstance(decoded[2], VenueMessage) and "already" in decoded[2].message
            (text,) = SPOT.unsubscribe_frames(["BTCUSDT"], ["orderbook.50"])
            await ws.send(text)
            assert SPOT.decode(await asyncio.wait_for(ws.recv(), 5), 0) == Ignored(
                "ack unsubscribe"
            )
            sim.step(Venue.BYBIT)
            assert await barrier(ws, SPOT, Rebuilt()) == []  # nothing after unsubscribing
    finally:
        await sim.close()


@pytest.mark.parametrize(("adapter", "venue"), [(SPOT, Venue.BYBIT), (LINEAR, Venue.BYBIT_LINEAR)])
async def test_instruments_info_describes_the_sim_books(
    registry: InstrumentRegistry, adapter: BybitAdapter, venue: Venue
) -> None:
    sim, _ = await started(registry)
    try:
        (request,) = adapter.instruments_requests(sim.rest_url(venue))
        async with aiohttp.ClientSession() as http, http.get(request.url) as response:
            body = await response.text()
        assert isinstance(adapter.decode_http(request.key, body, 0), InstrumentsUpdate)
        parsed = {i.symbol: i for i in adapter.parse_instruments(request.key, body)}
        assert set(parsed) == {s for v, s in sim.books if v == venue}
        for symbol, instrument in parsed.items():
            known = registry.get(venue, symbol)
            assert known is not None
            assert (instrument.base, instrument.quote, instrument.kind) == (
                known.base,
                known.quote,
                known.kind,
            )
            assert (instrument.tick, instrument.lot) == (known.tick, known.lot)
    finally:
        await sim.close()
