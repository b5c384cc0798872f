"""The Kraken numba scanner reads exactly what the msgspec decode reads, or hands over;
books fed through the scanned path equal books fed frame by frame through decode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.kraken import SPOT, KrakenAdapter
from feeds.kraken_scan import scan_book_frames
from feeds.scan import KIND_DELTA, join_frames, new_table
from feeds.venues import ADAPTERS
from monitor.domain import RawBook, Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.feeds.scan_check import assert_scan_equals_decode, scanned
from tests.feeds.sim_stream import sim_frames

SYMBOLS = ["BTC/USD", "ETH/USD", "BTC/USDT", "SOL/USD", "XRP/USD", "DOGE/USD"]


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    frames, _ = sim_frames(Venue.KRAKEN, SPOT, SYMBOLS, ["book"], 3000, path="/v2")
    return frames


def test_every_frame_of_the_local_exchange_scans_to_what_decode_reads(
    stream: list[bytes],
) -> None:
    assert assert_scan_equals_decode(SPOT, stream) > 2500
    # every book frame is vouched for, its levels byte for byte as decode writes them
    rows = scanned(SPOT.scan_frames(stream))
    kinds = set()
    for data, row in zip(stream, rows, strict=True):
        decoded = SPOT.decode(data, 0)
        assert row.is_book == isinstance(decoded, RawBook), data[:120]
        if isinstance(decoded, RawBook):
            kinds.add(decoded.kind)
            assert decoded.has_checksum
            assert (row.bids, row.asks) == (bytes(decoded.bids), bytes(decoded.asks))
    assert len(kinds) == 2  # snapshots and updates


def test_a_snapshot_carries_the_adapter_depth_as_its_limit(stream: list[bytes]) -> None:
    shallow = KrakenAdapter(depth=25)
    assert assert_scan_equals_decode(shallow, stream) > 2500
    snapshot = next(f for f in stream if b'"type":"snapshot"' in f)
    (row,) = scanned(shallow.scan_frames([snapshot]))
    assert row.is_book and row.limit == 25


TS = "2023-10-06T17:35:55.440160Z"


def book(
    *,
    kind: str = "update",
    bids: str = '[{"price":45283.5,"qty":0.1}]',
    asks: str = '[{"price":45285.2,"qty":0.0}]',
    extra: str = ',"checksum":3310070434',
    ts: str = f'"{TS}"',
) -> str:
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD","bids":{bids},'
        f'"asks":{asks}{extra},"timestamp":{ts}}}]}}'
    )


GOOD = book()
ENTRY = '{"symbol":"BTC/USD","bids":[],"asks":[],"checksum":1,"timestamp":"' + TS + '"}'


@pytest.mark.parametrize(
    ("frame", "is_book"),
    [
        (GOOD, True),
        (book(kind="snapshot"), True),
        (book(bids="[]", asks="[ ]"), True),  # empty level arrays
        (book(extra=""), True),  # no checksum
        (
            '{ "data" : [ { "timestamp" : "' + TS + '" , "asks" : [ { "qty" : 1 , "price" : '
            '2e3 } ] , "symbol" : "BTC/USD" } ] , "type" : "update" , "channel" : "book" }',
            True,
        ),  # any key order, whitespace, exponent, update without bids
        ('{"channel":"book","type":"update","data":[' + ENTRY + "]}", True),
        (book(ts='"2023-10-06T17:35:55Z"'), True),  # no fraction
        (book(ts='"2024-02-29T23:59:59.5Z"'), True),  # leap day
        (book(kind="snapshot", bids="null"), False),
        (book(bids="null"), False),
        ('{"channel":"book","type":"snapshot","data":[' + ENTRY[:-1] + ',"bids":[]}]}', False),
        (book(bids='[{"price":1,"qty":2,"qty":3}]'), False),  # duplicate key in a level
        (book(bids='[{"price":1}]'), False),  # no qty
        (book(bids='[{"price":"1","qty":2}]'), False),  # a quoted number
        (book(bids='[{"price":01,"qty":2}]'), False),  # not a JSON number
        (book(bids='[{"price":1.,"qty":2}]'), False),
        (book(bids='[{"price":1,"qty":2,"n":3}]'), False),  # another key
        (book(bids='[{"price":1,"qty":2},]'), False),  # trailing comma
        (book(bids='[{"price":1,"qty":2}'), False),
        (book(extra=',"checksum":"3310070434"'), False),  # quoted checksum
        (book(extra=',"checksum":-1'), False),
        (book(extra=',"checksum":1.0'), False),
        (book(extra=',"checksum":null'), False),
        (book(extra=',"checksum":1,"checksum":2'), False),  # duplicate
        (book(extra=',"system":"online"'), False),
        (book(extra=',"\\u0073ymbol":"ETH/USD"'), False),  # an escaped key
        (book(ts='"2023-02-29T00:00:00Z"'), False),  # no such day
        (book(ts='"2023-10-06T24:00:00Z"'), False),
        (book(ts='"2023-10-06T17:35:60Z"'), False),
        (book(ts='"2023-10-06T17:35:55.4401609Z"'), False),  # msgspec rounds 7 digits
        (book(ts='"2023-10-06T17:35:55.Z"'), False),
        (book(ts='"2023-10-06T17:35:55+00:00"'), False),
        (book(ts='"2023-10-06 17:35:55Z"'), False),
        (book(ts='"2023-10-06t17:35:55z"'), False),  # decode reads it: handed over
        (book(ts='"1969-12-31T23:59:59Z"'), False),
        (book(ts='"2201-01-01T00:00:00Z"'), False),
        (book(ts='"2023-10-06T17:35:55.44016Z0"'), False),
        (book(ts="null"), False),  # decode takes the receive time
        (book(ts="1696613755"), False),
        ('{"channel":"book","type":"update","data":[' + ENTRY + "," + ENTRY + "]}", False),
        ('{"channel":"book","type":"update","data":[]}', False),
        ('{"channel":"book","type":"update","data":{}}', False),
        ('{"channel":"book","type":"delta","data":[' + ENTRY + "]}", False),
        ('{"channel":"book","data":[' + ENTRY + "]}", False),  # no type
        ('{"channel":"book","type":"update","type":"update","data":[' + ENTRY + "]}", False),
        ('{"channel":"book","type":"update","data":[' + ENTRY + '],"method":"x"}', False),
        (
            '{"channel":"book","type":"update","data":[' + ENTRY.replace("BTC/USD", "") + "]}",
            False,
        ),  # empty symbol
        (
            '{"channel":"book","type":"update","data":['
            + ENTRY.replace("BTC/USD", "BTC\\/USD")
            + "]}",
            False,
        ),  # escape in the symbol
        ('{"channel":"bo\\u006fk","type":"update","data":[' + ENTRY + "]}", False),
        (GOOD[:-1], False),  # cut short
        (GOOD + "x", False),  # trailing bytes
        (GOOD.replace('"data":[{', '"data":[{,'), False),
        ('{"channel":"heartbeat"}', False),
        ('{"method":"pong","req_id":1}', False),
        ('{"channel":"status","type":"update","data":[{"system":"online"}]}', False),
        ('{"error":"Currency pair not supported","method":"subscribe","success":false}', False),
        ("", False),
        ("garbage", False),
        ("{}", False),
    ],
)
def test_frames_the_scanner_cannot_vouch_for_go_to_decode(frame: str, is_book: bool) -> None:
    rows = scanned(SPOT.scan_frames([frame, GOOD]))
    assert rows[0].is_book == is_book
    assert rows[1].is_book  # a bad neighbour does not spoil the next frame
    assert_scan_equals_decode(SPOT, [frame, GOOD], recv_ns=123)


def test_a_good_frame_scans_to_its_fields() -> None:
    (row,) = scanned(SPOT.scan_frames([GOOD.encode()]))
    assert row.is_book and row.kind == KIND_DELTA and row.limit == 0
    assert row.symbol_key == SPOT.symbol_key("BTC/USD")
    assert (row.checksum, row.has_checksum) == (3310070434, True)
    assert row.ts_event_ns == 1_696_613_755_440_160_000
    assert (row.bids, row.asks) == (b"[[45283.5,0.1]]", b"[[45285.2,0.0]]")


def test_non_ascii_text_frames_keep_byte_offsets_right() -> None:
    other = '{"channel":"status","data":[{"system":"é"}]}'  # two bytes for one character
    rows = scanned(SPOT.scan_frames([other, GOOD]))
    assert [r.is_book for r in rows] == [False, True]
    assert rows[1].bids == b"[[45283.5,0.1]]"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31, 23, 59, 59)
    ),
    digits=st.integers(min_value=0, max_value=6),
)
def test_timestamps_scan_to_what_msgspec_decodes(moment: datetime, digits: int) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    frame = book(ts=f'"{text}Z"')
    (row,) = scanned(SPOT.scan_frames([frame]))
    assert row.is_book
    decoded = SPOT.decode(frame, 0)
    assert isinstance(decoded, RawBook)
    assert row.ts_event_ns == decoded.ts_event_ns
    micros = int(f"{moment.microsecond:06d}"[:digits].ljust(6, "0"))
    written = moment.replace(microsecond=micros, tzinfo=UTC)
    assert row.ts_event_ns == (written - EPOCH) // timedelta(microseconds=1) * 1000


def test_the_kernel_and_its_python_twin_agree(stream: list[bytes]) -> None:
    # py_func: the frame loop in plain Python (the per-frame helpers it calls are compiled)
    frames: list[bytes | str] = [*stream[:300], GOOD, GOOD[:-3], "garbage", GOOD.encode()]
    buf, starts, ends = join_frames(frames)
    compiled, twin = new_table(len(frames)), new_table(len(frames))
    out, twin_out = (
        np.zeros(len(buf) + 4 * len(frames), np.uint8),
        np.zeros(len(buf) + 4 * len(frames), np.uint8),
    )
    used = scan_book_frames(buf, starts, ends, compiled, out, 100)
    assert (
        getattr(scan_book_frames, "py_func", scan_book_frames)(
            buf, starts, ends, twin, twin_out, 100
        )
        == used
        > 0
    )
    assert (compiled == twin).all()
    assert (out == twin_out).all()


def test_scanned_and_decoded_paths_leave_the_same_books(stream: list[bytes]) -> None:
    registry = InstrumentRegistry.load_cached([Venue.KRAKEN])
    scanned_pipe = BookPipeline(registry, ADAPTERS)
    decoded_pipe = BookPipeline(registry, ADAPTERS)
    for pipeline in (scanned_pipe, decoded_pipe):
        for symbol in SYMBOLS:
            assert pipeline.add_book(Venue.KRAKEN, symbol) is not None
    batch = 4 * SPOT.min_frames
    recv = list(range(1, len(stream) + 1))
    for at in range(0, len(stream), batch):
        scanned_pipe.feed_frames(Venue.KRAKEN, stream[at : at + batch], recv[at : at + batch])
    for frame, t in zip(stream, recv, strict=True):
        decoded_pipe.feed_frames(Venue.KRAKEN, [frame], [t])
    mine = scanned_pipe.book_summaries(depth=1000)
    theirs = decoded_pipe.book_summaries(depth=1000)
    assert mine == theirs
    assert len(mine) == len(SYMBOLS)
    for summary in mine:
        assert summary["valid"] and summary["checksum_failed"] == 0, summary["symbol"]
        assert summary["checksum_ok"] > 100, summary["symbol"]
    assert scanned_pipe.counters.messages == decoded_pipe.counters.messages
