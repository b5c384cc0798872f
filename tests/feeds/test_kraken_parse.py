"""Kraken websocket v2 adapter on documented frames (tests/fixtures/kraken, see its README)."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from feeds.contract import (
    BookMessage,
    Checksum,
    InstrumentsUpdate,
    SnapshotSource,
    VenueAdapter,
    VenueMessage,
)
from feeds.kraken import ADAPTERS, SPOT, KrakenAdapter, checksum, parse, v2_symbol
from monitor.domain import BookEvent, EventKind, Ignored, Instrument, InstrumentKind, SeqRule, Venue
from monitor.errors import ParseError, UnknownInstrument
from monitor.instruments import CACHE_DIR, InstrumentRegistry
from tests.conftest import fixture_record

META = {"BTC/USD": (1, 1.0)}
ASSET_PAIRS_URL = "https://api.kraken.com/0/public/AssetPairs"

# the book of Kraken's checksum guide (docs.kraken.com, "Spot Websockets (v2) Book Checksum")
GUIDE_BIDS = [
    ("45283.5", "0.10000000"),
    ("45283.4", "1.54582015"),
    ("45282.1", "0.10000000"),
    ("45281.0", "0.10000000"),
    ("45280.3", "1.54592586"),
    ("45279.0", "0.07990000"),
    ("45277.6", "0.03310103"),
    ("45277.5", "0.30000000"),
    ("45277.3", "1.54602737"),
    ("45276.6", "0.15445238"),
]
GUIDE_ASKS = [
    ("45285.2", "0.00100000"),
    ("45286.4", "1.54571953"),
    ("45286.6", "1.54571109"),
    ("45289.6", "1.54560911"),
    ("45290.2", "0.15890660"),
    ("45291.8", "1.54553491"),
    ("45294.7", "0.04454749"),
    ("45296.1", "0.35380000"),
    ("45297.5", "0.09945542"),
    ("45299.5", "0.18772827"),
]
GUIDE_CHECKSUM = 3310070434


def frame(name: str) -> str:
    text: str = fixture_record("kraken", name)["data"]
    return text


def levels(raw: bytes) -> list[tuple[str, str]]:
    """Raw level bytes -> [(price text, qty text)] exactly as written."""
    return [(str(p), str(q)) for p, q in json.loads(raw, parse_float=Decimal, parse_int=Decimal)]


class DecimalBook:
    """A plain Kraken book: apply every level of a message, then cut each side to depth."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, message: BookMessage) -> None:
        if message.kind == EventKind.SNAPSHOT:
            self.bids.clear()
            self.asks.clear()
        for side, raw in ((self.bids, message.bids), (self.asks, message.asks)):
            for price, qty in levels(bytes(raw)):
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)
        for book_side, best_first in ((self.bids, True), (self.asks, False)):
            for level in sorted(book_side, reverse=best_first)[self.depth :]:
                del book_side[level]

    def checksum(self, price_precision: int, qty_precision: int) -> int:
        return checksum(self.bids.items(), self.asks.items(), price_precision, qty_precision)


class TestChecksum:
    def test_the_guide_vector_gives_the_documented_checksum(self) -> None:
        assert checksum(GUIDE_BIDS, GUIDE_ASKS, 1, 8) == GUIDE_CHECKSUM

    def test_the_checksum_is_crc32_of_asks_then_bids_without_dots_and_leading_zeros(self) -> None:
        text = "".join(
            p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
            for p, q in GUIDE_ASKS + GUIDE_BIDS
        )
        assert text.startswith("452852100000" + "452864154571953")  # the guide's first steps
        assert zlib.crc32(text.encode()) == GUIDE_CHECKSUM

    def test_numbers_as_the_feed_writes_them_are_rendered_at_the_pair_precision(self) -> None:
        # the wire drops trailing zeros (0.1, not 0.10000000): precision puts them back
        bids = [(float(p), float(q)) for p, q in GUIDE_BIDS]
        asks = [(Decimal(p), Decimal(q).normalize()) for p, q in GUIDE_ASKS]
        assert checksum(bids, asks, 1, 8) == GUIDE_CHECKSUM
        assert checksum(bids, asks, 1, 7) != GUIDE_CHECKSUM

    def test_only_the_ten_best_levels_count_and_input_order_does_not(self) -> None:
        deeper_bids = [*GUIDE_BIDS, ("45000.0", "5.0")]
        deeper_asks = [("46000.0", "5.0"), *reversed(GUIDE_ASKS)]
        assert checksum(reversed(deeper_bids), deeper_asks, 1, 8) == GUIDE_CHECKSUM

    def test_result_is_unsigned(self) -> None:
        assert checksum(GUIDE_BIDS, GUIDE_ASKS, 1, 8) > 2**31  # a signed CRC would be negative


