"""Bybit v5 parsers on the documentation's example frames and frames built in the documented
format (tests/fixtures/bybit/README.md says which is which)."""

from __future__ import annotations

import json
import math

import msgspec
import pytest

from feeds.bybit import ADAPTERS, LINEAR, MAX_ARGS_CHARS, SPOT, BybitAdapter, parse
from feeds.contract import BookMessage, InstrumentsUpdate, VenueAdapter, VenueMessage
from monitor.domain import (
    BookEvent,
    EventKind,
    Ignored,
    InstrumentKind,
    MarkPriceEvent,
    RawBook,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError, UnknownInstrument
from monitor.instruments import InstrumentRegistry
from tests.conftest import fixture_record

MS = 1_000_000
LINEAR_META = {"BTCUSDT": (2, 1.0), "SOLUSDT": (3, 1.0)}
SPOT_META = {"ETHUSDT": (2, 1.0)}


def deeper(adapter: BybitAdapter, depth: int) -> BybitAdapter:
    """The same market with books of another depth."""
    return BybitAdapter(
        adapter.venue,
        adapter.category,
        derivatives=adapter.derivatives,
        limits=adapter.limits,
        weight_limit_per_minute=adapter.weight_limit_per_minute,
        depth=depth,
    )


def frame(name: str) -> str:
    return str(fixture_record("bybit", name)["data"])


def reorder(raw: str, keys: list[str]) -> str:
    """The same message with its top-level keys written in another order."""
    message = json.loads(raw)
    return json.dumps({k: message[k] for k in keys}, separators=(",", ":"))


class TestOrderbookSnapshot:
    def test_linear_doc_snapshot_parses_to_a_snapshot_cut_at_the_topic_depth(self) -> None:
        (event,) = parse(LINEAR, frame("linear_ws_orderbook_snapshot"), 7, LINEAR_META)
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind) == (
            Venue.BYBIT_LINEAR,
            "BTCUSDT",
            EventKind.SNAPSHOT,
        )
        assert (event.first_seq, event.last_seq, event.prev_seq) == (18521288, 18521288, -1)
        assert event.depth_limit == 50
        assert event.ts_event_ns == 1672304484978 * MS
        assert event.ts_recv_ns == 7
        # "16493.50" at 2 decimals is exactly 1649350 units
        assert event.bid_px.tolist() == [1649350, 1649300]
        assert event.bid_qty.tolist() == [0.006, 0.1]
        assert event.ask_px.tolist() == [1661100, 1661200]
        assert event.ask_qty.tolist() == [0.029, 0.213]

    def test_hot_path_decode_keeps_the_raw_level_arrays_untouched(self) -> None:
        decoded = LINEAR.decode(frame("linear_ws_orderbook_snapshot"), 0)
        assert isinstance(decoded, RawBook) and isinstance(decoded, BookMessage)
        assert bytes(decoded.bids) == b'[["16493.50","0.006"],["16493.00","0.100"]]'
        assert bytes(decoded.asks) == b'[["16611.00","0.029"],["16612.00","0.213"]]'
        assert (LINEAR.px_index, LINEAR.qty_index) == (0, 1)

    def test_spot_snapshot_with_ts_before_type_parses_the_same_way(self) -> None:
        raw = frame("spot_ws_orderbook_snapshot")
        assert raw.index('"ts"') < raw.index('"type"')  # spot's key order
        (event,) = parse(SPOT, raw, 0, SPOT_META)
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind, event.depth_limit) == (
            Venue.BYBIT,
            "ETHUSDT",
            EventKind.SNAPSHOT,
            50,
        )
        assert (event.first_seq, event.last_seq) == (4503110, 4503110)
        assert event.ts_event_ns == 1760000000123 * MS
        assert event.bid_px.tolist() == [432155, 432154, 432110]
        assert event.bid_qty.tolist() == [1.2045, 0.5, 12.0]
        assert event.ask_px.tolist() == [432156, 432160]

    @pytest.mark.parametrize("name", ["linear_ws_orderbook_snapshot", "linear_ws_orderbook_delta"])
    def test_key_order_never_matters(self, name: str) -> None:
        raw = frame(name)
        linear_order = reorder(raw, ["topic", "type", "ts", "data", "cts"])
        spot_order = reorder(raw, ["topic", "ts", "type", "data", "cts"])
        data_last = reorder(raw, ["cts", "ts", "type", "topic", "data"])
        a, b, c = (LINEAR.decode(r, 0) for r in (linear_order, spot_order, data_last))
        assert isinstance(a, BookMessage) and isinstance(b, BookMessage)
        assert isinstance(c, BookMessage)
        for other in (b, c):
            assert (other.symbol, other.kind, other.first_seq, other.last_seq, other.limit) == (
                a.symbol,
                a.kind,
                a.first_seq,
                a.last_seq,
                a.limit,
            )
            assert other.ts_event_ns == a.ts_event_ns
            assert bytes(other.bids) == bytes(a.bids) and bytes(other.asks) == bytes(a.asks)

    def test_u_equal_one_is_a_restart_and_overwrites_the_book(self) -> None:
        raw = frame("linear_ws_orderbook_restart")
        assert json.loads(raw)["type"] == "delta"
        (event,) = parse(LINEAR, raw, 0, LINEAR_META)
        assert isinstance(event, BookEvent)
        assert (event.kind, event.first_seq, event.last_seq, event.depth_limit) == (
            EventKind.SNAPSHOT,
            1,
            1,
            200,
        )
        assert event.bid_px.tolist() == [181230] and event.ask_qty.tolist() == [98.1]

    def test_ts_written_as_a_string_is_read_too(self) -> None:
        message = json.loads(frame("linear_ws_orderbook_snapshot"))
        message["ts"] = str(message["ts"])
        decoded = LINEAR.decode(json.dumps(message).encode(), 0)
        assert isinstance(decoded, BookMessage)
        assert decoded.ts_event_ns == 1672304484978 * MS


