"""The local exchange's random market after a stall: it does not send the whole backlog."""

from __future__ import annotations

import asyncio
import time

import pytest

from feeds.sim.base import MAX_BEHIND_S, ExchangeSim
from feeds.sim.exchange import all_protocols
from monitor.domain import Venue

RATE = 2000.0  # updates per second


@pytest.mark.asyncio
async def test_a_stalled_market_sends_at_most_a_second_of_backlog_at_once() -> None:
    sim = ExchangeSim(all_protocols([Venue.BINANCE]))
    sim.add_book(Venue.BINANCE, "BTCUSDT")
    market = asyncio.ensure_future(sim.run_market(RATE))
    try:
        while sim.updates_sent < 100:  # running at its pace
            await asyncio.sleep(0.01)
        time.sleep(3 * MAX_BEHIND_S)  # the machine stalls the event loop for 3 s
        before = sim.updates_sent
        await asyncio.sleep(0.02)  # the market's next rounds
        burst = sim.updates_sent - before
        # a second of backlog (plus the round's own slack), not the three seconds missed
        assert 0 < burst <= RATE * (MAX_BEHIND_S + 0.5)
        # and it keeps its pace afterwards
        start, t0 = sim.updates_sent, time.monotonic()
        await asyncio.sleep(0.5)
        rate = (sim.updates_sent - start) / (time.monotonic() - t0)
        assert rate > RATE / 4
    finally:
        market.cancel()
