"""Hyperliquid adapter on frames in the documented format (tests/fixtures/hyperliquid, README)."""

from __future__ import annotations

import json
import math

import pytest

from feeds.contract import (
    BookMessage,
    Checksum,
    HttpRequest,
    InstrumentsUpdate,
    SnapshotSource,
    VenueAdapter,
    VenueMessage,
)
from feeds.hyperliquid import ADAPTERS, PERP, parse
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
from monitor.errors import ParseError, UnknownInstrument
from monitor.instruments import InstrumentRegistry
from tests.conftest import fixture_record

INFO_URL = "https://api.hyperliquid.xyz/info"
HOUR_NS = 3_600 * 10**9


def frame(name: str) -> str:
    text: str = fixture_record("hyperliquid", name)["data"]
    return text


class TestL2Book:
    def test_every_book_message_is_a_snapshot_cut_at_20_levels(self) -> None:
        decoded = PERP.decode(frame("ws_l2book"), 9)
        assert isinstance(decoded, BookMessage)
        assert (decoded.symbol, decoded.kind, decoded.limit) == ("BTC", EventKind.SNAPSHOT, 20)
        assert (decoded.first_seq, decoded.last_seq, decoded.prev_seq) == (-1, 1754450974231, -1)
        assert decoded.ts_event_ns == 1754450974231 * 1_000_000
        assert not decoded.has_checksum
        assert bytes(decoded.bids) == (
            b'[["113377.0","7.6699"],["113376.0","0.0001"],["113375.0","0.4321"],'
            b'["113372.0","1.2"],["113370.0","0.05"]]'
        )
        assert bytes(decoded.asks).startswith(b'[["113378.0","2.94"],["113379.0","0.00017"],')

    def test_parse_gives_exact_price_units_at_the_perp_precision(self) -> None:
        (event,) = parse(PERP, frame("ws_l2book"), 4, {"BTC": (1, 1.0)})
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind, event.depth_limit) == (
            Venue.HYPERLIQUID,
            "BTC",
            EventKind.SNAPSHOT,
            20,
        )
        assert event.bid_px.tolist() == [1133770, 1133760, 1133750, 1133720, 1133700]
        assert event.bid_qty.tolist() == [7.6699, 0.0001, 0.4321, 1.2, 0.05]
        assert event.ask_px.tolist()[0] == 1133780 and event.ask_qty.tolist()[-1] == 3.33333

    def test_coin_names_are_case_sensitive(self) -> None:
        decoded = PERP.decode(frame("ws_l2book_kpepe"), 0)
        assert isinstance(decoded, BookMessage)
        assert decoded.symbol == "kPEPE"
        (event,) = parse(PERP, frame("ws_l2book_kpepe"), 0, {"kPEPE": (6, 1.0)})
        assert isinstance(event, BookEvent)
        assert event.bid_px.tolist() == [11051, 11050]
        with pytest.raises(UnknownInstrument):
            parse(PERP, frame("ws_l2book_kpepe"), 0, {"KPEPE": (6, 1.0)})

    def test_an_empty_side_is_an_empty_array(self) -> None:
        text = '{"channel":"l2Book","data":{"coin":"ETH","time":5,"levels":[[],[{"px":"1.0","sz":"2","n":1}]]}}'
        decoded = PERP.decode(text, 0)
        assert isinstance(decoded, BookMessage)
        assert (bytes(decoded.bids), bytes(decoded.asks)) == (b"[]", b'[["1.0","2"]]')

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            '{"channel":"l2Book"}',
            '{"channel":"l2Book","data":{"coin":"BTC","levels":[[],[]]}}',
            '{"channel":"l2Book","data":{"time":1,"levels":[[],[]]}}',
            '{"channel":"l2Book","data":{"coin":"BTC","time":1}}',
            '{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[]]}}',
            '{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[{"px":"1"}],[]]}}',
            '{"channel":"l2Book","data":"BTC"}',
            '{"data":{}}',
            "[]",
        ],
    )
    def test_malformed_frames_raise_parse_error(self, text: str) -> None:
        with pytest.raises(ParseError):
            PERP.decode(text, 0)