class TestOrderbookDelta:
    def test_linear_doc_delta_parses_with_u_as_first_and_last_id(self) -> None:
        (event,) = parse(LINEAR, frame("linear_ws_orderbook_delta"), 0, LINEAR_META)
        assert isinstance(event, BookEvent)
        assert event.kind == EventKind.DELTA
        assert (event.first_seq, event.last_seq, event.prev_seq) == (177400507, 177400507, -1)
        assert event.depth_limit == 0
        assert event.ts_event_ns == 1687940967466 * MS
        assert event.bid_px.tolist() == [3024720, 3024540, 3024210, 3024030, 3024000]
        assert event.bid_qty.tolist() == [30.028, 0.224, 1.593, 1.305, 0.0]  # 0 deletes
        assert event.ask_px.tolist() == [
            3024870,
            3024930,
            3024950,
            3024960,
            3025190,
            3025220,
            3025250,
        ]
        assert event.ask_qty.tolist() == [0.0, 0.892, 1.778, 0.0, 2.947, 0.659, 4.591]

    def test_spot_delta_with_an_empty_side(self) -> None:
        raw = frame("spot_ws_orderbook_delta").encode()  # bytes in, as the socket hands them
        decoded = SPOT.decode(raw, 3)
        assert isinstance(decoded, BookMessage)
        assert (decoded.symbol, decoded.kind, decoded.first_seq, decoded.last_seq) == (
            "ETHUSDT",
            EventKind.DELTA,
            4503111,
            4503111,
        )
        assert bytes(decoded.asks) == b"[]"
        (event,) = parse(SPOT, raw, 3, SPOT_META)
        assert isinstance(event, BookEvent)
        assert event.bid_px.tolist() == [432154, 432120]
        assert event.bid_qty.tolist() == [0.0, 2.0]
        assert event.ask_px.size == 0

    def test_deltas_chain_by_plus_one_from_the_snapshot(self) -> None:
        # the spot fixtures are consecutive messages of one topic
        snap = SPOT.decode(frame("spot_ws_orderbook_snapshot"), 0)
        delta = SPOT.decode(frame("spot_ws_orderbook_delta"), 0)
        assert isinstance(snap, BookMessage) and isinstance(delta, BookMessage)
        assert SPOT.sequencing == SeqRule.CONTIGUOUS
        assert delta.first_seq == snap.last_seq + 1


