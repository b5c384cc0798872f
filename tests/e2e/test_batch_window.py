"""The batch window live: every venue of the local exchange through one daemon whose
frames are applied at most once per ``[connection] batch_window_ms``.

The market runs while the daemon batches the reads of all its connections: no frame may be
lost or reordered (every book ends equal to the exchange's, with no gap), and the window
bounds how often the loop applies frames, whatever the rate.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from feeds.sim.exchange import all_protocols
from monitor.domain import Venue
from tests.e2e.harness import (
    all_valid,
    books_match,
    exchange,
    running,
    stop,
    until,
    write_settings,
)

pytestmark = pytest.mark.integration

BOOKS = {
    Venue.BINANCE: ("BTCUSDT", "ETHUSDT"),
    Venue.OKX: ("BTC-USDT", "BTC-USDT-SWAP"),
    Venue.KRAKEN: ("BTC/USD", "ETH/USD"),
    Venue.HYPERLIQUID: ("BTC", "ETH"),
    Venue.COINBASE: ("BTC-USD", "ETH-USD"),
}
WINDOW_MS = 20.0  # large, so that batching shows; the shipped default is 1 ms


async def test_reads_of_every_connection_batched_per_window_lose_nothing(tmp_path: Path) -> None:
    protocols = {p.venue for p in all_protocols(list(BOOKS))}
    books = {v: s for v, s in BOOKS.items() if v in protocols}
    loop = asyncio.get_running_loop()
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books, batch_window_ms=WINDOW_MS)
        async with running(settings) as (daemon, _watch):
            window = daemon.flush_window
            assert window.window_s == WINDOW_MS / 1000.0
            market = asyncio.ensure_future(sim.run_market(400.0))
            try:
                await until(lambda: all_valid(daemon, books), timeout_s=30.0)
                flushes, started = window.flushes, loop.time()
                frames = sum(r.health.frames for r in daemon.venues.values())
                await asyncio.sleep(1.5)
                elapsed = loop.time() - started
                flushed = window.flushes - flushes
                frames = sum(r.health.frames for r in daemon.venues.values()) - frames
            finally:
                await stop(market)
            pipeline = daemon.pipeline
            assert pipeline is not None
            await until(lambda: books_match(pipeline, sim, books), timeout_s=10.0)
            # at most one flush per window (one more for a window open at the start), while
            # 400 updates a second came over five connections
            assert 0 < flushed <= elapsed / (WINDOW_MS / 1000.0) + 1
            assert frames > 2 * flushed  # several reads' frames per flush
            for runtime in daemon.venues.values():
                assert runtime.health.disconnects == 0
            gaps = {k: n for k, n in pipeline.counters.messages.items() if k.endswith(".gap")}
            assert gaps == {}
