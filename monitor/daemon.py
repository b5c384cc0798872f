"""The always-on loops of ``liqmon run`` (:func:`run_daemon`) and ``liqmon record``.

run_daemon wires the live path:

- one :class:`~feeds.session.WsSession` per depth connection of every enabled venue (plus
  the mark-price connection where the venue has one); every frame goes to
  :meth:`BookPipeline.feed_frames`, batched per event-loop turn;
- a snapshot loop that fetches the REST depth snapshots the pipeline asks for (at most 4
  at a time per venue, within the venue's weight budget, and only once the venue's
  connections are delivering deltas, so they buffer first as Binance's sync procedure
  requires);
- a tick loop that computes the metrics every ``tick_ms``, and a periodic
  ``venue.health`` line.

A lost connection invalidates that connection's books at once (they missed deltas), so
they are reported invalid during the outage and resynced after it. Network errors never
end the daemon; setting ``stop`` does.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from feeds.binance import ADAPTERS, BinanceAdapter
from feeds.recording import RecordingWriter, RecordKind
from feeds.rest import RestClient, RestError, VenueBanned
from feeds.session import Backoff, ConnectionPolicy, DisconnectReason, FeedHealth, WsSession
from monitor.domain import Venue
from monitor.errors import ConfigError, MonitorError
from monitor.instruments import InstrumentRegistry
from monitor.log import get_logger
from monitor.pipeline import BookPipeline
from monitor.settings import Settings, VenueSettings

log = get_logger("monitor.daemon")

SNAPSHOT_POLL_S = 0.1
SNAPSHOTS_IN_FLIGHT_PER_VENUE = 4
HEALTH_LOG_INTERVAL_S = 30.0
STREAMS_PER_CONNECTION = 200  # Binance allows 1024; smaller keeps URLs short and resyncs local
INSTRUMENTS_RETRIES = 1  # exchangeInfo at start-up: the cached copy is the fallback

TickObserver = Callable[[list[dict[str, Any]]], None]
RecordObserver = Callable[[RecordKind, str], None]


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _adapter(venue: Venue) -> BinanceAdapter:
    adapter = ADAPTERS.get(venue)
    if adapter is None:
        raise ConfigError("venues", venue.value, "no live connection support for this venue yet")
    return adapter


@dataclass(eq=False)
class _DepthConnection:
    """Whether one depth connection is up and delivering frames since its last connect."""

    url: str
    live: bool = False


@dataclass(eq=False)
class _VenueRuntime:
    """Everything the daemon keeps per venue."""

    venue: Venue
    settings: VenueSettings
    adapter: BinanceAdapter
    rest: RestClient
    health: FeedHealth = field(default_factory=FeedHealth)
    depth: list[_DepthConnection] = field(default_factory=list)
    semaphore: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(SNAPSHOTS_IN_FLIGHT_PER_VENUE)
    )
    snapshots_ok: int = 0
    snapshots_failed: int = 0

    def ready_for_snapshots(self) -> bool:
        return bool(self.depth) and all(connection.live for connection in self.depth)

    def depth_weight(self) -> int:
        return self.adapter.snapshot_weight(self.settings.snapshot_limit)


class Daemon:
    """The live monitor's loops over one pipeline. :meth:`run` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        http: aiohttp.ClientSession,
        *,
        on_tick: TickObserver | None = None,
        health_interval_s: float = HEALTH_LOG_INTERVAL_S,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.policy = ConnectionPolicy.from_settings(settings.connection)
        self.rng = rng or random.Random()
        self.on_tick = on_tick
        self.health_interval_s = health_interval_s
        self.venues: dict[Venue, _VenueRuntime] = {}
        for venue, table in settings.enabled_venues().items():
            adapter = ADAPTERS.get(venue)
            if adapter is None:
                log.error("venue.unsupported", venue=venue.value, reason="no live adapter yet")
                continue
            rest = RestClient.for_venue(
                http,
                venue,
                weight_limit_per_minute=adapter.weight_limit_per_minute,
                used_weight_header=adapter.used_weight_header,
                timeout_s=settings.connection.snapshot_timeout_s,
            )
            self.venues[venue] = _VenueRuntime(venue, table, adapter, rest)
        if not self.venues:
            raise ConfigError("venues", "enabled", "no enabled venue has live support")
        self.pipeline: BookPipeline | None = None
        self.last_metrics: list[dict[str, Any]] = []
        self._snapshot_failures: dict[tuple[Venue, str], int] = {}
        self._flush_scheduled = False
        self._pending: dict[Venue, tuple[list[str | bytes], list[int]]] = {}

    # --- start-up -----------------------------------------------------------------------
    async def load_registry(self) -> InstrumentRegistry:
        """exchangeInfo of every venue; the shipped cached copy where a fetch fails."""
        registry = InstrumentRegistry()
        for venue, runtime in self.venues.items():
            url = runtime.adapter.instruments_url(runtime.settings.rest_url)
            try:
                text = await runtime.rest.get_text(
                    url, weight=runtime.adapter.instruments_weight, max_retries=INSTRUMENTS_RETRIES
                )
                fresh = InstrumentRegistry.from_exchange_info(venue, text)
            except MonitorError as error:
                fresh = InstrumentRegistry.load_cached([venue])
                log.warning(
                    "instruments.fetch_failed",
                    venue=venue.value,
                    url=url,
                    error=str(error),
                    cached=len(fresh),
                )
            else:
                log.info("instruments.fetched", venue=venue.value, count=len(fresh))
            registry = registry.merge(fresh)
            for symbol in runtime.settings.symbols:
                if registry.get(venue, symbol) is None:
                    log.warning("instruments.unknown_symbol", venue=venue.value, symbol=symbol)
        return registry

    def build_pipeline(self, registry: InstrumentRegistry) -> BookPipeline:
        pipeline = BookPipeline.from_settings(registry, self.settings)
        # Every configured book exists from the start: one that never gets data shows invalid.
        for venue, runtime in self.venues.items():
            for symbol in runtime.settings.symbols:
                pipeline.add_book(venue, symbol)
        self.pipeline = pipeline
        return pipeline

    def sessions(self) -> list[WsSession]:
        """The websocket sessions of every venue (depth first, then mark price)."""
        sessions: list[WsSession] = []
        for runtime in self.venues.values():
            table = runtime.settings
            size = max(1, STREAMS_PER_CONNECTION)
            for symbols in _chunks(table.symbols, size):
                url = runtime.adapter.stream_url(table.ws_url, symbols, [table.depth_stream])
                connection = _DepthConnection(url)
                runtime.depth.append(connection)
                sessions.append(self._session(runtime, url, connection, symbols))
            if table.market_ws_url and table.mark_price_stream:
                for symbols in _chunks(table.symbols, size):
                    url = runtime.adapter.stream_url(
                        table.market_ws_url, symbols, [table.mark_price_stream]
                    )
                    sessions.append(self._session(runtime, url, None, symbols))
        return sessions

    def _session(
        self,
        runtime: _VenueRuntime,
        url: str,
        depth: _DepthConnection | None,
        symbols: Sequence[str],
    ) -> WsSession:
        venue = runtime.venue

        def on_frame(data: str | bytes, recv_ns: int) -> None:
            if depth is not None:
                depth.live = True
            assert self.pipeline is not None
            # queue the frame; every frame that arrives in this turn of the event loop is
            # decoded and applied together right after it (batching without added latency)
            frames, stamps = self._pending.setdefault(venue, ([], []))
            frames.append(data)
            stamps.append(recv_ns)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

        def on_connect() -> None:
            if depth is not None:
                depth.live = False  # ready again once frames flow (deltas buffer first)

        def on_disconnect(reason: DisconnectReason) -> None:
            if depth is None:
                return
            depth.live = False
            assert self.pipeline is not None
            # this connection's books missed deltas: invalid now, resynced once it is back
            self._flush()  # frames received before the drop first
            self.pipeline.invalidate_books(venue, symbols)

        return WsSession(
            url,
            venue=venue.value,
            on_frame=on_frame,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            policy=self.policy,
            ping_interval_s=runtime.adapter.ping_interval_s,
            health=runtime.health,
            rng=self.rng,
        )

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.pipeline is None:
            return
        for venue, (frames, stamps) in self._pending.items():
            if frames:
                self.pipeline.feed_frames(venue, frames, stamps)
                frames.clear()
                stamps.clear()
        self.pipeline.flush()

    # --- loops --------------------------------------------------------------------------
    async def run(self) -> None:
        """Load instruments, then run every loop until cancelled."""
        registry = await self.load_registry()
        self.build_pipeline(registry)
        sessions = self.sessions()
        log.info(
            "daemon.start",
            venues=[venue.value for venue in self.venues],
            books=sum(len(r.settings.symbols) for r in self.venues.values()),
            connections=len(sessions),
        )
        async with asyncio.TaskGroup() as group:
            for session in sessions:
                group.create_task(session.run())
            group.create_task(self._snapshot_loop())
            group.create_task(self._tick_loop())
            group.create_task(self._health_loop())

    async def _snapshot_loop(self) -> None:
        assert self.pipeline is not None
        held: dict[Venue, set[str]] = {venue: set() for venue in self.venues}
        async with asyncio.TaskGroup() as group:
            while True:
                for venue, symbol in self.pipeline.take_snapshot_requests():
                    if venue in held:
                        held[venue].add(symbol)
                    else:  # a book of a venue that is not running here
                        self.pipeline.snapshot_failed(venue, symbol)
                for venue, symbols in held.items():
                    if symbols and self.venues[venue].ready_for_snapshots():
                        for symbol in sorted(symbols):
                            group.create_task(self._fetch_snapshot(self.venues[venue], symbol))
                        symbols.clear()
                await asyncio.sleep(SNAPSHOT_POLL_S)

    async def _fetch_snapshot(self, runtime: _VenueRuntime, symbol: str) -> None:
        assert self.pipeline is not None
        try:
            await self._fetch_snapshot_once(runtime, symbol)
        except Exception:  # task boundary: a bug here must not end the monitor
            log.exception("snapshot.error", venue=runtime.venue.value, symbol=symbol)
            self.pipeline.snapshot_failed(runtime.venue, symbol)

    async def _fetch_snapshot_once(self, runtime: _VenueRuntime, symbol: str) -> None:
        assert self.pipeline is not None
        venue = runtime.venue
        url = runtime.adapter.snapshot_url(
            runtime.settings.rest_url, symbol, runtime.settings.snapshot_limit
        )
        key = (venue, symbol)
        try:
            async with runtime.semaphore:
                text = await runtime.rest.get_text(url, weight=runtime.depth_weight())
        except VenueBanned as error:
            runtime.snapshots_failed += 1
            log.error(
                "snapshot.banned",
                venue=venue.value,
                symbol=symbol,
                retry_after_s=error.retry_after_s,
            )
            await asyncio.sleep(error.retry_after_s)
            self.pipeline.snapshot_failed(venue, symbol)
            return
        except RestError as error:
            runtime.snapshots_failed += 1
            failures = self._snapshot_failures.get(key, 0)
            self._snapshot_failures[key] = failures + 1
            backoff = Backoff(self.policy.backoff_initial_s, self.policy.backoff_max_s, self.rng)
            backoff.attempt = failures
            delay_s = backoff.next_delay_s()
            log.warning(
                "snapshot.failed",
                venue=venue.value,
                symbol=symbol,
                status=error.status,
                error=error.problem,
                failures=failures + 1,
                retry_in_s=round(delay_s, 3),
            )
            await asyncio.sleep(delay_s)
            self.pipeline.snapshot_failed(venue, symbol)
            return
        self._snapshot_failures.pop(key, None)
        runtime.snapshots_ok += 1
        self._flush()  # deltas received before the snapshot go first
        self.pipeline.on_message(venue, "http", url, text, time.time_ns())

    async def _tick_loop(self) -> None:
        assert self.pipeline is not None
        interval_s = self.settings.monitor.tick_ms / 1000.0
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += interval_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > interval_s:
                due = loop.time()  # fell behind (suspended machine, slow tick): no catch-up burst
            try:
                self._flush()
                rows = self.pipeline.tick(time.time_ns())
                self.last_metrics = rows
                for row in rows:
                    _log_metrics(row)
                if self.on_tick is not None:
                    self.on_tick(rows)
            except Exception:  # task boundary: one bad tick must not end the monitor
                log.exception("tick.failed")

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            self.log_health()

    def log_health(self) -> None:
        assert self.pipeline is not None
        summaries = self.pipeline.book_summaries(depth=0)
        counters = self.pipeline.counters.messages
        for venue, runtime in self.venues.items():
            books = [s for s in summaries if s["venue"] == venue.value]
            prefix = f"{venue.value}."
            log.info(
                "venue.health",
                venue=venue.value,
                books=len(books),
                valid_books=sum(1 for s in books if s["valid"]),
                gaps=sum(s["gaps"] for s in books),
                resyncs=sum(s["resyncs"] for s in books),
                snapshots_ok=runtime.snapshots_ok,
                snapshots_failed=runtime.snapshots_failed,
                banned_for_s=round(runtime.rest.banned_for_s(), 1),
                counters={
                    k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)
                },
                **runtime.health.as_dict(),
            )


