"""Numba kernels of the cross-venue analytics and the liquidity-vacuum score (LVS).

Every kernel works on all books (or all assets) of a tick in one call, takes only arrays
and scalars, and has a plain-Python twin in ``monitor.analytics.reference`` that the
property tests compare it with. The formulas are the reference spec's (LVS section):

- :func:`group_consensus`: per group (asset), the mean of the used values that lie within
  median +- ``clip_mads`` robust deviations (1.4826 x MAD, at least ``min_scale_bps`` of
  the median); the others are clipped off: a robust consensus price;
- :func:`asset_rollup`: per asset, the outlier book, lowest vs second-lowest venue,
  venue-sum and consolidated +-1% depth, worst index and peg deviation, median basis;
- :func:`book_components`: per book, the features (median of the last ``smooth`` ticks),
  their baselines (EWMA level, robust EWMA scale, frozen while the book is elevated) and
  the six components s in [0, 1], the local score L and the breadth flag;
- :func:`combine_scores`: breadth (beta-weighted share of stressed books per asset, per
  venue and market-wide, leave-one-out), LVS = min(100, L (1 + 0.5 s_B)), the
  depth+spread override, components in points; asset and market scores;
- :func:`step_states`: the NORMAL/WATCH/WARNING/CRITICAL state machine with hysteresis
  and dwell, DATA for entities without a score.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# components (columns of the s / points arrays), the order of monitor.sample.COMPONENTS
K_DEPTH = 0
K_WITHDRAWAL = 1
K_SPREAD = 2
K_IMPACT = 3
K_ASYMMETRY = 4
K_DISLOCATION = 5
K_BREADTH = 6
N_LOCAL = 6
N_POINTS = 7

# states
NORMAL = 0
WATCH = 1
WARNING = 2
CRITICAL = 3
DATA = 4

MAD_TO_SIGMA = 1.4826


def feature_layout(n_bands: int, n_notionals: int) -> tuple[int, int, int, int, int, int, int]:
    """Columns of the feature matrix: (spread, obi, dislocation, first slippage, net
    withdrawal, cancel rate, total). Depth bands are columns 0..n_bands-1."""
    spread = n_bands
    obi = n_bands + 1
    disl = n_bands + 2
    slip0 = n_bands + 3
    wnet = slip0 + n_notionals
    wcancel = wnet + 1
    return spread, obi, disl, slip0, wnet, wcancel, wcancel + 1


@njit(cache=True)
def ramp(x: float, a: float, b: float) -> float:
    """clip((x - a) / (b - a), 0, 1); NaN gives 0."""
    if x != x:
        return 0.0
    v = (x - a) / (b - a)
    if v <= 0.0:
        return 0.0
    if v >= 1.0:
        return 1.0
    return v


@njit(cache=True)
def _median_sorted(v: np.ndarray, n: int) -> float:
    if n == 0:
        return np.nan
    h = n // 2
    if n % 2 == 1:
        return float(v[h])
    return float(0.5 * (v[h - 1] + v[h]))


@njit(cache=True)
def _sort_in_place(v: np.ndarray) -> None:
    """Sort ``v`` (no NaN) in place: insertion sort for the few books of one asset, which
    allocates nothing; the same values in the same order as ``np.sort``."""
    n = v.shape[0]
    if n > 16:
        v[:] = np.sort(v)
        return
    for j in range(1, n):
        x = v[j]
        k = j - 1
        while k >= 0 and v[k] > x:
            v[k + 1] = v[k]
            k -= 1
        v[k + 1] = x


@njit(cache=True)
def group_consensus(
    group: np.ndarray,
    n_groups: int,
    value: np.ndarray,
    use: np.ndarray,
    clip_mads: float,
    min_scale_bps: float,
    out_consensus: np.ndarray,
    out_median: np.ndarray,
    out_count: np.ndarray,
) -> None:
    """Robust consensus per group over the rows with ``use`` and a finite positive value:
    the median, then the mean of the values within the clip band around it (a wicked
    venue is dropped, not averaged in)."""
    n = group.shape[0]
    counts = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(n):
        g = group[i]
        if use[i] and 0 <= g < n_groups and value[i] == value[i] and value[i] > 0.0:
            counts[g + 1] += 1
    for g in range(n_groups):
        counts[g + 1] += counts[g]
    vals = np.empty(counts[n_groups])
    devs = np.empty(counts[n_groups])
    fill = counts[:n_groups].copy()
    for i in range(n):
        g = group[i]
        if use[i] and 0 <= g < n_groups and value[i] == value[i] and value[i] > 0.0:
            vals[fill[g]] = value[i]
            fill[g] += 1
    for g in range(n_groups):
        lo = counts[g]
        m = counts[g + 1] - lo
        out_count[g] = m
        if m == 0:
            out_consensus[g] = np.nan
            out_median[g] = np.nan
            continue
        v = vals[lo : lo + m]
        _sort_in_place(v)
        med = _median_sorted(v, m)
        dev = devs[lo : lo + m]
        for j in range(m):
            dev[j] = abs(v[j] - med)
        _sort_in_place(dev)
        scale = MAD_TO_SIGMA * _median_sorted(dev, m)
        floor = med * min_scale_bps * 1e-4
        scale = max(scale, floor)
        lo_c = med - clip_mads * scale
        hi_c = med + clip_mads * scale
        total = 0.0
        kept = 0
        for j in range(m):
            if lo_c <= v[j] <= hi_c:
                total += v[j]
                kept += 1
        out_median[g] = med
        out_consensus[g] = total / kept if kept else med


@njit(cache=True)
def _interp_depth(bands: np.ndarray, depth: np.ndarray, offset: float) -> float:
    """Cumulative depth of one side at ``offset`` (fraction of mid) from the band figures:
    linear between (0, 0) and the bands, the widest band's figure beyond it."""
    if not offset > 0.0:
        return 0.0
    prev_b = 0.0
    prev_d = 0.0
    for k in range(bands.shape[0]):
        d = depth[k]
        if d != d:
            return np.nan
        if offset <= bands[k]:
            return float(prev_d + (d - prev_d) * (offset - prev_b) / (bands[k] - prev_b))
        prev_b = bands[k]
        prev_d = d
    return prev_d


