"""Book store behaviours worth a named example beside the property tests."""

from __future__ import annotations

from monitor.book.layout import (
    E_STATUS,
    FLAG_TRUNCATED,
    R_APPLIED,
    R_SNAPSHOT,
    R_TOP_UNKNOWN,
    S_COMPLETE_BID,
    S_FLAGS,
)
from monitor.book.store import BookStore, EventBatch
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
