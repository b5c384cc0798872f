"""The Hyperliquid numba scanner reads exactly what the msgspec decode reads, or hands
over; books fed through the scanned path equal books fed frame by frame through decode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.hyperliquid import BOOK_LEVELS, PERP
from feeds.hyperliquid_scan import scan_book_frames
from feeds.scan import KIND_SNAPSHOT, SCAN_OTHER, SCAN_SIDE, T_STATUS, join_frames, new_table
from feeds.venues import ADAPTERS
from monitor.domain import MarkPriceEvent, RawBook, Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.feeds.scan_check import (
    Edit,
    assert_scan_equals_decode,
    byte_edits,
    edited,
    scanned,
)
from tests.feeds.sim_stream import sim_frames

SYMBOLS = ["BTC", "ETH", "SOL", "DOGE", "kPEPE", "@107"]


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    frames, _ = sim_frames(
        Venue.HYPERLIQUID,
        PERP,
        SYMBOLS,
        ["l2Book", "activeAssetCtx"],
        2000,
        path="/ws",
        marks_every=3,
    )
    return frames


def test_every_frame_of_the_local_exchange_scans_to_what_decode_reads(
    stream: list[bytes],
) -> None:
    assert assert_scan_equals_decode(PERP, stream) > 1000
    # every book frame is vouched for, its levels byte for byte as decode writes them
    rows = scanned(PERP.scan_frames(stream))
    others = 0
    for data, row in zip(stream, rows, strict=True):
        decoded = PERP.decode(data, 0)
        assert row.is_book == isinstance(decoded, RawBook), data[:120]
        if isinstance(decoded, RawBook):
            assert (row.bids, row.asks) == (bytes(decoded.bids), bytes(decoded.asks))
        else:
            others += 1
    assert others > 10  # subscription answers and mark prices went to decode


GOOD = (
    '{"channel":"l2Book","data":{"coin":"BTC","time":1754450974231,"levels":'
    '[[{"px":"113377.0","sz":"7.6699","n":17}],[{"px":"113378.0","sz":"0.001","n":1}]]}}'
)


def frame(data: str, channel: str = '"l2Book"') -> str:
    return '{"channel":' + channel + ',"data":' + data + "}"


def book(levels: str = '[[{"px":"1.5","sz":"2","n":1}],[]]', rest: str = "") -> str:
    return frame('{"coin":"BTC","time":5,"levels":' + levels + rest + "}")


@pytest.mark.parametrize(
    ("text", "is_book"),
    [
        (GOOD, True),
        (book(), True),
        (book("[[],[]]"), True),  # empty sides
        (book('[[{"sz":"2","px":"1.5"}],[ ]]'), True),  # no n, any order
        (book('[[{"px":1.5,"sz":2e1,"n":1}],[]]'), True),  # bare numbers, as decode copies
        (
            ' { "data" : { "levels" : [ [ { "n" : 1 , "px" : "1" , "sz" : "2" } ] , [ ] ] , '
            '"time" : 0 , "coin" : "@107" } , "channel" : "l2Book" } ',
            True,
        ),  # whitespace, key order, channel last
        (book("[[],[],[]]"), False),  # three sides
        (book("[[]]"), False),
        (book("null"), False),
        (book("[null,[]]"), False),
        (book('[[{"px":"1","sz":"2","n":1,"n":2}],[]]'), False),  # duplicate key
        (book('[[{"px":"1","sz":"2","x":0}],[]]'), False),  # another key
        (book('[[{"px":"1"}],[]]'), False),  # no size
        (book('[[{"px":"1","sz":"2","n":"1"}],[]]'), False),  # quoted n
        (book('[[{"px":"1","sz":"2","n":[1]}],[]]'), False),
        (book('[[{"px":"abc","sz":"2"}],[]]'), False),
        (book('[[{"px":"","sz":"2"}],[]]'), False),
        (book('[[{"px":"1\\u0030","sz":"2"}],[]]'), False),  # an escape
        (book('[[{"px":null,"sz":"2"}],[]]'), False),
        (book('[[{"px":"1","sz":"2"},],[]]'), False),  # trailing comma
        (book('[[{"px":"1","sz":"2"}][]]'), False),  # missing comma
        (book(rest=',"ctx":{}'), False),
        (book(rest=',"time":6'), False),  # duplicate time
        (book(rest=',"\\u0074ime":6'), False),  # an escaped key
        (frame('{"coin":"BTC","time":"5","levels":[[],[]]}'), False),  # quoted time
        (frame('{"coin":"BTC","time":-5,"levels":[[],[]]}'), False),
        (frame('{"coin":"BTC","time":05,"levels":[[],[]]}'), False),
        (frame('{"coin":"BTC","time":5.0,"levels":[[],[]]}'), False),
        (frame('{"coin":"BTC","time":99999999999999999,"levels":[[],[]]}'), False),
        (frame('{"coin":"BTC","levels":[[],[]]}'), False),  # no time
        (frame('{"time":5,"levels":[[],[]]}'), False),  # no coin
        (frame('{"coin":"","time":5,"levels":[[],[]]}'), False),
        (frame('{"coin":"B\\"TC","time":5,"levels":[[],[]]}'), False),
        (frame('{"coin":"BTC","time":5}'), False),  # no levels
        (frame('{"coin":"BTC","time":5,"levels":[[],[]]}', '"l2book"'), False),
        (frame('{"coin":"BTC","time":5,"levels":[[],[]]}', "null"), False),
        (frame('"text"'), False),
        (frame("[]"), False),
        ('{"data":{"coin":"BTC","time":5,"levels":[[],[]]}}', False),  # no channel
        (GOOD.replace('{"channel"', '{"channel":"l2Book","channel"'), False),
        (GOOD[:-1] + ',"x":1}', False),  # another key on the frame
        (GOOD[:-1], False),  # cut short
        (GOOD + "}", False),  # trailing bytes
        ('{"channel":"pong"}', False),
        (
            '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"markPx":"1",'
            '"oraclePx":"1","funding":"0.0001"}}}',
            False,
        ),
        ('{"channel":"error","data":"Invalid subscription {\\"coin\\":\\"XYZ\\"}"}', False),
        ('{"channel":"subscriptionResponse","data":{"method":"subscribe"}}', False),
        ("", False),
        ("[]", False),
        ("garbage", False),
    ],
)
def test_frames_the_scanner_cannot_vouch_for_go_to_decode(text: str, is_book: bool) -> None:
    rows = scanned(PERP.scan_frames([text, GOOD]))
    assert rows[0].is_book == is_book
    assert rows[1].is_book  # a bad neighbour does not spoil the next frame
    assert_scan_equals_decode(PERP, [text, GOOD], recv_ns=123)


CTX = (
    '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"markPx":"1","oraclePx":"1",'
    '"funding":"0.0001"}}}'
)


def test_mark_price_frames_are_side_frames_decode_reads(stream: list[bytes]) -> None:
    status = PERP.scan_frames(stream).table[:, T_STATUS].tolist()
    marks = [f for f, s in zip(stream, status, strict=True) if s == SCAN_SIDE]
    assert len(marks) > 10
    assert all(isinstance(PERP.decode(f, 1), MarkPriceEvent) for f in marks)
    odd = [
        '{"channel":"activeAssetCtx","channel":"l2Book","data":{"coin":"BTC","time":5,'
        '"levels":[[],[]]}}',  # decode would read the last channel: a book
        '{"data":{"coin":"BTC","time":5,"levels":[[],[]]},"channel":"l2Book",'
        '"channel":"activeAssetCtx"}',
        CTX[:-1] + ',"x":1}',
        CTX[:-2],
        '{"channel":"activeAssetCtx"}',
        '{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{}}}x',
    ]
    assert PERP.scan_frames([CTX, *odd]).table[:, T_STATUS].tolist() == [SCAN_SIDE] + [
        SCAN_OTHER
    ] * len(odd)
    assert_scan_equals_decode(PERP, [CTX, *odd])


def test_a_good_frame_scans_to_a_whole_book() -> None:
    (row,) = scanned(PERP.scan_frames([GOOD.encode()]))
    assert row.is_book and row.kind == KIND_SNAPSHOT and row.limit == BOOK_LEVELS
    assert row.symbol_key == PERP.symbol_key("BTC")
    assert (row.first_seq, row.last_seq, row.prev_seq) == (-1, 1754450974231, -1)
    assert row.ts_event_ns == 1754450974231 * 1_000_000
    assert not row.has_checksum
    assert row.bids == b'[["113377.0","7.6699"]]'
    assert row.asks == b'[["113378.0","0.001"]]'


def test_non_ascii_text_frames_keep_byte_offsets_right() -> None:
    other = '{"channel":"error","data":"é"}'  # two bytes for one character
    rows = scanned(PERP.scan_frames([other, GOOD]))
    assert [r.is_book for r in rows] == [False, True]
    assert rows[1].bids == b'[["113377.0","7.6699"]]'


def test_the_kernel_and_its_python_twin_agree(stream: list[bytes]) -> None:
    # py_func: the frame loop in plain Python (the per-frame helpers it calls are compiled)
    frames: list[bytes | str] = [*stream[:300], GOOD, GOOD[:-3], "garbage", GOOD.encode()]
    buf, starts, ends = join_frames(frames)
    compiled, twin = new_table(len(frames)), new_table(len(frames))
    out, twin_out = (
        np.zeros(len(buf) + 4 * len(frames), np.uint8),
        np.zeros(len(buf) + 4 * len(frames), np.uint8),
    )
    used = scan_book_frames(buf, starts, ends, compiled, out)
    assert (
        getattr(scan_book_frames, "py_func", scan_book_frames)(buf, starts, ends, twin, twin_out)
        == used
        > 0
    )
    assert (compiled == twin).all()
    assert (out == twin_out).all()


def test_scanned_and_decoded_paths_leave_the_same_books(stream: list[bytes]) -> None:
    registry = InstrumentRegistry.load_cached([Venue.HYPERLIQUID])
    scanned_pipe = BookPipeline(registry, ADAPTERS)
    decoded_pipe = BookPipeline(registry, ADAPTERS)
    for pipeline in (scanned_pipe, decoded_pipe):
        for symbol in SYMBOLS:
            assert pipeline.add_book(Venue.HYPERLIQUID, symbol) is not None
    batch = 64  # well above the scan threshold (min_frames)
    recv = list(range(1, len(stream) + 1))
    for at in range(0, len(stream), batch):
        scanned_pipe.feed_frames(Venue.HYPERLIQUID, stream[at : at + batch], recv[at : at + batch])
    for data, t in zip(stream, recv, strict=True):
        decoded_pipe.feed_frames(Venue.HYPERLIQUID, [data], [t])
    mine = scanned_pipe.book_summaries(depth=1000)
    theirs = decoded_pipe.book_summaries(depth=1000)
    assert mine == theirs
    assert len(mine) == len(SYMBOLS)
    for summary in mine:
        assert summary["valid"] and summary["messages"] > 100, summary["symbol"]
    assert scanned_pipe.counters.messages == decoded_pipe.counters.messages
    assert scanned_pipe.marks == decoded_pipe.marks


NUMBER_TEXT = st.text(alphabet="0123456789.-+eE", max_size=8)
ORDERS = st.sampled_from(["", "0", "1", "17", "250", "07", "-1", "1.5", "1e2", '"1"', "1 "])


@st.composite
def level_object(draw: st.DrawFn) -> str:
    """A level object mostly as Hyperliquid writes it, its texts and order count drawn
    from what the scanner's usual path must take and what it must leave to the general
    way (signs, exponents, empty texts, a fraction or leading zero in ``n``)."""
    px = draw(
        st.one_of(st.from_regex(r"[1-9][0-9]{0,6}(\.[0-9]{1,5})?", fullmatch=True), NUMBER_TEXT)
    )
    sz = draw(st.one_of(st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,6})?", fullmatch=True), NUMBER_TEXT))
    n = draw(ORDERS)
    return '{"px":"' + px + '","sz":"' + sz + '"' + (',"n":' + n if n else "") + "}"


@settings(max_examples=400, deadline=None)
@given(
    bids=st.lists(level_object(), max_size=5),
    asks=st.lists(level_object(), max_size=5),
    separator=st.sampled_from([",", ", ", " ,"]),
)
def test_levels_scan_to_what_decode_reads_byte_for_byte(
    bids: list[str], asks: list[str], separator: str
) -> None:
    """Whatever the usual path takes reads as decode reads it, byte for byte; what it
    does not take goes the general way or to decode."""
    text = book("[[" + separator.join(bids) + "],[" + separator.join(asks) + "]]")
    assert_reads_as_decode(text.encode())


def assert_reads_as_decode(data: bytes) -> None:
    """The frame is vouched for only if decode reads it as a book, and then its levels
    are byte for byte the ones decode writes (a good frame after it still scans)."""
    row, good = scanned(PERP.scan_frames([data, GOOD]))
    assert good.is_book
    if row.is_book:
        decoded = PERP.decode(data, 0)
        assert isinstance(decoded, RawBook)
        assert row.symbol_key == PERP.symbol_key(decoded.symbol)
        assert row.last_seq == decoded.last_seq and row.ts_event_ns == decoded.ts_event_ns
        assert (row.bids, row.asks) == (bytes(decoded.bids), bytes(decoded.asks))


SPECIAL = b' "\\,:[]{}0123.-eEn\x00\xc3'


@settings(max_examples=300, deadline=None)
@given(
    edits=byte_edits(SPECIAL),
)
def test_mutated_frames_scan_to_what_decode_reads_or_go_to_decode(
    edits: list[Edit],
) -> None:
    """Bytes deleted, inserted or replaced anywhere in a usual frame: the scanner never
    vouches for a frame that decode reads differently (or rejects)."""
    usual = book(
        '[[{"px":"113377.0","sz":"7.6699","n":17},{"px":"113376","sz":"0.5","n":0}],'
        '[{"px":"113378.5","sz":"12","n":3}]]'
    )
    assert_reads_as_decode(edited(usual.encode(), edits))


@st.composite
def whole_book(draw: st.DrawFn) -> tuple[str, list[tuple[int, str]], list[tuple[int, str]]]:
    """One coin's l2Book: up to 20 bid and 20 ask prices around 100,000 (whole dollars:
    on every tick grid), best first, sizes in tenths; the sides may cross or be empty."""
    coin = draw(st.sampled_from(["BTC", "ETH"]))
    prices = st.integers(min_value=99_980, max_value=100_020)
    size = st.integers(min_value=1, max_value=50).map(lambda k: str(k / 10))
    bid_px = sorted(draw(st.sets(prices, max_size=20)), reverse=True)
    ask_px = sorted(draw(st.sets(prices, max_size=20)))
    if draw(st.booleans()) and bid_px and ask_px:  # most books are not crossed
        ask_px = [p for p in ask_px if p > bid_px[0]]
    bids = [(p, draw(size)) for p in bid_px]
    asks = [(p, draw(size)) for p in ask_px]
    return coin, bids, asks


def l2book(
    coin: str, time_ms: int, bids: list[tuple[int, str]], asks: list[tuple[int, str]]
) -> bytes:
    def side(levels: list[tuple[int, str]]) -> str:
        return ",".join(f'{{"px":"{p}","sz":"{s}","n":1}}' for p, s in levels)

    return (
        f'{{"channel":"l2Book","data":{{"coin":"{coin}","time":{time_ms},'
        f'"levels":[[{side(bids)}],[{side(asks)}]]}}}}'
    ).encode()


@settings(max_examples=60, deadline=None)
@given(books=st.lists(whole_book(), min_size=PERP.min_frames, max_size=48))
def test_batches_of_whole_books_leave_the_books_frame_by_frame_leaves(
    books: list[tuple[str, list[tuple[int, str]], list[tuple[int, str]]]],
) -> None:
    """Snapshots that replace a book with fewer or more levels, levels that vanish, empty
    and crossed sides: fed as scanned batches (their outcomes settled per book at once
    when all are snapshots) the books, counters and outcomes equal those of the same
    frames applied one at a time."""
    frames = [l2book(coin, 1_700_000_000_000 + k, b, a) for k, (coin, b, a) in enumerate(books)]
    registry = InstrumentRegistry.load_cached([Venue.HYPERLIQUID])
    batched_pipe = BookPipeline(registry, ADAPTERS)
    single_pipe = BookPipeline(registry, ADAPTERS)
    for pipeline in (batched_pipe, single_pipe):
        for symbol in ("BTC", "ETH"):
            assert pipeline.add_book(Venue.HYPERLIQUID, symbol) is not None
    recv = list(range(1, len(frames) + 1))
    batched_pipe.feed_frames(Venue.HYPERLIQUID, frames, recv)
    for data, t in zip(frames, recv, strict=True):
        single_pipe.on_message(Venue.HYPERLIQUID, "ws", "", data, t)
    assert batched_pipe.book_summaries(depth=100) == single_pipe.book_summaries(depth=100)
    assert batched_pipe.counters.messages == single_pipe.counters.messages