@njit(cache=True, nogil=True)
def asset_rollup(
    asset: np.ndarray,
    n_assets: int,
    venue: np.ndarray,
    healthy: np.ndarray,
    is_perp: np.ndarray,
    mid_usd: np.ndarray,
    dislocation: np.ndarray,
    basis: np.ndarray,
    index_dev: np.ndarray,
    peg: np.ndarray,
    depth_bid: np.ndarray,
    depth_ask: np.ndarray,
    bands: np.ndarray,
    band_1pct: int,
    consensus: np.ndarray,
    outlier_bps: float,
    out_int: np.ndarray,
    out_float: np.ndarray,
) -> None:
    """Per asset, over its healthy books.

    ``out_int[a]``: outlier row, lowest row, second-lowest row (lowest on another venue),
    healthy books, books. ``out_float[a]``: outlier bps, low gap bps, venue-sum 1% depth,
    consolidated 1% depth (within +-1% of the consensus, interpolated from the bands),
    worst |index deviation| (signed), worst |peg| (signed), median perp basis.
    """
    n = asset.shape[0]
    for a in range(n_assets):
        out_int[a, 0] = -1
        out_int[a, 1] = -1
        out_int[a, 2] = -1
        out_int[a, 3] = 0
        out_int[a, 4] = 0
        out_float[a, 0] = np.nan
        out_float[a, 1] = np.nan
        out_float[a, 2] = 0.0
        out_float[a, 3] = 0.0
        out_float[a, 4] = np.nan
        out_float[a, 5] = np.nan
        out_float[a, 6] = np.nan
    best_abs = np.zeros(n_assets)
    basis_vals = np.empty(n)
    basis_group = np.empty(n, dtype=np.int64)
    nb = 0
    for i in range(n):
        a = asset[i]
        if a < 0 or a >= n_assets:
            continue
        out_int[a, 4] += 1
        if not healthy[i]:
            continue
        out_int[a, 3] += 1
        d = dislocation[i]
        if d == d and abs(d) >= outlier_bps and abs(d) > best_abs[a]:
            best_abs[a] = abs(d)
            out_int[a, 0] = i
            out_float[a, 0] = d
        m = mid_usd[i]
        if m == m:
            lo = out_int[a, 1]
            if lo < 0 or m < mid_usd[lo]:
                out_int[a, 1] = i
        # venue sum: the book's own +-1% depth, both sides
        db = depth_bid[i, band_1pct]
        da = depth_ask[i, band_1pct]
        if db == db and da == da:
            out_float[a, 2] += db + da
        r = consensus[a]
        if r == r and r > 0.0 and m == m and m > 0.0:
            lo_edge = 0.99 * r
            hi_edge = 1.01 * r
            bid = _interp_depth(bands, depth_bid[i], (m - lo_edge) / m)
            if m > hi_edge:
                bid -= _interp_depth(bands, depth_bid[i], (m - hi_edge) / m)
            ask = _interp_depth(bands, depth_ask[i], (hi_edge - m) / m)
            if m < lo_edge:
                ask -= _interp_depth(bands, depth_ask[i], (lo_edge - m) / m)
            if bid == bid and bid > 0.0:
                out_float[a, 3] += bid
            if ask == ask and ask > 0.0:
                out_float[a, 3] += ask
        x = index_dev[i]
        if x == x:
            w = out_float[a, 4]
            if w != w or abs(x) > abs(w):
                out_float[a, 4] = x
        p = peg[i]
        if p == p:
            w = out_float[a, 5]
            if w != w or abs(p) > abs(w):
                out_float[a, 5] = p
        if is_perp[i] and basis[i] == basis[i]:
            basis_vals[nb] = basis[i]
            basis_group[nb] = a
            nb += 1
    # second-lowest: the lowest healthy book on another venue than the lowest
    for i in range(n):
        a = asset[i]
        if a < 0 or a >= n_assets or not healthy[i]:
            continue
        lo = out_int[a, 1]
        m = mid_usd[i]
        if lo < 0 or i == lo or venue[i] == venue[lo] or m != m:
            continue
        s = out_int[a, 2]
        if s < 0 or m < mid_usd[s]:
            out_int[a, 2] = i
    for a in range(n_assets):
        lo = out_int[a, 1]
        s = out_int[a, 2]
        if lo >= 0 and s >= 0:
            out_float[a, 1] = (mid_usd[lo] / mid_usd[s] - 1.0) * 1e4
    for a in range(n_assets):
        m = 0
        for j in range(nb):
            if basis_group[j] == a:
                m += 1
        if m:
            v = np.empty(m)
            k = 0
            for j in range(nb):
                if basis_group[j] == a:
                    v[k] = basis_vals[j]
                    k += 1
            out_float[a, 6] = _median_sorted(np.sort(v), m)


# rows of cross_venue's ``rows`` output ([row, book]: each row a contiguous column)
X_MID_USD = 0
X_DISLOCATION = 1
X_BASIS = 2
X_MARK_BASIS = 3
X_INDEX_DEV = 4
X_FUNDING_ANNUAL = 5
X_SENSITIVITY = 6
X_D1_TOTAL = 7
N_X = 8
# rows of its ``groups`` output ([row, asset])
G_SPOT = 0
G_SPOT_MEDIAN = 1
G_PERP = 2
G_PERP_MEDIAN = 3
G_CONSENSUS = 4
N_G = 5


