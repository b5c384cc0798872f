"""The intake kernel turns a scan table into store events exactly as its Python twin does;
the mark merge kernel merges scanned mark prices exactly as its twin does."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.scan import N_SCAN, SCAN_BOOK, SCAN_OTHER, SCAN_TAKEN, T_STATUS, T_SYMBOL_KEY
from monitor.book.intake import intake, intake_py, merge_marks, merge_marks_py
from monitor.book.layout import E_BOOK, E_TS_RECV, N_EVENT

KEYS = [-7, 3, 11, 2**40]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([SCAN_OTHER, SCAN_BOOK]),
            st.sampled_from([*KEYS, 5, -(2**62)]),
            st.lists(st.integers(-(2**40), 2**40), min_size=N_SCAN - 2, max_size=N_SCAN - 2),
        ),
        max_size=40,
    ),
    known=st.sets(st.sampled_from(KEYS)),
)
def test_intake_equals_its_twin(rows: list[tuple[int, int, list[int]]], known: set[int]) -> None:
    table = np.zeros((len(rows), N_SCAN), dtype=np.int64)
    for k, (status, key, rest) in enumerate(rows):
        table[k, T_STATUS] = status
        table[k, T_SYMBOL_KEY] = key
        table[k, 2:] = rest
    keys = np.array(sorted(known), dtype=np.int64)
    books = np.arange(len(keys), dtype=np.int64) * 3 + 1
    recv = np.arange(len(rows), dtype=np.int64) + 1000
    outs = []
    for fn in (intake, intake_py):
        t = table.copy()
        meta = np.full((len(rows), N_EVENT), -5, dtype=np.int64)
        starts = np.full((len(rows), 2), -5, dtype=np.int64)
        m = fn(t, keys, books, recv, meta, starts)
        outs.append((m, t, meta[:m], starts[:m]))
    (m, t, meta, starts), (m2, t2, meta2, starts2) = outs
    assert m == m2
    assert (t == t2).all() and (meta == meta2).all() and (starts == starts2).all()
    # what was taken: exactly the book rows of known keys, in frame order
    taken = [k for k, (status, key, _) in enumerate(rows) if status == SCAN_BOOK and key in known]
    assert np.flatnonzero(t[:, T_STATUS] == SCAN_TAKEN).tolist() == taken
    assert meta[:, E_TS_RECV].tolist() == [1000 + k for k in taken]
    index = {int(key): int(book) for key, book in zip(keys, books, strict=True)}
    assert meta[:, E_BOOK].tolist() == [index[rows[k][1]] for k in taken]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.lists(st.one_of(st.just(math.nan), st.floats(-1e6, 1e6)), min_size=3, max_size=3),
            st.sampled_from([0, 5, 7]),
            st.integers(0, 2**40),
        ),
        max_size=30,
    ),
    cut=st.integers(0, 30),
)
def test_merge_marks_equals_its_twin(
    rows: list[tuple[int, list[float], int, int]], cut: int
) -> None:
    """Marks merged in two calls (a run cut anywhere) leave what the twin leaves, and each
    book's columns hold, per field, the last value a row had for it."""
    books = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), 3)
    times = np.array([(r[2], r[3], r[3] + 1) for r in rows], dtype=np.int64).reshape(-1, 3)
    cut = min(cut, len(rows))
    outs = []
    for fn in (merge_marks, merge_marks_py):
        columns = np.full((3, 4), np.nan)
        column_times = np.zeros((3, 4), dtype=np.int64)
        has = np.zeros(4, dtype=np.bool_)
        fn(books, values, times, 0, cut, columns, column_times, has)
        fn(books, values, times, cut, len(rows), columns, column_times, has)
        outs.append((columns, column_times, has))
    (c1, t1, h1), (c2, t2, h2) = outs
    assert np.array_equal(c1, c2, equal_nan=True)
    assert (t1 == t2).all() and (h1 == h2).all()
    for book in range(4):
        mine = [r for r in rows if r[0] == book]
        assert h1[book] == bool(mine)
        for f in range(3):
            present = [r[1][f] for r in mine if not math.isnan(r[1][f])]
            assert (c1[f, book] == present[-1]) if present else math.isnan(c1[f, book])
        assert t1[0, book] == next((r[2] for r in reversed(mine) if r[2]), 0)
