"""Coinbase Advanced Trade parsers on the documentation's example frames and frames built in
the documented format (tests/fixtures/coinbase/README.md says which is which)."""

from __future__ import annotations

import json

import pytest

from feeds.coinbase import (
    ADAPTER,
    ADAPTERS,
    HEARTBEATS_SUBSCRIBE,
    CoinbaseSequence,
    parse,
    timestamp_ns,
)
from feeds.contract import (
    BookMessage,
    ConnectionSequence,
    InstrumentsUpdate,
    VenueAdapter,
    VenueMessage,
)
from monitor.domain import BookEvent, EventKind, Ignored, InstrumentKind, SeqRule, Venue
from monitor.errors import ParseError, UnknownInstrument
from monitor.instruments import InstrumentRegistry
from tests.conftest import fixture_record

META = {"BTC-USD": (2, 1.0), "ETH-USD": (2, 1.0)}
T0 = 1784021400  # 2026-07-14T09:30:00Z


def frame(name: str) -> str:
    return str(fixture_record("coinbase", name)["data"])


class TestLevel2:
    def test_doc_snapshot_is_a_full_book_snapshot(self) -> None:
        (event,) = parse(ADAPTER, frame("ws_l2_snapshot_doc"), 5, META)
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind, event.depth_limit) == (
            Venue.COINBASE,
            "BTC-USD",
            EventKind.SNAPSHOT,
            0,
        )
        assert (event.first_seq, event.last_seq, event.prev_seq) == (-1, -1, -1)
        assert event.ts_event_ns == 1675974770_714964855  # 2023-02-09T20:32:50.714964855Z
        assert event.ts_recv_ns == 5
        assert event.bid_px.tolist() == [2192173, 2192130]
        assert event.bid_qty.tolist() == [0.06317902, 0.02]
        assert event.ask_px.size == 0

    def test_hot_path_decode_builds_raw_level_arrays_per_side(self) -> None:
        decoded = ADAPTER.decode(frame("ws_l2_snapshot"), 0)
        assert isinstance(decoded, BookMessage)
        assert bytes(decoded.bids) == (
            b'[["117250.01","0.41250000"],["117250","1.2"],["117249.5","0.00081"]]'
        )
        assert bytes(decoded.asks) == b'[["117250.02","0.25"],["117251.33","3.10004"]]'
        assert (ADAPTER.px_index, ADAPTER.qty_index) == (0, 1)

    def test_update_is_a_delta_with_absolute_sizes(self) -> None:
        raw = frame("ws_l2_update").encode()  # bytes in, as a socket may hand them
        (event,) = parse(ADAPTER, raw, 0, META)
        assert isinstance(event, BookEvent)
        assert (event.symbol, event.kind) == ("BTC-USD", EventKind.DELTA)
        assert event.ts_event_ns == T0 * 1_000_000_000 + 200_987_000
        assert event.bid_px.tolist() == [11725000] and event.bid_qty.tolist() == [0.0]
        assert event.ask_px.tolist() == [11725002, 11725050]
        assert event.ask_qty.tolist() == [0.31, 0.002]

    def test_a_frame_with_several_products_decodes_to_a_list(self) -> None:
        decoded = ADAPTER.decode(frame("ws_l2_multi"), 0)
        assert isinstance(decoded, list) and len(decoded) == 2
        btc, eth = decoded
        assert isinstance(btc, BookMessage) and isinstance(eth, BookMessage)
        assert (btc.symbol, btc.kind, eth.symbol, eth.kind) == (
            "BTC-USD",
            EventKind.DELTA,
            "ETH-USD",
            EventKind.SNAPSHOT,
        )
        assert btc.ts_event_ns == eth.ts_event_ns == (T0 + 1) * 1_000_000_000
        assert bytes(eth.asks) == b'[["3650.42","7.125"]]'
        events = parse(ADAPTER, frame("ws_l2_multi"), 0, META)
        assert [e.symbol for e in events if isinstance(e, BookEvent)] == ["BTC-USD", "ETH-USD"]

    def test_ask_side_spelled_ask_is_read_as_offer(self) -> None:
        raw = (
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","sequence_num":9,"events":'
            '[{"type":"update","product_id":"BTC-USD","updates":[{"side":"ask",'
            '"event_time":"2026-07-14T09:30:00Z","price_level":"1.5","new_quantity":"2"}]}]}'
        )
        decoded = ADAPTER.decode(raw, 0)
        assert isinstance(decoded, BookMessage)
        assert bytes(decoded.asks) == b'[["1.5","2"]]' and bytes(decoded.bids) == b"[]"

    def test_declares_no_per_book_sequencing(self) -> None:
        assert ADAPTER.sequencing == SeqRule.NONE
        assert ADAPTER.snapshot_request("https://api.coinbase.com", "BTC-USD", 0) is None