@njit(cache=True)
def _nan_min(a: float, b: float) -> float:
    """np.minimum of two scalars (NaN wins)."""
    if a != a or b != b:
        return np.nan
    return a if a < b else b


@njit(cache=True)
def _nan_max(a: float, b: float) -> float:
    """np.maximum of two scalars (NaN wins)."""
    if a != a or b != b:
        return np.nan
    return a if a > b else b


@njit(cache=True, error_model="numpy", nogil=True)
def cross_venue(
    valid: np.ndarray,
    mid: np.ndarray,
    fx: np.ndarray,
    mark: np.ndarray,
    index: np.ndarray,
    funding: np.ndarray,
    depth_usd: np.ndarray,
    depth_quote: np.ndarray,
    spread_bps: np.ndarray,
    slippage_bps: np.ndarray,
    asset: np.ndarray,
    n_assets: int,
    is_perp: np.ndarray,
    periods_per_year: np.ndarray,
    clip_mads: float,
    min_scale_bps: float,
    band_1pct: int,
    mark_alpha: np.ndarray,
    utc_hours: float,
    mark_ma: np.ndarray,
    flags: np.ndarray,
    rows: np.ndarray,
    groups: np.ndarray,
    counts: np.ndarray,
    raw: np.ndarray,
) -> None:
    """The per-book half of the analytics tick, all books in one call.

    ``flags[0]``: scored (valid with a positive mid), ``flags[1]``: healthy (scored with a
    USD rate). ``rows`` (X_* rows): USD mid, dislocation vs the own kind's consensus,
    perp basis vs the consensus spot, mark basis, index deviation, annualised funding,
    mark-price sensitivity (updates the ``mark_ma`` EWMAs: ``mark_alpha`` per window),
    the 1% depth of both sides. ``groups`` (G_* rows) and ``counts`` (spot, perp): the
    consensus per asset (:func:`group_consensus`). ``raw``: the score features, with the
    depth, spread and slippage columns *before* their logarithm (the caller takes it:
    numpy's log, the one the features were defined with) and NaN withdrawal columns.
    """
    n = valid.shape[0]
    n_bands = depth_usd.shape[1]
    n_notional = slippage_bps.shape[1]
    i_spread = n_bands
    i_obi = n_bands + 1
    i_disl = n_bands + 2
    i_slip = n_bands + 3
    spot_use = np.empty(n, dtype=np.bool_)
    perp_use = np.empty(n, dtype=np.bool_)
    for i in range(n):
        scored = valid[i] and mid[i] > 0.0
        f = fx[i]
        healthy = scored and f > 0.0 and np.isfinite(f)
        flags[0, i] = scored
        flags[1, i] = healthy
        rows[X_MID_USD, i] = mid[i] * f if healthy else np.nan
        spot_use[i] = healthy and not is_perp[i]
        perp_use[i] = healthy and is_perp[i]
    mid_usd = rows[X_MID_USD]
    spot, spot_med, perp, perp_med = (
        groups[G_SPOT],
        groups[G_SPOT_MEDIAN],
        groups[G_PERP],
        groups[G_PERP_MEDIAN],
    )
    group_consensus(
        asset, n_assets, mid_usd, spot_use, clip_mads, min_scale_bps, spot, spot_med, counts[0]
    )
    group_consensus(
        asset, n_assets, mid_usd, perp_use, clip_mads, min_scale_bps, perp, perp_med, counts[1]
    )
    for a in range(n_assets):
        groups[G_CONSENSUS, a] = spot[a] if counts[0, a] > 0 else perp[a]
    for i in range(n):
        a = asset[i]
        perp_row = is_perp[i]
        healthy = flags[1, i]
        spot_ref = spot[a]
        own_ref = perp[a] if perp_row else spot_ref
        disl = (mid_usd[i] / own_ref - 1.0) * 1e4
        rows[X_DISLOCATION, i] = disl
        basis = (mid_usd[i] / spot_ref - 1.0) * 1e4 if perp_row else np.nan
        rows[X_BASIS, i] = basis
        live = perp_row and healthy
        rows[X_MARK_BASIS, i] = (mid[i] - mark[i]) / mark[i] * 1e4 if live else np.nan
        rows[X_INDEX_DEV, i] = (index[i] * fx[i] / spot_ref - 1.0) * 1e4 if live else np.nan
        rows[X_FUNDING_ANNUAL, i] = funding[i] * periods_per_year[i]
        # mark sensitivity: Binance-style mark with the basis averaged over each window
        ix = index[i]
        if live and np.isfinite(ix) and ix > 0.0:
            basis_now = mid[i] - ix
            for w in range(mark_ma.shape[1]):
                ma = mark_ma[i, w]
                if not np.isfinite(ma):
                    mark_ma[i, w] = basis_now
                else:
                    mark_ma[i, w] = ma + mark_alpha[w] * (basis_now - ma)
            ppy = periods_per_year[i]
            hours = 24.0 * 365.0 / (ppy if np.isfinite(ppy) else 1095.0)
            left = hours - np.mod(utc_hours, hours)
            fr = funding[i] if np.isfinite(funding[i]) else 0.0
            price1 = ix * (1.0 + fr * left / hours)
            m0 = np.nan
            m1 = np.nan
            for w in range(2):
                b = ix + mark_ma[i, w]
                m = _nan_max(_nan_min(price1, b), _nan_min(_nan_max(price1, b), mid[i]))
                if w == 0:
                    m0 = m
                else:
                    m1 = m
            rows[X_SENSITIVITY, i] = (m0 / m1 - 1.0) * 1e4
        else:
            for w in range(mark_ma.shape[1]):
                mark_ma[i, w] = np.nan
            rows[X_SENSITIVITY, i] = np.nan
        # score features (depth in USD where the row has a rate, else in quote)
        for k in range(n_bands):
            lo = np.nan
            for side in range(2):
                d = depth_usd[i, k, side]
                if not np.isfinite(d):
                    d = depth_quote[i, k, side]
                lo = d if side == 0 else _nan_min(lo, d)
            raw[i, k] = _nan_max(lo, 1.0)
        raw[i, i_spread] = _nan_max(spread_bps[i], 1.0)
        q0 = depth_quote[i, band_1pct, 0]
        q1 = depth_quote[i, band_1pct, 1]
        raw[i, i_obi] = (q0 - q1) / (q0 + q1)
        raw[i, i_disl] = basis if perp_row and np.isfinite(basis) else disl
        for k in range(n_notional):
            raw[i, i_slip + k] = _nan_max(slippage_bps[i, k, 0], 0.1)
        for f in range(i_slip + n_notional, raw.shape[1]):
            raw[i, f] = np.nan
        d0 = depth_usd[i, band_1pct, 0]
        if not np.isfinite(d0):
            d0 = depth_quote[i, band_1pct, 0]
        d1 = depth_usd[i, band_1pct, 1]
        if not np.isfinite(d1):
            d1 = depth_quote[i, band_1pct, 1]
        rows[X_D1_TOTAL, i] = d0 + d1


