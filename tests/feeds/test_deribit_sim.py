"""The local Deribit (feeds/sim/deribit.py) speaks what the Deribit adapter reads.

A plain websockets client sends ``DeribitAdapter.open_frames`` and ``subscribe_frames``;
every frame must decode with the adapter, the change_id chain must hold, the book rebuilt
from the decoded frames must equal the sim's book, and test requests must be answered
with the adapter's Reply or the connection is closed.
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

from feeds.contract import BookMessage, Reply, VenueMessage
from feeds.deribit import FUTURES
from feeds.sim.base import Change, ExchangeSim, SimBook
from feeds.sim.deribit import DeribitProtocol
from monitor.domain import EventKind, Ignored, Instrument, MarkPriceEvent, Venue
from monitor.instruments import InstrumentRegistry

INVERSE, LINEAR = "BTC-PERPETUAL", "ETH_USDC-PERPETUAL"
SYMBOLS = [INVERSE, LINEAR]
PATH = "/ws/api/v2"
REGISTRY = InstrumentRegistry.load_cached([Venue.DERIBIT])
RESULT = Ignored("rpc result")


@asynccontextmanager
async def deribit_sim(
    protocol: DeribitProtocol | None = None, **options: Any
) -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim([protocol or DeribitProtocol()], **options) as sim:
        for symbol, mid in ((INVERSE, "60000"), (LINEAR, "3000")):
            instrument = REGISTRY.get(Venue.DERIBIT, symbol)
            assert instrument is not None
            sim.add_instrument(instrument, mid=mid, levels=40)
        yield sim


@dataclass
class Book:
    """A book rebuilt from decoded messages, checking the chain and the action strings."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_seq: int = -1
    gaps: int = 0
    wrong_actions: int = 0

    def apply(self, message: BookMessage) -> None:
        if message.kind == EventKind.SNAPSHOT:
            self.bids.clear()
            self.asks.clear()
        elif message.prev_seq != self.last_seq:
            self.gaps += 1
        self.last_seq = message.last_seq
        for side, raw in ((self.bids, message.bids), (self.asks, message.asks)):
            for action, px, amount in json.loads(
                bytes(raw), parse_float=Decimal, parse_int=Decimal
            ):
                expected = "delete" if amount == 0 else ("change" if px in side else "new")
                if message.kind == EventKind.SNAPSHOT:
                    expected = "new"
                self.wrong_actions += action != expected
                if amount == 0:
                    side.pop(px, None)
                else:
                    side[px] = amount


def sim_values(book: SimBook) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in book.bids.items()},
        {Decimal(book.px(p)): Decimal(book.qty(q)) for p, q in book.asks.items()},
    )


@dataclass
class Client:
    """A websockets client that decodes every frame with the Deribit adapter."""

    ws: ClientConnection
    answer_tests: bool = True
    decoded: list[Any] = field(default_factory=list)
    books: dict[str, Book] = field(default_factory=dict)
    book_messages: list[BookMessage] = field(default_factory=list)
    tests_answered: int = 0

    async def send(self, frames: list[str]) -> None:
        for frame in frames:
            await self.ws.send(frame)

    async def receive_one(self) -> None:
        text = await self.ws.recv()
        assert isinstance(text, str)
        item = FUTURES.decode(text, 5)
        self.decoded.append(item)
        if isinstance(item, Reply) and self.answer_tests:
            await self.ws.send(item.text)
            self.tests_answered += 1
        if isinstance(item, BookMessage):
            self.book_messages.append(item)
            self.books.setdefault(item.symbol, Book()).apply(item)

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self.receive_one()

    async def drain(self) -> None:
        """Everything queued before now (an RPC answer comes after it)."""
        expected = self.decoded.count(RESULT) + 1
        await self.send(['{"jsonrpc":"2.0","id":99,"method":"public/test","params":{}}'])
        await self.until(lambda: self.decoded.count(RESULT) >= expected)

    def of(self, kind: type) -> list[Any]:
        return [d for d in self.decoded if isinstance(d, kind)]


@asynccontextmanager
async def client(sim: ExchangeSim, *, answer_tests: bool = True) -> AsyncIterator[Client]:
    async with connect(sim.ws_url(Venue.DERIBIT, PATH), max_size=None) as ws:
        yield Client(ws, answer_tests)


