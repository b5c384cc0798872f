"""A local exchange on 127.0.0.1 that speaks every venue's protocol (tests, ``liqmon demo``, soak).

One :class:`ExchangeSim` is one aiohttp server. Each venue lives under its own path prefix,
``ws://127.0.0.1:<port>/<venue id>/...`` for websockets and ``http://127.0.0.1:<port>/<venue
id>/...`` for REST, so a config only swaps the venues' base URLs (``config/sim.toml``) and
the monitor runs exactly the code it runs against the real venues.

The venue-specific part is a *protocol* object (feeds/sim/<venue>.py) with this interface
(all methods are plain functions of their arguments; the server does all I/O):

``venue``
    the :class:`~monitor.domain.Venue` it serves (its path prefix).
``on_open(sim, conn)``
    a client connected (``conn.path`` and ``conn.query`` say to what): venues that take
    subscriptions in the URL (Binance) start them here.
``on_text(sim, conn, text)``
    one text frame from the client: parse it and answer like the venue (acks via
    ``conn.send``; ``sim.subscribe(conn, symbol)`` to start a book, which calls back
    ``snapshot_frames`` and then streams deltas; ``sim.unsubscribe(conn, symbol)``; answer
    application-level pings). Unknown symbols get the venue's error reply.
``snapshot_frames(conn, book) -> list[str]``
    the frames a venue sends when a book subscription starts (empty for venues whose
    snapshots come from REST, such as Binance).
``delta_frames(conn, book, changes) -> list[str]``
    the frames for ``changes`` (a list of :class:`Change`), already applied to ``book``.
    Called once per subscribed connection per update, after the server advanced the book's
    sequence: ``book.seq`` is this update's id and ``book.prev_seq`` the previous one (a
    protocol with a different scheme keeps its own in ``book.extra`` or ``conn.state``).
    If ``book.corrupt_checksum`` is set, the protocol writes a wrong checksum into this
    update (the server clears the flag afterwards).
``heartbeat_frames(conn) -> list[str]``
    sent every ``heartbeat_s`` on every connection (Coinbase ``heartbeats``, Kraken
    ``heartbeat``); ``[]`` if the venue sends none.
``mark_frames(conn, book) -> list[str]``
    mark/index/funding frames for a subscribed derivative book, sent every ``mark_s``.
``rest(sim, request: RestRequest) -> tuple[int, str] | None``
    answer a REST request (metadata, snapshots); None = 404.
``server_ping_s``
    websocket-level ping interval of the server (Binance 20 s), or None.
``client_idle_timeout_s``
    the venue closes a connection whose client sent nothing for this long (OKX 30 s,
    Hyperliquid 60 s), or None.

Books are synthetic and exact: :class:`SimBook` holds integer price and size units and
formats them the way the venue writes them. A book made from instrument metadata
(:meth:`ExchangeSim.add_instrument`) carries the :class:`~monitor.domain.Instrument` in
``book.extra["instrument"]`` (base, quote, kind, tick, lot, contract size, inverse): the
protocol's REST metadata answers describe the books from it (fall back to sensible values
when it is absent). ``sim.step()`` (or the background market of
:meth:`ExchangeSim.run_market`) changes random levels near the top; ``sim.update()``
applies scripted changes; both broadcast the venue's delta frames to every subscriber.

Faults (each also a test subject): :meth:`drop` (abort, or close with a code such as 1008),
:meth:`set_silent` (socket open, nothing sent), :meth:`send_garbage`, :meth:`truncate_next`
(the next frame cut in half), :meth:`lose_next` (the next update of a book is applied but
not sent: a sequence gap, or a checksum mismatch on venues without sequence ids),
:meth:`corrupt_checksum`, :meth:`fail_next` (REST 429 with Retry-After, 418, 503, delays).
Everything clients did is logged (:attr:`connections`, :attr:`requests`), and
:meth:`wait_for` waits for a condition on that state without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from monitor.domain import (
    Instrument,
    InstrumentKind,
    Venue,
    format_units,
    significant_decimals,
    to_units,
)

MAX_BEHIND_S = 1.0  # run_market: how much backlog of updates it sends at once, at most


@dataclass(slots=True)
class Change:
    """One level set to an absolute size (``qty`` 0 deletes). Prices and sizes in units."""

    side: str  # "bid" or "ask"
    px: int
    qty: int


@dataclass(eq=False)
class SimBook:
    """One venue's book of one instrument: exact integer units, formatted like the venue."""

    venue: Venue
    symbol: str
    price_decimals: int
    qty_decimals: int
    tick_units: int = 1
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    seq: int = 1000  # id of the last update (venues that number updates per book)
    prev_seq: int = 999
    corrupt_checksum: bool = False
    derivative: bool = False  # the sim sends mark/index/funding frames for it
    mark_px: int = 0
    funding_rate: float = 0.0001
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ts_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def top_bids(self, n: int | None = None) -> list[tuple[int, int]]:
        """Bids best first as (price units, size units)."""
        return sorted(self.bids.items(), reverse=True)[:n]

    def top_asks(self, n: int | None = None) -> list[tuple[int, int]]:
        return sorted(self.asks.items())[:n]

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None

    def px(self, units: int, *, fixed: bool = False) -> str:
        """A price as text: at ``price_decimals`` decimals, or shortest (no trailing zeros)."""
        return _text(units, self.price_decimals, fixed)

    def qty(self, units: int, *, fixed: bool = False) -> str:
        return _text(units, self.qty_decimals, fixed)

    def px_units(self, text: str) -> int:
        return to_units(text, self.price_decimals)

    def qty_units(self, text: str) -> int:
        return to_units(text, self.qty_decimals)

    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            side = self.bids if change.side == "bid" else self.asks
            if change.qty > 0:
                side[change.px] = change.qty
            else:
                side.pop(change.px, None)


