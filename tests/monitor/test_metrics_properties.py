"""Property tests: ``monitor.metrics.kernels.compute_metrics`` against ``reference_metrics``.

Books are written straight into store-shaped arrays (keys ascending, best level last; bid
key = +price units, ask key = -price units) or built by ``BookStore`` from snapshots, and
the kernel's row is compared with the plain-Python twin. No expected value is hand-written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.book.layout import (
    KEY_MIN,
    N_ISTATE,
    S_COMPLETE_ASK,
    S_COMPLETE_BID,
    S_N_ASK,
    S_N_BID,
    S_PRICE_DEC,
)
from monitor.book.store import BookStore, EventBatch
from monitor.domain import EventKind, SeqRule, format_units
from monitor.metrics.kernels import (
    C_ASK,
    C_BID,
    C_MID,
    C_N_ASK,
    C_N_BID,
    C_SPREAD_BPS,
    band_col,
    compute_metrics,
    n_columns,
    notional_col,
)
from monitor.metrics.reference import ReferenceMetrics, reference_metrics

ALL_BANDS = (0.001, 0.005, 0.01, 0.02)
MAX_LEVELS = 40

BANDS = st.sets(st.sampled_from(ALL_BANDS), min_size=1).map(sorted)
# small notionals fill inside the first levels, huge ones run through the whole held book
NOTIONALS = st.lists(
    st.one_of(st.floats(1.0, 1e4), st.floats(1e4, 1e9), st.floats(1e15, 1e17)),
    min_size=1,
    max_size=4,
)
# mostly usable rates; NaN (no rate known), zero and negative make slippage NaN
FX = st.one_of(st.floats(0.001, 1000.0), st.just(1.0), st.sampled_from([math.nan, 0.0, -1.0]))


@dataclass
class Book:
    """One book: prices in price units, best first; completeness bounds as store keys."""

    pd: int
    bids: list[tuple[int, float]]
    asks: list[tuple[int, float]]
    complete_bid: int = KEY_MIN
    complete_ask: int = KEY_MIN


def _walk_levels(raw: bytes, start: int, step_max: int, sign: int) -> list[tuple[int, float]]:
    """Levels from bytes, four per level: the gap to the previous level, then the qty."""
    out = []
    px = start
    for i in range(0, len(raw) - 3, 4):
        if i:
            px += sign * (1 + raw[i] * step_max // 256)
        if px <= 0:
            break
        qty = (((raw[i + 1] << 16) | (raw[i + 2] << 8) | raw[i + 3]) + 1) / 1000.0
        out.append((px, qty))
    return out


def _bound(choice: int, levels: list[tuple[int, float]], sign: int) -> int:
    """A completeness bound in key form: everywhere, at a held level, or just past one."""
    if choice == 0 or not levels:
        return KEY_MIN
    px = levels[(choice >> 2) % len(levels)][0]
    return sign * px + (choice & 3) - 1


@st.composite
def random_books(draw: st.DrawFn, empty_sides: bool = True) -> Book:
    pd = draw(st.integers(0, 8))
    best_bid = draw(st.integers(1, 10**7))
    # mostly tight spreads (levels inside the narrow bands), sometimes a wide one
    spread = draw(
        st.one_of(st.integers(1, 1 + best_bid // 2000), st.integers(1, 1 + best_bid // 50))
    )
    step_max = max(1, best_bid // 400)
    n_bid, n_ask = draw(st.tuples(st.integers(1, MAX_LEVELS), st.integers(1, MAX_LEVELS)))
    if empty_sides:  # now and then a side with no level at all
        n_bid, n_ask = (
            n if draw(st.sampled_from([True] * 12 + [False])) else 0 for n in (n_bid, n_ask)
        )
    bids = _walk_levels(
        draw(st.binary(min_size=4 * n_bid, max_size=4 * n_bid)), best_bid, step_max, -1
    )
    asks = _walk_levels(
        draw(st.binary(min_size=4 * n_ask, max_size=4 * n_ask)), best_bid + spread, step_max, +1
    )
    cb, ca = draw(st.tuples(st.integers(0, 255), st.integers(0, 255)))
    return Book(pd, bids, asks, _bound(cb, bids, +1), _bound(ca, asks, -1))


@st.composite
def band_edge_books(draw: st.DrawFn, empty_sides: bool = True) -> Book:
    """Books with levels (and completeness bounds) right on the band edges mid*(1 -+ band),
    where ``>=`` against ``>`` decides: mid is a round number of units, the spread tight.
    """
    pd = draw(st.integers(0, 8))
    mid = 1000 * draw(st.integers(1, 10_000))
    half = draw(st.integers(1, max(1, mid // 2000)))
    edges = sorted({round(mid * band) for band in ALL_BANDS})
    near = draw(st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=len(edges), max_size=len(edges)))
    extra = draw(st.lists(st.integers(1, mid // 30 + 1), max_size=10))
    bid_set = (
        {mid - half}
        | {mid - e - d for e, d in zip(edges, near, strict=True)}
        | {mid - e for e in extra}
    )
    ask_set = (
        {mid + half}
        | {mid + e + d for e, d in zip(edges, near, strict=True)}
        | {mid + e for e in extra}
    )
    bid_px = sorted((p for p in bid_set if 0 < p <= mid - half), reverse=True)
    ask_px = sorted(p for p in ask_set if p >= mid + half)
    qty = draw(
        st.lists(
            st.floats(0.001, 1e4),
            min_size=len(bid_px) + len(ask_px),
            max_size=len(bid_px) + len(ask_px),
        )
    )
    bids = list(zip(bid_px, qty[: len(bid_px)], strict=True))
    asks = list(zip(ask_px, qty[len(bid_px) :], strict=True))
    if empty_sides and draw(st.sampled_from([False] * 12 + [True])):
        bids = []
    # completeness bounds at the band edges too
    cb = draw(st.sampled_from([KEY_MIN, *(mid - e + d for e in edges for d in (-1, 0, 1))]))
    ca = draw(st.sampled_from([KEY_MIN, *(-(mid + e) + d for e in edges for d in (-1, 0, 1))]))
    return Book(pd, bids, asks, cb, ca)


def books(empty_sides: bool = True) -> st.SearchStrategy[Book]:
    return st.one_of(random_books(empty_sides), band_edge_books(empty_sides))


def store_arrays(book_list: list[Book]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """istate/keys/qtys in the store's layout: keys ascending, best level last."""
    n = len(book_list)
    istate = np.zeros((n, N_ISTATE), dtype=np.int64)
    keys = np.zeros((n, 2, MAX_LEVELS), dtype=np.int64)
    qtys = np.zeros((n, 2, MAX_LEVELS), dtype=np.float64)
    for b, book in enumerate(book_list):
        istate[b, S_N_BID] = len(book.bids)
        istate[b, S_N_ASK] = len(book.asks)
        istate[b, S_PRICE_DEC] = book.pd
        istate[b, S_COMPLETE_BID] = book.complete_bid
        istate[b, S_COMPLETE_ASK] = book.complete_ask
        for j, (px, q) in enumerate(reversed(book.bids)):
            keys[b, 0, j] = px
            qtys[b, 0, j] = q
        for j, (px, q) in enumerate(reversed(book.asks)):
            keys[b, 1, j] = -px
            qtys[b, 1, j] = q
    return istate, keys, qtys


