"""The live monitor's loops (``liqmon run``; wired by :mod:`monitor.app`).

The live path is the same for every venue (venue differences are adapter attributes,
feeds.contract; nothing here branches on the venue):

- connections (:mod:`monitor.planning`): every enabled venue's symbols are cut into
  connections within the venue's limits (streams per connection); each is one
  :class:`~feeds.session.WsSession` with the venue's open, subscribe and keepalive frames,
  spaced by its control budget, and new connections are gated by the venue's
  connections-per-second limit. Every frame goes to :meth:`BookPipeline.feed_frames`,
  batched per event-loop turn;
- resync (each book's state machine: :mod:`monitor.resync`): the books the pipeline asks
  a snapshot for are fetched over REST (REST venues:
  at most 4 at a time per venue, within the venue's weight budget, once the connection
  delivers deltas so that they buffer first) or resubscribed on their connection (stream
  venues, whose snapshots come in-band); only the broken book is resynced;
- depth (REST venues with a ``start_snapshot_limit``): a book's snapshot is taken at the full
  ``snapshot_limit`` when that fits the weight budget now beside the cheap snapshots of the
  other books still waiting, else at ``start_snapshot_limit``, so that every book is valid
  as fast as the budget allows; books synced shallow are then deepened one by one by a
  second sync into the same book (:meth:`BookPipeline.begin_deepen`), with the weight the
  budget has left after keeping room for resyncs, and never go invalid for it;
- rotation (:mod:`monitor.rotation`): a connection is replaced before the venue's
  connection lifetime ends (Binance 24 h), or at once when the venue gives notice that it
  will close it (OKX 64008), and no book goes invalid;
- a tick loop computes the metrics every ``tick_ms``; a periodic ``venue.health`` line
  gives every connection event counted per venue (:meth:`Daemon.health_state`).

A lost connection invalidates its books at once (they missed deltas), so they are reported
invalid during the outage and resynced after it. Network errors never end the daemon;
setting ``stop`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import aiohttp

from feeds.coalesce import ReadCoalescer
from feeds.contract import HttpRequest, SnapshotSource, VenueAdapter
from feeds.rest import RestClient, RestError, VenueBanned
from feeds.session import (
    Backoff,
    ConnectionPolicy,
    ControlBudget,
    DisconnectReason,
    FeedHealth,
    WsSession,
)
from monitor.domain import Venue
from monitor.errors import ConfigError, MonitorError
from monitor.framering import FrameRing
from monitor.instruments import InstrumentRegistry
from monitor.log import get_logger
from monitor.memory import fix_mmap_threshold
from monitor.pipeline import BookPipeline
from monitor.planning import (
    ConnectionPlan,
    fetch,
    instrument_answers,
    open_session,
    plan_connections,
    rest_client,
)
from monitor.resync import SyncState
from monitor.rotation import LiveConnection, rotation_after_s, switch_over, until_due
from monitor.sample import TickSample
from monitor.settings import Settings, VenueSettings
from monitor.sinks import Sink, SinkQueue
from monitor.status import StatusSink
from monitor.warmup import warm_up

log = get_logger("monitor.daemon")

SNAPSHOT_POLL_S = 0.1
SNAPSHOTS_IN_FLIGHT_PER_VENUE = 4
DEEPENS_IN_FLIGHT_PER_VENUE = 4
DEEPEN_POLL_S = 0.5  # how often the books are looked over for a deepen (the budget's
#                      windows are a minute: a shorter look costs CPU and gains nothing)
DEEPEN_KEEP_FRACTION = 0.02
"""Share of the venue's weight limit a deeper snapshot of a valid book leaves unspent, for
the snapshots of books that go invalid meanwhile (these never wait behind a deepen)."""
DEEPEN_MAX_FAILURES = 5  # consecutive failed deepens of one book before it is left shallow
HEALTH_LOG_INTERVAL_S = 30.0
INSTRUMENTS_RETRIES = 1  # metadata at start-up: the cached copy is the fallback

STATUS_INTERVAL_S = 5.0
FLUSH_MAX_FRAMES = 256
"""A burst (one socket read can carry a thousand frames) is applied every this many frames,
not only at the end of the event-loop turn: bounded latency, and batches still large
enough for the batch scanner (bench/blast.py)."""
TickObserver = Callable[[TickSample], None]
RATE_WEIGHT = 0.25  # FlushWindow's moving average of the frame rate: a new flush's weight


class FlushWindow:
    """Applies the frames every connection handed over together, and in a calm market
    lingers for more before the loop looks at its sockets again.

    Each connection's session calls :meth:`read_ended` after the last frame of a socket
    read. A read of ``min_frames`` or more is flushed at once. Otherwise the first call
    after a flush schedules one flush at the end of the event-loop turn (``call_soon``),
    so the reads of every connection that woke the loop together go to the books in one
    batch. When fewer than ``min_frames`` frames were applied since
    the last such flush (a burst's own flushes every FLUSH_MAX_FRAMES count too), the loop
    thread sleeps until the batch window that opened at that first read is over. The
    window is ``window_s``, or shorter where the frame rate (a moving average over the
    flushes) brings ``min_frames`` sooner: at 5,000 frames/s the whole 5 ms, at 200,000
    frames/s 0.16 ms, which a flush outlasts, so under load nothing sleeps and throughput
    and latency are those of flushing every read.

    Why: in a calm market (the soak: 5k frames/s over 9 connections, 2-3 frames a read)
    each wake-up costs more CPU than the frames it brings. Measured here: a sleep and
    wake-up of the loop thread costs ~21 µs of CPU, and the book path after it runs on cold
    caches, ~3x its hot cost (9 venues' frames, 7 a flush: 9.1 µs a frame back to back,
    28 µs with 1 ms between flushes). Fewer, larger flushes are the cheapest frames. What
    it costs is latency in calm markets: a frame waits at most ``window_s``, and so do
    timers (pings, the tick). ``window_s`` 0 flushes every read at once, in its own turn.
    """

    __slots__ = (
        "_clock",
        "_due",
        "_flush",
        "_last",
        "_opened",
        "_seen",
        "_sleep",
        "applied",
        "errors",
        "flushes",
        "group",
        "min_frames",
        "rate",
        "sleeps",
        "window_s",
    )

    def __init__(
        self,
        flush: Callable[[], object],
        window_s: float,
        min_frames: int = 32,
        *,
        group: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._flush = flush  # applies what is queued, adding the frames to ``applied``
        self.window_s = window_s
        self.min_frames = min_frames
        # with no window: still apply the reads of one loop turn together (the coalescer
        # lets many sockets through at once), without waiting
        self.group = group
        self._clock = clock
        self._sleep = sleep
        self._due = False  # a flush is scheduled
        self._opened = 0.0  # when the first read of the window ended
        self._last = clock()  # when the last flush started
        self.rate = 0.0  # frames per second, a moving average over the flushes
        self.applied = 0  # frames applied by every flush of the owner's (it counts them)
        self._seen = 0  # ``applied`` at the last window's flush
        self.flushes = 0
        self.sleeps = 0
        self.errors = 0  # deferred flushes that raised (logged as feed.flush_failed)

    def read_ended(self, frames: int = 0) -> None:
        """A socket read of ``frames`` frames was handed over: a read of ``min_frames`` or
        more (a busy connection) is flushed at once, in its own turn."""
        if frames >= self.min_frames or not (self.window_s or self.group):
            self.flushes += 1
            self._flush()
            return
        if self._due:
            return
        self._due = True
        self._opened = self._clock()
        asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._due = False
        self.flushes += 1
        started = self._clock()
        try:
            self._flush()
        except Exception as error:  # a callback of the loop's own: count it, keep running
            self.errors += 1
            log.exception("feed.flush_failed", error=repr(error))
        n = self.applied - self._seen  # since the last window's flush, bursts' flushes too
        self._seen = self.applied
        since = started - self._last
        self._last = started
        if since > 0:
            self.rate += RATE_WEIGHT * (n / since - self.rate)
        if n >= self.min_frames or not self.window_s:
            return  # busy: the next wake-up comes soon enough on its own (or no window)
        window = self.window_s
        if self.rate * window > self.min_frames:
            window = self.min_frames / self.rate
        rest = self._opened + window - self._clock()
        if rest > 0:
            self.sleeps += 1
            self._sleep(rest)  # blocking on purpose: the loop must not wake up for a frame


@dataclass(eq=False)
class _Connection(LiveConnection):
    """One live connection of a venue."""

    runtime: _VenueRuntime | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.plan.symbols

    @property
    def venue_runtime(self) -> _VenueRuntime:
        assert self.runtime is not None
        return self.runtime


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
    syncs_waiting: int = 0  # snapshot fetches of invalid books not yet sent
    deepens_ok: int = 0
    deepens_failed: int = 0
    deepening: set[str] = field(default_factory=set)  # deepens under way
    deepen_failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def depths(self) -> tuple[int, int]:
        """(full snapshot depth, start depth); start 0: every snapshot is full."""
        full = self.settings.snapshot_limit
        start = self.settings.start_snapshot_limit
        if self.stream_snapshots or self.rest.budget is None or not 0 < start < full:
            return full, 0
        return full, start

    def snapshot_weight(self, symbol: str, limit: int) -> int:
        request = self.adapter.snapshot_request(self.settings.rest_url, symbol, limit)
        return 0 if request is None else request.weight

    def sync_depth(self, symbol: str) -> int:
        """The depth of an invalid book's snapshot, decided as it is sent: full when its
        weight fits the budget now beside the start snapshots of the books still waiting."""
        full, start = self.depths()
        budget = self.rest.budget
        if not start or budget is None:
            return full
        others = max(0, self.syncs_waiting) * self.snapshot_weight(symbol, start)
        return full if budget.room() - others >= self.snapshot_weight(symbol, full) else start

    @property
    def stream_snapshots(self) -> bool:
        return self.adapter.snapshot_source == SnapshotSource.STREAM

    def book_connections(self) -> list[_Connection]:
        return [c for c in self.connections if c.plan.carries_books and not c.muted]

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
            rest = rest_client(http, venue, adapter, settings)
            budget = ControlBudget(adapter.limits.connections_per_s)
            self.venues[venue] = _VenueRuntime(venue, table, adapter, rest, budget)
        if not self.venues:
            raise ConfigError("venues", "enabled", "no enabled venue has live support")
        self.pipeline: BookPipeline | None = None
        self.last_sample: TickSample | None = None
        self._pending: dict[Venue, tuple[list[str | bytes], list[int]]] = {}
        # the venues whose lists above got frames since the last flush (each once)
        self._ready: list[tuple[Venue, list[str | bytes], list[int]]] = []
        self._group: asyncio.TaskGroup | None = None
        # calm markets: sockets wake the loop once enough bytes wait (feeds.coalesce)
        self.coalescer = ReadCoalescer(
            settings.connection.coalesce_bytes, settings.connection.coalesce_ms / 1000.0
        )
        self.flush_window = FlushWindow(  # _flush: looks _flush_pending up at each call
            self._flush,
            settings.connection.batch_window_ms / 1000.0,
            settings.connection.batch_min_frames,
            group=self.coalescer.enabled,
        )
        # the black box (monitor.framering): each venue's recent raw frames, when evidence
        # capture asks for them (monitor.store.evidence)
        self.frame_rings: dict[Venue, FrameRing] = {}

    # --- start-up -----------------------------------------------------------------------
    async def load_registry(self) -> InstrumentRegistry:
        """Every venue's instrument metadata; the shipped cached copy where a fetch fails."""
        registry = InstrumentRegistry()
        for venue, runtime in self.venues.items():
            adapter = runtime.adapter
            fresh = InstrumentRegistry()
            try:
                async for request, text in instrument_answers(
                    adapter, runtime.settings.rest_url, self._metadata_getter(runtime)
                ):
                    fresh = fresh.merge(
                        InstrumentRegistry(adapter.parse_instruments(request.key, text))
                    )
                    self._read_weight_limit(runtime, request, text)
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

    @staticmethod
    def _read_weight_limit(runtime: _VenueRuntime, request: HttpRequest, text: str) -> None:
        """The REST weight limit the venue states in its metadata replaces the documented
        one the budget started with (Binance exchangeInfo.rateLimits)."""
        read = runtime.adapter.stated_weight_limit
        budget = runtime.rest.budget
        stated = None if read is None or budget is None else read(request, text)
        if stated is None or budget is None:
            return
        limit, interval_s = stated
        budget.set_limit(limit, interval_s)
        log.info(
            "rest.weight_limit",
            venue=runtime.venue.value,
            limit=limit,
            interval_s=interval_s,
            budget=budget.capacity,
        )

    @staticmethod
    def _metadata_getter(runtime: _VenueRuntime) -> Callable[[HttpRequest], Awaitable[str]]:
        """Fetches one metadata request (a failure raises: the cached copy is used)."""

        async def get(request: HttpRequest) -> str:
            return await fetch(runtime.rest, request, INSTRUMENTS_RETRIES)

        return get

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
            for plan in plan_connections(runtime.settings, runtime.adapter):
                out.append(self._connection(runtime, plan))
        return out

    def _connection(self, runtime: _VenueRuntime, plan: ConnectionPlan) -> _Connection:
        connection = _Connection(plan, runtime=runtime)
        connection.session = self._session(connection)
        runtime.connections.append(connection)
        return connection

    def sessions(self) -> list[WsSession]:
        """The websocket sessions of every venue (built once)."""
        if not any(r.connections for r in self.venues.values()):
            self.connections()
        return [
            c.session for r in self.venues.values() for c in r.connections if c.session is not None
        ]

    def _session(self, connection: _Connection) -> WsSession:
        runtime = connection.venue_runtime
        venue = runtime.venue
        symbols = connection.symbols
        carries_books = connection.plan.carries_books

        # frames wait in the venue's lists until the session has handed over every frame of
        # the socket read (on_batch): then they are decoded and applied together with the
        # other connections' reads of the same wake-up, at most once per batch window
        # (FlushWindow); a burst is flushed every FLUSH_MAX_FRAMES frames rather than
        # waiting for the whole read
        entry = (venue, *self._pending.setdefault(venue, ([], [])))
        _, frames, stamps = entry
        add_frame = frames.append
        add_stamp = stamps.append
        ready = self._ready

        def on_frame(data: str | bytes, recv_ns: int) -> None:
            if connection.muted:
                return
            connection.live = True
            if not frames:
                ready.append(entry)
            add_frame(data)
            add_stamp(recv_ns)
            if len(frames) >= FLUSH_MAX_FRAMES:
                self._flush_pending()

        read_ended = self.flush_window.read_ended

        def on_batch() -> None:
            if ready:
                read_ended(len(frames))

        def on_connect() -> None:
            connection.live = False  # ready again once frames flow (deltas buffer first)
            if carries_books and runtime.stream_snapshots and not connection.muted:
                assert self.pipeline is not None
                # the subscription just sent brings every book's snapshot in-band
                self._expect(runtime, symbols)

        def on_disconnect(reason: DisconnectReason) -> None:
            connection.live = False
            if not carries_books or connection.muted:
                return
            if reason == DisconnectReason.ROTATED:
                return
            assert self.pipeline is not None
            # this connection's books missed deltas: invalid now, resynced once it is back
            self._flush()  # frames received before the drop first
            # (in-band snapshots awaited from the lost subscription will not come: losing
            # the book drops their deadline; the reconnect's subscription sets its own)
            self.pipeline.invalidate_books(venue, symbols)

        return open_session(
            runtime.adapter,
            connection.plan,
            on_frame=on_frame,
            on_batch=on_batch,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            on_notice=lambda _why: connection.replace_now.set(),
            policy=self.policy,
            health=runtime.health,
            connect_gate=runtime.connect_gate,
            rng=self.rng,
            text_as_bytes=True,  # the pipeline and its scanners read bytes
            coalescer=self.coalescer,
        )

    def _expect(self, runtime: _VenueRuntime, symbols: Sequence[str]) -> None:
        assert self.pipeline is not None
        deadline = time.monotonic() + self.settings.connection.snapshot_timeout_s
        self.pipeline.expect_snapshots(runtime.venue, symbols, deadline)

    def _flush(self) -> int:
        return self._flush_pending()

    def _flush_pending(self) -> int:
        """Decode and apply every queued frame (the reads of a batch window, a full burst,
        before a snapshot, a tick or a reconnect); returns how many frames."""
        pipeline = self.pipeline
        if pipeline is None:
            return 0
        ready = self._ready
        n = 0
        if ready:
            rings = self.frame_rings
            for venue, frames, stamps in ready:
                if frames:
                    if rings:
                        ring = rings.get(venue)
                        if ring is not None:
                            ring.add(frames, stamps)
                    pipeline.feed_frames(venue, frames, stamps)
                    n += len(frames)
                    frames.clear()
                    stamps.clear()
            ready.clear()
            self.flush_window.applied += n
        pipeline.flush()
        return n

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
            event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
            batch_window_ms=self.settings.connection.batch_window_ms,
            coalesce_bytes=self.settings.connection.coalesce_bytes if self.coalescer.enabled else 0,
            coalesce_ms=self.settings.connection.coalesce_ms,
        )
        # everything built so far lives as long as the daemon: out of the collector's sight,
        # so that no full collection walks the instruments, books and adapters again
        gc.collect()
        gc.freeze()
        fix_mmap_threshold()  # large buffers back to the system on free (monitor.memory)
        async with asyncio.TaskGroup() as group:
            self._group = group
            for connection in connections:
                group.create_task(self._run_connection(connection))
            group.create_task(self._snapshot_loop())
            group.create_task(self._deepen_loop())
            for queue in self.sink_queues:
                queue.start()
            group.create_task(self._tick_loop())
            group.create_task(self.coalescer.run())
            group.create_task(self._health_loop())
            if self.status_out is not None:
                group.create_task(self._status_loop())

    async def _run_connection(self, connection: _Connection) -> None:
        """Run one connection's session; rotate it before the venue's lifetime ends, or
        when the venue gives notice that it will close it."""
        assert connection.session is not None
        runtime = connection.venue_runtime
        after_s = rotation_after_s(runtime.adapter.limits.lifetime_s, self.rotate_after_s)
        if not after_s and runtime.adapter.reconnect_notice is None:
            await connection.session.run()  # nothing will ever replace it
            return
        async with asyncio.TaskGroup() as group:  # after_s 0: only on a venue's notice
            group.create_task(connection.session.run())
            group.create_task(self._rotate(connection, after_s))

    async def _rotate(self, old: _Connection, after_s: float) -> None:
        """Open a replacement connection ``after_s`` into ``old``'s life (0: never) or as
        soon as the venue gives notice that it will close it; switch over, close ``old``."""
        reason = await until_due(old, after_s, self.rng)
        runtime = old.venue_runtime
        new = self._connection(runtime, old.plan)
        log.info("feed.rotate", venue=runtime.venue.value, url=old.plan.url, reason=reason)
        assert self._group is not None
        self._group.create_task(self._run_connection(new))
        await switch_over(old, new, in_band=runtime.stream_snapshots)
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
                            runtime.syncs_waiting += 1
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
            sync = self.pipeline.resync.get((runtime.venue, symbol))
            if sync is None or not sync.needs_snapshot or sync.awaiting_in_band:
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
        channels = [connection.plan.channels[0]]  # the book channel
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
        for venue, symbol in self.pipeline.resync.expired(time.monotonic()):
            log.warning("snapshot.timeout", venue=venue.value, symbol=symbol)
            self.pipeline.snapshot_failed(venue, symbol)

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
        waiting = True  # counted in runtime.syncs_waiting until its depth is decided
        try:
            request = runtime.adapter.snapshot_request(
                runtime.settings.rest_url, symbol, runtime.settings.snapshot_limit
            )
            if request is None:
                self.pipeline.snapshot_failed(venue, symbol)
                return
            sync = self.pipeline.resync.get((venue, symbol))
            resyncs = sync.resyncs if sync is not None else 0
            async with runtime.semaphore:
                runtime.syncs_waiting -= 1
                waiting = False
                # decided and spent with no await between: the budget seen is the one spent
                depth = runtime.sync_depth(symbol)
                if depth != runtime.settings.snapshot_limit:
                    request = runtime.adapter.snapshot_request(
                        runtime.settings.rest_url, symbol, depth
                    )
                    assert request is not None
                text = await fetch(runtime.rest, request)
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
            failures = sync.fetch_failed() if sync is not None else 0
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
        finally:
            if waiting:  # ended (cancelled, no request) before its depth was decided
                runtime.syncs_waiting -= 1
        if sync is not None:
            sync.fetched()
        runtime.snapshots_ok += 1
        self._flush()  # deltas received before the snapshot go first
        if sync is not None and sync.resyncs != resyncs:
            # the book was thrown away (a reconnect) while this was in flight: the snapshot
            # may predate deltas the new connection will never send; ask again
            log.info("snapshot.superseded", venue=venue.value, symbol=symbol)
            if sync.state is SyncState.NEEDS_SNAPSHOT:  # not already asked for again
                self.pipeline.snapshot_failed(venue, symbol)
            return
        recv_ns = time.time_ns()
        ring = self.frame_rings.get(venue)
        if ring is not None:
            ring.add_http(request.key, text, recv_ns)
        self.pipeline.on_message(venue, "http", request.key, text, recv_ns)

    async def _deepen_loop(self) -> None:
        """Books synced from a start-depth snapshot are deepened to the full depth, a few at
        a time per venue, never while an invalid book of the venue waits for its snapshot."""
        assert self.pipeline is not None
        async with asyncio.TaskGroup() as group:
            while True:
                await asyncio.sleep(DEEPEN_POLL_S)
                for runtime in self.venues.values():
                    if not runtime.depths()[1] or runtime.syncs_waiting:
                        continue
                    if not runtime.ready_for_snapshots():
                        continue
                    for symbol in self._shallow_books(runtime):
                        if len(runtime.deepening) >= DEEPENS_IN_FLIGHT_PER_VENUE:
                            break
                        runtime.deepening.add(symbol)
                        group.create_task(self._deepen(runtime, symbol))

    def _shallow_books(self, runtime: _VenueRuntime) -> list[str]:
        """Valid books of the venue below the full depth, due for a deepen."""
        assert self.pipeline is not None
        full = runtime.settings.snapshot_limit
        now = time.monotonic()
        out = []
        for symbol in runtime.settings.symbols:
            info = self.pipeline.books.get((runtime.venue, symbol))
            if info is None or not 0 < info.limit < full or symbol in runtime.deepening:
                continue
            failures, not_before = runtime.deepen_failures.get(symbol, (0, 0.0))
            if failures >= DEEPEN_MAX_FAILURES or now < not_before:
                continue
            if info.needs_snapshot or not self.pipeline.is_valid(info):
                continue
            out.append(symbol)
        return out

    async def _deepen(self, runtime: _VenueRuntime, symbol: str | None) -> None:
        """Deepen ``symbol``, then the next shallow book, while there is one and no invalid
        book of the venue waits (a slot goes on at once: the loop only looks every
        DEEPEN_POLL_S)."""
        assert self.pipeline is not None
        while symbol is not None:
            try:
                await self._deepen_once(runtime, symbol)
            except Exception:  # task boundary: a bug here must not end the monitor
                log.exception("deepen.error", venue=runtime.venue.value, symbol=symbol)
                self.pipeline.abandon_deepen(runtime.venue, symbol, "error")
            finally:
                runtime.deepening.discard(symbol)
            symbol = None
            if not runtime.syncs_waiting and runtime.ready_for_snapshots():
                symbol = next(iter(self._shallow_books(runtime)), None)
                if symbol is not None:
                    runtime.deepening.add(symbol)

    async def _deepen_once(self, runtime: _VenueRuntime, symbol: str) -> None:
        """One deeper second sync of a valid book (see BookPipeline.begin_deepen)."""
        assert self.pipeline is not None
        venue = runtime.venue
        budget = runtime.rest.budget
        full = runtime.settings.snapshot_limit
        request = runtime.adapter.snapshot_request(runtime.settings.rest_url, symbol, full)
        if request is None or budget is None:
            return
        keep = int(budget.limit * DEEPEN_KEEP_FRACTION)
        # the copy buffers deltas from its start: start it when the weight can go at once
        await budget.wait_room(request.weight, keep)
        if runtime.syncs_waiting or not self.pipeline.begin_deepen(venue, symbol):
            return
        try:
            text = await fetch(runtime.rest, request, keep=keep)
        except VenueBanned as error:  # the REST client logged the ban (rest.banned)
            self.pipeline.abandon_deepen(venue, symbol, "banned")
            self._deepen_failed(runtime, symbol, error.problem, error.retry_after_s, said=True)
            return
        except RestError as error:
            self.pipeline.abandon_deepen(venue, symbol, "snapshot failed")
            self._deepen_failed(runtime, symbol, error.problem)
            return
        self._flush()  # deltas received before the snapshot go first
        if not self.pipeline.deepen_snapshot(venue, symbol, request.key, text, time.time_ns()):
            self._deepen_failed(runtime, symbol, "the deeper snapshot could not be used")
            return
        deadline = time.monotonic() + self.settings.connection.snapshot_timeout_s
        while self.pipeline.deepening(venue, symbol):  # the copy catches up with the book
            if time.monotonic() > deadline:
                self.pipeline.abandon_deepen(venue, symbol, "copy did not catch up in time")
                break
            await asyncio.sleep(SNAPSHOT_POLL_S / 2)
        info = self.pipeline.books.get((venue, symbol))
        if info is not None and (info.limit == 0 or info.limit >= full):
            runtime.deepens_ok += 1
            runtime.deepen_failures.pop(symbol, None)
        elif info is not None and not info.needs_snapshot:  # (a resync takes its own depth)
            self._deepen_failed(runtime, symbol, "the deeper copy did not sync")

    def _deepen_failed(
        self,
        runtime: _VenueRuntime,
        symbol: str,
        problem: str,
        wait_s: float = 0.0,
        *,
        said: bool = False,
    ) -> None:
        """Count a failed deepen and back off (one warning, unless ``said`` already)."""
        runtime.deepens_failed += 1
        failures = runtime.deepen_failures.get(symbol, (0, 0.0))[0] + 1
        backoff = Backoff(self.policy.backoff_initial_s, self.policy.backoff_max_s, self.rng)
        backoff.attempt = failures - 1
        delay_s = max(wait_s, backoff.next_delay_s())
        runtime.deepen_failures[symbol] = (failures, time.monotonic() + delay_s)
        given_up = failures >= DEEPEN_MAX_FAILURES
        if said and not given_up:
            return
        log.warning(
            "book.deepen_failed",
            venue=runtime.venue.value,
            symbol=symbol,
            error=problem,
            failures=failures,
            **({"left_at_depth": True} if given_up else {"retry_in_s": round(delay_s, 3)}),
        )

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
                await self.coalescer.drain()  # the frames waiting in the kernel go in first
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
            full_depth, start_depth = runtime.depths()
            out[venue.value] = {
                "books": len(books),
                "valid_books": sum(1 for s in books if s["valid"]),
                "full_depth_books": sum(
                    1
                    for s in books
                    if s["valid"] and (not start_depth or not 0 < s["snapshot_limit"] < full_depth)
                ),
                "gaps": sum(s["gaps"] for s in books),
                "resyncs": sum(s["resyncs"] for s in books),
                "checksum_ok": sum(s["checksum_ok"] for s in books),
                "checksum_failed": sum(s["checksum_failed"] for s in books),
                "snapshots_ok": runtime.snapshots_ok,
                "snapshots_failed": runtime.snapshots_failed,
                "deepens_ok": runtime.deepens_ok,
                "deepens_failed": runtime.deepens_failed,
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