def _log_metrics(row: dict[str, Any]) -> None:
    depth = row.get("depth") or {}
    one_pct = depth.get("1") or [None, None]
    log.info(
        "book.metrics",
        venue=row["venue"],
        symbol=row["symbol"],
        valid=row["valid"],
        bid=row.get("bid"),
        ask=row.get("ask"),
        spread_bps=row.get("spread_bps"),
        depth_1pct_bid_usd=one_pct[0],
        depth_1pct_ask_usd=one_pct[1],
    )


async def _until_stopped(work: Callable[[], Any], stop: asyncio.Event | None) -> None:
    """Run ``work()`` until ``stop`` is set (or forever); an error in it ends both."""
    stop = stop if stop is not None else asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(work())
        waiter = group.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()


async def run_daemon(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_tick: TickObserver | None = None,
) -> None:
    """Monitor every enabled venue until ``stop`` is set (forever if None).

    ``on_tick(rows)`` is called with the metric rows of every tick (``BookPipeline.tick``).
    """
    async with aiohttp.ClientSession() as http:
        daemon = Daemon(settings, http, on_tick=on_tick)
        try:
            await _until_stopped(daemon.run, stop)
        finally:
            if daemon.pipeline is not None:
                daemon.log_health()
            log.info("daemon.stop")


