"""Book store behaviours worth a named example beside the property tests."""

from __future__ import annotations

from monitor.book.layout import (
    E_CHECKSUM,
    E_LAST,
    E_STATUS,
    E_TS_EVENT,
    E_TS_RECV,
    FLAG_TRUNCATED,
    R_APPLIED,
    R_PARSE_ERROR,
    R_SNAPSHOT,
    R_TOP_UNKNOWN,
    S_COMPLETE_BID,
    S_FLAGS,
    S_MESSAGES,
)
from monitor.book.store import SCRATCH_BYTES, BookStore, EventBatch
from monitor.domain import BookState, SeqRule


def test_a_side_cut_by_capacity_whose_known_levels_are_all_deleted_is_resynced() -> None:
    store = BookStore(max_books=1, capacity=2)
    book = store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=0)
    batch = EventBatch()
    batch.add(book, 1, -1, 10, -1, b'[["10","1"],["9","1"],["8","1"]]', b'[["20","1"]]', 0, 0)
    batch.add(book, 2, 11, 11, -1, b'[["11","1"]]', b"[]", 0, 0)  # pushes 9 out: known from 10 up
    batch.add(
        book, 2, 12, 12, -1, b'[["11","0"],["10","0"]]', b"[]", 0, 0
    )  # only unknown depth left
    store.apply(batch)
    assert batch.meta[:, E_STATUS].tolist() == [R_SNAPSHOT, R_APPLIED, R_TOP_UNKNOWN]
    # the store would otherwise have shown an empty (or wrong) bid side as the truth
    assert store.state(book) == BookState.EMPTY


def test_capacity_overflow_keeps_the_best_levels_and_flags_the_book() -> None:
    store = BookStore(max_books=1, capacity=3)
    book = store.add_book(rule=SeqRule.PREVIOUS, price_decimals=2)
    batch = EventBatch()
    bids = b"[" + b",".join(b'["%d.00","1"]' % p for p in range(100, 90, -1)) + b"]"
    batch.add(book, 1, -1, 5, -1, bids, b'[["101.00","2"]]', 0, 0)
    store.apply(batch)
    levels = store.levels(book)
    assert levels.bid_px.tolist() == [10000, 9900, 9800]
    assert store.istate[book, S_FLAGS] & FLAG_TRUNCATED
    assert store.best_bid(book) == 10000 and store.best_ask(book) == 10100


def test_a_window_book_stays_known_as_the_price_walks_past_its_snapshot() -> None:
    """Bybit/Kraken keep the subscriber's top-N window (a level leaving it is deleted, the
    one entering it is sent): the book must not be rejected as "top unknown" when every
    level of the snapshot has been cancelled. A book without the flag is, as it should be."""

    def side(levels: list[tuple[int, int]]) -> bytes:
        return ("[" + ",".join(f'["{p}","{q}"]' for p, q in levels) + "]").encode()

    outcomes = {}
    for window in (True, False):
        store = BookStore(1, 5)
        book = store.add_book(rule=SeqRule.NONE, price_decimals=0, capacity=5, window=window)
        batch = EventBatch()
        batch.add(
            book,
            1,
            -1,
            1,
            -1,
            side([(100 - k, 1) for k in range(5)]),
            side([(200 + k, 1) for k in range(5)]),
            0,
            0,
            5,
        )
        store.apply(batch)
        statuses = []
        for k in range(6):  # cancel the best bid; the venue sends the level entering below
            batch.clear()
            batch.add(book, 2, -1, -1, -1, side([(100 - k, 0), (95 - k, 1)]), b"[]", 0, 0)
            store.apply(batch)
            statuses.append(int(batch.meta[0, E_STATUS]))
        outcomes[window] = statuses
        if window:  # complete down to the deepest level held (the one that entered last)
            assert int(store.istate[book, S_COMPLETE_BID]) == 90
    assert outcomes[True] == [R_APPLIED] * 6
    assert R_TOP_UNKNOWN in outcomes[False]


def _levels(prices: range, qty: str = "1") -> bytes:
    return ("[" + ",".join(f'["{p}","{qty}"]' for p in prices) + "]").encode()


