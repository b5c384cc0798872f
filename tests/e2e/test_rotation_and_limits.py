"""Planned rotations, venue penalties and keepalives, end to end against the local exchange.

- A planned rotation (a fresh connection before the venue's lifetime ends) never makes a
  book invalid: REST venues drop the duplicate deltas by id, stream venues switch over at
  the new connection's snapshots.
- A 1008 close (policy violation) is followed by at least the policy-violation backoff.
- REST 429 (Retry-After), 418 (ban) and 503 on snapshots are honoured as the exchange's
  request log shows, and the books recover.
- A wrong checksum resyncs only the book it is about; a lost message on a per-connection
  counter (Coinbase) reconnects; Deribit's test requests are answered; the application
  ping keeps an idle-closing venue's connection open.

Every assertion reads the local exchange's logs (connections, frames received, REST
requests) or the daemon's counters; nothing waits on a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from feeds import venues as venue_registry
from feeds.okx import OkxAdapter
from feeds.sim.base import Change, ExchangeSim, RequestLogEntry, SimConnection, VenueProtocol
from feeds.sim.deribit import DeribitProtocol
from feeds.sim.exchange import add_books
from feeds.sim.okx import OkxProtocol
from monitor.daemon import Daemon
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from tests.e2e.harness import (
    FAST_CONNECTION,
    Watch,
    all_valid,
    books_match,
    exchange,
    running,
    until,
    valid,
    write_settings,
)

pytestmark = pytest.mark.integration

Books = Mapping[Venue, Sequence[str]]

BINANCE_BOOKS: Books = {Venue.BINANCE: ("BTCUSDT", "ETHUSDT")}
ROTATION_BOOKS: dict[Venue, tuple[str, str]] = {
    Venue.BINANCE: ("BTCUSDT", "ETHUSDT"),  # REST snapshots
    Venue.OKX: ("BTC-USDT", "ETH-USDT"),  # stream snapshots, checksums
    Venue.BYBIT: ("BTCUSDT", "ETHUSDT"),  # stream snapshots
}
CHECKSUM_BOOKS: dict[Venue, tuple[str, str]] = {
    Venue.OKX: ("BTC-USDT", "ETH-USDT"),
    Venue.KRAKEN: ("BTC/USD", "ETH/USD"),
}
ROTATE_AFTER_S = 1.0
POLICY_VIOLATION_BACKOFF_S = 2.0  # well above FAST_CONNECTION's backoff (at most 0.2 s)


# --- helpers --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def moving(sim: ExchangeSim, venue: Venue, every_s: float = 0.02) -> AsyncIterator[None]:
    """The venue's market changes every ``every_s`` for the duration of the block."""

    async def run() -> None:
        while True:
            sim.step(venue)
            await asyncio.sleep(every_s)

    task = asyncio.ensure_future(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def custom_exchange(
    books: Books, protocols: Sequence[VenueProtocol], *, heartbeat_s: float = 1.0
) -> AsyncIterator[ExchangeSim]:
    """Like ``harness.exchange``, with protocol objects built by the test."""
    registry = InstrumentRegistry.load_cached(list(books))
    sim = ExchangeSim(protocols, heartbeat_s=heartbeat_s)
    for venue, names in books.items():
        assert len(add_books(sim, registry, venue, names, levels=30)) == len(names)
    async with sim:
        yield sim


async def settle(sim: ExchangeSim, daemon: Daemon, books: Books) -> None:
    """Every book valid and equal to the exchange's (the market is left where it is)."""
    pipeline = daemon.pipeline
    assert pipeline is not None

    await until(
        lambda: all_valid(daemon, books) and books_match(pipeline, sim, books), timeout_s=20.0
    )


async def settle_moving(sim: ExchangeSim, daemon: Daemon, venue: Venue, books: Books) -> None:
    """The market moves until every book is valid, then stops until they equal the exchange's."""
    async with moving(sim, venue):
        await until(lambda: all_valid(daemon, books), timeout_s=20.0)
    await settle(sim, daemon, books)


def health(daemon: Daemon, venue: Venue) -> dict[str, Any]:
    return daemon.health_state()[venue.value]


def resyncs(daemon: Daemon, venue: Venue, symbol: str) -> int:
    assert daemon.pipeline is not None
    return daemon.pipeline.books[(venue, symbol)].resyncs


def invalid_ticks(watch: Watch, venue: Venue, symbol: str) -> int:
    return watch.invalid_ticks.get((venue.value, symbol), 0)


def depth_requests(sim: ExchangeSim, since: int = 0) -> list[RequestLogEntry]:
    return [
        r for r in sim.requests[since:] if r.venue == Venue.BINANCE and r.path.endswith("/depth")
    ]


def touch_the_top(sim: ExchangeSim, venue: Venue, symbol: str) -> None:
    """One update that certainly reaches every client: the best bid's size changes."""
    book = sim.book(venue, symbol)
    best = book.best_bid()
    assert best is not None
    sim.update(venue, symbol, [Change("bid", best, book.bids[best] + 1)])


# --- a. planned rotation --------------------------------------------------------------------------


@pytest.mark.parametrize("venue", list(ROTATION_BOOKS), ids=lambda v: v.value)
async def test_planned_rotation_never_invalidates_a_book(tmp_path: Path, venue: Venue) -> None:
    books = {venue: ROTATION_BOOKS[venue]}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings, rotate_after_s=ROTATE_AFTER_S) as (daemon, watch):
            fewest_open = 1

            def rotated() -> bool:
                nonlocal fewest_open  # sampled every 10 ms: make before break, no gap
                fewest_open = min(fewest_open, len(sim.open_connections(venue)))
                return (
                    health(daemon, venue)["rotations"] >= 2
                    and len([c for c in sim.connections if c.venue == venue]) >= 3
                )

            async with moving(sim, venue):
                await until(lambda: all_valid(daemon, books), timeout_s=20.0)
                invalid_before = dict(watch.invalid_ticks)
                await until(rotated, timeout_s=20.0)
            await settle(sim, daemon, books)
            state = health(daemon, venue)
            assert state["rotations"] >= 2
            assert fewest_open >= 1  # the exchange always had one of them open
            # every connection that ended was rotated out: none was lost or went stale
            assert state["disconnects"] == state["rotations"]
            assert state["close_codes"] == {} or set(state["close_codes"]) <= {"1000"}
            assert len(sim.open_connections(venue)) >= 1
            # never invalid after the first time they were valid, never thrown away
            assert watch.invalid_ticks == invalid_before
            for symbol in books[venue]:
                assert resyncs(daemon, venue, symbol) == 0
            assert state["gaps"] == 0 and state["checksum_failed"] == 0
            assert watch.metrics_from_invalid == 0