class TestOtherMessages:
    def test_active_asset_ctx_is_a_mark_price_event(self) -> None:
        recv = 1754450974 * 10**9
        event = PERP.decode(frame("ws_active_asset_ctx"), recv)
        assert event == MarkPriceEvent(
            Venue.HYPERLIQUID,
            "BTC",
            113377.0,
            113350.0,  # the oracle price stands for the index
            0.0000125,
            1754452800 * 10**9,  # funding on the next whole hour (04:00 UTC)
            recv,
            recv,
        )

    def test_fields_a_context_lacks_are_nan(self) -> None:
        text = '{"channel":"activeAssetCtx","data":{"coin":"@107","ctx":{"markPx":"41.2","midPx":"41.2"}}}'
        event = PERP.decode(text, HOUR_NS)
        assert isinstance(event, MarkPriceEvent)
        assert event.mark_price == 41.2
        assert math.isnan(event.index_price) and math.isnan(event.funding_rate)
        assert event.next_funding_ns == 2 * HOUR_NS

    def test_bad_context_numbers_raise(self) -> None:
        with pytest.raises(ParseError):
            PERP.decode(
                '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"markPx":"x"}}}', 0
            )
        with pytest.raises(ParseError):
            PERP.decode('{"channel":"activeAssetCtx","data":{"coin":"BTC"}}', 0)

    def test_pong_and_acks_are_ignored(self) -> None:
        assert PERP.decode(frame("ws_pong"), 0) == Ignored("pong")
        assert PERP.decode(frame("ws_subscription_response"), 0) == Ignored("subscriptionResponse")
        assert PERP.decode('{"channel":"trades","data":[{"coin":"BTC"}]}', 0) == Ignored("trades")

    def test_error_channel_is_a_venue_message_naming_the_coin(self) -> None:
        assert PERP.decode(frame("ws_error"), 0) == VenueMessage(
            "error", 'Invalid subscription {"type":"l2Book","coin":"BTCX"}', symbol="BTCX"
        )
        assert PERP.decode('{"channel":"error","data":"rate limited"}', 0) == VenueMessage(
            "error", "rate limited"
        )


class TestSubscriptions:
    def test_one_coin_per_subscribe_frame(self) -> None:
        frames = [
            json.loads(f)
            for f in PERP.subscribe_frames(["BTC", "kPEPE"], ["l2Book", "activeAssetCtx"])
        ]
        assert frames == [
            {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}},
            {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}},
            {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "kPEPE"}},
            {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "kPEPE"}},
        ]
        assert PERP.limits.topics_per_frame == 1

    def test_unsubscribe_and_unknown_channels(self) -> None:
        (text,) = PERP.unsubscribe_frames(["ETH"], ["l2Book"])
        assert json.loads(text) == {
            "method": "unsubscribe",
            "subscription": {"type": "l2Book", "coin": "ETH"},
        }
        with pytest.raises(ValueError, match="trades"):
            PERP.subscribe_frames(["ETH"], ["trades"])

    def test_limits_keep_within_the_documented_per_ip_caps(self) -> None:
        limits = PERP.limits
        assert limits.streams_per_connection * 10 <= 1000  # 1000 subscriptions over 10 connections
        assert limits.control_per_s * 60 * 10 <= 2000  # 2000 messages a minute per IP

    def test_connection_details_and_declared_rules(self) -> None:
        assert (
            PERP.ws_url("wss://api.hyperliquid.xyz/ws", ["BTC"], ["l2Book"])
            == "wss://api.hyperliquid.xyz/ws"
        )
        assert json.loads(PERP.keepalive_frame() or "") == {"method": "ping"}
        assert PERP.keepalive_s == 30.0 and PERP.keepalive_s < 60  # closed after 60 s of silence
        assert PERP.open_frames() == [] and PERP.snapshot_request(INFO_URL, "BTC", 20) is None
        assert (PERP.sequencing, PERP.snapshot_source, PERP.checksum) == (
            SeqRule.NONE,
            SnapshotSource.STREAM,
            Checksum.NONE,
        )
        assert (PERP.px_index, PERP.qty_index, PERP.book_depth) == (0, 1, 0)
        assert ADAPTERS == {Venue.HYPERLIQUID: PERP}

    def test_adapter_has_everything_the_contract_names(self) -> None:
        names = set(VenueAdapter.__annotations__) | {
            n for n in vars(VenueAdapter) if not n.startswith("_")
        }
        assert {n for n in names if not hasattr(PERP, n)} == set()


