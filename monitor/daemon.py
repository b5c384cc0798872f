"""The always-on loops of ``liqmon run`` (:func:`run_daemon`) and ``liqmon record``.

run_daemon wires the live path, the same for every venue (venue differences are adapter
attributes, feeds.contract; nothing here branches on the venue):

- connections: every enabled venue's symbols are cut into connections within the venue's
  limits (streams per connection); each is one :class:`~feeds.session.WsSession` with the
  venue's open, subscribe and keepalive frames, spaced by its control budget, and new
  connections are gated by the venue's connections-per-second limit. Every frame goes to
  :meth:`BookPipeline.feed_frames`, batched per event-loop turn;
- resync: the books the pipeline asks a snapshot for are fetched over REST (REST venues:
  at most 4 at a time per venue, within the venue's weight budget, once the connection
  delivers deltas so that they buffer first) or resubscribed on their connection (stream
  venues, whose snapshots come in-band); only the broken book is resynced;
- rotation: a connection is replaced before the venue's connection lifetime ends (Binance
  24 h), or at once when the venue gives notice that it will close it (OKX 64008): the
  new one subscribes, the old one is closed once the new one delivers, and no book goes
  invalid (REST venues' duplicate deltas are dropped as stale by sequence id;
  stream venues switch over at the new connection's snapshots);
- a tick loop computes the metrics every ``tick_ms``; a periodic ``venue.health`` line
  gives every connection event counted per venue (:meth:`Daemon.health_state`).

A lost connection invalidates its books at once (they missed deltas), so they are reported
invalid during the outage and resynced after it. Network errors never end the daemon;
setting ``stop`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from feeds.contract import HttpRequest, SnapshotSource, VenueAdapter
from feeds.recording import RecordingWriter, RecordKind
from feeds.rest import RestClient, RestError, VenueBanned
from feeds.session import (
    Backoff,
    ConnectionPolicy,
    ControlBudget,
    DisconnectReason,
    FeedHealth,
    WsSession,
)
from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.errors import ConfigError, MonitorError
from monitor.instruments import InstrumentRegistry
from monitor.log import get_logger
from monitor.pipeline import BookPipeline
from monitor.sample import TickSample
from monitor.settings import Settings, VenueSettings
from monitor.sinks import Sink, SinkQueue
from monitor.status import StatusSink
from monitor.warmup import warm_up

log = get_logger("monitor.daemon")

SNAPSHOT_POLL_S = 0.1
SNAPSHOTS_IN_FLIGHT_PER_VENUE = 4
HEALTH_LOG_INTERVAL_S = 30.0
INSTRUMENTS_RETRIES = 1  # metadata at start-up: the cached copy is the fallback
MAX_INSTRUMENT_PAGES = 50  # a paginated metadata answer is followed this far at most
ROTATE_AT = 0.9  # of the venue's connection lifetime (Binance: after 21.6 h of 24 h)

STATUS_INTERVAL_S = 5.0
TickObserver = Callable[[TickSample], None]
RecordObserver = Callable[[RecordKind, str], None]


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _next_page(
    adapter: VenueAdapter, request: HttpRequest, text: str, pages: int
) -> HttpRequest | None:
    """The metadata page after this one (Bybit's cursor), within MAX_INSTRUMENT_PAGES."""
    follow = adapter.next_instruments_page
    if follow is None or pages >= MAX_INSTRUMENT_PAGES:
        return None
    following = follow(request, text)
    return None if following is None or following.url == request.url else following


async def _fetch(rest: RestClient, request: HttpRequest, max_retries: int | None = None) -> str:
    return await rest.get_text(
        request.url, weight=request.weight, max_retries=max_retries, body=request.body
    )


@dataclass(eq=False)
class _Connection:
    """One websocket connection's symbols and channels, and its current session."""

    runtime: _VenueRuntime
    url: str
    symbols: list[str]
    channels: list[str]
    carries_books: bool  # its loss invalidates its books (mark-only connections do not)
    session: WsSession | None = None
    live: bool = False  # delivering frames since its last connect
    muted: bool = False  # replaced by a rotation: its frames are no longer used
    replaced: asyncio.Event = field(default_factory=asyncio.Event)
    # the venue gave notice that it will close this connection: replace it now
    replace_now: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _VenueRuntime:
    """Everything the daemon keeps per venue."""

    venue: Venue
    settings: VenueSettings
    adapter: VenueAdapter
    rest: RestClient
    connect_budget: ControlBudget
    health: FeedHealth = field(default_factory=FeedHealth)
    connections: list[_Connection] = field(default_factory=list)
    semaphore: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(SNAPSHOTS_IN_FLIGHT_PER_VENUE)
    )
    snapshots_ok: int = 0
    snapshots_failed: int = 0
    resubscribes: int = 0

    @property
    def stream_snapshots(self) -> bool:
        return self.adapter.snapshot_source == SnapshotSource.STREAM

    def book_connections(self) -> list[_Connection]:
        return [c for c in self.connections if c.carries_books and not c.muted]

    def ready_for_snapshots(self) -> bool:
        books = self.book_connections()
        return bool(books) and all(c.live for c in books)

    def connection_of(self, symbol: str) -> _Connection | None:
        for connection in self.book_connections():
            if symbol in connection.symbols:
                return connection
        return None

    async def connect_gate(self) -> None:
        await self.connect_budget.take()


