"""Per-book liquidity metrics, computed for many books in one numba call.

For each listed book: best bid/ask, mid, spread (bps), and for each band k the depth within
+-k of mid per side in quote currency and in USD, with a flag saying whether the book we
hold reaches the band edge (a shallow snapshot or a capacity cut can leave the outer part
of a band unknown: then the figure is a lower bound and the flag is 0). Cost to sell and
to buy a USD notional: slippage of the VWAP against mid in bps, and an ``exhausted`` flag
when the held book runs out first (no extrapolation; slippage then covers what was filled).

Definitions: docs/architecture.md, "Metrics" (bands anchored at mid).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from monitor.book.layout import S_COMPLETE_ASK, S_COMPLETE_BID, S_N_ASK, S_N_BID, S_PRICE_DEC

C_BID = 0
C_ASK = 1
C_MID = 2
C_SPREAD_BPS = 3
C_N_BID = 4
C_N_ASK = 5
C_FIRST_BAND = 6
BAND_COLS = 6  # bid quote, ask quote, bid usd, ask usd, bid covered, ask covered
NOTIONAL_COLS = 4  # sell slippage bps, sell exhausted, buy slippage bps, buy exhausted


def n_columns(n_bands: int, n_notionals: int) -> int:
    return C_FIRST_BAND + BAND_COLS * n_bands + NOTIONAL_COLS * n_notionals


def band_col(band: int) -> int:
    return C_FIRST_BAND + BAND_COLS * band


def notional_col(n_bands: int, notional: int) -> int:
    return C_FIRST_BAND + BAND_COLS * n_bands + NOTIONAL_COLS * notional


@njit(cache=True)
def _walk(
    keys: np.ndarray,
    qtys: np.ndarray,
    n: int,
    sign: int,
    scale: float,
    fx: float,
    mid: float,
    target: float,
) -> tuple[float, float]:
    """Walk one side from the best level until ``target`` USD is filled.

    Returns (slippage bps vs mid, exhausted 0/1). Selling walks bids (sign +1), buying
    walks asks (sign -1); slippage is positive when the fill is worse than mid.
    """
    remaining = target
    cost_quote = 0.0
    filled_base = 0.0
    for j in range(n - 1, -1, -1):
        px = sign * keys[j] / scale
        level_usd = px * qtys[j] * fx
        if level_usd >= remaining:
            take = remaining / (px * fx)
            filled_base += take
            cost_quote += take * px
            remaining = 0.0
            break
        filled_base += qtys[j]
        cost_quote += px * qtys[j]
        remaining -= level_usd
    if filled_base <= 0.0:
        return np.nan, 1.0
    vwap = cost_quote / filled_base
    slip = sign * (mid - vwap) / mid * 1e4
    return slip, 1.0 if remaining > 0.0 else 0.0


@njit(cache=True)
def compute_metrics(
    books: np.ndarray,
    istate: np.ndarray,
    keys: np.ndarray,
    qtys: np.ndarray,
    fx: np.ndarray,
    bands: np.ndarray,
    notionals: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill ``out[i]`` with the metrics of book ``books[i]`` (``fx[i]``: quote -> USD).

    ``bands`` are fractions of mid (0.001 = 0.1%), ascending. Books with an empty side get
    NaN everywhere except the level counts.
    """
    nk = bands.shape[0]
    nn = notionals.shape[0]
    for i in range(books.shape[0]):
        b = books[i]
        st = istate[b]
        nb = st[S_N_BID]
        na = st[S_N_ASK]
        row = out[i]
        row[:] = np.nan
        row[C_N_BID] = nb
        row[C_N_ASK] = na
        if nb == 0 or na == 0:
            continue
        scale = 10.0 ** st[S_PRICE_DEC]
        bk = keys[b, 0]
        ak = keys[b, 1]
        bq = qtys[b, 0]
        aq = qtys[b, 1]
        bid = bk[nb - 1] / scale
        ask = -ak[na - 1] / scale
        mid = 0.5 * (bid + ask)
        row[C_BID] = bid
        row[C_ASK] = ask
        row[C_MID] = mid
        row[C_SPREAD_BPS] = (ask - bid) / mid * 1e4
        rate = fx[i]
        # Walk each side once from the best level (last) outwards with a running sum;
        # bands are ascending, so band k's depth is the sum when the walk leaves it.
        k = 0
        acc = 0.0
        edge = mid * (1.0 - bands[0])
        for j in range(nb - 1, -1, -1):
            px = bk[j] / scale
            while px < edge:
                row[C_FIRST_BAND + 6 * k] = acc
                k += 1
                if k == nk:
                    break
                edge = mid * (1.0 - bands[k])
            if k == nk:
                break
            acc += px * bq[j]
        while k < nk:
            row[C_FIRST_BAND + 6 * k] = acc
            k += 1
        k = 0
        acc = 0.0
        edge = mid * (1.0 + bands[0])
        for j in range(na - 1, -1, -1):
            px = -ak[j] / scale
            while px > edge:
                row[C_FIRST_BAND + 6 * k + 1] = acc
                k += 1
                if k == nk:
                    break
                edge = mid * (1.0 + bands[k])
            if k == nk:
                break
            acc += px * aq[j]
        while k < nk:
            row[C_FIRST_BAND + 6 * k + 1] = acc
            k += 1
        complete_bid = st[S_COMPLETE_BID] / scale  # bids known complete for price >= this
        complete_ask = -st[S_COMPLETE_ASK] / scale  # asks known complete for price <= this
        for k in range(nk):
            c = C_FIRST_BAND + 6 * k
            row[c + 2] = row[c] * rate
            row[c + 3] = row[c + 1] * rate
            row[c + 4] = 1.0 if complete_bid <= mid * (1.0 - bands[k]) else 0.0
            row[c + 5] = 1.0 if complete_ask >= mid * (1.0 + bands[k]) else 0.0
        base = C_FIRST_BAND + 6 * nk
        for q in range(nn):
            c = base + 4 * q
            if rate != rate or rate <= 0.0:
                continue
            slip, exhausted = _walk(bk, bq, nb, 1, scale, rate, mid, notionals[q])
            row[c] = slip
            row[c + 1] = exhausted
            slip, exhausted = _walk(ak, aq, na, -1, scale, rate, mid, notionals[q])
            row[c + 2] = slip
            row[c + 3] = exhausted