@njit(cache=True)
def _window_remove(vals: np.ndarray, pos: np.ndarray, count: int, slot: int) -> int:
    """Remove the entry of ring slot ``slot`` from a sorted window (if there); returns the
    new count. The freed tail entry is NaN / -1."""
    k = 0
    while k < count and pos[k] != slot:
        k += 1
    if k == count:
        return count
    for j in range(k, count - 1):
        vals[j] = vals[j + 1]
        pos[j] = pos[j + 1]
    vals[count - 1] = np.nan
    pos[count - 1] = -1
    return count - 1


@njit(cache=True)
def _window_insert(vals: np.ndarray, pos: np.ndarray, count: int, value: float, slot: int) -> int:
    """Insert ``value`` of ring slot ``slot`` into a sorted window: ordered by value, equal
    values by slot, the order a stable sort of the ring's slots gives. Returns the count."""
    k = count
    while k > 0 and (vals[k - 1] > value or (vals[k - 1] == value and pos[k - 1] > slot)):
        vals[k] = vals[k - 1]
        pos[k] = pos[k - 1]
        k -= 1
    vals[k] = value
    pos[k] = slot
    return count + 1


@njit(cache=True, nogil=True)
def book_components(
    now_s: float,
    dt_s: float,
    healthy: np.ndarray,
    raw: np.ndarray,
    d1_total: np.ndarray,
    exhausted: np.ndarray,
    log_notionals: np.ndarray,
    band_weights: np.ndarray,
    band_1pct: int,
    sigma_min: np.ndarray,
    prev_state: np.ndarray,
    params: np.ndarray,
    ring: np.ndarray,
    ring_n: np.ndarray,
    window: np.ndarray,
    window_slot: np.ndarray,
    window_n: np.ndarray,
    mu: np.ndarray,
    mad: np.ndarray,
    nobs: np.ndarray,
    clock: np.ndarray,
    flow: np.ndarray,
    s_out: np.ndarray,
    aux_out: np.ndarray,
) -> None:
    """One tick of every book's features, baselines and components.

    ``raw[i]``: the tick's features (depth bands: ln weaker-side USD depth; spread:
    ln max(bps, 1); obi: 1% order-book imbalance; dislocation: bps; slippage: ln max(bps,
    0.1) per notional); the kernel fills the two withdrawal columns itself from
    ``d1_total`` (both sides' 1% depth, USD) and smooths the others over the ``ring``.
    ``window[i, f]`` holds the ring's non-NaN values of feature ``f`` sorted (equal values
    in slot order; ``window_slot``: their ring slots, ``window_n``: how many), kept as the
    ring turns: one removal and one insertion a tick instead of a sort.

    ``params``: hl_mu_s, hl_sigma_s, rebaseline_after_s, warmup_s, resync_quiet_s,
    withdrawal_tau_s, the six weights, fast_s (a new book's baseline is a running mean for
    its first fast_s seconds, then an EWMA of the half-lives). ``clock[i]``: first healthy
    time, healthy since, elevated since (NaN: not elevated). ``flow[i]``: previous 1%
    depth (USD), its gross decrease rate (USD/s, EWMA over withdrawal_tau_s), and the EWMA
    (same tau) of the smoothed ln 1% depth: the net withdrawal is how far the depth now
    sits below that average (a log fall per ~minute), the cancel-rate proxy is the gross
    decrease per withdrawal_tau_s over the baseline depth (per minute by default: a
    time-compressed clock with a scaled tau gives the same feature). Both are inferred
    from L2 depth changes (no add/cancel messages).

    Baselines are robust EWMAs: a tick moves the level by at most 2 sigma and the scale
    by deviations of at most 3 sigma (winsorised), so a slow slide that has not reached
    WATCH yet (when they freeze) is not absorbed as the new normal within minutes.

    Outputs: ``s_out[i]``: the six components in [0, 1] (NaN for unhealthy books);
    ``aux_out[i]``: L (points), s of the 1% depth term, breadth flag, beta (sqrt of
    baseline 1% weaker-side depth), the selected impact notional's index.
    """
    n, n_bands = raw.shape[0], band_weights.shape[0]
    n_feat = raw.shape[1]
    n_notional = log_notionals.shape[0]
    smooth = ring.shape[2]
    i_spread = n_bands
    i_obi = n_bands + 1
    i_disl = n_bands + 2
    i_slip = n_bands + 3
    i_wnet = i_slip + n_notional
    i_wcancel = i_wnet + 1
    hl_mu, hl_sigma, rebaseline_after, warmup, resync_quiet, tau_w = (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
        params[5],
    )
    fast_s = params[12]
    w_depth, w_withdrawal, w_spread, w_impact, w_asym, w_disl = (
        params[6],
        params[7],
        params[8],
        params[9],
        params[10],
        params[11],
    )
    x = np.empty(n_feat)
    for i in range(n):
        if not healthy[i]:
            ring_n[i] = 0
            clock[i, 1] = np.nan
            flow[i, 0] = np.nan
            for c in range(N_LOCAL):
                s_out[i, c] = np.nan
            aux_out[i, 0] = np.nan
            aux_out[i, 1] = np.nan
            aux_out[i, 2] = 0.0
            aux_out[i, 3] = 0.0
            aux_out[i, 4] = -1.0
            continue
        if clock[i, 0] != clock[i, 0]:
            clock[i, 0] = now_s
        if clock[i, 1] != clock[i, 1]:
            clock[i, 1] = now_s
            flow[i, 1] = 0.0
            flow[i, 2] = np.nan
        # withdrawal flow from the 1% depth's tick-to-tick changes (L2-inferred)
        d1 = d1_total[i]
        prev = flow[i, 0]
        alpha = 1.0 - math.exp(-dt_s / tau_w) if dt_s > 0.0 else 0.0
        if dt_s > 0.0 and prev == prev and d1 == d1:
            delta = d1 - prev
            dec = -delta / dt_s if delta < 0.0 else 0.0
            flow[i, 1] += alpha * (dec - flow[i, 1])
        flow[i, 0] = d1
        # smoothed features: the median of the last `smooth` ticks (the sorted window
        # follows the ring: a restarted ring empties it, a full one drops its oldest)
        pos = ring_n[i] % smooth
        for f in range(i_wnet):
            vals = window[i, f]
            slots = window_slot[i, f]
            if ring_n[i] == 0:
                vals[:] = np.nan
                slots[:] = -1
                window_n[i, f] = 0
            elif ring_n[i] >= smooth:
                window_n[i, f] = _window_remove(vals, slots, window_n[i, f], pos)
            v = raw[i, f]
            ring[i, f, pos] = v
            if v == v:
                window_n[i, f] = _window_insert(vals, slots, window_n[i, f], v, pos)
            m = window_n[i, f]
            x[f] = _median_sorted(vals, m) if m else np.nan
        ring_n[i] += 1
        level = x[band_1pct]
        if level == level:
            if flow[i, 2] != flow[i, 2]:
                flow[i, 2] = level
            else:
                flow[i, 2] += alpha * (level - flow[i, 2])
        x[i_wnet] = flow[i, 2] - level
        base_depth = math.exp(mu[i, band_1pct]) if nobs[i] > 0 else np.nan
        if base_depth == base_depth and base_depth > 0.0:
            x[i_wcancel] = math.log(max(flow[i, 1] * tau_w / base_depth, 1e-4))
        else:
            x[i_wcancel] = np.nan
        # components against the baseline as it stood before this tick
        warm = nobs[i] > 0 and now_s - clock[i, 0] >= warmup
        s_d = 0.0
        s_d1 = 0.0
        s_w = 0.0
        s_s = 0.0
        s_i = 0.0
        s_a = 0.0
        s_x = 0.0
        pick = -1
        if warm:
            for k in range(n_bands):
                sig = max(MAD_TO_SIGMA * mad[i, k], sigma_min[k])
                z = (x[k] - mu[i, k]) / sig
                below = x[k] < mu[i, k] + math.log(0.6)
                term = ramp(-z, 2.0, 6.0) if below else 0.0
                s_d += band_weights[k] * term
                if k == band_1pct:
                    s_d1 = term
            if now_s - clock[i, 1] >= resync_quiet:
                sig = max(MAD_TO_SIGMA * mad[i, i_wnet], sigma_min[i_wnet])
                z_net = (x[i_wnet] - mu[i, i_wnet]) / sig
                sig = max(MAD_TO_SIGMA * mad[i, i_wcancel], sigma_min[i_wcancel])
                z_cancel = (x[i_wcancel] - mu[i, i_wcancel]) / sig
                s_w = max(ramp(z_net, 2.0, 5.0), ramp(z_cancel, 2.0, 5.0))
            sig = max(MAD_TO_SIGMA * mad[i, i_spread], sigma_min[i_spread])
            s_s = ramp((x[i_spread] - mu[i, i_spread]) / sig, 2.0, 6.0)
            # impact: the notional nearest 25% of the baseline 1% depth (log distance)
            target = mu[i, band_1pct] + math.log(0.25)
            best = np.inf
            for q in range(n_notional):
                dist = abs(log_notionals[q] - target)
                if dist < best:
                    best = dist
                    pick = q
            if pick >= 0:
                if exhausted[i, pick]:
                    s_i = 1.0
                else:
                    s_i = ramp(
                        x[i_slip + pick] - mu[i, i_slip + pick], math.log(2.0), math.log(10.0)
                    )
            s_a = ramp(abs(x[i_obi] - mu[i, i_obi]), 0.3, 0.7)
            s_x = ramp(abs(x[i_disl] - mu[i, i_disl]) / max(mad[i, i_disl], 5.0), 3.0, 10.0)
        s_out[i, K_DEPTH] = s_d
        s_out[i, K_WITHDRAWAL] = s_w
        s_out[i, K_SPREAD] = s_s
        s_out[i, K_IMPACT] = s_i
        s_out[i, K_ASYMMETRY] = s_a
        s_out[i, K_DISLOCATION] = s_x
        local = 100.0 * (
            w_depth * s_d
            + w_withdrawal * s_w
            + w_spread * s_s
            + w_impact * s_i
            + w_asym * s_a
            + w_disl * s_x
        )
        aux_out[i, 0] = local
        aux_out[i, 1] = s_d1
        aux_out[i, 2] = 1.0 if (s_d >= 0.5 or local >= 40.0) else 0.0
        aux_out[i, 4] = pick
        # baselines: frozen while elevated, unless elevated for longer than rebaseline_after
        elevated = prev_state[i] >= WATCH and prev_state[i] <= CRITICAL
        if elevated:
            if clock[i, 2] != clock[i, 2]:
                clock[i, 2] = now_s
        else:
            clock[i, 2] = np.nan
        rebaseline = elevated and now_s - clock[i, 2] > rebaseline_after
        if not elevated or rebaseline:
            h_mu = hl_sigma if rebaseline else hl_mu
            a_mu = 1.0 - 2.0 ** (-dt_s / h_mu) if dt_s > 0.0 else 0.0
            a_sig = 1.0 - 2.0 ** (-dt_s / hl_sigma) if dt_s > 0.0 else 0.0
            # the first fast_s seconds learn as a running mean, then the half-lives rule
            start = 1.0 / (nobs[i] + 1.0) if now_s - clock[i, 0] < fast_s else 0.0
            a_mu = max(a_mu, start)
            a_sig = max(a_sig, start)
            for f in range(n_feat):
                v = x[f]
                if v != v:
                    continue
                if nobs[i] == 0 or mu[i, f] != mu[i, f]:
                    mu[i, f] = v
                    mad[i, f] = 0.0
                else:
                    sig = max(MAD_TO_SIGMA * mad[i, f], sigma_min[f])
                    step = min(max(v - mu[i, f], -2.0 * sig), 2.0 * sig)
                    mu[i, f] += a_mu * step
                    mad[i, f] += a_sig * (min(abs(v - mu[i, f]), 3.0 * sig) - mad[i, f])
            nobs[i] += 1
        base = mu[i, band_1pct]
        aux_out[i, 3] = math.sqrt(math.exp(base)) if nobs[i] > 0 and base == base else 0.0


