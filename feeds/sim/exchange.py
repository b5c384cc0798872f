"""The local exchange with every venue, built from liqmon settings (``liqmon sim``, tests).

:func:`build` makes an :class:`~feeds.sim.base.ExchangeSim` serving each enabled venue of
a settings object, with a synthetic book for every configured symbol that the shipped
instrument cache knows (tick, lot, contract size from ``config/instruments/``), at a
plausible price, with a plausible depth in USD (:data:`DEPTH_1PCT_USD`; inverse contracts
and cheap coins alike). :data:`SIM_VENUES` says where each venue lives on the local exchange and
which channels the monitor subscribes there; ``config/sim.toml`` is written from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from feeds.sim.base import DepthProfile, ExchangeSim, SimBook, VenueProtocol
from monitor.domain import Instrument, Venue, significant_decimals
from monitor.instruments import InstrumentRegistry
from monitor.log import get_logger
from monitor.settings import Settings

log = get_logger("feeds.sim.exchange")

DEFAULT_PORT = 8765


@dataclass(frozen=True, slots=True)
class SimVenue:
    """Where a venue lives on the local exchange (path below ``/<venue id>``) and the
    channels the monitor uses there, as in the real venue's settings."""

    ws_path: str
    depth_stream: str
    mark_price_stream: str | None = None
    market_ws_path: str | None = None  # Binance USD-M: mark price on its own endpoint


SIM_VENUES: dict[Venue, SimVenue] = {
    Venue.BINANCE: SimVenue("/stream", "depth@100ms"),
    Venue.BINANCE_FUTURES: SimVenue(
        "/public/stream", "depth@100ms", "markPrice@1s", market_ws_path="/market/stream"
    ),
    Venue.OKX: SimVenue("/ws/v5/public", "books", "mark-price,funding-rate"),
    Venue.BYBIT: SimVenue("/v5/public/spot", "orderbook.50"),
    Venue.BYBIT_LINEAR: SimVenue("/v5/public/linear", "orderbook.50", "tickers"),
    Venue.COINBASE: SimVenue("/", "level2"),
    Venue.KRAKEN: SimVenue("/v2", "book"),
    Venue.HYPERLIQUID: SimVenue("/ws", "l2Book", "activeAssetCtx"),
    Venue.DERIBIT: SimVenue("/ws/api/v2", "book", "ticker"),
}

# Rough USD prices, so that the books look like the real ones (and cross rates agree).
USD_PRICES: dict[str, str] = {
    "BTC": "60000",
    "XBT": "60000",
    "ETH": "3000",
    "SOL": "150",
    "XRP": "0.5",
    "DOGE": "0.1",
    "BNB": "600",
    "LTC": "80",
    "ADA": "0.4",
    "AVAX": "30",
    "LINK": "15",
    "HYPE": "30",
    "OKB": "50",
    "UNI": "8",
    "EUR": "1.08",
}
STABLES = frozenset({"USD", "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USDE"})

# Depth within 1% of mid, per side, in USD, by base asset: the order of magnitude of the
# large venues' books (BTC ~$10M, ETH ~$5M, large alts ~$1M, others ~$0.5M).
DEPTH_1PCT_USD: dict[str, float] = {
    "BTC": 10_000_000.0,
    "XBT": 10_000_000.0,
    "ETH": 5_000_000.0,
    "SOL": 1_000_000.0,
    "XRP": 1_000_000.0,
    "BNB": 1_000_000.0,
    "DOGE": 750_000.0,
    "USDT": 2_000_000.0,  # stablecoin pegs: deep, and almost all of it at the touch
    "USDC": 2_000_000.0,
}
DEFAULT_DEPTH_1PCT_USD = 500_000.0


def usd_price(currency: str) -> Decimal:
    if currency in STABLES:
        return Decimal(1)
    return Decimal(USD_PRICES.get(currency, "10"))


def mid_for(instrument: Instrument) -> str:
    """A plausible mid for an instrument, on its tick."""
    mid = usd_price(instrument.base) / usd_price(instrument.quote)
    tick = Decimal(instrument.tick)
    return str((mid / tick).to_integral_value() * tick)


def depth_profile(instrument: Instrument, depth_1pct_usd: float | None = None) -> DepthProfile:
    """The USD shape of an instrument's synthetic book (by base asset unless given)."""
    if depth_1pct_usd is None:
        depth_1pct_usd = DEPTH_1PCT_USD.get(instrument.base, DEFAULT_DEPTH_1PCT_USD)
    return DepthProfile(depth_1pct_usd=depth_1pct_usd)