# --- b. 1008 --------------------------------------------------------------------------------------


async def test_a_1008_close_waits_the_policy_violation_backoff(tmp_path: Path) -> None:
    venue = Venue.BINANCE
    loop = asyncio.get_running_loop()
    async with exchange(BINANCE_BOOKS) as sim:
        settings = write_settings(
            tmp_path, sim, BINANCE_BOOKS, policy_violation_backoff_s=POLICY_VIOLATION_BACKOFF_S
        )
        async with running(settings) as (daemon, watch):
            await settle_moving(sim, daemon, venue, BINANCE_BOOKS)
            opened = len(sim.connections)
            async with moving(sim, venue):
                await sim.drop(venue=venue, code=1008, reason="Too many requests")
                closed_at = loop.time()  # the close handshake is over: the client has it
                await until(lambda: len(sim.connections) > opened, timeout_s=10.0)
                reconnect = sim.connections[opened]
                waited_s = reconnect.opened_at - closed_at
                assert waited_s >= POLICY_VIOLATION_BACKOFF_S
                # and no more than that plus the ordinary backoff and a connect
                most_s = POLICY_VIOLATION_BACKOFF_S + FAST_CONNECTION["backoff_max_s"] + 1.0
                assert waited_s < most_s
                await until(lambda: all_valid(daemon, BINANCE_BOOKS), timeout_s=20.0)
            await settle(sim, daemon, BINANCE_BOOKS)
            assert len(sim.connections) == opened + 1  # one reconnect, after the wait
            assert health(daemon, venue)["close_codes"] == {"1008": 1}
            assert watch.metrics_from_invalid == 0


# --- c. REST 429 / 418 / 503 on snapshots ---------------------------------------------------------


