"""Binance parsers on frames captured from the venue (tests/fixtures/binance)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feeds.binance import SPOT, USDM, parse
from feeds.contract import InstrumentsUpdate, VenueMessage
from monitor.domain import BookEvent, EventKind, Ignored, MarkPriceEvent, RawBook, Venue
from monitor.errors import ParseError, UnknownInstrument
from tests.conftest import fixture_record

SPOT_META = {"NKNUSDT": (8, 1.0)}
USDM_META = {"SUSHIUSDT": (4, 1.0)}


class TestSpotDepthUpdate:
    def test_combined_stream_diff_parses_to_a_delta_with_exact_levels(self) -> None:
        rec = fixture_record("binance", "spot_ws_depth_update")
        (event,) = parse(SPOT, rec["data"], 17, SPOT_META)
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind) == (
            Venue.BINANCE,
            "NKNUSDT",
            EventKind.DELTA,
        )
        assert (event.first_seq, event.last_seq, event.prev_seq) == (499869750, 499869752, -1)
        assert event.ts_event_ns == 1633998512068 * 1_000_000
        assert event.ts_recv_ns == 17
        # "0.35130000" at 8 decimals is exactly 35130000 units
        assert event.bid_px.tolist() == [35130000, 34750000, 34640000]
        assert event.bid_qty.tolist() == [6195.0, 5548.0, 6222.0]
        assert event.ask_px.dtype == np.int64 and event.ask_px.size == 0

    def test_hot_path_decode_keeps_the_raw_level_arrays_untouched(self) -> None:
        rec = fixture_record("binance", "spot_ws_depth_update")
        decoded = SPOT.decode(rec["data"], 0)
        assert isinstance(decoded, RawBook)  # the decoded payload itself is the event
        assert (
            decoded.symbol,
            decoded.kind,
            decoded.first_seq,
            decoded.last_seq,
            decoded.prev_seq,
        ) == ("NKNUSDT", EventKind.DELTA, 499869750, 499869752, -1)
        assert decoded.ts_event_ns == 1633998512068 * 1_000_000
        assert bytes(decoded.bids).startswith(b'[["0.35130000","6195.00000000"]')
        assert bytes(decoded.asks) == b"[]"

    def test_raw_stream_payload_without_envelope_parses_the_same(self) -> None:
        rec = fixture_record("binance", "spot_ws_depth_update")
        inner = json.dumps(json.loads(rec["data"])["data"])
        (event,) = parse(SPOT, inner, 0, SPOT_META)
        assert isinstance(event, BookEvent)
        assert event.last_seq == 499869752


class TestSpotSnapshot:
    def test_rest_depth_snapshot_parses_with_last_update_id_and_limit(self) -> None:
        rec = fixture_record("binance", "spot_http_depth_snapshot")
        (event,) = parse(SPOT, rec["data"], 5, SPOT_META, kind="http", url=rec["url"])
        assert isinstance(event, BookEvent)
        assert event.kind == EventKind.SNAPSHOT
        assert event.last_seq == 499869752
        assert event.depth_limit == 1000
        assert event.bid_px[0] == 35210000 and event.bid_qty[0] == 672.0
        assert event.bid_px.size == 609 and event.ask_px.size == 1000
        assert np.all(np.diff(event.bid_px) < 0) and np.all(np.diff(event.ask_px) > 0)
        # the spot snapshot carries no event time: receive time stands in
        assert event.ts_event_ns == 5


class TestUsdmDepthUpdate:
    def test_futures_diff_carries_previous_update_id(self) -> None:
        rec = fixture_record("binance", "usdm_ws_depth_update")
        (event,) = parse(USDM, rec["data"], 0, USDM_META)
        assert isinstance(event, BookEvent)
        assert (event.first_seq, event.last_seq, event.prev_seq) == (
            600859599090,
            600859600917,
            600859598061,
        )
        assert event.bid_px.tolist() == [75040, 76090, 76110]
        assert event.bid_qty.tolist() == [813.0, 0.0, 2.0]  # 0 deletes the level
        assert event.ask_px.tolist() == [76150, 76220]

    def test_futures_snapshot_uses_the_venue_event_time(self) -> None:
        rec = fixture_record("binance", "usdm_http_depth_snapshot")
        (event,) = parse(USDM, rec["data"], 0, USDM_META, kind="http", url=rec["url"])
        assert isinstance(event, BookEvent)
        assert event.last_seq == 600859605926
        assert event.ts_event_ns == 1626992741264 * 1_000_000

    def test_mark_price_update_parses_mark_index_and_funding(self) -> None:
        # the payload of Binance's USD-M "Mark Price Stream" documentation (no recording holds one)
        raw = (
            '{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000",'
            '"i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}'
        )
        event = USDM.decode(raw, 9)
        assert event == MarkPriceEvent(
            Venue.BINANCE_FUTURES,
            "BTCUSDT",
            11794.15,
            11784.62659091,
            0.00038167,
            1562306400000 * 1_000_000,
            1562305380000 * 1_000_000,
            9,
        )


class TestOtherMessages:
    @pytest.mark.parametrize("name", ["spot_ws_book_ticker", "usdm_ws_agg_trade"])
    def test_channels_the_book_does_not_use_are_ignored(self, name: str) -> None:
        rec = fixture_record("binance", name)
        adapter = SPOT if name.startswith("spot") else USDM
        assert isinstance(adapter.decode(rec["data"], 0), Ignored)

    def test_subscribe_ack_is_ignored_and_error_reply_is_a_venue_message(self) -> None:
        assert SPOT.decode('{"result":null,"id":1}', 0) == Ignored("ack")
        assert SPOT.decode(
            '{"code":2,"msg":"Invalid request: unknown variant"}', 0
        ) == VenueMessage("2", "Invalid request: unknown variant")

    def test_rest_error_body_is_a_venue_message_not_a_book(self) -> None:
        url = "https://api.binance.com/api/v3/depth?symbol=NOPE&limit=1000"
        assert SPOT.decode_http(url, '{"code":-1121,"msg":"Invalid symbol."}', 0) == VenueMessage(
            "-1121", "Invalid symbol."
        )

    def test_exchange_info_is_handed_to_the_registry(self) -> None:
        url = "https://api.binance.com/api/v3/exchangeInfo"
        assert isinstance(SPOT.decode_http(url, '{"symbols":[]}', 0), InstrumentsUpdate)


class TestBadInput:
    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "{",
            "not json",
            '{"stream":"x@depth","data":{"e":"depthUpdate","s":"NKNUSDT","U":1}}',  # no u/b/a
            '{"e":"depthUpdate","s":"NKNUSDT","U":"one","u":2,"b":[],"a":[]}',  # U not an int
        ],
    )
    def test_malformed_frames_raise_parse_error_with_an_excerpt(self, raw: str) -> None:
        with pytest.raises(ParseError) as info:
            SPOT.decode(raw, 0)
        assert info.value.venue == "binance"
        assert info.value.excerpt == raw[:200]

    def test_unknown_symbol_raises_unknown_instrument(self) -> None:
        rec = fixture_record("binance", "spot_ws_depth_update")
        with pytest.raises(UnknownInstrument):
            parse(SPOT, rec["data"], 0, {})

    def test_level_with_a_non_number_raises_parse_error(self) -> None:
        raw = '{"e":"depthUpdate","E":1,"s":"NKNUSDT","U":1,"u":2,"b":[["abc","1"]],"a":[]}'
        with pytest.raises(ParseError):
            parse(SPOT, raw, 0, SPOT_META)


class TestUrls:
    def test_stream_url_and_subscribe_frames_follow_binance_naming(self) -> None:
        url = SPOT.stream_url(
            "wss://stream.binance.com:9443/stream", ["BTCUSDT", "ETHUSDT"], ["depth@100ms"]
        )
        assert (
            url
            == "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
        )
        frames = SPOT.subscribe_frames(["BTCUSDT"] * 3, ["depth@100ms"], per_frame=2)
        assert len(frames) == 2 and '"method":"SUBSCRIBE"' in frames[0]

    def test_snapshot_urls(self) -> None:
        assert SPOT.snapshot_url("https://api.binance.com", "BTCUSDT", 1000) == (
            "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"
        )
        assert USDM.snapshot_url("https://fapi.binance.com/", "BTCUSDT", 1000) == (
            "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
        )
