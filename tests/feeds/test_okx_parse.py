"""OKX v5 parsers on real frames (tests/fixtures/okx, tests/recordings/okx-2022-05-13.jsonl.gz)
and on frames constructed in the documented format (see tests/fixtures/okx/README.md).

Run as a module to rebuild the offline instrument cache: ``python -m tests.feeds.test_okx_parse``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
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
from feeds.okx import ADAPTERS, OKX, OkxAdapter, checksum, index_id, okx_number, parse
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
from monitor.instruments import CACHE_DIR, InstrumentRegistry
from tests.conftest import OKX_RECORDING, fixture_record

MS = 1_000_000
WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
NAN = float("nan")


def _recording() -> list[dict[str, Any]]:
    with gzip.open(OKX_RECORDING, "rt") as f:
        return [json.loads(line) for line in f]


RECORDING = _recording()


def _levels(raw: bytes | msgspec.Raw) -> list[list[str]]:
    levels: list[list[str]] = json.loads(bytes(raw))
    return levels


def _same_event(a: MarkPriceEvent, b: MarkPriceEvent) -> bool:
    """Field-wise equality where NaN equals NaN (NaN = the message does not carry it)."""
    for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True


def _recorded_instruments() -> list[Instrument]:
    """parse_instruments over the first SPOT, SWAP and FUTURES answers of the recording."""
    seen: set[str] = set()
    out: list[Instrument] = []
    for rec in RECORDING:
        url = rec["url"]
        if rec["kind"] != "http" or "OPTION" in url or url in seen:
            continue
        seen.add(url)
        out += OKX.parse_instruments(url, rec["data"])
    return out


def _fixture_instruments() -> list[Instrument]:
    out: list[Instrument] = []
    for name in ("http_instruments_spot_modern", "http_instruments_swap_modern"):
        rec = fixture_record("okx", name)
        out += OKX.parse_instruments(rec["url"], rec["data"])
    return out


def build_registry() -> InstrumentRegistry:
    """What config/instruments/okx.json.gz holds: the 2022 answers, today's fixture on top."""
    return InstrumentRegistry(_recorded_instruments()).merge(
        InstrumentRegistry(_fixture_instruments())
    )


