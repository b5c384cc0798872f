"""The OKX numba frame scanner reads exactly what the msgspec decode reads, or hands over.

Frames come from the real 2022 recording (real CRC32 checksums, no sequence ids), from the
local exchange's OKX protocol (sequence ids, checksums, books5, mark prices, heartbeats,
acks, a lost frame and a corrupted checksum), and from a table of odd frames. The scanned
path of the pipeline must leave every book exactly as the decode path does.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from feeds.contract import BookMessage
from feeds.okx import BOOK_CHANNELS, OKX
from feeds.okx_scan import SCANNED_CHANNELS, scan_book_frames
from feeds.scan import join_frames, new_table
from feeds.sim.base import ExchangeSim
from feeds.sim.exchange import add_books
from feeds.sim.okx import OkxProtocol
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.conftest import OKX_RECORDING
from tests.feeds.scan_check import assert_scan_equals_decode, scanned
from tests.feeds.sim_stream import offline_connection

SYMBOLS = ["BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP", "ETH-USDT"]
BOOKS5 = "ETH-USDT-SWAP"  # subscribed on books5 (snapshots in every frame: decode's)


def recorded() -> tuple[list[tuple[str, str]], list[str]]:
    """The recording's REST answers (url, text) and websocket frames, in order."""
    http, ws = [], []
    with gzip.open(OKX_RECORDING, "rt") as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "ws":
                ws.append(rec["data"])
            elif rec["kind"] == "http":
                http.append((rec["url"], rec["data"]))
    return http, ws


def sim_frames(n_steps: int = 120, *, checksum: bool = True) -> list[bytes]:
    """What the local exchange sends one OKX connection, as bench/sim_corpus.py plays it
    (no socket): acks, snapshots, deltas, books5, mark prices, heartbeats, a ping's pong,
    a lost delta (a gap) and a corrupted checksum."""
    registry = InstrumentRegistry.load_cached([Venue.OKX])
    protocol = OkxProtocol(checksum=checksum, book_heartbeat_s=0.0)
    sim = ExchangeSim([protocol], seed=11)
    add_books(sim, registry, Venue.OKX, [*SYMBOLS, BOOKS5], levels=60)
    conn = offline_connection(sim, protocol, Venue.OKX, "/ws/v5/public")
    for text in [
        *OKX.subscribe_frames(SYMBOLS, ["books", "mark-price,funding-rate"]),
        *OKX.subscribe_frames([BOOKS5], ["books5"]),
        "ping",
    ]:
        protocol.on_text(sim, conn, text)
    out: list[bytes] = []
    for step in range(n_steps):
        if step == 40:
            sim.lose_next(Venue.OKX, SYMBOLS[1])
        if step == 70:
            sim.corrupt_checksum(Venue.OKX, SYMBOLS[2])
        sim.step(Venue.OKX)
        if step % 25 == 0:
            for text in protocol.heartbeat_frames(conn):
                conn.send(text)
            for book in sim.books.values():
                for text in protocol.mark_frames(conn, book):
                    conn.send(text)
        while not conn.queue.empty():
            out.append(conn.queue.get_nowait().encode())
    return out


def test_the_scanned_channels_have_the_adapters_depths() -> None:
    assert all(BOOK_CHANNELS[name] == depth for name, depth in SCANNED_CHANNELS.items())


def test_every_recorded_frame_scans_to_what_decode_reads() -> None:
    _, frames = recorded()
    books = assert_scan_equals_decode(OKX, frames)
    # every book frame of the recording is scanned (3 snapshots, 287 updates), real CRCs
    rows = scanned(OKX.scan_frames(frames))
    decoded = [OKX.decode(f, 0) for f in frames]
    assert books == sum(type(d) is BookMessage for d in decoded) == 290
    for data, row, dec in zip(frames, rows, decoded, strict=True):
        assert row.is_book == (type(dec) is BookMessage), data[:120]
        if type(dec) is BookMessage:
            assert (row.bids, row.asks) == (bytes(dec.bids), bytes(dec.asks))
            assert row.has_checksum


@pytest.mark.parametrize("checksum", [True, False], ids=["crc", "checksum-0"])
def test_every_frame_of_the_local_exchange_scans_to_what_decode_reads(checksum: bool) -> None:
    frames = sim_frames(checksum=checksum)
    books = assert_scan_equals_decode(OKX, frames)
    # the books-channel frames are all scanned; books5, marks, acks and pong are not
    channels = [
        json.loads(f).get("arg", {}).get("channel") if f != b"pong" else None for f in frames
    ]
    events = [b'"event"' in f for f in frames]
    expected = sum(c == "books" and not e for c, e in zip(channels, events, strict=True))
    assert books == expected > 400
    assert any(c == "books5" for c in channels)
    assert any(c == "mark-price" for c in channels)
    rows = scanned(OKX.scan_frames(frames))
    # the mark channels and pong are side frames: decoded wherever, never a book
    for c, e, f, r in zip(channels, events, frames, rows, strict=True):
        mark = c in {"mark-price", "funding-rate"} and not e
        assert r.is_side == (mark or f == b"pong"), f[:120]
    assert sum(r.is_side for r in rows) > 20
    assert any(r.is_book and r.first_seq == r.prev_seq for r in rows)  # heartbeats chain
    with_checksum = sum(r.is_book and r.has_checksum for r in rows)
    assert with_checksum > 400 if checksum else with_checksum == 1  # the corrupted one