def test_a_batch_outgrowing_its_storage_keeps_every_event_and_applies_as_small_ones() -> None:
    """The batch's rows and level buffer are allocated once and reused; a batch larger than
    them (a snapshot replaying thousands of buffered deltas) grows them and loses nothing,
    and the kernel applies it exactly as it applies the same events one by one."""
    events = [(1, -1, 100, _levels(range(1000, 0, -1)), _levels(range(1001, 2001)))]
    for i in range(101, 140):  # ~13 KB of levels each: past the first level buffer
        events.append((2, i, i, _levels(range(1000, 0, -1), str(i)), _levels(range(1001, 1003))))
    big, small = BookStore(1, 2000), BookStore(1, 2000)
    for store in (big, small):
        store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=0)
    batch = EventBatch(capacity=2)
    for kind, first, last, bids, asks in events:
        batch.add(0, kind, first, last, -1, bids, asks, last * 10, last * 20)
    assert batch.count == len(events) and batch.full()
    big.apply(batch)
    assert len(batch.meta) == len(events)
    for row, (kind, first, last, bids, asks) in enumerate(events):
        assert batch.raw_levels(row) == (bids, asks)
        assert batch.meta[row, :5].tolist() == [0, kind, first, last, -1]
        assert batch.meta[row, E_TS_EVENT] == last * 10 and batch.meta[row, E_TS_RECV] == last * 20
    big_statuses = batch.meta[:, E_STATUS].tolist()
    one = EventBatch(capacity=1)
    small_statuses = []
    for kind, first, last, bids, asks in events:
        one.clear()
        one.add(0, kind, first, last, -1, bids, asks, last * 10, last * 20)
        small.apply(one)
        assert len(one.meta) == 1 and one.raw_levels(0) == (bids, asks)
        small_statuses.append(int(one.meta[0, E_STATUS]))
    assert big_statuses == small_statuses == [R_SNAPSHOT] + [R_APPLIED] * (len(events) - 1)
    assert (big.istate == small.istate).all()
    assert big.levels(0).bid_qty.tolist() == small.levels(0).bid_qty.tolist() == [139.0] * 1000
    batch.clear()  # the grown storage serves the next (small) batch
    batch.add(0, 2, 140, 140, -1, b'[["1000","7"]]', b"[]", 0, 0)
    big.apply(batch)
    assert batch.meta[:, E_STATUS].tolist() == [R_APPLIED]
    assert batch.raw_levels(0) == (b'[["1000","7"]]', b"[]")


def test_a_number_beyond_int64_spoils_only_its_own_event() -> None:
    """A garbage id from a venue cannot be stored: its event is rejected as malformed (its
    book resyncs), the batch's other events apply; a float time is truncated as before."""
    store = BookStore(2, 10)
    for _ in range(2):
        store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=0)
    batch = EventBatch()
    for book in (0, 1):
        batch.add(book, 1, -1, 10, -1, b'[["10","1"]]', b'[["20","1"]]', 0, 0)
    batch.add(0, 2, 11, 11, -1, b'[["10","2"]]', b"[]", 0, 0, checksum=2**64, has_checksum=True)
    batch.add(1, 2, 11, 11, -1, b'[["10","3"]]', b"[]", 1.5e18, 7)  # type: ignore[arg-type]
    store.apply(batch)
    assert batch.meta[:, E_STATUS].tolist() == [R_SNAPSHOT, R_SNAPSHOT, R_PARSE_ERROR, R_APPLIED]
    assert batch.meta[2, E_LAST] == 11 and batch.meta[2, E_CHECKSUM] == 0
    assert batch.meta[3, E_TS_EVENT] == 1_500_000_000_000_000_000
    assert store.state(0) == BookState.EMPTY
    assert store.levels(1).bid_qty.tolist() == [3.0]


def test_a_side_longer_than_the_kernels_scratch_is_applied_once_and_whole() -> None:
    """The kernel allocates nothing: a batch with a side longer than the store's scratch
    comes back undone, the scratch grows and the batch is applied, each event once."""
    store = BookStore(max_books=1, capacity=5000)
    book = store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=0)
    bids = b"[" + b",".join(b'["%d","1.5"]' % p for p in range(10_000, 7_000, -1)) + b"]"
    assert len(bids) > SCRATCH_BYTES
    batch = EventBatch()
    batch.add(book, 1, -1, 10, -1, bids, b'[["10001","2"]]', 0, 0)
    batch.add(book, 2, 11, 11, -1, b'[["10000","0"]]', b"[]", 0, 0)
    assert store.apply(batch) == 1
    assert batch.meta[:, E_STATUS].tolist() == [R_SNAPSHOT, R_APPLIED]
    assert store.istate[book, S_MESSAGES] == 2
    levels = store.levels(book)
    assert levels.bid_px.tolist() == list(range(9_999, 7_000, -1))
    assert levels.bid_qty.tolist() == [1.5] * 2_999
    assert levels.ask_px.tolist() == [10001]