class TestTickers:
    def test_linear_ticker_snapshot_carries_mark_index_funding(self) -> None:
        event = LINEAR.decode(frame("linear_ws_tickers_snapshot"), 11)
        assert event == MarkPriceEvent(
            Venue.BYBIT_LINEAR,
            "BTCUSDT",
            66666.60,
            115418.19,
            -0.005,
            1760342400000 * MS,
            1760325052630 * MS,
            11,
        )

    def test_partial_delta_leaves_missing_fields_nan(self) -> None:
        event = LINEAR.decode(frame("linear_ws_tickers_delta"), 0)
        assert isinstance(event, MarkPriceEvent)
        assert (event.symbol, event.mark_price) == ("BTCUSDT", 66670.10)
        assert math.isnan(event.index_price) and math.isnan(event.funding_rate)
        assert event.next_funding_ns == 0
        assert event.ts_event_ns == 1760325052730 * MS

    def test_futures_ticker_with_empty_funding_fields(self) -> None:
        event = LINEAR.decode(frame("linear_ws_tickers_futures"), 0)
        assert isinstance(event, MarkPriceEvent)
        assert (event.symbol, event.mark_price, event.index_price) == (
            "BTC-26DEC25",
            121144.63,
            114132.51,
        )
        assert math.isnan(event.funding_rate) and event.next_funding_ns == 0

    def test_delta_without_any_field_we_keep_is_ignored(self) -> None:
        raw = (
            '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT",'
            '"lastPrice":"66671.00","volume24h":"73192.1"},"cs":9532239600,"ts":1760325052830}'
        )
        assert LINEAR.decode(raw, 0) == Ignored("tickers")

    def test_spot_tickers_are_ignored(self) -> None:
        assert SPOT.decode(frame("spot_ws_tickers"), 0) == Ignored("tickers")


class TestControlFrames:
    @pytest.mark.parametrize(
        ("adapter", "name"),
        [(SPOT, "spot_ws_pong"), (LINEAR, "linear_ws_pong")],
    )
    def test_pongs_are_ignored(self, adapter: BybitAdapter, name: str) -> None:
        assert adapter.decode(frame(name), 0) == Ignored("pong")

    def test_option_style_pong_is_ignored(self) -> None:
        assert LINEAR.decode('{"args":["1672916271846"],"op":"pong"}', 0) == Ignored("pong")

    @pytest.mark.parametrize(
        ("adapter", "name"),
        [(SPOT, "spot_ws_subscribe_ack"), (LINEAR, "linear_ws_subscribe_ack")],
    )
    def test_subscribe_acks_are_ignored(self, adapter: BybitAdapter, name: str) -> None:
        assert adapter.decode(frame(name), 0) == Ignored("ack subscribe")

    def test_refused_subscription_names_the_symbol_of_its_topic(self) -> None:
        assert LINEAR.decode(frame("linear_ws_subscribe_failed"), 0) == VenueMessage(
            "subscribe_failed",
            "error:handler not found,topic:orderbook.500.BTCUSDT",
            symbol="BTCUSDT",
        )

    def test_refusal_without_a_topic_has_no_symbol(self) -> None:
        raw = '{"success":false,"ret_msg":"args size >10","conn_id":"x","op":"subscribe"}'
        assert SPOT.decode(raw, 0) == VenueMessage("subscribe_failed", "args size >10")

    def test_refused_ticker_topic_names_its_symbol(self) -> None:
        raw = '{"success":false,"ret_msg":"Invalid symbol :[tickers.NOPEUSDT]","op":"subscribe"}'
        decoded = LINEAR.decode(raw, 0)
        assert isinstance(decoded, VenueMessage) and decoded.symbol == "NOPEUSDT"

    def test_other_topics_are_ignored(self) -> None:
        raw = (
            '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":'
            '1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",'
            '"i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}'
        )
        assert LINEAR.decode(raw, 0) == Ignored("publicTrade")