class TestBookSnapshot:
    def test_snapshot_keeps_the_wire_numbers_exactly_and_carries_depth_and_checksum(self) -> None:
        decoded = SPOT.decode(frame("ws_book_snapshot"), 7)
        assert isinstance(decoded, BookMessage)
        assert (decoded.symbol, decoded.kind, decoded.limit) == ("BTC/USD", EventKind.SNAPSHOT, 100)
        assert (decoded.first_seq, decoded.last_seq, decoded.prev_seq) == (-1, -1, -1)
        assert (decoded.checksum, decoded.has_checksum) == (GUIDE_CHECKSUM, True)
        assert decoded.ts_event_ns == 1696613755440160000
        assert bytes(decoded.bids).startswith(b"[[45283.5,0.1],[45283.4,1.54582015],[45282.1,0.1]")
        assert bytes(decoded.asks).endswith(b"[45297.5,0.09945542],[45299.5,0.18772827]]")

    def test_snapshot_levels_rebuild_the_documented_checksum(self) -> None:
        for name in ("ws_book_snapshot", "ws_book_snapshot_checksum_guide"):
            decoded = SPOT.decode(frame(name), 0)
            assert isinstance(decoded, BookMessage)
            book = DecimalBook(SPOT.depth)
            book.apply(decoded)
            assert book.checksum(1, 8) == decoded.checksum == GUIDE_CHECKSUM

    def test_quoted_numbers_of_the_guide_pass_through_as_written(self) -> None:
        decoded = SPOT.decode(frame("ws_book_snapshot_checksum_guide"), 3)
        assert isinstance(decoded, BookMessage)
        assert bytes(decoded.bids).startswith(b'[["45283.5","0.10000000"],')
        assert decoded.ts_event_ns == 3  # no timestamp in the guide's snapshot: receive time

    def test_parse_converts_levels_to_price_units(self) -> None:
        (event,) = parse(SPOT, frame("ws_book_snapshot"), 11, META)
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind) == (
            Venue.KRAKEN,
            "BTC/USD",
            EventKind.SNAPSHOT,
        )
        assert event.bid_px.tolist()[:3] == [452835, 452834, 452821]
        assert event.bid_qty.tolist()[:2] == [0.1, 1.54582015]
        assert event.ask_px.tolist()[-1] == 452995
        assert event.depth_limit == 100 and event.ts_recv_ns == 11

    def test_snapshot_limit_follows_the_subscribed_depth(self) -> None:
        shallow = KrakenAdapter(depth=10)
        decoded = shallow.decode(frame("ws_book_snapshot"), 0)
        assert isinstance(decoded, BookMessage)
        assert decoded.limit == 10 and shallow.book_depth == 10
        assert SPOT.book_depth == 100

    def test_unknown_symbol_in_parse(self) -> None:
        with pytest.raises(UnknownInstrument):
            parse(SPOT, frame("ws_book_snapshot"), 0, {})


def one_book(adapter: KrakenAdapter, data: str, recv_ns: int = 0) -> BookMessage:
    """The one book message a frame decodes to."""
    decoded = adapter.decode(data, recv_ns)
    assert isinstance(decoded, BookMessage)
    return decoded


