"""Cold start within the REST weight limit: more books than one window's deep budget.

The local exchange serves Binance spot books of 300 levels a side and states (in
``exchangeInfo.rateLimits``) a weight limit small enough that only a few 1000-level
snapshots (weight 50) fit one window; it refuses weight over it with 429, as Binance does.
The daemon must read that limit, make every book valid from cheap start snapshots (weight
5) within the first window, then deepen every book to the full depth by a second sync into
the same book, with no book ever reported invalid once valid, every book equal to the
exchange's down to its 300th level, and the exchange's weight log never over its limit.
A 429, a 418 or an error answer to a deeper snapshot costs a retry and one log line, no
traceback, and the books stay valid.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from feeds.sim import BinanceProtocol
from feeds.sim.base import ExchangeSim
from monitor.daemon import Daemon
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from tests.e2e.harness import all_valid, book_matches, exchange, running, until, write_settings

pytestmark = pytest.mark.integration

VENUE = Venue.BINANCE
BOOKS = 16
LEVELS = 300  # a side: deeper than the start snapshot (100), within the full one (1000)
WEIGHT_LIMIT = 400  # stated per WEIGHT_INTERVAL_S: 7 deep snapshots (50) fit the budget
WEIGHT_INTERVAL_S = 2
MARKET_UPDATES_PER_S = 200.0
# per venue: the weight limit the exchange states and the start depth (weights 5 and 2,
# the full depth's 50 and 20): a few deep snapshots fit one window, all the start ones do
VENUES = {Venue.BINANCE: (WEIGHT_LIMIT, 100), Venue.BINANCE_FUTURES: (160, 50)}


def pick_symbols(venue: Venue = VENUE) -> list[str]:
    registry = InstrumentRegistry.load_cached([venue])
    usdt = sorted(i.symbol for i in registry.venue_instruments(venue) if i.quote == "USDT")
    return usdt[:BOOKS]


@contextlib.asynccontextmanager
async def limited_exchange(
    symbols: list[str], venue: Venue = VENUE, weight_limit: int = WEIGHT_LIMIT
) -> Any:
    async with exchange({venue: symbols}, levels=LEVELS) as sim:
        protocol = sim.protocols[venue]
        assert isinstance(protocol, BinanceProtocol)
        protocol.weight_limit = weight_limit
        protocol.weight_interval_s = float(WEIGHT_INTERVAL_S)
        market = asyncio.ensure_future(sim.run_market(MARKET_UPDATES_PER_S))
        try:
            yield sim, market
        finally:
            market.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await market


def weight_windows(sim: ExchangeSim, venue: Venue = VENUE) -> list[int]:
    """The weight of every sliding window (of the stated interval) the exchange answered,
    by its own request log, refused requests included."""
    protocol = sim.protocols[venue]
    assert isinstance(protocol, BinanceProtocol)
    weighted = [(r.at, protocol.weight(r.path, r.query)) for r in sim.requests if r.venue == venue]
    return [sum(w for t, w in weighted if at <= t < at + WEIGHT_INTERVAL_S) for at, _ in weighted]


def health(daemon: Daemon, venue: Venue = VENUE) -> dict[str, Any]:
    return daemon.health_state()[venue.value]


def depth_limits(daemon: Daemon, symbols: list[str], venue: Venue = VENUE) -> list[int]:
    assert daemon.pipeline is not None
    return [daemon.pipeline.books[(venue, s)].limit for s in symbols]


@pytest.fixture
def symbols() -> Iterator[list[str]]:
    yield pick_symbols()


async def wait_all_deep(
    daemon: Daemon, symbols: list[str], timeout_s: float, venue: Venue = VENUE
) -> None:
    await until(
        lambda: health(daemon, venue)["full_depth_books"] == len(symbols), timeout_s=timeout_s
    )


async def settle(
    sim: ExchangeSim,
    market: asyncio.Future[Any],
    daemon: Daemon,
    symbols: list[str],
    venue: Venue = VENUE,
) -> None:
    """Stop the market and wait until the daemon has applied every update it sent."""
    market.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await market
    assert daemon.pipeline is not None
    pipeline = daemon.pipeline

    def caught_up() -> bool:
        pipeline.flush()
        return all(
            int(pipeline.store.istate[pipeline.books[(venue, s)].book, 1])  # S_LAST_ID
            == sim.books[(venue, s)].seq
            for s in symbols
        )

    await until(caught_up, timeout_s=10.0)


@pytest.mark.parametrize("venue", list(VENUES), ids=lambda v: v.value)
async def test_more_books_than_a_window_of_deep_snapshots_start_valid_then_deepen(
    tmp_path: Path, venue: Venue
) -> None:
    weight_limit, start = VENUES[venue]
    symbols = pick_symbols(venue)
    books = {venue: symbols}
    async with limited_exchange(symbols, venue, weight_limit) as (sim, market):
        settings = write_settings(tmp_path, sim, books, tick_ms=20)
        with capture_logs() as logs:
            async with running(settings) as (daemon, watch):
                await until(lambda: all_valid(daemon, books), timeout_s=20.0)
                invalid_when_valid = dict(watch.invalid_ticks)
                ticks_when_valid = watch.ticks
                limits = depth_limits(daemon, symbols, venue)
                # full depth while it fitted the window beside the start snapshots of the
                # others, then the start depth: most books started shallow
                assert limits.count(start) >= BOOKS // 2, limits
                assert limits.count(1000) >= 1, limits
                assert set(limits) == {start, 1000}
                await wait_all_deep(daemon, symbols, 60.0, venue)
                await until(lambda: watch.ticks > ticks_when_valid + 3)
                await settle(sim, market, daemon, symbols, venue)
                assert daemon.pipeline is not None
                for symbol in symbols:
                    assert book_matches(daemon.pipeline, sim.books[(venue, symbol)], LEVELS)
                state = health(daemon, venue)
    # no book went invalid once valid, though most were re-synced deeper
    assert watch.invalid_ticks == invalid_when_valid
    assert depth_limits(daemon, symbols, venue) == [1000] * BOOKS
    assert state["deepens_ok"] >= BOOKS // 2 and state["resyncs"] == 0
    # the limit the exchange stated was read and kept, and no request was refused
    stated = next(e for e in logs if e["event"] == "rest.weight_limit")
    assert (stated["limit"], stated["interval_s"]) == (weight_limit, WEIGHT_INTERVAL_S)
    assert max(weight_windows(sim, venue)) <= weight_limit
    assert [r.status for r in sim.requests if r.status != 200] == []
    # the deep snapshots took more than one window: the limit is what paced them
    depth_at = [r.at for r in sim.requests if r.query.get("limit") == "1000"]
    assert max(depth_at) - min(depth_at) > WEIGHT_INTERVAL_S
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]
    assert not [e for e in logs if "exc_info" in e or "exception" in e]


@pytest.mark.parametrize(
    ("status", "retry_after_s", "line"),
    [
        (429, 0.5, "rest.rate_limited"),
        (418, 0.5, "rest.banned"),
        (400, None, "book.deepen_failed"),
    ],
)
async def test_a_refused_deeper_snapshot_is_retried_and_the_books_stay_valid(
    tmp_path: Path, symbols: list[str], status: int, retry_after_s: float | None, line: str
) -> None:
    async with limited_exchange(symbols) as (sim, _market):
        settings = write_settings(tmp_path, sim, {VENUE: symbols}, tick_ms=20)
        with capture_logs() as logs:
            async with running(settings) as (daemon, watch):
                await until(lambda: all_valid(daemon, {VENUE: symbols}), timeout_s=20.0)
                invalid_when_valid = dict(watch.invalid_ticks)
                # the next deeper snapshot is refused
                sim.fail_next(VENUE, status, retry_after_s=retry_after_s, path="/api/v3/depth")
                await wait_all_deep(daemon, symbols, timeout_s=60.0)
                state = health(daemon)
    assert [r.status for r in sim.requests if r.status != 200] == [status]
    assert watch.invalid_ticks == invalid_when_valid
    assert state["resyncs"] == 0
    # one line says what happened, at warning or above; nothing else does
    said = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert [e["event"] for e in said] == [line], said
    assert str(status) in str(said[0]) or line == "rest.rate_limited"
    assert not [e for e in logs if "exc_info" in e or "exception" in e]
    assert max(weight_windows(sim)) <= WEIGHT_LIMIT
