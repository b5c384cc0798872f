"""Instrument registry from Binance exchangeInfo (captured in the recordings) and its cache."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from feeds.binance import parse_exchange_info
from monitor.domain import InstrumentKind, Venue
from monitor.errors import ParseError
from monitor.instruments import InstrumentRegistry
from tests.conftest import SPOT_RECORDING, USDM_RECORDING


def binance_registry(venue: Venue, text: str) -> InstrumentRegistry:
    """The registry of a Binance exchangeInfo answer (parsed by the Binance adapter)."""
    return InstrumentRegistry(parse_exchange_info(venue, text))


def exchange_info(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        for line in f:
            rec = json.loads(line)
            if rec["url"].endswith("exchangeInfo"):
                return str(rec["data"])
    raise AssertionError("no exchangeInfo in recording")


class TestFromExchangeInfo:
    def test_spot_symbols_map_to_canonical_instruments_with_tick_and_lot(self) -> None:
        reg = binance_registry(Venue.BINANCE, exchange_info(SPOT_RECORDING))
        btc = reg.get(Venue.BINANCE, "BTCUSDT")
        assert btc is not None
        assert (btc.base, btc.quote, btc.kind, btc.tick, btc.lot) == (
            "BTC",
            "USDT",
            InstrumentKind.SPOT,
            "0.01",
            "0.00001",
        )
        assert btc.canonical == "BTC-USDT-SPOT"
        # Binance spot writes prices with 8 decimals: units are 1e-8, a tick is 1e6 units
        assert (btc.price_decimals, btc.tick_units) == (8, 1_000_000)
        assert len(reg) > 1000

    def test_usdm_perpetuals_and_dated_futures_are_told_apart(self) -> None:
        reg = binance_registry(Venue.BINANCE_FUTURES, exchange_info(USDM_RECORDING))
        perp = reg.get(Venue.BINANCE_FUTURES, "BTCUSDT")
        assert (
            perp is not None
            and perp.kind == InstrumentKind.PERP
            and perp.canonical == "BTC-USDT-PERP"
        )
        assert perp.price_decimals == 2 and perp.contract_size == 1.0
        kinds = {i.kind for i in reg}
        assert InstrumentKind.PERP in kinds

    def test_malformed_exchange_info_raises_parse_error(self) -> None:
        with pytest.raises(ParseError):
            binance_registry(Venue.BINANCE, '{"symbols": 5}')


class TestCache:
    def test_cache_round_trips_every_field(self, tmp_path: Path) -> None:
        reg = binance_registry(Venue.BINANCE, exchange_info(SPOT_RECORDING))
        path = tmp_path / "binance.json.gz"
        reg.to_cache(Venue.BINANCE, path)
        back = InstrumentRegistry.from_cache(Venue.BINANCE, path)
        assert sorted(back, key=lambda i: i.symbol) == sorted(reg, key=lambda i: i.symbol)

    def test_shipped_offline_copy_covers_both_binance_markets(self) -> None:
        reg = InstrumentRegistry.load_cached([Venue.BINANCE, Venue.BINANCE_FUTURES])
        assert reg.get(Venue.BINANCE, "ETHUSDT") is not None
        assert reg.get(Venue.BINANCE_FUTURES, "ETHUSDT") is not None

    def test_merge_prefers_the_newer_registry(self) -> None:
        old = InstrumentRegistry.load_cached([Venue.BINANCE])
        fresh = binance_registry(
            Venue.BINANCE,
            '{"symbols":[{"symbol":"BTCUSDT","baseAsset":"BTC","quoteAsset":"USDT","quoteAssetPrecision":8,'
            '"filters":[{"filterType":"PRICE_FILTER","tickSize":"0.10000000"},'
            '{"filterType":"LOT_SIZE","stepSize":"0.00001000"}]}]}',
        )
        merged = old.merge(fresh)
        inst = merged.get(Venue.BINANCE, "BTCUSDT")
        assert inst is not None and inst.tick == "0.1"
        assert len(merged) == len(old)