class TestBooks:
    async def test_snapshot_and_chained_changes_rebuild_the_sim_books(self) -> None:
        async with deribit_sim() as sim, client(sim) as c:
            frames = FUTURES.open_frames() + FUTURES.subscribe_frames(SYMBOLS, ["book"])
            await c.send(frames)
            await c.until(lambda: len(c.book_messages) == 2)
            (conn,) = sim.open_connections(Venue.DERIBIT)
            assert conn.received == frames
            assert c.decoded[:2] == [RESULT, RESULT]  # set_heartbeat and subscribe answers
            for message in c.book_messages:
                book = sim.book(Venue.DERIBIT, message.symbol)
                assert (message.kind, message.last_seq, message.prev_seq) == (
                    EventKind.SNAPSHOT,
                    book.seq,
                    -1,
                )
            for _ in range(200):
                sim.step(Venue.DERIBIT)
            await c.drain()
            changes = [m for m in c.book_messages if m.kind == EventKind.DELTA]
            assert len(changes) == 400
            assert all(m.last_seq == m.prev_seq + 1 for m in changes)
            for symbol in SYMBOLS:
                rebuilt = c.books[symbol]
                assert (rebuilt.bids, rebuilt.asks) == sim_values(sim.book(Venue.DERIBIT, symbol))
                assert (rebuilt.gaps, rebuilt.wrong_actions) == (0, 0)
                assert rebuilt.last_seq == sim.book(Venue.DERIBIT, symbol).seq

    async def test_a_lost_change_breaks_the_chain(self) -> None:
        async with deribit_sim() as sim, client(sim) as c:
            await c.send(FUTURES.subscribe_frames([INVERSE], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            sim.lose_next(Venue.DERIBIT, INVERSE)
            sim.step(Venue.DERIBIT)
            sim.step(Venue.DERIBIT)
            await c.until(lambda: len(c.book_messages) == 2)
            assert c.books[INVERSE].gaps == 1
            lost = c.book_messages[1]
            assert lost.prev_seq == c.book_messages[0].last_seq + 1

    async def test_a_deleted_level_is_sent_with_amount_zero(self) -> None:
        async with deribit_sim() as sim, client(sim) as c:
            await c.send(FUTURES.subscribe_frames([LINEAR], ["book"]))
            await c.until(lambda: len(c.book_messages) == 1)
            book = sim.book(Venue.DERIBIT, LINEAR)
            best = book.best_ask()
            assert best is not None
            sim.update(Venue.DERIBIT, LINEAR, [Change("ask", best, 0)])
            await c.until(lambda: len(c.book_messages) == 2)
            assert json.loads(bytes(c.book_messages[1].asks)) == [
                ["delete", float(book.px(best)), 0]
            ]

    async def test_unknown_instruments_are_left_out_of_the_result(self) -> None:
        async with deribit_sim() as sim, client(sim) as c:
            await c.send(
                [
                    '{"jsonrpc":"2.0","id":7,"method":"public/subscribe","params":{"channels":'
                    '["book.NOPE-PERPETUAL.100ms","book.BTC-PERPETUAL.raw"]}}'
                ]
            )
            await c.drain()
            assert not c.book_messages
            (conn,) = sim.open_connections(Venue.DERIBIT)
            assert conn.subscriptions == set()


class TestTickers:
    async def test_tickers_are_mark_price_events(self) -> None:
        async with deribit_sim(mark_s=0.05) as sim, client(sim) as c:
            await c.send(FUTURES.subscribe_frames(SYMBOLS, ["ticker"]))
            await c.until(lambda: {e.symbol for e in c.of(MarkPriceEvent)} == set(SYMBOLS))
            for event in c.of(MarkPriceEvent):
                book = sim.book(Venue.DERIBIT, event.symbol)
                assert event.funding_rate == book.funding_rate
                assert event.index_price < event.mark_price
                assert event.next_funding_ns == 0 and event.ts_recv_ns == 5
            assert not c.book_messages


class TestHeartbeat:
    async def test_test_requests_answered_keep_the_connection_and_silence_closes_it(self) -> None:
        protocol = DeribitProtocol(interval_scale=0.01)  # 30 s -> 0.3 s
        async with (
            deribit_sim(protocol, heartbeat_s=0.05) as sim,
            client(sim) as answering,
            client(sim, answer_tests=False) as silent,
        ):
            for c in (answering, silent):
                await c.send(FUTURES.open_frames())
            answering_conn, silent_conn = sim.open_connections(Venue.DERIBIT)
            reader = asyncio.ensure_future(answering.until(lambda: answering.tests_answered >= 4))
            try:
                await sim.wait_for(lambda: silent_conn.closed, timeout_s=5.0)
                await asyncio.wait_for(reader, timeout=5.0)
            finally:
                reader.cancel()
            assert not answering_conn.closed
            assert Ignored("heartbeat") in answering.decoded
            with pytest.raises(ConnectionClosed):
                await silent.until(lambda: False)
            assert len(silent.of(Reply)) == 1  # closed at the next interval, unanswered

    async def test_bad_requests_are_rpc_errors(self) -> None:
        async with deribit_sim() as sim, client(sim) as c:
            await c.send(
                [
                    '{"jsonrpc":"2.0","id":3,"method":"public/set_heartbeat","params":{"interval":5}}',
                    '{"jsonrpc":"2.0","id":4,"method":"public/nothing","params":{}}',
                    "not json",
                ]
            )
            await c.until(lambda: len(c.of(VenueMessage)) == 3)
            assert c.of(VenueMessage) == [
                VenueMessage("-32602", "Invalid params"),
                VenueMessage("-32601", "Method not found"),
                VenueMessage("-32700", "Parse error"),
            ]


class TestRest:
    async def test_get_instruments_describes_the_books_as_the_adapter_reads_them(self) -> None:
        async with deribit_sim() as sim, aiohttp.ClientSession() as session:
            parsed: dict[str, Instrument] = {}
            for request in FUTURES.instruments_requests(sim.rest_url(Venue.DERIBIT)):
                async with session.get(request.url) as response:
                    assert response.status == 200
                    text = await response.text()
                parsed.update((i.symbol, i) for i in FUTURES.parse_instruments(request.key, text))
            assert parsed == {s: REGISTRY.get(Venue.DERIBIT, s) for s in SYMBOLS}
            assert parsed[INVERSE].inverse and not parsed[LINEAR].inverse
