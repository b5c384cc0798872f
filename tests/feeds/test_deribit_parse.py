"""Deribit adapter on documented frames (tests/fixtures/deribit, see its README)."""

from __future__ import annotations

import json
import math

import pytest

from feeds.contract import (
    BookMessage,
    Checksum,
    InstrumentsUpdate,
    Reply,
    SnapshotSource,
    VenueAdapter,
    VenueMessage,
)
from feeds.deribit import ADAPTERS, FUTURES, parse
from monitor.domain import (
    BookEvent,
    EventKind,
    Ignored,
    Instrument,
    InstrumentKind,
    MarkPriceEvent,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError
from monitor.instruments import InstrumentRegistry
from tests.conftest import fixture_record

# BTC-PERPETUAL is inverse (amounts in USD); the docs' 2019 prices have cents
PERPETUAL = Instrument(
    Venue.DERIBIT, "BTC-PERPETUAL", "BTC", "USD", InstrumentKind.PERP, "0.01", "10", inverse=True
)
META = {"BTC-PERPETUAL": PERPETUAL}
INSTRUMENTS = "https://www.deribit.com/api/v2/public/get_instruments"


def frame(name: str) -> str:
    text: str = fixture_record("deribit", name)["data"]
    return text


class TestBook:
    def test_snapshot_carries_its_change_id_and_the_raw_action_arrays(self) -> None:
        decoded = FUTURES.decode(frame("ws_book_snapshot"), 0)
        assert isinstance(decoded, BookMessage)
        assert (decoded.symbol, decoded.kind, decoded.limit) == (
            "BTC-PERPETUAL",
            EventKind.SNAPSHOT,
            0,
        )
        assert (decoded.first_seq, decoded.last_seq, decoded.prev_seq) == (-1, 297217, -1)
        assert decoded.ts_event_ns == 1554373962454 * 1_000_000
        assert bytes(decoded.bids) == b'[["new",5042.34,30],["new",5041.94,20]]'
        assert bytes(decoded.asks) == b'[["new",5042.64,40],["new",5043.3,40]]'
        assert not decoded.has_checksum

    def test_change_chains_to_the_previous_change_id(self) -> None:
        decoded = FUTURES.decode(frame("ws_book_change"), 0)
        assert isinstance(decoded, BookMessage)
        assert decoded.kind == EventKind.DELTA
        assert (decoded.first_seq, decoded.last_seq, decoded.prev_seq) == (297218, 297218, 297217)
        assert bytes(decoded.bids) == b'[["delete",5041.94,0],["delete",5042.34,0]]'
        assert bytes(decoded.asks) == b"[]"

    def test_parse_skips_the_action_and_reads_price_and_amount(self) -> None:
        (snapshot,) = parse(FUTURES, frame("ws_book_snapshot"), 3, META)
        assert isinstance(snapshot, BookEvent)
        assert (snapshot.venue, snapshot.kind, snapshot.last_seq) == (
            Venue.DERIBIT,
            EventKind.SNAPSHOT,
            297217,
        )
        assert snapshot.bid_px.tolist() == [504234, 504194]
        # 30 and 20 USD on the wire: BookEvent sizes are base units (BTC), as in the book
        assert snapshot.bid_qty.tolist() == pytest.approx([30.0 / 5042.34, 20.0 / 5041.94])
        assert snapshot.ask_px.tolist() == [504264, 504330]
        (change,) = parse(FUTURES, frame("ws_book_change"), 3, META)
        assert isinstance(change, BookEvent)
        assert change.bid_qty.tolist() == [0.0, 0.0] and change.prev_seq == 297217

    def test_a_delete_carrying_an_amount_is_rewritten_to_zero(self) -> None:
        decoded = FUTURES.decode(frame("ws_book_change_delete_amount"), 0)
        assert isinstance(decoded, BookMessage)
        assert bytes(decoded.bids) == b'[["new",5042.0,10.0],["delete",5041.5,0]]'
        assert bytes(decoded.asks) == b'[["change",5042.64,70]]'  # no delete: untouched
        (event,) = parse(FUTURES, frame("ws_book_change_delete_amount"), 0, META)
        assert isinstance(event, BookEvent)
        assert event.bid_qty.tolist() == pytest.approx([10.0 / 5042.0, 0.0])

    @pytest.mark.parametrize(
        ("side", "expected"),
        [
            ('[["delete",5,0]]', '[["delete",5,0]]'),
            ('[["delete", 5 , 0.000 ]]', '[["delete", 5 , 0.000 ]]'),
            ('[["delete",5,0e0]]', '[["delete",5,0e0]]'),
            ('[["delete",5,0.5]]', '[["delete",5,0]]'),
            ('[["delete",5,1e-05],["new",4,2]]', '[["delete",5,0],["new",4,2]]'),
            ('[["new",4,2],["change",3,0]]', '[["new",4,2],["change",3,0]]'),
        ],
    )
    def test_only_delete_amounts_are_rewritten(self, side: str, expected: str) -> None:
        text = (
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms","data":'
            '{"type":"change","timestamp":1,"instrument_name":"X","change_id":2,"prev_change_id":1,'
            f'"bids":{side},"asks":[]}}}}}}'
        )
        decoded = FUTURES.decode(text, 0)
        assert isinstance(decoded, BookMessage)
        assert bytes(decoded.bids) == expected.encode()

    def test_deletes_as_bytes_or_text_frames_decode_the_same(self) -> None:
        text = frame("ws_book_change_delete_amount")
        a = FUTURES.decode(text, 0)
        b = FUTURES.decode(text.encode(), 0)
        assert isinstance(a, BookMessage) and isinstance(b, BookMessage)
        assert bytes(a.bids) == bytes(b.bids)

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms"}}',
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms","data":{"type":"snapshot","timestamp":1,"change_id":1,"bids":[],"asks":[]}}}',
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms","data":{"type":"snapshot","timestamp":1,"instrument_name":"X","bids":[],"asks":[]}}}',
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms","data":{"type":"snapshot","timestamp":1,"instrument_name":"X","change_id":1,"bids":[]}}}',
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms","data":{"type":"change","timestamp":1,"instrument_name":"X","change_id":2,"bids":[],"asks":[]}}}',
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.none.10.100ms","data":{"timestamp":1,"instrument_name":"X","change_id":2,"bids":[[1,2]],"asks":[]}}}',
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.100ms","data":{"type":"change","timestamp":1,"instrument_name":"X","change_id":"2","prev_change_id":1,"bids":[],"asks":[]}}}',
            '{"jsonrpc":"2.0"}',
        ],
    )
    def test_malformed_frames_raise_parse_error(self, text: str) -> None:
        with pytest.raises(ParseError):
            FUTURES.decode(text, 0)