@njit(cache=True)
def combine_scores(
    healthy: np.ndarray,
    asset: np.ndarray,
    n_assets: int,
    venue: np.ndarray,
    n_venues: int,
    s: np.ndarray,
    aux: np.ndarray,
    weights: np.ndarray,
    min_books: int,
    book_lvs: np.ndarray,
    book_points: np.ndarray,
    asset_lvs: np.ndarray,
    asset_points: np.ndarray,
    asset_breadth: np.ndarray,
    market: np.ndarray,
) -> None:
    """Breadth, LVS and points for every book, every asset and the market.

    Book breadth is leave-one-out: the beta-weighted share of the *other* healthy books
    of the same asset, of the same venue and of the market that are stressed (s_D >= 0.5
    or L >= 40), the largest of the three, counted only over groups with at least
    ``min_books`` books (a book alone cannot broaden its own stress).
    ``market``: [lvs, 7 points..., breadth].
    """
    n = healthy.shape[0]
    a_bf = np.zeros(n_assets)
    a_b = np.zeros(n_assets)
    a_n = np.zeros(n_assets, dtype=np.int64)
    v_bf = np.zeros(n_venues)
    v_b = np.zeros(n_venues)
    v_n = np.zeros(n_venues, dtype=np.int64)
    m_bf = 0.0
    m_b = 0.0
    m_n = 0
    for i in range(n):
        if not healthy[i]:
            continue
        beta = aux[i, 3]
        flag = aux[i, 2]
        a = asset[i]
        if 0 <= a < n_assets:
            a_bf[a] += beta * flag
            a_b[a] += beta
            a_n[a] += 1
        v = venue[i]
        if 0 <= v < n_venues:
            v_bf[v] += beta * flag
            v_b[v] += beta
            v_n[v] += 1
        m_bf += beta * flag
        m_b += beta
        m_n += 1
    for i in range(n):
        if not healthy[i]:
            book_lvs[i] = np.nan
            for c in range(N_POINTS):
                book_points[i, c] = np.nan
            continue
        beta = aux[i, 3]
        flag = aux[i, 2]
        b = 0.0
        a = asset[i]
        if 0 <= a < n_assets and a_n[a] - 1 >= min_books - 1 and a_b[a] - beta > 0.0:
            b = max(b, (a_bf[a] - beta * flag) / (a_b[a] - beta))
        v = venue[i]
        if 0 <= v < n_venues and v_n[v] - 1 >= min_books - 1 and v_b[v] - beta > 0.0:
            b = max(b, (v_bf[v] - beta * flag) / (v_b[v] - beta))
        if m_n - 1 >= min_books - 1 and m_b - beta > 0.0:
            b = max(b, (m_bf - beta * flag) / (m_b - beta))
        s_b = ramp(b, 0.15, 0.5)
        local = aux[i, 0]
        lvs = min(100.0, local * (1.0 + 0.5 * s_b))
        # override: a 1% depth collapse with a wide spread is a vacuum whatever else says
        if aux[i, 1] >= 0.9 and s[i, K_SPREAD] >= 0.5 and lvs < 80.0:
            lvs = 80.0
        total = 0.0
        for c in range(N_LOCAL):
            p = 100.0 * weights[c] * s[i, c]
            book_points[i, c] = p
            total += p
        book_points[i, K_BREADTH] = lvs - total
        book_lvs[i] = lvs
    # assets and market: beta-weighted mean of the book points, times (1 + 0.5 s_B)
    a_w = np.zeros(n_assets)
    a_cnt = np.zeros(n_assets, dtype=np.int64)
    for a in range(n_assets):
        for c in range(N_POINTS):
            asset_points[a, c] = 0.0
    m_points = np.zeros(N_POINTS)
    m_w = 0.0
    for i in range(n):
        if not healthy[i]:
            continue
        w = aux[i, 3] if m_b > 0.0 else 1.0
        a = asset[i]
        if 0 <= a < n_assets:
            wa = aux[i, 3] if a_b[a] > 0.0 else 1.0
            for c in range(N_POINTS):
                asset_points[a, c] += wa * book_points[i, c]
            a_w[a] += wa
            a_cnt[a] += 1
        for c in range(N_POINTS):
            m_points[c] += w * book_points[i, c]
        m_w += w
    for a in range(n_assets):
        if a_cnt[a] == 0 or a_w[a] <= 0.0:
            asset_lvs[a] = np.nan
            asset_breadth[a] = np.nan
            for c in range(N_POINTS):
                asset_points[a, c] = np.nan
            continue
        total = 0.0
        for c in range(N_POINTS):
            asset_points[a, c] /= a_w[a]
            total += asset_points[a, c]
        breadth = a_bf[a] / a_b[a] if a_b[a] > 0.0 else 0.0
        asset_breadth[a] = breadth
        s_b = ramp(breadth, 0.15, 0.5) if a_n[a] >= min_books else 0.0
        lvs = min(100.0, total * (1.0 + 0.5 * s_b))
        asset_points[a, K_BREADTH] += lvs - total
        asset_lvs[a] = lvs
    if m_n == 0 or m_w <= 0.0:
        for c in range(N_POINTS + 2):
            market[c] = np.nan
        return
    total = 0.0
    for c in range(N_POINTS):
        m_points[c] /= m_w
        total += m_points[c]
    breadth = m_bf / m_b if m_b > 0.0 else 0.0
    s_b = ramp(breadth, 0.15, 0.5) if m_n >= min_books else 0.0
    lvs = min(100.0, total * (1.0 + 0.5 * s_b))
    m_points[K_BREADTH] += lvs - total
    market[0] = lvs
    for c in range(N_POINTS):
        market[1 + c] = m_points[c]
    market[1 + N_POINTS] = breadth