async def _resync_through_fault(
    tmp_path: Path, status: int, **fault: Any
) -> tuple[list[RequestLogEntry], list[RequestLogEntry], Daemon]:
    """One Binance book resynced (its connection dropped) while the snapshot endpoint
    answers ``status``; returns the depth requests, every Binance request after the drop,
    and the daemon."""
    venue = Venue.BINANCE
    books = {venue: ("BTCUSDT",)}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle_moving(sim, daemon, venue, books)
            since = len(sim.requests)
            connects = health(daemon, venue)["connects"]
            sim.fail_next(venue, status, path="/api/v3/depth", **fault)
            async with moving(sim, venue):
                await sim.drop(venue)
                await until(
                    lambda: (
                        health(daemon, venue)["connects"] > connects and all_valid(daemon, books)
                    ),
                    timeout_s=30.0,
                )
            await settle(sim, daemon, books)
            assert watch.metrics_from_invalid == 0
            after = [r for r in sim.requests[since:] if r.venue == venue]
            return depth_requests(sim, since), after, daemon


async def test_a_429_pauses_snapshots_for_retry_after(tmp_path: Path) -> None:
    retry_after_s = 1.0
    depth, _, _ = await _resync_through_fault(tmp_path, 429, retry_after_s=retry_after_s)
    assert [r.status for r in depth] == [429, 200]
    assert depth[1].at - depth[0].at >= retry_after_s


async def test_a_418_ban_stops_every_request_until_it_ends(tmp_path: Path) -> None:
    ban_s = 2.0
    depth, after, daemon = await _resync_through_fault(tmp_path, 418, retry_after_s=ban_s)
    assert [r.status for r in depth] == [418, 200]
    banned_at = depth[0].at
    during = [r for r in after if banned_at < r.at < banned_at + ban_s]
    assert during == []  # nothing at all was asked of the venue during the ban
    assert depth[1].at - banned_at >= ban_s
    assert health(daemon, Venue.BINANCE)["snapshots_failed"] == 1


async def test_503s_are_retried_with_capped_backoff(tmp_path: Path) -> None:
    depth, _, _ = await _resync_through_fault(tmp_path, 503, count=3)
    assert [r.status for r in depth] == [503, 503, 503, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(depth)]
    # RestClient: full jitter under caps of 0.5, 1 and 2 s (backoff_initial_s 0.5, doubling)
    for attempt, gap in enumerate(gaps):
        assert gap <= min(10.0, 0.5 * 2**attempt) + 0.5, gaps
    # spaced, not a burst (three uniform draws summing under 50 ms: odds about 2e-5)
    assert depth[-1].at - depth[0].at > 0.05, gaps


# --- d. a wrong checksum --------------------------------------------------------------------------


@pytest.mark.parametrize("venue", list(CHECKSUM_BOOKS), ids=lambda v: v.value)
async def test_a_wrong_checksum_resyncs_only_that_book(tmp_path: Path, venue: Venue) -> None:
    books = {venue: CHECKSUM_BOOKS[venue]}
    broken, other = CHECKSUM_BOOKS[venue]
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle_moving(sim, daemon, venue, books)
            assert health(daemon, venue)["checksum_ok"] > 0  # the exchange sends real ones
            other_invalid = invalid_ticks(watch, venue, other)
            sim.corrupt_checksum(venue, broken)
            touch_the_top(sim, venue, broken)
            await until(lambda: health(daemon, venue)["checksum_failed"] >= 1, timeout_s=10.0)
            await settle_moving(sim, daemon, venue, books)
            assert health(daemon, venue)["checksum_failed"] == 1
            assert resyncs(daemon, venue, broken) == 1
            assert resyncs(daemon, venue, other) == 0
            assert invalid_ticks(watch, venue, other) == other_invalid
            assert health(daemon, venue)["disconnects"] == 0  # resubscribed, not reconnected
            assert watch.metrics_from_invalid == 0


# --- e. Coinbase's per-connection counter ---------------------------------------------------------


