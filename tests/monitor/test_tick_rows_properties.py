"""Property test: the tick's one kernel call (``monitor.metrics.kernels.tick_rows``)
against its whole-array numpy twin (``monitor.metrics.reference.tick_rows``), tick after
tick from the same state. No expected value is written by hand: the twin is the oracle.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor.book.layout import (
    FLAG_TRUNCATED,
    KEY_MIN,
    N_ISTATE,
    S_COMPLETE_ASK,
    S_COMPLETE_BID,
    S_FLAGS,
    S_MESSAGES,
    S_N_ASK,
    S_N_BID,
    S_PRICE_DEC,
    S_STATE,
    S_TS_RECV,
)
from monitor.metrics import kernels as mk
from monitor.metrics import reference as ref

CAPACITY = 8
MAX_BOOKS = 10
BANDS = np.array([0.001, 0.01, 0.02])
NOTIONALS = np.array([1e3, 1e5])


def _store(data: st.DataObject, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Books with sorted levels (bids ascending to the best, asks as negated keys)."""
    istate = np.zeros((MAX_BOOKS, N_ISTATE), dtype=np.int64)
    keys = np.zeros((MAX_BOOKS, 2, CAPACITY), dtype=np.int64)
    qtys = np.zeros((MAX_BOOKS, 2, CAPACITY))
    for b in range(n):
        nb, na = data.draw(st.integers(0, CAPACITY)), data.draw(st.integers(0, CAPACITY))
        istate[b, S_N_BID], istate[b, S_N_ASK] = nb, na
        istate[b, S_STATE] = data.draw(st.integers(0, 2))
        istate[b, S_PRICE_DEC] = 2
        istate[b, S_FLAGS] = data.draw(st.sampled_from([0, FLAG_TRUNCATED]))
        istate[b, S_MESSAGES] = data.draw(st.integers(0, 10**6))
        istate[b, S_COMPLETE_BID] = KEY_MIN
        istate[b, S_COMPLETE_ASK] = KEY_MIN
        istate[b, S_TS_RECV] = data.draw(st.sampled_from([0, 10**9, 5 * 10**9, 9 * 10**9]))
        bid = sorted(data.draw(st.sets(st.integers(9_000, 9_999), min_size=nb, max_size=nb)))
        ask = sorted(data.draw(st.sets(st.integers(10_001, 11_000), min_size=na, max_size=na)))
        keys[b, 0, :nb] = bid
        keys[b, 1, :na] = [-p for p in reversed(ask)]
        qtys[b, :, :] = data.draw(
            hnp.arrays(np.float64, (2, CAPACITY), elements=st.floats(0.1, 50))
        )
    return istate, keys, qtys


def _outputs(n: int) -> list[np.ndarray]:
    nc = mk.n_columns(len(BANDS), len(NOTIONALS))
    return [
        np.empty((n, nc)),
        np.empty((mk.N_T, n), dtype=np.bool_),
        np.empty(n, dtype=np.int8),
        np.empty((n, 2), dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n),
        np.empty((n, len(BANDS), 2), dtype=np.bool_),
        np.empty((n, len(NOTIONALS), 2), dtype=np.bool_),
    ]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(0, MAX_BOOKS), ticks=st.integers(1, 5))
def test_tick_rows_matches_twin_over_ticks(data: st.DataObject, n: int, ticks: int) -> None:
    istate, keys, qtys = _store(data, n)
    nc = mk.n_columns(len(BANDS), len(NOTIONALS))
    # per-book state kept between ticks: dirty, fx used, last metrics, last validity
    state = [
        np.zeros(MAX_BOOKS, dtype=np.bool_),
        np.full(MAX_BOOKS, np.nan),
        np.full((MAX_BOOKS, nc), np.nan),
        np.zeros(MAX_BOOKS, dtype=np.bool_),
        np.zeros(MAX_BOOKS, dtype=np.bool_),
    ]
    twin_state = [a.copy() for a in state]
    stale_after = np.array(
        data.draw(st.lists(st.sampled_from([2 * 10**9, 30 * 10**9]), min_size=n, max_size=n)),
        dtype=np.int64,
    )
    now = 10 * 10**9
    for _ in range(ticks):
        now += data.draw(st.sampled_from([10**9, 20 * 10**9]))
        fx = data.draw(
            hnp.arrays(np.float64, n, elements=st.sampled_from([1.0, 0.5, math.nan, 2.0]))
        )
        dirty = data.draw(hnp.arrays(np.bool_, n))
        state[0][:n] |= dirty
        twin_state[0][:n] |= dirty
        books = (istate, keys, qtys, fx, BANDS, NOTIONALS, stale_after)
        out, twin_out = _outputs(n), _outputs(n)
        newly = mk.tick_rows(now, *books, *state, *out)
        twin_newly = ref.tick_rows(now, *books, *twin_state, *twin_out)
        assert newly == twin_newly
        for a, b in zip([*state, *out], [*twin_state, *twin_out], strict=True):
            np.testing.assert_array_equal(a, b)
