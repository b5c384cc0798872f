"""The numba frame scanner reads exactly what the msgspec decode reads, or hands over."""

from __future__ import annotations

import gzip
import json

import pytest

from feeds.binance import ADAPTERS, SPOT, USDM
from monitor.domain import RawBook, Venue
from tests.conftest import SPOT_RECORDING, USDM_RECORDING
from tests.feeds.scan_check import assert_scan_equals_decode, scanned


def ws_frames() -> list[tuple[Venue, str]]:
    out = []
    for path in (SPOT_RECORDING, USDM_RECORDING):
        with gzip.open(path, "rt") as f:
            for line in f:
                rec = json.loads(line)
                if rec["kind"] == "ws":
                    out.append((Venue(rec["venue"]), rec["data"]))
    return out


def test_every_recorded_frame_scans_to_what_decode_reads() -> None:
    frames = ws_frames()
    for venue in (Venue.BINANCE, Venue.BINANCE_FUTURES):
        mine = [data for v, data in frames if v == venue]
        assert assert_scan_equals_decode(ADAPTERS[venue], mine) > 100
        # the scanner vouches for every recorded delta, byte for byte
        rows = scanned(ADAPTERS[venue].scan_frames(mine))
        for data, row in zip(mine, rows, strict=True):
            decoded = ADAPTERS[venue].decode(data, 0)
            assert row.is_book == isinstance(decoded, RawBook), data[:120]
            if isinstance(decoded, RawBook):
                assert (row.bids, row.asks) == (bytes(decoded.bids), bytes(decoded.asks))


GOOD = '{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":10,"u":12,"b":[["1.0","2"]],"a":[]}'


@pytest.mark.parametrize(
    ("frame", "delta"),
    [
        (GOOD, True),
        ('{"stream":"nknusdt@depth","data":' + GOOD + "}", True),
        (
            '{ "a" : [] , "b" : [["1.0", "2"]], "u":12, "U":10, "s":"NKNUSDT", "E":5, "e":"depthUpdate" }',
            True,
        ),
        (
            '{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":10,"u":12,"b":[["1.0","2"]]}',
            False,
        ),  # no asks
        (
            '{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":10,"u":12,"u":13,"b":[],"a":[]}',
            False,
        ),  # dup
        ('{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":"10","u":12,"b":[],"a":[]}', False),  # U str
        # numbers decode does not read as integers: a fraction, an exponent, a leading zero
        ('{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":10.5,"u":12,"b":[],"a":[]}', False),
        ('{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":10,"u":1e3,"b":[],"a":[]}', False),
        ('{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":010,"u":12,"b":[],"a":[]}', False),
        ('{"e":"depthUpdate","E":5.0,"s":"NKNUSDT","U":10,"u":12,"b":[],"a":[]}', False),
        ('{"e":"depthUpdate","E":5,"s":"NKNUSDT","U":10,"u":12,"b":[["1.0","2"]],"a":[', False),
        ('{"e":"bookTicker","s":"NKNUSDT","b":"1.0","a":"2"}', False),
        ('{"result":null,"id":1}', False),
        ('{"stream":"nknusdt@depth","data":' + GOOD, False),  # envelope cut short
        (GOOD + "x", False),  # trailing bytes
        ('{"stream":"x","data":' + GOOD + ',"s":"OTHER"}', False),  # book fields on the envelope
        ("", False),
        ("garbage", False),
    ],
)
def test_frames_the_scanner_cannot_vouch_for_go_to_decode(frame: str, delta: bool) -> None:
    rows = scanned(SPOT.scan_frames([frame, GOOD]))
    assert rows[0].is_book == delta
    assert rows[1].is_book  # a bad neighbour does not spoil the next frame
    if delta:
        assert rows[0].symbol_key == SPOT.symbol_key("NKNUSDT")
        assert (rows[0].first_seq, rows[0].last_seq, rows[0].ts_event_ns) == (10, 12, 5_000_000)


def test_text_and_bytes_frames_scan_alike() -> None:
    as_text = scanned(SPOT.scan_frames([GOOD, GOOD]))
    as_bytes = scanned(SPOT.scan_frames([GOOD.encode(), GOOD.encode()]))
    assert as_text == as_bytes
    assert [r.is_book for r in as_text] == [True, True]


def test_non_ascii_text_frames_keep_byte_offsets_right() -> None:
    other = '{"result":null,"id":"é"}'  # two bytes for one character
    rows = scanned(SPOT.scan_frames([other, GOOD]))
    assert [r.is_book for r in rows] == [False, True]
    assert rows[1].bids == b'[["1.0","2"]]'


MARK = (
    '{"e":"markPriceUpdate","E":5,"s":"BTCUSDT","p":"1.5","i":"1.4","P":"1.5","r":"0.0001","T":8}'
)


@pytest.mark.parametrize(
    ("frame", "side"),
    [
        (MARK, True),
        ('{"stream":"btcusdt@markPrice","data":' + MARK + "}", True),
        # decode reads "data" when there is one: a depthUpdate there is a book event
        ('{"e":"markPriceUpdate","data":' + GOOD + "}", False),
        ('{"stream":"x","data":' + MARK + ',"data":' + GOOD + "}", False),  # "data" twice
        ('{"e":"markPriceUpdatex","s":"BTCUSDT"}', False),
        (MARK + "x", False),
    ],
)
def test_mark_prices_are_marked_as_no_book_event(frame: str, side: bool) -> None:
    """Mark prices are decoded wherever they fall in a run of scanned deltas, so the
    scanner marks them only when decode cannot read a book event there."""
    rows = scanned(USDM.scan_frames([frame, GOOD]))
    assert rows[0].is_side == side
    assert not rows[0].is_book
    assert rows[1].is_book
    assert assert_scan_equals_decode(USDM, [frame, GOOD]) == 1
