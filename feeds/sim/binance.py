"""A small local Binance (spot and USD-M) on 127.0.0.1, for tests and demos.

Websocket: ``.../stream?streams=a/b`` (combined envelope ``{"stream":..,"data":..}``),
``.../ws`` and ``.../ws/<stream>`` (raw payloads), under any path prefix (so the USD-M
``/public`` and ``/market`` hosts map onto it too). It answers
``{"method":"SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS","params":[..],"id":N}`` like
Binance and pings every ``ping_interval_s``. Frames come from a script: the test pushes
them (:meth:`BinanceSim.push`), or each connection replays the ``ws`` records of a
recording for the streams it subscribed to.

REST: ``GET /api/v3/depth``, ``/api/v3/exchangeInfo``, ``/fapi/v1/depth``,
``/fapi/v1/exchangeInfo``, answered from :meth:`set_rest` or a recording's ``http``
records (depth is cut to the requested ``limit``).

Faults: :meth:`drop` (abort, or close with a code such as 1008), :attr:`silent` (send
nothing, not even pings), :meth:`fail_next` (REST 429 + Retry-After, 418, 503, delays).
Everything the clients did is logged (:attr:`connections`, :attr:`requests`), and
:meth:`wait_for` waits for a condition on that state without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from feeds.recording import RecordKind, iter_recording
from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook
from feeds.sim.base import SimConnection as ExchangeConnection
from monitor.domain import Venue

DEFAULT_PING_INTERVAL_S = 20.0  # Binance spot pings every 20 s


@dataclass(frozen=True, slots=True)
class ScriptedFrame:
    """One frame to replay: its stream, the combined envelope, and the raw payload."""

    stream: str
    envelope: str
    payload: str
    ts: float = 0.0

    @classmethod
    def from_envelope(cls, text: str, ts: float = 0.0) -> ScriptedFrame:
        message = json.loads(text)
        stream = message["stream"]
        prefix = f'{{"stream":"{stream}","data":'
        if text.startswith(prefix) and text.endswith("}"):
            payload = text[len(prefix) : -1]  # keeps the payload byte-exact
        else:
            payload = _compact(message["data"])
        return cls(stream=stream, envelope=text, payload=payload, ts=ts)

    @classmethod
    def from_payload(cls, stream: str, payload: str | dict[str, Any]) -> ScriptedFrame:
        if not isinstance(payload, str):
            payload = _compact(payload)
        envelope = f'{{"stream":"{stream}","data":{payload}}}'
        return cls(stream=stream, envelope=envelope, payload=payload)


@dataclass(frozen=True, slots=True)
class RestFault:
    """Answer the next matching REST request with ``status`` (after ``delay_s``)."""

    status: int
    retry_after_s: float | None = None
    path: str | None = None  # None: any path
    delay_s: float = 0.0
    body: str = '{"code":-1003,"msg":"Too many requests."}'


@dataclass(frozen=True, slots=True)
class RequestLogEntry:
    path: str
    query: dict[str, str]
    status: int


@dataclass(eq=False)
class SimConnection:
    """One websocket client as the server sees it."""

    id: int
    path: str
    combined: bool
    streams: list[str]
    websocket: web.WebSocketResponse
    transport: asyncio.Transport | None
    received: list[str] = field(default_factory=list)
    pongs: int = 0
    sent: int = 0
    closed: bool = False
    replay_done: bool = False
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def subscribe_requests(self) -> list[dict[str, Any]]:
        """The JSON control messages received (SUBSCRIBE and friends)."""
        messages = []
        for text in self.received:
            with contextlib.suppress(ValueError):
                message = json.loads(text)
                if isinstance(message, dict) and "method" in message:
                    messages.append(message)
        return messages


class BinanceSim:
    """A local Binance. Use as ``async with BinanceSim(...) as sim``; URLs from the properties."""

    def __init__(
        self,
        *,
        frames: Iterable[ScriptedFrame] = (),
        rest_answers: dict[tuple[str, str | None], str] | None = None,
        ping_interval_s: float | None = DEFAULT_PING_INTERVAL_S,
        replay_speed: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.frames = list(frames)
        self.rest_answers: dict[tuple[str, str | None], str] = dict(rest_answers or {})
        self.ping_interval_s = ping_interval_s
        self.replay_speed = replay_speed
        self.silent = False
        self.connections: list[SimConnection] = []
        self.requests: list[RequestLogEntry] = []
        self._faults: deque[RestFault] = deque()
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_recording(cls, paths: str | Path | Iterable[str | Path], **options: Any) -> BinanceSim:
        """A sim replaying the ``ws`` records and answering REST from the ``http`` ones."""
        frames: list[ScriptedFrame] = []
        answers: dict[tuple[str, str | None], str] = {}
        for record in iter_recording(paths):
            if record.kind == RecordKind.WS:
                frames.append(ScriptedFrame.from_envelope(record.data, record.ts))
            else:
                answers[_rest_key_of_url(record.url)] = record.data
        return cls(frames=frames, rest_answers=answers, **options)

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        for connection in self.connections:
            if not connection.closed and connection.transport is not None:
                connection.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BinanceSim:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self._port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    # scripting -------------------------------------------------------------------------

    def push(self, stream: str, payload: str | dict[str, Any]) -> int:
        """Send one frame to every open connection subscribed to ``stream``; returns how many."""
        frame = ScriptedFrame.from_payload(stream, payload)
        delivered = 0
        for connection in self.open_connections:
            delivered += self._offer(connection, frame)
        return delivered

    def push_raw(self, text: str) -> None:
        """Send ``text`` as-is to every open connection (malformed frames, events)."""
        if self.silent:
            return
        for connection in self.open_connections:
            connection.queue.put_nowait(text)

    async def drop(self, code: int | None = None, reason: str = "") -> None:
        """Close every open connection: abort the TCP stream, or send close ``code``."""
        for connection in self.open_connections:
            if code is not None and connection.websocket.prepared:
                await connection.websocket.close(code=code, message=reason.encode())
            elif connection.transport is not None:
                connection.transport.abort()

    def fail_next(
        self,
        status: int,
        *,
        retry_after_s: float | None = None,
        count: int = 1,
        path: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        for _ in range(count):
            self._faults.append(RestFault(status, retry_after_s, path, delay_s))

    def set_rest(self, path: str, symbol: str | None, text: str | dict[str, Any]) -> None:
        """Answer ``GET path?symbol=..`` (``symbol=None``: any or no symbol) with ``text``."""
        if not isinstance(text, str):
            text = _compact(text)
        self.rest_answers[(path, symbol)] = text

    @property
    def open_connections(self) -> list[SimConnection]:
        return [connection for connection in self.connections if not connection.closed]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked after every change); TimeoutError if not."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                changed = self._changed
                await changed.wait()

    # internals -------------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _offer(self, connection: SimConnection, frame: ScriptedFrame) -> bool:
        if self.silent or connection.closed or frame.stream not in connection.streams:
            return False
        connection.queue.put_nowait(frame.envelope if connection.combined else frame.payload)
        return True

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.endswith(("/stream", "/ws")) or "/ws/" in path:
            return await self._serve_websocket(request)
        return await self._serve_rest(request)

    async def _serve_websocket(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        combined = path.endswith("/stream")
        streams: list[str] = []
        if combined and request.query.get("streams"):
            streams = request.query["streams"].split("/")
        elif "/ws/" in path:
            streams = [path.split("/ws/", 1)[1]]
        websocket = web.WebSocketResponse(autoping=False, max_msg_size=16 * 1024 * 1024)
        connection = SimConnection(
            id=len(self.connections),
            path=path,
            combined=combined,
            streams=streams,
            websocket=websocket,
            transport=request.transport,
        )
        # registered before the handshake completes, so that a client that sees itself
        # connected always finds its connection here (frames pushed meanwhile are queued)
        self.connections.append(connection)
        tasks: list[asyncio.Task[None]] = []
        try:
            await websocket.prepare(request)
            self._notify()
            tasks.append(self._spawn(self._write(connection)))
            if self.ping_interval_s is not None:
                tasks.append(self._spawn(self._ping(connection, self.ping_interval_s)))
            if self.frames:
                tasks.append(self._spawn(self._replay(connection)))
            await self._read(connection)
        finally:
            connection.closed = True
            for task in tasks:
                task.cancel()
            self._notify()
        return websocket

    async def _read(self, connection: SimConnection) -> None:
        websocket = connection.websocket
        async for message in websocket:
            if message.type == WSMsgType.TEXT:
                connection.received.append(message.data)
                self._control(connection, message.data)
            elif message.type == WSMsgType.PING:
                await websocket.pong(message.data)
            elif message.type == WSMsgType.PONG:
                connection.pongs += 1
            self._notify()

    def _control(self, connection: SimConnection, text: str) -> None:
        try:
            message = json.loads(text)
            method = message["method"]
            params = message.get("params") or []
            request_id = message.get("id")
        except (ValueError, KeyError, TypeError, AttributeError):
            connection.queue.put_nowait('{"error":{"code":3,"msg":"Invalid JSON"},"id":null}')
            return
        result: Any = None
        if method == "SUBSCRIBE":
            connection.streams.extend(s for s in params if s not in connection.streams)
        elif method == "UNSUBSCRIBE":
            connection.streams[:] = [s for s in connection.streams if s not in params]
        elif method == "LIST_SUBSCRIPTIONS":
            result = list(connection.streams)
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: {method}"}, "id": request_id}
            connection.queue.put_nowait(_compact(reply))
            return
        connection.queue.put_nowait(_compact({"result": result, "id": request_id}))

    async def _write(self, connection: SimConnection) -> None:
        while True:
            text = await connection.queue.get()
            if self.silent:
                continue
            try:
                await connection.websocket.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            connection.sent += 1
            self._notify()

    async def _ping(self, connection: SimConnection, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self.silent:
                continue
            try:
                await connection.websocket.ping(b"liqmon-sim")
            except (ConnectionError, RuntimeError):
                return

    async def _replay(self, connection: SimConnection) -> None:
        await self.wait_for(lambda: bool(connection.streams), timeout_s=3600.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_ts = self.frames[0].ts
        for index, frame in enumerate(self.frames):
            if self.replay_speed is not None:
                due = started + (frame.ts - first_ts) / self.replay_speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            elif index % 64 == 0:
                await asyncio.sleep(0)
            self._offer(connection, frame)
        connection.replay_done = True
        self._notify()

    async def _serve_rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = dict(request.query)
        response = await self._rest_response(path, query)
        self.requests.append(RequestLogEntry(path, query, response.status))
        self._notify()
        return response

    async def _rest_response(self, path: str, query: dict[str, str]) -> web.Response:
        fault = self._take_fault(path)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = f"{fault.retry_after_s:g}"
            return web.Response(
                status=fault.status,
                text=fault.body,
                headers=headers,
                content_type="application/json",
            )
        symbol = query.get("symbol")
        text = self.rest_answers.get((path, symbol)) or self.rest_answers.get((path, None))
        if text is None:
            if path.endswith(("/depth", "/exchangeInfo")):
                body = '{"code":-1121,"msg":"Invalid symbol."}'
                return web.Response(status=400, text=body, content_type="application/json")
            return web.Response(status=404, text="not found")
        if path.endswith("/depth") and "limit" in query:
            text = _cut_depth(text, int(query["limit"]))
        return web.Response(text=text, content_type="application/json")

    def _take_fault(self, path: str) -> RestFault | None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                self._faults.remove(fault)
                return fault
        return None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _rest_key_of_url(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    symbol = None
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name == "symbol":
            symbol = value
    return parts.path, symbol


def _cut_depth(text: str, limit: int) -> str:
    """The snapshot cut to ``limit`` levels per side (unchanged text when it already fits)."""
    snapshot = json.loads(text)
    if len(snapshot.get("bids", ())) <= limit and len(snapshot.get("asks", ())) <= limit:
        return text
    snapshot["bids"] = snapshot["bids"][:limit]
    snapshot["asks"] = snapshot["asks"][:limit]
    return _compact(snapshot)


# --- the Binance protocol of the shared local exchange (feeds.sim.base) ----------------------


class BinanceProtocol(ProtocolBase):
    """Binance spot (``/api/v3``) or USD-M (``/fapi/v1``) inside :class:`ExchangeSim`.

    Streams come in the URL (``.../stream?streams=btcusdt@depth@100ms/...``, combined
    envelopes, under any prefix such as USD-M's ``/public`` and ``/market``) or by
    ``SUBSCRIBE``. Snapshots are REST only (``lastUpdateId`` = the book's last update id);
    each update is one ``depthUpdate`` with ``U = u = `` its id (USD-M adds ``pu``).
    """

    server_ping_s: float | None = DEFAULT_PING_INTERVAL_S

    def __init__(self, venue: Venue = Venue.BINANCE) -> None:
        self.venue = venue
        self.futures = venue == Venue.BINANCE_FUTURES  # the protocol object is per market
        self.api = "/fapi/v1" if self.futures else "/api/v3"

    # websocket -------------------------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: ExchangeConnection) -> None:
        conn.state["combined"] = conn.path.endswith("/stream")
        conn.state["depth"] = set()
        conn.state["mark"] = set()
        streams = conn.query.get("streams", "")
        if "/ws/" in conn.path:
            streams = conn.path.split("/ws/", 1)[1]
        self._subscribe(sim, conn, [s for s in streams.split("/") if s])

    def _subscribe(self, sim: ExchangeSim, conn: ExchangeConnection, streams: list[str]) -> None:
        for stream in streams:
            symbol, _, channel = stream.partition("@")
            symbol = symbol.upper()
            if (self.venue, symbol) not in sim.books:
                continue  # Binance accepts unknown streams and sends nothing
            if channel.startswith("depth"):
                conn.state["depth"].add(symbol)
            elif channel.startswith("markPrice") and self.futures:
                conn.state["mark"].add(symbol)
            sim.subscribe(conn, symbol)

    def on_text(self, sim: ExchangeSim, conn: ExchangeConnection, text: str) -> None:
        try:
            message = json.loads(text)
            method = message["method"]
            params = list(message.get("params") or [])
            request_id = message.get("id")
        except (ValueError, KeyError, TypeError, AttributeError):
            conn.send('{"error":{"code":3,"msg":"Invalid JSON"},"id":null}')
            return
        if method == "SUBSCRIBE":
            self._subscribe(sim, conn, params)
            conn.send(_compact({"result": None, "id": request_id}))
        elif method == "UNSUBSCRIBE":
            for stream in params:
                symbol = stream.partition("@")[0].upper()
                conn.state["depth"].discard(symbol)
                conn.state["mark"].discard(symbol)
                if symbol not in conn.state["depth"] | conn.state["mark"]:
                    sim.unsubscribe(conn, symbol)
            conn.send(_compact({"result": None, "id": request_id}))
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: {method}"}, "id": request_id}
            conn.send(_compact(reply))

    def _wrap(self, conn: ExchangeConnection, stream: str, payload: str) -> str:
        if conn.state.get("combined"):
            return f'{{"stream":"{stream}","data":{payload}}}'
        return payload

    def delta_frames(
        self, conn: ExchangeConnection, book: SimBook, changes: list[Change]
    ) -> list[str]:
        if book.symbol not in conn.state.get("depth", ()):
            return []
        bids = [
            [book.px(c.px, fixed=True), book.qty(c.qty, fixed=True)]
            for c in changes
            if c.side == "bid"
        ]
        asks = [
            [book.px(c.px, fixed=True), book.qty(c.qty, fixed=True)]
            for c in changes
            if c.side == "ask"
        ]
        ts = book.ts_ms
        payload: dict[str, Any] = {"e": "depthUpdate", "E": ts}
        if self.futures:
            payload["T"] = ts
        payload |= {"s": book.symbol, "U": book.prev_seq + 1, "u": book.seq}
        if self.futures:
            payload["pu"] = book.prev_seq
        payload |= {"b": bids, "a": asks}
        stream = f"{book.symbol.lower()}@depth@100ms"
        return [self._wrap(conn, stream, _compact(payload))]

    def mark_frames(self, conn: ExchangeConnection, book: SimBook) -> list[str]:
        if book.symbol not in conn.state.get("mark", ()):
            return []
        ts = book.ts_ms
        mark = book.px(book.mark_px, fixed=True)
        payload = {
            "e": "markPriceUpdate",
            "E": ts,
            "s": book.symbol,
            "p": mark,
            "i": mark,
            "P": mark,
            "r": f"{book.funding_rate:.8f}",
            "T": (ts // 28_800_000 + 1) * 28_800_000,
        }
        return [self._wrap(conn, f"{book.symbol.lower()}@markPrice@1s", _compact(payload))]

    # REST ------------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path == f"{self.api}/depth":
            book = sim.books.get((self.venue, request.query.get("symbol", "")))
            if book is None:
                return 400, '{"code":-1121,"msg":"Invalid symbol."}'
            limit = int(request.query.get("limit", "100") or 100)
            answer: dict[str, Any] = {"lastUpdateId": book.seq}
            if self.futures:
                answer |= {"E": book.ts_ms, "T": book.ts_ms}
            answer["bids"] = [
                [book.px(p, fixed=True), book.qty(q, fixed=True)] for p, q in book.top_bids(limit)
            ]
            answer["asks"] = [
                [book.px(p, fixed=True), book.qty(q, fixed=True)] for p, q in book.top_asks(limit)
            ]
            return 200, _compact(answer)
        if request.path == f"{self.api}/exchangeInfo":
            return 200, _compact({"symbols": [self._symbol_info(b) for b in self._books(sim)]})
        return None

    def _books(self, sim: ExchangeSim) -> list[SimBook]:
        return [b for (v, _), b in sim.books.items() if v == self.venue]

    def _symbol_info(self, book: SimBook) -> dict[str, Any]:
        instrument = book.extra.get("instrument")
        if instrument is not None:
            base, quote = instrument.base, instrument.quote
        else:  # a book made without metadata: guess a 4-letter quote (USDT, FDUSD aside)
            base, quote = book.symbol[:-4], book.symbol[-4:]
        info: dict[str, Any] = {
            "symbol": book.symbol,
            "status": "TRADING",
            "baseAsset": base,
            "quoteAsset": quote,
            "quoteAssetPrecision": book.price_decimals,
            "pricePrecision": book.price_decimals,
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": book.px(book.tick_units, fixed=True)},
                {"filterType": "LOT_SIZE", "stepSize": book.qty(1, fixed=True)},
            ],
        }
        if self.futures:
            info["contractType"] = "PERPETUAL"
        return info
