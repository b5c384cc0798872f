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

from monitor.book.layout import (
    FLAG_TRUNCATED,
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


@njit(cache=True, nogil=True)
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


# rows of tick_rows' ``flags`` output ([row, book]: each row a contiguous column)
T_VALID = 0
T_STALE = 1
T_CHANGED = 2
T_TRUNCATED = 3
T_NEWLY_STALE = 4
N_T = 5
STATE_EMPTY = 0  # monitor.domain.BookState.EMPTY
STATE_STALE = 3  # monitor.sample.STATE_STALE


@njit(cache=True, nogil=True)
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
    """One tick of the first ``len(fx)`` books (book ids are dense), in one call.

    Runs :func:`compute_metrics` for the books that are ``dirty`` or whose FX rate moved
    (keeping ``metrics`` and ``fx_used`` per book between ticks, clearing ``dirty``), then
    fills the tick's columns: ``m_out`` (the metric row, NaN but the level counts where
    the book is not valid), ``flags`` (T_* rows: valid, stale, changed since the last
    tick, truncated, went stale now; updates ``prev_valid`` and ``prev_stale``), the book
    state (STALE for a synced book silent past ``stale_after_ns``), levels per side,
    updates applied, book age in seconds (NaN: never updated) and the band-covered and
    slippage-exhausted flags. Returns how many books went stale at this tick.
    """
    n = fx.shape[0]
    nk = bands.shape[0]
    nn = notionals.shape[0]
    n_cols = metrics.shape[1]
    todo = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        used = fx_used[i]
        same = fx[i] == used or (fx[i] != fx[i] and used != used)
        if dirty[i] or not same:
            todo[count] = i
            count += 1
    if count:
        todo_fx = np.empty(count)
        for j in range(count):
            todo_fx[j] = fx[todo[j]]
        out = np.empty((count, n_cols))
        compute_metrics(todo[:count], istate, keys, qtys, todo_fx, bands, notionals, out)
        for j in range(count):
            b = todo[j]
            metrics[b] = out[j]
            fx_used[b] = todo_fx[j]
    newly = 0
    band_end = C_FIRST_BAND + BAND_COLS * nk
    for i in range(n):
        st = istate[i]
        synced = st[S_STATE] != STATE_EMPTY and st[S_N_BID] > 0 and st[S_N_ASK] > 0
        ts_recv = st[S_TS_RECV]
        age_ns = now_ns - ts_recv
        stale = synced and ts_recv > 0 and age_ns > stale_after_ns[i]
        valid = synced and not stale
        changed = dirty[i] or valid != prev_valid[i] or stale != prev_stale[i]
        went_stale = stale and not prev_stale[i]
        if went_stale:
            newly += 1
        flags[T_VALID, i] = valid
        flags[T_STALE, i] = stale
        flags[T_CHANGED, i] = changed
        flags[T_TRUNCATED, i] = (st[S_FLAGS] & FLAG_TRUNCATED) != 0
        flags[T_NEWLY_STALE, i] = went_stale
        prev_valid[i] = valid
        prev_stale[i] = stale
        state_out[i] = STATE_STALE if stale else st[S_STATE]
        levels_out[i, 0] = st[S_N_BID]
        levels_out[i, 1] = st[S_N_ASK]
        updates_out[i] = st[S_MESSAGES]
        age_out[i] = age_ns / 1e9 if ts_recv > 0 else np.nan
        row = m_out[i]
        src = metrics[i]
        for c in range(n_cols):
            row[c] = src[c] if valid or C_N_BID <= c < C_FIRST_BAND else np.nan
        for k in range(nk):
            c = C_FIRST_BAND + BAND_COLS * k
            covered_out[i, k, 0] = row[c + 4] == 1.0
            covered_out[i, k, 1] = row[c + 5] == 1.0
        for q in range(nn):
            c = band_end + NOTIONAL_COLS * q
            exhausted_out[i, q, 0] = row[c + 1] == 1.0
            exhausted_out[i, q, 1] = row[c + 3] == 1.0
    dirty[:] = False
    return newly
