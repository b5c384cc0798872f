"""Every venue's connection faults, end to end: the daemon against the local exchange.

For each simulated venue and each fault the local exchange can inject, the book that the
fault breaks is reported invalid (no metrics) for the span of the fault, is rebuilt, and
then equals the exchange's book exactly; books the fault does not touch stay valid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds.sim.base import ExchangeSim
from feeds.sim.registry import PROTOCOLS
from monitor.domain import Venue
from tests.e2e.harness import (
    book_matches,
    exchange,
    running,
    until,
    valid,
    write_settings,
)

pytestmark = pytest.mark.integration

# two books per venue: the fault hits the first, the second must not notice
BOOKS: dict[Venue, tuple[str, str]] = {
    Venue.BINANCE: ("BTCUSDT", "ETHUSDT"),
    Venue.BINANCE_FUTURES: ("BTCUSDT", "ETHUSDT"),
    Venue.OKX: ("BTC-USDT", "BTC-USDT-SWAP"),
    Venue.BYBIT: ("BTCUSDT", "ETHUSDT"),
    Venue.BYBIT_LINEAR: ("BTCUSDT", "ETHUSDT"),
    Venue.COINBASE: ("BTC-USD", "ETH-USD"),
    Venue.KRAKEN: ("BTC/USD", "ETH/USD"),
    Venue.HYPERLIQUID: ("BTC", "ETH"),
    Venue.DERIBIT: ("BTC-PERPETUAL", "ETH-PERPETUAL"),
}
VENUES = [v for v in BOOKS if v in PROTOCOLS]


def churn(sim: ExchangeSim, venue: Venue, times: int = 5) -> None:
    for _ in range(times):
        sim.step(venue)


async def settle(sim: ExchangeSim, daemon, venue: Venue) -> None:  # type: ignore[no-untyped-def]
    """Keep the market moving until both books are valid and equal the exchange's."""
    symbols = BOOKS[venue]

    def done() -> bool:
        sim.step(venue)
        assert daemon.pipeline is not None
        return all(valid(daemon, venue, s) for s in symbols) and all(
            book_matches(daemon.pipeline, sim.book(venue, s), depth=10) for s in symbols
        )

    await until(done, timeout_s=30.0)


@pytest.fixture(params=VENUES, ids=lambda v: v.value)
def venue(request: pytest.FixtureRequest) -> Venue:
    return Venue(request.param)


async def test_books_build_and_track_the_exchange(tmp_path: Path, venue: Venue) -> None:
    books = {venue: BOOKS[venue]}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle(sim, daemon, venue)
            for _ in range(50):
                sim.step(venue)
            await settle(sim, daemon, venue)
            health = daemon.health_state()[venue.value]
            assert health["gaps"] == 0 and health["checksum_failed"] == 0
            assert health["counters"].get("parse_error", 0) == 0
            assert watch.metrics_from_invalid == 0


async def test_a_lost_message_resyncs_only_that_book(tmp_path: Path, venue: Venue) -> None:
    books = {venue: BOOKS[venue]}
    broken, other = BOOKS[venue]
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle(sim, daemon, venue)
            before = dict(watch.invalid_ticks)
            sim.lose_next(venue, broken)
            sim.step(venue)
            await settle(sim, daemon, venue)
            pipeline = daemon.pipeline
            assert pipeline is not None
            info = pipeline.books[(venue, broken)]
            if venue == Venue.HYPERLIQUID:
                # every message is a full book: a lost one is healed by the next, no resync
                assert info.resyncs == 0
            else:
                assert info.resyncs >= 1  # detected (gap, checksum or connection counter)
            assert (
                watch.invalid_ticks.get((venue.value, other), 0)
                == before.get((venue.value, other), 0)
                or pipeline.books[(venue, other)].resyncs == info.resyncs
            )  # per-connection venues
            assert watch.metrics_from_invalid == 0


async def test_a_dropped_connection_invalidates_then_recovers(tmp_path: Path, venue: Venue) -> None:
    books = {venue: BOOKS[venue]}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle(sim, daemon, venue)
            connects = daemon.health_state()[venue.value]["connects"]
            await sim.drop(venue)
            await until(lambda: daemon.health_state()[venue.value]["disconnects"] >= 1)
            churn(sim, venue)
            await settle(sim, daemon, venue)
            assert daemon.health_state()[venue.value]["connects"] > connects
            assert all(daemon.pipeline.books[(venue, s)].resyncs >= 1 for s in BOOKS[venue])  # type: ignore[union-attr]
            assert watch.metrics_from_invalid == 0


async def test_a_silent_venue_is_detected_as_stale(tmp_path: Path, venue: Venue) -> None:
    books = {venue: BOOKS[venue]}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books, receive_timeout_s=1.0)
        async with running(settings) as (daemon, watch):
            await settle(sim, daemon, venue)
            sim.set_silent(venue)
            await until(
                lambda: not any(valid(daemon, venue, s) for s in BOOKS[venue]), timeout_s=20
            )
            assert daemon.health_state()[venue.value]["stale"] >= 1
            sim.set_silent(venue, False)
            await settle(sim, daemon, venue)
            assert watch.metrics_from_invalid == 0


async def test_garbage_and_truncated_frames_are_counted_and_survived(
    tmp_path: Path, venue: Venue
) -> None:
    books = {venue: BOOKS[venue]}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle(sim, daemon, venue)
            sim.send_garbage(venue)
            sim.truncate_next(venue)
            churn(sim, venue)
            await until(
                lambda: daemon.health_state()[venue.value]["counters"].get("parse_error", 0) >= 2
            )
            await settle(sim, daemon, venue)
            assert watch.metrics_from_invalid == 0
