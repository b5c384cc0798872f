"""Plain-Python twin of ``monitor.metrics.kernels.compute_metrics`` for property tests."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ReferenceMetrics:
    bid: float
    ask: float
    mid: float
    spread_bps: float
    depth_quote: list[tuple[float, float]]  # per band: (bid, ask)
    depth_usd: list[tuple[float, float]]
    covered: list[tuple[bool, bool]]
    sell: list[tuple[float, bool]]  # per notional: (slippage bps, exhausted)
    buy: list[tuple[float, bool]]


def _walk(
    levels: list[tuple[float, float]], fx: float, mid: float, target: float, selling: bool
) -> tuple[float, bool]:
    remaining = target
    cost = 0.0
    filled = 0.0
    for px, qty in levels:
        level_usd = px * qty * fx
        if level_usd >= remaining:
            take = remaining / (px * fx)
            filled += take
            cost += take * px
            remaining = 0.0
            break
        filled += qty
        cost += px * qty
        remaining -= level_usd
    if filled <= 0:
        return math.nan, True
    vwap = cost / filled
    slip = (mid - vwap) / mid * 1e4 if selling else (vwap - mid) / mid * 1e4
    return slip, remaining > 0


def reference_metrics(
    bids: list[tuple[float, float]],
    asks: list[tuple[float, float]],
    *,
    fx: float,
    bands: list[float],
    notionals: list[float],
    complete_bid: float = -math.inf,
    complete_ask: float = math.inf,
) -> ReferenceMetrics | None:
    """``bids`` best (highest) first, ``asks`` best (lowest) first, prices as floats.

    ``complete_bid``/``complete_ask``: the held book is known complete for bid prices
    >= complete_bid and ask prices <= complete_ask.
    """
    if not bids or not asks:
        return None
    bid, ask = bids[0][0], asks[0][0]
    mid = 0.5 * (bid + ask)
    depth_quote = []
    covered = []
    for band in bands:
        lo, hi = mid * (1.0 - band), mid * (1.0 + band)
        d_bid = 0.0
        for px, qty in bids:
            if px < mid * (1.0 - bands[-1]):
                break
            if px >= lo:
                d_bid += px * qty
        d_ask = 0.0
        for px, qty in asks:
            if px > mid * (1.0 + bands[-1]):
                break
            if px <= hi:
                d_ask += px * qty
        depth_quote.append((d_bid, d_ask))
        covered.append((complete_bid <= lo, complete_ask >= hi))
    valid_fx = fx == fx and fx > 0
    return ReferenceMetrics(
        bid=bid,
        ask=ask,
        mid=mid,
        spread_bps=(ask - bid) / mid * 1e4,
        depth_quote=depth_quote,
        depth_usd=[(b * fx, a * fx) for b, a in depth_quote],
        covered=covered,
        sell=[_walk(bids, fx, mid, q, True) if valid_fx else (math.nan, False) for q in notionals],
        buy=[_walk(asks, fx, mid, q, False) if valid_fx else (math.nan, False) for q in notionals],
    )