class TestBookUpdate:
    def test_update_is_a_delta_with_its_checksum(self) -> None:
        decoded = SPOT.decode(frame("ws_book_update"), 0)
        assert isinstance(decoded, BookMessage)
        assert (decoded.kind, decoded.limit, decoded.has_checksum) == (EventKind.DELTA, 0, True)
        assert bytes(decoded.bids) == b"[[45284.0,0.25]]"
        assert bytes(decoded.asks) == b"[[45285.2,0],[45300.1,0.5]]"
        assert decoded.ts_event_ns == 1696613755540160000

    def test_an_update_time_without_its_utc_offset_is_a_parse_error(self) -> None:
        # found by the fuzz test: a naive time reached the epoch subtraction as a TypeError
        text = frame("ws_book_update").replace(".540160Z", "")
        assert '"2023-10-06T17:35:55"' in text
        with pytest.raises(ParseError):
            SPOT.decode(text, 0)

    def test_book_truncated_to_depth_after_the_update_matches_the_checksum(self) -> None:
        shallow = KrakenAdapter(depth=10)
        book = DecimalBook(shallow.book_depth)
        book.apply(one_book(shallow, frame("ws_book_snapshot")))
        update = one_book(shallow, frame("ws_book_update"))
        book.apply(update)
        assert book.checksum(1, 8) == update.checksum
        # the better bid pushed the 10th bid out (no delete is sent for it)
        assert Decimal("45276.6") not in book.bids and len(book.bids) == 10
        # the deleted best ask was replaced by the level entering the window
        assert min(book.asks) == Decimal("45286.4") and max(book.asks) == Decimal("45300.1")

    def test_only_the_top_ten_count_and_a_wrong_book_is_caught(self) -> None:
        book = DecimalBook(1000)
        book.apply(one_book(SPOT, frame("ws_book_snapshot")))
        book.bids[Decimal("45000.0")] = Decimal("1")  # a level beyond the 10 subscribed
        update = one_book(SPOT, frame("ws_book_update"))
        book.apply(update)
        assert len(book.bids) == 12
        assert book.checksum(1, 8) == update.checksum  # levels below the 10th do not count
        book.bids.pop(Decimal("45284.0"))
        assert book.checksum(1, 8) != update.checksum

    def test_documented_update_example(self) -> None:
        decoded = SPOT.decode(frame("ws_book_update_docs"), 0)
        assert isinstance(decoded, BookMessage)
        assert decoded.symbol == "MATIC/USD"
        assert bytes(decoded.bids) == b"[[0.5657,1098.3947558]]"
        assert bytes(decoded.asks) == b"[]"
        assert decoded.checksum == 2114181697

    def test_update_without_asks_key_has_an_empty_side(self) -> None:
        text = '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1.5,"qty":2}],"checksum":7,"timestamp":"2024-01-01T00:00:00Z"}]}'
        decoded = SPOT.decode(text, 0)
        assert isinstance(decoded, BookMessage)
        assert (bytes(decoded.asks), decoded.checksum, decoded.ts_event_ns) == (
            b"[]",
            7,
            1704067200 * 10**9,
        )

    def test_update_without_checksum_is_not_checked(self) -> None:
        text = (
            '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}'
        )
        decoded = SPOT.decode(text, 5)
        assert isinstance(decoded, BookMessage)
        assert (decoded.has_checksum, decoded.checksum, decoded.ts_event_ns) == (False, 0, 5)

    def test_frame_with_several_books_gives_a_list(self) -> None:
        entries = ",".join(
            f'{{"symbol":"{symbol}","bids":[],"asks":[{{"price":2,"qty":1}}],"checksum":1}}'
            for symbol in ("A/USD", "B/USD")
        )
        text = f'{{"channel":"book","type":"update","data":[{entries}]}}'
        decoded = SPOT.decode(text, 0)
        assert isinstance(decoded, list)
        assert [d.symbol for d in decoded if isinstance(d, BookMessage)] == ["A/USD", "B/USD"]

    def test_timestamps_keep_their_microseconds(self) -> None:
        text = '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[],"asks":[],"timestamp":"1970-01-01T00:00:01.000123Z"}]}'
        assert one_book(SPOT, text).ts_event_ns == 1_000_123_000