def run_kernel(
    order: list[int],
    istate: np.ndarray,
    keys: np.ndarray,
    qtys: np.ndarray,
    fx: list[float],
    bands: list[float],
    notionals: list[float],
) -> np.ndarray:
    out = np.full((len(order), n_columns(len(bands), len(notionals))), -12345.0)
    compute_metrics(
        np.array(order, dtype=np.int64),
        istate,
        keys,
        qtys,
        np.array(fx, dtype=np.float64),
        np.array(bands, dtype=np.float64),
        np.array(notionals, dtype=np.float64),
        out,
    )
    return out


def reference_for(
    pd: int,
    bids: list[tuple[int, float]],
    asks: list[tuple[int, float]],
    complete_bid: int,
    complete_ask: int,
    fx: float,
    bands: list[float],
    notionals: list[float],
) -> ReferenceMetrics | None:
    scale = 10**pd
    return reference_metrics(
        [(px / scale, q) for px, q in bids],
        [(px / scale, q) for px, q in asks],
        fx=fx,
        bands=bands,
        notionals=notionals,
        # KEY_MIN is "complete everywhere"; otherwise bid key = +price, ask key = -price
        complete_bid=-math.inf if complete_bid == KEY_MIN else complete_bid / scale,
        complete_ask=math.inf if complete_ask == KEY_MIN else -complete_ask / scale,
    )


