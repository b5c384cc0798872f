"""A venue scanner's table to store events, in one numba call (``intake``), with its twin.

The scan table (layout in ``feeds.scan``) has one row per frame. Each book row whose
symbol key is one of the venue's books becomes one event row of the store (layout
``monitor.book.layout``), in frame order, and is marked ``SCAN_TAKEN``; every other row
is left for the adapter's ``decode`` (acks, other channels, new symbols, malformed frames).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import (
    SCAN_BOOK,
    SCAN_TAKEN,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_CHECKSUM,
    T_FIRST,
    T_HAS_CHECKSUM,
    T_KIND,
    T_LAST,
    T_LIMIT,
    T_PREV,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
)
from monitor.book.layout import (
    E_ASK_LEN,
    E_BID_LEN,
    E_BOOK,
    E_CHECKSUM,
    E_FIRST,
    E_HAS_CHECKSUM,
    E_KIND,
    E_LAST,
    E_LIMIT,
    E_PREV,
    E_TS_EVENT,
    E_TS_RECV,
    N_EVENT,
)


@njit(cache=True, nogil=True)
def intake(
    table: np.ndarray,
    keys: np.ndarray,
    key_books: np.ndarray,
    recv_ns: np.ndarray,
    meta: np.ndarray,
    starts: np.ndarray,
) -> int:
    """Write the events of ``table``'s book rows whose key is in ``keys`` (sorted, unique;
    ``key_books`` their book ids) into ``meta``/``starts`` (at least as many rows as the
    table). Returns the number of events written."""
    n_keys = keys.shape[0]
    m = 0
    for k in range(table.shape[0]):
        row = table[k]
        if row[T_STATUS] != SCAN_BOOK or n_keys == 0:
            continue
        key = row[T_SYMBOL_KEY]
        lo = 0
        hi = n_keys
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo == n_keys or keys[lo] != key:
            continue
        ev = meta[m]
        for c in range(N_EVENT):
            ev[c] = 0
        ev[E_BOOK] = key_books[lo]
        ev[E_KIND] = row[T_KIND]
        ev[E_FIRST] = row[T_FIRST]
        ev[E_LAST] = row[T_LAST]
        ev[E_PREV] = row[T_PREV]
        ev[E_BID_LEN] = row[T_BID_END] - row[T_BID_START]
        ev[E_ASK_LEN] = row[T_ASK_END] - row[T_ASK_START]
        ev[E_TS_EVENT] = row[T_TS_NS]
        ev[E_TS_RECV] = recv_ns[k]
        ev[E_LIMIT] = row[T_LIMIT]
        ev[E_CHECKSUM] = row[T_CHECKSUM]
        ev[E_HAS_CHECKSUM] = row[T_HAS_CHECKSUM]
        starts[m, 0] = row[T_BID_START]
        starts[m, 1] = row[T_ASK_START]
        row[T_STATUS] = SCAN_TAKEN
        m += 1
    return m


def intake_py(
    table: np.ndarray,
    keys: np.ndarray,
    key_books: np.ndarray,
    recv_ns: np.ndarray,
    meta: np.ndarray,
    starts: np.ndarray,
) -> int:
    """Plain-Python twin of :func:`intake` (the property tests compare the two)."""
    books = dict(zip(keys.tolist(), key_books.tolist(), strict=True))
    m = 0
    for k in range(table.shape[0]):
        row = table[k]
        if row[T_STATUS] != SCAN_BOOK or int(row[T_SYMBOL_KEY]) not in books:
            continue
        meta[m] = 0
        meta[m, E_BOOK] = books[int(row[T_SYMBOL_KEY])]
        meta[m, E_KIND] = row[T_KIND]
        meta[m, E_FIRST] = row[T_FIRST]
        meta[m, E_LAST] = row[T_LAST]
        meta[m, E_PREV] = row[T_PREV]
        meta[m, E_BID_LEN] = row[T_BID_END] - row[T_BID_START]
        meta[m, E_ASK_LEN] = row[T_ASK_END] - row[T_ASK_START]
        meta[m, E_TS_EVENT] = row[T_TS_NS]
        meta[m, E_TS_RECV] = recv_ns[k]
        meta[m, E_LIMIT] = row[T_LIMIT]
        meta[m, E_CHECKSUM] = row[T_CHECKSUM]
        meta[m, E_HAS_CHECKSUM] = row[T_HAS_CHECKSUM]
        starts[m] = (row[T_BID_START], row[T_ASK_START])
        row[T_STATUS] = SCAN_TAKEN
        m += 1
    return m


# --- mark prices a scanner read in full (SCAN_MARK rows) -----------------------------------
# A mark row's fields, as merge_marks reads them: values[row] = (mark, index, funding; NaN:
# not in the message), times[row] = (next funding ns, 0: none; event ns; receive ns).
@njit(cache=True, nogil=True)
def merge_marks(
    books: np.ndarray,
    values: np.ndarray,
    times: np.ndarray,
    a: int,
    b: int,
    columns: np.ndarray,
    column_times: np.ndarray,
    has_mark: np.ndarray,
) -> None:
    """Merge mark rows ``a`` to ``b`` into the books' mark columns, in order, as the
    pipeline merges a decoded mark: a field the message lacks (NaN, next funding 0) keeps
    the book's last value; the times are the message's."""
    for r in range(a, b):
        book = books[r]
        for f in range(3):
            x = values[r, f]
            if x == x:
                columns[f, book] = x
        if times[r, 0] != 0:
            column_times[0, book] = times[r, 0]
        column_times[1, book] = times[r, 1]
        column_times[2, book] = times[r, 2]
        has_mark[book] = True


def merge_marks_py(
    books: np.ndarray,
    values: np.ndarray,
    times: np.ndarray,
    a: int,
    b: int,
    columns: np.ndarray,
    column_times: np.ndarray,
    has_mark: np.ndarray,
) -> None:
    """Plain-Python twin of :func:`merge_marks`."""
    for r in range(a, b):
        book = int(books[r])
        for f in range(3):
            if not np.isnan(values[r, f]):
                columns[f, book] = values[r, f]
        if times[r, 0]:
            column_times[0, book] = times[r, 0]
        column_times[1:, book] = times[r, 1:]
        has_mark[book] = True