class TestOtherMessages:
    def test_ticker_is_a_mark_price_event(self) -> None:
        assert FUTURES.decode(frame("ws_ticker"), 8) == MarkPriceEvent(
            Venue.DERIBIT,
            "BTC-PERPETUAL",
            36446.51,
            36441.64,
            0.0000035,
            0,
            1623060194301 * 10**6,
            8,
        )

    def test_a_future_ticker_has_no_funding(self) -> None:
        text = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-27MAR26.100ms","data":{"timestamp":5,"instrument_name":"BTC-27MAR26","mark_price":70000.5,"index_price":69000.1}}}'
        event = FUTURES.decode(text, 0)
        assert isinstance(event, MarkPriceEvent)
        assert math.isnan(event.funding_rate) and event.mark_price == 70000.5

    def test_test_request_asks_for_a_public_test_reply(self) -> None:
        reply = FUTURES.decode(frame("ws_test_request"), 0)
        assert isinstance(reply, Reply)
        assert json.loads(reply.text) == {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "public/test",
            "params": {},
        }

    def test_heartbeats_and_rpc_results_are_ignored(self) -> None:
        assert FUTURES.decode(frame("ws_heartbeat"), 0) == Ignored("heartbeat")
        assert FUTURES.decode(frame("ws_subscribe_result"), 0) == Ignored("rpc result")
        assert FUTURES.decode(frame("ws_set_heartbeat_result"), 0) == Ignored("rpc result")

    def test_rpc_errors_are_venue_messages(self) -> None:
        assert FUTURES.decode(frame("ws_rpc_error"), 0) == VenueMessage("-32602", "Invalid params")

    def test_other_channels_are_ignored(self) -> None:
        index = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"deribit_price_index.btc_usd","data":{"timestamp":1535098298227,"price":6521.17,"index_name":"btc_usd"}}}'
        assert FUTURES.decode(index, 0) == Ignored("deribit_price_index")
        trades = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms","data":[{"price":1}]}}'
        assert FUTURES.decode(trades, 0) == Ignored("trades")


