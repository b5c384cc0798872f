"""The numba frame scanner reads exactly what the msgspec decode reads, or hands over."""

from __future__ import annotations

import gzip
import json

import pytest

from feeds.binance import ADAPTERS, SPOT
from monitor.domain import RawBook, Venue
from tests.conftest import SPOT_RECORDING, USDM_RECORDING


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
        adapter = ADAPTERS[venue]
        mine = [data for v, data in frames if v == venue]
        scan = adapter.scan_frames(mine)
        deltas = 0
        for k, data in enumerate(mine):
            decoded = adapter.decode(data, 0)
            assert bool(scan.is_delta[k]) == isinstance(decoded, RawBook), data[:120]
            if not isinstance(decoded, RawBook):
                continue
            deltas += 1
            raw = scan.buf.tobytes()
            assert scan.symbol_key[k] == adapter.symbol_key(decoded.symbol)
            assert (scan.first_seq[k], scan.last_seq[k], scan.prev_seq[k]) == (
                decoded.first_seq,
                decoded.last_seq,
                decoded.prev_seq,
            )
            assert scan.ts_event_ns[k] == decoded.ts_event_ns
            b0, a0 = int(scan.bid_start[k]), int(scan.ask_start[k])
            assert raw[b0 : b0 + int(scan.bid_len[k])] == bytes(decoded.bids)
            assert raw[a0 : a0 + int(scan.ask_len[k])] == bytes(decoded.asks)
        assert deltas > 100


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
    scan = SPOT.scan_frames([frame, GOOD])
    assert bool(scan.is_delta[0]) == delta
    assert bool(scan.is_delta[1])  # a bad neighbour does not spoil the next frame
    if delta:
        assert scan.symbol_key[0] == SPOT.symbol_key("NKNUSDT")
        assert (scan.first_seq[0], scan.last_seq[0], scan.ts_event_ns[0]) == (10, 12, 5_000_000)


def test_text_and_bytes_frames_scan_alike() -> None:
    as_text = SPOT.scan_frames([GOOD, GOOD])
    as_bytes = SPOT.scan_frames([GOOD.encode(), GOOD.encode()])
    assert as_text.is_delta.tolist() == as_bytes.is_delta.tolist() == [True, True]
    assert as_text.bid_start.tolist() == as_bytes.bid_start.tolist()


def test_non_ascii_text_frames_keep_byte_offsets_right() -> None:
    other = '{"result":null,"id":"é"}'  # two bytes for one character
    scan = SPOT.scan_frames([other, GOOD])
    assert scan.is_delta.tolist() == [False, True]
    raw = scan.buf.tobytes()
    start = int(scan.bid_start[1])
    assert raw[start : start + int(scan.bid_len[1])] == b'[["1.0","2"]]'
