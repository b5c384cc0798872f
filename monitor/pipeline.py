"""The one path for live feeds, recordings and the simulator: raw message -> book -> metrics.

``BookPipeline.feed`` takes every raw message (websocket frames and REST responses) of
every venue. Deltas are decoded by the venue adapter and queued in an :class:`EventBatch`;
the batch is applied by one kernel call when it fills, when a snapshot or a tick needs
the books current, or on :meth:`flush`. Books that lose sync are thrown away, their later
deltas kept, and a snapshot is requested; nothing here raises on bad input: every bad
message is logged and counted, and the process carries on.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from feeds.contract import (
    BookMessage,
    FrameScanner,
    InstrumentsUpdate,
    Reply,
    SnapshotSource,
    VenueAdapter,
    VenueMessage,
)
from feeds.scan import (
    SCAN_MARK,
    SCAN_SIDE,
    SCAN_TAKEN,
    T_FUNDING_RATE,
    T_MARK_PRICE,
    T_NEXT_FUNDING_NS,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
)
from monitor.analytics.stage import AnalyticsStage
from monitor.book.intake import intake, merge_marks
from monitor.book.layout import (
    E_BOOK,
    E_FIRST,
    E_LAST,
    E_PREV,
    E_STATUS,
    E_TS_EVENT,
    E_TS_RECV,
    FLAG_TRUNCATED,
    KIND_DELTA,
    KIND_SNAPSHOT,
    N_EVENT,
    R_APPLIED,
    R_BUFFER,
    R_CHECKSUM,
    R_CROSSED,
    R_GAP,
    R_OFF_GRID,
    R_PARSE_ERROR,
    R_SNAPSHOT,
    R_STALE,
    R_TOP_UNKNOWN,
    S_CHECK_FAIL,
    S_CHECK_OK,
    S_CROSSED,
    S_DROPPED,
    S_FLAGS,
    S_GAPS,
    S_LAST_ID,
    S_MESSAGES,
    S_N_ASK,
    S_N_BID,
    S_STALE,
    S_STATE,
    S_TS_EVENT,
)
from monitor.book.store import BookStore, EventBatch, snapshot_predates
from monitor.domain import (
    BookState,
    EventKind,
    Ignored,
    Instrument,
    IntArray,
    MarkPriceEvent,
    RawBook,
    ScannedFrames,
    Venue,
)
from monitor.errors import ParseError
from monitor.fx import FxSource
from monitor.instruments import InstrumentRegistry
from monitor.log import get_logger
from monitor.metrics import kernels as mk
from monitor.resync import BookSync, Resync
from monitor.sample import BookIdentity, TickSample
from monitor.settings import Settings

log = get_logger("monitor.pipeline")
# the kernel's outcomes that reject a message (the book is thrown away and resynced)
REJECTED: Final = {
    R_PARSE_ERROR: "parse_error",
    R_OFF_GRID: "off_grid_price",
    R_CROSSED: "crossed",
    R_TOP_UNKNOWN: "top_unknown",
    R_CHECKSUM: "checksum_failed",
}

MAX_PENDING = 20_000  # deltas kept per book while it waits for a snapshot
DEEPEN_SLOTS = 8  # books that may be re-synced deeper at the same time (second copies)
_NO_ROWS = np.empty(0, dtype=np.int64)
_NAN = float("nan")  # one NaN object: marks read back from the columns compare equal
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int64(ns: int) -> int:
    """A time as the int64 mark columns hold it (a venue's absurd time is clamped)."""
    return min(max(ns, _INT64[0]), _INT64[1])


_SNAPSHOT = EventKind.SNAPSHOT  # module constants: enum attribute lookups cost on the hot path
_DELTA = EventKind.DELTA


@dataclass
class BookInfo:
    """Bookkeeping of one book outside the kernel arrays."""

    book: int
    instrument: Instrument
    pending: deque[BookMessage] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))
    pending_recv: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))
    sync: BookSync = field(default_factory=BookSync)  # the resync state machine (monitor.resync)
    rejected: int = 0  # malformed, off-grid or crossed events
    stream: bool = False  # snapshots come in-band (resync = resubscribe), not from REST
    dropped_unsynced: int = 0  # deltas of a stream venue that arrived before the snapshot
    limit: int = 0  # levels per side of the snapshot the book was synced from (0: all)
    deepens: int = 0  # times the book was re-synced deeper without going invalid
    shadow_of: BookInfo | None = None  # a deeper copy being synced: the book it will replace

    @property
    def needs_snapshot(self) -> bool:
        return self.sync.needs_snapshot

    @property
    def resyncs(self) -> int:
        return self.sync.resyncs

    @property
    def snapshots(self) -> int:
        return self.sync.snapshots


@dataclass
class Counters:
    """Per-venue counts of everything that was not a plain applied delta."""

    messages: Counter[str] = field(default_factory=Counter)

    def add(self, venue: Venue, what: str, n: int = 1) -> None:
        self.messages[f"{venue.value}.{what}"] += n


@dataclass(slots=True)
class Prescan:
    """One venue's frames, scanned ahead of feeding (``BookPipeline.prescan``).

    ``meta``/``starts``: the store events of the frames the scanner vouched for, of known
    books, in frame order (``taken``: each event's frame); ``others``: the frames that
    need the adapter's ``decode`` in their place; ``side``: frames that are no book's
    events (``SCAN_SIDE``), decoded wherever; ``marks``: the frames of the mark prices of
    known books the scanner read in full (``SCAN_MARK``), merged wherever, their books,
    values and times in ``mark_books``, ``mark_values``, ``mark_times`` (layout:
    ``monitor.book.intake.merge_marks``); ``done``: frames fed so far.
    """

    venue: Venue
    frames: Sequence[bytes | str]
    recv_ns: Sequence[int]
    buf: np.ndarray
    meta: np.ndarray
    starts: np.ndarray
    taken: list[int]
    others: list[int]
    side: list[int]
    marks: list[int] = field(default_factory=list)
    mark_books: np.ndarray = field(default_factory=lambda: _NO_ROWS)
    mark_values: np.ndarray = field(default_factory=lambda: _NO_ROWS)
    mark_times: np.ndarray = field(default_factory=lambda: _NO_ROWS)
    done: int = 0
    taken_next: int = 0  # first of ``taken`` not fed yet
    others_next: int = 0  # first of ``others`` not fed yet
    side_next: int = 0
    marks_next: int = 0