def all_protocols(venues: Iterable[Venue] | None = None) -> list[VenueProtocol]:
    """One protocol object per venue liqmon simulates (all, or those listed)."""
    from feeds.sim.registry import PROTOCOLS  # noqa: PLC0415 (imports every venue module)

    wanted = set(PROTOCOLS) if venues is None else set(venues)
    return [factory() for venue, factory in PROTOCOLS.items() if venue in wanted]


def build(
    settings: Settings,
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    levels: int = 50,
    registry: InstrumentRegistry | None = None,
    seed: int = 7,
    depth_1pct_usd: Mapping[str, float] | None = None,
) -> ExchangeSim:
    """A local exchange for every enabled venue of ``settings`` and its symbols.

    depth_1pct_usd: per symbol (venue spelling), USD within 1% of mid a side, over the
    defaults by base asset (:data:`DEPTH_1PCT_USD`)."""
    venues = list(settings.enabled_venues())
    sim = ExchangeSim(all_protocols(venues), host=host, port=port, seed=seed)
    registry = registry if registry is not None else InstrumentRegistry.load_cached(venues)
    for venue, table in settings.enabled_venues().items():
        add_books(sim, registry, venue, table.symbols, levels=levels, depth_1pct_usd=depth_1pct_usd)
    return sim


def add_books(
    sim: ExchangeSim,
    registry: InstrumentRegistry,
    venue: Venue,
    symbols: Sequence[str],
    *,
    levels: int = 50,
    depth_1pct_usd: Mapping[str, float] | None = None,
) -> list[SimBook]:
    """A book for every symbol the registry knows, shaped in USD (:func:`depth_profile`)."""
    books = []
    for symbol in symbols:
        instrument = registry.get(venue, symbol)
        if instrument is None:
            log.warning("sim.unknown_symbol", venue=venue.value, symbol=symbol)
            continue
        qty_decimals = max(significant_decimals(instrument.lot), instrument.qty_precision)
        depth = (depth_1pct_usd or {}).get(symbol)
        books.append(
            sim.add_instrument(
                instrument,
                mid=mid_for(instrument),
                levels=levels,
                qty_decimals=qty_decimals,
                profile=depth_profile(instrument, depth),
                quote_usd=float(usd_price(instrument.quote)),
            )
        )
    return books


def settings_toml(
    symbols: Mapping[Venue, Sequence[str]],
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    extra: str = "",
) -> str:
    """A liqmon settings file pointing every listed venue at the local exchange."""
    lines = [
        "# liqmon against the local exchange (liqmon sim): the same code path as the real",
        "# venues, only the URLs differ. Start `liqmon sim --config config/sim.toml` first.",
        extra,
    ]
    for venue in Venue:
        where = SIM_VENUES[venue]
        names = list(symbols.get(venue, ()))
        lines.append(f"[venues.{venue.value}]")
        lines.append(f"enabled = {'true' if names else 'false'}")
        lines.append(f'ws_url = "ws://{host}:{port}/{venue.value}{where.ws_path}"')
        lines.append(f'rest_url = "http://{host}:{port}/{venue.value}"')
        lines.append(f'depth_stream = "{where.depth_stream}"')
        if where.mark_price_stream:
            lines.append(f'mark_price_stream = "{where.mark_price_stream}"')
        if where.market_ws_path:
            lines.append(
                f'market_ws_url = "ws://{host}:{port}/{venue.value}{where.market_ws_path}"'
            )
        quoted = ", ".join(f'"{s}"' for s in names)
        lines.append(f"symbols = [{quoted}]")
        lines.append("")
    return "\n".join(lines)


async def serve(
    settings: Settings,
    *,
    port: int = DEFAULT_PORT,
    updates_per_s: float = 50.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the local exchange for ``settings`` until ``stop`` (``liqmon sim``)."""
    sim = build(settings, port=port)
    async with sim:
        log.info(
            "sim.start",
            port=sim.port,
            venues=sorted({v.value for v, _ in sim.books}),
            books=len(sim.books),
            updates_per_s=updates_per_s,
        )
        market = asyncio.ensure_future(sim.run_market(updates_per_s))
        try:
            await (stop.wait() if stop is not None else asyncio.Event().wait())
        finally:
            market.cancel()
            log.info("sim.stop", updates=sim.updates_sent)