@dataclass(frozen=True, slots=True)
class DepthProfile:
    """The shape of a synthetic book in USD, per side.

    Cumulative depth from the mid out to a distance δ grows like
    ``depth_1pct_usd * (δ / 1%) ** exponent`` up to ``knee_pct`` (real books: roughly
    δ^0.5-0.6), then flatter (``outer_exponent``) out to ``span_pct``. Levels are dense
    at the touch (one tick apart) and spread further apart with distance, as real books
    look once aggregated; each level's size varies by a lognormal factor (``noise``).
    """

    depth_1pct_usd: float = 1_000_000.0
    exponent: float = 0.55
    knee_pct: float = 2.0
    outer_exponent: float = 0.2
    span_pct: float = 4.0
    spacing_power: float = 3.0  # distance of level k grows like (k / levels) ** this
    noise: float = 0.35

    def cumulative_usd(self, distance_pct: float) -> float:
        """Target depth (USD, one side) between the mid and ``distance_pct`` from it."""
        if distance_pct <= 0:
            return 0.0
        if distance_pct <= self.knee_pct:
            return self.depth_1pct_usd * float(distance_pct**self.exponent)
        at_knee = self.depth_1pct_usd * float(self.knee_pct**self.exponent)
        return at_knee * float((distance_pct / self.knee_pct) ** self.outer_exponent)