def same(a: float, b: float, rel: float, abs_: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def assert_row_matches(
    row: np.ndarray,
    ref: ReferenceMetrics | None,
    n_bid: int,
    n_ask: int,
    bands: list[float],
    notionals: list[float],
) -> None:
    assert row[C_N_BID] == n_bid
    assert row[C_N_ASK] == n_ask
    if ref is None:
        # an empty side: NaN everywhere except the level counts
        assert n_bid == 0 or n_ask == 0
        rest = np.delete(row, [C_N_BID, C_N_ASK])
        assert np.isnan(rest).all()
        return
    assert row[C_BID] == ref.bid
    assert row[C_ASK] == ref.ask
    assert row[C_MID] == ref.mid
    assert row[C_SPREAD_BPS] == ref.spread_bps
    for k in range(len(bands)):
        c = band_col(k)
        (bid_q, ask_q), (bid_usd, ask_usd) = ref.depth_quote[k], ref.depth_usd[k]
        assert math.isclose(row[c], bid_q, rel_tol=1e-12), f"band {bands[k]} bid depth"
        assert math.isclose(row[c + 1], ask_q, rel_tol=1e-12), f"band {bands[k]} ask depth"
        assert same(row[c + 2], bid_usd, 1e-12), f"band {bands[k]} bid depth usd"
        assert same(row[c + 3], ask_usd, 1e-12), f"band {bands[k]} ask depth usd"
        assert row[c + 4] == float(ref.covered[k][0]), f"band {bands[k]} bid covered"
        assert row[c + 5] == float(ref.covered[k][1]), f"band {bands[k]} ask covered"
    for q in range(len(notionals)):
        c = notional_col(len(bands), q)
        for col, (slip, exhausted) in ((c, ref.sell[q]), (c + 2, ref.buy[q])):
            assert same(row[col], slip, 1e-9, 1e-9), f"notional {notionals[q]} slippage col {col}"
            # the kernel leaves the flag NaN where fx is unusable; the twin says False
            assert (row[col + 1] == 1.0) == exhausted, (
                f"notional {notionals[q]} exhausted col {col + 1}"
            )
            if not math.isnan(slip):
                assert row[col + 1] in (0.0, 1.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    book_list=st.lists(books(), min_size=1, max_size=5),
    bands=BANDS,
    notionals=NOTIONALS,
    data=st.data(),
)
def test_compute_metrics_equals_reference_for_several_books_in_one_call(
    book_list: list[Book], bands: list[float], notionals: list[float], data: st.DataObject
) -> None:
    istate, keys, qtys = store_arrays(book_list)
    # any subset of the store's books, in any order, each with its own fx
    order = data.draw(
        st.lists(st.integers(0, len(book_list) - 1), min_size=1, max_size=6), label="books"
    )
    fx = data.draw(st.lists(FX, min_size=len(order), max_size=len(order)), label="fx")
    out = run_kernel(order, istate, keys, qtys, fx, bands, notionals)
    for i, b in enumerate(order):
        book = book_list[b]
        ref = reference_for(
            book.pd,
            book.bids,
            book.asks,
            book.complete_bid,
            book.complete_ask,
            fx[i],
            bands,
            notionals,
        )
        assert_row_matches(out[i], ref, len(book.bids), len(book.asks), bands, notionals)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pd=st.integers(0, 8),
    capacity=st.integers(1, 30),
    bid_units=st.sets(st.integers(9_000, 9_999), min_size=1, max_size=50),
    ask_units=st.sets(st.integers(10_000, 11_000), min_size=1, max_size=50),
    cut=st.integers(0, 50),
    fx=FX,
    notionals=NOTIONALS,
)
def test_compute_metrics_on_store_books_equals_reference_with_the_store_completeness_bounds(
    pd: int,
    capacity: int,
    bid_units: set[int],
    ask_units: set[int],
    cut: int,
    fx: float,
    notionals: list[float],
) -> None:
    """Snapshots cut by capacity or by their requested depth: covered flags follow the
    bounds the store itself recorded."""
    store = BookStore(max_books=1, capacity=30)
    book = store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=pd, capacity=capacity)

    def side(units: set[int]) -> bytes:
        return json.dumps(
            [[format_units(u, pd), f"{(u % 97) + 0.5}"] for u in sorted(units)]
        ).encode()

    limit = cut if 0 < cut <= min(len(bid_units), len(ask_units)) else 0
    batch = EventBatch(capacity=1)
    batch.add(
        book, int(EventKind.SNAPSHOT), -1, 1, -1, side(bid_units), side(ask_units), 0, 0, limit
    )
    store.apply(batch)
    bands = list(ALL_BANDS)
    out = run_kernel([book], store.istate, store.keys, store.qtys, [fx], bands, notionals)
    lv = store.levels(book)
    bids = list(zip(lv.bid_px.tolist(), lv.bid_qty.tolist(), strict=True))
    asks = list(zip(lv.ask_px.tolist(), lv.ask_qty.tolist(), strict=True))
    st_ = store.istate[book]
    ref = reference_for(
        pd, bids, asks, int(st_[S_COMPLETE_BID]), int(st_[S_COMPLETE_ASK]), fx, bands, notionals
    )
    assert_row_matches(out[0], ref, len(bids), len(asks), bands, notionals)


