"""The scenario's world: venues V1-V4, instruments, depths, spreads and the 10/11 timeline.

Numbers follow the reference spec of the 10/11 collapse (prices at T0, annual vols, ±1%
depth per venue, base spreads, the phase table, wicks, depegs and feed faults). Times are
minutes relative to T0 = 04:40 HKT (20:40 UTC, 10 Oct 2025); the generator's clock is an
integer number of nanoseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.domain import InstrumentKind, Venue

MINUTE_NS = 60_000_000_000
SECOND_NS = 1_000_000_000
# T0 = 04:40 HKT = 20:40 UTC on 10 Oct 2025
T0_NS = 1_760_128_800 * SECOND_NS

# the four venues of the spec and the protocol each speaks
V1 = Venue.BINANCE  # USDT spot (Binance-like)
V2 = Venue.BINANCE_FUTURES  # USDT-margined perps with mark/index/funding
V3 = Venue.COINBASE  # USD spot, also USDT/USD
V4 = Venue.OKX  # a second USDT spot venue
VENUE_LABEL: dict[Venue, str] = {V1: "V1", V2: "V2", V3: "V3", V4: "V4"}


@dataclass(frozen=True, slots=True)
class AssetSpec:
    name: str
    price_usd: float  # at T0
    sigma_ann: float
    depth_1pct_usd: dict[Venue, float]  # total (bid + ask) within ±1% of mid, per venue
    spread_bps: float  # base spread on V1 (other venues: x1.5 on V3/V4, x0.8 on V2)
    tick: dict[Venue, str]
    major: bool
    crash: float = 0.0  # fair-value drop at the trough (fraction)
    rebound: float = 0.0  # drop still left at 05:35


# the "tracked token" ALT1 and the majors (reference spec, section 4)
ASSETS: dict[str, AssetSpec] = {
    "BTC": AssetSpec(
        "BTC",
        121_500.0,
        0.45,
        {V1: 16e6, V2: 30e6, V3: 10e6, V4: 6e6},
        0.5,
        {V1: "0.01", V2: "0.1", V3: "0.01", V4: "0.1"},
        True,
        0.13,
        0.08,
    ),
    "ETH": AssetSpec(
        "ETH",
        4_350.0,
        0.60,
        {V1: 8e6, V2: 15e6, V3: 6e6, V4: 3e6},
        0.5,
        {V1: "0.01", V2: "0.01", V3: "0.01", V4: "0.01"},
        True,
        0.18,
        0.12,
    ),
    "SOL": AssetSpec(
        "SOL",
        222.0,
        0.80,
        {V1: 3e6, V2: 6e6, V3: 2.5e6, V4: 1e6},
        1.5,
        {V1: "0.01", V2: "0.01", V3: "0.01", V4: "0.01"},
        False,
        0.19,
        0.25 * 0.6,
    ),
    "XRP": AssetSpec(
        "XRP",
        2.83,
        0.80,
        {V1: 3e6, V2: 5e6, V3: 2.5e6, V4: 1e6},
        1.5,
        {V1: "0.0001", V2: "0.0001", V3: "0.0001", V4: "0.0001"},
        False,
        0.40,
        0.25,
    ),
    "ALT1": AssetSpec(
        "ALT1",
        1.0,
        1.20,
        {V1: 1.2e6, V2: 1.5e6, V3: 0.4e6, V4: 0.2e6},
        5.0,
        {V1: "0.0001", V2: "0.0001", V3: "0.0001", V4: "0.0001"},
        False,
        0.35,
        0.25,
    ),
}


@dataclass(frozen=True, slots=True)
class BookSpec:
    """One simulated book: where it lives and how it looks."""

    venue: Venue
    symbol: str
    base: str
    quote: str
    kind: InstrumentKind
    tick: str
    lot: str
    depth_1pct_usd: float  # total both sides; for pegged books: within ±0.5%
    spread_bps: float
    gamma: float  # cumulative depth exponent
    sigma_ann: float
    peg: float | None = None  # fair ratio for pegged books (USDe/USDT 1, WBETH/ETH 1.07 ...)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.venue.value}:{self.symbol}"


def _symbol(venue: Venue, base: str, quote: str) -> str:
    if venue in (V1, V2):
        return f"{base}{quote}"
    return f"{base}-{quote}"


def _lot(price: float) -> str:
    # about $1-10 per lot step, as real books have
    for lot in ("0.00001", "0.0001", "0.001", "0.01", "0.1", "1"):
        if price * float(lot) >= 0.5:
            return lot
    return "1"


VENUE_SPREAD = {V1: 1.0, V2: 0.8, V3: 1.5, V4: 1.5}
WBETH_FAIR = 1.07
BNSOL_FAIR = 1.06


def books_for(
    assets: tuple[str, ...] = ("BTC", "ETH", "SOL", "XRP", "ALT1"),
    venues: tuple[Venue, ...] = (V1, V2, V3, V4),
    *,
    pegged: bool = True,
) -> list[BookSpec]:
    """The scenario's books: every asset on every venue (perps on V2, USD quotes on V3),
    plus USDT/USD on V3 and, with ``pegged``, USDe/USDT (V1, V4), WBETH/ETH and BNSOL/SOL (V1)."""
    out: list[BookSpec] = []
    for venue in venues:
        quote = "USD" if venue == V3 else "USDT"
        kind = InstrumentKind.PERP if venue == V2 else InstrumentKind.SPOT
        for name in assets:
            spec = ASSETS[name]
            symbol = _symbol(venue, name, quote)
            out.append(
                BookSpec(
                    venue,
                    symbol,
                    name,
                    quote,
                    kind,
                    spec.tick[venue],
                    _lot(spec.price_usd),
                    spec.depth_1pct_usd[venue],
                    spec.spread_bps * VENUE_SPREAD[venue],
                    0.55 if spec.major else 0.8,
                    spec.sigma_ann,
                )
            )
        if venue == V3:
            out.append(
                BookSpec(
                    V3,
                    "USDT-USD",
                    "USDT",
                    "USD",
                    InstrumentKind.SPOT,
                    "0.0001",
                    "0.01",
                    20e6,
                    1.0,
                    0.55,
                    0.0,
                    peg=1.0,
                )
            )
        if pegged and venue == V1:
            out.append(
                BookSpec(
                    V1,
                    "USDEUSDT",
                    "USDE",
                    "USDT",
                    InstrumentKind.SPOT,
                    "0.0001",
                    "0.01",
                    4e6,
                    1.0,
                    0.55,
                    0.0,
                    peg=1.0,
                )
            )
            out.append(
                BookSpec(
                    V1,
                    "WBETHETH",
                    "WBETH",
                    "ETH",
                    InstrumentKind.SPOT,
                    "0.00001",
                    "0.0001",
                    2e6,
                    2.0,
                    0.55,
                    0.0,
                    peg=WBETH_FAIR,
                )
            )
            out.append(
                BookSpec(
                    V1,
                    "BNSOLSOL",
                    "BNSOL",
                    "SOL",
                    InstrumentKind.SPOT,
                    "0.00001",
                    "0.001",
                    1e6,
                    3.0,
                    0.55,
                    0.0,
                    peg=BNSOL_FAIR,
                )
            )
        if pegged and venue == V4:
            out.append(
                BookSpec(
                    V4,
                    "USDE-USDT",
                    "USDE",
                    "USDT",
                    InstrumentKind.SPOT,
                    "0.0001",
                    "0.01",
                    2e6,
                    1.5,
                    0.55,
                    0.0,
                    peg=1.0,
                )
            )
    return out


# --- the 10/11 timeline (minutes from T0 = 04:40 HKT) ---------------------------------------
PHASES: list[tuple[str, float, float]] = [
    ("calm", -1e9, 0.0),
    ("spreads_first", 0.0, 10.0),
    ("mm_withdrawal", 10.0, 30.0),
    ("cascade", 30.0, 40.0),
    ("recovery", 40.0, 55.0),
    ("wrapped_depeg", 56.0, 96.0),
]
CRASH_START_MIN = 30.0  # fair value starts falling (05:10)
CRASH_TROUGH_MIN = 35.5  # and bottoms (05:15:30); rebound by 05:35
REBOUND_MIN = 55.0
DEPEG_TROUGH_MIN = {"USDE": 70.0, "WBETH": 66.0, "BNSOL": 68.0}  # 05:50, 05:46, 05:48
DEPEG_TROUGH = {(V1, "USDE"): 0.657, (V4, "USDE"): 0.93, (V1, "WBETH"): 0.12, (V1, "BNSOL"): 0.18}
# venue-specific wick targets at the trough (fraction of the T0 price, or absolute price)
WICK_TARGET: dict[tuple[Venue, str], float] = {
    (V1, "XRP"): 1.40,
    (V1, "ALT1"): 0.20,
    (V2, "ALT1"): 0.40,
    (V2, "SOL"): 140.0,
}
# the liquidation engine: long open interest per asset on a lognormal ladder 3-15 % below the
# T0 price (USD). The part of it sold on the modelled books is a share per venue (the rest is
# liquidated on venues the scenario does not model): V2's perp longs, triggered by its mark,
# and V1's unified-account collateral, triggered by V1's own local price.
LIQ_OI_USD = {"BTC": 2e9, "ETH": 1e9, "SOL": 3e8, "XRP": 2e8, "ALT1": 2e7}
LIQ_LADDER = (0.03, 0.15)  # drop below the T0 price: bounds of the ladder
LIQ_LADDER_MEDIAN = 0.07  # lognormal: median drop and sigma of its log
LIQ_LADDER_SIGMA = 0.4
LIQ_BUCKETS = 24
LIQ_VENUE_SHARE = {V2: 0.01, V1: 0.002}
LIQ_EXEC_S = (1.0, 5.0)  # a triggered bucket is market-sold over 1-5 s
HAWKES_BRANCHING = 0.7  # each fill raises the sell intensity: children per fill
HAWKES_DECAY_S = 2.0  # mean delay of a child fill
WICK_BURST_S = 60.0  # a wick's notional is sold as a Hawkes burst over 60 s up to the trough
ARB_HALF_LIFE_S = 0.5  # venue mid pulled back toward fair (V1: 60 s in the slow window)
V1_SLOW_ARB = (33.0, 38.0)  # 05:13-05:18
REFILL_HALF_LIFE_S = (20.0, 120.0)  # consumed depth refills: calm / from the withdrawal on
# depth floors by venue (V1 majors floor at 10 %), V3 decays twice as slowly
DEPTH_FLOOR = {V1: 0.0, V2: 0.05, V3: 0.25, V4: 0.15}
MAJOR_FLOOR_V1 = 0.10
# feed faults, minutes from T0
V1_LATENCY = (32.0, 47.0)  # 05:12-05:27: latency LN(1.5 s, p99 8 s), 2 % diffs dropped
V1_REST_503_S = 60.0  # REST snapshots answer 503 for the first 60 s of that window
V1_FROZEN = (47.0, 50.0)  # 05:27-05:30: frozen, then resync
V4_DISCONNECT = (60.0, 65.0)  # 05:40-05:45: full disconnect
FX_PREMIUM = (30.0, 40.0, 30.0)  # USDT/USD +30 bps for 10 min at the crash

# what the score should do (reference spec's synthetic targets), minutes from T0
EXPECTED_STATES = {
    "watch_by": 12.0,  # 04:52
    "warning_by": 20.0,  # 05:00 (>= 15 min before the 05:15 trough)
    "critical_by": 30.0,  # 05:10
    "normal_by": 75.0,  # 05:55: <= 20 min after depth regains 90 %
}
