"""The book kernel's checksums (monitor.book.kernels.book_checksum) against the venues'
reference implementations (feeds.okx.checksum, feeds.kraken.checksum), on random books.

The kernel rebuilds every number from price units and stored base-unit sizes (converted
back through the contract size, and the price for inverse contracts), so these tests are
what shows that the conversion round-trips exactly to the strings the venue hashes.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds import kraken, okx
from feeds.contract import Checksum
from monitor.book import kernels
from monitor.book.layout import S_QTY_PREC, S_QTY_WIRE_DEC
from monitor.book.store import BookStore, EventBatch
from monitor.domain import SeqRule, format_units


def levels(
    draw: st.DrawFn, n: int, qty_decimals: int, mid: int, sign: int
) -> list[tuple[int, int]]:
    offsets = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n, unique=True))
    sizes = draw(st.lists(st.integers(1, 10**9), min_size=n, max_size=n))
    return sorted(
        ((mid + sign * o, q) for o, q in zip(offsets, sizes, strict=True)), reverse=sign < 0
    )


@st.composite
def books(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]:
    pd = draw(st.integers(0, 6))
    qd = draw(st.integers(0, 8))
    mid = draw(st.integers(500, 10**7))
    bids = levels(draw, draw(st.integers(0, 40)), qd, mid, -1)
    asks = levels(draw, draw(st.integers(0, 40)), qd, mid, +1)
    return pd, qd, bids, asks


def load(
    pd: int,
    qd: int,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    *,
    checksum: Checksum,
    contract_size: float = 1.0,
    inverse: bool = False,
) -> tuple[BookStore, int]:
    """A store holding exactly this book (loaded as a snapshot, sizes as written)."""
    store = BookStore(1, 128)
    book = store.add_book(
        rule=SeqRule.NONE,
        price_decimals=pd,
        contract_size=contract_size,
        inverse=inverse,
        checksum=int(checksum),
        qty_precision=qd if checksum == Checksum.KRAKEN else 0,
    )

    def side(rows: list[tuple[int, int]]) -> bytes:
        return (
            "["
            + ",".join(f'["{format_units(p, pd)}","{format_units(q, qd)}"]' for p, q in rows)
            + "]"
        ).encode()

    batch = EventBatch()
    batch.add(book, 1, -1, 1, -1, side(bids), side(asks), 0, 0)
    store.apply(batch)
    store.istate[book, S_QTY_WIRE_DEC] = max(int(store.istate[book, S_QTY_WIRE_DEC]), qd)
    return store, book


def kernel_checksum(store: BookStore, book: int, mode: Checksum) -> int:
    text = np.empty(4096, dtype=np.uint8)
    return int(
        kernels.book_checksum(
            int(mode),
            store.istate[book],
            store.fstate[book],
            store.keys[book],
            store.qtys[book],
            text,
        )
    )


@settings(max_examples=150, deadline=None)
@given(books(), st.sampled_from([(1.0, False), (0.01, False), (100.0, True), (10.0, True)]))
def test_okx_checksum_of_the_kernel_equals_the_reference(
    book: tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]],
    contract: tuple[float, bool],
) -> None:
    pd, qd, bids, asks = book
    contract_size, inverse = contract
    store, b = load(
        pd, qd, bids, asks, checksum=Checksum.OKX, contract_size=contract_size, inverse=inverse
    )
    want = okx.checksum(
        [(okx.okx_number(p, pd), okx.okx_number(q, qd)) for p, q in bids],
        [(okx.okx_number(p, pd), okx.okx_number(q, qd)) for p, q in asks],
    )
    assert kernel_checksum(store, b, Checksum.OKX) & 0xFFFFFFFF == want & 0xFFFFFFFF


@settings(max_examples=150, deadline=None)
@given(books())
def test_kraken_checksum_of_the_kernel_equals_the_reference(
    book: tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    pd, qd, bids, asks = book
    store, b = load(pd, qd, bids, asks, checksum=Checksum.KRAKEN)
    assert int(store.istate[b, S_QTY_PREC]) == qd
    want = kraken.checksum(
        [(Decimal(format_units(p, pd)), Decimal(format_units(q, qd))) for p, q in bids],
        [(Decimal(format_units(p, pd)), Decimal(format_units(q, qd))) for p, q in asks],
        pd,
        qd,
    )
    assert kernel_checksum(store, b, Checksum.KRAKEN) == want


def test_okx_documented_example_through_the_kernel() -> None:
    # OKX docs: "3366.1:7:3366.8:9:3366:6:3368:8" -> signed -1881014294
    store, b = load(1, 0, [(33661, 7), (33660, 6)], [(33668, 9), (33680, 8)], checksum=Checksum.OKX)
    got = kernel_checksum(store, b, Checksum.OKX)
    assert got - 2**32 == -1881014294


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_the_kernels_crc32_is_zlibs_at_every_length(data: bytes) -> None:
    # eight bytes a step, then byte by byte: every remainder, and its plain-Python twin
    buf = np.frombuffer(data + b"\x00" * 8, dtype=np.uint8)
    assert kernels._crc32(buf, len(data)) == zlib.crc32(data)
    assert getattr(kernels._crc32, "py_func", kernels._crc32)(buf, len(data)) == zlib.crc32(data)


@settings(max_examples=300, deadline=None)
@given(units=st.integers(0, 10**18), dec=st.integers(0, 18), zeros=st.integers(0, 12))
def test_the_kernel_writes_numbers_as_okx_does(units: int, dec: int, zeros: int) -> None:
    # the shortest decimal (feeds.okx.okx_number is the reference), trailing zeros included
    units = min(units * 10**zeros, 10**18)
    buf = np.zeros(48, dtype=np.uint8)
    for put in (
        kernels._put_decimal,
        getattr(kernels._put_decimal, "py_func", kernels._put_decimal),
    ):
        n = put(buf, 2, units, dec)
        assert bytes(buf[2:n]).decode() == okx.okx_number(units, dec)