# --- checksum -------------------------------------------------------------------------------
class _StringBook:
    """A book kept as Decimal price -> the (price, size) strings OKX last wrote for it."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for level in levels:
                px, sz = level[0], level[1]
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)

    def top(self, depth: int = 25) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)[:depth]]
        asks = [self.asks[p] for p in sorted(self.asks)[:depth]]
        return bids, asks


class TestChecksum:
    def test_worked_examples_of_the_okx_docs(self) -> None:
        # "3366.1:7:3366.8:9:3366:6:3368:8" -> -1881014294 (unsigned 2413953002)
        assert checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == (
            -1881014294
        )
        # "3366.1:7:3366.8:9:3368:8:3372:8": the ask side runs on after the bids end
        assert (
            checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")])
            == 831078360
        )

    def test_only_the_top_25_levels_of_each_side_count(self) -> None:
        bids = [(str(1000 - i), "1") for i in range(30)]
        asks = [(str(2000 + i), "2") for i in range(30)]
        assert checksum(bids, asks) == checksum(bids[:25], asks[:25])
        assert checksum(bids, asks) != checksum(bids[:24], asks[:25])

    def test_every_book_frame_of_the_real_recording_matches_its_checksum(self) -> None:
        """The 2022 recording replays with 0 checksum failures at the parser level.

        The book is kept with the wire strings and the checksum of every snapshot and update
        is recomputed from its top 25 levels after the frame is applied; a second book keeps
        only exact values and writes them back the way OKX does (okx_number), which is what
        a kernel holding integer price units must do.
        """
        instruments = {i.symbol: i for i in _recorded_instruments()}
        books: dict[str, _StringBook] = {}
        exact: dict[str, tuple[dict[int, Decimal], dict[int, Decimal]]] = {}
        checked = {EventKind.SNAPSHOT: 0, EventKind.DELTA: 0}
        for rec in RECORDING:
            if rec["kind"] != "ws":
                continue
            decoded = OKX.decode(rec["data"], 0)
            if not isinstance(decoded, BookMessage):
                continue
            bids, asks = _levels(decoded.bids), _levels(decoded.asks)
            inst = instruments[decoded.symbol]
            if decoded.kind == EventKind.SNAPSHOT:
                books[decoded.symbol] = _StringBook()
                exact[decoded.symbol] = ({}, {})
            book = books[decoded.symbol]
            book.apply(bids, asks)
            top_bids, top_asks = book.top()
            assert decoded.has_checksum
            assert checksum(top_bids, top_asks) == decoded.checksum, rec["data"][:120]

            ex_bids, ex_asks = exact[decoded.symbol]
            for side, levels in ((ex_bids, bids), (ex_asks, asks)):
                for px, sz, *_ in levels:
                    units = inst.price_to_units(px)
                    if Decimal(sz) == 0:
                        side.pop(units, None)
                    else:
                        side[units] = Decimal(sz)
            d = inst.price_decimals
            rebuilt_bids = [
                (okx_number(p, d), okx_number(ex_bids[p])) for p in sorted(ex_bids)[::-1][:25]
            ]
            rebuilt_asks = [
                (okx_number(p, d), okx_number(ex_asks[p])) for p in sorted(ex_asks)[:25]
            ]
            assert (rebuilt_bids, rebuilt_asks) == (top_bids, top_asks)
            checked[decoded.kind] += 1
        assert checked == {EventKind.SNAPSHOT: 3, EventKind.DELTA: 287}
        assert {s: (len(b.bids), len(b.asks)) for s, b in books.items()} == {
            "BTC-USD-220527": (74, 62),
            "UNI-USD-SWAP": (125, 118),
            "BTC-USDT": (400, 400),
        }

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            ((302336, 1), "30233.6"),
            ((302440, 1), "30244"),
            ((5140, 3), "5.14"),
            ((7, 0), "7"),
            (Decimal("0.00001"), "0.00001"),
            (Decimal("1E+2"), "100"),
            (Decimal("1.50"), "1.5"),
            (Decimal("0"), "0"),
        ],
    )
    def test_okx_number_writes_the_shortest_plain_decimal(
        self, value: tuple[int, int] | Decimal, text: str
    ) -> None:
        if isinstance(value, tuple):
            assert okx_number(value[0], value[1]) == text
        else:
            assert okx_number(value) == text


# --- books ------------------------------------------------------------------------------------
class TestRecordedBooks:
    def test_snapshot_of_an_inverse_future_decodes_with_its_checksum_and_no_ids(self) -> None:
        rec = fixture_record("okx", "ws_books_snapshot")
        decoded = OKX.decode(rec["data"], 11)
        assert isinstance(decoded, BookMessage)
        assert (
            decoded.symbol,
            decoded.kind,
            decoded.first_seq,
            decoded.last_seq,
            decoded.prev_seq,
            decoded.limit,
            decoded.checksum,
            decoded.has_checksum,
            decoded.ts_event_ns,
        ) == (
            "BTC-USD-220527",
            EventKind.SNAPSHOT,
            -1,
            -1,
            -1,
            400,
            1054815633,
            True,
            1652459225393 * MS,
        )
        assert bytes(decoded.asks).startswith(b'[["30238.8","2","0","1"],["30249.5","50","0","1"]')
        assert bytes(decoded.bids).startswith(b'[["30233.6","3","0","1"],["30219.4","104","0","2"]')
        assert len(_levels(decoded.bids)) == 72 and len(_levels(decoded.asks)) == 64

    def test_snapshot_parses_to_exact_levels_in_contracts_times_contract_size(self) -> None:
        rec = fixture_record("okx", "ws_books_snapshot")
        (event,) = parse(OKX, rec["data"], 11, {"BTC-USD-220527": (1, 100.0)})
        assert isinstance(event, BookEvent)
        assert (event.venue, event.symbol, event.kind, event.depth_limit) == (
            Venue.OKX,
            "BTC-USD-220527",
            EventKind.SNAPSHOT,
            400,
        )
        assert (event.first_seq, event.last_seq, event.prev_seq) == (-1, -1, -1)
        assert event.ts_recv_ns == 11
        assert event.bid_px[:3].tolist() == [302336, 302194, 302193]
        assert event.bid_qty[:3].tolist() == [300.0, 10400.0, 152000.0]  # 3, 104, 1520 x 100
        assert event.ask_px[:2].tolist() == [302388, 302495]
        assert np.all(np.diff(event.bid_px) < 0) and np.all(np.diff(event.ask_px) > 0)

    def test_inverse_sizes_become_base_units_with_the_instrument(self) -> None:
        rec = fixture_record("okx", "ws_books_snapshot")
        inst = Instrument(
            Venue.OKX,
            "BTC-USD-220527",
            "BTC",
            "USD",
            InstrumentKind.FUTURE,
            "0.1",
            "1",
            100.0,
            True,
        )
        (event,) = parse(OKX, rec["data"], 0, {inst.symbol: inst})
        assert isinstance(event, BookEvent)
        # 3 contracts of 100 USD at 30233.6 USD/BTC
        assert event.bid_qty[0] == pytest.approx(300 / 30233.6, rel=1e-15)

    def test_update_decodes_as_a_delta_with_the_checksum_and_absolute_sizes(self) -> None:
        rec = fixture_record("okx", "ws_books_update")
        decoded = OKX.decode(rec["data"], 0)
        assert isinstance(decoded, BookMessage)
        assert (decoded.kind, decoded.last_seq, decoded.prev_seq, decoded.limit) == (
            EventKind.DELTA,
            -1,
            -1,
            0,
        )
        assert (decoded.checksum, decoded.has_checksum) == (-914047754, True)
        assert decoded.ts_event_ns == 1652459225464 * MS
        assert _levels(decoded.asks) == [
            ["30249.4", "0", "0", "0"],
            ["30261", "4", "0", "1"],
            ["30310.3", "19", "0", "1"],
        ]
        assert _levels(decoded.bids) == [["30182.6", "452", "0", "1"]]
        (event,) = parse(OKX, rec["data"], 0, {"BTC-USD-220527": (1, 100.0)})
        assert isinstance(event, BookEvent)
        assert event.ask_px.tolist() == [302494, 302610, 303103]
        assert event.ask_qty.tolist() == [0.0, 400.0, 1900.0]  # 0 deletes the level

    def test_snapshot_then_update_of_the_fixtures_chain_to_the_sent_checksum(self) -> None:
        snap = OKX.decode(fixture_record("okx", "ws_books_snapshot")["data"], 0)
        update = OKX.decode(fixture_record("okx", "ws_books_update")["data"], 0)
        assert isinstance(snap, BookMessage) and isinstance(update, BookMessage)
        book = _StringBook()
        book.apply(_levels(snap.bids), _levels(snap.asks))
        assert checksum(*book.top()) == snap.checksum
        book.apply(_levels(update.bids), _levels(update.asks))
        assert checksum(*book.top()) == update.checksum

    def test_swap_update_parses_with_the_swap_contract_size(self) -> None:
        rec = fixture_record("okx", "ws_books_update_swap")
        (event,) = parse(OKX, rec["data"], 0, {"UNI-USD-SWAP": (3, 10.0)})
        assert isinstance(event, BookEvent)
        assert event.symbol == "UNI-USD-SWAP"
        assert event.bid_px.tolist() == [5140, 5138, 5117]
        assert event.bid_qty.tolist() == [4270.0, 260.0, 0.0]
        assert event.ask_px.tolist() == [5158, 5233]


class TestModernBooks:
    def test_snapshot_carries_its_seq_id_and_no_checksum(self) -> None:
        decoded = OKX.decode(fixture_record("okx", "ws_books_snapshot_modern")["data"], 0)
        assert isinstance(decoded, BookMessage)
        assert (
            decoded.symbol,
            decoded.kind,
            decoded.first_seq,
            decoded.last_seq,
            decoded.prev_seq,
            decoded.checksum,
            decoded.has_checksum,
            decoded.limit,
        ) == ("BTC-USDT-SWAP", EventKind.SNAPSHOT, 38250012345, 38250012345, -1, 0, False, 400)

    def test_update_chains_on_the_previous_seq_id(self) -> None:
        decoded = OKX.decode(fixture_record("okx", "ws_books_update_modern")["data"], 0)
        assert isinstance(decoded, BookMessage)
        assert (decoded.kind, decoded.first_seq, decoded.last_seq, decoded.prev_seq) == (
            EventKind.DELTA,
            38250012391,
            38250012391,
            38250012345,
        )
        assert not decoded.has_checksum
        (event,) = parse(
            OKX,
            fixture_record("okx", "ws_books_update_modern")["data"],
            0,
            {"BTC-USDT-SWAP": (1, 0.01)},
        )
        assert isinstance(event, BookEvent)
        assert event.ask_px.tolist() == [1150013, 1150015]
        assert event.ask_qty.tolist() == pytest.approx([0.0, 0.023])
        assert event.bid_qty.tolist() == pytest.approx([0.0617])

    def test_heartbeat_update_is_passed_on_as_an_empty_delta(self) -> None:
        decoded = OKX.decode(fixture_record("okx", "ws_books_heartbeat")["data"], 0)
        assert isinstance(decoded, BookMessage)
        assert decoded.kind == EventKind.DELTA
        assert decoded.last_seq == decoded.prev_seq == 38250012391
        assert (bytes(decoded.bids), bytes(decoded.asks)) == (b"[]", b"[]")

    def test_books5_messages_are_five_level_snapshots(self) -> None:
        decoded = OKX.decode(fixture_record("okx", "ws_books5")["data"], 0)
        assert isinstance(decoded, BookMessage)
        assert (
            decoded.symbol,
            decoded.kind,
            decoded.last_seq,
            decoded.prev_seq,
            decoded.limit,
        ) == (
            "BTC-USDT",
            EventKind.SNAPSHOT,
            81625379489,
            -1,
            5,
        )
        assert not decoded.has_checksum  # books5 sends no checksum field

    def test_real_checksum_on_a_modern_frame_is_reported(self) -> None:
        raw = (
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],'
            '"bids":[["1","2","0","1"]],"ts":"5","checksum":-42,"prevSeqId":7,"seqId":8}]}'
        )
        decoded = OKX.decode(raw, 0)
        assert isinstance(decoded, BookMessage)
        assert (decoded.checksum, decoded.has_checksum, decoded.ts_event_ns) == (-42, True, 5 * MS)

    def test_seq_id_lower_than_prev_after_maintenance_is_kept_as_sent(self) -> None:
        raw = (
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],'
            '"bids":[],"ts":"5","checksum":0,"prevSeqId":900,"seqId":15}]}'
        )
        decoded = OKX.decode(raw, 0)
        assert isinstance(decoded, BookMessage)
        assert (decoded.last_seq, decoded.prev_seq) == (15, 900)

    def test_a_frame_with_two_books_decodes_to_a_list(self) -> None:
        one = '{"asks":[],"bids":[["1","2","0","1"]],"ts":"5","prevSeqId":1,"seqId":2}'
        two = '{"asks":[["3","1","0","1"]],"bids":[],"ts":"6","prevSeqId":2,"seqId":3}'
        raw = f'{{"arg":{{"channel":"books","instId":"ETH-USDT"}},"action":"update","data":[{one},{two}]}}'
        decoded = OKX.decode(raw, 0)
        assert isinstance(decoded, list)
        books = [d for d in decoded if isinstance(d, BookMessage)]
        assert [(d.last_seq, d.prev_seq) for d in books] == [(2, 1), (3, 2)]
        assert len(books) == len(decoded)


# --- mark, index, funding ---------------------------------------------------------------------
class TestMarkPrices:
    def test_mark_price_sets_only_the_mark(self) -> None:
        event = OKX.decode(fixture_record("okx", "ws_mark_price")["data"], 9)
        assert isinstance(event, MarkPriceEvent)
        assert _same_event(
            event,
            MarkPriceEvent(
                Venue.OKX, "BTC-USDT-SWAP", 115001.8, NAN, NAN, 0, 1758000000300 * MS, 9
            ),
        )

    def test_funding_rate_sets_the_rate_and_the_time_it_settles(self) -> None:
        event = OKX.decode(fixture_record("okx", "ws_funding_rate")["data"], 9)
        assert isinstance(event, MarkPriceEvent)
        # fundingTime (the settlement of this rate), not nextFundingTime (the one after it)
        assert _same_event(
            event,
            MarkPriceEvent(
                Venue.OKX,
                "BTC-USDT-SWAP",
                NAN,
                NAN,
                0.0000263463215391,
                1758009600000 * MS,
                1758000000400 * MS,
                9,
            ),
        )

    def test_index_ticker_sets_only_the_index_under_the_index_id(self) -> None:
        event = OKX.decode(fixture_record("okx", "ws_index_tickers")["data"], 9)
        assert isinstance(event, MarkPriceEvent)
        assert _same_event(
            event,
            MarkPriceEvent(Venue.OKX, "BTC-USDT", NAN, 115003.4, NAN, 0, 1758000000500 * MS, 9),
        )

    def test_nan_compare_helper_does_compare(self) -> None:
        a = MarkPriceEvent(Venue.OKX, "X", NAN, 1.0, NAN, 0, 0, 0)
        assert not _same_event(a, dataclasses.replace(a, index_price=2.0))
        assert not _same_event(a, dataclasses.replace(a, mark_price=1.0))


# --- other messages ---------------------------------------------------------------------------
class TestOtherMessages:
    @pytest.mark.parametrize(
        ("name", "reason"),
        [("ws_trades", "trades"), ("ws_tickers", "tickers"), ("ws_subscribe_ack", "subscribe")],
    )
    def test_recorded_messages_the_book_does_not_use_are_ignored(
        self, name: str, reason: str
    ) -> None:
        assert OKX.decode(fixture_record("okx", name)["data"], 0) == Ignored(reason)

    def test_every_frame_of_the_recording_decodes(self) -> None:
        kinds: dict[str, int] = {}
        for rec in RECORDING:
            if rec["kind"] == "ws":
                decoded = OKX.decode(rec["data"], 0)
            else:
                decoded = OKX.decode_http(rec["url"], rec["data"], 0)
            name = type(decoded).__name__
            kinds[name] = kinds.get(name, 0) + 1
        assert kinds == {"InstrumentsUpdate": 25, "Ignored": 120, "BookMessage": 290}

    def test_pong_is_ignored(self) -> None:
        assert OKX.decode("pong", 0) == Ignored("pong")
        assert OKX.decode(b"pong", 0) == Ignored("pong")

    def test_error_event_is_a_venue_message_naming_the_instrument(self) -> None:
        rec = fixture_record("okx", "ws_error")
        assert OKX.decode(rec["data"], 0) == VenueMessage(
            "60018",
            "Wrong URL or channel:books,instId:BTC-USDT-FOO doesn't exist. Please use the "
            "correct URL, channel and parameters referring to API document.",
            symbol="BTC-USDT-FOO",
        )
        assert OKX.decode('{"event":"error","code":"60012","msg":"Invalid request"}', 0) == (
            VenueMessage("60012", "Invalid request")
        )

    def test_upgrade_notice_asks_for_a_reconnect(self) -> None:
        rec = fixture_record("okx", "ws_notice")
        assert OKX.decode(rec["data"], 0) == VenueMessage(
            "64008",
            "The connection will soon be closed for a service upgrade. Please reconnect.",
            reconnect=True,
        )
        other = OKX.decode('{"event":"notice","code":"64009","msg":"x"}', 0)
        assert other == VenueMessage("64009", "x", reconnect=False)

    def test_only_the_upgrade_notice_tells_the_session_to_reconnect(self) -> None:
        notice = fixture_record("okx", "ws_notice")["data"]
        assert OKX.reconnect_notice(notice) == (
            "notice 64008: The connection will soon be closed for a service upgrade. "
            "Please reconnect."
        )
        assert OKX.reconnect_notice(notice.encode()) == OKX.reconnect_notice(notice)
        assert OKX.reconnect_notice('{"event":"notice","code":"64009","msg":"x"}') is None
        for name in ("ws_books_snapshot", "ws_subscribe_ack"):
            assert OKX.reconnect_notice(fixture_record("okx", name)["data"]) is None
        assert OKX.reconnect_notice("pong") is None
        assert OKX.reconnect_notice('{"event":"notice", garbage') is None

    def test_channels_whose_data_are_not_objects_are_ignored(self) -> None:
        raw = (
            '{"arg":{"channel":"candle1m","instId":"BTC-USDT"},'
            '"data":[["1699999920000","103","108","102","104","3","312","312","1"]]}'
        )
        assert OKX.decode(raw, 0) == Ignored("candle1m")

    def test_unsubscribe_and_connection_count_events_are_ignored(self) -> None:
        assert OKX.decode('{"event":"unsubscribe","arg":{"channel":"books"}}', 0) == Ignored(
            "unsubscribe"
        )
        assert OKX.decode(
            '{"event":"channel-conn-count","channel":"books","connCount":"2","connId":"a"}', 0
        ) == Ignored("channel-conn-count")


class TestBadInput:
    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "{",
            "not json",
            "[]",
            '{"arg":{}}',
            '{"data":[]}',
            # books without action, with an unknown action, without data, without sides
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[],"ts":"1"}]}',
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"partial","data":[{"asks":[],"bids":[],"ts":"1"}]}',
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[]}',
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"bids":[],"ts":"1"}]}',
            '{"arg":{"channel":"books"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1"}]}',
            # ids and times that are not integers
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"abc"}]}',
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","seqId":"x"}]}',
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[]}]}',
            # mark channels without or with a bad value
            '{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"markPx":"abc","ts":"1"}]}',
            '{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"ts":"1"}]}',
            '{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"fundingTime":"1","ts":"1"}]}',
            '{"arg":{"channel":"index-tickers","instId":"BTC-USDT"},"data":[{"ts":"1"}]}',
            '{"arg":{"channel":"index-tickers","instId":"BTC-USDT"},"data":[]}',
        ],
    )
    def test_malformed_frames_raise_parse_error_with_an_excerpt(self, raw: str) -> None:
        with pytest.raises(ParseError) as info:
            OKX.decode(raw, 0)
        assert info.value.venue == "okx"
        assert info.value.excerpt == raw[:200]

    def test_level_with_a_non_number_raises_parse_error(self) -> None:
        raw = (
            '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update",'
            '"data":[{"asks":[["abc","1","0","1"]],"bids":[],"ts":"1"}]}'
        )
        with pytest.raises(ParseError):
            parse(OKX, raw, 0, {"BTC-USDT": (1, 1.0)})

    def test_unknown_symbol_raises_unknown_instrument(self) -> None:
        with pytest.raises(UnknownInstrument):
            parse(OKX, fixture_record("okx", "ws_books_update")["data"], 0, {})


# --- subscriptions and the adapter contract ---------------------------------------------------
class TestSubscriptions:
    def test_book_and_mark_channels_per_instrument_type(self) -> None:
        frames = OKX.subscribe_frames(
            ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-220527"],
            ["books", "mark-price,funding-rate,index-tickers"],
        )
        assert [json.loads(f) for f in frames] == [
            {
                "op": "subscribe",
                "args": [
                    {"channel": "books", "instId": "BTC-USDT"},
                    {"channel": "books", "instId": "BTC-USDT-SWAP"},
                    {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
                    {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
                    {"channel": "index-tickers", "instId": "BTC-USDT"},
                    {"channel": "books", "instId": "BTC-USD-220527"},
                    {"channel": "mark-price", "instId": "BTC-USD-220527"},
                    {"channel": "index-tickers", "instId": "BTC-USD"},
                ],
            }
        ]

    def test_one_index_subscription_per_index(self) -> None:
        topics = OKX.topics(
            ["BTC-USDT-SWAP", "BTC-USDT-250926", "BTC-USD_UM-261030"], ["index-tickers"]
        )
        assert topics == [
            {"channel": "index-tickers", "instId": "BTC-USDT"},
            {"channel": "index-tickers", "instId": "BTC-USD"},
        ]
        assert index_id("ETH-USD-SWAP") == "ETH-USD"
        assert index_id("ETH-USDT") is None

    def test_frames_stay_within_the_args_per_frame_limit(self) -> None:
        symbols = [f"C{i}-USDT" for i in range(60)]
        frames = OKX.subscribe_frames(symbols, ["books"])
        args = [json.loads(f)["args"] for f in frames]
        assert [len(a) for a in args] == [25, 25, 10]
        assert [a["instId"] for batch in args for a in batch] == symbols
        unsub = OKX.unsubscribe_frames(["BTC-USDT"], ["books"])
        assert json.loads(unsub[0]) == {
            "op": "unsubscribe",
            "args": [{"channel": "books", "instId": "BTC-USDT"}],
        }

    def test_connection_attributes(self) -> None:
        assert OKX.ws_url(WS_URL, ["BTC-USDT"], ["books"]) == WS_URL
        assert OKX.open_frames() == []
        assert OKX.keepalive_frame() == "ping"
        assert OKX.keepalive_s is not None and OKX.keepalive_s < 30
        assert OKX.ping_interval_s is None
        assert OKX.snapshot_request("https://www.okx.com", "BTC-USDT", 400) is None
        assert (OKX.sequencing, OKX.snapshot_source, OKX.checksum) == (
            SeqRule.CHAIN,
            SnapshotSource.STREAM,
            Checksum.OKX,
        )
        assert (OKX.px_index, OKX.qty_index) == (0, 1)
        limits = OKX.limits
        assert (
            limits.streams_per_connection,
            limits.topics_per_frame,
            limits.control_per_hour,
            limits.connections_per_s,
        ) == (25, 25, 480, 3.0)
        assert ADAPTERS == {Venue.OKX: OKX}

    def test_the_adapter_has_every_member_of_the_contract(self) -> None:
        members = set(VenueAdapter.__annotations__) | {
            name for name in vars(VenueAdapter) if not name.startswith("_")
        }
        missing = [m for m in sorted(members) if not hasattr(OKX, m)]
        assert missing == []
        assert isinstance(OKX, OkxAdapter)

    def test_instrument_requests(self) -> None:
        assert OKX.instruments_requests("https://www.okx.com/") == [
            HttpRequest(url=u, key=u)
            for u in (
                "https://www.okx.com/api/v5/public/instruments?instType=SPOT",
                "https://www.okx.com/api/v5/public/instruments?instType=SWAP",
                "https://www.okx.com/api/v5/public/instruments?instType=FUTURES",
            )
        ]


# --- instruments ------------------------------------------------------------------------------
class TestInstruments:
    def test_recorded_answers_give_spot_linear_and_inverse_contracts(self) -> None:
        by_symbol = {i.symbol: i for i in _recorded_instruments()}
        assert len(by_symbol) == 513 + 166 + 104
        assert by_symbol["BTC-USDT"] == Instrument(
            Venue.OKX,
            "BTC-USDT",
            "BTC",
            "USDT",
            InstrumentKind.SPOT,
            "0.1",
            "0.00000001",
            qty_precision=8,
        )
        assert by_symbol["BTC-USDT-SWAP"] == Instrument(
            Venue.OKX, "BTC-USDT-SWAP", "BTC", "USDT", InstrumentKind.PERP, "0.1", "1", 0.01
        )
        assert by_symbol["BTC-USD-SWAP"] == Instrument(
            Venue.OKX, "BTC-USD-SWAP", "BTC", "USD", InstrumentKind.PERP, "0.1", "1", 100.0, True
        )
        assert by_symbol["BTC-USD-220527"] == Instrument(
            Venue.OKX,
            "BTC-USD-220527",
            "BTC",
            "USD",
            InstrumentKind.FUTURE,
            "0.1",
            "1",
            100.0,
            True,
        )
        assert by_symbol["XRP-USDT-220930"] == Instrument(
            Venue.OKX,
            "XRP-USDT-220930",
            "XRP",
            "USDT",
            InstrumentKind.FUTURE,
            "0.00001",
            "1",
            100.0,
        )
        assert by_symbol["UNI-USD-SWAP"].contract_size == 10.0
        assert by_symbol["UNI-USD-SWAP"].inverse

    def test_options_are_skipped(self) -> None:
        rec = next(r for r in RECORDING if "OPTION" in r["url"])
        assert OKX.parse_instruments(rec["url"], rec["data"]) == []

    def test_todays_answer_format_parses(self) -> None:
        by_symbol = {i.symbol: i for i in _fixture_instruments()}
        assert by_symbol["BTC-USDT-SWAP"] == Instrument(
            Venue.OKX,
            "BTC-USDT-SWAP",
            "BTC",
            "USDT",
            InstrumentKind.PERP,
            "0.1",
            "0.01",
            0.01,
            qty_precision=2,
        )
        assert by_symbol["DOGE-USD-SWAP"].inverse
        assert by_symbol["DOGE-USDT-SWAP"].contract_size == 1000.0
        assert (by_symbol["SOL-USDC"].base, by_symbol["SOL-USDC"].quote) == ("SOL", "USDC")

    def test_usd_margined_linear_futures_family_drops_the_um_tag(self) -> None:
        row = {
            "instType": "FUTURES",
            "instId": "BTC-USD_UM-261030",
            "instFamily": "BTC-USD_UM",
            "uly": "",
            "ctType": "linear",
            "ctVal": "0.01",
            "ctMult": "1",
            "ctValCcy": "BTC",
            "settleCcy": "USD",
            "tickSz": "0.1",
            "lotSz": "0.01",
            "instIdCode": 433707,
            "state": "live",
        }
        (inst,) = OKX.parse_instruments("k", json.dumps({"code": "0", "msg": "", "data": [row]}))
        assert (inst.base, inst.quote, inst.kind, inst.contract_size, inst.inverse) == (
            "BTC",
            "USD",
            InstrumentKind.FUTURE,
            0.01,
            False,
        )

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "{",
            '{"code":"51001","msg":"Instrument ID does not exist","data":[]}',
            '{"data":[{}]}',
        ],
    )
    def test_bad_answers_raise_parse_error(self, text: str) -> None:
        with pytest.raises(ParseError):
            OKX.parse_instruments("k", text)

    def test_decode_http_hands_the_answer_on_or_reports_the_error(self) -> None:
        url = "https://www.okx.com/api/v5/public/instruments?instType=SPOT"
        text = '{"code":"0","msg":"","data":[]}'
        assert OKX.decode_http(url, text, 0) == InstrumentsUpdate(url, text)
        assert OKX.decode_http(url, '{"code":"50011","msg":"Too Many Requests","data":[]}', 0) == (
            VenueMessage("50011", "Too Many Requests")
        )
        assert OKX.decode_http("https://www.okx.com/api/v5/market/books", "{}", 0) == Ignored(
            "http https://www.okx.com/api/v5/market/books"
        )
        with pytest.raises(ParseError):
            OKX.decode_http(url, "<html>", 0)

    def test_cached_copy_loads_and_agrees_with_parse_instruments(self) -> None:
        cached = InstrumentRegistry.load_cached([Venue.OKX])
        built = build_registry()
        assert sorted(cached, key=lambda i: i.symbol) == sorted(built, key=lambda i: i.symbol)
        for base in ("BTC", "ETH", "SOL", "XRP", "DOGE"):
            for symbol in (f"{base}-USDT", f"{base}-USDC", f"{base}-USDT-SWAP", f"{base}-USD-SWAP"):
                assert cached.get(Venue.OKX, symbol) is not None, symbol
        # the recording's books are in it too
        for symbol in ("BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527"):
            assert cached.get(Venue.OKX, symbol) is not None


def main() -> None:
    """Rebuild config/instruments/okx.json.gz from the recording and the fixture answers."""
    path: Path = CACHE_DIR / f"{Venue.OKX.value}.json.gz"
    build_registry().to_cache(Venue.OKX, path)


if __name__ == "__main__":
    main()