class _Shape:
    """A profile applied to one instrument: level distances in ticks, USD to size units."""

    __slots__ = ("book", "instrument", "lot_units", "mid_units", "profile", "quote_usd")

    def __init__(
        self,
        profile: DepthProfile,
        instrument: Instrument,
        book: SimBook,
        *,
        quote_usd: float,
        mid_units: int,
    ) -> None:
        self.profile = profile
        self.instrument = instrument
        self.book = book
        self.quote_usd = quote_usd
        self.mid_units = mid_units
        self.lot_units = max(1, to_units(instrument.lot, book.qty_decimals))

    def levels(self, n: int, rng: random.Random) -> list[tuple[int, tuple[int, int]]]:
        """``n`` levels a side: (distance from mid in price units, (bid size, ask size))."""
        tick = self.book.tick_units
        span_ticks = self.profile.span_pct / 100.0 * self.mid_units / tick
        out: list[tuple[int, tuple[int, int]]] = []
        previous_pct = 0.0
        previous_ticks = 0
        for k in range(1, n + 1):
            spread = ((k - 1) / max(1, n - 1)) ** self.profile.spacing_power
            ticks = max(previous_ticks + 1, k + round(max(0.0, span_ticks - n) * spread))
            distance = ticks * tick
            pct = 100.0 * distance / self.mid_units
            usd = self.profile.cumulative_usd(pct) - self.profile.cumulative_usd(previous_pct)
            sizes = (
                self.size_for(usd, self.mid_units - distance, rng),
                self.size_for(usd, self.mid_units + distance, rng),
            )
            out.append((distance, sizes))
            previous_pct, previous_ticks = pct, ticks
        return out

    def size_at(self, px_units: int, rng: random.Random) -> int:
        """A size for a level the market places at ``px_units``: the profile's depth over
        the one tick that ends there, so that a side filled tick by tick near the touch
        still follows the curve."""
        book = self.book
        best_bid, best_ask = book.best_bid(), book.best_ask()
        mid = (best_bid + best_ask) / 2 if best_bid and best_ask else self.mid_units
        ticks = max(1, round(abs(px_units - mid) / book.tick_units))
        tick_pct = 100.0 * book.tick_units / self.mid_units
        curve = self.profile.cumulative_usd
        usd = curve(ticks * tick_pct) - curve((ticks - 1) * tick_pct)
        return self.size_for(usd, px_units, rng)

    def size_for(self, usd: float, px_units: int, rng: random.Random) -> int:
        """Size units (base, or contracts) worth about ``usd`` at this price, in whole lots."""
        noise = self.profile.noise
        # the lognormal factor has mean 1, so the cumulative target holds on average
        usd *= rng.lognormvariate(-noise * noise / 2.0, noise)
        quote = usd / self.quote_usd
        price = max(px_units, 1) / float(10**self.book.price_decimals)
        inst = self.instrument
        if inst.inverse:  # contracts count quote-currency face value
            contracts = quote / inst.contract_size
        else:
            contracts = quote / price / inst.contract_size
        lots = max(1, round(contracts * float(10**self.book.qty_decimals) / self.lot_units))
        return lots * self.lot_units


def _text(units: int, decimals: int, fixed: bool) -> str:
    text = format_units(units, decimals)
    if not fixed and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@dataclass(frozen=True, slots=True)
class RestRequest:
    venue: Venue
    method: str
    path: str  # below the venue prefix, e.g. "/api/v3/depth"
    query: dict[str, str]
    body: str


@dataclass(frozen=True, slots=True)
class RestFault:
    """Answer the next matching REST request of a venue with ``status`` (after ``delay_s``)."""

    status: int
    retry_after_s: float | None = None
    path: str | None = None  # None: any path
    delay_s: float = 0.0
    body: str = '{"code":-1003,"msg":"Too many requests."}'


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    venue: Venue
    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float  # loop time when answered


@dataclass(eq=False)
class SimConnection:
    """One websocket client as the server sees it."""

    id: int
    venue: Venue
    path: str  # below the venue prefix
    query: dict[str, str]
    websocket: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    opened_at: float
    received: list[str] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    subscriptions: set[str] = field(default_factory=set)  # symbols streaming to it
    pongs: int = 0
    sent: int = 0
    closed: bool = False
    seq: int = 0  # per-connection message counter (Coinbase sequence_num)
    state: dict[str, Any] = field(default_factory=dict)  # free for the protocol
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    last_client_frame: float = 0.0

    def send(self, text: str) -> None:
        if not self.closed:
            self.queue.put_nowait(text)


class VenueProtocol(Protocol):
    venue: Venue
    server_ping_s: float | None
    client_idle_timeout_s: float | None

    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None: ...
    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None: ...
    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]: ...
    def delta_frames(
        self, conn: SimConnection, book: SimBook, changes: list[Change]
    ) -> list[str]: ...
    def heartbeat_frames(self, conn: SimConnection) -> list[str]: ...
    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]: ...
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None: ...