# --- invariants ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books(empty_sides=False), fx=st.floats(0.001, 1000.0))
def test_depth_within_a_wider_band_is_at_least_the_depth_within_a_narrower_band(
    book: Book, fx: float
) -> None:
    istate, keys, qtys = store_arrays([book])
    bands = list(ALL_BANDS)
    row = run_kernel([0], istate, keys, qtys, [fx], bands, [1.0])[0]
    for k in range(1, len(bands)):
        for off in range(4):  # quote bid, quote ask, usd bid, usd ask
            assert row[band_col(k) + off] >= row[band_col(k - 1) + off]
    # a band is covered only if every narrower band is
    for k in range(1, len(bands)):
        assert row[band_col(k) + 4] <= row[band_col(k - 1) + 4]
        assert row[band_col(k) + 5] <= row[band_col(k - 1) + 5]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books(empty_sides=False), fx=st.floats(0.001, 1000.0), notionals=NOTIONALS)
def test_slippage_of_a_larger_notional_is_at_least_that_of_a_smaller_one_on_the_same_side(
    book: Book, fx: float, notionals: list[float]
) -> None:
    notionals = sorted(notionals)
    istate, keys, qtys = store_arrays([book])
    row = run_kernel([0], istate, keys, qtys, [fx], [0.01], notionals)[0]
    for side in (0, 2):  # sell (walks bids), buy (walks asks)
        slips = [row[notional_col(1, q) + side] for q in range(len(notionals))]
        flags = [row[notional_col(1, q) + side + 1] for q in range(len(notionals))]
        for q in range(1, len(notionals)):
            # a VWAP taken inside one level can differ from its price by rounding alone
            assert slips[q] >= slips[q - 1] - 1e-6, (side, notionals, slips)
            assert flags[q] >= flags[q - 1]
        assert all(s >= -1e-6 for s in slips)  # never better than mid


@settings(max_examples=100, deadline=None)
@given(
    book=books(),
    fx=FX,
    bands=BANDS,
    notionals=NOTIONALS,
    empty=st.sampled_from(["bid", "ask", "both"]),
)
def test_a_book_with_an_empty_side_gives_nan_bid_and_ask(
    book: Book, fx: float, bands: list[float], notionals: list[float], empty: str
) -> None:
    if empty in ("bid", "both"):
        book.bids = []
    if empty in ("ask", "both"):
        book.asks = []
    istate, keys, qtys = store_arrays([book])
    row = run_kernel([0], istate, keys, qtys, [fx], bands, notionals)[0]
    assert math.isnan(row[C_BID]) and math.isnan(row[C_ASK])
    assert (
        reference_for(book.pd, book.bids, book.asks, KEY_MIN, KEY_MIN, fx, bands, notionals) is None
    )
    assert_row_matches(row, None, len(book.bids), len(book.asks), bands, notionals)
