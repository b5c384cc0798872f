"""200 books on nine venues lose every connection at once, and come back within the limits.

The daemon runs against the local exchange with 200 books (Binance 60, USD-M 50, OKX and
every smaller venue with what its instrument cache knows). Once every book is valid, the
exchange drops every connection of every venue at the same moment. Every book must be
reported invalid (never with metrics), rebuilt, and equal the exchange's again; and the
exchange's own logs (connections opened, client frames received, REST requests answered)
must show that no venue's documented limits were exceeded while that happened: frames per
connection per second (and per hour), books per connection, topics per subscribe frame,
new connections per second, REST weight per minute, and no 418/429. Every book must come
back with its connection's own subscription (or REST snapshot): no resubscribe, no
snapshot timeout, no unsubscribe frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog

from feeds.contract import VenueAdapter
from feeds.sim.base import ExchangeSim
from feeds.sim.exchange import STABLES, mid_for
from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.log import configure_logging
from monitor.settings import Settings, load_settings
from tests.e2e.harness import (
    all_valid,
    books_match,
    exchange,
    running,
    stop,
    until,
    valid,
    write_settings,
)

pytestmark = pytest.mark.integration

TOTAL_BOOKS = 200
LARGE_VENUES = {Venue.BINANCE: 60, Venue.BINANCE_FUTURES: 50}
SMALL_VENUES = (
    Venue.BYBIT,
    Venue.BYBIT_LINEAR,
    Venue.COINBASE,
    Venue.KRAKEN,
    Venue.HYPERLIQUID,
    Venue.DERIBIT,
)
FILL_VENUE = Venue.OKX  # its cache has hundreds of instruments: it tops the count up
# REST snapshot depth of the two Binance markets: weight 5 a book, so that the start and the
# resync together fit the weight budget's minute (at 1000 levels, 60 spot books cost 3000 of
# the 3000 the budget spends a minute: the resync would wait out the minute)
SNAPSHOT_LIMIT = 100
# The local exchange stamps frames and connections when its side of the same event loop
# reads them: a frame sent on time may be read late, the next one on time. Windows are
# measured this much shorter so that such jitter is not taken for a burst.
JITTER_S = 0.05
MARKET_UPDATES_PER_S = 100.0


def pick_books() -> dict[Venue, list[str]]:
    """Symbols per venue from the instrument caches: every small venue's whole cache, 60 and
    50 Binance books, and OKX up to 200. Only instruments whose synthetic book sits well
    above its tick (a plausible mid far from zero) are used, in name order."""
    counts: dict[Venue, int | None] = {v: None for v in SMALL_VENUES} | dict(LARGE_VENUES)
    books: dict[Venue, list[str]] = {}
    for venue, count in counts.items():
        books[venue] = _usable(venue)[:count]
    books[FILL_VENUE] = _usable(FILL_VENUE)[: TOTAL_BOOKS - sum(map(len, books.values()))]
    return books


def _usable(venue: Venue) -> list[str]:
    registry = InstrumentRegistry.load_cached([venue])
    names = []
    for instrument in registry:
        if (venue in LARGE_VENUES or venue == FILL_VENUE) and instrument.quote not in STABLES:
            continue  # cross pairs price through other books: keep the big venues simple
        if Decimal(mid_for(instrument)) > Decimal(instrument.tick) * 200:
            names.append(instrument.symbol)
    return sorted(names)


def settings_for(tmp_path: Path, sim: ExchangeSim, books: dict[Venue, list[str]]) -> Settings:
    write_settings(
        tmp_path, sim, books, tick_ms=100, receive_timeout_s=10.0, snapshot_timeout_s=5.0
    )
    overrides = tmp_path / "snapshot_limits.toml"
    overrides.write_text(
        "".join(
            f"[venues.{venue.value}]\nsnapshot_limit = {SNAPSHOT_LIMIT}\n" for venue in LARGE_VENUES
        )
    )
    return load_settings([tmp_path / "sim.toml", overrides], env={})


# --- what the exchange's logs say -----------------------------------------------------------------


def densest_window(times: Sequence[float], window_s: float) -> list[float]:
    """The most events in any half-open window ``[t, t + window_s)`` (the first such)."""
    ordered = sorted(times)
    best: list[float] = []
    start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window_s:
            start += 1
        if end - start + 1 > len(best):
            best = ordered[start : end + 1]
    return best


def max_in_window(times: Sequence[float], window_s: float) -> int:
    return len(densest_window(times, window_s))


def rate_excess(times: Sequence[float], per_s: float) -> tuple[int, int] | None:
    """(seen, allowed) if ``times`` exceed ``per_s`` events a second, else None.

    A rate of 1 or more allows ``ceil(per_s)`` events in any second; a slower one allows
    one event in any ``1 / per_s`` seconds. No burst above that is allowed at any time
    (the first second included): none of the limits declares one.
    """
    if per_s <= 0:
        return None
    window_s = max(1.0, 1.0 / per_s)
    allowed = math.ceil(per_s * window_s - 1e-9)
    seen = max_in_window(times, window_s - JITTER_S)
    return (seen, allowed) if seen > allowed else None


def _message(frame: str) -> dict[str, Any] | None:
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _action(frame: str) -> str | None:
    """``subscribe``, ``unsubscribe`` or None, in each venue's request shape."""
    message = _message(frame)
    if message is None:
        return None
    verb = str(message.get("op") or message.get("method") or message.get("type") or "").lower()
    if "unsubscribe" in verb:
        return "unsubscribe"
    return "subscribe" if "subscribe" in verb else None


