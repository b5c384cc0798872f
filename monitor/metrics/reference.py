"""Plain-Python twin of ``monitor.metrics.kernels.compute_metrics`` for property tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.book.layout import (
    FLAG_TRUNCATED,
    S_FLAGS,
    S_MESSAGES,
    S_N_ASK,
    S_N_BID,
    S_STATE,
    S_TS_RECV,
)


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


def tick_rows(
    now_ns: int,
    istate: np.ndarray,
    keys: np.ndarray,
    qtys: np.ndarray,
    fx: np.ndarray,
    bands: np.ndarray,
    notionals: np.ndarray,
    stale_after_ns: np.ndarray,
    dirty: np.ndarray,
    fx_used: np.ndarray,
    metrics: np.ndarray,
    prev_valid: np.ndarray,
    prev_stale: np.ndarray,
    m_out: np.ndarray,
    flags: np.ndarray,
    state_out: np.ndarray,
    levels_out: np.ndarray,
    updates_out: np.ndarray,
    age_out: np.ndarray,
    covered_out: np.ndarray,
    exhausted_out: np.ndarray,
) -> int:
    """Twin of ``kernels.tick_rows`` in whole-array numpy (the metric kernel itself is
    ``compute_metrics``, compared with :func:`reference_metrics` on its own)."""
    from monitor.metrics import kernels as mk  # noqa: PLC0415 (the twin's one kernel)

    n = len(fx)
    nk, nn = len(bands), len(notionals)
    prev_fx = fx_used[:n]
    moved = ~((fx == prev_fx) | (np.isnan(fx) & np.isnan(prev_fx)))
    was_dirty = dirty[:n].copy()
    todo = np.flatnonzero(was_dirty | moved)
    if todo.size:
        out = np.empty((todo.size, metrics.shape[1]))
        mk.compute_metrics(todo, istate, keys, qtys, fx[todo], bands, notionals, out)
        metrics[todo] = out
        fx_used[todo] = fx[todo]
    dirty[:] = False
    st = istate[:n]
    synced = (st[:, S_STATE] != mk.STATE_EMPTY) & (st[:, S_N_BID] > 0) & (st[:, S_N_ASK] > 0)
    ts_recv = st[:, S_TS_RECV]
    age_ns = now_ns - ts_recv
    stale = synced & (ts_recv > 0) & (age_ns > stale_after_ns)
    valid = synced & ~stale
    flags[mk.T_VALID] = valid
    flags[mk.T_STALE] = stale
    flags[mk.T_CHANGED] = was_dirty | (valid != prev_valid[:n]) | (stale != prev_stale[:n])
    flags[mk.T_TRUNCATED] = (st[:, S_FLAGS] & FLAG_TRUNCATED) != 0
    flags[mk.T_NEWLY_STALE] = stale & ~prev_stale[:n]
    newly = int(flags[mk.T_NEWLY_STALE].sum())
    prev_valid[:n] = valid
    prev_stale[:n] = stale
    state = st[:, S_STATE].astype(np.int8)
    state[stale] = mk.STATE_STALE
    state_out[:] = state
    levels_out[:] = st[:, [S_N_BID, S_N_ASK]]
    updates_out[:] = st[:, S_MESSAGES]
    age_out[:] = np.where(ts_recv > 0, age_ns / 1e9, np.nan)
    m = metrics[:n].copy()
    m[~valid, : mk.C_N_BID] = np.nan
    m[~valid, mk.C_FIRST_BAND :] = np.nan
    m_out[:] = m
    band = m[:, mk.C_FIRST_BAND : mk.C_FIRST_BAND + mk.BAND_COLS * nk].reshape(n, nk, mk.BAND_COLS)
    slip = m[:, mk.C_FIRST_BAND + mk.BAND_COLS * nk :].reshape(n, nn, mk.NOTIONAL_COLS)
    covered_out[:] = band[:, :, 4:6] == 1.0
    exhausted_out[:] = slip[:, :, 1::2] == 1.0
    return newly