async def run_recorder(
    settings: Settings,
    *,
    venue: Venue,
    symbols: Sequence[str],
    out_path: str | Path,
    stop: asyncio.Event | None = None,
    flush_interval_s: float = 1.0,
    on_record: RecordObserver | None = None,
) -> None:
    """Record one venue's raw depth (and mark-price) frames to ``out_path`` until ``stop``.

    Writes exchangeInfo once at the start, and after every (re)connect, once frames flow,
    a REST depth snapshot per symbol, all as ``kind: "http"`` records, so that a replay of
    the file can rebuild every book even across reconnects. ``.gz`` paths are compressed.
    ``on_record(kind, url)`` is called after each record is written.
    """
    table = settings.venues.get(venue)
    if table is None:
        raise ConfigError("venues", venue.value, "no settings for this venue")
    adapter = _adapter(venue)
    if not symbols:
        symbols = table.symbols
    policy = ConnectionPolicy.from_settings(settings.connection)
    with RecordingWriter(out_path, flush_interval_s=flush_interval_s) as writer:
        async with aiohttp.ClientSession() as http:
            rest = RestClient.for_venue(
                http,
                venue,
                weight_limit_per_minute=adapter.weight_limit_per_minute,
                used_weight_header=adapter.used_weight_header,
                timeout_s=settings.connection.snapshot_timeout_s,
            )
            recorder = _Recorder(
                venue,
                table,
                adapter,
                symbols=symbols,
                policy=policy,
                rest=rest,
                writer=writer,
                flush_interval_s=flush_interval_s,
                on_record=on_record,
            )
            log.info("recorder.start", venue=venue.value, symbols=list(symbols), path=str(out_path))
            try:
                await _until_stopped(recorder.run, stop)
            finally:
                writer.flush()
                log.info("recorder.stop", venue=venue.value, records=writer.records_written)


