"""Many L2 books in preallocated numpy arrays, updated by numba kernels in batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.book import kernels
from monitor.book.layout import (
    E_ASK_LEN,
    E_BID_LEN,
    F_CONTRACT_SIZE,
    F_INVERSE,
    FLAG_TRUNCATED,
    FLAG_WINDOW,
    KEY_MIN,
    N_EVENT,
    N_FSTATE,
    N_ISTATE,
    S_CAPACITY,
    S_CHECK_FAIL,
    S_CHECK_OK,
    S_CHECKSUM,
    S_COMPLETE_ASK,
    S_COMPLETE_BID,
    S_CROSSED,
    S_DROPPED,
    S_FLAGS,
    S_GAPS,
    S_LAST_ID,
    S_MESSAGES,
    S_N_ASK,
    S_N_BID,
    S_PRICE_DEC,
    S_PX_INDEX,
    S_PX_WIRE_DEC,
    S_QTY_INDEX,
    S_QTY_PREC,
    S_QTY_WIRE_DEC,
    S_RULE,
    S_STALE,
    S_STATE,
    S_TS_EVENT,
    S_TS_RECV,
)
from monitor.domain import BookState, SeqRule, format_units

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def snapshot_predates(rule: SeqRule, last_update_id: int, first_seq: int, prev_seq: int) -> bool:
    """Whether a snapshot is older than the first delta buffered for its book, with deltas
    lost between them (fetch a newer one), given that delta's first and previous ids.

    It is the kernel's sync rule for the first delta after a snapshot, failing. CONTIGUOUS
    (Binance spot) bridges with ``U <= lastUpdateId + 1``: a snapshot whose
    ``lastUpdateId + 1 == U`` is exact (nothing lies between them), one with
    ``lastUpdateId + 1 < U`` has a hole. PREVIOUS (Binance USD-M) bridges with
    ``U <= lastUpdateId`` or ``pu == lastUpdateId`` (the snapshot fell between two events).
    Other rules (ids that do not order, or none): only a snapshot below the first id.
    """
    if rule == SeqRule.CONTIGUOUS:
        return last_update_id + 1 < first_seq
    if rule == SeqRule.PREVIOUS:
        return last_update_id < first_seq and prev_seq != last_update_id
    return last_update_id < first_seq


class EventBatch:
    """Events of many books in one columnar batch: one int64 row per event, raw level
    arrays back to back in one byte buffer. One kernel call applies the whole batch.

    Rows are gathered in the plain list ``rows`` (one ``extend`` of N_EVENT ints per event,
    the cheapest way to collect ints in CPython) and the level arrays in ``pieces``; the
    hot path may append to both directly, as :meth:`add` does. :meth:`seal` turns them
    into the ``meta`` matrix and ``buf`` once per batch; these stay readable until the
    next seal, with the kernel's per-event outcome and top of book in ``meta``.
    """

    __slots__ = ("buf", "capacity", "meta", "pieces", "rows", "starts")

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.rows: list[int] = []
        self.pieces: list[bytes | memoryview] = []
        self.meta = np.zeros((0, N_EVENT), dtype=np.int64)
        self.starts = np.zeros((0, 2), dtype=np.int64)
        self.buf = np.zeros(0, dtype=np.uint8)

    @property
    def count(self) -> int:
        return len(self.rows) // N_EVENT

    def full(self) -> bool:
        return len(self.rows) >= self.capacity * N_EVENT

    def add(
        self,
        book: int,
        kind: int,
        first: int,
        last: int,
        prev: int,
        bids: bytes | memoryview,
        asks: bytes | memoryview,
        ts_event_ns: int,
        ts_recv_ns: int,
        limit: int = 0,
        checksum: int = 0,
        has_checksum: bool = False,
    ) -> int:
        """Append one event; ``bids``/``asks`` are the raw JSON level arrays. Returns its row."""
        # column order: see layout.E_*
        self.rows.extend(
            (
                book,
                kind,
                first,
                last,
                prev,
                len(bids),
                len(asks),
                ts_event_ns,
                ts_recv_ns,
                limit,
                0,
                0,
                0,
                checksum,
                1 if has_checksum else 0,
            )
        )
        self.pieces.append(bids)
        self.pieces.append(asks)
        return len(self.rows) // N_EVENT - 1

    def seal(self) -> None:
        """Build ``meta``, ``starts`` and ``buf`` from the events added since the last clear."""
        try:
            meta = np.array(self.rows, dtype=np.int64).reshape(-1, N_EVENT)
        except OverflowError:
            meta = self._spoil_out_of_range()
        if len(meta) == 1:  # the common live case: skip the vector arithmetic
            starts = np.array([[0, self.rows[E_BID_LEN]]], dtype=np.int64)
        else:
            bid_len = meta[:, E_BID_LEN]
            ends = np.cumsum(bid_len + meta[:, E_ASK_LEN])
            starts = np.empty((len(meta), 2), dtype=np.int64)
            starts[:, 0] = ends - bid_len - meta[:, E_ASK_LEN]
            starts[:, 1] = starts[:, 0] + bid_len
        self.meta = meta
        self.starts = starts
        self.buf = np.frombuffer(b"".join(self.pieces), dtype=np.uint8)

    def load(self, buf: np.ndarray, meta: np.ndarray, starts: np.ndarray) -> None:
        """Take a batch built elsewhere (a venue's frame scanner) as the sealed batch.

        ``starts[i]`` are the offsets of event i's bid and ask arrays inside ``buf``.
        """
        self.clear()
        self.buf = buf
        self.meta = meta
        self.starts = starts

    def raw_levels(self, row: int) -> tuple[bytes, bytes]:
        """The raw level arrays of a sealed row (copies, for keeping past the batch)."""
        bid, ask = (int(x) for x in self.starts[row])
        return (
            self.buf[bid : bid + int(self.meta[row, E_BID_LEN])].tobytes(),
            self.buf[ask : ask + int(self.meta[row, E_ASK_LEN])].tobytes(),
        )

    def _spoil_out_of_range(self) -> np.ndarray:
        """An event carrying a number beyond int64 (a garbage id, time or checksum from a
        venue) becomes a malformed event of its book: its levels are replaced by an invalid
        array, so the kernel rejects it as it rejects malformed levels (that book is thrown
        away and resynced) while the other events of the batch apply as usual."""
        rows = self.rows
        for base in range(0, len(rows), N_EVENT):
            if all(_INT64_MIN <= v <= _INT64_MAX for v in rows[base : base + N_EVENT]):
                continue
            for i in range(base, base + N_EVENT):
                if not _INT64_MIN <= rows[i] <= _INT64_MAX:
                    rows[i] = 0
            rows[base + E_BID_LEN] = 1
            rows[base + E_ASK_LEN] = 0
            self.pieces[2 * (base // N_EVENT)] = b"x"
            self.pieces[2 * (base // N_EVENT) + 1] = b""
        return np.array(rows, dtype=np.int64).reshape(-1, N_EVENT)

    def clear(self) -> None:
        """Forget the events (``meta`` and ``buf`` of the last seal stay readable)."""
        self.rows.clear()
        self.pieces.clear()


@dataclass(frozen=True, slots=True)
class BookLevels:
    """A copy of one book's levels, best first, with prices in price units."""

    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray


class BookStore:
    """Fixed-capacity store of L2 books.

    ``capacity`` is the number of levels held per side; books are added with
    :meth:`add_book` up to ``max_books``. ``spare`` more slots, after the books (ids
    ``max_books`` on, so the books stay dense from 0), hold second copies of books being
    re-synced deeper (:meth:`clone_empty`, :meth:`adopt`). Arrays are allocated once, up
    front.
    """

    def __init__(self, max_books: int, capacity: int, *, spare: int = 0) -> None:
        if max_books <= 0 or capacity <= 0 or spare < 0:
            raise ValueError("max_books and capacity must be positive")
        self.max_books = max_books
        self.capacity = capacity
        rows = max_books + spare
        self.spare_slots = tuple(range(max_books, rows))
        self.istate = np.zeros((rows, N_ISTATE), dtype=np.int64)
        self.fstate = np.zeros((rows, N_FSTATE), dtype=np.float64)
        self.keys = np.zeros((rows, 2, capacity), dtype=np.int64)
        self.qtys = np.zeros((rows, 2, capacity), dtype=np.float64)
        self.count = 0

    def add_book(
        self,
        *,
        rule: SeqRule,
        price_decimals: int,
        contract_size: float = 1.0,
        px_index: int = 0,
        qty_index: int = 1,
        capacity: int | None = None,
        inverse: bool = False,
        checksum: int = 0,
        qty_precision: int = 0,
        window: bool = False,
    ) -> int:
        """Add a book. ``capacity`` caps its levels per side (a depth-limited feed such as
        Kraken's is truncated to its subscribed depth); ``checksum`` is the venue's
        feeds.contract.Checksum, ``qty_precision`` the size decimals a checksum writes."""
        if self.count >= self.max_books:
            raise OverflowError(f"book store is full ({self.max_books} books)")
        book = self.count
        st = self.istate[book]
        st[:] = 0
        st[S_RULE] = int(rule)
        st[S_PRICE_DEC] = price_decimals
        st[S_CAPACITY] = min(capacity or self.capacity, self.capacity)
        st[S_PX_INDEX] = px_index
        st[S_QTY_INDEX] = qty_index
        st[S_COMPLETE_BID] = KEY_MIN
        st[S_COMPLETE_ASK] = KEY_MIN
        st[S_STATE] = int(BookState.EMPTY)
        st[S_CHECKSUM] = int(checksum)
        st[S_QTY_PREC] = qty_precision
        if window:
            st[S_FLAGS] |= FLAG_WINDOW
        self.fstate[book, F_CONTRACT_SIZE] = contract_size
        self.fstate[book, F_INVERSE] = 1.0 if inverse else 0.0
        self.count += 1
        return book

    def apply(self, batch: EventBatch) -> int:
        """Seal and apply a batch in order; per-event outcomes are left in ``batch.meta``."""
        if batch.count == 0:
            return 0
        batch.seal()
        return self.apply_sealed(batch)

    def apply_sealed(self, batch: EventBatch) -> int:
        """Apply a sealed (or loaded) batch; outcomes are left in ``batch.meta``."""
        return int(
            kernels.apply_batch(
                batch.buf,
                batch.meta,
                batch.starts,
                len(batch.meta),
                self.istate,
                self.fstate,
                self.keys,
                self.qtys,
            )
        )

    def invalidate(self, book: int) -> None:
        """Throw a book away (a reconnect lost deltas): it waits for a new snapshot."""
        st = self.istate[book]
        st[S_STATE] = int(BookState.EMPTY)
        st[S_N_BID] = 0
        st[S_N_ASK] = 0
        st[S_COMPLETE_BID] = KEY_MIN
        st[S_COMPLETE_ASK] = KEY_MIN
        st[S_FLAGS] &= ~FLAG_TRUNCATED

    def clone_empty(self, slot: int, book: int) -> None:
        """Make ``slot`` an empty book with ``book``'s settings (rule, decimals, capacity,
        checksum): it waits for its own snapshot, its counters at zero."""
        self.istate[slot] = self.istate[book]
        self.fstate[slot] = self.fstate[book]
        st = self.istate[slot]
        for col in (
            S_LAST_ID,
            S_MESSAGES,
            S_GAPS,
            S_DROPPED,
            S_CROSSED,
            S_STALE,
            S_CHECK_OK,
            S_CHECK_FAIL,
            S_TS_EVENT,
            S_TS_RECV,
        ):
            st[col] = 0
        self.invalidate(slot)
        st[S_FLAGS] &= FLAG_WINDOW

    def adopt(self, book: int, slot: int) -> None:
        """``book`` takes ``slot``'s levels and sync state (its sequence id, completeness
        bounds, flags); ``book``'s own counters carry on. The caller has checked that both
        stand at the same sequence id."""
        src = self.istate[slot]
        dst = self.istate[book]
        nb = int(src[S_N_BID])
        na = int(src[S_N_ASK])
        self.keys[book, 0, :nb] = self.keys[slot, 0, :nb]
        self.qtys[book, 0, :nb] = self.qtys[slot, 0, :nb]
        self.keys[book, 1, :na] = self.keys[slot, 1, :na]
        self.qtys[book, 1, :na] = self.qtys[slot, 1, :na]
        for col in (
            S_STATE,
            S_LAST_ID,
            S_N_BID,
            S_N_ASK,
            S_COMPLETE_BID,
            S_COMPLETE_ASK,
            S_PX_WIRE_DEC,
            S_QTY_WIRE_DEC,
            S_TS_EVENT,
            S_TS_RECV,
        ):
            dst[col] = src[col]
        dst[S_FLAGS] = (dst[S_FLAGS] & FLAG_WINDOW) | (src[S_FLAGS] & ~FLAG_WINDOW)

    def state(self, book: int) -> BookState:
        return BookState(int(self.istate[book, S_STATE]))

    def best_bid(self, book: int) -> int:
        n = self.istate[book, S_N_BID]
        return int(self.keys[book, 0, n - 1]) if n else -1

    def best_ask(self, book: int) -> int:
        n = self.istate[book, S_N_ASK]
        return int(-self.keys[book, 1, n - 1]) if n else -1

    def levels(self, book: int, depth: int | None = None) -> BookLevels:
        nb = int(self.istate[book, S_N_BID])
        na = int(self.istate[book, S_N_ASK])
        db = nb if depth is None else min(depth, nb)
        da = na if depth is None else min(depth, na)
        return BookLevels(
            bid_px=self.keys[book, 0, nb - db : nb][::-1].copy(),
            bid_qty=self.qtys[book, 0, nb - db : nb][::-1].copy(),
            ask_px=-self.keys[book, 1, na - da : na][::-1],
            ask_qty=self.qtys[book, 1, na - da : na][::-1].copy(),
        )

    def wire_levels(self, book: int, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        """Top ``depth`` levels per side as strings written the way the venue writes them."""
        st = self.istate[book]
        pd = int(st[S_PRICE_DEC])
        pw = int(st[S_PX_WIRE_DEC])
        qw = int(st[S_QTY_WIRE_DEC])
        cs = float(self.fstate[book, F_CONTRACT_SIZE])
        inverse = bool(self.fstate[book, F_INVERSE])
        lv = self.levels(book, depth)

        def side(px: np.ndarray, qty: np.ndarray) -> list[list[str]]:
            scale = 10 ** max(0, pw - pd)
            return [
                [
                    format_units(int(p) * scale, max(pw, 0))
                    if pw >= pd
                    else format_units(int(p), pd),
                    f"{(q * int(p) / 10**pd if inverse else q) / cs:.{qw}f}",
                ]
                for p, q in zip(px, qty, strict=True)
            ]

        return side(lv.bid_px, lv.bid_qty), side(lv.ask_px, lv.ask_qty)