class ExchangeSim:
    """The local exchange. ``async with ExchangeSim([...protocols]) as sim``; URLs per venue."""

    def __init__(
        self,
        protocols: Iterable[VenueProtocol],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_s: float = 1.0,
        mark_s: float = 1.0,
        seed: int = 7,
    ) -> None:
        self.protocols: dict[Venue, VenueProtocol] = {p.venue: p for p in protocols}
        self.books: dict[tuple[Venue, str], SimBook] = {}
        self.connections: list[SimConnection] = []
        self.requests: list[RequestLogEntry] = []
        self.silent: set[Venue] = set()
        self.heartbeat_s = heartbeat_s
        self.mark_s = mark_s
        self.rng = random.Random(seed)
        self.updates_sent = 0
        self._faults: dict[Venue, deque[RestFault]] = {}
        self._truncate: set[Venue] = set()
        self._lose: set[tuple[Venue, str]] = set()
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()

    # --- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for connection in self.connections:
            if not connection.closed:
                with contextlib.suppress(Exception):
                    await connection.websocket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ExchangeSim:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    def ws_url(self, venue: Venue, path: str = "") -> str:
        return f"ws://{self._host}:{self._port}/{venue.value}{path}"

    def rest_url(self, venue: Venue) -> str:
        return f"http://{self._host}:{self._port}/{venue.value}"

    # --- books --------------------------------------------------------------------------
    def add_book(
        self,
        venue: Venue,
        symbol: str,
        *,
        mid: str = "100",
        tick: str = "0.01",
        qty_decimals: int = 4,
        levels: int = 50,
        derivative: bool = False,
    ) -> SimBook:
        """A synthetic book: ``levels`` levels a side around ``mid``, one tick apart (a few
        holes), sizes random. Deterministic for a given seed."""
        decimals = len(tick.partition(".")[2].rstrip("0")) if "." in tick else 0
        tick_units = to_units(tick, decimals)
        book = SimBook(
            venue,
            symbol,
            price_decimals=decimals,
            qty_decimals=qty_decimals,
            tick_units=tick_units,
            derivative=derivative,
        )
        mid_units = to_units(mid, decimals) // tick_units * tick_units
        rng = self.rng
        for k in range(1, levels + 1):
            book.bids[mid_units - k * tick_units] = self._size(book)
            book.asks[mid_units + k * tick_units] = self._size(book)
        if rng.random() < 0.5 and levels > 3:  # a hole or two, as real books have
            book.bids.pop(mid_units - 3 * tick_units, None)
        book.mark_px = mid_units
        self.books[(venue, symbol)] = book
        return book

    def add_instrument(
        self,
        instrument: Instrument,
        *,
        mid: str,
        levels: int = 50,
        qty_decimals: int | None = None,
        profile: DepthProfile | None = None,
        quote_usd: float = 1.0,
    ) -> SimBook:
        """A synthetic book for a known instrument (its tick; sizes at its lot's decimals,
        in multiples of its lot), shaped in USD by ``profile`` (default: $1M within 1% of
        mid a side). quote_usd: the USD value of one unit of the quote currency."""
        lot_decimals = significant_decimals(instrument.lot)
        if qty_decimals is None:
            qty_decimals = max(lot_decimals, instrument.qty_precision)
        tick = instrument.tick
        book = self.add_book(
            instrument.venue,
            instrument.symbol,
            mid=mid,
            tick=tick,
            qty_decimals=qty_decimals,
            levels=levels,
            derivative=instrument.kind != InstrumentKind.SPOT,
        )
        book.extra["instrument"] = instrument
        shape = _Shape(
            profile or DepthProfile(),
            instrument,
            book,
            quote_usd=quote_usd,
            mid_units=book.mark_px,
        )
        book.extra["shape"] = shape
        book.bids.clear()
        book.asks.clear()
        for px, qty in shape.levels(levels, self.rng):
            if book.mark_px - px > 0:  # a coarse tick on a cheap coin runs out of bids
                book.bids[book.mark_px - px] = qty[0]
            book.asks[book.mark_px + px] = qty[1]
        return book

    def book(self, venue: Venue, symbol: str) -> SimBook:
        return self.books[(venue, symbol)]

    def _size(self, book: SimBook, px: int | None = None) -> int:
        shape = book.extra.get("shape")
        if isinstance(shape, _Shape) and px is not None:  # a book shaped in USD
            return shape.size_at(px, self.rng)
        scale = 10**book.qty_decimals
        return max(1, int(self.rng.lognormvariate(0.0, 1.0) * scale))

    def random_changes(self, book: SimBook, n: int = 3) -> list[Change]:
        """Realistic churn near the top: resize or cancel levels, add levels, sometimes
        move the touch. Never crosses the book."""
        changes: list[Change] = []
        rng = self.rng
        tick = book.tick_units
        for _ in range(n):
            best_bid, best_ask = book.best_bid(), book.best_ask()
            if best_bid is None or best_ask is None:
                break
            side = "bid" if rng.random() < 0.5 else "ask"
            levels = book.bids if side == "bid" else book.asks
            roll = rng.random()
            depth = rng.randrange(0, 20)
            if side == "bid":
                px = best_bid - depth * tick
                inside = best_bid + tick
                can_improve = inside < best_ask
            else:
                px = best_ask + depth * tick
                inside = best_ask - tick
                can_improve = inside > best_bid
            if px <= 0:  # below the lowest price (a cheap coin's few bids)
                continue
            if roll < 0.15 and can_improve:
                px = inside
                qty = self._size(book, px)
            elif roll < 0.40 and px in levels and len(levels) > 5:
                qty = 0
            else:
                qty = self._size(book, px)
            change = Change(side, px, qty)
            book.apply([change])
            changes.append(change)
        return changes

    # --- streaming ------------------------------------------------------------------------
    def subscribe(self, conn: SimConnection, symbol: str) -> bool:
        """Start streaming a book to ``conn`` (sends the venue's snapshot frames first)."""
        book = self.books.get((conn.venue, symbol))
        if book is None:
            return False
        conn.subscriptions.add(symbol)
        protocol = self.protocols[conn.venue]
        for text in protocol.snapshot_frames(conn, book):
            self._send(conn, text)
        return True

    def unsubscribe(self, conn: SimConnection, symbol: str) -> None:
        conn.subscriptions.discard(symbol)

    def update(self, venue: Venue, symbol: str, changes: list[Change]) -> None:
        """Apply scripted changes to a book and send them to every subscriber."""
        book = self.books[(venue, symbol)]
        book.apply(changes)
        self._broadcast(book, changes)

    def step(self, venue: Venue | None = None, n_changes: int = 3) -> int:
        """One random update of every book (of one venue, or all). Returns updates made."""
        made = 0
        for (v, _), book in self.books.items():
            if venue is not None and v != venue:
                continue
            changes = self.random_changes(book, n_changes)
            if changes:
                self._broadcast(book, changes)
                made += 1
        return made

    async def run_market(self, updates_per_s: float, n_changes: int = 3) -> None:
        """Random updates at ``updates_per_s`` over all books, until cancelled."""
        loop = asyncio.get_running_loop()
        books = list(self.books.values())
        if not books:
            return
        interval = 1.0 / updates_per_s
        due = loop.time()
        i = 0
        while True:
            now = loop.time()
            if now - due > MAX_BEHIND_S:
                # starved of CPU for a while: carry on from a second ago rather than send
                # the whole backlog in one burst (which kept the loop from its sockets)
                due = now - MAX_BEHIND_S
            while due <= now:
                book = books[i % len(books)]
                i += 1
                changes = self.random_changes(book, n_changes)
                if changes:
                    self._broadcast(book, changes)
                due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))

    def _broadcast(self, book: SimBook, changes: list[Change]) -> None:
        book.prev_seq = book.seq
        book.seq += 1
        if book.mark_px and changes:
            best_bid, best_ask = book.best_bid(), book.best_ask()
            if best_bid is not None and best_ask is not None:
                book.mark_px = (best_bid + best_ask) // 2
        lose = (book.venue, book.symbol) in self._lose
        self._lose.discard((book.venue, book.symbol))
        protocol = self.protocols[book.venue]
        for conn in self.connections:
            if conn.closed or conn.venue != book.venue or book.symbol not in conn.subscriptions:
                continue
            frames = protocol.delta_frames(conn, book, changes)
            if lose:  # the venue numbered the frames, and they never arrived
                continue
            for text in frames:
                self._send(conn, text)
        book.corrupt_checksum = False
        self.updates_sent += 1

    def _send(self, conn: SimConnection, text: str) -> None:
        if conn.venue in self._truncate:
            self._truncate.discard(conn.venue)
            text = text[: max(1, len(text) // 2)]
        conn.send(text)

    # --- faults -----------------------------------------------------------------------------
    async def drop(
        self, venue: Venue | None = None, code: int | None = None, reason: str = ""
    ) -> None:
        """Close every connection of a venue (all venues if None): abort the TCP connection,
        or send a close frame with ``code``."""
        for conn in self.open_connections(venue):
            if code is None:
                if conn.transport is not None:
                    conn.transport.abort()  # type: ignore[attr-defined]
            else:
                await conn.websocket.close(code=code, message=reason.encode())

    def close_connection(self, conn: SimConnection, code: int = 1000, reason: str = "") -> None:
        """Close one connection the way the venue would (for protocol code, which is sync)."""

        async def close() -> None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.websocket.close(code=code, message=reason.encode())

        self._spawn(close())

    def close_later(
        self, connections: Iterable[SimConnection], delay_s: float, code: int, reason: str = ""
    ) -> None:
        """Close these connections (those still open) ``delay_s`` from now."""
        targets = list(connections)

        async def close() -> None:
            await asyncio.sleep(delay_s)
            for conn in targets:
                if not conn.closed:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await conn.websocket.close(code=code, message=reason.encode())

        self._spawn(close())

    def set_silent(self, venue: Venue, silent: bool = True) -> None:
        """Keep the venue's sockets open but send nothing (no data, pings, heartbeats)."""
        if silent:
            self.silent.add(venue)
        else:
            self.silent.discard(venue)

    def send_garbage(self, venue: Venue, text: str = '{"this is": not json') -> None:
        for conn in self.open_connections(venue):
            conn.send(text)

    def truncate_next(self, venue: Venue) -> None:
        self._truncate.add(venue)

    def lose_next(self, venue: Venue, symbol: str) -> None:
        self._lose.add((venue, symbol))

    def corrupt_checksum(self, venue: Venue, symbol: str) -> None:
        self.books[(venue, symbol)].corrupt_checksum = True

    def fail_next(
        self,
        venue: Venue,
        status: int,
        *,
        retry_after_s: float | None = None,
        path: str | None = None,
        delay_s: float = 0.0,
        count: int = 1,
    ) -> None:
        faults = self._faults.setdefault(venue, deque())
        for _ in range(count):
            faults.append(RestFault(status, retry_after_s, path, delay_s))

    # --- state -------------------------------------------------------------------------------
    def open_connections(self, venue: Venue | None = None) -> list[SimConnection]:
        return [c for c in self.connections if not c.closed and (venue is None or c.venue == venue)]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked whenever the sim's state changes)."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    def spawn(self, coroutine: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        """Run a protocol's background work (a recording's replay); cancelled on close."""
        return self._spawn(coroutine)

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- HTTP ---------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        head, _, rest = request.path.lstrip("/").partition("/")
        try:
            venue = Venue(head)
        except ValueError:
            return web.Response(status=404, text=f"no venue {head!r} here")
        if venue not in self.protocols:
            return web.Response(status=404, text=f"venue {head} not simulated")
        path = "/" + rest
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._serve_websocket(request, venue, path)
        return await self._serve_rest(request, venue, path)

    async def _serve_rest(self, request: web.Request, venue: Venue, path: str) -> web.Response:
        query = dict(request.query)
        body = await request.text() if request.can_read_body else ""
        loop = asyncio.get_running_loop()
        fault = self._take_fault(venue, path)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = str(fault.retry_after_s)
            self.requests.append(
                RequestLogEntry(venue, request.method, path, query, fault.status, loop.time())
            )
            self._notify()
            return web.Response(status=fault.status, text=fault.body, headers=headers)
        answer = self.protocols[venue].rest(
            self, RestRequest(venue, request.method, path, query, body)
        )
        status, text = answer if answer is not None else (404, '{"error":"not found"}')
        self.requests.append(
            RequestLogEntry(venue, request.method, path, query, status, loop.time())
        )
        self._notify()
        return web.Response(status=status, text=text, content_type="application/json")

    def _take_fault(self, venue: Venue, path: str) -> RestFault | None:
        faults = self._faults.get(venue)
        if not faults:
            return None
        for fault in list(faults):
            if fault.path is None or path.startswith(fault.path):
                faults.remove(fault)
                return fault
        return None

    async def _serve_websocket(
        self, request: web.Request, venue: Venue, path: str
    ) -> web.WebSocketResponse:
        protocol = self.protocols[venue]
        websocket = web.WebSocketResponse(autoping=False, max_msg_size=64 * 1024 * 1024)
        loop = asyncio.get_running_loop()
        conn = SimConnection(
            id=len(self.connections),
            venue=venue,
            path=path,
            query=dict(request.query),
            websocket=websocket,
            transport=request.transport,
            opened_at=loop.time(),
            last_client_frame=loop.time(),
        )
        # registered before the handshake completes: a client that sees itself connected
        # always finds its connection here
        self.connections.append(conn)
        tasks: list[asyncio.Task[object]] = []
        try:
            await websocket.prepare(request)
            protocol.on_open(self, conn)
            self._notify()
            tasks.append(self._spawn(self._write(conn)))
            tasks.append(self._spawn(self._periodic(conn, protocol)))
            await self._read(conn, protocol)
        finally:
            conn.closed = True
            for task in tasks:
                task.cancel()
            self._notify()
        return websocket

    async def _read(self, conn: SimConnection, protocol: VenueProtocol) -> None:
        websocket = conn.websocket
        loop = asyncio.get_running_loop()
        async for message in websocket:
            conn.last_client_frame = loop.time()
            if message.type == WSMsgType.TEXT:
                conn.received.append(message.data)
                conn.received_at.append(loop.time())
                protocol.on_text(self, conn, message.data)
            elif message.type == WSMsgType.PING:
                if conn.venue not in self.silent:
                    await websocket.pong(message.data)
            elif message.type == WSMsgType.PONG:
                conn.pongs += 1
            self._notify()

    async def _write(self, conn: SimConnection) -> None:
        while True:
            text = await conn.queue.get()
            if conn.venue in self.silent:
                continue
            try:
                await conn.websocket.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            conn.sent += 1
            if conn.sent % 256 == 0:
                self._notify()

    async def _periodic(self, conn: SimConnection, protocol: VenueProtocol) -> None:
        """Server pings, heartbeats, mark frames and the idle-client timeout of one connection."""
        loop = asyncio.get_running_loop()
        tick = min(self.heartbeat_s, self.mark_s, protocol.server_ping_s or 1e9, 1.0)
        next_ping = loop.time() + (protocol.server_ping_s or 1e9)
        next_heartbeat = loop.time() + self.heartbeat_s
        next_mark = loop.time() + self.mark_s
        while not conn.closed:
            await asyncio.sleep(tick)
            now = loop.time()
            idle = protocol.client_idle_timeout_s
            if idle is not None and now - conn.last_client_frame > idle:
                await conn.websocket.close(code=4000, message=b"idle client")
                return
            if conn.venue in self.silent:
                continue
            if now >= next_ping:
                next_ping = now + (protocol.server_ping_s or 1e9)
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.websocket.ping(b"liqmon-sim")
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat_s
                for text in protocol.heartbeat_frames(conn):
                    conn.send(text)
            if now >= next_mark:
                next_mark = now + self.mark_s
                for symbol in sorted(conn.subscriptions):
                    book = self.books.get((conn.venue, symbol))
                    if book is not None and book.derivative:
                        for text in protocol.mark_frames(conn, book):
                            conn.send(text)


class ProtocolBase:
    """Defaults for the optional parts of a protocol (no heartbeats, marks, pings, REST)."""

    venue: Venue
    server_ping_s: float | None = None
    client_idle_timeout_s: float | None = None

    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        return None

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        return []

    def heartbeat_frames(self, conn: SimConnection) -> list[str]:
        return []

    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        return []

    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        return None