class TestBadInput:
    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "{",
            "not json",
            "[]",
            # no u
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[]}}',
            # u not an int
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":"x"}}',
            # no ask side
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"u":5}}',
            # data is not an object
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":[]}',
            # unknown type
            '{"topic":"orderbook.50.BTCUSDT","type":"partial","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":5}}',
            # depth in the topic is not a number
            '{"topic":"orderbook.x.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":5}}',
            # ts not a number
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":"soon","data":{"s":"BTCUSDT","b":[],"a":[],"u":5}}',
            # mark price not a number
            '{"topic":"tickers.BTCUSDT","type":"delta","ts":1,"data":{"symbol":"BTCUSDT","markPrice":"abc"}}',
            # ticker without symbol
            '{"topic":"tickers.BTCUSDT","type":"delta","ts":1,"data":{"markPrice":"1"}}',
        ],
    )
    def test_malformed_frames_raise_parse_error_with_an_excerpt(self, raw: str) -> None:
        with pytest.raises(ParseError) as info:
            LINEAR.decode(raw, 0)
        assert info.value.venue == "bybit_linear"
        assert info.value.excerpt == raw[:200]

    def test_unknown_symbol_raises_unknown_instrument(self) -> None:
        with pytest.raises(UnknownInstrument):
            parse(LINEAR, frame("linear_ws_orderbook_delta"), 0, {})

    def test_level_with_a_non_number_raises_parse_error(self) -> None:
        raw = (
            '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,'
            '"data":{"s":"BTCUSDT","b":[["abc","1"]],"a":[],"u":5,"seq":9}}'
        )
        with pytest.raises(ParseError):
            parse(LINEAR, raw, 0, LINEAR_META)