class _Recorder:
    def __init__(
        self,
        venue: Venue,
        table: VenueSettings,
        adapter: BinanceAdapter,
        *,
        symbols: Sequence[str],
        policy: ConnectionPolicy,
        rest: RestClient,
        writer: RecordingWriter,
        flush_interval_s: float,
        on_record: RecordObserver | None,
    ) -> None:
        self.venue = venue
        self.table = table
        self.adapter = adapter
        self.symbols = list(symbols)
        self.policy = policy
        self.rest = rest
        self.writer = writer
        self.health = FeedHealth()
        self.flush_interval_s = flush_interval_s
        self.on_record = on_record
        self._snapshots_wanted = asyncio.Event()
        self._live = asyncio.Event()

    async def run(self) -> None:
        await self._fetch(
            self.adapter.instruments_url(self.table.rest_url), self.adapter.instruments_weight
        )
        depth_url = self.adapter.stream_url(
            self.table.ws_url, self.symbols, [self.table.depth_stream]
        )
        urls = [depth_url]
        if self.table.market_ws_url and self.table.mark_price_stream:
            urls.append(
                self.adapter.stream_url(
                    self.table.market_ws_url, self.symbols, [self.table.mark_price_stream]
                )
            )
        async with asyncio.TaskGroup() as group:
            for url in urls:
                group.create_task(self._session(url, depth=url == depth_url).run())
            group.create_task(self._snapshot_loop())
            group.create_task(self._flush_loop())

    def _session(self, url: str, *, depth: bool) -> WsSession:
        venue = self.venue.value
        writer = self.writer

        def on_frame(data: str | bytes, recv_ns: int) -> None:
            writer.write(venue, RecordKind.WS, url, data, recv_ns)
            if depth:
                self._live.set()
            if self.on_record is not None:
                self.on_record(RecordKind.WS, url)

        def on_connect() -> None:
            if depth:
                self._live.clear()
                self._snapshots_wanted.set()

        return WsSession(
            url,
            venue=venue,
            on_frame=on_frame,
            on_connect=on_connect,
            policy=self.policy,
            ping_interval_s=self.adapter.ping_interval_s,
            health=self.health,
        )

    async def _snapshot_loop(self) -> None:
        limit = self.table.snapshot_limit
        weight = self.adapter.snapshot_weight(limit)
        while True:
            await self._snapshots_wanted.wait()
            self._snapshots_wanted.clear()
            await self._live.wait()  # deltas first, then the snapshots they bridge
            for symbol in self.symbols:
                url = self.adapter.snapshot_url(self.table.rest_url, symbol, limit)
                await self._fetch(url, weight)

    async def _fetch(self, url: str, weight: int) -> None:
        try:
            text = await self.rest.get_text(url, weight=weight)
        except RestError as error:
            log.warning("recorder.fetch_failed", venue=self.venue.value, url=url, error=str(error))
            return
        self.writer.write(self.venue.value, RecordKind.HTTP, url, text, time.time_ns())
        if self.on_record is not None:
            self.on_record(RecordKind.HTTP, url)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self.writer.flush()
