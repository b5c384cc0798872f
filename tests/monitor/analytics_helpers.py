"""Hand-made tick samples for the analytics tests: a few books with chosen figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from monitor.sample import STATE_STALE, BookIdentity, TickSample

BANDS = (0.1, 0.5, 1.0, 2.0)
NOTIONALS = (10_000.0, 100_000.0, 1_000_000.0)
# cumulative one-side USD depth per band, as a fraction of the 1% figure
SHAPE = (0.28, 0.68, 1.0, 1.46)


@dataclass
class Book:
    venue: str
    symbol: str
    base: str
    quote: str
    mid: float
    kind: str = "spot"
    spread_bps: float = 1.0
    depth_1pct_usd: float = 1_000_000.0  # per side
    ask_depth_factor: float = 1.0
    fx: float = 1.0
    fx_assumed: bool = False
    valid: bool = True
    stale: bool = False
    age_s: float = 0.5
    slippage_bps: tuple[float, float, float] = (0.5, 2.0, 20.0)
    exhausted: tuple[bool, bool, bool] = (False, False, False)
    mark: float = math.nan
    index: float = math.nan
    funding: float = math.nan
    extra: dict[str, float] = field(default_factory=dict)


def make_sample(ts_s: float, books: list[Book]) -> TickSample:
    n = len(books)
    nk, nn = len(BANDS), len(NOTIONALS)
    depth = np.zeros((n, nk, 2))
    slip = np.zeros((n, nn, 2))
    exhausted = np.zeros((n, nn, 2), dtype=np.bool_)
    for i, b in enumerate(books):
        for k, f in enumerate(SHAPE):
            depth[i, k, 0] = b.depth_1pct_usd * f
            depth[i, k, 1] = b.depth_1pct_usd * f * b.ask_depth_factor
        slip[i, :, 0] = b.slippage_bps
        slip[i, :, 1] = b.slippage_bps
        exhausted[i, :, 0] = b.exhausted
    valid = np.array([b.valid and not b.stale for b in books], dtype=np.bool_)
    fx = np.array([b.fx for b in books], dtype=np.float64)
    mid = np.array([b.mid for b in books], dtype=np.float64)
    spread = np.array([b.spread_bps for b in books], dtype=np.float64)
    mid = np.where(valid, mid, np.nan)
    spread = np.where(valid, spread, np.nan)
    depth[~valid] = np.nan
    slip[~valid] = np.nan
    quote_depth = depth / fx[:, None, None]
    return TickSample(
        ts_ns=round(ts_s * 1e9),
        books=tuple(
            BookIdentity(
                venue=b.venue,
                symbol=b.symbol,
                instrument=f"{b.base}-{b.quote}-{b.kind.upper()}",
                base=b.base,
                quote=b.quote,
                kind=b.kind,
            )
            for b in books
        ),
        bands_pct=BANDS,
        notionals_usd=NOTIONALS,
        book_id=np.arange(n, dtype=np.int64),
        valid=valid,
        stale=np.array([b.stale for b in books], dtype=np.bool_),
        changed=np.ones(n, dtype=np.bool_),
        book_state=np.array([STATE_STALE if b.stale else 2 for b in books], dtype=np.int8),
        bid=mid * (1 - spread / 2e4),
        ask=mid * (1 + spread / 2e4),
        mid=mid,
        spread_bps=spread,
        depth_usd=depth,
        depth_quote=quote_depth,
        depth_covered=np.ones((n, nk, 2), dtype=np.bool_),
        slippage_bps=slip,
        slippage_exhausted=exhausted,
        levels=np.full((n, 2), 100, dtype=np.int64),
        truncated=np.zeros(n, dtype=np.bool_),
        fx_usd=fx,
        fx_assumed=np.array([b.fx_assumed for b in books], dtype=np.bool_),
        book_age_s=np.array([b.age_s for b in books], dtype=np.float64),
        updates=np.full(n, 10, dtype=np.int64),
        mark_price=np.array([b.mark for b in books], dtype=np.float64),
        index_price=np.array([b.index for b in books], dtype=np.float64),
        funding_rate=np.array([b.funding for b in books], dtype=np.float64),
    )
