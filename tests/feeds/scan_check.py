"""Shared checks of the venues' batch frame scanners: a scanner reads exactly what the
adapter's msgspec ``decode`` reads, or hands the frame over.

``scanned(scan)`` gives each frame's row as a readable record; ``assert_scan_equals_decode``
compares every frame of a list with its ``decode``: a frame is a book row iff ``decode``
gives exactly one book event the pipeline batches (a delta, or an in-band snapshot), and
then every field agrees, and the level arrays hold the same prices and sizes (compared as
decimals, so a scanner that rewrites object levels as arrays is held to the same values).
A mark row (``SCAN_MARK``) is a frame ``decode`` reads as a mark price, and its fields are
that mark price's, bit for bit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import strategies as st

from feeds.contract import SnapshotSource, VenueAdapter
from feeds.scan import (
    KIND_DELTA,
    SCAN_BOOK,
    SCAN_MARK,
    SCAN_SIDE,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_CHECKSUM,
    T_FIRST,
    T_FUNDING_RATE,
    T_HAS_CHECKSUM,
    T_KIND,
    T_LAST,
    T_LIMIT,
    T_MARK_PRICE,
    T_NEXT_FUNDING_NS,
    T_PREV,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
)
from monitor.domain import EventKind, MarkPriceEvent, RawBook, ScannedFrames


@dataclass(frozen=True)
class Row:
    is_book: bool
    is_side: bool  # SCAN_SIDE: the scanner says no book's event
    symbol_key: int
    kind: int
    first_seq: int
    last_seq: int
    prev_seq: int
    ts_event_ns: int
    limit: int
    checksum: int
    has_checksum: bool
    bids: bytes
    asks: bytes
    is_mark: bool = False  # SCAN_MARK: a mark price read in full
    # mark, index, funding (NaN: this module's one NaN object, so that rows compare equal)
    mark: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    next_funding_ns: int = 0


def _nan_as_one(x: float) -> float:
    return x if x == x else math.nan


def scanned(scan: ScannedFrames) -> list[Row]:
    raw = scan.buf.tobytes()
    rows = []
    prices = scan.table.view(np.float64)[:, T_MARK_PRICE : T_FUNDING_RATE + 1].tolist()
    for r, mark in zip(scan.table.tolist(), prices, strict=True):
        rows.append(
            Row(
                r[T_STATUS] == SCAN_BOOK,
                r[T_STATUS] == SCAN_SIDE,
                r[T_SYMBOL_KEY],
                r[T_KIND],
                r[T_FIRST],
                r[T_LAST],
                r[T_PREV],
                r[T_TS_NS],
                r[T_LIMIT],
                r[T_CHECKSUM],
                bool(r[T_HAS_CHECKSUM]),
                raw[r[T_BID_START] : r[T_BID_END]],
                raw[r[T_ASK_START] : r[T_ASK_END]],
                r[T_STATUS] == SCAN_MARK,
                (_nan_as_one(mark[0]), _nan_as_one(mark[1]), _nan_as_one(mark[2])),
                r[T_NEXT_FUNDING_NS],
            )
        )
    return rows


def same_float(a: float, b: float) -> bool:
    """Bit for bit (-0.0 is not 0.0), any NaN equal to any NaN."""
    return (a != a and b != b) or np.float64(a).tobytes() == np.float64(b).tobytes()


def levels(text: bytes | str, px: int, qty: int) -> list[tuple[Decimal, Decimal]]:
    """A JSON array of level arrays as (price, size) decimals."""
    parsed: list[list[Any]] = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    return [(Decimal(str(lv[px])), Decimal(str(lv[qty]))) for lv in parsed]


def batched(adapter: VenueAdapter, decoded: object) -> RawBook | None:
    """The one book event of a decode the pipeline would batch, or None."""
    if isinstance(decoded, list):
        return None  # several books in one frame: the scanner hands those over
    if not isinstance(decoded, RawBook):
        return None
    if decoded.kind == EventKind.DELTA or adapter.snapshot_source == SnapshotSource.STREAM:
        return decoded
    return None


def assert_scan_equals_decode(
    adapter: VenueAdapter, frames: Sequence[bytes | str], *, recv_ns: int = 0
) -> int:
    """Every frame's row agrees with its decode. Returns the number of book rows."""
    scanner = adapter.scanner
    assert scanner is not None
    rows = scanned(scanner.scan_frames(frames))
    assert len(rows) == len(frames)
    books = 0
    for data, row in zip(frames, rows, strict=True):
        try:
            decoded: object = adapter.decode(data, recv_ns)
        except Exception:
            decoded = None
        book = batched(adapter, decoded)
        what = str(data)[:160]
        if row.is_mark:
            assert isinstance(decoded, MarkPriceEvent), what
            assert not row.is_book and not row.is_side, what
            assert row.symbol_key == scanner.symbol_key(decoded.symbol), what
            assert row.ts_event_ns == decoded.ts_event_ns, what
            assert row.next_funding_ns == decoded.next_funding_ns, what
            want = (decoded.mark_price, decoded.index_price, decoded.funding_rate)
            assert all(map(same_float, row.mark, want)), (what, row.mark, want)
            continue
        if row.is_side:  # no book event, whatever else decode makes of it
            items = decoded if isinstance(decoded, list) else [decoded]
            assert not any(isinstance(item, RawBook) for item in items), what
        if book is None:
            assert not row.is_book, what
            continue
        if not row.is_book:
            continue  # the scanner may hand over what it does not vouch for
        books += 1
        assert row.symbol_key == scanner.symbol_key(book.symbol), what
        assert row.kind == int(book.kind), what
        assert (row.first_seq, row.last_seq, row.prev_seq) == (
            book.first_seq,
            book.last_seq,
            book.prev_seq,
        ), what
        assert row.ts_event_ns == book.ts_event_ns, what
        assert row.has_checksum == book.has_checksum, what
        if book.has_checksum:
            assert row.checksum == book.checksum, what
        if row.kind != KIND_DELTA:
            assert row.limit == book.limit, what
        px, qty = adapter.px_index, adapter.qty_index
        assert levels(row.bids, px, qty) == levels(bytes(book.bids), px, qty), what
        assert levels(row.asks, px, qty) == levels(bytes(book.asks), px, qty), what
    return books


Edit = tuple[int, str, int]  # (where, "delete" | "insert" | "replace", byte)


def byte_edits(special: bytes) -> st.SearchStrategy[list[Edit]]:
    """One to three byte edits anywhere in a frame, with bytes from ``special``."""
    return st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from(["delete", "insert", "replace"]),
            st.sampled_from(list(special)),
        ),
        min_size=1,
        max_size=3,
    )


def edited(frame: bytes, edits: Sequence[Edit]) -> bytes:
    """``frame`` with ``edits`` applied in order (a place past the end: appended)."""
    data = bytearray(frame)
    for at, how, byte in edits:
        k = at % (len(data) + 1)
        if how == "insert":
            data[k:k] = bytes([byte])
        elif k < len(data):
            if how == "delete":
                del data[k]
            else:
                data[k] = byte
    return bytes(data)