async def test_a_lost_coinbase_message_reconnects_and_recovers(tmp_path: Path) -> None:
    venue = Venue.COINBASE
    books = {venue: ("BTC-USD", "ETH-USD")}
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            await settle_moving(sim, daemon, venue, books)
            opened = len(sim.connections)
            sim.lose_next(venue, "BTC-USD")
            touch_the_top(sim, venue, "BTC-USD")  # numbered, never sent
            touch_the_top(sim, venue, "ETH-USD")  # the next number shows the gap
            await until(lambda: health(daemon, venue)["sequence_gaps"] >= 1, timeout_s=10.0)
            await settle_moving(sim, daemon, venue, books)
            assert health(daemon, venue)["sequence_gaps"] == 1
            assert len(sim.connections) == opened + 1  # the session reconnected once
            for symbol in books[venue]:  # the counter is the connection's: both rebuilt
                assert resyncs(daemon, venue, symbol) == 1
            assert watch.metrics_from_invalid == 0


# --- f. Deribit's heartbeat -----------------------------------------------------------------------


async def test_deribit_test_requests_are_answered(tmp_path: Path) -> None:
    venue = Venue.DERIBIT
    books = {venue: ("BTC-PERPETUAL", "ETH-PERPETUAL")}
    # the daemon asks for a 30 s heartbeat; the exchange runs it at 0.6 s
    protocol = DeribitProtocol(interval_scale=0.02)
    async with custom_exchange(books, [protocol], heartbeat_s=0.1) as sim:
        settings = write_settings(tmp_path, sim, books)
        # control: a client that does not answer is closed by the exchange
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(sim.ws_url(venue, "/ws/api/v2")) as silent,
        ):
            await silent.send_str(
                '{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}'
            )
            async with asyncio.timeout(10.0):
                async for _ in silent:
                    pass
            assert silent.close_code == 1000
        controls = len(sim.connections)
        async with running(settings) as (daemon, watch):
            await settle_moving(sim, daemon, venue, books)
            mine = sim.connections[controls]

            def answers() -> int:
                return sum('"public/test"' in frame for frame in mine.received)

            async with moving(sim, venue, every_s=0.05):
                await until(lambda: answers() >= 6, timeout_s=20.0)  # six intervals and more
            assert not mine.closed
            assert len(sim.connections) == controls + 1
            assert health(daemon, venue)["disconnects"] == 0
            assert all(valid(daemon, venue, s) for s in books[venue])
            assert watch.metrics_from_invalid == 0


# --- g. keepalive against an idle-closing venue ---------------------------------------------------


class FastKeepaliveOkx(OkxAdapter):
    """OKX with its application ping due after 0.25 s of client silence (stock: 20 s)."""

    __slots__ = ()
    keepalive_s: float | None = 0.25


async def test_the_keepalive_ping_keeps_an_idle_closing_venue_open(tmp_path: Path) -> None:
    venue = Venue.OKX
    books = {venue: ("BTC-USDT", "ETH-USDT")}
    idle_s = 1.0
    protocol = OkxProtocol(checksum=True, client_idle_timeout_s=idle_s)
    adapters = {**venue_registry.ADAPTERS, venue: FastKeepaliveOkx()}
    async with custom_exchange(books, [protocol], heartbeat_s=0.1) as sim:
        settings = write_settings(tmp_path, sim, books)
        # control: a client that sends nothing is closed for idleness
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(sim.ws_url(venue, "/ws/v5/public")) as silent,
        ):
            async with asyncio.timeout(10.0):
                async for _ in silent:
                    pass
            assert silent.close_code == 4000
        controls = len(sim.connections)
        async with running(settings, adapters=adapters) as (daemon, watch):
            await settle_moving(sim, daemon, venue, books)
            mine = sim.connections[controls]

            def pings() -> int:
                return sum(frame == "ping" for frame in mine.received)

            # four idle timeouts at least, the market standing still (nothing but pings sent)
            await until(lambda: pings() >= 16 and sim_age(sim, mine) > 4 * idle_s, timeout_s=20.0)
            assert not mine.closed
            assert len(sim.connections) == controls + 1
            state = health(daemon, venue)
            assert state["disconnects"] == 0 and state["close_codes"] == {}
            await settle(sim, daemon, books)
            assert watch.metrics_from_invalid == 0


def sim_age(sim: ExchangeSim, conn: SimConnection) -> float:
    return asyncio.get_running_loop().time() - conn.opened_at