def topics_in(frame: str) -> int | None:
    """Topics a subscribe frame asks for, in each venue's request shape (None: not one)."""
    message = _message(frame)
    if message is None or _action(frame) != "subscribe":
        return None
    params = message.get("params")
    if isinstance(params, list):  # Binance
        return len(params)
    if isinstance(params, dict):  # Kraken symbols, Deribit channels
        topics = params.get("symbol", params.get("channels"))
        return len(topics) if isinstance(topics, list) else None
    for key in ("args", "product_ids"):  # OKX and Bybit, Coinbase
        if isinstance(message.get(key), list):
            return len(message[key])
    if isinstance(message.get("subscription"), dict):  # Hyperliquid
        return 1
    return None


def rest_weight(adapter: VenueAdapter, rest_url: str, path: str, query: dict[str, str]) -> int:
    """The weight the venue counts for one logged request (the adapter's own figures)."""
    for request in adapter.instruments_requests(rest_url):
        if urlsplit(request.url).path.endswith(path):
            return request.weight
    symbol = query.get("symbol", "")
    limit = int(query.get("limit", "0") or 0)
    snapshot = adapter.snapshot_request(rest_url, symbol, limit) if symbol else None
    if snapshot is not None and urlsplit(snapshot.url).path.endswith(path):
        return snapshot.weight
    return 1


def limit_violations(sim: ExchangeSim, venues: Sequence[Venue]) -> list[str]:
    """Every documented limit the exchange's logs show exceeded, as readable lines."""
    problems: list[str] = []
    for venue in venues:
        adapter = ADAPTERS[venue]
        limits = adapter.limits
        connections = [c for c in sim.connections if c.venue == venue]
        for conn in connections:
            excess = rate_excess(conn.received_at, limits.control_per_s)
            if excess is not None:
                window = densest_window(
                    conn.received_at, max(1.0, 1 / limits.control_per_s) - JITTER_S
                )
                problems.append(
                    f"{venue.value} connection {conn.id}: {excess[0]} client frames in a "
                    f"window that allows {excess[1]} (control_per_s {limits.control_per_s}): "
                    f"at {[round(t - conn.opened_at, 3) for t in window]} s after it opened"
                )
            if limits.control_per_hour and len(conn.received) > limits.control_per_hour:
                problems.append(f"{venue.value} connection {conn.id}: over control_per_hour")
            if len(conn.subscriptions) > limits.streams_per_connection:
                problems.append(
                    f"{venue.value} connection {conn.id}: {len(conn.subscriptions)} books "
                    f"(streams_per_connection {limits.streams_per_connection})"
                )
            for frame in conn.received:
                topics = topics_in(frame)
                if topics is not None and topics > limits.topics_per_frame:
                    problems.append(
                        f"{venue.value} connection {conn.id}: {topics} topics in one frame "
                        f"(topics_per_frame {limits.topics_per_frame}): {frame[:120]}"
                    )
        excess = rate_excess([c.opened_at for c in connections], limits.connections_per_s)
        if excess is not None:
            problems.append(
                f"{venue.value}: {excess[0]} new connections in a window that allows "
                f"{excess[1]} (connections_per_s {limits.connections_per_s})"
            )
        rest_url = sim.rest_url(venue)
        requests = [r for r in sim.requests if r.venue == venue]
        weighted = [(r.at, rest_weight(adapter, rest_url, r.path, r.query)) for r in requests]
        for at, _ in weighted:
            used = sum(w for t, w in weighted if at <= t < at + 60.0)
            if used > adapter.weight_limit_per_minute:
                problems.append(
                    f"{venue.value}: REST weight {used} in a minute "
                    f"(limit {adapter.weight_limit_per_minute})"
                )
                break
        for request in requests:
            if request.status in (418, 429):
                problems.append(f"{venue.value}: {request.status} on {request.path}")
    return problems


# --- the test -------------------------------------------------------------------------------------


def test_pick_books_covers_200_books_on_six_venues_or_more() -> None:
    books = pick_books()
    assert sum(map(len, books.values())) == TOTAL_BOOKS
    assert sum(1 for names in books.values() if names) >= 6
    assert len(books[Venue.BINANCE]) == 60 and len(books[Venue.BINANCE_FUTURES]) == 50


