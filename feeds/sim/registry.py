"""The simulated venues: one protocol factory per venue id (the one place listing them)."""

from __future__ import annotations

from collections.abc import Callable

from feeds.sim.base import VenueProtocol
from feeds.sim.binance import BinanceProtocol
from feeds.sim.bybit import BybitProtocol
from feeds.sim.coinbase import CoinbaseProtocol
from feeds.sim.deribit import DeribitProtocol
from feeds.sim.hyperliquid import HyperliquidProtocol
from feeds.sim.kraken import KrakenProtocol
from feeds.sim.okx import OkxProtocol
from monitor.domain import Venue

PROTOCOLS: dict[Venue, Callable[[], VenueProtocol]] = {
    Venue.BINANCE: lambda: BinanceProtocol(Venue.BINANCE),
    Venue.BINANCE_FUTURES: lambda: BinanceProtocol(Venue.BINANCE_FUTURES),
    # real CRC32 checksums (the live feed sends 0 today), so the verification path runs
    Venue.OKX: lambda: OkxProtocol(checksum=True),
    Venue.BYBIT: lambda: BybitProtocol(Venue.BYBIT),
    Venue.BYBIT_LINEAR: lambda: BybitProtocol(Venue.BYBIT_LINEAR),
    Venue.COINBASE: CoinbaseProtocol,
    Venue.KRAKEN: KrakenProtocol,
    Venue.HYPERLIQUID: HyperliquidProtocol,
    Venue.DERIBIT: DeribitProtocol,
}
