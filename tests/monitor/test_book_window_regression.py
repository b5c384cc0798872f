"""Depth-window feeds through the pipeline, checked against the venue's own rule.

Kraken (book depth 10/100), Bybit (orderbook.50) and OKX (books, 400 levels) keep a subscriber's top-N window: the
venue applies a whole change to its book, then truncates the book to the window, and
sends what changed inside it (Kraken: no message for a level pushed out; Bybit and OKX: a
"0" for it). A message that inserts a level at the top of a full side *and* deletes one inside
the window leaves the window full: the level at the bottom stays. liqmon used to apply
the insert first, cut the bottom level for room, then apply the delete, and so held one
level less than the venue; Kraken's checksum failed as soon as that hole reached the top
10 (at once at depth 10, after a fast fall at depth 100), OKX's when it reached the top 25.

The frames below are written in each venue's wire format; the checksums are CRC32s of the
venue's window by the venue's rule (``feeds.kraken.checksum``, ``feeds.okx.checksum``). No expected book
is written by hand: :class:`VenueBook` is the venue, and liqmon must hold its window.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from feeds.bybit import SPOT as BYBIT_SPOT
from feeds.kraken import KrakenAdapter, checksum
from feeds.okx import OKX, okx_number
from feeds.okx import checksum as okx_checksum
from monitor.domain import Instrument, Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline

Level = tuple[Decimal, Decimal]
KRAKEN_SYMBOL = "BTC/USD"
BYBIT_SYMBOL = "BTCUSDT"
OKX_SYMBOL = "BTC-USDT"
TICK = Decimal("0.5")


@dataclass
class VenueBook:
    """The venue: its whole book, and the window of ``depth`` levels a subscriber holds."""

    depth: int
    sends_pushed_out: bool  # Bybit deletes a level leaving the window; Kraken sends nothing
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    held: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = field(
        default_factory=lambda: ({}, {})
    )

    def top(self) -> tuple[list[Level], list[Level]]:
        bids = sorted(self.bids.items(), reverse=True)[: self.depth]
        asks = sorted(self.asks.items())[: self.depth]
        return bids, asks

    def snapshot(self) -> tuple[list[Level], list[Level]]:
        bids, asks = self.top()
        self.held = (dict(bids), dict(asks))
        return bids, asks

    def change(self, bids: list[Level], asks: list[Level]) -> tuple[list[Level], list[Level]]:
        """Apply one change to the whole book; the levels the venue sends for it, per side
        (new or changed levels of the window first, then its deletes, as Kraken sends)."""
        for book, levels in ((self.bids, bids), (self.asks, asks)):
            for px, qty in levels:
                if qty == 0:
                    book.pop(px, None)
                else:
                    book[px] = qty
        now_bids, now_asks = self.top()
        sent = []
        for held, now, book in (
            (self.held[0], now_bids, self.bids),
            (self.held[1], now_asks, self.asks),
        ):
            now_map = dict(now)
            levels = [(px, qty) for px, qty in now if held.get(px) != qty]
            levels += [
                (px, Decimal(0))
                for px in held
                if px not in now_map and (self.sends_pushed_out or px not in book)
            ]
            sent.append(levels)
        self.held = (dict(now_bids), dict(now_asks))
        return sent[0], sent[1]


def ladder(start: Decimal, step: Decimal, n: int) -> dict[Decimal, Decimal]:
    """``n`` levels from ``start`` by ``step``, sizes varied so every level counts in a checksum."""
    return {start + k * step: Decimal(k % 7 + 1) / 4 for k in range(n)}


def fast_fall(venue: VenueBook, steps: int) -> Iterator[tuple[list[Level], list[Level]]]:
    """The message that opens the hole, then a fall: each step the best bid is cancelled
    and a seller steps in at its price."""
    best_bid = max(venue.bids)
    inside = sorted(venue.bids, reverse=True)[venue.depth // 2]
    # a new best bid inside the spread and a cancel inside the window, in one message
    yield venue.change([(best_bid + TICK, Decimal("0.75")), (inside, Decimal(0))], [])
    for _ in range(steps):
        top = max(venue.bids)
        yield venue.change([(top, Decimal(0))], [(top, Decimal("1.5"))])


def number(value: Decimal) -> str:
    """A JSON number written shortest, as Kraken writes prices and sizes."""
    return f"{value.normalize():f}"


# --- Kraken v2 -------------------------------------------------------------------------------


def kraken_frame(
    kind: str, bids: list[Level], asks: list[Level], crc: int, instrument: Instrument
) -> str:
    def side(levels: list[Level]) -> str:
        return ",".join(f'{{"price":{number(p)},"qty":{number(q)}}}' for p, q in levels)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{instrument.symbol}",'
        f'"bids":[{side(bids)}],"asks":[{side(asks)}],"checksum":{crc},'
        f'"timestamp":"2026-12-04T20:00:00.000000Z"}}]}}'
    )


def kraken_checksum(venue: VenueBook, instrument: Instrument) -> int:
    bids, asks = venue.top()
    return checksum(bids, asks, instrument.price_precision, instrument.qty_precision)


def holds_window(pipeline: BookPipeline, venue: Venue, symbol: str, book: VenueBook) -> bool:
    """Whether liqmon's book is valid and equals the venue's window, level for level."""
    info = pipeline.books[(venue, symbol)]
    levels = pipeline.store.levels(info.book)
    scale = 10**info.instrument.price_decimals
    bids, asks = book.top()
    return pipeline.is_valid(info) and (
        levels.bid_px.tolist(),
        levels.bid_qty.tolist(),
        levels.ask_px.tolist(),
        levels.ask_qty.tolist(),
    ) == (
        [int(p * scale) for p, _ in bids],
        [float(q) for _, q in bids],
        [int(p * scale) for p, _ in asks],
        [float(q) for _, q in asks],
    )


@pytest.mark.parametrize(("depth", "steps"), [(10, 6), (100, 95)])
def test_kraken_window_book_keeps_every_level_the_venue_checksums_in_a_fast_fall(
    depth: int, steps: int
) -> None:
    registry = InstrumentRegistry.load_cached([Venue.KRAKEN])
    instrument = registry.get(Venue.KRAKEN, KRAKEN_SYMBOL)
    assert instrument is not None
    pipeline = BookPipeline(registry, adapters={Venue.KRAKEN: KrakenAdapter(depth=depth)})
    venue = VenueBook(depth, sends_pushed_out=False)
    venue.bids = ladder(Decimal(60000), -TICK, 3 * depth)
    venue.asks = ladder(Decimal("60000.5") + 400 * TICK, TICK, 3 * depth)
    url = "wss://ws.kraken.com/v2"
    bids, asks = venue.snapshot()
    frame = kraken_frame("snapshot", bids, asks, kraken_checksum(venue, instrument), instrument)
    pipeline.on_message(Venue.KRAKEN, "ws", url, frame, 1)
    assert holds_window(pipeline, Venue.KRAKEN, KRAKEN_SYMBOL, venue)
    differs = []
    for i, (bids, asks) in enumerate(fast_fall(venue, steps)):
        crc = kraken_checksum(venue, instrument)
        pipeline.on_message(
            Venue.KRAKEN, "ws", url, kraken_frame("update", bids, asks, crc, instrument), 2 + i
        )
        if not holds_window(pipeline, Venue.KRAKEN, KRAKEN_SYMBOL, venue):
            differs.append(i)
    # the venue's symptom first: its checksum of its own window must match liqmon's book
    assert pipeline.counters.messages["kraken.checksum_failed"] == 0
    assert differs == []
    summary = pipeline.book_summaries(depth=1)[0]
    assert summary["checksum_ok"] == steps + 2  # the snapshot and every update
    assert summary["resyncs"] == 0


# --- Bybit orderbook.50 --------------------------------------------------------------------


def bybit_frame(kind: str, bids: list[Level], asks: list[Level], u: int, depth: int) -> str:
    def side(levels: list[Level], best_first: bool) -> str:
        ordered = sorted(levels, reverse=best_first)
        return json.dumps([[f"{p:.2f}", f"{q:.6f}"] for p, q in ordered])

    return (
        f'{{"topic":"orderbook.{depth}.{BYBIT_SYMBOL}","ts":1760000000123,"type":"{kind}",'
        f'"data":{{"s":"{BYBIT_SYMBOL}","b":{side(bids, True)},"a":{side(asks, False)},'
        f'"u":{u},"seq":{81500420000 + u}}},"cts":1760000000120}}'
    )


def test_bybit_window_book_equals_the_venue_window_after_every_message() -> None:
    depth = BYBIT_SPOT.depth  # orderbook.50
    registry = InstrumentRegistry.load_cached([Venue.BYBIT])
    pipeline = BookPipeline(registry, adapters={Venue.BYBIT: BYBIT_SPOT})
    venue = VenueBook(depth, sends_pushed_out=True)
    venue.bids = ladder(Decimal(60000), -TICK, 3 * depth)
    venue.asks = ladder(Decimal("60000.5") + 100 * TICK, TICK, 3 * depth)
    url = "wss://stream.bybit.com/v5/public/spot"
    bids, asks = venue.snapshot()
    u = 4503110
    pipeline.on_message(Venue.BYBIT, "ws", url, bybit_frame("snapshot", bids, asks, u, depth), 1)
    assert holds_window(pipeline, Venue.BYBIT, BYBIT_SYMBOL, venue)
    differs = []
    for i, (bids, asks) in enumerate(fast_fall(venue, 60)):
        u += 1
        pipeline.on_message(
            Venue.BYBIT, "ws", url, bybit_frame("delta", bids, asks, u, depth), 2 + i
        )
        if not holds_window(pipeline, Venue.BYBIT, BYBIT_SYMBOL, venue):
            differs.append(i)
    assert differs == []
    summary = pipeline.book_summaries(depth=1)[0]
    assert summary["gaps"] == 0
    assert summary["resyncs"] == 0


# --- OKX books (400 levels) -----------------------------------------------------------------


def okx_frame(action: str, bids: list[Level], asks: list[Level], crc: int, seq: int) -> str:
    def side(levels: list[Level], best_first: bool) -> str:
        ordered = sorted(levels, reverse=best_first)
        return json.dumps([[okx_number(p), okx_number(q), "0", "1"] for p, q in ordered])

    prev = -1 if action == "snapshot" else seq - 1
    return (
        f'{{"arg":{{"channel":"books","instId":"{OKX_SYMBOL}"}},"action":"{action}",'
        f'"data":[{{"asks":{side(asks, False)},"bids":{side(bids, True)},'
        f'"ts":"1758000000223","checksum":{crc},"prevSeqId":{prev},"seqId":{seq}}}]}}'
    )


def okx_window_checksum(venue: VenueBook) -> int:
    bids, asks = venue.top()
    return okx_checksum(
        [(okx_number(p), okx_number(q)) for p, q in bids],
        [(okx_number(p), okx_number(q)) for p, q in asks],
    )


def test_okx_window_book_keeps_every_level_the_venue_checksums_in_a_fast_fall() -> None:
    depth = OKX.book_depth  # 400
    steps = depth - 20  # the hole at the bottom walks up into the checksummed top 25
    registry = InstrumentRegistry.load_cached([Venue.OKX])
    pipeline = BookPipeline(registry, adapters={Venue.OKX: OKX})
    venue = VenueBook(depth, sends_pushed_out=True)
    venue.bids = ladder(Decimal(60000), -TICK, 2 * depth)
    venue.asks = ladder(Decimal("60000.5") + 2 * depth * TICK, TICK, 2 * depth)
    url = "wss://ws.okx.com:8443/ws/v5/public"
    bids, asks = venue.snapshot()
    seq = 38250012345
    frame = okx_frame("snapshot", bids, asks, okx_window_checksum(venue), seq)
    pipeline.on_message(Venue.OKX, "ws", url, frame, 1)
    assert holds_window(pipeline, Venue.OKX, OKX_SYMBOL, venue)
    differs = []
    for i, (bids, asks) in enumerate(fast_fall(venue, steps)):
        seq += 1
        frame = okx_frame("update", bids, asks, okx_window_checksum(venue), seq)
        pipeline.on_message(Venue.OKX, "ws", url, frame, 2 + i)
        if not holds_window(pipeline, Venue.OKX, OKX_SYMBOL, venue):
            differs.append(i)
    assert pipeline.counters.messages["okx.checksum_failed"] == 0
    assert differs == []
    summary = pipeline.book_summaries(depth=1)[0]
    assert summary["checksum_ok"] == steps + 2
    assert summary["resyncs"] == 0