@njit(cache=True)
def step_states(
    now_s: float,
    value: np.ndarray,
    state: np.ndarray,
    timers: np.ndarray,
    enter: np.ndarray,
    enter_s: np.ndarray,
    exit_: np.ndarray,
    exit_s: np.ndarray,
    min_dwell_s: float,
) -> int:
    """Advance every entity's state by one tick; returns how many changed.

    ``value`` NaN means no score (DATA). ``timers[i]``: entered at, WATCH/WARNING/CRITICAL
    condition true since (NaN: not true now), exit condition true since.

    - escalate at once to the highest level whose enter condition (score >= enter[k])
      has held for enter_s[k];
    - de-escalate one level at a time: the score below the level's exit point for
      exit_s, and at least min_dwell_s in the level;
    - no score: DATA, except that WARNING and CRITICAL are held (no decay on silence);
      a score again after DATA starts from NORMAL.
    """
    changed = 0
    for i in range(value.shape[0]):
        v = value[i]
        s = state[i]
        before = s
        if v != v:
            timers[i, 1] = np.nan
            timers[i, 2] = np.nan
            timers[i, 3] = np.nan
            timers[i, 4] = np.nan
            if s not in (WARNING, CRITICAL, DATA):
                s = DATA
                timers[i, 0] = now_s
        else:
            if s == DATA:
                s = NORMAL
                timers[i, 0] = now_s
            for k in range(3):
                if v >= enter[k]:
                    if timers[i, 1 + k] != timers[i, 1 + k]:
                        timers[i, 1 + k] = now_s
                else:
                    timers[i, 1 + k] = np.nan
            target = s
            for k in range(2, -1, -1):
                since = timers[i, 1 + k]
                if k + 1 > s and since == since and now_s - since >= enter_s[k]:
                    target = k + 1
                    break
            if target > s:
                s = target
                timers[i, 0] = now_s
                timers[i, 4] = np.nan
            elif s >= WATCH:
                if v < exit_[s - 1]:
                    if timers[i, 4] != timers[i, 4]:
                        timers[i, 4] = now_s
                else:
                    timers[i, 4] = np.nan
                below = timers[i, 4]
                if (
                    below == below
                    and now_s - below >= exit_s[s - 1]
                    and now_s - timers[i, 0] >= min_dwell_s
                ):
                    s -= 1
                    timers[i, 0] = now_s
                    # the lower level's exit clock starts now if the score is below it too
                    timers[i, 4] = now_s if s >= WATCH and v < exit_[s - 1] else np.nan
        state[i] = s
        if s != before:
            changed += 1
    return changed