class BookPipeline:
    """Books of many venues, kept in sync from raw messages, with batched metrics.

    ``adapters`` decode each venue's messages (the composition root passes the venue
    registry, ``feeds.venues.ADAPTERS``; tests pass what they need).
    """

    def __init__(
        self,
        registry: InstrumentRegistry,
        adapters: Mapping[Venue, VenueAdapter],
        *,
        capacity: int = 2048,
        max_books: int = 1024,
        bands_pct: Sequence[float] = (0.1, 0.5, 1.0, 2.0),
        notionals_usd: Sequence[float] = (10_000.0, 100_000.0, 1_000_000.0),
        usd_stables: Iterable[str] = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI"),
        batch_size: int = 1024,
        fx: FxSource | None = None,
        stale_after_s: Mapping[Venue, float] | None = None,
        default_stale_after_s: float = 30.0,
        analytics: AnalyticsStage | None = None,
    ) -> None:
        self.registry = registry
        self.store = BookStore(max_books, capacity, spare=DEEPEN_SLOTS)
        self.adapters = adapters
        self.batch = EventBatch(batch_size)
        self.bands_pct = tuple(float(b) for b in bands_pct)
        self.bands = np.array([b / 100.0 for b in self.bands_pct], dtype=np.float64)
        self.notionals = np.array(notionals_usd, dtype=np.float64)
        self.usd_stables = frozenset(usd_stables)
        # cross-venue analytics and the score run at the end of every tick; its live FX
        # (rates measured from the USD venues' books) is the default quote -> USD source
        self.analytics = analytics or AnalyticsStage(
            usd_stables=self.usd_stables, bands_pct=self.bands_pct, notionals_usd=notionals_usd
        )
        self.fx: FxSource = fx if fx is not None else self.analytics.fx
        self.stale_after_s: Mapping[Venue, float] = dict(stale_after_s or {})
        self.default_stale_after_s = default_stale_after_s
        self.books: dict[tuple[Venue, str], BookInfo] = {}
        self.resync = Resync()  # every book's resync state machine
        # the same BookInfo objects by venue then symbol: the hot path's lookup (no tuple key)
        self._venue_books: dict[Venue, dict[str, BookInfo]] = {v: {} for v in self.adapters}
        self._by_id: list[BookInfo] = []
        # marks of symbols without a book yet (a book's marks are in its mark columns)
        self._loose_marks: dict[tuple[Venue, str], MarkPriceEvent] = {}
        self.counters = Counters()
        self._dirty = np.zeros(max_books + DEEPEN_SLOTS, dtype=np.bool_)
        self._dirty_bytes = self._dirty.data.cast("B")  # the same flags, set from Python
        # books being re-synced deeper: book id -> its deeper copy (in a spare store slot)
        self._deepening: dict[int, BookInfo] = {}
        self._shadows: dict[int, BookInfo] = {}  # spare slot -> the deeper copy in it
        # per book, kept between ticks: last metrics, the FX rate they used, last validity
        nk, nn = len(self.bands), len(self.notionals)
        self._metrics = np.full((max_books, mk.n_columns(nk, nn)), np.nan)
        self._fx_used = np.full(max_books, np.nan)
        self._prev_valid = np.zeros(max_books, dtype=np.bool_)
        self._prev_stale = np.zeros(max_books, dtype=np.bool_)
        self._identity_cache: tuple[BookIdentity, ...] = ()
        self._currencies: list[str] = []
        self._quote_index = np.zeros(0, dtype=np.int64)
        self._stale_after_ns = np.zeros(0, dtype=np.int64)
        self._unknown_logged: set[tuple[Venue, str]] = set()
        self._symbol_indexes: dict[Venue, tuple[np.ndarray, np.ndarray] | None] = {}
        self._notionals_usd = tuple(float(x) for x in self.notionals)
        # mark, index and funding per book (NaN: none received); next funding (0: none),
        # event and receive time of its last mark message; which books had one
        self._mark_columns = np.full((3, max_books), np.nan)
        self._mark_times = np.zeros((3, max_books), dtype=np.int64)
        self._has_mark = np.zeros(max_books, dtype=np.bool_)
        self._book_id_column = np.zeros(0, dtype=np.int64)

    @classmethod
    def from_settings(
        cls,
        registry: InstrumentRegistry,
        adapters: Mapping[Venue, VenueAdapter],
        settings: Settings,
    ) -> BookPipeline:
        """A pipeline sized and configured by the settings' monitor, metrics and fx tables."""
        return cls(
            registry,
            adapters,
            capacity=settings.monitor.book_capacity,
            bands_pct=settings.metrics.depth_bands_pct,
            notionals_usd=settings.metrics.slippage_notionals_usd,
            usd_stables=settings.fx.usd_stables,
            stale_after_s={v: t.stale_after_s for v, t in settings.venues.items()},
            analytics=AnalyticsStage(
                settings.analytics,
                usd_stables=settings.fx.usd_stables,
                bands_pct=settings.metrics.depth_bands_pct,
                notionals_usd=settings.metrics.slippage_notionals_usd,
            ),
        )

    # --- books ----------------------------------------------------------------------------
    def add_book(self, venue: Venue, symbol: str) -> BookInfo | None:
        """Start tracking a book (it will ask for a snapshot). None if the symbol is unknown."""
        key = (venue, symbol)
        info = self.books.get(key)
        if info is not None:
            return info
        instrument = self.registry.get(venue, symbol)
        if instrument is None:
            if key not in self._unknown_logged:
                self._unknown_logged.add(key)
                log.warning("book.unknown_symbol", venue=venue.value, symbol=symbol)
            self.counters.add(venue, "unknown_symbol")
            return None
        adapter = self.adapters[venue]
        book = self.store.add_book(
            rule=adapter.sequencing,
            price_decimals=instrument.price_decimals,
            contract_size=instrument.contract_size,
            px_index=adapter.px_index,
            qty_index=adapter.qty_index,
            capacity=adapter.book_depth or None,
            inverse=instrument.inverse,
            checksum=int(adapter.checksum),
            qty_precision=instrument.qty_precision,
            window=bool(adapter.book_depth),
        )
        info = BookInfo(
            book=book,
            instrument=instrument,
            sync=self.resync.add(key),
            stream=adapter.snapshot_source == SnapshotSource.STREAM,
        )
        self.books[key] = info
        self._venue_books.setdefault(venue, {})[symbol] = info
        mark = self._loose_marks.pop(key, None)
        if mark is not None:
            self._set_mark_columns(book, mark)
        self._symbol_indexes.pop(venue, None)
        self._by_id.append(info)
        return info

    def invalidate_venue(self, venue: Venue) -> None:
        """Every book of the venue missed deltas (its only connection was lost): resync."""
        self.invalidate_books(venue, [s for v, s in self.books if v == venue])

    def invalidate_books(self, venue: Venue, symbols: Iterable[str]) -> None:
        """The connection carrying these books was lost: they missed deltas and are resynced."""
        self.flush()
        for symbol in symbols:
            info = self.books.get((venue, symbol))
            if info is not None:
                self._throw_away(info, "reconnect")

    def _throw_away(self, info: BookInfo, reason: str, *, emptied: bool = False) -> None:
        """The book waits for a snapshot. ``emptied``: an outcome of the store's kernel,
        which emptied the book at that event already; a later event of the same kernel
        call may have filled it again (a whole-book venue's next snapshot after a crossed
        one), so the store is left as the kernel left it, as frame by frame would."""
        if info.book in self._deepening:
            self._end_deepen(self._deepening[info.book], f"book {reason}")
        if not emptied:
            self.store.invalidate(info.book)
        info.pending.clear()
        info.pending_recv.clear()
        info.sync.lose()
        log.info(
            "book.resync",
            venue=info.instrument.venue.value,
            symbol=info.instrument.symbol,
            reason=reason,
        )

    def take_snapshot_requests(self) -> list[tuple[Venue, str]]:
        """Books that need a snapshot now (REST venues: fetch it; stream venues: resubscribe);
        each is returned once until a snapshot arrives or :meth:`snapshot_failed` is called."""
        return self.resync.take_requests()

    def expect_snapshots(self, venue: Venue, symbols: Iterable[str], deadline: float) -> None:
        """A (re)subscription is on its way: these books' snapshots will arrive in-band, so
        they are not handed out by :meth:`take_snapshot_requests` before ``deadline``."""
        self.resync.expect(venue, symbols, deadline)

    def snapshot_failed(self, venue: Venue, symbol: str) -> None:
        """The book's snapshot request failed or timed out: it is asked for again."""
        sync = self.resync.get((venue, symbol))
        if sync is not None:
            sync.give_up()
            self.counters.add(venue, "snapshot_failed")

    # --- the message path -----------------------------------------------------------------
    def on_message(
        self, venue: Venue, kind: str, url: str, data: bytes | str, recv_ns: int
    ) -> None:
        """Feed one message and apply it at once (live use: books current after every frame)."""
        self.feed(venue, kind, url, data, recv_ns)
        self.flush()

    def feed(self, venue: Venue, kind: str, url: str, data: bytes | str, recv_ns: int) -> None:
        """Feed one message; deltas are applied at the next flush (replay and benchmarks)."""
        if kind == "ws":
            self.feed_frames(venue, (data,), (recv_ns,))
            return
        adapter = self.adapters.get(venue)
        if adapter is None:
            self.counters.add(venue, "no_adapter")
            return
        try:
            decoded = adapter.decode_http(url, data, recv_ns)
        except ParseError as exc:
            self._parse_error(venue, exc)
            return
        for item in decoded if type(decoded) is list else (decoded,):
            self._dispatch(venue, item, recv_ns)

    def feed_frames(
        self, venue: Venue, frames: Sequence[bytes | str], recv_ns: Sequence[int]
    ) -> None:
        """Feed websocket frames of one venue, in arrival order: the hot path.

        Deltas are queued for the next flush (the batch flushes itself when full);
        everything else is dispatched at once.
        """
        adapter = self.adapters.get(venue)
        if adapter is None:
            self.counters.add(venue, "no_adapter", len(frames))
            return
        scanner = adapter.scanner
        if scanner is not None and len(frames) >= scanner.min_frames:
            pre = self.prescan(venue, frames, recv_ns)
            if pre is not None:
                self.feed_prescanned(pre, len(frames))
                return
        self._feed_decoded(venue, adapter, frames, recv_ns)

    def _feed_decoded(
        self,
        venue: Venue,
        adapter: VenueAdapter,
        frames: Sequence[bytes | str],
        recv_ns: Sequence[int],
    ) -> None:
        """Frames one by one through the adapter's decode (msgspec)."""
        decode = adapter.decode
        books = self._venue_books[venue]
        batch = self.batch
        add = batch.add
        dirty = self._dirty_bytes
        in_band = adapter.snapshot_source == SnapshotSource.STREAM
        for data, recv in zip(frames, recv_ns, strict=True):
            try:
                decoded = decode(data, recv)
            except ParseError as exc:
                self._parse_error(venue, exc)
                continue
            for item in decoded if type(decoded) is list else (decoded,):
                if isinstance(item, RawBook) and (item.kind == _DELTA or in_band):
                    info = books.get(item.symbol) or self.add_book(venue, item.symbol)
                    if info is None:
                        continue
                    book = info.book
                    add(
                        book,
                        item.kind,
                        item.first_seq,
                        item.last_seq,
                        item.prev_seq,
                        item.bids,
                        item.asks,
                        item.ts_event_ns,
                        recv,
                        item.limit,
                        item.checksum,
                        item.has_checksum,
                    )
                    dirty[book] = 1  # the flush's _settle need not mark the batch's books
                    if batch.full():
                        self.flush()
                else:
                    self._dispatch(venue, item, recv)

    def prescan(
        self, venue: Venue, frames: Sequence[bytes | str], recv_ns: Sequence[int]
    ) -> Prescan | None:
        """Scan a venue's frames ahead of feeding them (``feed_prescanned``): one scanner
        call and one intake call for the whole run. None when the venue has no scanner
        (or its symbol keys collide): feed those frames with ``feed_frames``."""
        found = self._scanner_index(venue)
        if found is None:
            return None
        scanner, index = found
        return self._prescanned(venue, scanner.scan_frames(frames), frames, recv_ns, index)

    def prescan_scanned(
        self,
        venue: Venue,
        scan: ScannedFrames,
        frames: Sequence[bytes | str],
        recv_ns: Sequence[int],
    ) -> Prescan | None:
        """``prescan`` of frames the venue's scanner has already scanned (``scan``, of
        ``frames`` in order: a replay scans a block's frames ahead, in its reader thread).
        None when the venue's symbol keys collide: feed those frames with
        ``feed_frames``."""
        found = self._scanner_index(venue)
        if found is None:
            return None
        return self._prescanned(venue, scan, frames, recv_ns, found[1])

    def _scanner_index(
        self, venue: Venue
    ) -> tuple[FrameScanner, tuple[np.ndarray, np.ndarray]] | None:
        """The venue's scanner and the symbol index of its books, or None (no scanner,
        or symbol keys that collide)."""
        adapter = self.adapters.get(venue)
        scanner = adapter.scanner if adapter is not None else None
        if scanner is None:
            return None
        index = self._symbol_index(venue, scanner)
        return None if index is None else (scanner, index)

    def _prescanned(
        self,
        venue: Venue,
        scan: ScannedFrames,
        frames: Sequence[bytes | str],
        recv_ns: Sequence[int],
        index: tuple[np.ndarray, np.ndarray],
    ) -> Prescan:
        keys, key_books = index
        n = len(frames)
        meta = np.empty((n, N_EVENT), dtype=np.int64)
        starts = np.empty((n, 2), dtype=np.int64)
        recv = np.fromiter(recv_ns, dtype=np.int64, count=n)
        table = scan.table
        m = intake(table, keys, key_books, recv, meta, starts)
        status = table[:, T_STATUS]
        buf = scan.buf
        if buf.flags.writeable:  # a scanner's own level buffer (Coinbase, Kraken,
            # Hyperliquid): the book kernel's buffer type is read-only bytes; a writable one
            # is another signature, compiled (seconds on a cold cache) at the first busy read
            buf = buf.view()
            buf.flags.writeable = False
        pre = Prescan(
            venue,
            frames,
            recv_ns,
            buf,
            meta[:m],
            starts[:m],
            np.flatnonzero(status == SCAN_TAKEN).tolist(),
            [],
            [],
        )
        if m == n:
            return pre
        side = status == SCAN_SIDE
        mark = status == SCAN_MARK
        pre.others = np.flatnonzero((status != SCAN_TAKEN) & ~side & ~mark).tolist()
        if mark.any():
            rows = np.flatnonzero(mark)
            row_keys = table[rows, T_SYMBOL_KEY]
            at = np.minimum(np.searchsorted(keys, row_keys), max(len(keys) - 1, 0))
            known = keys[at] == row_keys if len(keys) else np.zeros(len(rows), dtype=np.bool_)
            if side.any():  # a mark decode reads may be a known book's: decode them all,
                known[:] = False  # in their order
            side[rows[~known]] = True
            rows, at = rows[known], at[known]
            pre.marks = rows.tolist()
            pre.mark_books = key_books[at]
            pre.mark_values = table[rows, T_MARK_PRICE : T_FUNDING_RATE + 1].view(np.float64)
            pre.mark_times = np.column_stack(
                (table[rows, T_NEXT_FUNDING_NS], table[rows, T_TS_NS], recv[rows])
            )
        pre.side = np.flatnonzero(side).tolist()
        return pre

    def feed_prescanned(self, pre: Prescan, upto: int) -> None:
        """Feed frames ``pre.done`` to ``upto`` of a prescanned run, in their order: the
        scanned events go to the store in one kernel call per stretch between two frames
        that need the adapter's ``decode`` (acks, other channels, new symbols, malformed).
        Frames the scanner knows are no book's events (mark prices) are decoded first,
        together, and the mark prices it read are merged in one kernel call: their place
        among the book events does not matter."""
        lo = pre.done
        if upto <= lo:
            return
        pre.done = upto
        adapter = self.adapters[pre.venue]
        side = pre.side
        if pre.side_next < len(side) and side[pre.side_next] < upto:
            a = pre.side_next
            pre.side_next = b = bisect_left(side, upto, a)
            self._feed_decoded(
                pre.venue,
                adapter,
                [pre.frames[k] for k in side[a:b]],
                [pre.recv_ns[k] for k in side[a:b]],
            )
        marks = pre.marks
        if pre.marks_next < len(marks) and marks[pre.marks_next] < upto:
            a = pre.marks_next
            pre.marks_next = b = bisect_left(marks, upto, a)
            merge_marks(
                pre.mark_books,
                pre.mark_values,
                pre.mark_times,
                a,
                b,
                self._mark_columns,
                self._mark_times,
                self._has_mark,
            )
        taken = pre.taken
        row = pre.taken_next
        pre.taken_next = end = bisect_left(taken, upto, row)
        others = pre.others
        while pre.others_next < len(others) and others[pre.others_next] < upto:
            k = others[pre.others_next]
            pre.others_next += 1
            cut = bisect_left(taken, k, row)
            self._apply_scanned(pre, row, cut)
            row = cut
            self._feed_decoded(pre.venue, adapter, (pre.frames[k],), (pre.recv_ns[k],))
        self._apply_scanned(pre, row, end)

    def _apply_scanned(self, pre: Prescan, a: int, b: int) -> None:
        if b <= a:
            return
        self.flush()  # events queued earlier go first
        meta = pre.meta[a:b]
        starts = pre.starts[a:b]
        if self._deepening:  # the deltas of books being deepened go to their copies too
            meta, starts = self._with_shadow_rows(meta, starts)
        self.batch.load(pre.buf, meta, starts)
        self._settle(self.store.apply_sealed(self.batch), len(meta))

    def _symbol_index(
        self, venue: Venue, scanner: FrameScanner
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Sorted symbol keys of the venue's books and their book ids (cached)."""
        if venue in self._symbol_indexes:
            return self._symbol_indexes[venue]
        books = self._venue_books.get(venue, {})
        pairs = sorted((scanner.symbol_key(symbol), info.book) for symbol, info in books.items())
        keys = np.array([k for k, _ in pairs], dtype=np.int64)
        index: tuple[np.ndarray, np.ndarray] | None = (
            keys,
            np.array([b for _, b in pairs], dtype=np.int64),
        )
        if len(np.unique(keys)) != len(keys):
            log.error("pipeline.symbol_key_collision", venue=venue.value)
            index = None
        self._symbol_indexes[venue] = index
        return index

    def _parse_error(self, venue: Venue, exc: ParseError) -> None:
        self.counters.add(venue, "parse_error")
        log.warning(
            "feed.parse_error", venue=venue.value, reason=exc.reason, excerpt=exc.excerpt[:120]
        )

    def _dispatch(self, venue: Venue, decoded: object, recv_ns: int) -> None:
        """Everything but a websocket delta: snapshots, marks, metadata, venue messages."""
        if isinstance(decoded, RawBook):
            info = self._venue_books[venue].get(decoded.symbol) or self.add_book(
                venue, decoded.symbol
            )
            if info is None:
                return
            if decoded.kind == _SNAPSHOT and not info.stream:
                self.flush()
                self._apply_snapshot(info, decoded, recv_ns)
            else:
                self._dirty_bytes[info.book] = 1
                self.batch.add(
                    info.book,
                    int(decoded.kind),
                    decoded.first_seq,
                    decoded.last_seq,
                    decoded.prev_seq,
                    decoded.bids,
                    decoded.asks,
                    decoded.ts_event_ns,
                    recv_ns,
                    decoded.limit,
                    decoded.checksum,
                    decoded.has_checksum,
                )
                if self.batch.full():
                    self.flush()
        elif type(decoded) is MarkPriceEvent:
            self._merge_mark(venue, decoded)
        elif type(decoded) is Ignored or type(decoded) is Reply:
            self.counters.add(venue, "ignored")
        elif type(decoded) is InstrumentsUpdate:
            self._update_instruments(venue, decoded)
        elif type(decoded) is VenueMessage:
            self.counters.add(venue, "venue_message")
            log.warning(
                "feed.venue_message", venue=venue.value, code=decoded.code, message=decoded.message
            )

    @property
    def marks(self) -> dict[tuple[Venue, str], MarkPriceEvent]:
        """The last mark, index and funding per (venue, symbol), each field from the last
        message that had it (a copy: changing it changes nothing here)."""
        out = dict(self._loose_marks)
        columns, times = self._mark_columns, self._mark_times
        for book in np.flatnonzero(self._has_mark).tolist():
            inst = self._by_id[book].instrument
            mark, index, funding = (x if x == x else _NAN for x in columns[:, book].tolist())
            next_funding, ts_event, ts_recv = times[:, book].tolist()
            out[(inst.venue, inst.symbol)] = MarkPriceEvent(
                inst.venue, inst.symbol, mark, index, funding, next_funding, ts_event, ts_recv
            )
        return out

    def _merge_mark(self, venue: Venue, mark: MarkPriceEvent) -> None:
        """Venues send mark, index and funding in separate or partial messages (NaN: absent)."""
        info = self._venue_books.get(venue, {}).get(mark.symbol)
        if info is not None:  # the same merge as merge_marks (scanned marks)
            book = info.book
            columns = self._mark_columns
            if mark.mark_price == mark.mark_price:
                columns[0, book] = mark.mark_price
            if mark.index_price == mark.index_price:
                columns[1, book] = mark.index_price
            if mark.funding_rate == mark.funding_rate:
                columns[2, book] = mark.funding_rate
            times = self._mark_times
            if mark.next_funding_ns:
                times[0, book] = _int64(mark.next_funding_ns)
            times[1, book] = _int64(mark.ts_event_ns)
            times[2, book] = _int64(mark.ts_recv_ns)
            self._has_mark[book] = True
            return
        key = (venue, mark.symbol)
        old = self._loose_marks.get(key)
        if old is not None:
            if mark.mark_price != mark.mark_price:
                mark.mark_price = old.mark_price
            if mark.index_price != mark.index_price:
                mark.index_price = old.index_price
            if mark.funding_rate != mark.funding_rate:
                mark.funding_rate = old.funding_rate
            if not mark.next_funding_ns:
                mark.next_funding_ns = old.next_funding_ns
        self._loose_marks[key] = mark

    def _set_mark_columns(self, book: int, mark: MarkPriceEvent) -> None:
        """A new book takes the mark its symbol had before it (every field as it stands)."""
        self._mark_columns[:, book] = (mark.mark_price, mark.index_price, mark.funding_rate)
        self._mark_times[:, book] = [
            _int64(t) for t in (mark.next_funding_ns, mark.ts_event_ns, mark.ts_recv_ns)
        ]
        self._has_mark[book] = True

    def _update_instruments(self, venue: Venue, update: InstrumentsUpdate) -> None:
        try:
            fresh = InstrumentRegistry(
                self.adapters[venue].parse_instruments(update.url, update.text)
            )
        except ParseError as exc:
            self.counters.add(venue, "parse_error")
            log.warning("instruments.parse_error", venue=venue.value, reason=exc.reason)
            return
        self.registry = self.registry.merge(fresh)
        log.info("instruments.loaded", venue=venue.value, count=len(fresh))

    def flush(self) -> None:
        """Apply the queued deltas (one kernel call) and handle their outcomes."""
        batch = self.batch
        n = batch.count
        if n == 0:
            return
        batch.seal()
        if self._deepening:  # the deltas of books being deepened go to their copies too
            batch.meta, batch.starts = self._with_shadow_rows(batch.meta, batch.starts)
            self._settle(self.store.apply_sealed(batch), len(batch.meta))
            return
        # the batch's books were marked dirty as their events were added
        applied = self.store.apply_sealed(batch)
        if applied == n:  # the live case: every event applied, nothing to settle
            batch.clear()
            return
        self._settle(applied, n, marked=True)

    def _settle(self, applied: int, n: int, *, marked: bool = False) -> None:
        """After a kernel call on the sealed batch: mark books dirty (unless ``marked``
        already), handle the events not applied."""
        batch = self.batch
        meta = batch.meta
        if not marked:
            self._dirty[meta[:, E_BOOK]] = True
        if applied != n:  # the kernel counts the R_APPLIED events: look at the others
            status = meta[:, E_STATUS]
            rows = np.flatnonzero(status != R_APPLIED)
            if not self._snapshots_applied(meta[rows, E_BOOK], status[rows]):
                for row in rows:
                    self._outcome(int(row), int(status[row]))
        batch.clear()
        if self._deepening:
            for shadow in list(self._deepening.values()):
                self._try_adopt(shadow)

    def _snapshots_applied(self, books: IntArray, status: IntArray) -> bool:
        """When every event left to settle is an in-band snapshot applied to a book of
        ours (a Hyperliquid batch: every frame is one), count them per book at once and
        return True: their order does not matter. Else False, nothing done: the caller
        settles them one by one (a snapshot among other outcomes, a deeper copy's).
        Row by row these cost ~0.7 us a frame, a third of the Hyperliquid path's Python."""
        if len(books) == 0:
            return True
        if not (status == R_SNAPSHOT).all() or books.max() >= len(self._by_id):
            return False
        counts = np.bincount(books)
        by_id = self._by_id
        for book in np.flatnonzero(counts).tolist():
            by_id[book].sync.snapshot_applied(int(counts[book]))
        return True

    def _outcome(self, row: int, status: int) -> None:
        meta = self.batch.meta[row]
        book = int(meta[E_BOOK])
        if book >= len(self._by_id):  # a spare slot: a deeper copy (or one just dropped)
            shadow = self._shadows.get(book)
            if shadow is not None:
                self._shadow_outcome(shadow, row, status)
            return
        info = self._by_id[book]
        venue = info.instrument.venue
        if status == R_STALE:
            return
        if status == R_SNAPSHOT:  # an in-band snapshot (stream venues)
            info.sync.snapshot_applied()
            return
        if info.stream and status in (R_BUFFER, R_GAP):
            # in-band snapshots: nothing before the next snapshot can be used
            if status == R_BUFFER:
                info.dropped_unsynced += 1
                return
            self.counters.add(venue, "gap")
            log.warning(
                "book.gap",
                venue=venue.value,
                symbol=info.instrument.symbol,
                last=int(meta[E_LAST]),
                prev=int(meta[E_PREV]),
            )
            self._throw_away(info, "gap", emptied=True)
            return
        if status in (R_BUFFER, R_GAP):
            if status == R_GAP:
                self.counters.add(venue, "gap")
                log.warning(
                    "book.gap",
                    venue=venue.value,
                    symbol=info.instrument.symbol,
                    first=int(meta[E_FIRST]),
                    last=int(meta[E_LAST]),
                    prev=int(meta[E_PREV]),
                )
                self._throw_away(info, "gap", emptied=True)
            self._buffer_delta(info, row)
            return
        reason = REJECTED.get(status)
        if reason is not None:
            info.rejected += 1
            self.counters.add(venue, reason)
            log.warning(
                "book.rejected", venue=venue.value, symbol=info.instrument.symbol, reason=reason
            )
            self._throw_away(info, reason, emptied=True)

    def _apply_snapshot(self, info: BookInfo, snap: RawBook, recv_ns: int) -> None:
        venue = info.instrument.venue
        shadow = info.shadow_of is not None
        if not shadow and info.book in self._deepening:  # a plain resync wins over a deepen
            self._end_deepen(self._deepening[info.book], "book resynced")
        if info.pending and snapshot_predates(
            self.adapters[venue].sequencing,
            snap.last_seq,
            info.pending[0].first_seq,
            info.pending[0].prev_seq,
        ):
            # older than the first buffered delta: the deltas in between are lost to us
            info.sync.snapshot_stale()
            if shadow:
                self._end_deepen(info, "deeper snapshot older than the buffered deltas")
                return
            self.counters.add(venue, "stale_snapshot")
            log.info(
                "book.snapshot_stale",
                venue=venue.value,
                symbol=info.instrument.symbol,
                last_update_id=snap.last_seq,
                first_buffered=info.pending[0].first_seq,
            )
            return
        batch = self.batch
        batch.add(
            info.book,
            KIND_SNAPSHOT,
            -1,
            snap.last_seq,
            -1,
            snap.bids,
            snap.asks,
            snap.ts_event_ns,
            recv_ns,
            snap.limit,
        )
        pending = list(zip(info.pending, info.pending_recv, strict=True))
        info.pending.clear()
        info.pending_recv.clear()
        info.sync.snapshot_applied()
        info.limit = snap.limit
        for ev, ev_recv in pending:
            batch.add(
                info.book,
                KIND_DELTA,
                ev.first_seq,
                ev.last_seq,
                ev.prev_seq,
                ev.bids,
                ev.asks,
                ev.ts_event_ns,
                ev_recv,
            )
        first_row_status = None
        count = batch.count
        self.store.apply(batch)
        self._dirty[info.book] = True
        for row in range(count):
            status = int(batch.meta[row, E_STATUS])
            if row == 0:
                first_row_status = status
                if status != R_SNAPSHOT:
                    self._outcome(row, status)
            elif status != R_APPLIED:
                self._outcome(row, status)
        batch.clear()
        if shadow:
            if first_row_status != R_SNAPSHOT and info.book in self._shadows:
                self._end_deepen(info, "deeper snapshot rejected")
            return
        if first_row_status == R_SNAPSHOT and not self.is_valid(info):
            # a one-sided or empty book is kept (it is what the venue says) but has no mid
            self.counters.add(venue, "empty_book")
            log.warning(
                "book.empty_side",
                venue=venue.value,
                symbol=info.instrument.symbol,
                levels=[
                    int(self.store.istate[info.book, S_N_BID]),
                    int(self.store.istate[info.book, S_N_ASK]),
                ],
            )
        if first_row_status == R_SNAPSHOT:
            log.info(
                "book.snapshot",
                venue=venue.value,
                symbol=info.instrument.symbol,
                last_update_id=snap.last_seq,
                replayed=len(pending),
                state=self.store.state(info.book).name,
            )

    # --- deepening: a second sync into a valid book -------------------------------------
    #
    # A book synced from a shallow snapshot (a fast start) is deepened without going
    # invalid: a copy of it in a spare store slot starts empty and, from the next flush on,
    # gets every delta the book gets (buffered while it waits for its snapshot, exactly as a
    # resyncing book buffers); the deeper snapshot is applied to the copy by the venue's
    # sync rules (stale snapshots refused, buffered deltas replayed, gaps detected). Once
    # the copy is synced and stands at the book's own sequence id, both hold the venue's
    # book at the same update, the copy to the deeper depth: the book takes the copy's
    # levels and state between two batches. Until then the book carries on as it was.

    def begin_deepen(self, venue: Venue, symbol: str) -> bool:
        """Start a deeper second sync of a valid book; False if it cannot start now (not
        valid, a stream venue, already deepening, no spare slot)."""
        info = self.books.get((venue, symbol))
        if info is None or info.stream or info.book in self._deepening:
            return False
        if not self.is_valid(info) or info.needs_snapshot:
            return False
        free = [slot for slot in self.store.spare_slots if slot not in self._shadows]
        if not free:
            return False
        self.flush()  # what the book has applied so far, the copy will not need
        slot = free[0]
        self.store.clone_empty(slot, info.book)
        shadow = BookInfo(book=slot, instrument=info.instrument, shadow_of=info)
        self._deepening[info.book] = shadow
        self._shadows[slot] = shadow
        return True

    def deepening(self, venue: Venue, symbol: str) -> bool:
        """A deeper sync of the book is under way."""
        info = self.books.get((venue, symbol))
        return info is not None and info.book in self._deepening

    def deepen_snapshot(
        self, venue: Venue, symbol: str, url: str, data: bytes | str, recv_ns: int
    ) -> bool:
        """Apply the deeper REST snapshot to the book's copy. True: the book was deepened
        at once or its copy is synced and follows until it reaches the book's update id
        (:meth:`deepening` tells when it is over); False: the deepen was dropped."""
        info = self.books.get((venue, symbol))
        shadow = self._deepening.get(info.book) if info is not None else None
        if shadow is None:
            return False
        adapter = self.adapters[venue]
        try:
            decoded = adapter.decode_http(url, data, recv_ns)
        except ParseError as exc:
            self._parse_error(venue, exc)
            self._end_deepen(shadow, "deeper snapshot did not parse")
            return False
        if not (
            isinstance(decoded, RawBook) and decoded.kind == _SNAPSHOT and decoded.symbol == symbol
        ):
            if type(decoded) is VenueMessage:
                self._dispatch(venue, decoded, recv_ns)
            self._end_deepen(shadow, "answer is not a depth snapshot")
            return False
        self.flush()
        self._apply_snapshot(shadow, decoded, recv_ns)
        if shadow.book not in self._shadows:
            return False
        self._try_adopt(shadow)
        return True

    def abandon_deepen(self, venue: Venue, symbol: str, reason: str) -> None:
        """Drop a deeper sync under way (its snapshot failed or took too long)."""
        info = self.books.get((venue, symbol))
        if info is not None and info.book in self._deepening:
            self._end_deepen(self._deepening[info.book], reason)

    def _with_shadow_rows(
        self, meta: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The batch's rows of books being deepened, repeated for their copies (after the
        batch: books are independent, each book's rows keep their order)."""
        books = meta[:, E_BOOK]
        mask = np.isin(books, np.fromiter(self._deepening, dtype=np.int64))
        if not mask.any():
            return meta, starts
        extra = meta[mask].copy()
        extra[:, E_BOOK] = [self._deepening[b].book for b in extra[:, E_BOOK].tolist()]
        return np.concatenate((meta, extra)), np.concatenate((starts, starts[mask]))

    def _buffer_delta(self, info: BookInfo, row: int) -> None:
        """Keep the batch's delta ``row`` until the book's snapshot arrives (replayed then)."""
        meta = self.batch.meta[row]
        bids, asks = self.batch.raw_levels(row)
        info.pending.append(
            BookMessage(
                info.instrument.symbol,
                EventKind.DELTA,
                int(meta[E_FIRST]),
                int(meta[E_LAST]),
                int(meta[E_PREV]),
                bids,
                asks,
                int(meta[E_TS_EVENT]),
            )
        )
        info.pending_recv.append(int(meta[E_TS_RECV]))

    def _shadow_outcome(self, shadow: BookInfo, row: int, status: int) -> None:
        if status in (R_STALE, R_SNAPSHOT):
            return
        if status == R_BUFFER:  # the copy waits for its snapshot: keep the delta
            self._buffer_delta(shadow, row)
            return
        reason = "gap" if status == R_GAP else REJECTED.get(status, f"status {status}")
        self._end_deepen(shadow, f"deeper copy: {reason}")

    def _try_adopt(self, shadow: BookInfo) -> bool:
        """The book takes its deeper copy once both stand at the same update id."""
        info = shadow.shadow_of
        assert info is not None
        st = self.store.istate
        copy, book = st[shadow.book], st[info.book]
        if int(copy[S_STATE]) == int(BookState.EMPTY) or copy[S_LAST_ID] != book[S_LAST_ID]:
            return False  # no snapshot yet, or not caught up with the book
        if not self.is_valid(info) or not self.is_valid(shadow):
            return False
        levels = (int(book[S_N_BID]), int(book[S_N_ASK]))
        self.store.adopt(info.book, shadow.book)
        info.limit = shadow.limit
        info.deepens += 1
        self._dirty[info.book] = True
        self._release(shadow)
        self.counters.add(info.instrument.venue, "deepened")
        log.info(
            "book.deepened",
            venue=info.instrument.venue.value,
            symbol=info.instrument.symbol,
            limit=info.limit,
            levels_before=list(levels),
            levels=[int(book[S_N_BID]), int(book[S_N_ASK])],
            last_update_id=int(book[S_LAST_ID]),
        )
        return True

    def _end_deepen(self, shadow: BookInfo, reason: str) -> None:
        """Drop a deeper copy; the book carries on as it was."""
        info = shadow.shadow_of
        if info is None or shadow.book not in self._shadows:
            return
        self._release(shadow)
        self.counters.add(info.instrument.venue, "deepen_dropped")
        log.info(
            "book.deepen_dropped",
            venue=info.instrument.venue.value,
            symbol=info.instrument.symbol,
            reason=reason,
        )

    def _release(self, shadow: BookInfo) -> None:
        info = shadow.shadow_of
        assert info is not None
        self._shadows.pop(shadow.book, None)
        self._deepening.pop(info.book, None)
        self.store.invalidate(shadow.book)
        shadow.pending.clear()
        shadow.pending_recv.clear()

    # --- state and metrics ----------------------------------------------------------------
    def is_valid(self, info: BookInfo) -> bool:
        """Synced (not thrown away) with both sides present; staleness is the tick's call."""
        st = self.store.istate[info.book]
        return bool(int(st[S_STATE]) != BookState.EMPTY and st[S_N_BID] > 0 and st[S_N_ASK] > 0)

    def _mid(self, base: str, quotes: Sequence[str]) -> tuple[float, str] | None:
        """A valid book of ``base`` in one of ``quotes``: its mid and quote (FX crosses)."""
        for info in self._by_id:
            inst = info.instrument
            if inst.base == base and inst.quote in quotes and self.is_valid(info):
                bid, ask = self.store.best_bid(info.book), self.store.best_ask(info.book)
                return 0.5 * (bid + ask) / 10**inst.price_decimals, inst.quote
        return None

    def _identities(self) -> tuple[BookIdentity, ...]:
        if len(self._identity_cache) != len(self._by_id):
            self._identity_cache = tuple(
                BookIdentity(
                    venue=i.instrument.venue.value,
                    symbol=i.instrument.symbol,
                    instrument=i.instrument.canonical,
                    base=i.instrument.base,
                    quote=i.instrument.quote,
                    kind=i.instrument.kind.value,
                )
                for i in self._by_id
            )
            currencies = sorted({i.instrument.quote for i in self._by_id})
            self._currencies = currencies
            index = {c: k for k, c in enumerate(currencies)}
            self._quote_index = np.array(
                [index[i.instrument.quote] for i in self._by_id], dtype=np.int64
            )
            self._stale_after_ns = np.array(
                [
                    int(
                        self.stale_after_s.get(i.instrument.venue, self.default_stale_after_s) * 1e9
                    )
                    for i in self._by_id
                ],
                dtype=np.int64,
            )
        return self._identity_cache

    def tick(self, now_ns: int) -> TickSample:
        """Measure the books and return the tick sample (every tracked book, one row each).

        The metric kernel runs once, over the books that changed since the last tick (or
        whose FX rate moved); the others keep their last figures.
        """
        self.flush()
        self.analytics.prepare(now_ns)
        identities = self._identities()
        n = len(identities)
        nk, nn = len(self.bands), len(self.notionals)
        usd, assumed = self.fx.rates(self._currencies, self._mid)
        if n:
            fx = usd[self._quote_index]
            fx_assumed = assumed[self._quote_index]
        else:
            fx, fx_assumed = np.empty(0), np.empty(0, dtype=np.bool_)
        # one kernel call: metrics of the changed books, validity, staleness, the columns
        m = np.empty((n, self._metrics.shape[1]))
        flags = np.empty((mk.N_T, n), dtype=np.bool_)
        state = np.empty(n, dtype=np.int8)
        levels = np.empty((n, 2), dtype=np.int64)
        updates = np.empty(n, dtype=np.int64)
        age_s = np.empty(n)
        covered = np.empty((n, nk, 2), dtype=np.bool_)
        exhausted = np.empty((n, nn, 2), dtype=np.bool_)
        newly_stale = mk.tick_rows(
            now_ns,
            self.store.istate,
            self.store.keys,
            self.store.qtys,
            fx,
            self.bands,
            self.notionals,
            self._stale_after_ns,
            self._dirty,
            self._fx_used,
            self._metrics,
            self._prev_valid,
            self._prev_stale,
            m,
            flags,
            state,
            levels,
            updates,
            age_s,
            covered,
            exhausted,
        )
        if newly_stale:
            for i in np.flatnonzero(flags[mk.T_NEWLY_STALE]).tolist():
                inst = self._by_id[i].instrument
                self.counters.add(inst.venue, "stale")
                log.warning(
                    "book.stale",
                    venue=inst.venue.value,
                    symbol=inst.symbol,
                    age_s=round(float(age_s[i]), 1),
                    limit_s=float(self._stale_after_ns[i]) / 1e9,
                )
        bands = m[:, mk.C_FIRST_BAND : mk.C_FIRST_BAND + mk.BAND_COLS * nk].reshape(
            n, nk, mk.BAND_COLS
        )
        slips = m[:, mk.C_FIRST_BAND + mk.BAND_COLS * nk :].reshape(n, nn, mk.NOTIONAL_COLS)
        mark = self._mark_columns[:, :n].copy()
        sample = TickSample(
            ts_ns=now_ns,
            books=identities,
            bands_pct=self.bands_pct,
            notionals_usd=self._notionals_usd,
            book_id=self._book_ids(n),
            valid=flags[mk.T_VALID],
            stale=flags[mk.T_STALE],
            changed=flags[mk.T_CHANGED],
            book_state=state,
            bid=m[:, mk.C_BID],
            ask=m[:, mk.C_ASK],
            mid=m[:, mk.C_MID],
            spread_bps=m[:, mk.C_SPREAD_BPS],
            depth_usd=bands[:, :, 2:4],
            depth_quote=bands[:, :, 0:2],
            depth_covered=covered,
            slippage_bps=slips[:, :, 0::2],
            slippage_exhausted=exhausted,
            levels=levels,
            truncated=flags[mk.T_TRUNCATED],
            fx_usd=fx,
            fx_assumed=fx_assumed,
            book_age_s=age_s,
            updates=updates,
            mark_price=mark[0],
            index_price=mark[1],
            funding_rate=mark[2],
        )
        return self.analytics.process(sample, in_place=True)  # the sample is ours alone

    def _book_ids(self, n: int) -> IntArray:
        """0..n-1 (ids are dense: book i is self._by_id[i]), read-only and shared by the
        samples until the book set grows."""
        ids = self._book_id_column
        if len(ids) != n:
            ids = np.arange(n, dtype=np.int64)
            ids.flags.writeable = False
            self._book_id_column = ids
        return ids

    def book_summaries(self, depth: int = 50) -> list[dict[str, Any]]:
        """Per-book state and counters, with the top levels written as the venue writes them."""
        self.flush()
        out = []
        for info in self._by_id:
            st = self.store.istate[info.book]
            bids, asks = self.store.wire_levels(info.book, depth)
            out.append(
                {
                    "venue": info.instrument.venue.value,
                    "symbol": info.instrument.symbol,
                    "instrument": info.instrument.canonical,
                    "bids": bids,
                    "asks": asks,
                    "valid": self.is_valid(info),
                    "state": BookState(int(st[S_STATE])).name.lower(),
                    "last_update_id": int(st[S_LAST_ID]),
                    "gaps": int(st[S_GAPS]),
                    "resyncs": info.sync.resyncs,
                    "snapshots": info.sync.snapshots,
                    "stale_snapshots": info.sync.stale_snapshots,
                    "stale_deltas": int(st[S_STALE]),
                    "rejected": info.rejected,
                    "crossed": int(st[S_CROSSED]),
                    "dropped_levels": int(st[S_DROPPED]),
                    "truncated": bool(st[S_FLAGS] & FLAG_TRUNCATED),
                    "pending": len(info.pending),
                    "checksum_ok": int(st[S_CHECK_OK]),
                    "checksum_failed": int(st[S_CHECK_FAIL]),
                    "dropped_unsynced": info.dropped_unsynced,
                    "snapshot_limit": info.limit,
                    "deepens": info.deepens,
                    "deepening": info.book in self._deepening,
                    "messages": int(st[S_MESSAGES]),
                    "ts_event": int(st[S_TS_EVENT]) / 1e9,
                }
            )
        return out
