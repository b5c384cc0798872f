"""Market paths of a scenario on its step grid: fair values, FX, venue mids, spreads, depth
and cancel multipliers per book, perp mark/index/funding, and the ground truth around them.

Everything is a numpy array over the steps (``step_ns`` apart, 500 ms by default), drawn
from per-(venue, instrument, process) PCG64 streams of one master seed: the same seed gives
the same paths, whatever else is generated alongside.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feeds.sim.scenario import spec
from feeds.sim.scenario.spec import MINUTE_NS, SECOND_NS, BookSpec
from monitor.domain import InstrumentKind, Venue

YEAR_S = 365.25 * 86400.0


def rng_for(seed: int, *parts: str) -> np.random.Generator:
    """The PCG64 stream of one (venue, instrument, process) under the master seed."""
    key = zlib.crc32(":".join(parts).encode())
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))


def _lin(t: np.ndarray, t0: float, t1: float, v0: float, v1: float) -> np.ndarray:
    return np.asarray(v0 + (v1 - v0) * np.clip((t - t0) / (t1 - t0), 0.0, 1.0), dtype=np.float64)


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.asarray(x * x * (3.0 - 2.0 * x), dtype=np.float64)


def _window(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """1 inside [start, end], 0 outside, with smooth ramps of ``ramp`` (same units as t)."""
    return np.asarray(_smooth((t - start + ramp) / ramp) * _smooth((end + ramp - t) / ramp))


def _ar1(
    rng: np.random.Generator, n: int, phi: np.ndarray | float, sd: np.ndarray | float
) -> np.ndarray:
    """AR(1) with (possibly time-varying) coefficient and stationary sd."""
    phi_a = np.broadcast_to(np.asarray(phi, dtype=np.float64), (n,))
    sd_a = np.broadcast_to(np.asarray(sd, dtype=np.float64), (n,))
    eps = rng.standard_normal(n) * sd_a * np.sqrt(np.maximum(1.0 - phi_a**2, 1e-12))
    out = np.empty(n)
    x = rng.standard_normal() * sd_a[0]
    for i in range(n):  # a plain loop over ~20k steps: a few ms
        x = phi_a[i] * x + eps[i]
        out[i] = x
    return out


@dataclass
class BookPath:
    """What one book does, step by step (prices in its quote currency)."""

    spec: BookSpec
    mid: np.ndarray
    half_spread: np.ndarray  # quote units
    depth_bid: np.ndarray  # multiplier m(t) of the bid profile (before band exponents)
    depth_ask: np.ndarray
    cancel: np.ndarray  # cancel/refresh rate multiplier
    quote_usd: np.ndarray  # USD value of one unit of the quote currency
    mid_usd_true: np.ndarray  # the book's fair USD price
    mark: np.ndarray | None = None
    index: np.ndarray | None = None
    funding: np.ndarray | None = None
    walls: list[tuple[int, int, float, float]] = field(default_factory=list)
    # (first step, last step, price, usd) spoof walls on the bid side
    silent: list[tuple[int, int]] = field(default_factory=list)  # outages (step ranges)


@dataclass
class Paths:
    kind: str
    seed: int
    start_ns: int
    step_ns: int
    n: int
    t_ns: np.ndarray
    minutes: np.ndarray  # minutes from T0 (collapse) or from the day start (calm)
    fair_usd: dict[str, np.ndarray]
    usdt_usd: np.ndarray
    books: list[BookPath]
    events: list[dict[str, Any]]  # nuisance events (calm) / phases (collapse)
    timeline: float = 1.0  # collapse phases stretched by this factor
    # collapse: liquidated ladder buckets and the wicks' Hawkes bursts (ground truth)
    liquidations: list[dict[str, Any]] = field(default_factory=list)
    wicks: list[dict[str, Any]] = field(default_factory=list)


def _fair_paths(
    seed: int, assets: list[str], minutes: np.ndarray, step_s: float, collapse: bool
) -> dict[str, np.ndarray]:
    out = {}
    for name in assets:
        a = spec.ASSETS[name]
        rng = rng_for(seed, "fair", name, "gbm")
        sd = a.sigma_ann * np.sqrt(step_s / YEAR_S)
        log_f = np.cumsum(rng.standard_normal(len(minutes)) * sd)
        if collapse:
            log_f += _lin(minutes, -30.0, 0.0, 0.0, np.log(0.99))  # drift -1 % before T0
            down = np.log(1.0 - a.crash) * _smooth(
                (minutes - spec.CRASH_START_MIN) / (spec.CRASH_TROUGH_MIN - spec.CRASH_START_MIN)
            )
            up_x = _smooth((minutes - spec.CRASH_TROUGH_MIN - 0.5) / (spec.REBOUND_MIN - 36.0))
            crash = np.where(
                minutes < spec.CRASH_TROUGH_MIN + 0.5,
                down,
                np.log(1.0 - a.crash) + (np.log(1.0 - a.rebound) - np.log(1.0 - a.crash)) * up_x,
            )
            log_f += crash
        out[name] = a.price_usd * np.exp(log_f)
    return out


def _stress(minutes: np.ndarray, venue: Venue, major: bool) -> tuple[np.ndarray, ...]:
    """Depth multiplier, spread multiplier and cancel multiplier of the collapse (by venue)."""
    tau = 8.7 * (2.0 if venue == spec.V3 else 1.0)
    tau_rec = 6.5 * (2.0 if venue == spec.V3 else 1.0)
    m40 = 0.7 * np.exp(-30.0 / tau)
    m = np.ones_like(minutes)
    m = np.where(minutes >= 0.0, _lin(minutes, 0.0, 10.0, 1.0, 0.7), m)
    m = np.where(minutes >= 10.0, 0.7 * np.exp(-(minutes - 10.0) / tau), m)
    m = np.where(
        minutes >= 40.0, m40 + (1.0 - m40) * (1.0 - np.exp(-(minutes - 40.0) / tau_rec)), m
    )
    floor = spec.DEPTH_FLOOR[venue]
    if venue == spec.V1 and major:
        floor = spec.MAJOR_FLOOR_V1
    m = np.maximum(m, floor)
    peak = (40.0 if venue == spec.V1 else 20.0) if not major else 15.0
    w = np.ones_like(minutes)
    w = np.where(minutes >= 0.0, _lin(minutes, 0.0, 10.0, 1.0, 4.0), w)
    w = np.where(minutes >= 10.0, _lin(minutes, 10.0, 30.0, 4.0, 10.0), w)
    w = np.where(minutes >= 30.0, _lin(minutes, 30.0, 34.0, 10.0, peak), w)
    w = np.where(minutes >= 40.0, 1.0 + (peak - 1.0) * np.exp(-(minutes - 40.0) / 4.0), w)
    scale = {spec.V1: 1.0, spec.V2: 0.6, spec.V3: 0.4, spec.V4: 0.7}[venue]
    w = 1.0 + (w - 1.0) * scale
    c = np.ones_like(minutes)
    c = np.where((minutes >= 0.0) & (minutes < 10.0), 2.0, c)
    c = np.where((minutes >= 10.0) & (minutes < 40.0), 5.0, c)
    c = np.where(minutes >= 40.0, _lin(minutes, 40.0, 50.0, 5.0, 1.0), c)
    return m, w, c


def perp_mark(
    last: np.ndarray, index: np.ndarray, funding: np.ndarray, step_s: float
) -> np.ndarray:
    """Binance-style mark: the median of index x (1 + funding x time to funding), index + the
    2.5-min moving average of (last - index), and the last price."""
    n = len(last)
    window = max(1, int(150.0 / step_s))
    diff = np.concatenate([[0.0], np.cumsum(last - index)])
    lo = np.maximum(np.arange(n) + 1 - window, 0)
    ma = (diff[np.arange(n) + 1] - diff[lo]) / (np.arange(n) + 1 - lo)
    c1 = index * (1.0 + funding * (1.0 / 8.0))
    c2 = index + ma
    return np.asarray(np.median(np.stack([c1, c2, last]), axis=0), dtype=np.float64)


def hawkes_fills(
    rng: np.random.Generator,
    immigrants: np.ndarray,
    *,
    branching: float = spec.HAWKES_BRANCHING,
    decay_s: float = spec.HAWKES_DECAY_S,
    horizon_s: float = np.inf,
) -> np.ndarray:
    """Fill times (s, sorted) of a self-exciting sell flow: every fill, the immigrants' and
    their descendants', has Poisson(``branching``) children after Exp(``decay_s``) delays
    (the cluster form of a Hawkes process with an exponential kernel). Fills after
    ``horizon_s`` are dropped."""
    out = [np.asarray(immigrants, dtype=np.float64)]
    gen = out[0]
    while gen.size:
        kids = rng.poisson(branching, gen.size)
        if not kids.any():
            break
        parents = np.repeat(gen, kids)
        gen = parents + rng.exponential(decay_s, parents.size)
        gen = gen[gen <= horizon_s]
        out.append(gen)
    return np.sort(np.concatenate(out))


def walk_bps(notional: float, c1_side: float, gamma: float) -> float:
    """How far (bps) selling ``notional`` USD walks down a bid side whose cumulative depth is
    C(d) = c1_side x (d / 100 bp)^gamma to 2 %, then grows with exponent 0.4 (the book shape of
    the generator)."""
    if notional <= 0.0 or c1_side <= 0.0:
        return 0.0
    c2 = c1_side * 2.0**gamma
    if notional <= c2:
        return float(100.0 * (notional / c1_side) ** (1.0 / gamma))
    return float(200.0 * (notional / c2) ** (1.0 / 0.4))


def _ladder(oi_usd: float, price_usd: float) -> tuple[np.ndarray, np.ndarray]:
    """Bucket prices (USD, descending) and notionals of a lognormal long-liquidation ladder."""
    from statistics import NormalDist  # noqa: PLC0415

    k = spec.LIQ_BUCKETS
    z = np.array([NormalDist().inv_cdf((j + 0.5) / k) for j in range(k)])
    lo, hi = spec.LIQ_LADDER
    drops = np.clip(np.exp(np.log(spec.LIQ_LADDER_MEDIAN) + spec.LIQ_LADDER_SIGMA * z), lo, hi)
    return price_usd * (1.0 - drops), np.full(k, oi_usd / k)


def _liquidate(
    seed: int,
    books: list[tuple[BookPath, Venue]],
    minutes: np.ndarray,
    step_s: float,
    t_ns: np.ndarray,
) -> list[dict[str, Any]]:
    """The liquidation engine (collapse): each V2 perp and V1 spot book of a ladder asset
    sells the buckets its trigger price crosses (V2: the mark; V1: its own local price,
    impact included, so V1's collateral spirals on its own book). A bucket goes as Hawkes
    fills over 1-5 s; sold notional walks the bid side (price impact, pulled back toward
    fair with the arbitrage half-life, 60 s on V1 in the slow window) and consumes 1 % bid
    depth (refilled with a 20 s half-life, 120 s from the withdrawal on). Changes the books'
    mids and bid depth in place; returns the liquidated buckets."""
    n = len(minutes)
    out: list[dict[str, Any]] = []
    for bp, role in books:
        b = bp.spec
        oi = spec.LIQ_OI_USD.get(b.base)
        share = spec.LIQ_VENUE_SHARE.get(role)
        if oi is None or share is None or b.peg is not None:
            continue
        if (role == spec.V2) != (b.kind == InstrumentKind.PERP):
            continue
        rng = rng_for(seed, b.venue.value, b.symbol, "liquidations")
        prices, notionals = _ladder(oi * share, spec.ASSETS[b.base].price_usd)
        c1_side = b.depth_1pct_usd / 2.0
        slow = np.zeros(n, dtype=bool)
        if role == spec.V1:
            slow = (minutes >= spec.V1_SLOW_ARB[0]) & (minutes < spec.V1_SLOW_ARB[1])
        arb = np.where(slow, 0.5 ** (step_s / 60.0), 0.5 ** (step_s / spec.ARB_HALF_LIFE_S))
        calm_hl, stressed_hl = spec.REFILL_HALF_LIFE_S
        refill = np.where(minutes >= 10.0, 0.5 ** (step_s / stressed_hl), 0.5 ** (step_s / calm_hl))
        base_mid = bp.mid.copy()
        trigger = (bp.mark if bp.mark is not None else bp.mid) * bp.quote_usd
        sold = np.zeros(n + 1)
        done = np.zeros(len(prices), dtype=bool)
        impact = np.zeros(n)
        consumed = np.zeros(n)
        q = d = 0.0
        start = int(np.searchsorted(minutes, 0.0))
        if start < n:  # a scenario that starts below a bucket: it went before the recording
            done |= prices >= trigger[start]
        for k in range(start, n):
            price = trigger[k] * (1.0 - impact[k - 1] if role == spec.V1 and k else 1.0)
            hit = np.flatnonzero(~done & (prices >= price))
            for j in hit:
                done[j] = True
                exec_s = float(rng.uniform(*spec.LIQ_EXEC_S))
                orders = max(1, round(exec_s * 2.0))  # two child orders a second
                fills = hawkes_fills(rng, np.sort(rng.uniform(0.0, exec_s, orders)))
                steps = k + np.ceil(fills / step_s).astype(np.int64)
                np.add.at(sold, np.minimum(steps, n), notionals[j] / fills.size)
                out.append(
                    {
                        "venue": b.venue.value,
                        "symbol": b.symbol,
                        "asset": b.base,
                        "trigger": "mark" if role == spec.V2 else "local_price",
                        "bucket_price_usd": round(float(prices[j]), 8),
                        "notional_usd": round(float(notionals[j]), 2),
                        "triggered_ns": int(t_ns[k]),
                        "fills": int(fills.size),
                        "last_fill_ns": int(t_ns[k] + fills[-1] * 1e9),
                    }
                )
            q = q * arb[k] + sold[k]
            d = d * refill[k] + sold[k]
            c1 = c1_side * bp.depth_bid[k]
            impact[k] = min(walk_bps(q, c1, b.gamma), 1000.0) * 1e-4  # the 10 % window
            consumed[k] = d / c1 if c1 > 0 else 0.0
        bp.mid = base_mid * (1.0 - impact)
        bp.depth_bid = np.asarray(bp.depth_bid / (1.0 + consumed), dtype=np.float64)
        bp.half_spread = bp.half_spread * bp.mid / base_mid
    return out


def _wick(
    bp: BookPath, role: Venue, seed: int, minutes: np.ndarray, step_s: float, timeline: float
) -> dict[str, Any] | None:
    """A venue-specific wick (target-seeking, deterministic): at the trough profile, the bid
    notional between the mid and the target is sold as a Hawkes burst over the 60 s up to the
    trough, so the mid walks down the book as the fills come and prints the target at the
    trough; it holds there, then recovers as arbitrage and refills come back."""
    b = bp.spec
    target = spec.WICK_TARGET.get((role, b.base))
    if target is None or b.peg is not None:
        return None
    a = spec.ASSETS[b.base]
    if target < 1.0 and b.base == "ALT1":
        target *= a.price_usd
    k = int(np.argmin(np.abs(minutes - spec.CRASH_TROUGH_MIN)))
    drop = 1.0 - target / float(bp.mid[k])
    if drop <= 0.0:
        return None
    c1 = b.depth_1pct_usd / 2.0 * float(bp.depth_bid[k])
    # the notional whose walk down the trough book reaches the target (inverse of walk_bps)
    d_bps = drop * 1e4
    c2 = c1 * 2.0**b.gamma
    notional = c1 * (d_bps / 100.0) ** b.gamma if d_bps <= 200.0 else c2 * (d_bps / 200.0) ** 0.4
    burst = spec.WICK_BURST_S * timeline
    rng = rng_for(seed, b.venue.value, b.symbol, "wick")
    # immigrants over the burst's first 50 s; their descendants past the trough are dropped
    fills = hawkes_fills(rng, np.sort(rng.uniform(0.0, burst * 5.0 / 6.0, 40)), horizon_s=burst)
    t_s = (minutes - spec.CRASH_TROUGH_MIN) * 60.0 * timeline + burst  # s since burst start
    frac = np.searchsorted(fills, t_s, side="right") / fills.size  # executed share
    walked = np.array([walk_bps(x * notional, c1, b.gamma) for x in frac]) * 1e-4
    down = np.log(np.clip(1.0 - walked, 1e-9, None))
    hold = 1.25 if (role == spec.V2 and b.base == "SOL") else 0.75
    up = 1.0 - _smooth((minutes - (spec.CRASH_TROUGH_MIN + hold)) / 1.5)
    after = minutes > spec.CRASH_TROUGH_MIN
    shape = np.where(after, np.log(1.0 - drop) * up, down)
    old = bp.mid
    bp.mid = np.asarray(old * np.exp(shape), dtype=np.float64)
    bp.half_spread = bp.half_spread * bp.mid / old
    return {
        "venue": b.venue.value,
        "symbol": b.symbol,
        "asset": b.base,
        "target_price": round(float(target), 8),
        "notional_usd": round(float(notional * float(bp.quote_usd[k])), 2),
        "fills": int(fills.size),
        "burst_s": burst,
    }


def build_paths(
    kind: str,
    seed: int,
    books: list[BookSpec],
    *,
    hours: float,
    step_ms: int = 500,
    day: int = 0,
    timeline: float = 1.0,
    swap_v1_v4: bool = False,
) -> Paths:
    """The paths of a ``collapse`` scenario (ending at T0 + 100 min) or a ``calm`` day.

    Generalisation knobs (collapse): ``timeline`` stretches every phase, the crash, wicks
    and depegs by that factor (the scenario then ends at T0 + 100 min x timeline);
    ``swap_v1_v4`` makes V4 the venue hit hardest (V1's severity, wicks and slow
    arbitrage) and V1 get V4's."""
    step_ns = step_ms * 1_000_000
    step_s = step_ms / 1000.0
    n = round(hours * 3600.0 / step_s) + 1
    collapse = kind == "collapse"
    if collapse:
        end_ns = spec.T0_NS + int(100 * timeline) * MINUTE_NS
        start_ns = end_ns - (n - 1) * step_ns
        t_ns = start_ns + np.arange(n, dtype=np.int64) * step_ns
        minutes = (t_ns - spec.T0_NS) / MINUTE_NS / timeline
    else:
        # calm days: 4 to 10 Oct 2025 (a Saturday and Sunday among them), day by day
        start_ns = spec.T0_NS - (20 * 60 + 40) * MINUTE_NS - (6 - day) * 1440 * MINUTE_NS
        t_ns = start_ns + np.arange(n, dtype=np.int64) * step_ns
        minutes = (t_ns - start_ns) / MINUTE_NS
    assets = sorted({b.base for b in books if b.base in spec.ASSETS})
    for b in books:  # pegged books need their underlying's path
        if b.quote in spec.ASSETS and b.quote not in assets:
            assets.append(b.quote)
    fair = _fair_paths(seed, assets, minutes, step_s, collapse)
    fx_rng = rng_for(seed, "fx", "USDT", "ou")
    usdt = 1.0 + _ar1(fx_rng, n, 0.5 ** (step_s / 30.0), 1.5e-4)
    if collapse:
        s, e, bps = spec.FX_PREMIUM
        usdt = usdt + bps * 1e-4 * _window(minutes, s, e, 0.5)
    events: list[dict[str, Any]] = []
    nuisance = _nuisance(seed, day, minutes, books, step_ns, start_ns) if not collapse else None
    if nuisance is not None:
        events = nuisance["events"]
    out: list[BookPath] = []
    swap = {spec.V1: spec.V4, spec.V4: spec.V1} if swap_v1_v4 else {}
    for b in books:
        out.append(_book_path(b, seed, minutes, step_s, fair, usdt, collapse, nuisance, swap))
    paths = Paths(kind, seed, start_ns, step_ns, n, t_ns, minutes, fair, usdt, out, events)
    paths.timeline = timeline
    if collapse:
        roles = [(bp, swap.get(bp.spec.venue, bp.spec.venue)) for bp in out]
        paths.liquidations = _liquidate(seed, roles, minutes, step_s, t_ns)
        for bp, role in roles:
            wick = _wick(bp, role, seed, minutes, step_s, timeline)
            if wick is not None:
                paths.wicks.append(wick)
        for bp in out:  # the perps' marks follow their last price, wicks and all
            if bp.mark is not None and bp.index is not None and bp.funding is not None:
                bp.mark = perp_mark(bp.mid, bp.index, bp.funding, step_s)
    return paths


def _book_path(
    b: BookSpec,
    seed: int,
    minutes: np.ndarray,
    step_s: float,
    fair: dict[str, np.ndarray],
    usdt: np.ndarray,
    collapse: bool,
    nuisance: dict[str, Any] | None,
    swap: dict[Venue, Venue] | None = None,
) -> BookPath:
    n = len(minutes)
    role = (swap or {}).get(b.venue, b.venue)  # whose part this venue plays in the collapse
    rng = rng_for(seed, b.venue.value, b.symbol, "mid")
    quote_usd = np.ones(n) if b.quote == "USD" else (usdt if b.quote == "USDT" else fair[b.quote])
    ones = np.ones(n)
    mark = index = funding = None
    if b.peg is not None:
        # pegged books: USDT/USD (V3), USDe/USDT, WBETH/ETH, BNSOL/SOL
        if b.base == "USDT":
            mid = usdt * (1.0 + _ar1(rng, n, 0.5, 0.2e-4))
            true = usdt.copy()
            m = w = c = ones
        else:
            dip = np.zeros(n)
            m, w, c = ones.copy(), ones.copy(), ones.copy()
            if collapse:
                trough = spec.DEPEG_TROUGH.get((role, b.base))
                if trough is not None:
                    centre = spec.DEPEG_TROUGH_MIN[b.base]
                    depth = 1.0 - trough
                    width = 1.36 if depth < 0.5 else 0.83
                    dip = depth * np.exp(-(((minutes - centre) / width) ** 2))
                    dip += 0.004 * _window(minutes, 56.0, 90.0, 2.0)
                    bump = _window(minutes, 57.0, 80.0, 3.0)
                    m = 1.0 - 0.97 * bump
                    w = 1.0 + 19.0 * bump
                    c = 1.0 + 4.0 * bump
            mid = b.peg * (1.0 - dip) * (1.0 + _ar1(rng, n, 0.5, 0.3e-4))
            true = b.peg * quote_usd
        mid_usd_true = true
        depth_bid = m
        depth_ask = m
        cancel = c
        spread_mult = w
    else:
        a = spec.ASSETS[b.base]
        f = fair[b.base]
        sd = (0.3e-4 if a.major else 1e-4) * np.ones(n)
        phi = np.full(n, 0.5 ** (step_s / 0.5))
        if collapse and role == spec.V1:
            slow = (minutes >= 33.0) & (minutes < 38.0)  # arbitrage half-life 0.5 s -> 60 s
            phi = np.where(slow, 0.5 ** (step_s / 60.0), phi)
            sd = np.where(slow, sd * 5.0, sd)
        dev = _ar1(rng, n, phi, sd)
        basis = np.zeros(n)
        if b.kind == InstrumentKind.PERP:
            basis = 3e-4 + _ar1(
                rng_for(seed, b.venue.value, b.symbol, "basis"), n, 0.5 ** (step_s / 60.0), 2e-4
            )
        log_mid = np.log(f) - np.log(quote_usd) + basis + dev
        # the collapse's liquidations and venue wicks come later (build_paths), on all books
        mid = np.exp(log_mid)
        mid_usd_true = f
        if collapse:
            m, spread_mult, cancel = _stress(minutes, role, a.major)
            if b.venue in (spec.V3, spec.V4):
                pass
        else:
            m, spread_mult, cancel = ones.copy(), ones.copy(), ones.copy()
        depth_bid = m
        depth_ask = m**0.7
        if b.kind == InstrumentKind.PERP:
            index = f / quote_usd
            funding = np.full(n, 0.0003)
            if collapse:
                funding = funding - 0.0008 * _window(minutes, 32.0, 45.0, 3.0)
            mark = perp_mark(mid, index, funding, step_s)
    # spread noise (spreads flicker by a tick or two)
    spread_noise = np.exp(_ar1(rng_for(seed, b.venue.value, b.symbol, "spread"), n, 0.98, 0.1))
    half_spread = 0.5 * b.spread_bps * 1e-4 * mid * spread_mult * spread_noise
    path = BookPath(
        b,
        mid,
        half_spread,
        np.asarray(depth_bid, dtype=np.float64),
        np.asarray(depth_ask, dtype=np.float64),
        np.asarray(cancel, dtype=np.float64),
        quote_usd,
        mid_usd_true,
        mark,
        index,
        funding,
    )
    if nuisance is not None:
        _apply_nuisance(path, nuisance, minutes)
    return path


# --- the calm nuisance set -------------------------------------------------------------------
def _nuisance(
    seed: int,
    day: int,
    minutes: np.ndarray,
    books: list[BookSpec],
    step_ns: int,
    start_ns: int,
) -> dict[str, Any]:
    """Nuisance events of one calm day: weekend thinning, 3 news dips, 4 spoof walls an
    hour, a mini-wick, funding times, a 5-min venue outage, and (on one day of the week)
    a vacuum without a crash."""
    rng = rng_for(seed, "calm", str(day), "events")
    span = float(minutes[-1])
    events: list[dict[str, Any]] = []

    def at_ns(minute: float) -> int:
        return int(start_ns + minute * MINUTE_NS)

    weekend = day in (0, 1)  # 4-5 Oct 2025 were a Saturday and a Sunday
    if weekend:
        events.append(
            {"kind": "weekend_thinning", "start_ns": at_ns(0), "end_ns": at_ns(span), "depth": 0.7}
        )
    for t in np.sort(rng.uniform(10.0, max(11.0, span - 10.0), 3)):
        events.append(
            {
                "kind": "news",
                "start_ns": at_ns(t),
                "end_ns": at_ns(t + 2.0),
                "depth": 0.6,
                "spread": 2.0,
                "cancel": 4.0,
            }
        )
    candidates = [b for b in books if b.peg is None]
    n_walls = int(4 * span / 60.0)
    for _ in range(n_walls):
        t = float(rng.uniform(0.0, span - 1.0))
        b = candidates[int(rng.integers(len(candidates)))]
        events.append(
            {
                "kind": "spoof_wall",
                "book": b.key,
                "start_ns": at_ns(t),
                "end_ns": at_ns(t + float(rng.uniform(10.0, 30.0)) / 60.0),
                "usd": min(2e6, 0.5 * b.depth_1pct_usd),
                "offset_bps": float(rng.uniform(20.0, 80.0)),
            }
        )
    t = float(rng.uniform(30.0, max(31.0, span - 30.0)))
    b = candidates[int(rng.integers(len(candidates)))]
    events.append(
        {
            "kind": "mini_wick",
            "book": b.key,
            "start_ns": at_ns(t),
            "end_ns": at_ns(t + 2.0 + 1.0 / 3.0),
            "drop": 0.03,
        }
    )
    for h in (0.0, 8.0, 16.0):
        if h * 60.0 <= span:
            events.append(
                {"kind": "funding", "start_ns": at_ns(h * 60.0), "end_ns": at_ns(h * 60.0 + 1.0)}
            )
    venues = sorted({b.venue for b in books}, key=lambda v: v.value)
    if venues:
        t = float(rng.uniform(60.0, max(61.0, span - 60.0)))
        v = venues[int(rng.integers(len(venues)))]
        events.append(
            {"kind": "outage", "venue": v.value, "start_ns": at_ns(t), "end_ns": at_ns(t + 5.0)}
        )
    if day == 3:
        t = float(rng.uniform(60.0, max(61.0, span - 60.0)))
        assets = sorted({b.base for b in candidates})
        asset = assets[int(rng.integers(len(assets)))]
        events.append(
            {
                "kind": "vacuum_no_crash",
                "asset": asset,
                "start_ns": at_ns(t),
                "end_ns": at_ns(t + 20.0),
                "depth": 0.4,
            }
        )
    return {"events": events, "start_ns": start_ns, "step_ns": step_ns}


def _apply_nuisance(path: BookPath, nuisance: dict[str, Any], minutes: np.ndarray) -> None:
    start_ns = nuisance["start_ns"]
    step_ns = nuisance["step_ns"]
    b = path.spec

    def mins(ns: int) -> float:
        return float((ns - start_ns) / MINUTE_NS)

    for ev in nuisance["events"]:
        s, e = mins(ev["start_ns"]), mins(ev["end_ns"])
        kind = ev["kind"]
        if kind == "weekend_thinning":
            path.depth_bid = path.depth_bid * ev["depth"]
            path.depth_ask = path.depth_ask * ev["depth"]
        elif kind == "news" and b.peg is None:
            win = _window(minutes, s, e, 10.0 / 60.0)
            path.depth_bid = path.depth_bid * (1.0 - (1.0 - ev["depth"]) * win)
            path.depth_ask = path.depth_ask * (1.0 - (1.0 - ev["depth"]) * win)
            path.half_spread = path.half_spread * (1.0 + (ev["spread"] - 1.0) * win)
            path.cancel = path.cancel * (1.0 + (ev["cancel"] - 1.0) * win)
        elif kind == "spoof_wall" and ev["book"] == b.key:
            k0 = int((ev["start_ns"] - start_ns) // step_ns)
            k1 = int((ev["end_ns"] - start_ns) // step_ns)
            price = float(path.mid[k0]) * (1.0 - ev["offset_bps"] * 1e-4)
            path.walls.append((k0, k1, price, float(ev["usd"])))
        elif kind == "mini_wick" and ev["book"] == b.key:
            down = _smooth((minutes - s) / (20.0 / 60.0))
            up = 1.0 - _smooth((minutes - s - 20.0 / 60.0) / 2.0)
            shape = np.minimum(down, up)
            factor = 1.0 - ev["drop"] * shape
            path.mid = path.mid * factor
            path.half_spread = path.half_spread * (1.0 + 2.0 * shape)
        elif kind == "funding" and b.kind == InstrumentKind.PERP:
            win = _window(minutes, s, e, 0.2)
            path.half_spread = path.half_spread * (1.0 + 0.5 * win)
        elif kind == "outage" and ev["venue"] == b.venue.value:
            k0 = int((ev["start_ns"] - start_ns) // step_ns)
            k1 = int((ev["end_ns"] - start_ns) // step_ns)
            path.silent.append((k0, k1))
        elif kind == "vacuum_no_crash" and ev["asset"] == b.base:
            win = _window(minutes, s, e, 2.0)
            path.depth_bid = path.depth_bid * (1.0 - (1.0 - ev["depth"]) * win)
            path.depth_ask = path.depth_ask * (1.0 - (1.0 - ev["depth"]) * win)
            path.half_spread = path.half_spread * (1.0 + 1.0 * win)
            path.cancel = path.cancel * (1.0 + 2.0 * win)


__all__ = ["SECOND_NS", "BookPath", "Paths", "build_paths", "rng_for"]