def test_the_limit_checks_catch_a_burst() -> None:
    """The checks themselves: a burst, a slow venue's second connection, a fat frame."""
    assert rate_excess([0.0, 0.25, 0.5, 0.75, 1.0, 1.25], 4.0) is None
    assert rate_excess([0.0, 0.1, 0.2, 0.3, 0.4], 4.0) == (5, 4)
    assert rate_excess([0.0, 5.0, 10.0], 0.2) is None
    assert rate_excess([0.0, 2.0], 0.2) == (2, 1)
    assert topics_in('{"op":"subscribe","args":["a","b","c"]}') == 3
    assert topics_in('{"method":"subscribe","params":{"channel":"book","symbol":["A"]}}') == 1
    assert topics_in('{"method":"public/subscribe","params":{"channels":["x","y"]}}') == 2
    assert topics_in('{"type":"subscribe","product_ids":["A","B"],"channel":"level2"}') == 2
    assert topics_in('{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}') == 1
    assert topics_in('{"op":"unsubscribe","args":["a"]}') is None
    assert topics_in("ping") is None
    spot, url = ADAPTERS[Venue.BINANCE], "http://127.0.0.1:1/binance"
    assert rest_weight(spot, url, "/api/v3/depth", {"symbol": "BTCUSDT", "limit": "100"}) == 5
    assert rest_weight(spot, url, "/api/v3/depth", {"symbol": "BTCUSDT", "limit": "1000"}) == 50
    assert rest_weight(spot, url, "/api/v3/exchangeInfo", {}) == 20


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Warnings and errors only: 200 books log a metrics line each on every tick."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("warning", "json")
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("quiet_logs")
async def test_every_connection_dropped_at_once_recovers_within_every_limit(
    tmp_path: Path,
) -> None:
    books = pick_books()
    venues = [v for v, names in books.items() if names]
    loop = asyncio.get_running_loop()
    async with exchange(books, levels=30) as sim:
        settings = settings_for(tmp_path, sim, books)
        async with running(settings) as (daemon, watch):
            # REST venues' connections go live (and fetch snapshots) only once deltas flow
            market = asyncio.ensure_future(sim.run_market(MARKET_UPDATES_PER_S))
            try:
                await until(lambda: all_valid(daemon, books), timeout_s=40.0)
                started_connections = len(sim.connections)
                before = {v: s["connects"] for v, s in _health(daemon, venues).items()}
                recovered_s: dict[Venue, float] = {}  # per venue: drop to every book valid

                def recovered() -> bool:
                    state = _health(daemon, venues)
                    for venue in venues:
                        if (
                            venue not in recovered_s
                            and state[venue]["connects"] > before[venue]
                            and all(valid(daemon, venue, s) for s in books[venue])
                        ):
                            recovered_s[venue] = loop.time() - dropped_at
                    return len(recovered_s) == len(venues) and all_valid(daemon, books)

                dropped_at = loop.time()
                await sim.drop()  # every venue, every connection, at once
                await until(recovered, timeout_s=40.0)
                valid_at = loop.time()
            finally:
                await stop(market)
            pipeline = daemon.pipeline
            assert pipeline is not None
            await until(lambda: books_match(pipeline, sim, books), timeout_s=10.0)
            # a second and a half more of the daemon's loops: a book the reconnect already
            # rebuilt must not be unsubscribed and subscribed again (it would sit valid but
            # frozen in between, and spend control frames)
            ticks = watch.ticks
            await until(lambda: watch.ticks >= ticks + 15, timeout_s=10.0)
            print(  # noqa: T201 (the report reads the recovery time from -s output)
                f"\n{sum(map(len, books.values()))} books on {len(venues)} venues: every book "
                f"valid again {valid_at - dropped_at:.2f} s after the drop ("
                + ", ".join(f"{v.value} {t:.2f} s" for v, t in recovered_s.items())
                + f"); {len(sim.connections) - started_connections} connections reopened, "
                f"{len(sim.requests)} REST requests in all"
            )
            assert all_valid(daemon, books)
            for (venue, symbol), info in pipeline.books.items():
                assert info.resyncs >= 1, f"{venue.value} {symbol} was never resynced"
            assert watch.metrics_from_invalid == 0
            assert limit_violations(sim, venues) == []
            health = _health(daemon, venues)
            # every book came back with its connection's own subscription or REST snapshot
            assert {
                v.value: (s["resubscribes"], s["counters"].get("snapshot_failed", 0))
                for v, s in health.items()
                if s["resubscribes"] or s["counters"].get("snapshot_failed")
            } == {}, "(resubscribes, failed snapshots) per venue"
            assert [
                (c.venue.value, frame[:80])
                for c in sim.connections
                for frame in c.received
                if _action(frame) == "unsubscribe"
            ] == []


def _health(daemon: Any, venues: Sequence[Venue]) -> dict[Venue, dict[str, Any]]:
    state = daemon.health_state()
    return {venue: state[venue.value] for venue in venues}
