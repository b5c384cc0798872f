"""The numba frame scanner reads exactly what the msgspec decode reads, or hands over."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.binance import ADAPTERS, MS, SPOT, USDM
from monitor.domain import RawBook, Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.conftest import SPOT_RECORDING, USDM_RECORDING
from tests.feeds.scan_check import assert_scan_equals_decode, same_float, scanned


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
        (MARK.replace('"1.5"', '"1.5e0"'), True),  # read by decode, not by the scanner
        # decode reads "data" when there is one: a depthUpdate there is a book event
        ('{"e":"markPriceUpdate","data":' + GOOD + "}", False),
        ('{"stream":"x","data":' + MARK + ',"data":' + GOOD + "}", False),  # "data" twice
        ('{"e":"markPriceUpdatex","s":"BTCUSDT"}', False),
        (MARK + "x", False),
    ],
)
def test_mark_prices_are_marked_as_no_book_event(frame: str, side: bool) -> None:
    """Mark prices are merged or decoded wherever they fall in a run of scanned deltas,
    so the scanner marks them (read in full, or for decode) only when decode cannot read a
    book event there."""
    rows = scanned(USDM.scan_frames([frame, GOOD]))
    assert (rows[0].is_side or rows[0].is_mark) == side
    assert not rows[0].is_book
    assert rows[1].is_book
    assert assert_scan_equals_decode(USDM, [frame, GOOD]) == 1


def _mark(**fields: str) -> str:
    """A markPriceUpdate with MARK's fields, some replaced (raw JSON values) or dropped ("")."""
    base = {"e": '"markPriceUpdate"', "E": "5", "s": '"BTCUSDT"', "p": '"1.5"', "i": '"1.4"'}
    base |= {"P": '"1.5"', "r": '"0.0001"', "T": "8"}
    base |= fields
    return "{" + ",".join(f'"{k}":{v}' for k, v in base.items() if v) + "}"


@pytest.mark.parametrize(
    ("frame", "read"),
    [
        (MARK, True),
        ('{"stream":"btcusdt@markPrice@1s","data":' + MARK + "}", True),
        (_mark(p='"-0.0003"', i='"121536.5"', r='"-0"'), True),  # signs, -0.0 kept
        (_mark(p='"0.00000000000001"', i='"999999999999999"'), True),  # 15 digits
        (_mark(p="", i="", r="", T=""), True),  # absent: NaN, and no next funding
        (_mark(E="", P='{"x":[1]}'), True),  # no event time; unknown keys are skipped
        (_mark(p='"1234567890123456"'), False),  # 16 digits: beyond the exact path
        (_mark(p='"1."'), False),
        (_mark(p='".5"'), False),
        (_mark(p='"1e5"'), False),
        (_mark(p='""'), False),  # decode refuses it
        (_mark(p="1.5"), False),  # a bare number
        (_mark(p='"1\\u0035"'), False),  # an escape
        (_mark(p='" 1.5"'), False),
        (_mark(T='"8"'), False),  # decode wants an int there: it refuses the frame
        (_mark(T="-8"), False),
        (_mark(T="9000000000001"), False),  # ns beyond int64
        (_mark(E="9000000000001"), False),
        (_mark(s=""), False),  # no symbol
        (_mark(r='"1","r":"2"'), False),  # twice
        ('{"stream":5,"data":' + MARK + "}", False),  # decode refuses the envelope
        ('{"T":"x","data":' + MARK + "}", False),
        ('{"p":"1","data":' + MARK + "}", False),  # mark fields on the envelope
        ('{"data":{"data":' + MARK + "}}", False),  # decode reads the outer "data" only
    ],
)
def test_mark_prices_the_scanner_reads_are_what_decode_reads(frame: str, read: bool) -> None:
    rows = scanned(USDM.scan_frames([frame, GOOD]))
    assert rows[0].is_mark == read
    assert not rows[0].is_book
    assert rows[1].is_book
    assert assert_scan_equals_decode(USDM, [frame, GOOD]) == 1


