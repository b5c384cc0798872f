"""Plain-Python twins of ``monitor.analytics.kernels``: the oracle of the property tests.

Written for clarity, not speed: per-group lists and ``statistics.median``, one function
per kernel with the same arguments (arrays are read and the state arrays updated in
place, exactly as the kernels do).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict

import numpy as np

from monitor.analytics.kernels import (
    CRITICAL,
    DATA,
    G_CONSENSUS,
    G_PERP,
    G_PERP_MEDIAN,
    G_SPOT,
    G_SPOT_MEDIAN,
    K_BREADTH,
    K_SPREAD,
    MAD_TO_SIGMA,
    N_LOCAL,
    N_POINTS,
    NORMAL,
    WARNING,
    WATCH,
    X_BASIS,
    X_D1_TOTAL,
    X_DISLOCATION,
    X_FUNDING_ANNUAL,
    X_INDEX_DEV,
    X_MARK_BASIS,
    X_MID_USD,
    X_SENSITIVITY,
)


def ramp(x: float, a: float, b: float) -> float:
    if math.isnan(x):
        return 0.0
    return min(1.0, max(0.0, (x - a) / (b - a)))


def _finite_positive(x: float) -> bool:
    return not math.isnan(x) and x > 0.0


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
    groups: dict[int, list[float]] = defaultdict(list)
    for g, v, u in zip(group.tolist(), value.tolist(), use.tolist(), strict=True):
        if u and 0 <= g < n_groups and _finite_positive(v):
            groups[g].append(v)
    for g in range(n_groups):
        vals = sorted(groups.get(g, []))
        out_count[g] = len(vals)
        if not vals:
            out_consensus[g] = math.nan
            out_median[g] = math.nan
            continue
        med = statistics.median(vals)
        scale = max(
            MAD_TO_SIGMA * statistics.median(abs(v - med) for v in vals),
            med * min_scale_bps * 1e-4,
        )
        lo, hi = med - clip_mads * scale, med + clip_mads * scale
        kept = [v for v in vals if lo <= v <= hi]
        total = 0.0
        for v in kept:
            total += v
        out_median[g] = med
        out_consensus[g] = total / len(kept) if kept else med


def _nan_min(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)


def _nan_max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _ratio_bps(num: float, den: float) -> float:
    """(num / den - 1) x 1e4 with IEEE division (x / 0 is inf or NaN, as numpy's)."""
    return float((np.float64(num) / np.float64(den) - 1.0) * 1e4)


@np.errstate(invalid="ignore", divide="ignore")  # NaN and inf as numpy gives them
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
    n = len(valid)
    n_bands = depth_usd.shape[1]
    i_spread, i_obi, i_disl, i_slip = n_bands, n_bands + 1, n_bands + 2, n_bands + 3
    scored = [bool(valid[i]) and float(mid[i]) > 0.0 for i in range(n)]
    healthy = [scored[i] and float(fx[i]) > 0.0 and math.isfinite(float(fx[i])) for i in range(n)]
    mid_usd = np.array([float(mid[i]) * float(fx[i]) if healthy[i] else math.nan for i in range(n)])
    spot_use = np.array([healthy[i] and not is_perp[i] for i in range(n)], dtype=np.bool_)
    perp_use = np.array([healthy[i] and bool(is_perp[i]) for i in range(n)], dtype=np.bool_)
    spot, spot_med, spot_n = np.empty(n_assets), np.empty(n_assets), np.zeros(n_assets, np.int64)
    perp, perp_med, perp_n = np.empty(n_assets), np.empty(n_assets), np.zeros(n_assets, np.int64)
    group_consensus(
        asset, n_assets, mid_usd, spot_use, clip_mads, min_scale_bps, spot, spot_med, spot_n
    )
    group_consensus(
        asset, n_assets, mid_usd, perp_use, clip_mads, min_scale_bps, perp, perp_med, perp_n
    )
    groups[G_SPOT], groups[G_SPOT_MEDIAN] = spot, spot_med
    groups[G_PERP], groups[G_PERP_MEDIAN] = perp, perp_med
    groups[G_CONSENSUS] = [spot[a] if spot_n[a] > 0 else perp[a] for a in range(n_assets)]
    counts[0], counts[1] = spot_n, perp_n
    for i in range(n):
        flags[0, i], flags[1, i] = scored[i], healthy[i]
        a, perp_row = int(asset[i]), bool(is_perp[i])
        live = perp_row and healthy[i]
        spot_ref = float(spot[a])
        disl = _ratio_bps(mid_usd[i], perp[a] if perp_row else spot_ref)
        basis = _ratio_bps(mid_usd[i], spot_ref) if perp_row else math.nan
        m, ix, fr = float(mark[i]), float(index[i]), float(funding[i])
        rows[X_MID_USD, i] = mid_usd[i]
        rows[X_DISLOCATION, i] = disl
        rows[X_BASIS, i] = basis
        rows[X_MARK_BASIS, i] = (
            float((np.float64(mid[i]) - m) / np.float64(m) * 1e4) if live else math.nan
        )
        rows[X_INDEX_DEV, i] = _ratio_bps(ix * float(fx[i]), spot_ref) if live else math.nan
        rows[X_FUNDING_ANNUAL, i] = fr * float(periods_per_year[i])
        if live and math.isfinite(ix) and ix > 0.0:
            now_basis = float(mid[i]) - ix
            for w in range(mark_ma.shape[1]):
                ma = float(mark_ma[i, w])
                mark_ma[i, w] = (
                    now_basis
                    if not math.isfinite(ma)
                    else ma + float(mark_alpha[w]) * (now_basis - ma)
                )
            ppy = float(periods_per_year[i])
            hours = 24.0 * 365.0 / (ppy if math.isfinite(ppy) else 1095.0)
            left = hours - utc_hours % hours
            price1 = ix * (1.0 + (fr if math.isfinite(fr) else 0.0) * left / hours)
            marks = []
            for w in range(2):
                b = ix + float(mark_ma[i, w])
                marks.append(
                    _nan_max(_nan_min(price1, b), _nan_min(_nan_max(price1, b), float(mid[i])))
                )
            rows[X_SENSITIVITY, i] = _ratio_bps(marks[0], marks[1])
        else:
            mark_ma[i, :] = math.nan
            rows[X_SENSITIVITY, i] = math.nan

        def depth(k: int, side: int, row: int = i) -> float:
            d = float(depth_usd[row, k, side])
            return d if math.isfinite(d) else float(depth_quote[row, k, side])

        raw[i, :] = math.nan
        for k in range(n_bands):
            raw[i, k] = _nan_max(_nan_min(depth(k, 0), depth(k, 1)), 1.0)
        raw[i, i_spread] = _nan_max(float(spread_bps[i]), 1.0)
        q0, q1 = depth_quote[i, band_1pct, 0], depth_quote[i, band_1pct, 1]
        raw[i, i_obi] = (q0 - q1) / (q0 + q1)
        raw[i, i_disl] = basis if perp_row and math.isfinite(basis) else disl
        for k in range(slippage_bps.shape[1]):
            raw[i, i_slip + k] = _nan_max(float(slippage_bps[i, k, 0]), 0.1)
        rows[X_D1_TOTAL, i] = depth(band_1pct, 0) + depth(band_1pct, 1)


def interp_depth(bands: list[float], depth: list[float], offset: float) -> float:
    if not offset > 0.0:
        return 0.0
    points = [(0.0, 0.0), *zip(bands, depth, strict=True)]
    for (b0, d0), (b1, d1) in itertools.pairwise(points):
        if math.isnan(d1):
            return math.nan
        if offset <= b1:
            return d0 + (d1 - d0) * (offset - b0) / (b1 - b0)
    return points[-1][1]


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
    bands_l = bands.tolist()
    for a in range(n_assets):
        rows = [i for i in range(len(asset)) if asset[i] == a]
        ok = [i for i in rows if healthy[i]]
        out_int[a] = [-1, -1, -1, len(ok), len(rows)]
        out_float[a] = [math.nan, math.nan, 0.0, 0.0, math.nan, math.nan, math.nan]
        # outlier: the largest |dislocation| at or beyond the threshold (first on ties)
        best = 0.0
        for i in ok:
            d = float(dislocation[i])
            if not math.isnan(d) and abs(d) >= outlier_bps and abs(d) > best:
                best = abs(d)
                out_int[a, 0] = i
                out_float[a, 0] = d
        priced = [i for i in ok if not math.isnan(mid_usd[i])]
        if priced:
            lowest = min(priced, key=lambda i: (mid_usd[i], i))
            out_int[a, 1] = lowest
            others = [i for i in priced if venue[i] != venue[lowest]]
            if others:
                second = min(others, key=lambda i: (mid_usd[i], i))
                out_int[a, 2] = second
                out_float[a, 1] = (mid_usd[lowest] / mid_usd[second] - 1.0) * 1e4
        r = float(consensus[a])
        for i in ok:
            db, da = float(depth_bid[i, band_1pct]), float(depth_ask[i, band_1pct])
            if not (math.isnan(db) or math.isnan(da)):
                out_float[a, 2] += db + da
            m = float(mid_usd[i])
            if _finite_positive(r) and _finite_positive(m):
                bid_l, ask_l = depth_bid[i].tolist(), depth_ask[i].tolist()
                lo_edge, hi_edge = 0.99 * r, 1.01 * r
                bid = interp_depth(bands_l, bid_l, (m - lo_edge) / m)
                if m > hi_edge:
                    bid -= interp_depth(bands_l, bid_l, (m - hi_edge) / m)
                ask = interp_depth(bands_l, ask_l, (hi_edge - m) / m)
                if m < lo_edge:
                    ask -= interp_depth(bands_l, ask_l, (lo_edge - m) / m)
                for x in (bid, ask):
                    if _finite_positive(x):
                        out_float[a, 3] += x
        for col, column in ((4, index_dev), (5, peg)):
            vals = [float(column[i]) for i in ok if not math.isnan(column[i])]
            if vals:
                worst = vals[0]
                for x in vals[1:]:
                    if abs(x) > abs(worst):
                        worst = x
                out_float[a, col] = worst
        perp_basis = [float(basis[i]) for i in ok if is_perp[i] and not math.isnan(basis[i])]
        if perp_basis:
            out_float[a, 6] = statistics.median(perp_basis)


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
    hl_mu, hl_sigma, rebaseline_after, warmup, resync_quiet, tau_w = params[:6].tolist()
    weights = params[6:12].tolist()
    n_bands = len(band_weights)
    n_notional = len(log_notionals)
    i_spread, i_obi, i_disl, i_slip = n_bands, n_bands + 1, n_bands + 2, n_bands + 3
    i_wnet = i_slip + n_notional
    i_wcancel = i_wnet + 1
    smooth = ring.shape[2]

    def z(i: int, f: int, x: float) -> float:
        return float((x - mu[i, f]) / max(MAD_TO_SIGMA * mad[i, f], sigma_min[f]))

    for i in range(len(healthy)):
        if not healthy[i]:
            ring_n[i] = 0
            clock[i, 1] = math.nan
            flow[i, 0] = math.nan
            s_out[i] = math.nan
            aux_out[i] = [math.nan, math.nan, 0.0, 0.0, -1.0]
            continue
        if math.isnan(clock[i, 0]):
            clock[i, 0] = now_s
        if math.isnan(clock[i, 1]):
            clock[i, 1] = now_s
            flow[i, 1], flow[i, 2] = 0.0, math.nan
        d1, prev = float(d1_total[i]), float(flow[i, 0])
        alpha = 1.0 - math.exp(-dt_s / tau_w) if dt_s > 0.0 else 0.0
        if dt_s > 0.0 and not math.isnan(prev) and not math.isnan(d1):
            change = d1 - prev
            flow[i, 1] += alpha * (max(-change, 0.0) / dt_s - flow[i, 1])
        flow[i, 0] = d1
        ring[i, :i_wnet, int(ring_n[i]) % smooth] = raw[i, :i_wnet]
        ring_n[i] += 1
        held = ring[i, :, : min(int(ring_n[i]), smooth)]
        x = []
        for f in range(i_wnet):
            vals = [v for v in held[f].tolist() if not math.isnan(v)]
            x.append(statistics.median(vals) if vals else math.nan)
            # the kernel's sorted window: the held values by value, equal ones by slot
            ordered = sorted(
                ((v, j) for j, v in enumerate(held[f].tolist()) if not math.isnan(v)),
                key=lambda entry: entry[0],
            )
            window[i, f] = math.nan
            window_slot[i, f] = -1
            window[i, f, : len(ordered)] = [v for v, _ in ordered]
            window_slot[i, f, : len(ordered)] = [j for _, j in ordered]
            window_n[i, f] = len(ordered)
        level = x[band_1pct]
        if not math.isnan(level):
            m60 = flow[i, 2]
            flow[i, 2] = level if math.isnan(m60) else m60 + alpha * (level - m60)
        x.append(flow[i, 2] - level)
        if nobs[i] > 0 and math.exp(mu[i, band_1pct]) > 0.0:
            x.append(math.log(max(flow[i, 1] * tau_w / math.exp(mu[i, band_1pct]), 1e-4)))
        else:
            x.append(math.nan)
        s = [0.0] * N_LOCAL
        s_d1 = 0.0
        pick = -1
        if nobs[i] > 0 and now_s - clock[i, 0] >= warmup:
            for k in range(n_bands):
                term = ramp(-z(i, k, x[k]), 2.0, 6.0) if x[k] < mu[i, k] + math.log(0.6) else 0.0
                s[0] += band_weights[k] * term
                if k == band_1pct:
                    s_d1 = term
            if now_s - clock[i, 1] >= resync_quiet:
                s[1] = max(
                    ramp(z(i, i_wnet, x[i_wnet]), 2.0, 5.0),
                    ramp(z(i, i_wcancel, x[i_wcancel]), 2.0, 5.0),
                )
            s[2] = ramp(z(i, i_spread, x[i_spread]), 2.0, 6.0)
            target = mu[i, band_1pct] + math.log(0.25)
            dists = [abs(q - target) for q in log_notionals.tolist()]
            if n_notional and not math.isnan(target):
                pick = min(range(n_notional), key=lambda q: (dists[q], q))
            if pick >= 0:
                if exhausted[i, pick]:
                    s[3] = 1.0
                else:
                    ln_ratio = x[i_slip + pick] - mu[i, i_slip + pick]
                    s[3] = ramp(ln_ratio, math.log(2.0), math.log(10.0))
            s[4] = ramp(abs(x[i_obi] - mu[i, i_obi]), 0.3, 0.7)
            s[5] = ramp(abs(x[i_disl] - mu[i, i_disl]) / max(mad[i, i_disl], 5.0), 3.0, 10.0)
        s_out[i] = s
        local = 100.0 * sum(w * v for w, v in zip(weights, s, strict=True))
        aux_out[i, 0] = local
        aux_out[i, 1] = s_d1
        aux_out[i, 2] = 1.0 if s[0] >= 0.5 or local >= 40.0 else 0.0
        aux_out[i, 4] = pick
        elevated = WATCH <= prev_state[i] <= CRITICAL
        if not elevated:
            clock[i, 2] = math.nan
        elif math.isnan(clock[i, 2]):
            clock[i, 2] = now_s
        rebaseline = elevated and now_s - clock[i, 2] > rebaseline_after
        if not elevated or rebaseline:
            h_mu = hl_sigma if rebaseline else hl_mu
            start = 1.0 / (nobs[i] + 1.0) if now_s - clock[i, 0] < params[12] else 0.0
            a_mu = max(1.0 - 2.0 ** (-dt_s / h_mu) if dt_s > 0.0 else 0.0, start)
            a_sig = max(1.0 - 2.0 ** (-dt_s / hl_sigma) if dt_s > 0.0 else 0.0, start)
            for f, v in enumerate(x):
                if math.isnan(v):
                    continue
                if nobs[i] == 0 or math.isnan(mu[i, f]):
                    mu[i, f], mad[i, f] = v, 0.0
                else:
                    sig = max(MAD_TO_SIGMA * mad[i, f], sigma_min[f])
                    mu[i, f] += a_mu * min(max(v - mu[i, f], -2.0 * sig), 2.0 * sig)
                    mad[i, f] += a_sig * (min(abs(v - mu[i, f]), 3.0 * sig) - mad[i, f])
            nobs[i] += 1
        base = mu[i, band_1pct]
        aux_out[i, 3] = math.sqrt(math.exp(base)) if nobs[i] > 0 and not math.isnan(base) else 0.0


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
    ok = [i for i in range(len(healthy)) if healthy[i]]
    beta = {i: float(aux[i, 3]) for i in ok}
    flag = {i: float(aux[i, 2]) for i in ok}

    def share(members: list[int], leave_out: int | None) -> float:
        others = [j for j in members if j != leave_out]
        if len(others) < min_books - (1 if leave_out is not None else 0):
            return 0.0
        total = 0.0
        stressed = 0.0
        for j in members:
            total += beta[j]
            stressed += beta[j] * flag[j]
        if leave_out is not None:
            total -= beta[leave_out]
            stressed -= beta[leave_out] * flag[leave_out]
        return stressed / total if total > 0.0 else 0.0

    by_asset: dict[int, list[int]] = defaultdict(list)
    by_venue: dict[int, list[int]] = defaultdict(list)
    for i in ok:
        if 0 <= asset[i] < n_assets:
            by_asset[int(asset[i])].append(i)
        if 0 <= venue[i] < n_venues:
            by_venue[int(venue[i])].append(i)
    for i in range(len(healthy)):
        if i not in beta:
            book_lvs[i] = math.nan
            book_points[i] = math.nan
            continue
        b = 0.0
        if 0 <= asset[i] < n_assets:
            b = max(b, share(by_asset[int(asset[i])], i))
        if 0 <= venue[i] < n_venues:
            b = max(b, share(by_venue[int(venue[i])], i))
        b = max(b, share(ok, i))
        local = float(aux[i, 0])
        lvs = min(100.0, local * (1.0 + 0.5 * ramp(b, 0.15, 0.5)))
        if aux[i, 1] >= 0.9 and s[i, K_SPREAD] >= 0.5:
            lvs = max(lvs, 80.0)
        points = [100.0 * weights[c] * s[i, c] for c in range(N_LOCAL)]
        total = 0.0
        for p in points:
            total += p
        book_points[i] = [*points, lvs - total]
        book_lvs[i] = lvs

    def aggregate(members: list[int]) -> tuple[float, list[float], float]:
        total_beta = sum(beta[j] for j in members)
        weight = {j: (beta[j] if total_beta > 0.0 else 1.0) for j in members}
        w_sum = 0.0
        points = [0.0] * N_POINTS
        for j in members:
            for c in range(N_POINTS):
                points[c] += weight[j] * book_points[j, c]
            w_sum += weight[j]
        points = [p / w_sum for p in points]
        total = 0.0
        for p in points:
            total += p
        breadth = share(members, None) if len(members) >= min_books else 0.0
        raw_breadth = (
            sum(beta[j] * flag[j] for j in members) / total_beta if total_beta > 0.0 else 0.0
        )
        lvs = min(100.0, total * (1.0 + 0.5 * ramp(breadth, 0.15, 0.5)))
        points[K_BREADTH] += lvs - total
        return lvs, points, raw_breadth

    for a in range(n_assets):
        members = by_asset.get(a, [])
        if not members:
            asset_lvs[a] = math.nan
            asset_points[a] = math.nan
            asset_breadth[a] = math.nan
            continue
        asset_lvs[a], asset_points[a], asset_breadth[a] = aggregate(members)
    if not ok:
        market[:] = math.nan
        return
    lvs, points, breadth = aggregate(ok)
    market[:] = [lvs, *points, breadth]


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
    changed = 0
    for i in range(len(value)):
        v = float(value[i])
        before = s = int(state[i])
        entered, since, below = timers[i, 0], list(timers[i, 1:4]), timers[i, 4]
        if math.isnan(v):
            since, below = [math.nan] * 3, math.nan
            if s not in (WARNING, CRITICAL, DATA):
                s, entered = DATA, now_s
        else:
            if s == DATA:
                s, entered = NORMAL, now_s
            since = [
                (now_s if math.isnan(t) else t) if v >= enter[k] else math.nan
                for k, t in enumerate(since)
            ]
            held = [
                k + 1
                for k in range(3)
                if not math.isnan(since[k]) and now_s - since[k] >= enter_s[k]
            ]
            if held and max(held) > s:
                s, entered, below = max(held), now_s, math.nan
            elif s >= WATCH:
                below = (now_s if math.isnan(below) else below) if v < exit_[s - 1] else math.nan
                if (
                    not math.isnan(below)
                    and now_s - below >= exit_s[s - 1]
                    and now_s - entered >= min_dwell_s
                ):
                    s, entered = s - 1, now_s
                    below = now_s if s >= WATCH and v < exit_[s - 1] else math.nan
        timers[i] = [entered, *since, below]
        state[i] = s
        changed += s != before
    return changed


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
    n = len(healthy)
    book_lvs = np.empty(n)
    asset_lvs = np.empty(n_assets)
    combine_scores(
        healthy, asset, n_assets, venue, n_venues, s, aux, weights, min_books,
        book_lvs, book_points, asset_lvs, asset_points, asset_breadth, market,
    )  # fmt: skip
    values[:] = np.concatenate((book_lvs, asset_lvs, market[:1]))
    fresh = ~np.isfinite(display)
    smoothed[:] = np.where(fresh, values, display + display_alpha * (values - display))
    display[:] = smoothed
    before[:] = state
    moved = step_states(now_s, values, state, timers, enter, enter_s, exit_, exit_s, min_dwell_s)
    scored |= (state == before) & np.isfinite(values)
    return moved
