"""Every venue adapter liqmon has, by venue id (the one place that lists them)."""

from __future__ import annotations

from feeds import binance, bybit, coinbase, deribit, hyperliquid, kraken, okx
from feeds.contract import VenueAdapter
from monitor.domain import Venue

ADAPTERS: dict[Venue, VenueAdapter] = {}
for _module in (binance, okx, bybit, coinbase, kraken, hyperliquid, deribit):
    ADAPTERS.update(_module.ADAPTERS)