U = '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{'
D = '"asks":[["2","1","0","1"]],"bids":[["1","3","0","2"]],"ts":"1652458996256",'
GOOD = U + D + '"checksum":-1230,"prevSeqId":7,"seqId":8}]}'
SNAP = GOOD.replace('"update"', '"snapshot"')
ETH = GOOD.replace('"BTC-USDT"', '"ETH-USDT"')


@pytest.mark.parametrize(
    ("frame", "book"),
    [
        (GOOD, True),
        (SNAP, True),
        (GOOD.replace('"books"', '"books-l2-tbt"'), True),
        (SNAP.replace('"books"', '"books50-l2-tbt"'), True),
        # whitespace anywhere JSON allows it, keys in any order
        (
            ' { "data" : [ { "seqId" : 8 , "bids" : [ [ "1" , "3" , "0" , "2" ] ] , "asks" : [ ] ,'
            ' "ts" : 1652458996256 } ] , "action" : "update" ,'
            ' "arg" : { "instId" : "BTC-USDT" , "channel" : "books" } } \n',
            True,
        ),
        (U + D.replace('[["2","1","0","1"]]', "[]") + '"seqId":8,"prevSeqId":8}]}', True),
        (U + D.replace('"1652458996256"', "1652458996256") + '"seqId":"8"}]}', True),
        (U + D + '"seqId":8,"prevSeqId":"-1","checksum":"-5"}]}', True),
        (U + D + '"checksum":0}]}', True),  # no checksum (has_checksum False)
        (U + D[:-1] + "}]}", True),  # no ids, no checksum: the 2022 shape without a CRC
        (U + D + '"instType":"SPOT","x":null,"y":-1.5e3,"z":true}]}', True),  # unknown scalars
        (GOOD[:-1] + ',"extra":"x"}', True),
        (U + D.replace('"1","3"', "1.5,3") + '"seqId":8}]}', True),  # bare numbers in levels
        # handed over to decode (which handles or rejects them)
        (GOOD.replace('"update"', '"partial"'), False),
        (GOOD.replace('"books"', '"books5"'), False),
        (GOOD.replace('"books"', '"trades"'), False),
        (GOOD.replace('"BTC-USDT"', '""'), False),  # empty instId
        (GOOD.replace('"BTC-USDT"', '"BTC-\\u0055SDT"'), False),  # escape in the symbol
        (GOOD.replace('"BTC-USDT"', '"BTC-ÜSDT"'), False),  # non-ASCII symbol
        (GOOD.replace('"action"', '"\\u0061ction"'), False),  # escape in a key
        (GOOD.replace('"update"', '"upd\\u0061te"'), False),
        (GOOD.replace("}]}", "},{" + D[:-1] + "}]}"), False),  # two books in one frame
        (GOOD.replace('"data":[{', '"data":[]}').split("]}")[0] + "]}", False),
        (U + D + '"seqId":8,"seqId":9}]}', False),  # duplicate key
        (GOOD[:-1] + ',"action":"update"}', False),  # duplicate top-level key
        (GOOD.replace('"instId"', '"channel":"books","instId"'), False),  # duplicate in arg
        (U + D.replace('"ts":"1652458996256",', "") + '"seqId":8}]}', False),  # no ts
        (U + D.replace('"asks":[["2","1","0","1"]],', "") + '"seqId":8}]}', False),  # no asks
        (GOOD.replace('"action":"update",', ""), False),  # no action
        (GOOD.replace('"ts":"1652458996256"', '"ts":"-1"'), False),
        (GOOD.replace('"ts":"1652458996256"', '"ts":"16524589962x6"'), False),
        (GOOD.replace('"ts":"1652458996256"', '"ts":1.5'), False),
        (GOOD.replace('"ts":"1652458996256"', '"ts":"0165"'), False),  # leading zero
        (GOOD.replace('"seqId":8', '"seqId":8.0'), False),
        (GOOD.replace('"seqId":8', '"seqId":1e3'), False),
        (GOOD.replace('"seqId":8', '"seqId":null'), False),
        (GOOD.replace('"seqId":8', '"seqId":"8'), False),
        (GOOD.replace('"seqId":8', '"seqId":99999999999999999999'), False),  # beyond int64
        (GOOD.replace('"checksum":-1230', '"checksum":true'), False),
        (GOOD.replace('"checksum":-1230', '"checksum":-0'), False),
        (GOOD.replace('[["2","1","0","1"]]', '"x"'), False),  # levels not an array
        (GOOD.replace('[["2","1","0","1"]]', "[[]]"), False),  # an empty level
        (GOOD.replace('[["2","1","0","1"]]', '[["2","1",]]'), False),  # trailing comma
        (GOOD.replace('[["2","1","0","1"]]', '[["2" "1"]]'), False),  # missing comma
        (GOOD.replace('[["2","1","0","1"]]', '[["2","1"],]'), False),
        (GOOD.replace('[["2","1","0","1"]]', '[["2","1"]'), False),  # unclosed
        (GOOD.replace('[["2","1","0","1"]]', '[["2","1\\n"]]'), False),  # escape in a level
        (GOOD.replace('[["2","1","0","1"]]', '[["2",{"a":1}]]'), False),
        (GOOD.replace('[["2","1","0","1"]]', '[["2",01]]'), False),  # bad number
        (GOOD.replace('"prevSeqId":7', '"prevSeqId":7,"fundingTime":"x"'), False),
        (GOOD.replace('"prevSeqId":7', '"prevSeqId":7,"markPx":{"a":1}'), False),
        (GOOD[:-1] + ',"event":""}', False),
        (GOOD[:-1] + ',"code":"0","msg":""}', False),
        (GOOD[:-1] + ',"extra":[1]}', False),  # an unknown field that is not a scalar
        (GOOD[:-1] + ',"extra":tru}', False),
        (GOOD.replace('"arg":{', '"arg":{"a":,'), False),
        (GOOD.replace('{"arg"', '{,"arg"'), False),
        (GOOD.replace(',"action"', ',,"action"'), False),
        (GOOD.replace('"action":', '"action"'), False),
        (GOOD + "x", False),  # bytes after the object
        (GOOD + "{}", False),
        (GOOD[:-3], False),  # cut short
        (GOOD[:60], False),
        ('{"arg":null,"action":"update","data":[]}', False),
        ('{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a"}', False),
        ('{"event":"error","code":"60018","msg":"x","connId":"a"}', False),
        ("pong", False),
        ("", False),
        ("{}", False),
        ("[]", False),
        ("garbage", False),
    ],
)
def test_frames_the_scanner_cannot_vouch_for_go_to_decode(frame: str, book: bool) -> None:
    rows = scanned(OKX.scan_frames([ETH, frame]))
    assert rows[0].is_book  # another book's frame before it: nothing of it leaks
    assert rows[1].is_book == book
    # and whatever it said, it agrees with decode, as text and as bytes
    assert_scan_equals_decode(OKX, [frame, GOOD])
    assert_scan_equals_decode(OKX, [frame.encode(), GOOD.encode()])