class TestInstruments:
    def test_requests_are_posts_keyed_by_what_they_ask(self) -> None:
        assert PERP.instruments_requests("https://api.hyperliquid.xyz/") == [
            HttpRequest(INFO_URL, f"{INFO_URL}#meta", '{"type":"meta"}', 20),
            HttpRequest(INFO_URL, f"{INFO_URL}#spotMeta", '{"type":"spotMeta"}', 20),
        ]
        passed = PERP.decode_http(f"{INFO_URL}#meta", "{}", 0)
        assert isinstance(passed, InstrumentsUpdate) and passed.url == f"{INFO_URL}#meta"
        assert isinstance(PERP.decode_http(f"{INFO_URL}#l2Book", "{}", 0), Ignored)

    def test_perp_tick_is_the_finest_price_the_decimals_rule_allows(self) -> None:
        text = fixture_record("hyperliquid", "http_meta")["data"]
        perps = {i.symbol: i for i in PERP.parse_instruments(f"{INFO_URL}#meta", text)}
        assert perps["BTC"] == Instrument(
            Venue.HYPERLIQUID,
            "BTC",
            "BTC",
            "USDC",
            InstrumentKind.PERP,
            "0.1",
            "0.00001",
            contract_size=1.0,
            price_precision=1,
            qty_precision=5,
        )
        assert (perps["ETH"].tick, perps["SOL"].tick, perps["XRP"].tick) == (
            "0.01",
            "0.0001",
            "0.000001",
        )
        assert (perps["DOGE"].lot, perps["kPEPE"].base) == ("1", "kPEPE")
        assert "MATIC" not in perps  # delisted

    def test_spot_pairs_resolve_their_tokens(self) -> None:
        text = fixture_record("hyperliquid", "http_spot_meta")["data"]
        spot = {i.symbol: i for i in PERP.parse_instruments(f"{INFO_URL}#spotMeta", text)}
        assert spot["@107"] == Instrument(
            Venue.HYPERLIQUID,
            "@107",
            "HYPE",
            "USDC",
            InstrumentKind.SPOT,
            "0.000001",
            "0.01",
            price_precision=6,
            qty_precision=2,
        )
        assert (spot["PURR/USDC"].base, spot["PURR/USDC"].tick) == ("PURR", "0.00000001")

    def test_malformed_metadata_raises(self) -> None:
        with pytest.raises(ParseError):
            PERP.parse_instruments(f"{INFO_URL}#meta", '{"universe":[{"name":"BTC"}]}')
        with pytest.raises(ParseError):
            PERP.parse_instruments(f"{INFO_URL}#spotMeta", "null")

    def test_cached_copy_loads_and_agrees_with_the_fixtures(self) -> None:
        parsed = []
        for name in ("http_meta", "http_spot_meta"):
            record = fixture_record("hyperliquid", name)
            parsed += PERP.parse_instruments(record["url"], record["data"])
        cached = InstrumentRegistry.load_cached([Venue.HYPERLIQUID])
        assert sorted(cached, key=lambda i: i.symbol) == sorted(parsed, key=lambda i: i.symbol)
        assert {"BTC", "ETH", "SOL", "XRP", "DOGE"} <= {i.symbol for i in cached}
