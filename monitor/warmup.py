"""Compile the numba kernels before the first real message (``liqmon run``, tests).

numba compiles a kernel on its first call (cached on disk afterwards, ``cache=True``). On a
cold cache that takes tens of seconds; inside the daemon's event loop it would stall every
connection past its receive timeout. :func:`warm_up` makes the first calls on a scratch
store, outside the loop's time-critical path, and says so once when the cache is cold
(the first run after installing: the user would otherwise see ~20 s of silence).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from feeds.contract import VenueAdapter
from feeds.record_scan import scan_records
from feeds.scan import new_table
from monitor.analytics import kernels as analytics_kernels
from monitor.book import kernels
from monitor.book.intake import intake, merge_marks
from monitor.book.layout import N_EVENT
from monitor.book.store import BookStore, EventBatch
from monitor.domain import SeqRule
from monitor.log import get_logger
from monitor.metrics import kernels as mk

log = get_logger("monitor.warmup")


# Entry kernels of the book and metric paths (what they call is compiled into them).
_ENTRY_KERNELS: tuple[Any, ...] = (
    kernels.apply_batch,
    kernels.book_checksum,
    mk.compute_metrics,
    mk.tick_rows,
    scan_records,
    *analytics_kernels.ENTRY_KERNELS,
)


def cache_is_cold() -> bool:
    """True when an entry kernel has nothing usable in numba's on-disk cache (first run
    after installing, after an upgrade, or with a fresh ``NUMBA_CACHE_DIR``)."""
    for dispatcher in _ENTRY_KERNELS:
        try:
            # numba's own index: empty when missing, unreadable or stale for this source
            index = dispatcher._cache._cache_file._load_index()
        except Exception:  # a numba internal moved: say nothing rather than fail
            return False
        if not index:
            return True
    return False


def warm_up(adapters: Iterable[VenueAdapter] = (), *, replay: bool = False) -> float:
    """Run every kernel once on scratch data, and the batch scanner of each adapter that
    has one (the frames' content does not matter to the compiler); returns the seconds it
    took. Logs ``kernels.compiling`` first when the cache is cold. ``replay``: also the
    scanners' GIL-free entries, which only a replay's reader thread calls."""
    if cache_is_cold():
        log.warning("kernels.compiling", note="compiling kernels (first run only, ~20 s)")
    started = time.perf_counter()
    store = BookStore(1, 8)
    book = store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=1, checksum=1)
    batch = EventBatch()
    batch.add(book, 1, -1, 1, -1, b'[["1.0","1"]]', b'[["2.0","1"]]', 0, 0, 0, 0, True)
    batch.add(book, 2, 2, 2, 1, b'[["1.0","2"]]', b"[]", 0, 0)
    store.apply(batch)
    out = np.empty((1, mk.n_columns(1, 1)), dtype=np.float64)
    mk.compute_metrics(
        np.zeros(1, dtype=np.int64),
        store.istate,
        store.keys,
        store.qtys,
        np.ones(1),
        np.array([0.01]),
        np.array([1000.0]),
        out,
    )
    nc = mk.n_columns(1, 1)
    mk.tick_rows(
        1,
        store.istate,
        store.keys,
        store.qtys,
        np.ones(1),
        np.array([0.01]),
        np.array([1000.0]),
        np.ones(1, dtype=np.int64),
        np.ones(1, dtype=np.bool_),
        np.full(1, np.nan),
        np.full((1, nc), np.nan),
        np.zeros(1, dtype=np.bool_),
        np.zeros(1, dtype=np.bool_),
        np.empty((1, nc)),
        np.empty((mk.N_T, 1), dtype=np.bool_),
        np.empty(1, dtype=np.int8),
        np.empty((1, 2), dtype=np.int64),
        np.empty(1, dtype=np.int64),
        np.empty(1),
        np.empty((1, 1, 2), dtype=np.bool_),
        np.empty((1, 1, 2), dtype=np.bool_),
    )
    for adapter in adapters:
        if adapter.scanner is not None:
            adapter.scanner.scan_frames([b"{}", b"{}"])
            if replay:  # a replay's reader thread scans with the GIL released
                buf = np.frombuffer(b"{}{}", dtype=np.uint8)
                starts, ends = np.array([0, 2], dtype=np.int64), np.array([2, 4], dtype=np.int64)
                adapter.scanner.scan_buffer(buf, starts, ends, release_gil=True)
    intake(
        new_table(1),
        np.zeros(1, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.empty((1, N_EVENT), dtype=np.int64),
        np.empty((1, 2), dtype=np.int64),
    )
    merge_marks(
        np.zeros(1, dtype=np.int64),
        np.full((1, 3), np.nan),
        np.zeros((1, 3), dtype=np.int64),
        0,
        1,
        np.full((3, 1), np.nan),
        np.zeros((3, 1), dtype=np.int64),
        np.zeros(1, dtype=np.bool_),
    )
    kernels.book_checksum(
        2,
        store.istate[book],
        store.fstate[book],
        store.keys[book],
        store.qtys[book],
        np.empty(4096, dtype=np.uint8),
    )
    line = np.frombuffer(b'{"ts":1.5,"venue":"v","kind":"ws","url":"u","data":"\\"x"}\n', np.uint8)
    scan_records(
        line,
        0,
        len(line),
        np.frombuffer(b"v", dtype=np.uint8),
        np.array([0, 1], dtype=np.int64),
        np.empty(len(line), dtype=np.uint8),
        np.empty(1, dtype=np.int8),
        np.empty(1),
        np.empty(1, dtype=np.int64),
        np.empty((1, 7), dtype=np.int64),
    )
    analytics_kernels.warm_up()
    elapsed = time.perf_counter() - started
    log.info("kernels.ready", seconds=round(elapsed, 3))
    return elapsed