class Daemon:
    """The live monitor's loops over one pipeline. :meth:`run` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        http: aiohttp.ClientSession,
        adapters: Mapping[Venue, VenueAdapter],
        *,
        on_tick: TickObserver | None = None,
        health_interval_s: float = HEALTH_LOG_INTERVAL_S,
        rng: random.Random | None = None,
        rotate_after_s: float | None = None,
        sinks: Sequence[Sink] = (),
        status_out: IO[str] | None = None,
        status_interval_s: float = STATUS_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.sink_queues = [SinkQueue(sink) for sink in sinks]
        self.status = StatusSink()
        self.status_out = status_out
        self.status_interval_s = status_interval_s
        self.policy = ConnectionPolicy.from_settings(settings.connection)
        self.rng = rng or random.Random()
        self.on_tick = on_tick
        self.health_interval_s = health_interval_s
        self.rotate_after_s = rotate_after_s  # None: from each venue's connection lifetime
        self.adapters = adapters
        self.venues: dict[Venue, _VenueRuntime] = {}
        for venue, table in settings.enabled_venues().items():
            adapter = adapters.get(venue)
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
            budget = ControlBudget(adapter.limits.connections_per_s)
            self.venues[venue] = _VenueRuntime(venue, table, adapter, rest, budget)
        if not self.venues:
            raise ConfigError("venues", "enabled", "no enabled venue has live support")
        self.pipeline: BookPipeline | None = None
        self.last_sample: TickSample | None = None
        self._snapshot_failures: dict[tuple[Venue, str], int] = {}
        # stream resyncs: deadline, and the book's snapshot count when it was asked for
        self._awaiting: dict[tuple[Venue, str], tuple[float, int]] = {}
        self._flush_scheduled = False
        self._pending: dict[Venue, tuple[list[str | bytes], list[int]]] = {}
        self._group: asyncio.TaskGroup | None = None

    # --- start-up -----------------------------------------------------------------------
    async def load_registry(self) -> InstrumentRegistry:
        """Every venue's instrument metadata; the shipped cached copy where a fetch fails."""
        registry = InstrumentRegistry()
        for venue, runtime in self.venues.items():
            adapter = runtime.adapter
            fresh = InstrumentRegistry()
            try:
                for first in adapter.instruments_requests(runtime.settings.rest_url):
                    request: HttpRequest | None = first
                    pages = 0
                    while request is not None:
                        text = await _fetch(runtime.rest, request, INSTRUMENTS_RETRIES)
                        fresh = fresh.merge(
                            InstrumentRegistry(adapter.parse_instruments(request.key, text))
                        )
                        pages += 1
                        request = _next_page(adapter, request, text, pages)
            except MonitorError as error:
                fresh = InstrumentRegistry.load_cached([venue])
                log.warning(
                    "instruments.fetch_failed",
                    venue=venue.value,
                    url=runtime.settings.rest_url,
                    error=error.problem if isinstance(error, RestError) else str(error),
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
        pipeline = BookPipeline.from_settings(registry, self.adapters, self.settings)
        # Every configured book exists from the start: one that never gets data shows invalid.
        for venue, runtime in self.venues.items():
            for symbol in runtime.settings.symbols:
                pipeline.add_book(venue, symbol)
        self.pipeline = pipeline
        return pipeline

    def connections(self) -> list[_Connection]:
        """Every venue's connections, within its streams-per-connection limit."""
        out: list[_Connection] = []
        for runtime in self.venues.values():
            table = runtime.settings
            limits = runtime.adapter.limits
            plans: list[tuple[str, list[str], bool]] = []
            if table.market_ws_url and table.mark_price_stream:
                plans.append((table.ws_url, [table.depth_stream], True))
                plans.append((table.market_ws_url, [table.mark_price_stream], False))
            else:
                channels = [table.depth_stream]
                if table.mark_price_stream:
                    channels.append(table.mark_price_stream)
                plans.append((table.ws_url, channels, True))
            for base_url, channels, carries_books in plans:
                per_connection = max(1, limits.streams_per_connection // len(channels))
                for symbols in _chunks(table.symbols, per_connection):
                    url = runtime.adapter.ws_url(base_url, symbols, channels)
                    connection = _Connection(runtime, url, symbols, channels, carries_books)
                    connection.session = self._session(connection)
                    runtime.connections.append(connection)
                    out.append(connection)
        return out

    def sessions(self) -> list[WsSession]:
        """The websocket sessions of every venue (built once)."""
        if not any(r.connections for r in self.venues.values()):
            self.connections()
        return [
            c.session for r in self.venues.values() for c in r.connections if c.session is not None
        ]

    def _session(self, connection: _Connection) -> WsSession:
        runtime = connection.runtime
        venue = runtime.venue
        adapter = runtime.adapter
        symbols = connection.symbols

        def on_frame(data: str | bytes, recv_ns: int) -> None:
            if connection.muted:
                return
            connection.live = True
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
            connection.live = False  # ready again once frames flow (deltas buffer first)
            if connection.carries_books and runtime.stream_snapshots and not connection.muted:
                assert self.pipeline is not None
                # the subscription just sent brings every book's snapshot in-band
                self._expect(runtime, symbols)

        def on_disconnect(reason: DisconnectReason) -> None:
            connection.live = False
            if not connection.carries_books or connection.muted:
                return
            if reason == DisconnectReason.ROTATED:
                return
            assert self.pipeline is not None
            # this connection's books missed deltas: invalid now, resynced once it is back
            self._flush()  # frames received before the drop first
            self.pipeline.invalidate_books(venue, symbols)
            # snapshots awaited from the lost subscription will not come: the reconnect's
            # subscription sets its own deadline once sent (on_connect)
            for symbol in symbols:
                self._awaiting.pop((venue, symbol), None)

        subscribe = (
            []
            if adapter.subscribe_in_url
            else adapter.subscribe_frames(symbols, connection.channels)
        )
        limits = adapter.limits
        return WsSession(
            connection.url,
            venue=venue.value,
            on_frame=on_frame,
            subscribe_frames=subscribe,
            open_frames=adapter.open_frames(),
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            policy=self.policy,
            ping_interval_s=adapter.ping_interval_s,
            keepalive_s=adapter.keepalive_s,
            keepalive_frame=adapter.keepalive_frame(),
            reply_to=adapter.reply_to,
            sequence=adapter.connection_sequence,
            control=ControlBudget(limits.control_per_s, limits.control_per_hour),
            connect_gate=runtime.connect_gate,
            notice=adapter.reconnect_notice,
            on_notice=lambda _why: connection.replace_now.set(),
            health=runtime.health,
            rng=self.rng,
            max_frame_bytes=limits.max_frame_bytes,
        )

    def _expect(self, runtime: _VenueRuntime, symbols: Sequence[str]) -> None:
        assert self.pipeline is not None
        self.pipeline.expect_snapshots(runtime.venue, symbols)
        deadline = time.monotonic() + self.settings.connection.snapshot_timeout_s
        for symbol in symbols:
            info = self.pipeline.books.get((runtime.venue, symbol))
            if info is not None:
                self._awaiting[(runtime.venue, symbol)] = (deadline, info.snapshots)

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
        # compile the kernels now (a cold numba cache takes seconds): not on the first frames
        await asyncio.get_running_loop().run_in_executor(
            None, warm_up, [r.adapter for r in self.venues.values()]
        )
        self.build_pipeline(registry)
        connections = self.connections()
        log.info(
            "daemon.start",
            venues=[venue.value for venue in self.venues],
            books=sum(len(r.settings.symbols) for r in self.venues.values()),
            connections=len(connections),
        )
        async with asyncio.TaskGroup() as group:
            self._group = group
            for connection in connections:
                group.create_task(self._run_connection(connection))
            group.create_task(self._snapshot_loop())
            for queue in self.sink_queues:
                queue.start()
            group.create_task(self._tick_loop())
            group.create_task(self._health_loop())
            if self.status_out is not None:
                group.create_task(self._status_loop())

    async def _run_connection(self, connection: _Connection) -> None:
        """Run one connection's session; rotate it before the venue's lifetime ends."""
        assert connection.session is not None
        lifetime_s = connection.runtime.adapter.limits.lifetime_s
        rotate_s = self.rotate_after_s or (lifetime_s * ROTATE_AT if lifetime_s else 0.0)
        async with asyncio.TaskGroup() as group:  # rotate_s 0: only on a venue's notice
            group.create_task(connection.session.run())
            group.create_task(self._rotate(connection, rotate_s))

    async def _rotate(self, old: _Connection, after_s: float) -> None:
        """Open a replacement connection ``after_s`` into ``old``'s life (0: never) or as
        soon as the venue gives notice that it will close it; switch over, close ``old``."""
        assert old.session is not None
        session = old.session
        while True:
            await session.connected.wait()
            connected_at = session.connected_at or time.monotonic()
            wait_s = None
            if after_s:
                jitter_s = self.rng.uniform(0.0, min(60.0, after_s * 0.05))
                wait_s = max(0.0, connected_at + after_s + jitter_s - time.monotonic())
            try:
                await asyncio.wait_for(old.replace_now.wait(), wait_s)
                reason = "notice"  # the venue will close it soon
                break
            except TimeoutError:
                if session.connected_at == connected_at:
                    reason = "lifetime"  # still the same connection: its time is up
                    break
        runtime = old.runtime
        new = _Connection(runtime, old.url, old.symbols, old.channels, old.carries_books)
        new.session = self._session(new)
        runtime.connections.append(new)
        log.info("feed.rotate", venue=runtime.venue.value, url=old.url, reason=reason)
        assert self._group is not None
        self._group.create_task(self._run_connection(new))
        await new.session.connected.wait()
        if runtime.stream_snapshots:
            old.muted = True  # the new subscription's snapshots take over from here
        else:
            # REST venues: both deliver until the new one does; duplicates are stale by id
            while not new.live:
                await asyncio.sleep(0.01)
            old.muted = True
        await session.stop()
        with contextlib.suppress(ValueError):
            runtime.connections.remove(old)

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
                    runtime = self.venues[venue]
                    if not symbols:
                        continue
                    if runtime.stream_snapshots:
                        self._resubscribe(runtime, symbols, group)
                    elif runtime.ready_for_snapshots():
                        for symbol in sorted(symbols):
                            group.create_task(self._fetch_snapshot(runtime, symbol))
                        symbols.clear()
                self._check_awaiting()
                await asyncio.sleep(SNAPSHOT_POLL_S)

    def _resubscribe(
        self, runtime: _VenueRuntime, symbols: set[str], group: asyncio.TaskGroup
    ) -> None:
        """Stream venues: unsubscribe and subscribe the broken books on their connection
        (their snapshot comes in-band). Books whose connection is down wait for it."""
        assert self.pipeline is not None
        by_connection: dict[int, tuple[_Connection, list[str]]] = {}
        for symbol in sorted(symbols):
            key = (runtime.venue, symbol)
            info = self.pipeline.books.get(key)
            awaited = self._awaiting.get(key)
            if (
                info is None
                or not info.needs_snapshot
                or (awaited is not None and awaited[1] == info.snapshots)
            ):
                # a (re)subscription brought its snapshot, or is bringing it (its deadline
                # asks again if it does not come)
                symbols.discard(symbol)
                continue
            connection = runtime.connection_of(symbol)
            if connection is None:
                symbols.discard(symbol)
                self.pipeline.snapshot_failed(runtime.venue, symbol)
                continue
            session = connection.session
            if session is None or not session.connected.is_set():
                continue  # its reconnect resubscribes it
            by_connection.setdefault(id(connection), (connection, []))[1].append(symbol)
            symbols.discard(symbol)
        for connection, names in by_connection.values():
            group.create_task(self._send_resubscribe(runtime, connection, names))

    async def _send_resubscribe(
        self, runtime: _VenueRuntime, connection: _Connection, symbols: list[str]
    ) -> None:
        assert connection.session is not None and self.pipeline is not None
        adapter = runtime.adapter
        channels = [connection.channels[0]]  # the book channel
        frames = adapter.unsubscribe_frames(symbols, channels) + adapter.subscribe_frames(
            symbols, channels
        )
        self._expect(runtime, symbols)
        runtime.resubscribes += len(symbols)
        log.info("book.resubscribe", venue=runtime.venue.value, symbols=symbols)
        for frame in frames:
            if not await connection.session.send(frame):
                break  # disconnected meanwhile: the reconnect subscribes again

    def _check_awaiting(self) -> None:
        """Stream resyncs whose snapshot did not come in time are asked for again."""
        assert self.pipeline is not None
        now = time.monotonic()
        for key, (deadline, snapshots) in list(self._awaiting.items()):
            info = self.pipeline.books.get(key)
            if info is None or not info.needs_snapshot or info.snapshots > snapshots:
                del self._awaiting[key]
            elif now > deadline:
                del self._awaiting[key]
                log.warning("snapshot.timeout", venue=key[0].value, symbol=key[1])
                self.pipeline.snapshot_failed(*key)

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
        request = runtime.adapter.snapshot_request(
            runtime.settings.rest_url, symbol, runtime.settings.snapshot_limit
        )
        if request is None:
            self.pipeline.snapshot_failed(venue, symbol)
            return
        key = (venue, symbol)
        info = self.pipeline.books.get(key)
        resyncs = info.resyncs if info is not None else 0
        try:
            async with runtime.semaphore:
                text = await _fetch(runtime.rest, request)
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
        if info is not None and info.resyncs != resyncs:
            # the book was thrown away (a reconnect) while this was in flight: the snapshot
            # may predate deltas the new connection will never send; ask again
            log.info("snapshot.superseded", venue=venue.value, symbol=symbol)
            if not info.snapshot_outstanding:  # not already asked for again
                self.pipeline.snapshot_failed(venue, symbol)
            return
        self.pipeline.on_message(venue, "http", request.key, text, time.time_ns())

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
                sample = self.pipeline.tick(time.time_ns())
                self.last_sample = sample
                self.status.observe(sample)
                for queue in self.sink_queues:
                    queue.put(sample)
                if self.on_tick is not None:
                    self.on_tick(sample)
            except Exception:  # task boundary: one bad tick must not end the monitor
                log.exception("tick.failed")

    async def _status_loop(self) -> None:
        assert self.status_out is not None
        while True:
            await asyncio.sleep(self.status_interval_s)
            try:
                self.status_out.write(self.status.render(self.health_state()) + "\n\n")
                self.status_out.flush()
            except Exception:  # task boundary: a closed terminal must not end the monitor
                log.exception("status.failed")

    async def close(self) -> None:
        """Drain and close the sinks (their queued samples are delivered first)."""
        for queue in self.sink_queues:
            await queue.stop()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            self.log_health()

    def health_state(self) -> dict[str, dict[str, Any]]:
        """Per venue: books valid/total, every connection event counted, REST state."""
        assert self.pipeline is not None
        summaries = self.pipeline.book_summaries(depth=0)
        counters = self.pipeline.counters.messages
        out: dict[str, dict[str, Any]] = {}
        for venue, runtime in self.venues.items():
            books = [s for s in summaries if s["venue"] == venue.value]
            prefix = f"{venue.value}."
            out[venue.value] = {
                "books": len(books),
                "valid_books": sum(1 for s in books if s["valid"]),
                "gaps": sum(s["gaps"] for s in books),
                "resyncs": sum(s["resyncs"] for s in books),
                "checksum_ok": sum(s["checksum_ok"] for s in books),
                "checksum_failed": sum(s["checksum_failed"] for s in books),
                "snapshots_ok": runtime.snapshots_ok,
                "snapshots_failed": runtime.snapshots_failed,
                "resubscribes": runtime.resubscribes,
                "rest_requests": runtime.rest.requests,
                "banned_for_s": round(runtime.rest.banned_for_s(), 1),
                "counters": {
                    k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)
                },
                **runtime.health.as_dict(),
            }
        return out

    def log_health(self) -> None:
        for venue, state in self.health_state().items():
            log.info("venue.health", venue=venue, **state)


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
    adapters: Mapping[Venue, VenueAdapter] | None = None,
    sinks: Sequence[Sink] = (),
    status_out: IO[str] | None = None,
    on_daemon: Callable[[Daemon], None] | None = None,
) -> None:
    """Monitor every enabled venue until ``stop`` is set (forever if None).

    ``on_tick(sample)`` is called with every tick's :class:`TickSample`; each sink gets
    every sample through its own bounded queue; ``status_out`` gets the status text;
    ``on_daemon(daemon)`` is called once it exists (the API reads its books and health).
    ``adapters`` default to every venue liqmon has (``feeds.venues.ADAPTERS``).
    """
    async with aiohttp.ClientSession() as http:
        daemon = Daemon(
            settings,
            http,
            ADAPTERS if adapters is None else adapters,
            on_tick=on_tick,
            sinks=sinks,
            status_out=status_out,
        )
        if on_daemon is not None:
            on_daemon(daemon)
        try:
            await _until_stopped(daemon.run, stop)
        finally:
            await daemon.close()
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
    adapters: Mapping[Venue, VenueAdapter] | None = None,
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
    adapter = (ADAPTERS if adapters is None else adapters).get(venue)
    if adapter is None:
        raise ConfigError("venues", venue.value, "no live connection support for this venue yet")
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
    """One venue's raw traffic to a recording: the daemon's connections, no books."""

    def __init__(
        self,
        venue: Venue,
        table: VenueSettings,
        adapter: VenueAdapter,
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
        for first in self.adapter.instruments_requests(self.table.rest_url):
            request: HttpRequest | None = first
            pages = 0
            while request is not None and (text := await self._fetch(request)) is not None:
                pages += 1
                request = _next_page(self.adapter, request, text, pages)
        table = self.table
        plans: list[tuple[str, list[str], bool]] = []
        if table.market_ws_url and table.mark_price_stream:
            plans.append((table.ws_url, [table.depth_stream], True))
            plans.append((table.market_ws_url, [table.mark_price_stream], False))
        else:
            channels = [table.depth_stream]
            if table.mark_price_stream:
                channels.append(table.mark_price_stream)
            plans.append((table.ws_url, channels, True))
        async with asyncio.TaskGroup() as group:
            for base_url, channels, depth in plans:
                per_connection = max(1, self.adapter.limits.streams_per_connection // len(channels))
                for symbols in _chunks(self.symbols, per_connection):
                    url = self.adapter.ws_url(base_url, symbols, channels)
                    group.create_task(self._session(url, symbols, channels, depth=depth).run())
            if self.adapter.snapshot_source == SnapshotSource.REST:
                group.create_task(self._snapshot_loop())
            group.create_task(self._flush_loop())

    def _session(
        self, url: str, symbols: list[str], channels: list[str], *, depth: bool
    ) -> WsSession:
        venue = self.venue.value
        writer = self.writer
        adapter = self.adapter

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

        in_url = adapter.subscribe_in_url
        return WsSession(
            url,
            venue=venue,
            on_frame=on_frame,
            subscribe_frames=[] if in_url else adapter.subscribe_frames(symbols, channels),
            open_frames=adapter.open_frames(),
            on_connect=on_connect,
            policy=self.policy,
            ping_interval_s=adapter.ping_interval_s,
            keepalive_s=adapter.keepalive_s,
            keepalive_frame=adapter.keepalive_frame(),
            reply_to=adapter.reply_to,
            sequence=adapter.connection_sequence,
            control=ControlBudget(adapter.limits.control_per_s, adapter.limits.control_per_hour),
            health=self.health,
            max_frame_bytes=adapter.limits.max_frame_bytes,
        )

    async def _snapshot_loop(self) -> None:
        limit = self.table.snapshot_limit
        while True:
            await self._snapshots_wanted.wait()
            self._snapshots_wanted.clear()
            await self._live.wait()  # deltas first, then the snapshots they bridge
            for symbol in self.symbols:
                request = self.adapter.snapshot_request(self.table.rest_url, symbol, limit)
                if request is not None:
                    await self._fetch(request)

    async def _fetch(self, request: HttpRequest) -> str | None:
        try:
            text = await _fetch(self.rest, request)
        except RestError as error:
            log.warning(
                "recorder.fetch_failed", venue=self.venue.value, url=request.url, error=str(error)
            )
            return None
        self.writer.write(self.venue.value, RecordKind.HTTP, request.key, text, time.time_ns())
        if self.on_record is not None:
            self.on_record(RecordKind.HTTP, request.key)
        return text

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self.writer.flush()