class TestSubscriptions:
    def test_spot_frames_carry_at_most_ten_args(self) -> None:
        symbols = [f"S{i}USDT" for i in range(12)]
        frames = [json.loads(f) for f in SPOT.subscribe_frames(symbols, ["orderbook.50"])]
        assert [f["op"] for f in frames] == ["subscribe", "subscribe"]
        assert [len(f["args"]) for f in frames] == [10, 2]
        assert frames[0]["args"][0] == "orderbook.50.S0USDT"
        assert frames[1]["args"] == ["orderbook.50.S10USDT", "orderbook.50.S11USDT"]
        assert len({f["req_id"] for f in frames}) == 2

    def test_linear_subscribes_book_and_tickers_per_symbol(self) -> None:
        frames = deeper(LINEAR, 200).subscribe_frames(
            ["BTCUSDT", "ETHUSDT"], ["orderbook.200", "tickers"]
        )
        assert len(frames) == 1
        assert json.loads(frames[0]) == {
            "req_id": "subscribe-1",
            "op": "subscribe",
            "args": [
                "orderbook.200.BTCUSDT",
                "tickers.BTCUSDT",
                "orderbook.200.ETHUSDT",
                "tickers.ETHUSDT",
            ],
        }
        many = LINEAR.subscribe_frames([f"S{i}" for i in range(120)], ["orderbook.50"])
        assert [len(json.loads(f)["args"]) for f in many] == [50, 50, 20]

    def test_unsubscribe_frames_mirror_subscribe(self) -> None:
        (text,) = deeper(SPOT, 1000).unsubscribe_frames(["BTCUSDT"], ["orderbook.1000"])
        assert json.loads(text) == {
            "req_id": "unsubscribe-1",
            "op": "unsubscribe",
            "args": ["orderbook.1000.BTCUSDT"],
        }

    @pytest.mark.parametrize(
        ("adapter", "channel"),
        [
            (LINEAR, "orderbook.1"),  # snapshot-only: no delta chain to check
            (SPOT, "orderbook.1"),
            (LINEAR, "orderbook.25"),  # an options depth
            (LINEAR, "orderbook.x"),
            (LINEAR, "depth"),
            (LINEAR, "orderbook.200"),  # deeper than the books this adapter keeps
            (SPOT, "tickers"),  # spot tickers carry no mark price
        ],
    )
    def test_channels_the_adapter_cannot_serve_are_refused(
        self, adapter: BybitAdapter, channel: str
    ) -> None:
        with pytest.raises(ValueError, match=channel.split(".", maxsplit=1)[0]):
            adapter.subscribe_frames(["BTCUSDT"], [channel])

    def test_plain_orderbook_takes_the_adapter_depth(self) -> None:
        assert SPOT.topics(["BTCUSDT"], ["orderbook"]) == ["orderbook.50.BTCUSDT"]
        assert deeper(LINEAR, 1000).topics(["BTCUSDT"], ["orderbook"]) == ["orderbook.1000.BTCUSDT"]
        assert (SPOT.book_depth, LINEAR.book_depth, deeper(LINEAR, 200).book_depth) == (
            50,
            50,
            200,
        )

    @pytest.mark.parametrize("depth", [1, 25, 500])
    def test_depths_without_a_delta_stream_are_refused(self, depth: int) -> None:
        with pytest.raises(ValueError, match="depth"):
            deeper(LINEAR, depth)

    def test_one_connection_of_long_symbols_stays_under_the_args_limit(self) -> None:
        for adapter in (SPOT, LINEAR):
            n = adapter.limits.streams_per_connection
            args = ["orderbook.1000.1000000BABYDOGEUSDT"] * n
            assert len(json.dumps(args, separators=(",", ":"))) < MAX_ARGS_CHARS

    def test_keepalive_is_a_bybit_ping(self) -> None:
        for adapter in (SPOT, LINEAR):
            text = adapter.keepalive_frame()
            assert text is not None
            assert json.loads(text)["op"] == "ping"
            assert adapter.keepalive_s == 20.0 and adapter.ping_interval_s is None
            assert adapter.open_frames() == []

    def test_urls_and_rest_requests(self) -> None:
        base = "wss://stream.bybit.com/v5/public/linear"
        assert LINEAR.ws_url(base, ["BTCUSDT"], ["orderbook.50"]) == base
        assert LINEAR.snapshot_request("https://api.bybit.com", "BTCUSDT", 50) is None
        (spot_req,) = SPOT.instruments_requests("https://api.bybit.com/")
        assert spot_req.url == "https://api.bybit.com/v5/market/instruments-info?category=spot"
        assert spot_req.key == spot_req.url
        (linear_req,) = LINEAR.instruments_requests("https://api.bybit.com")
        assert linear_req.url == (
            "https://api.bybit.com/v5/market/instruments-info?category=linear&limit=1000"
        )

    def test_adapters_declare_the_whole_contract(self) -> None:
        members = [n for n in vars(VenueAdapter) if not n.startswith("_")]
        members += list(VenueAdapter.__annotations__)
        for venue, adapter in ADAPTERS.items():
            assert adapter.venue == venue
            for name in members:
                assert hasattr(adapter, name), name
        assert set(ADAPTERS) == {Venue.BYBIT, Venue.BYBIT_LINEAR}
        assert SPOT.limits.topics_per_frame == 10


