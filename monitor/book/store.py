"""Many L2 books in preallocated numpy arrays, updated by numba kernels in batches."""

from __future__ import annotations

import struct
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


_ROW = struct.Struct(f"<{N_EVENT}q")  # one meta row, packed in place
_ROW_BYTES = _ROW.size
_STARTS = struct.Struct("<2q")  # one row of starts
_VIEWS = 16  # sealed views of the first rows, made once: a small batch slices nothing
_LEVEL_BYTES = 512 * 1024  # first size of the level buffer (it grows to the largest batch)
SCRATCH_BYTES = 16 * 1024  # the kernel's first scratch: sides of up to 16 kB (it grows)


class EventBatch:
    """Events of many books in one columnar batch: one int64 row per event, raw level
    arrays back to back in one byte buffer. One kernel call applies the whole batch.

    Storage is allocated once and reused by every batch: :meth:`add` packs an event's row
    in place into the ``meta`` storage (``struct.pack_into``, no Python list, no array
    built per batch), its offsets into ``starts`` and copies its level arrays into the
    level buffer, which grow (doubling) only when a batch outgrows them. So a live batch of
    one or two events costs no allocation: :meth:`seal` only points ``meta``, ``starts``
    and ``buf`` at the filled rows. They stay readable, with the kernel's per-event
    outcome and top of book in ``meta``, until the next :meth:`add` or :meth:`load`.
    ``capacity`` is when the owner should flush (:meth:`full`), not a hard limit.
    """

    __slots__ = (
        "_buf",
        "_levels",
        "_lmv",
        "_meta_all",
        "_mv",
        "_n",
        "_pos",
        "_smv",
        "_starts_all",
        "_views",
        "buf",
        "capacity",
        "meta",
        "starts",
    )

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._n = 0  # events added since the last clear
        self._pos = 0  # bytes of level arrays added since the last clear
        self._meta_all: np.ndarray = np.zeros((0, N_EVENT), dtype=np.int64)
        self._starts_all: np.ndarray = np.zeros((0, 2), dtype=np.int64)
        self._levels: np.ndarray = np.zeros(0, dtype=np.uint8)
        self._rows(max(capacity, _VIEWS))
        self._level_buffer(_LEVEL_BYTES)
        self.meta = self._meta_all[:0]
        self.starts = self._starts_all[:0]

    def _rows(self, rows: int) -> None:
        """(Re)allocate the row storage for ``rows`` events, keeping the rows added."""
        meta = np.zeros((rows, N_EVENT), dtype=np.int64)
        starts = np.zeros((rows, 2), dtype=np.int64)
        n = self._n
        if n:
            meta[:n] = self._meta_all[:n]
            starts[:n] = self._starts_all[:n]
        self._meta_all = meta
        self._starts_all = starts
        self._mv = meta.data.cast("B")
        self._smv = starts.data.cast("B")
        self._views = [(meta[:k], starts[:k]) for k in range(_VIEWS)]

    def _level_buffer(self, size: int) -> None:
        """(Re)allocate the level buffer for ``size`` bytes, keeping the bytes added."""
        levels = np.zeros(size, dtype=np.uint8)
        if self._n:
            levels[: self._pos] = self._levels[: self._pos]
        self._levels = levels
        self._lmv = levels.data
        buf = levels.view()
        buf.flags.writeable = False  # the kernel's buffer type: read-only bytes
        self._buf = buf
        self.buf = buf

    @property
    def count(self) -> int:
        return self._n

    def full(self) -> bool:
        return self._n >= self.capacity

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
        n = self._n
        if n == len(self._meta_all):
            self._rows(2 * n)
        pos = self._pos
        nb = len(bids)
        mid = pos + nb
        end = mid + len(asks)
        if end > len(self._levels):
            self._level_buffer(max(2 * len(self._levels), end))
        try:  # column order: see layout.E_*
            _ROW.pack_into(
                self._mv,
                n * _ROW_BYTES,
                book,
                kind,
                first,
                last,
                prev,
                nb,
                end - mid,
                ts_event_ns,
                ts_recv_ns,
                limit,
                0,
                0,
                0,
                checksum,
                has_checksum,
            )
        except (struct.error, TypeError):
            values = (book, kind, first, last, prev, nb, end - mid, ts_event_ns, ts_recv_ns, limit)
            if self._odd_row(n, (*values, 0, 0, 0, checksum, has_checksum)):
                bids, asks, mid, end = b"x", b"", pos + 1, pos + 1
                if end > len(self._levels):
                    self._level_buffer(2 * len(self._levels))
        lmv = self._lmv
        lmv[pos:mid] = bids
        lmv[mid:end] = asks
        _STARTS.pack_into(self._smv, n * 16, pos, mid)
        self._pos = end
        self._n = n + 1
        return n

    def _odd_row(self, n: int, values: tuple[object, ...]) -> bool:
        """A row ``pack_into`` refused. Numbers that are not ints are truncated as numpy
        would; an event carrying a number beyond int64 (a garbage id, time or checksum from
        a venue) becomes a malformed event of its book: its levels are replaced by an
        invalid array, so the kernel rejects it as it rejects malformed levels (that book is
        thrown away and resynced) while the other events of the batch apply as usual.
        Returns whether the row was spoiled so."""
        row: list[int] = []
        spoiled = False
        for value in values:
            try:
                number = int(value)  # type: ignore[call-overload]
            except (TypeError, ValueError, OverflowError):
                number = _INT64_MAX + 1
            if not _INT64_MIN <= number <= _INT64_MAX:
                number = 0
                spoiled = True
            row.append(number)
        if spoiled:
            row[E_BID_LEN] = 1
            row[E_ASK_LEN] = 0
        _ROW.pack_into(self._mv, n * _ROW_BYTES, *row)
        return spoiled

    def seal(self) -> None:
        """Point ``meta``, ``starts`` and ``buf`` at the events added since the last clear."""
        n = self._n
        if n < _VIEWS:
            self.meta, self.starts = self._views[n]
        else:
            self.meta = self._meta_all[:n]
            self.starts = self._starts_all[:n]
        self.buf = self._buf

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

    def clear(self) -> None:
        """Forget the events (``meta`` and ``buf`` of the last seal stay readable until the
        next add)."""
        self._n = 0
        self._pos = 0


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
        self._grow_scratch(kernels.scratch_levels(SCRATCH_BYTES))
        self._wire = np.zeros(2, dtype=np.int64)
        self._text = np.zeros(kernels.CHECKSUM_TEXT_BYTES, dtype=np.uint8)

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
        applied = self._apply(batch)
        if applied < 0:  # a side longer than the scratch holds: nothing was done
            self._grow_scratch(-applied)
            applied = self._apply(batch)
        return applied

    def _apply(self, batch: EventBatch) -> int:
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
                self._scratch_px,
                self._scratch_qty,
                self._wire,
                self._text,
            )
        )

    def _grow_scratch(self, levels: int) -> None:
        """The kernel's scratch for sides of up to ``levels`` levels (it allocates none)."""
        self._scratch_px = np.zeros((2, levels), dtype=np.int64)
        self._scratch_qty = np.zeros((2, levels), dtype=np.float64)

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