class TestOtherMessages:
    @pytest.mark.parametrize(
        ("name", "reason"),
        [("ws_heartbeats", "heartbeats"), ("ws_subscriptions", "subscriptions")],
    )
    def test_heartbeats_and_subscriptions_are_ignored(self, name: str, reason: str) -> None:
        assert ADAPTER.decode(frame(name), 0) == Ignored(reason)

    def test_error_is_a_venue_message_naming_the_product(self) -> None:
        assert ADAPTER.decode(frame("ws_error"), 0) == VenueMessage(
            "error", "Failed to subscribe: unknown product TRUTH-USD", symbol="TRUTH-USD"
        )
        assert ADAPTER.decode(
            '{"type":"error","message":"too many L2 streams requested in a single session"}', 0
        ) == VenueMessage("error", "too many L2 streams requested in a single session")

    def test_other_channels_are_ignored(self) -> None:
        raw = (
            '{"channel":"ticker","client_id":"","timestamp":"2026-07-14T09:30:00Z",'
            '"sequence_num":3,"events":[{"type":"update","tickers":[{"type":"ticker",'
            '"product_id":"BTC-USD","price":"117250.01"}]}]}'
        )
        assert ADAPTER.decode(raw, 0) == Ignored("ticker")

    def test_l2_data_without_events_is_ignored(self) -> None:
        raw = (
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","sequence_num":3,"events":[]}'
        )
        assert isinstance(ADAPTER.decode(raw, 0), Ignored)


class TestBadInput:
    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "{",
            "not json",
            "[]",
            # unknown event type
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","events":[{"type":"partial","product_id":"BTC-USD","updates":[]}]}',
            # no product
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","events":[{"type":"update","updates":[]}]}',
            # no updates
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","events":[{"type":"update","product_id":"BTC-USD"}]}',
            # unknown side
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"buy","price_level":"1","new_quantity":"1"}]}]}',
            # update without a price
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","new_quantity":"1"}]}]}',
            # bad timestamp
            '{"channel":"l2_data","timestamp":"yesterday","events":[{"type":"update","product_id":"BTC-USD","updates":[]}]}',
            # sequence_num not a number
            '{"channel":"l2_data","sequence_num":"x","events":[]}',
        ],
    )
    def test_malformed_frames_raise_parse_error_with_an_excerpt(self, raw: str) -> None:
        with pytest.raises(ParseError) as info:
            ADAPTER.decode(raw, 0)
        assert info.value.venue == "coinbase"
        assert info.value.excerpt == raw[:200]

    def test_unknown_product_raises_unknown_instrument(self) -> None:
        with pytest.raises(UnknownInstrument):
            parse(ADAPTER, frame("ws_l2_update"), 0, {})

    def test_level_with_a_non_number_raises_parse_error(self) -> None:
        raw = (
            '{"channel":"l2_data","timestamp":"2026-07-14T09:30:00Z","events":[{"type":"update",'
            '"product_id":"BTC-USD","updates":[{"side":"bid","price_level":"abc","new_quantity":"1"}]}]}'
        )
        with pytest.raises(ParseError):
            parse(ADAPTER, raw, 0, META)