class TestMalformed:
    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            '{"channel":"book","type":"snapshot"}',
            '{"channel":"book","type":"snapshot","data":[]}',
            '{"channel":"book","type":"delta","data":[{"symbol":"X/Y","bids":[],"asks":[]}]}',
            '{"channel":"book","type":"snapshot","data":[{"symbol":"X/Y","bids":[]}]}',
            '{"channel":"book","type":"update","data":[{"bids":[],"asks":[]}]}',
            '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[{"price":1}],"asks":[]}]}',
            '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[],"asks":[],"timestamp":"yesterday"}]}',
            '{"channel":"book","type":"update","data":[{"symbol":"X/Y","bids":[],"asks":[],"checksum":"abc"}]}',
            "[1,2]",
            "{}",
        ],
    )
    def test_malformed_frames_raise_parse_error(self, text: str) -> None:
        with pytest.raises(ParseError):
            SPOT.decode(text, 0)


class TestControlMessages:
    def test_heartbeat_pong_ack_and_status_are_ignored(self) -> None:
        assert SPOT.decode(frame("ws_heartbeat"), 0) == Ignored("heartbeat")
        assert SPOT.decode(frame("ws_pong"), 0) == Ignored("pong")
        assert SPOT.decode(frame("ws_subscribe_ack"), 0) == Ignored("subscribe")
        assert SPOT.decode(frame("ws_status"), 0) == Ignored("status")

    def test_refused_subscription_is_a_venue_message_naming_the_symbol(self) -> None:
        assert SPOT.decode(frame("ws_subscribe_error"), 0) == VenueMessage(
            "subscribe", "Currency pair not supported XBT/USDX", symbol="XBT/USDX"
        )

    def test_system_status_other_than_online_is_reported(self) -> None:
        text = '{"channel":"status","data":[{"api_version":"v2","system":"maintenance","version":"2.0.4"}],"type":"update"}'
        message = SPOT.decode(text, 0)
        assert isinstance(message, VenueMessage) and "maintenance" in message.message

    def test_other_channels_are_ignored_even_when_their_data_is_an_object(self) -> None:
        text = '{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[]}}'
        assert SPOT.decode(text, 0) == Ignored("instrument")
        ticker = (
            '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":1.5,"last":2}]}'
        )
        assert SPOT.decode(ticker, 0) == Ignored("ticker")


class TestSubscriptions:
    def test_subscribe_frame_as_documented(self) -> None:
        (text,) = SPOT.subscribe_frames(["BTC/USD", "ETH/USD"], ["book"])
        assert json.loads(text) == {
            "method": "subscribe",
            "params": {
                "channel": "book",
                "symbol": ["BTC/USD", "ETH/USD"],
                "depth": 100,
                "snapshot": True,
            },
            "req_id": 1,
        }

    def test_symbols_are_batched_within_the_frame_limit(self) -> None:
        symbols = [f"S{i}/USD" for i in range(120)]
        frames = [json.loads(f) for f in SPOT.subscribe_frames(symbols, ["book"])]
        assert [len(f["params"]["symbol"]) for f in frames] == [50, 50, 20]
        assert [f["req_id"] for f in frames] == [1, 2, 3]
        assert [s for f in frames for s in f["params"]["symbol"]] == symbols

    def test_unsubscribe_repeats_the_depth(self) -> None:
        (text,) = KrakenAdapter(depth=25).unsubscribe_frames(["BTC/USD"], ["book"])
        assert json.loads(text) == {
            "method": "unsubscribe",
            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 25},
            "req_id": 1,
        }

    def test_unknown_channel_and_depth_are_refused(self) -> None:
        with pytest.raises(ValueError, match="ticker"):
            SPOT.subscribe_frames(["BTC/USD"], ["ticker"])
        with pytest.raises(ValueError, match="depth"):
            KrakenAdapter(depth=50)

    def test_connection_details(self) -> None:
        assert (
            SPOT.ws_url("wss://ws.kraken.com/v2", ["BTC/USD"], ["book"]) == "wss://ws.kraken.com/v2"
        )
        assert SPOT.open_frames() == []
        assert json.loads(SPOT.keepalive_frame() or "") == {"method": "ping"}
        assert SPOT.keepalive_s == 30.0
        assert SPOT.snapshot_request("https://api.kraken.com", "BTC/USD", 100) is None

    def test_declared_rules(self) -> None:
        assert SPOT.sequencing == SeqRule.NONE
        assert SPOT.snapshot_source == SnapshotSource.STREAM
        assert SPOT.checksum == Checksum.KRAKEN
        assert (SPOT.px_index, SPOT.qty_index) == (0, 1)
        assert ADAPTERS == {Venue.KRAKEN: SPOT}

    def test_adapter_has_everything_the_contract_names(self) -> None:
        names = set(VenueAdapter.__annotations__) | {
            n for n in vars(VenueAdapter) if not n.startswith("_")
        }
        assert {n for n in names if not hasattr(SPOT, n)} == set()


