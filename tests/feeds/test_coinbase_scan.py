"""The numba scanner of Coinbase ``l2_data`` frames reads exactly what the msgspec decode
reads (levels transcoded to the arrays decode builds, byte for byte), or hands over."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.coinbase import ADAPTER
from feeds.coinbase_scan import N_LEVEL, _text_end, level_rows, scan_l2_frames
from feeds.scan import join_frames, new_table, rfc3339_ns
from feeds.sim.base import ExchangeSim
from feeds.sim.coinbase import CoinbaseProtocol
from monitor.domain import EventKind, RawBook, Venue
from monitor.errors import ParseError
from monitor.instruments import InstrumentRegistry
from tests.feeds.scan_check import (
    Edit,
    assert_scan_equals_decode,
    byte_edits,
    edited,
    scanned,
)
from tests.feeds.sim_stream import offline_connection

MIDS = {"BTC-USD": "60000", "ETH-USD": "3000", "DOGE-USD": "0.1"}


def sim_frames(steps: int, *, seed: int = 7, levels: int = 80) -> tuple[list[bytes], list[str]]:
    """The frames the local exchange sends one connection subscribed as the adapter
    subscribes: subscription answers, snapshots, updates, heartbeats, an error, and a
    product unsubscribed and subscribed again mid-stream (a second snapshot)."""
    registry = InstrumentRegistry.load_cached([Venue.COINBASE])
    protocol = CoinbaseProtocol()
    sim = ExchangeSim([protocol], seed=seed)
    for symbol, mid in MIDS.items():
        instrument = registry.get(Venue.COINBASE, symbol)
        assert instrument is not None
        sim.add_instrument(instrument, mid=mid, levels=levels)
    conn = offline_connection(sim, protocol, Venue.COINBASE)
    for text in ADAPTER.subscribe_frames(list(MIDS), ["level2"]):
        protocol.on_text(sim, conn, text)
    out: list[bytes] = []
    for step in range(steps):
        sim.step(Venue.COINBASE, n_changes=1 + step % 7)
        if step % 25 == 0:
            for text in protocol.heartbeat_frames(conn):
                conn.send(text)
        if step == steps // 2:
            protocol.on_text(
                sim, conn, '{"type":"subscribe","product_ids":["NOPE-USD"],"channel":"level2"}'
            )
            protocol.on_text(
                sim, conn, '{"type":"unsubscribe","product_ids":["ETH-USD"],"channel":"level2"}'
            )
            protocol.on_text(
                sim, conn, '{"type":"subscribe","product_ids":["ETH-USD"],"channel":"level2"}'
            )
        while not conn.queue.empty():
            out.append(conn.queue.get_nowait().encode())
    return out, list(MIDS)


def test_every_frame_of_the_local_exchange_scans_to_what_decode_reads() -> None:
    frames, _ = sim_frames(400)
    assert assert_scan_equals_decode(ADAPTER, frames) > 300
    # every book frame is scanned, its levels byte for byte what decode builds; the rest
    # (subscriptions, heartbeats, the error) is handed over
    rows = scanned(ADAPTER.scan_frames(frames))
    kinds = set()
    for data, row in zip(frames, rows, strict=True):
        decoded = ADAPTER.decode(data, 0)
        assert row.is_book == isinstance(decoded, RawBook), data[:120]
        if isinstance(decoded, RawBook):
            kinds.add(decoded.kind)
            assert (row.bids, row.asks) == (bytes(decoded.bids), bytes(decoded.asks))
    assert kinds == {EventKind.SNAPSHOT, EventKind.DELTA}
    assert sum(b'"heartbeats"' in f[:40] for f in frames) > 10
    assert sum(b'"type":"error"' in f for f in frames) == 1


def test_text_and_bytes_frames_scan_alike() -> None:
    frames, _ = sim_frames(30)
    as_bytes = scanned(ADAPTER.scan_frames(frames))
    as_text = scanned(ADAPTER.scan_frames([f.decode() for f in frames]))
    assert as_text == as_bytes


def frame(event: str, *, ts: str = '"2023-02-09T20:32:50.714964855Z"', head: str = "") -> str:
    return (
        '{"channel":"l2_data","client_id":"",' + head + '"timestamp":' + ts + ","
        '"sequence_num":7,"events":[' + event + "]}"
    )


def event(updates: str, *, kind: str = "update", product: str = "BTC-USD") -> str:
    return '{"type":"' + kind + '","product_id":"' + product + '","updates":[' + updates + "]}"


BID = '{"side":"bid","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21921.73","new_quantity":"0.06317902"}'
ASK = '{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z","price_level":"21921.74","new_quantity":"0"}'
GOOD = frame(event(BID + "," + ASK + "," + BID.replace("21921.73", "21920")))


@pytest.mark.parametrize(
    ("data", "book"),
    [
        (GOOD, True),
        (frame(event(BID, kind="snapshot")), True),
        (frame(event("")), True),  # no levels at all
        (frame(event(ASK.replace('"offer"', '"ask"'))), True),
        (frame(event(BID), ts='"2023-02-09T20:32:50Z"'), True),  # no fraction
        (frame(event(BID), ts='"2023-02-09T20:32:50.7Z"'), True),
        (frame(event(BID), ts='"2023-02-09T20:32:50.7149648551234Z"'), True),  # to ns
        (
            ' { "events" : [ { "updates" : [ { "new_quantity" : "1" , "price_level" : "2" ,'
            ' "side" : "bid" } ] , "product_id" : "BTC-USD" , "type" : "update" } ] ,'
            ' "timestamp" : "2023-02-09T20:32:50Z" , "channel" : "l2_data" } ',
            True,
        ),  # keys in any order, whitespace everywhere
        (frame(event(BID) + "," + event(ASK, product="ETH-USD")), False),  # two books
        (frame(event(BID) + "," + event(ASK)), False),  # two events of one book
        (frame(""), False),  # no events
        (frame(event(BID), ts='""'), False),  # the time of receipt
        (frame(event(BID), ts='"2023-02-09t20:32:50Z"'), False),  # odd, though decode reads it
        (frame(event(BID), ts='"2023-02-09 20:32:50Z"'), False),
        (frame(event(BID), ts='"2023-02-09T20:32:50.Z"'), False),
        (frame(event(BID), ts='"2023-02-09T20:32:50+00:00"'), False),
        (frame(event(BID), ts='"2023-02-30T20:32:50Z"'), False),
        (frame(event(BID), ts='"2023-13-09T20:32:50Z"'), False),
        (frame(event(BID), ts="1675974770"), False),
        (frame(event(BID), head='"timestamp":"2023-02-09T20:32:50Z",'), False),  # duplicate key
        (frame(event(BID), head='"type":"error",'), False),
        (frame(event(BID), head='"extra":{"a":[1]},'), False),  # not a plain string
        (frame(event(BID.replace('"bid"', '"buy"'))), False),
        (frame(event(BID.replace('"side":"bid",', ""))), False),  # no side
        (frame(event(BID.replace('"21921.73"', "21921.73"))), False),  # bare number
        (frame(event(BID.replace("21921.73", "21921\\u002e73"))), False),  # an escape
        (frame(event(BID.replace("21921.73", "21921.73é"))), False),  # not ASCII
        (frame(event(BID.replace('"bid",', '"bid","side":"bid",'))), False),  # duplicate
        (frame(event(BID, kind="partial")), False),
        (frame(event(BID, product="")), False),
        (frame(event(BID).replace('"product_id":"BTC-USD",', "")), False),
        (frame(event(BID).replace('"updates":[' + BID + "]", '"updates":null')), False),
        (frame(event(BID + ",")), False),  # a trailing comma
        (frame(event(BID)).replace('"sequence_num":7', '"sequence_num":7.0'), False),
        (frame(event(BID)).replace('"sequence_num":7', '"sequence_num":07'), False),
        (frame(event(BID)).replace('"sequence_num":7', '"sequence_num":"7"'), False),
        (frame(event(BID)).replace('"l2_data"', '"l2_dat\\u0061"'), False),
        (frame(event(BID))[:-1], False),  # truncated
        (frame(event(BID))[:-40], False),
        (frame(event(BID)) + "x", False),  # extra bytes
        (frame(event(BID)) + frame(event(BID)), False),
        (
            '{"channel":"heartbeats","client_id":"","timestamp":"2023-02-09T20:32:50Z",'
            '"sequence_num":8,"events":[{"current_time":"x","heartbeat_counter":"3"}]}',
            False,
        ),
        ('{"type":"error","message":"Failed to subscribe: unknown product NOPE-USD"}', False),
        ("{}", False),
        ("[]", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_frames_the_scanner_cannot_vouch_for_go_to_decode(data: str, book: bool) -> None:
    assert_scan_equals_decode(ADAPTER, [GOOD, data])
    rows = scanned(ADAPTER.scan_frames([GOOD, data, GOOD]))
    assert rows[0].is_book
    assert rows[1].is_book == book
    if book:
        decoded = ADAPTER.decode(data, 0)
        assert isinstance(decoded, RawBook)
        assert (rows[1].bids, rows[1].asks) == (bytes(decoded.bids), bytes(decoded.asks))
        assert rows[1].ts_event_ns == decoded.ts_event_ns


def test_levels_keep_their_wire_order_per_side() -> None:
    (row,) = scanned(ADAPTER.scan_frames([GOOD]))
    assert json.loads(row.bids) == [["21921.73", "0.06317902"], ["21920", "0.06317902"]]
    assert json.loads(row.asks) == [["21921.74", "0"]]
    assert row.ts_event_ns == 1675974770_714964855
    assert row.symbol_key == ADAPTER.symbol_key("BTC-USD")


@pytest.mark.parametrize(
    "handed_over",
    [
        frame(event(BID) + "," + event(ASK, product="ETH-USD")),  # decode gives a list
        frame(event(BID, kind="snapshot"), ts='"2023-02-09 20:32:50Z"'),
        "garbage",
    ],
)
def test_a_handed_over_frame_leaves_its_neighbours_scanned(handed_over: str) -> None:
    heartbeat = (
        '{"channel":"heartbeats","timestamp":"2023-02-09T20:32:50Z","sequence_num":8,'
        '"events":[{"current_time":"x","heartbeat_counter":"3"}]}'
    )
    frames = [GOOD, heartbeat, GOOD, handed_over, GOOD, heartbeat, GOOD]
    rows = scanned(ADAPTER.scan_frames(frames))
    assert [r.is_book for r in rows] == [True, False, True, False, True, False, True]
    assert len({(r.bids, r.asks) for r in rows if r.is_book}) == 1


def update(
    side: str = "bid",
    time: str = '"2023-02-09T20:32:50.714964855Z"',
    px: str = '"21921.73"',
    qty: str = '"0.5"',
) -> str:
    """An update written Coinbase's usual way (the scanner's fast path), its values as given."""
    return (
        '{"side":"'
        + side
        + '","event_time":'
        + time
        + ',"price_level":'
        + px
        + ',"new_quantity":'
        + qty
        + "}"
    )


SNAPSHOT_TIME = '"1970-01-01T00:00:00Z"'  # what snapshot levels carry


@pytest.mark.parametrize(
    ("updates", "book"),
    [
        (update(), True),
        (update("offer"), True),
        (update("ask"), True),
        (update(time=SNAPSHOT_TIME), True),  # another event_time length
        (update(time='"2026-07-14T09:30:00.101234Z"'), True),
        (update(time='"2023-02-09T20:32:50.7149648551Z"'), True),  # 31 bytes
        (update(time='""'), True),
        (update(time='"not a time at all, but a string"'), True),  # decode does not read it
        # 13 bytes: the byte where a usual time closes is the empty price's opening quote
        (update(time='"2023-02-09T20"', px='""'), True),
        (update(px='""', qty='""'), True),  # empty texts: decode keeps them, so does the scan
        (update(time='"2023-02-09T20:32:50.71496485\\u0035Z"'), False),  # an escape
        (update(time='"2023-02-09T20:32:50.7149648\\"5Z"'), False),
        (update(time='"2023-02-09T20:32:50.71496485\\u0035"'), False),
        (update(time='"2023-02-09T20:32:50.714964855\x7f"'), False),  # not printable
        (update(time='"2023-02-09T20:32:50.714964855\x1f"'), False),
        (update(time='"2023-02-09T20:32:50.714964855é"'), False),
        (update(time="1675974770"), False),  # not a string
        (update(time="null"), False),
        (update(time='"2023-02-09T20:32:50.714964855Z'), False),  # unclosed
        (update(px='"1234567"'), True),  # the quote in the first word's last byte
        (update(px='"12345678"'), True),  # just past it
        (update(px='"0.000000000001"', qty='"1"'), True),
        (update(px='"1\x7f"'), False),
        (update(px='"1é"'), False),
        (update(px='"\x00"'), False),
        (update(qty='"2\x1f"'), False),
        (update(px='"21921.73\\u0030"'), False),
        (update(px='"21921\t73"'), False),
        (update(qty='"0.5\\\\"'), False),
        (update(qty="0.5"), False),
        (update(px="21921.73"), False),
        (update(side="Bid"), False),
        (update(side="bidx"), False),
        (update(side="offe"), False),
        (update(side=""), False),
        # the keys in another order, missing, extra or twice: the general way
        (
            '{"price_level":"21921.73","side":"bid","new_quantity":"0.5",'
            '"event_time":"2023-02-09T20:32:50.714964855Z"}',
            True,
        ),
        (
            '{"side":"bid","price_level":"21921.73","event_time":'
            '"2023-02-09T20:32:50.714964855Z","new_quantity":"0.5"}',
            True,
        ),
        ('{"side":"offer","price_level":"21921.73","new_quantity":"0.5"}', True),
        (update()[:-1] + ',"extra":"x"}', True),
        (update()[:-1] + ',"extra":1}', False),  # not a plain string
        ('{"extra":"x",' + update()[1:], True),
        (update()[:-1] + ',"side":"bid"}', False),  # a duplicate key
        (update()[:-1] + ',"price_level":"1"}', False),
        (update().replace('"event_time"', '"event_tim"'), True),  # an unknown key
        (update().replace('"price_level"', '"price_levels"'), False),  # no price
        (update().replace('"new_quantity"', '"new_quantitY"'), False),
        (update().replace('"side"', '"sidE"'), False),
        (update().replace('"event_time":', '"event_time":"x","event_time":'), True),
        # whitespace anywhere JSON allows it: the general way
        ("{ " + update()[1:], True),
        (update()[:-1] + " }", True),
        (update().replace(":", " : "), True),
        (update().replace(",", " ,\n"), True),
        (update().replace(",", "\t,"), True),
        (update().replace(",", "\r\n,\t"), True),
        (update() + " , " + update("offer"), True),
        (update() + ",\n" + update("offer"), True),
        ("\n" + update() + "\t", True),
        (update().replace(",", ",\f"), False),  # no JSON whitespace
        (update().replace(":", "\v:"), False),
        # several updates, fast and general ones mixed
        (
            update()
            + ","
            + update("offer", time=SNAPSHOT_TIME)
            + ","
            + '{"new_quantity":"2","price_level":"3","side":"bid"}'
            + ","
            + update("ask"),
            True,
        ),
        (update() + "," + update(), True),
        (update() + ",," + update(), False),
        (update() + "," + update()[:-1], False),
        (update() + update(), False),  # no comma
        (update() + ",{}", False),
        (update() + ",[]", False),
        (update()[:-1] + "]", False),
    ],
)
def test_usual_and_unusual_updates_scan_as_decode_reads(updates: str, book: bool) -> None:
    """Updates written Coinbase's usual way are checked byte by byte without the key loop;
    any other spelling goes the general way or to decode, and reads as decode reads."""
    raw = frame(event(updates)).encode()
    rows = scanned(ADAPTER.scan_frames([GOOD, raw, GOOD]))
    assert rows[0].is_book and rows[2].is_book
    assert rows[1].is_book == book, raw
    if book:
        decoded = ADAPTER.decode(raw, 0)
        assert isinstance(decoded, RawBook)
        assert (rows[1].bids, rows[1].asks) == (bytes(decoded.bids), bytes(decoded.asks))
        assert rows[1].ts_event_ns == decoded.ts_event_ns


def _reference_text_end(data: bytes, i: int, end: int) -> int:
    for k in range(i, end):
        if data[k] == 34:
            return k
        if data[k] < 32 or data[k] > 126 or data[k] == 92:
            return -1
    return -1


@settings(max_examples=500, deadline=None)
@given(
    data=st.lists(st.sampled_from(list(b'0123456789."\\\x00\x1f\x7f\x80\xc3 Z')), max_size=24),
    i=st.integers(min_value=0, max_value=24),
    cut=st.integers(min_value=0, max_value=24),
)
def test_text_end_finds_the_closing_quote_as_a_byte_loop_does(
    data: list[int], i: int, cut: int
) -> None:
    """The word-at-a-time quote search (prices and sizes) agrees with a plain byte loop,
    wherever the text starts, the frame ends and the buffer ends."""
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    i = min(i, len(raw))
    end = max(i, len(raw) - cut)
    assert _text_end(raw, i, end) == _reference_text_end(bytes(data), i, end)


def test_a_frame_cut_anywhere_is_never_vouched_for() -> None:
    """Every prefix of a frame of usual and unusual updates, followed in the buffer by a
    good frame (whose bytes a scan past the frame's end would read), goes to decode."""
    whole = frame(
        event(update() + "," + update("offer", time=SNAPSHOT_TIME) + ",{ " + update()[1:])
    ).encode()
    cuts = [whole[:k] for k in range(len(whole))]
    rows = scanned(ADAPTER.scan_frames([*cuts, whole, GOOD]))
    assert not any(r.is_book for r in rows[: len(cuts)])
    assert rows[-2].is_book and rows[-1].is_book


def test_the_kernel_and_its_python_twin_agree() -> None:
    # py_func: the frame loop in plain Python (the per-frame helpers it calls are compiled)
    raw, _ = sim_frames(60)
    odd = [
        frame(event(update() + "," + update("offer", time=SNAPSHOT_TIME))),
        frame(event('{"price_level":"1","side":"bid","new_quantity":"2"}')),
        frame(event(update(time='"2023-02-09T20"', px='""'))),
        GOOD[:-3],
        "garbage",
    ]
    frames: list[bytes | str] = [*raw, *odd, GOOD.encode()]
    buf, starts, ends = join_frames(frames)
    rows = level_rows(int((ends - starts).max()))
    compiled, twin = new_table(len(frames)), new_table(len(frames))
    out, twin_out = np.zeros(len(buf) + 64, np.uint8), np.zeros(len(buf) + 64, np.uint8)
    levels = np.zeros((rows, N_LEVEL), np.int64)
    used = scan_l2_frames(buf, starts, ends, out, levels, compiled)
    assert (
        getattr(scan_l2_frames, "py_func", scan_l2_frames)(
            buf, starts, ends, twin_out, levels.copy(), twin
        )
        == used
        > 0
    )
    assert (compiled == twin).all()
    assert (out == twin_out).all()


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2023-02-09T20:32:50.714964855Z", 1675974770_714964855),
        ("2024-02-29T23:59:59.5Z", 1709251199_500000000),
        ("2000-03-01T00:00:00.000000001Z", 951868800_000000001),
        ("1969-12-31T23:59:59Z", -1_000_000_000),
        ("2023-02-29T00:00:00Z", -1),
        ("2100-02-29T00:00:00Z", -1),
        ("2023-02-09T24:00:00Z", -1),
        ("2023-02-09T20:60:00Z", -1),
        ("2023-02-09T20:32:60Z", -1),
        ("2023-00-09T20:32:50Z", -1),
        ("2023-02-00T20:32:50Z", -1),
        ("2023-02-09T20:32:50", -1),
        ("2023-02-09T20:32:5xZ", -1),
        ("2023-02-09T20:32:50.1x2Z", -1),
        ("2023-2-09T20:32:50Z", -1),
    ],
)
def test_rfc3339_ns_reads_strict_utc_times_exactly(text: str, ns: int) -> None:
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    assert rfc3339_ns(raw, 0, len(raw)) == ns
    twin = getattr(rfc3339_ns, "py_func", rfc3339_ns)  # the plain-Python kernel
    assert twin(raw, 0, len(raw)) == ns