class TestTimestamp:
    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("2023-02-09T20:32:50.714964855Z", 1675974770_714964855),
            ("2023-02-09T20:32:50.7Z", 1675974770_700000000),
            ("2023-02-09T20:32:50Z", 1675974770_000000000),
            ("2023-02-09T20:32:50.1234567891Z", 1675974770_123456789),  # beyond ns: cut
        ],
    )
    def test_rfc3339_to_nanoseconds(self, text: str, ns: int) -> None:
        assert timestamp_ns(text) == ns

    @pytest.mark.parametrize(
        "text", ["2023-02-09T20:32:50+01:00", "2023-02-09", "2023-02-09T20:32:50.x1Z", "Z"]
    )
    def test_other_forms_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            timestamp_ns(text)


class TestConnectionSequence:
    def test_consecutive_messages_of_a_connection_pass(self) -> None:
        check = ADAPTER.connection_sequence()
        assert isinstance(check, ConnectionSequence)
        names = ["ws_subscriptions", "ws_l2_snapshot", "ws_l2_update", "ws_l2_multi"]
        assert [check.check(frame(n)) for n in names] == [True] * 4

    def test_a_jump_of_more_than_one_is_a_lost_message(self) -> None:
        check = CoinbaseSequence()
        assert check.check(frame("ws_l2_snapshot"))  # 1: the first message sets the start
        assert not check.check(frame("ws_l2_multi"))  # 3: message 2 was lost

    def test_the_first_message_may_start_anywhere(self) -> None:
        check = CoinbaseSequence()
        assert check.check(b'{"channel":"heartbeats","sequence_num":41,"events":[]}')
        assert check.check(b'{"channel":"heartbeats","sequence_num":42,"events":[]}')
        assert not check.check(b'{"channel":"heartbeats","sequence_num":44,"events":[]}')

    def test_spaces_bytes_and_text_are_all_read(self) -> None:
        check = CoinbaseSequence()
        assert check.check('{"channel": "l2_data", "sequence_num": 7, "events": []}')
        assert check.check(b'{"channel": "l2_data", "sequence_num" :  8, "events": []}')
        assert not check.check('{"channel":"l2_data","sequence_num":10,"events":[]}')

    def test_frames_without_the_field_pass_and_keep_the_count(self) -> None:
        check = CoinbaseSequence()
        assert check.check('{"channel":"l2_data","sequence_num":3,"events":[]}')
        assert check.check(frame("ws_error"))
        assert check.check('{"channel":"l2_data","sequence_num":4,"events":[]}')

    def test_each_connection_gets_its_own_counter(self) -> None:
        first, second = ADAPTER.connection_sequence(), ADAPTER.connection_sequence()
        assert first.check('{"sequence_num":100}')
        assert second.check('{"sequence_num":0}')
        assert first.check('{"sequence_num":101}') and second.check('{"sequence_num":1}')