MARK = '{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"instType":"SWAP",'
MARK += '"instId":"BTC-USDT-SWAP","markPx":"115000.1","ts":"1652458996256"}]}'


@pytest.mark.parametrize(
    ("frame", "side"),
    [
        (MARK, True),
        ("pong", True),
        (MARK.replace("mark-price", "index-tickers").replace("markPx", "idxPx"), True),
        (MARK.replace("mark-price", "funding-rate").replace("markPx", "fundingRate"), True),
        (MARK.replace("}]}", '},{"instId":"X","markPx":"1"}]}'), True),  # several: all marks
        (
            ' { "arg" : {"instId":"BTC-USDT-SWAP","channel":"mark-price"} , "data" : [ {"markPx" : "1"} ] } ',
            True,
        ),
        (MARK.replace('"markPx":"115000.1"', '"markPx":null'), True),  # decode rejects: no book
        # anything else is decoded in its place
        (MARK.replace('"data"', '"action":"update","data"'), False),
        (MARK[:-1] + ',"event":"x"}', False),
        (MARK[:-1] + ',"arg":{"channel":"books","instId":"BTC-USDT-SWAP"}}', False),  # dup arg
        (MARK[:-1] + ',"data":[]}', False),  # duplicate data
        (MARK.replace('"markPx":"115000.1"', '"markPx":{"a":1}'), False),
        (MARK.replace('"markPx":"115000.1"', '"m\\arkPx":"1"'), False),
        (MARK.replace('"data":[{', '"data":{').replace("}]}", "}}"), False),
        (MARK.replace("[{", "[").replace("}]", "]"), False),  # data not objects
        (MARK.split('"data"')[0] + '"data":[]}', False),
        (MARK.split(',"data"')[0] + "}", False),  # no data
        (MARK + " x", False),
        (MARK[:-2], False),
        (MARK.replace("mark-price", "tickers"), False),
        (MARK.replace("mark-price", "books5"), False),
        ("pong ", False),  # decode: not the pong
        (MARK.replace("[{", "[{}, {"), False),  # an empty object
        ("pongx", False),
        ("ping", False),
    ],
)
def test_mark_frames_and_pong_are_side_frames(frame: str, side: bool) -> None:
    rows = scanned(OKX.scan_frames([GOOD, frame, ETH]))
    assert rows[1].is_side == side
    assert not rows[1].is_book
    assert rows[0].is_book and rows[2].is_book
    assert_scan_equals_decode(OKX, [GOOD, frame, ETH])


