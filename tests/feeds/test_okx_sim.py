"""The local OKX (feeds/sim/okx.py) speaks what the OKX adapter reads.

A plain websockets client subscribes exactly as ``OKX.subscribe_frames`` says; every frame
it gets must decode with the adapter, and the books rebuilt from the decoded frames (Decimal
values, OKX's own strings for the checksum) must equal the sim's books.
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
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from feeds.contract import BookMessage, InstrumentsUpdate, VenueMessage
from feeds.okx import OKX, checksum
from feeds.sim.base import ExchangeSim, SimBook
from feeds.sim.okx import OkxProtocol
from monitor.domain import EventKind, Ignored, InstrumentKind, MarkPriceEvent, Venue
from monitor.errors import ParseError

SPOT, LINEAR, INVERSE = "BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP"
SYMBOLS = [SPOT, LINEAR, INVERSE]
PATH = "/ws/v5/public"


@asynccontextmanager
async def okx_sim(
    protocol: OkxProtocol | None = None, **options: Any
) -> AsyncIterator[tuple[ExchangeSim, OkxProtocol]]:
    protocol = protocol or OkxProtocol()
    async with ExchangeSim([protocol], **options) as sim:
        sim.add_book(Venue.OKX, SPOT, mid="115000", tick="0.1", qty_decimals=8, levels=40)
        swap = sim.add_book(
            Venue.OKX, LINEAR, mid="115000", tick="0.1", qty_decimals=2, derivative=True
        )
        swap.extra["ct_val"] = "0.01"
        inverse = sim.add_book(
            Venue.OKX, INVERSE, mid="115000", tick="0.1", qty_decimals=1, derivative=True
        )
        inverse.extra["ct_val"] = "100"
        yield sim, protocol


@dataclass
class Book:
    """A book rebuilt from decoded frames: Decimal price -> the (price, size) strings."""

    bids: dict[Decimal, tuple[str, str]] = field(default_factory=dict)
    asks: dict[Decimal, tuple[str, str]] = field(default_factory=dict)
    last_seq: int = -1
    gaps: int = 0
    checked: int = 0
    mismatches: int = 0
    most_levels: int = 0  # the most levels a side held after any message

    def apply(self, message: BookMessage) -> None:
        if message.kind == EventKind.SNAPSHOT:
            self.bids.clear()
            self.asks.clear()
        elif message.prev_seq != self.last_seq:
            self.gaps += 1
        self.last_seq = message.last_seq
        for side, raw in ((self.bids, message.bids), (self.asks, message.asks)):
            for px, sz, *_ in json.loads(bytes(raw)):
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)
        self.most_levels = max(self.most_levels, len(self.bids), len(self.asks))
        if message.has_checksum:
            self.checked += 1
            if checksum(*self.top(25)) != message.checksum:
                self.mismatches += 1

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return (
            [self.bids[p] for p in sorted(self.bids, reverse=True)[:n]],
            [self.asks[p] for p in sorted(self.asks)[:n]],
        )

    def values(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        return (
            {p: Decimal(s) for p, (_, s) in self.bids.items()},
            {p: Decimal(s) for p, (_, s) in self.asks.items()},
        )


def sim_values(book: SimBook, depth: int) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in book.top_bids(depth)},
        {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in book.top_asks(depth)},
    )


@dataclass
class Client:
    """A websockets client that decodes every frame with the OKX adapter."""

    ws: ClientConnection
    books: dict[str, Book] = field(default_factory=dict)
    decoded: list[Any] = field(default_factory=list)
    book_messages: list[BookMessage] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    async def send(self, frames: list[str]) -> None:
        for frame in frames:
            await self.ws.send(frame)

    async def receive_one(self) -> None:
        text = await self.ws.recv()
        assert isinstance(text, str)
        self.texts.append(text)
        decoded = OKX.decode(text, 0)
        for item in decoded if isinstance(decoded, list) else [decoded]:
            self.decoded.append(item)
            if isinstance(item, BookMessage):
                self.book_messages.append(item)
                self.books.setdefault(item.symbol, Book()).apply(item)

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self.receive_one()

    def of(self, kind: type) -> list[Any]:
        return [d for d in self.decoded if isinstance(d, kind)]


@asynccontextmanager
async def client(sim: ExchangeSim) -> AsyncIterator[Client]:
    async with connect(sim.ws_url(Venue.OKX, PATH), max_size=None) as ws:
        yield Client(ws)


def synced(c: Client, sim: ExchangeSim, symbols: list[str]) -> Callable[[], bool]:
    return lambda: all(
        s in c.books and c.books[s].last_seq == sim.book(Venue.OKX, s).seq for s in symbols
    )


class TestBooks:
    async def test_snapshot_and_updates_rebuild_the_sim_books_exactly(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            frames = OKX.subscribe_frames(SYMBOLS, ["books"])
            await c.send(frames)
            await c.until(lambda: len(c.book_messages) == 3)
            acks = [d for d in c.decoded if d == Ignored("subscribe")]
            assert len(acks) == 3
            (conn,) = sim.open_connections(Venue.OKX)
            assert conn.received == frames
            for message in c.book_messages:
                book = sim.book(Venue.OKX, message.symbol)
                assert message.kind == EventKind.SNAPSHOT
                assert (message.last_seq, message.prev_seq, message.limit) == (book.seq, -1, 400)
                assert (message.checksum, message.has_checksum) == (0, False)
            for _ in range(40):
                sim.step(Venue.OKX)
            await c.until(synced(c, sim, SYMBOLS))
            for symbol in SYMBOLS:
                rebuilt = c.books[symbol]
                assert rebuilt.values() == sim_values(sim.book(Venue.OKX, symbol), 400)
                assert rebuilt.gaps == 0 and rebuilt.checked == 0
            deltas = [m for m in c.book_messages if m.kind == EventKind.DELTA]
            assert len(deltas) == 120
            assert all(m.last_seq == m.prev_seq + 1 for m in deltas)

    async def test_real_checksums_match_on_every_frame_when_enabled(self) -> None:
        async with okx_sim(OkxProtocol(checksum=True)) as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames(SYMBOLS, ["books"]))
            await c.until(lambda: len(c.book_messages) == 3)
            for _ in range(30):
                sim.step(Venue.OKX)
            await c.until(synced(c, sim, SYMBOLS))
            for symbol in SYMBOLS:
                rebuilt = c.books[symbol]
                assert (rebuilt.checked, rebuilt.mismatches, rebuilt.gaps) == (31, 0, 0)
                assert rebuilt.values() == sim_values(sim.book(Venue.OKX, symbol), 400)
            sim.corrupt_checksum(Venue.OKX, SPOT)
            sim.step(Venue.OKX)
            await c.until(synced(c, sim, SYMBOLS))
            assert c.books[SPOT].mismatches == 1
            assert c.books[LINEAR].mismatches == 0

    async def test_corrupt_checksum_on_todays_feed_is_a_wrong_nonzero_checksum(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([SPOT], ["books"]))
            await c.until(lambda: len(c.book_messages) == 1)
            sim.corrupt_checksum(Venue.OKX, SPOT)
            sim.step(Venue.OKX)
            sim.step(Venue.OKX)
            await c.until(synced(c, sim, [SPOT]))
            corrupt, clean = c.book_messages[1:]
            assert corrupt.has_checksum and corrupt.checksum != 0
            assert not clean.has_checksum
            assert c.books[SPOT].mismatches == 1

    async def test_a_narrow_window_deletes_the_levels_that_leave_it(self) -> None:
        async with okx_sim(OkxProtocol(depth=10)) as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames(SYMBOLS, ["books"]))
            await c.until(lambda: len(c.book_messages) == 3)
            assert all(len(json.loads(bytes(m.bids))) == 10 for m in c.book_messages)
            for _ in range(60):
                sim.step(Venue.OKX, n_changes=4)
            await c.until(synced(c, sim, SYMBOLS))
            for symbol in SYMBOLS:
                assert c.books[symbol].values() == sim_values(sim.book(Venue.OKX, symbol), 10)
                assert c.books[symbol].most_levels == 10
            deletes = [
                level
                for m in c.book_messages[3:]
                for raw in (m.bids, m.asks)
                for level in json.loads(bytes(raw))
                if level[1] == "0"
            ]
            assert deletes  # levels pushed out of the window were deleted

    async def test_a_lost_update_breaks_the_chain(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([SPOT], ["books"]))
            await c.until(lambda: len(c.book_messages) == 1)
            sim.lose_next(Venue.OKX, SPOT)
            sim.step(Venue.OKX)
            sim.step(Venue.OKX)
            await c.until(synced(c, sim, [SPOT]))
            (delta,) = c.book_messages[1:]
            assert delta.prev_seq == c.book_messages[0].last_seq + 1  # the one never sent
            assert c.books[SPOT].gaps == 1

    async def test_unchanged_book_gets_the_empty_heartbeat_update(self) -> None:
        protocol = OkxProtocol(book_heartbeat_s=0.2)
        async with okx_sim(protocol, heartbeat_s=0.05) as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([SPOT], ["books"]))
            await c.until(lambda: len(c.book_messages) == 2)
            snapshot, heartbeat = c.book_messages
            assert heartbeat.kind == EventKind.DELTA
            assert heartbeat.last_seq == heartbeat.prev_seq == snapshot.last_seq
            assert (bytes(heartbeat.bids), bytes(heartbeat.asks)) == (b"[]", b"[]")
            assert c.books[SPOT].gaps == 0

    async def test_books5_sends_five_level_snapshots(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([LINEAR], ["books5"]))
            await c.until(lambda: len(c.book_messages) == 1)
            sim.step(Venue.OKX)
            await c.until(lambda: len(c.book_messages) == 2)
            assert all(
                (m.kind, m.limit, m.has_checksum) == (EventKind.SNAPSHOT, 5, False)
                for m in c.book_messages
            )
            assert c.books[LINEAR].values() == sim_values(sim.book(Venue.OKX, LINEAR), 5)

    async def test_todays_frames_and_the_2022_era_frames(self) -> None:
        protocol = OkxProtocol(seq_ids=False, checksum=True)
        async with okx_sim(protocol) as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([INVERSE], ["books"]))
            await c.until(lambda: len(c.book_messages) == 1)
            for _ in range(5):
                sim.step(Venue.OKX)
            await c.until(lambda: len(c.book_messages) == 6)
            assert all((m.last_seq, m.prev_seq) == (-1, -1) for m in c.book_messages)
            rebuilt = c.books[INVERSE]
            assert (rebuilt.checked, rebuilt.mismatches) == (6, 0)
            assert '"seqId"' not in c.texts[-1] and '"checksum":' in c.texts[-1]


class TestControl:
    async def test_ping_is_answered_with_pong(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            keepalive = OKX.keepalive_frame()
            assert keepalive is not None
            await c.send([keepalive])
            await c.until(lambda: bool(c.decoded))
            assert c.decoded == [Ignored("pong")]

    async def test_a_silent_client_is_disconnected_and_a_pinging_one_is_not(self) -> None:
        protocol = OkxProtocol(client_idle_timeout_s=0.3)
        async with okx_sim(protocol, heartbeat_s=0.05) as (sim, _):
            async with client(sim) as pinging:
                for _ in range(8):
                    await pinging.send(["ping"])
                    await pinging.until(lambda: bool(pinging.decoded))
                    pinging.decoded.clear()
                    await asyncio.sleep(0.1)
                assert len(sim.open_connections(Venue.OKX)) == 1
            async with client(sim) as silent:
                with pytest.raises(ConnectionClosed):
                    await silent.until(lambda: False, timeout_s=3.0)

    async def test_unknown_instrument_gets_the_venue_error_naming_it(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames(["NOPE-USDT"], ["books"]))
            await c.until(lambda: bool(c.decoded))
            (error,) = c.decoded
            assert isinstance(error, VenueMessage)
            assert (error.code, error.symbol, error.reconnect) == ("60018", "NOPE-USDT", False)

    async def test_malformed_request_and_unknown_op_get_errors(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(['{"op":', '{"op":"login","args":[]}'])
            await c.until(lambda: len(c.decoded) == 2)
            assert [(e.code, e.symbol) for e in c.of(VenueMessage)] == [
                ("60012", None),
                ("60019", None),
            ]

    async def test_subscribe_operations_beyond_the_hourly_limit_are_refused(self) -> None:
        async with okx_sim(OkxProtocol(ops_per_hour=2)) as (sim, _), client(sim) as c:
            frames = OKX.subscribe_frames([SPOT], ["books"])
            await c.send(frames * 3)
            await c.until(lambda: bool(c.of(VenueMessage)))
            (error,) = c.of(VenueMessage)
            assert error.code == "60014"
            assert len(c.book_messages) == 2

    async def test_unsubscribe_stops_the_book(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([SPOT, LINEAR], ["books"]))
            await c.until(lambda: len(c.book_messages) == 2)
            await c.send(OKX.unsubscribe_frames([SPOT], ["books"]))
            await c.until(lambda: Ignored("unsubscribe") in c.decoded)
            (conn,) = sim.open_connections(Venue.OKX)
            assert conn.subscriptions == {LINEAR}
            sim.step(Venue.OKX)
            await c.until(synced(c, sim, [LINEAR]))
            assert [m.symbol for m in c.book_messages[2:]] == [LINEAR]

    async def test_upgrade_notice_asks_the_client_to_reconnect(self) -> None:
        async with okx_sim() as (sim, protocol), client(sim) as c:
            await c.send(OKX.subscribe_frames([SPOT], ["books"]))
            await c.until(lambda: len(c.book_messages) == 1)
            assert protocol.notice(sim) == 1
            await c.until(lambda: bool(c.of(VenueMessage)))
            (notice,) = c.of(VenueMessage)
            assert (notice.code, notice.reconnect) == ("64008", True)

    async def test_a_truncated_frame_is_a_parse_error(self) -> None:
        async with okx_sim() as (sim, _), client(sim) as c:
            await c.send(OKX.subscribe_frames([SPOT], ["books"]))
            await c.until(lambda: len(c.book_messages) == 1)
            sim.truncate_next(Venue.OKX)
            sim.step(Venue.OKX)
            with pytest.raises(ParseError):
                await c.until(lambda: False, timeout_s=2.0)


class TestMarks:
    async def test_mark_funding_and_index_frames_for_the_derivatives(self) -> None:
        async with okx_sim(mark_s=0.05) as (sim, _), client(sim) as c:
            frames = OKX.subscribe_frames(SYMBOLS, ["mark-price,funding-rate,index-tickers"])
            topics = [a for f in frames for a in json.loads(f)["args"]]
            assert len(topics) == 6  # the spot pair has none
            await c.send(frames)

            def seen() -> set[tuple[str, str]]:
                out = set()
                for e in c.of(MarkPriceEvent):
                    for name in ("mark_price", "index_price", "funding_rate"):
                        if getattr(e, name) == getattr(e, name):  # not NaN
                            out.add((e.symbol, name))
                return out

            want = {
                (LINEAR, "mark_price"),
                (INVERSE, "mark_price"),
                (LINEAR, "funding_rate"),
                (INVERSE, "funding_rate"),
                ("BTC-USDT", "index_price"),
                ("BTC-USD", "index_price"),
            }
            await c.until(lambda: seen() >= want)
            assert c.decoded.count(Ignored("subscribe")) == 6
            assert not c.book_messages  # mark channels bring no book
            linear = sim.book(Venue.OKX, LINEAR)
            marks = [e for e in c.of(MarkPriceEvent) if e.symbol == LINEAR]
            mark = next(e for e in marks if e.mark_price == e.mark_price)
            assert Decimal(repr(mark.mark_price)) == Decimal(linear.px(linear.mark_px))
            funding = next(e for e in marks if e.funding_rate == e.funding_rate)
            assert funding.funding_rate == linear.funding_rate
            assert funding.next_funding_ns > funding.ts_event_ns
            assert funding.next_funding_ns % (8 * 3600 * 10**9) == 0


class TestRest:
    async def test_instruments_endpoint_describes_the_sim_books(self) -> None:
        async with okx_sim() as (sim, _), aiohttp.ClientSession() as http:
            instruments = {}
            for request in OKX.instruments_requests(sim.rest_url(Venue.OKX)):
                async with http.get(request.url) as response:
                    text = await response.text()
                decoded = OKX.decode_http(request.key, text, 0)
                assert isinstance(decoded, InstrumentsUpdate)
                for inst in OKX.parse_instruments(decoded.url, decoded.text):
                    instruments[inst.symbol] = inst
            assert set(instruments) == set(SYMBOLS)
            spot, linear, inverse = (instruments[s] for s in SYMBOLS)
            assert (spot.kind, spot.tick, spot.lot, spot.contract_size) == (
                InstrumentKind.SPOT,
                "0.1",
                "0.00000001",
                1.0,
            )
            assert (linear.kind, linear.lot, linear.contract_size, linear.inverse) == (
                InstrumentKind.PERP,
                "0.01",
                0.01,
                False,
            )
            assert (inverse.base, inverse.quote, inverse.contract_size, inverse.inverse) == (
                "BTC",
                "USD",
                100.0,
                True,
            )
            url = sim.rest_url(Venue.OKX) + "/api/v5/public/instruments"
            async with http.get(url) as response:
                text = await response.text()
                assert response.status == 400
            assert OKX.decode_http(url, text, 0) == VenueMessage(
                "50014", "Parameter instType can not be empty."
            )