class TestSubscriptions:
    def test_one_level2_frame_per_batch_then_heartbeats_once(self) -> None:
        frames = ADAPTER.subscribe_frames(["BTC-USD", "ETH-USD"], ["level2"])
        assert [json.loads(f) for f in frames] == [
            {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
            {"type": "subscribe", "channel": "heartbeats"},
        ]
        assert frames[-1] == HEARTBEATS_SUBSCRIBE

    def test_batches_follow_the_per_frame_limit(self) -> None:
        symbols = [f"P{i}-USD" for i in range(20)]
        frames = [json.loads(f) for f in ADAPTER.subscribe_frames(symbols, ["level2"])]
        assert [len(f.get("product_ids", [])) for f in frames] == [16, 4, 0]
        assert [f["channel"] for f in frames].count("heartbeats") == 1

    def test_heartbeats_in_channels_is_not_sent_twice(self) -> None:
        frames = ADAPTER.subscribe_frames(["BTC-USD"], ["level2", "heartbeats"])
        assert [json.loads(f)["channel"] for f in frames] == ["level2", "heartbeats"]

    def test_unsubscribe_leaves_heartbeats(self) -> None:
        (text,) = ADAPTER.unsubscribe_frames(["BTC-USD"], ["level2"])
        assert json.loads(text) == {
            "type": "unsubscribe",
            "product_ids": ["BTC-USD"],
            "channel": "level2",
        }

    def test_nothing_to_subscribe_sends_nothing(self) -> None:
        assert ADAPTER.subscribe_frames([], ["level2"]) == []

    @pytest.mark.parametrize("channel", ["level2_batch", "ticker", "l2_data"])
    def test_other_channels_are_refused(self, channel: str) -> None:
        with pytest.raises(ValueError, match="channel"):
            ADAPTER.subscribe_frames(["BTC-USD"], [channel])

    def test_limits_and_keepalive(self) -> None:
        limits = ADAPTER.limits
        assert limits.streams_per_connection == 16
        assert limits.max_frame_bytes >= 64 * 1024 * 1024
        assert limits.control_per_s * 2 <= 8  # two connections' frames fit the IP limit
        assert ADAPTER.keepalive_frame() is None and ADAPTER.open_frames() == []
        url = "wss://advanced-trade-ws.coinbase.com"
        assert ADAPTER.ws_url(url, ["BTC-USD"], ["level2"]) == url

    def test_adapter_declares_the_whole_contract(self) -> None:
        members = [n for n in vars(VenueAdapter) if not n.startswith("_")]
        members += list(VenueAdapter.__annotations__)
        for name in members:
            assert hasattr(ADAPTER, name), name
        assert ADAPTERS == {Venue.COINBASE: ADAPTER}


class TestInstruments:
    def test_products_become_spot_instruments_without_aliases(self) -> None:
        rec = fixture_record("coinbase", "http_products")
        instruments = {i.symbol: i for i in ADAPTER.parse_instruments(rec["url"], rec["data"])}
        assert set(instruments) == {
            "BTC-USD",
            "ETH-USD",
            "SOL-USD",
            "XRP-USD",
            "DOGE-USD",
            "USDT-USD",
            "USDT-USDC",
            "EURC-USDC",
            "BTC-EUR",
            "ETH-BTC",
        }  # BTC-USDC/ETH-USDC are aliases of the -USD books; OLD-USD is disabled
        btc = instruments["BTC-USD"]
        assert (btc.venue, btc.base, btc.quote, btc.kind, btc.tick, btc.lot) == (
            Venue.COINBASE,
            "BTC",
            "USD",
            InstrumentKind.SPOT,
            "0.01",
            "0.00000001",
        )
        assert btc.canonical == "BTC-USD-SPOT"
        assert btc.price_to_units("21921.3") == 2192130
        assert instruments["DOGE-USD"].tick == "0.00001"

    def test_requests_and_http_decode(self) -> None:
        (req,) = ADAPTER.instruments_requests("https://api.coinbase.com/")
        assert req.url == (
            "https://api.coinbase.com/api/v3/brokerage/market/products?product_type=SPOT"
        )
        rec = fixture_record("coinbase", "http_products")
        assert ADAPTER.decode_http(req.key, rec["data"], 0) == InstrumentsUpdate(
            req.key, rec["data"]
        )
        body = '{"error":"INVALID_ARGUMENT","error_details":"bad product_type","message":"bad product_type"}'
        assert ADAPTER.decode_http(req.key, body, 0) == VenueMessage(
            "INVALID_ARGUMENT", "bad product_type"
        )
        assert isinstance(ADAPTER.decode_http("https://api.coinbase.com/x", "{}", 0), Ignored)
        with pytest.raises(ParseError):
            ADAPTER.parse_instruments(req.key, "<html>")

    def test_cached_copy_loads_and_agrees_with_the_fixture(self) -> None:
        rec = fixture_record("coinbase", "http_products")
        parsed = set(ADAPTER.parse_instruments(rec["url"], rec["data"]))
        cached = InstrumentRegistry.load_cached([Venue.COINBASE])
        assert set(cached.venue_instruments(Venue.COINBASE)) == parsed
        assert {i.base for i in parsed} >= {"BTC", "ETH", "SOL", "XRP", "DOGE", "USDT"}
