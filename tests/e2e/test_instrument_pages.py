"""Paginated instrument metadata is followed to its last page: the local Bybit serves
linear instruments-info in small pages (nextPageCursor / cursor, as Bybit does), and both the
adapter's page walk and the daemon's start-up load get every instrument exactly once."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from feeds.bybit import LINEAR, SPOT
from feeds.contract import HttpRequest
from feeds.sim.base import ExchangeSim
from feeds.sim.bybit import BybitProtocol
from feeds.sim.exchange import add_books
from feeds.venues import ADAPTERS
from monitor.daemon import Daemon
from monitor.domain import Instrument, Venue
from monitor.instruments import InstrumentRegistry
from tests.e2e.harness import write_settings

pytestmark = pytest.mark.integration

LINEAR_SYMBOLS = ["BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
SPOT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
PAGE = 2
INSTRUMENTS_PATH = "/v5/market/instruments-info"


def paged_exchange() -> ExchangeSim:
    registry = InstrumentRegistry.load_cached([Venue.BYBIT, Venue.BYBIT_LINEAR])
    sim = ExchangeSim(
        [
            BybitProtocol(Venue.BYBIT, max_page=PAGE),
            BybitProtocol(Venue.BYBIT_LINEAR, max_page=PAGE),
        ]
    )
    assert len(add_books(sim, registry, Venue.BYBIT_LINEAR, LINEAR_SYMBOLS, levels=10)) == 5
    assert len(add_books(sim, registry, Venue.BYBIT, SPOT_SYMBOLS, levels=10)) == 3
    return sim


async def test_the_adapter_walks_every_linear_page_and_spot_has_one() -> None:
    async with paged_exchange() as sim, aiohttp.ClientSession() as http:
        pages: dict[Venue, list[list[Instrument]]] = {}
        for adapter in (LINEAR, SPOT):
            (request,) = adapter.instruments_requests(sim.rest_url(adapter.venue))
            follow = adapter.next_instruments_page
            assert follow is not None
            walked: list[list[Instrument]] = []
            next_request: HttpRequest | None = request
            while next_request is not None:
                async with http.get(next_request.url) as response:
                    text = await response.text()
                walked.append(adapter.parse_instruments(next_request.key, text))
                next_request = follow(next_request, text)
                assert len(walked) <= 10, "the cursor never ran out"
            pages[adapter.venue] = walked
        linear = [[i.symbol for i in page] for page in pages[Venue.BYBIT_LINEAR]]
        assert linear == [LINEAR_SYMBOLS[0:2], LINEAR_SYMBOLS[2:4], LINEAR_SYMBOLS[4:]]
        assert [[i.symbol for i in page] for page in pages[Venue.BYBIT]] == [SPOT_SYMBOLS]
        cursors = [e.query.get("cursor") for e in sim.requests if e.venue == Venue.BYBIT_LINEAR]
        # the percent-encoded cursor went back as the same string
        assert cursors == [
            None,
            "first%3DBTCUSDT%26last%3DDOGEUSDT",
            "first%3DETHUSDT%26last%3DSOLUSDT",
        ]


async def test_the_daemon_loads_every_page_at_start_up(tmp_path: Path) -> None:
    async with paged_exchange() as sim:
        symbols = {Venue.BYBIT_LINEAR: LINEAR_SYMBOLS, Venue.BYBIT: SPOT_SYMBOLS}
        settings = write_settings(tmp_path, sim, symbols)
        async with aiohttp.ClientSession() as http:
            daemon = Daemon(settings, http, ADAPTERS)
            with capture_logs() as logs:
                registry = await daemon.load_registry()
        fetched = {e["venue"]: e["count"] for e in logs if e["event"] == "instruments.fetched"}
        assert fetched == {"bybit_linear": 5, "bybit": 3}
        assert not [e for e in logs if e["event"] == "instruments.fetch_failed"]
        for venue, names in symbols.items():
            assert sorted(i.symbol for i in registry.venue_instruments(venue)) == sorted(names)
        pages = [e for e in sim.requests if e.path == INSTRUMENTS_PATH]
        assert sum(1 for e in pages if e.venue == Venue.BYBIT_LINEAR) == 3
        assert sum(1 for e in pages if e.venue == Venue.BYBIT) == 1