@njit(cache=True, nogil=True)
def score_tick(
    now_s: float,
    healthy: np.ndarray,
    asset: np.ndarray,
    n_assets: int,
    venue: np.ndarray,
    n_venues: int,
    s: np.ndarray,
    aux: np.ndarray,
    weights: np.ndarray,
    min_books: int,
    display_alpha: float,
    enter: np.ndarray,
    enter_s: np.ndarray,
    exit_: np.ndarray,
    exit_s: np.ndarray,
    min_dwell_s: float,
    state: np.ndarray,
    timers: np.ndarray,
    display: np.ndarray,
    scored: np.ndarray,
    book_points: np.ndarray,
    asset_points: np.ndarray,
    asset_breadth: np.ndarray,
    market: np.ndarray,
    values: np.ndarray,
    smoothed: np.ndarray,
    before: np.ndarray,
) -> int:
    """The score half of the analytics tick in one call: :func:`combine_scores`, every
    entity's score in ``values`` (books, then assets, then the market), its display EWMA
    (``smoothed``; ``display`` is the previous one, a non-finite one restarts at the
    score, and it is updated), the states before (``before``) and after
    :func:`step_states`. ``scored`` (ever had a score) is updated for the entities whose
    state did not move: the caller reads it for the moved ones first (an entity's first
    score is not an event), then sets them. Returns how many states moved.
    """
    n = healthy.shape[0]
    book_lvs = values[:n]
    asset_lvs = values[n : n + n_assets]
    combine_scores(
        healthy, asset, n_assets, venue, n_venues, s, aux, weights, min_books,
        book_lvs, book_points, asset_lvs, asset_points, asset_breadth, market,
    )  # fmt: skip
    values[n + n_assets] = market[0]
    for e in range(values.shape[0]):
        prev = display[e]
        v = values[e]
        smoothed[e] = v if not np.isfinite(prev) else prev + display_alpha * (v - prev)
        display[e] = smoothed[e]
        before[e] = state[e]
    moved = step_states(now_s, values, state, timers, enter, enter_s, exit_, exit_s, min_dwell_s)
    for e in range(values.shape[0]):
        if state[e] == before[e] and np.isfinite(values[e]):
            scored[e] = True
    return moved