def test_a_scanned_row_holds_what_decode_gives() -> None:
    update, snapshot = scanned(OKX.scan_frames([GOOD, SNAP]))
    assert update.symbol_key == OKX.symbol_key("BTC-USDT")
    assert (update.first_seq, update.last_seq, update.prev_seq) == (8, 8, 7)
    assert (update.ts_event_ns, update.limit) == (1652458996256_000_000, 0)
    assert (update.checksum, update.has_checksum) == (-1230, True)
    assert (update.bids, update.asks) == (b'[["1","3","0","2"]]', b'[["2","1","0","1"]]')
    assert (snapshot.prev_seq, snapshot.limit) == (-1, 400)


def test_non_ascii_text_frames_keep_byte_offsets_right() -> None:
    other = '{"event":"error","code":"1","msg":"é"}'  # two bytes for one character
    rows = scanned(OKX.scan_frames([other, GOOD]))
    assert [r.is_book for r in rows] == [False, True]
    assert rows[1].bids == b'[["1","3","0","2"]]'


def test_the_kernel_and_its_python_twin_agree() -> None:
    frames = [GOOD, SNAP, GOOD[:-3], "pong", *[f.decode() for f in sim_frames(8)]]
    buf, starts, ends = join_frames(frames)
    compiled, twin = new_table(len(frames)), new_table(len(frames))
    found = scan_book_frames(buf, starts, ends, compiled)
    assert (
        getattr(scan_book_frames, "py_func", scan_book_frames)(buf, starts, ends, twin) == found > 0
    )
    assert (compiled == twin).all()


# --- the pipeline: the scanned path leaves every book as the decode path does -------------
def _pipeline(http: list[tuple[str, str]]) -> BookPipeline:
    registry = InstrumentRegistry.load_cached([Venue.OKX])
    pipeline = BookPipeline(registry, {Venue.OKX: OKX})
    for url, text in http:
        pipeline.on_message(Venue.OKX, "http", url, text, 1)
    return pipeline


def _fed(frames: list[Any], http: list[tuple[str, str]], batch: int) -> BookPipeline:
    pipeline = _pipeline(http)
    recv = [1_000 + k for k in range(len(frames))]
    for k in range(0, len(frames), batch):
        pipeline.feed_frames(Venue.OKX, frames[k : k + batch], recv[k : k + batch])
    pipeline.flush()
    return pipeline


def _same_books(frames: list[Any], http: list[tuple[str, str]]) -> list[dict[str, Any]]:
    scanned_path = _fed(frames, http, 4 * OKX.min_frames)
    decoded_path = _fed(frames, http, 1)
    books = scanned_path.book_summaries(depth=400)
    assert books == decoded_path.book_summaries(depth=400)
    assert scanned_path.counters.messages == decoded_path.counters.messages
    assert scanned_path.marks == decoded_path.marks
    return books


def test_the_recording_leaves_the_same_books_scanned_or_decoded() -> None:
    http, frames = recorded()
    # a few updates in mid-stream handed over to decode (an unknown field that is not a
    # scalar): the later frames of their books still come after them (no ids here)
    odd = [k for k, f in enumerate(frames) if '"update"' in f][10::40]
    assert len(odd) >= 5
    for k in odd:
        frames[k] = frames[k][:-1] + ',"extra":[1]}'
    books = _same_books(frames, http)
    assert len(books) == 3
    assert all(b["valid"] and b["checksum_ok"] > 50 for b in books)
    assert sum(b["checksum_ok"] for b in books) == 290
    assert all(b["checksum_failed"] == 0 for b in books)


def test_the_local_exchange_leaves_the_same_books_scanned_or_decoded() -> None:
    frames = sim_frames(200)
    books = {b["symbol"]: b for b in _same_books(frames, [])}
    assert set(books) == {*SYMBOLS, BOOKS5}
    assert books[SYMBOLS[1]]["gaps"] >= 1  # the lost delta
    assert books[SYMBOLS[2]]["checksum_failed"] >= 1  # the corrupted checksum
    assert books[SYMBOLS[0]]["checksum_ok"] > 150
    assert books[SYMBOLS[3]]["valid"]