class TestInstruments:
    def test_the_last_page_has_no_next_page(self) -> None:
        for name, adapter in (("linear_http_instruments", LINEAR), ("spot_http_instruments", SPOT)):
            rec = fixture_record("bybit", name)
            (request,) = adapter.instruments_requests("https://api.bybit.com")
            assert adapter.next_instruments_page(request, rec["data"]) is None
        assert LINEAR.next_instruments_page(request, "not json") is None

    def test_spot_instruments_read_tick_and_base_precision(self) -> None:
        rec = fixture_record("bybit", "spot_http_instruments")
        instruments = {i.symbol: i for i in SPOT.parse_instruments(rec["url"], rec["data"])}
        assert set(instruments) == {
            "BTCUSDT",
            "ETHUSDT",
            "SOLUSDT",
            "XRPUSDT",
            "DOGEUSDT",
            "BTCUSDC",
            "ETHUSDC",
            "USDCUSDT",
            "ETHBTC",
        }
        btc = instruments["BTCUSDT"]
        assert (btc.venue, btc.base, btc.quote, btc.kind) == (
            Venue.BYBIT,
            "BTC",
            "USDT",
            InstrumentKind.SPOT,
        )
        assert (btc.tick, btc.lot, btc.contract_size, btc.inverse) == (
            "0.1",
            "0.000001",
            1.0,
            False,
        )
        assert btc.canonical == "BTC-USDT-SPOT"
        assert instruments["DOGEUSDT"].tick == "0.00001"

    def test_linear_instruments_are_perps_and_futures_in_base_coin(self) -> None:
        rec = fixture_record("bybit", "linear_http_instruments")
        instruments = {i.symbol: i for i in LINEAR.parse_instruments(rec["url"], rec["data"])}
        assert "NEWUSDT" not in instruments  # PreLaunch: no feed before continuous trading
        btc = instruments["BTCUSDT"]
        assert (btc.kind, btc.tick, btc.lot, btc.contract_size, btc.price_precision) == (
            InstrumentKind.PERP,
            "0.1",  # "0.10": the venue's padding is dropped
            "0.001",
            1.0,
            2,
        )
        assert btc.price_decimals == 2 and btc.tick_units == 10
        assert instruments["BTCPERP"].canonical == "BTC-USDC-PERP"
        assert instruments["BTC-25SEP26"].kind == InstrumentKind.FUTURE
        assert instruments["SOLUSDT"].price_to_units("181.230") == 181230

    def test_error_answer_raises_parse_error(self) -> None:
        body = '{"retCode":10001,"retMsg":"Illegal category","result":{},"retExtInfo":{},"time":1}'
        with pytest.raises(ParseError):
            LINEAR.parse_instruments("k", body)
        with pytest.raises(ParseError):
            LINEAR.parse_instruments("k", "<html>")

    def test_decode_http_passes_metadata_through_and_reports_errors(self) -> None:
        rec = fixture_record("bybit", "linear_http_instruments")
        decoded = LINEAR.decode_http(rec["url"], rec["data"], 0)
        assert decoded == InstrumentsUpdate(rec["url"], rec["data"])
        body = '{"retCode":10006,"retMsg":"Too many visits!","result":{},"time":1}'
        assert LINEAR.decode_http(rec["url"], body, 0) == VenueMessage("10006", "Too many visits!")
        assert isinstance(LINEAR.decode_http("https://api.bybit.com/other", "{}", 0), Ignored)

    @pytest.mark.parametrize(
        ("adapter", "name"),
        [(SPOT, "spot_http_instruments"), (LINEAR, "linear_http_instruments")],
    )
    def test_cached_copy_loads_and_agrees_with_the_fixture(
        self, adapter: BybitAdapter, name: str
    ) -> None:
        rec = fixture_record("bybit", name)
        parsed = set(adapter.parse_instruments(rec["url"], rec["data"]))
        cached = InstrumentRegistry.load_cached([adapter.venue])
        assert set(cached.venue_instruments(adapter.venue)) == parsed
        assert {i.base for i in parsed} >= {"BTC", "ETH", "SOL", "XRP", "DOGE"}


def test_raw_levels_survive_as_msgspec_raw() -> None:
    decoded = SPOT.decode(frame("spot_ws_orderbook_snapshot"), 0)
    assert isinstance(decoded, BookMessage)
    assert isinstance(decoded.bids, msgspec.Raw)
