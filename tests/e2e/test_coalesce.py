"""The read coalescer live: a calm market on three venues of the local exchange through
one daemon whose sockets wake it only once enough bytes wait (``[connection]
coalesce_bytes``), or when it lets them through: on its timer and before every tick.

Here the timer is pushed out of the way after start-up, so that only the ticks let the
frames through: every tick must still see every frame the exchange sent before it, the
frames must come many to a read, and nothing may be lost.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from monitor.domain import Venue
from monitor.sample import TickSample
from tests.e2e.harness import (
    all_valid,
    books_match,
    exchange,
    running,
    stop,
    until,
    write_settings,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_RCVLOWAT: Linux only"),
]

BOOKS = {
    Venue.BINANCE: ("BTCUSDT", "ETHUSDT"),
    Venue.OKX: ("BTC-USDT",),
    Venue.KRAKEN: ("BTC/USD",),
}
TICK_MS = 250


async def test_calm_frames_wait_in_the_kernel_and_every_tick_sees_them(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with exchange(BOOKS) as sim:
        settings = write_settings(
            tmp_path, sim, BOOKS, tick_ms=TICK_MS, coalesce_bytes=65536, coalesce_ms=1000
        )
        async with running(settings) as (daemon, _watch):
            coalescer, window = daemon.coalescer, daemon.flush_window
            assert coalescer.enabled and window.group
            coalescer.max_delay_s = 3600.0  # from its next round on: only ticks let bytes in
            pipeline = daemon.pipeline
            assert pipeline is not None
            ticks: list[tuple[float, bool]] = []  # (when, every book equal to the exchange's)

            def on_tick(_sample: TickSample) -> None:
                ticks.append((loop.time(), books_match(pipeline, sim, BOOKS)))

            daemon.on_tick = on_tick
            market = asyncio.ensure_future(sim.run_market(80.0))  # ~20 frames a second each
            try:
                await until(lambda: all_valid(daemon, BOOKS), timeout_s=30.0)
                await asyncio.sleep(1.2)  # past the timer's first round (1 s, set at start-up)
                frames = sum(r.health.frames for r in daemon.venues.values())
                flushes, releases = window.flushes, coalescer.releases
                await asyncio.sleep(2.0)
            finally:
                await stop(market)
            stopped = loop.time()
            frames = sum(r.health.frames for r in daemon.venues.values()) - frames
            flushes, releases = window.flushes - flushes, coalescer.releases - releases
            await until(lambda: any(at > stopped + 0.05 for at, _ in ticks), timeout_s=5.0)
            after = [ok for at, ok in ticks if at > stopped + 0.05]
            # the first tick after the market stopped saw every frame it had sent, though
            # no timer let them through: the tick did
            assert after[0]
            # at 80 updates a second over three connections, frames came many to a read
            assert frames >= 100
            assert releases >= 4  # the ticks' (2 s / 250 ms, a socket or more each)
            assert frames >= 5 * flushes
            gaps = {k: n for k, n in pipeline.counters.messages.items() if k.endswith(".gap")}
            assert gaps == {}
            for runtime in daemon.venues.values():
                assert runtime.health.disconnects == 0
