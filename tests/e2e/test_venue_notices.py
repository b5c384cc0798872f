"""A venue's advance notice of a disconnect is acted on: OKX 64008 ("the connection will
soon be closed for a service upgrade, please reconnect") makes the monitor open a
replacement connection at once and close the old one, before the venue cuts it off; no book
goes invalid, and every book still equals the exchange's."""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds.sim.okx import OkxProtocol
from monitor.domain import Venue
from tests.e2e.harness import all_valid, book_matches, exchange, running, until, write_settings

pytestmark = pytest.mark.integration

BOOKS = {Venue.OKX: ("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-SWAP")}


async def test_okx_upgrade_notice_reconnects_before_the_venue_closes(tmp_path: Path) -> None:
    async with exchange(BOOKS) as sim:
        settings = write_settings(tmp_path, sim, BOOKS)
        protocol = sim.protocols[Venue.OKX]
        assert isinstance(protocol, OkxProtocol)
        async with running(settings) as (daemon, watch):
            pipeline = daemon.pipeline
            assert pipeline is not None

            def settled() -> bool:
                return all_valid(daemon, BOOKS) and all(
                    book_matches(pipeline, sim.book(Venue.OKX, s), depth=10)
                    for s in BOOKS[Venue.OKX]
                )

            for _ in range(5):
                sim.step(Venue.OKX)
            await until(settled, timeout_s=20.0)
            (old,) = sim.open_connections(Venue.OKX)
            invalid_before = dict(watch.invalid_ticks)
            # the venue would close it in 30 s; the monitor must not wait for that
            assert protocol.notice(sim, close_after_s=30.0) == 1
            await until(lambda: old.closed, timeout_s=10.0)
            wanted = set(BOOKS[Venue.OKX])
            await until(
                lambda: [c.subscriptions for c in sim.open_connections(Venue.OKX)] == [wanted],
                timeout_s=10.0,
            )
            (new,) = sim.open_connections(Venue.OKX)
            assert new is not old
            for _ in range(5):
                sim.step(Venue.OKX)
            await until(settled, timeout_s=20.0)
            assert watch.invalid_ticks == invalid_before, "a book went invalid"
            health = daemon.health_state()[Venue.OKX.value]
            assert health["reconnect_requests"] == 1
            assert health["rotations"] == 1  # replaced (make before break), not dropped
            assert health["connects"] == 2
            assert health["close_codes"].get("1012", 0) == 0, "closed by us, not by the venue"
            assert health["counters"].get("venue_message", 0) == 1