@settings(max_examples=500, deadline=None)
@given(
    sign=st.sampled_from(["", "-"]),
    whole=st.text("0123456789", min_size=1, max_size=15),
    fraction=st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=15)),
)
def test_scanned_prices_are_pythons_float_bit_for_bit(
    sign: str, whole: str, fraction: str | None
) -> None:
    text = sign + whole + ("" if fraction is None else "." + fraction)
    digits = len(whole) + len(fraction or "")
    frame = _mark(p=f'"{text}"')
    row = scanned(USDM.scan_frames([frame]))[0]
    assert row.is_mark == (digits <= 15)
    if row.is_mark:
        assert same_float(row.mark[0], float(text)), text


# --- the pipeline: scanned mark prices leave the marks the decode path leaves --------------
def _usdm_frames() -> list[str]:
    """Deltas of BTCUSDT, and mark prices of BTCUSDT, ETHUSDT (no book) and an unknown
    symbol, some partial (a field absent keeps its last value), in one stream."""
    depth = '{"e":"depthUpdate","E":%d,"s":"BTCUSDT","U":%d,"u":%d,"pu":%d,"b":[],"a":[]}'
    frames = [depth % (1, 1, 1, 0)]
    for k in range(178):
        frames.append(depth % (k + 2, k + 2, k + 2, k + 1))
        symbol = ("BTCUSDT", "ETHUSDT", "NOPEUSDT")[k % 3]
        fields = {"s": f'"{symbol}"', "E": str(k), "p": f'"{100 + k}.{k}"', "i": f'"{99 + k}.5"'}
        fields |= {"r": f'"-0.000{k % 7}"', "T": str(1000 * (k // 10))}
        if k % 4 == 1:
            fields |= {"p": "", "T": ""}
        if k % 5 == 2:
            fields |= {"i": "", "r": ""}
        frames.append('{"stream":"x@markPrice","data":' + _mark(**fields) + "}")
    return frames


def _fed_usdm(frames: list[str], batch: int) -> BookPipeline:
    registry = InstrumentRegistry.load_cached([Venue.BINANCE_FUTURES])
    pipeline = BookPipeline(registry, {Venue.BINANCE_FUTURES: USDM})
    recv = [1_000 + k for k in range(len(frames))]
    for k in range(0, len(frames), batch):
        pipeline.feed_frames(Venue.BINANCE_FUTURES, frames[k : k + batch], recv[k : k + batch])
    pipeline.flush()
    return pipeline


def test_scanned_mark_prices_leave_the_marks_decode_leaves() -> None:
    frames = _usdm_frames()
    scanned_rows = scanned(USDM.scan_frames(frames))
    assert sum(r.is_mark for r in scanned_rows) == 178
    scanned_path = _fed_usdm(frames, 4 * USDM.min_frames)
    decoded_path = _fed_usdm(frames, 1)
    marks = scanned_path.marks
    assert marks == decoded_path.marks
    assert {symbol for _, symbol in marks} == {"BTCUSDT", "ETHUSDT", "NOPEUSDT"}
    btc = marks[(Venue.BINANCE_FUTURES, "BTCUSDT")]
    # the last BTCUSDT mark (k = 177) has no p, i, r or T: they are the one before's (174)
    assert (btc.mark_price, btc.index_price, btc.funding_rate) == (274.174, 273.5, -0.0006)
    assert (btc.next_funding_ns, btc.ts_event_ns, btc.ts_recv_ns) == (17_000 * MS, 177 * MS, 1356)
    columns = [p._mark_columns[:, :1].tolist() for p in (scanned_path, decoded_path)]
    assert columns[0] == columns[1] == [[274.174], [273.5], [-0.0006]]
    # a book added after its symbol's marks takes them
    scanned_path.add_book(Venue.BINANCE_FUTURES, "ETHUSDT")
    decoded_path.add_book(Venue.BINANCE_FUTURES, "ETHUSDT")
    assert scanned_path.marks == decoded_path.marks == marks
    assert scanned_path._mark_columns[:, 1].tolist() == decoded_path._mark_columns[:, 1].tolist()