class TestSubscriptions:
    def test_heartbeat_is_set_on_every_connection(self) -> None:
        (text,) = FUTURES.open_frames()
        assert json.loads(text) == {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "public/set_heartbeat",
            "params": {"interval": 30},
        }

    def test_subscribe_puts_the_instrument_inside_the_channel_name(self) -> None:
        (text,) = FUTURES.subscribe_frames(
            ["BTC-PERPETUAL", "ETH-PERPETUAL"], ["book.100ms", "ticker.100ms"]
        )
        assert json.loads(text) == {
            "jsonrpc": "2.0",
            "id": 1000,
            "method": "public/subscribe",
            "params": {
                "channels": [
                    "book.BTC-PERPETUAL.100ms",
                    "book.ETH-PERPETUAL.100ms",
                    "ticker.BTC-PERPETUAL.100ms",
                    "ticker.ETH-PERPETUAL.100ms",
                ]
            },
        }

    def test_channels_are_batched_within_the_frame_limit(self) -> None:
        symbols = [f"I{i}" for i in range(60)]
        frames = [json.loads(f) for f in FUTURES.subscribe_frames(symbols, ["book.100ms"])]
        assert [len(f["params"]["channels"]) for f in frames] == [50, 10]
        assert [f["id"] for f in frames] == [1000, 1001]
        (text,) = FUTURES.unsubscribe_frames(["BTC-PERPETUAL"], ["book.agg2"])
        assert json.loads(text)["method"] == "public/unsubscribe"
        assert json.loads(text)["params"] == {"channels": ["book.BTC-PERPETUAL.agg2"]}

    def test_a_channel_without_interval_means_100ms(self) -> None:
        (text,) = FUTURES.subscribe_frames(["BTC-PERPETUAL"], ["book", "ticker"])
        assert json.loads(text)["params"]["channels"] == [
            "book.BTC-PERPETUAL.100ms",
            "ticker.BTC-PERPETUAL.100ms",
        ]

    @pytest.mark.parametrize("channel", ["book.1s", "trades", "trades.100ms", "book.none.10.100ms"])
    def test_unsupported_channels_are_refused(self, channel: str) -> None:
        with pytest.raises(ValueError, match="Deribit channel"):
            FUTURES.subscribe_frames(["BTC-PERPETUAL"], [channel])

    def test_connection_details_and_declared_rules(self) -> None:
        assert (
            FUTURES.ws_url("wss://www.deribit.com/ws/api/v2", [], [])
            == "wss://www.deribit.com/ws/api/v2"
        )
        assert FUTURES.keepalive_frame() is None
        assert FUTURES.snapshot_request("https://www.deribit.com", "BTC-PERPETUAL", 0) is None
        assert (FUTURES.sequencing, FUTURES.snapshot_source, FUTURES.checksum) == (
            SeqRule.CHAIN,
            SnapshotSource.STREAM,
            Checksum.NONE,
        )
        assert (FUTURES.px_index, FUTURES.qty_index, FUTURES.book_depth) == (1, 2, 0)
        assert ADAPTERS == {Venue.DERIBIT: FUTURES}

    def test_adapter_has_everything_the_contract_names(self) -> None:
        names = set(VenueAdapter.__annotations__) | {
            n for n in vars(VenueAdapter) if not n.startswith("_")
        }
        assert {n for n in names if not hasattr(FUTURES, n)} == set()