class TestInstruments:
    def instruments(self) -> dict[str, Instrument]:
        text = fixture_record("kraken", "http_asset_pairs")["data"]
        return {i.symbol: i for i in SPOT.parse_instruments(ASSET_PAIRS_URL, text)}

    def test_asset_pairs_give_v2_symbols_with_precisions(self) -> None:
        instruments = self.instruments()
        assert instruments["BTC/USD"] == Instrument(
            Venue.KRAKEN,
            "BTC/USD",
            "BTC",
            "USD",
            InstrumentKind.SPOT,
            "0.1",
            "0.00000001",
            price_precision=1,
            qty_precision=8,
        )
        assert instruments["DOGE/USD"].tick == "0.0000001"
        assert instruments["ETH/BTC"].quote == "BTC"
        assert {"USDT/USD", "USDC/USD", "USDC/USDT", "SOL/USD", "XRP/USD"} <= set(instruments)
        assert not any(s.startswith(("XBT", "XDG")) for s in instruments)
        assert len(instruments) == 12  # the dark-pool book (no wsname) is left out

    def test_tick_falls_back_to_pair_decimals(self) -> None:
        text = '{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","pair_decimals":1,"lot_decimals":8}}}'
        (inst,) = SPOT.parse_instruments(ASSET_PAIRS_URL, text)
        assert (inst.symbol, inst.tick, inst.lot) == ("BTC/USD", "0.1", "0.00000001")

    def test_error_answers_and_garbage_raise(self) -> None:
        with pytest.raises(ParseError, match="EGeneral"):
            SPOT.parse_instruments(ASSET_PAIRS_URL, '{"error":["EGeneral:Invalid arguments"]}')
        with pytest.raises(ParseError):
            SPOT.parse_instruments(ASSET_PAIRS_URL, "<html>")

    def test_v2_symbol_spelling(self) -> None:
        assert v2_symbol("XBT/USD") == "BTC/USD"
        assert v2_symbol("XDG/XBT") == "DOGE/BTC"
        assert v2_symbol("ETH/USDT") == "ETH/USDT"

    def test_request_and_http_decode(self) -> None:
        (request,) = SPOT.instruments_requests("https://api.kraken.com/")
        assert (request.url, request.key, request.body) == (ASSET_PAIRS_URL, ASSET_PAIRS_URL, None)
        passed = SPOT.decode_http(request.key, "{}", 0)
        assert isinstance(passed, InstrumentsUpdate) and passed.url == ASSET_PAIRS_URL
        assert isinstance(
            SPOT.decode_http("https://api.kraken.com/0/public/Time", "{}", 0), Ignored
        )

    def test_cached_copy_loads_and_agrees_with_the_fixture(self) -> None:
        path = CACHE_DIR / "kraken.json.gz"
        assert Path(path).exists()
        cached = InstrumentRegistry.load_cached([Venue.KRAKEN])
        assert sorted(cached, key=lambda i: i.symbol) == sorted(
            self.instruments().values(), key=lambda i: i.symbol
        )
