"""Synthetic tick samples for the store tests and the benchmark: deterministic numbers in
every column (valid and invalid rows, NaN inside valid arrays, perps with mark prices)."""

from __future__ import annotations

import numpy as np

from monitor.sample import BookIdentity, TickSample

BANDS = (0.1, 0.5, 1.0, 2.0)
NOTIONALS = (10_000.0, 100_000.0, 1_000_000.0)


def identities(n_books: int) -> tuple[BookIdentity, ...]:
    books = []
    for i in range(n_books):
        perp = i % 3 == 2
        base = f"A{i // 4}"
        books.append(
            BookIdentity(
                venue=("binance", "okx", "bybit", "kraken")[i % 4],
                symbol=f"{base}USDT{'-SWAP' if perp else ''}{i}",
                instrument=f"{base}-USDT-{'PERP' if perp else 'SPOT'}",
                base=base,
                quote="USDT",
                kind="perp" if perp else "spot",
            )
        )
    return tuple(books)


def synthetic_sample(tick: int, n_books: int, *, tick_ms: int = 1000) -> TickSample:
    """Tick number ``tick`` of ``n_books`` books; every book changed, one in 7 invalid."""
    rng = np.random.default_rng(tick)
    n, b, k = n_books, len(BANDS), len(NOTIONALS)
    valid = (np.arange(n) + tick) % 7 != 0
    mid = 100.0 + np.arange(n) + rng.normal(0, 0.1, n)
    spread = np.abs(rng.normal(2.0, 0.5, n))
    nan_where_invalid = np.where(valid, 1.0, np.nan)
    depth = np.abs(rng.normal(1e5, 2e4, (n, b, 2))).cumsum(axis=1)
    depth[0, 0, 0] = np.nan  # a band the book does not reach is NaN inside a valid row
    perp = np.array([i % 3 == 2 for i in range(n)])
    return TickSample(
        ts_ns=1_700_000_000_000_000_000 + tick * tick_ms * 1_000_000,
        books=identities(n),
        bands_pct=BANDS,
        notionals_usd=NOTIONALS,
        book_id=np.arange(n, dtype=np.int64),
        valid=valid,
        stale=(~valid) & (np.arange(n) % 2 == 0),
        changed=np.ones(n, dtype=bool),
        book_state=np.where(valid, 2, 1).astype(np.int8),
        bid=(mid - spread / 2) * nan_where_invalid,
        ask=(mid + spread / 2) * nan_where_invalid,
        mid=mid * nan_where_invalid,
        spread_bps=spread / mid * 1e4 * nan_where_invalid,
        depth_usd=depth,
        depth_quote=depth * 1.0001,
        depth_covered=depth > 1.5e5,
        slippage_bps=np.abs(rng.normal(5, 2, (n, k, 2))).cumsum(axis=1),
        slippage_exhausted=rng.random((n, k, 2)) > 0.9,
        levels=rng.integers(1, 1000, (n, 2)),
        truncated=rng.random(n) > 0.95,
        fx_usd=np.ones(n),
        fx_assumed=np.ones(n, dtype=bool),
        book_age_s=rng.random(n),
        updates=np.full(n, tick * 10, dtype=np.int64),
        mark_price=np.where(perp, mid + 0.01, np.nan),
        index_price=np.where(perp, mid - 0.01, np.nan),
        funding_rate=np.where(perp, 1e-4, np.nan),
    )