ENTRY_KERNELS = (
    group_consensus,
    cross_venue,
    asset_rollup,
    book_components,
    combine_scores,
    step_states,
    score_tick,
)


def warm_up() -> None:
    """Call every kernel once on one scratch book (compiles them, or loads numba's cache)."""
    one = np.zeros(1, dtype=np.int64)
    yes = np.ones(1, dtype=np.bool_)
    val = np.ones(1)
    group_consensus(one, 1, val, yes, 3.0, 5.0, np.empty(1), np.empty(1), np.empty(1, np.int64))
    bands = np.array([0.01])
    depth = np.ones((1, 1))
    asset_rollup(
        one, 1, one, yes, yes, val, val, val, val, val, depth, depth, bands, 0, val, 50.0,
        np.empty((1, 5), dtype=np.int64), np.empty((1, 7)),
    )  # fmt: skip
    n_feat = feature_layout(1, 1)[6]
    s_out = np.empty((1, N_LOCAL))
    aux = np.zeros((1, 5))
    # the stage passes the exhausted flags as a strided view (layout "A"): a second
    # signature, which would otherwise load (or compile) on the live loop's first tick
    for exhausted in (np.zeros((1, 1), dtype=np.bool_), np.zeros((1, 2, 2), np.bool_)[:, :, 0]):
        book_components(
            1.0, 1.0, yes, np.zeros((1, n_feat)), val, exhausted,
            np.zeros(1), val, 0, np.ones(n_feat), np.zeros(1, dtype=np.int8), np.ones(13),
            np.full((1, n_feat, 2), np.nan), np.zeros(1, dtype=np.int64),
            np.full((1, n_feat, 2), np.nan), np.full((1, n_feat, 2), -1, dtype=np.int64),
            np.zeros((1, n_feat), dtype=np.int64), np.full((1, n_feat), np.nan),
            np.zeros((1, n_feat)), np.zeros(1, dtype=np.int64),
            np.full((1, 3), np.nan), np.full((1, 3), np.nan), s_out, aux,
        )  # fmt: skip
    # cross_venue reads the tick sample's columns: views of one metric matrix, contiguous or
    # strided depending on the book count; both shapes of signature are made here
    n_feat = feature_layout(4, 3)[6]
    for n in (1, 2):
        m = np.ones((n, 6 + 6 * 4 + 4 * 3))
        bands = m[:, 6:30].reshape(n, 4, 6)
        slips = m[:, 30:].reshape(n, 3, 4)
        some = np.ones(n)
        cross_venue(
            np.ones(n, dtype=np.bool_), m[:, 2], some, some, some, some, bands[:, :, 2:4],
            bands[:, :, 0:2], m[:, 3], slips[:, :, 0::2], np.zeros(n, dtype=np.int64), 1,
            np.zeros(n, dtype=np.bool_), some, 3.0, 5.0, 2, np.ones(2), 1.0,
            np.full((n, 2), np.nan), np.empty((2, n), dtype=np.bool_), np.empty((N_X, n)),
            np.empty((N_G, 1)), np.zeros((2, 1), dtype=np.int64), np.empty((n, n_feat)),
        )  # fmt: skip
    combine_scores(
        yes, one, 1, one, 1, s_out, aux, np.ones(N_LOCAL), 3, np.empty(1),
        np.empty((1, N_POINTS)), np.empty(1), np.empty((1, N_POINTS)), np.empty(1),
        np.empty(N_POINTS + 2),
    )  # fmt: skip
    step_states(
        1.0, val, np.zeros(1, dtype=np.int8), np.full((1, 5), np.nan), np.ones(3), np.ones(3),
        np.zeros(3), np.ones(3), 1.0,
    )  # fmt: skip
    score_tick(
        1.0, yes, one, 1, one, 1, s_out, aux, np.ones(N_LOCAL), 3, 0.5, np.ones(3), np.ones(3),
        np.zeros(3), np.ones(3), 1.0, np.zeros(3, dtype=np.int8), np.full((3, 5), np.nan),
        np.full(3, np.nan), np.zeros(3, dtype=np.bool_), np.empty((1, N_POINTS)),
        np.empty((1, N_POINTS)), np.empty(1), np.empty(N_POINTS + 2), np.empty(3), np.empty(3),
        np.empty(3, dtype=np.int8),
    )  # fmt: skip