class TestInstruments:
    def parsed(self) -> dict[str, Instrument]:
        out: dict[str, Instrument] = {}
        for name in ("http_instruments_btc", "http_instruments_eth", "http_instruments_usdc"):
            record = fixture_record("deribit", name)
            out.update(
                (i.symbol, i) for i in FUTURES.parse_instruments(record["url"], record["data"])
            )
        return out

    def test_requests_cover_btc_eth_and_the_usdc_linear_contracts(self) -> None:
        urls = [r.url for r in FUTURES.instruments_requests("https://www.deribit.com")]
        assert urls == [
            f"{INSTRUMENTS}?currency=BTC&kind=future",
            f"{INSTRUMENTS}?currency=ETH&kind=future",
            f"{INSTRUMENTS}?currency=USDC&kind=future",
        ]
        passed = FUTURES.decode_http(urls[0], "{}", 0)
        assert isinstance(passed, InstrumentsUpdate) and passed.url == urls[0]
        assert isinstance(
            FUTURES.decode_http("https://www.deribit.com/api/v2/public/test", "{}", 0), Ignored
        )

    def test_inverse_perpetual_counts_usd(self) -> None:
        assert self.parsed()["BTC-PERPETUAL"] == Instrument(
            Venue.DERIBIT,
            "BTC-PERPETUAL",
            "BTC",
            "USD",
            InstrumentKind.PERP,
            "0.5",
            "10",
            contract_size=1.0,
            inverse=True,
            price_precision=1,
            qty_precision=0,
        )

    def test_linear_usdc_perpetual_counts_the_base_coin(self) -> None:
        parsed = self.parsed()
        assert parsed["BTC_USDC-PERPETUAL"] == Instrument(
            Venue.DERIBIT,
            "BTC_USDC-PERPETUAL",
            "BTC",
            "USDC",
            InstrumentKind.PERP,
            "1",
            "0.001",
            contract_size=1.0,
            inverse=False,
            price_precision=0,
            qty_precision=3,
        )
        assert parsed["DOGE_USDC-PERPETUAL"].tick == "0.00001"  # written 1e-05 on the wire
        assert parsed["BTC-27MAR26"].kind == InstrumentKind.FUTURE
        assert {"SOL_USDC-PERPETUAL", "XRP_USDC-PERPETUAL", "ETH-PERPETUAL"} <= set(parsed)

    def test_options_combos_and_inactive_instruments_are_left_out(self) -> None:
        base = {
            "tick_size": 0.5,
            "min_trade_amount": 10,
            "base_currency": "BTC",
            "quote_currency": "USD",
        }
        result = [
            dict(base, instrument_name="BTC-FS-27MAR26_PERP", kind="future_combo"),
            dict(base, instrument_name="BTC-27MAR26-80000-C", kind="option"),
            dict(base, instrument_name="BTC-OLD", kind="future", is_active=False),
        ]
        assert FUTURES.parse_instruments(INSTRUMENTS, json.dumps({"result": result})) == []

    def test_error_answers_and_bad_numbers_raise(self) -> None:
        with pytest.raises(ParseError, match="Invalid params"):
            FUTURES.parse_instruments(
                INSTRUMENTS, '{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params"}}'
            )
        bad = {
            "result": [
                {"instrument_name": "X", "kind": "future", "tick_size": 0, "min_trade_amount": 1}
            ]
        }
        with pytest.raises(ParseError, match="X"):
            FUTURES.parse_instruments(INSTRUMENTS, json.dumps(bad))

    def test_cached_copy_loads_and_agrees_with_the_fixtures(self) -> None:
        cached = InstrumentRegistry.load_cached([Venue.DERIBIT])
        assert sorted(cached, key=lambda i: i.symbol) == sorted(
            self.parsed().values(), key=lambda i: i.symbol
        )