SPECIAL = b' "\\,:[]{}0.-eZTabcdz\x00\xc3'


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(
        [
            GOOD,
            frame(event(BID, kind="snapshot")),
            frame(event("")),
            frame(event(BID) + "," + event(ASK)),
            frame(event(update() + "," + update("offer", time=SNAPSHOT_TIME), kind="snapshot")),
        ]
    ),
    edits=byte_edits(SPECIAL),
)
def test_mutated_frames_scan_to_what_decode_reads_or_go_to_decode(
    base: str, edits: list[Edit]
) -> None:
    """Bytes deleted, inserted or replaced anywhere: the scanner never vouches for a frame
    that decode reads differently (or rejects)."""
    data = edited(base.encode(), edits)
    row, good = scanned(ADAPTER.scan_frames([data, GOOD]))
    assert good.is_book
    try:
        decoded: object = ADAPTER.decode(data, 0)
    except ParseError:
        decoded = None
    if not isinstance(decoded, RawBook):
        assert not row.is_book, data
    elif row.is_book:  # the level texts may be no numbers: compared as written
        assert (row.bids, row.asks) == (bytes(decoded.bids), bytes(decoded.asks))
        assert (row.symbol_key, row.kind, row.ts_event_ns) == (
            ADAPTER.symbol_key(decoded.symbol),
            int(decoded.kind),
            decoded.ts_event_ns,
        )
