"""One websocket connection, kept alive forever: the only reconnect policy in liqmon.

A :class:`WsSession` owns one URL and the subscribe frames for it. It connects (with a
connect timeout), sends the stored subscribe frames after every (re)connect, reads frames
(a watchdog ends a connection silent for the receive timeout), stamps each with
``time.time_ns()`` and hands it to ``on_frame``.

The client is aiohttp's (``ws_connect``): bench/blast.py measured it at about a quarter of
websockets' CPU per frame in the same run. Every frame already parsed from one socket read
is handed over in the same event-loop turn (``receive()`` does not suspend while frames are
buffered), and ``on_batch()`` is called right after the last of them (the next ``receive()``
would wait): the owner applies the whole read as one batch in the same turn, with no
event-loop turn of its own per read.
Permessage-deflate is off unless the venue asks for it (``compress``): no venue liqmon
supports requires it, and inflating costs more than the frames' bytes on the wire.
When the connection ends for any reason it waits a capped exponential backoff with full
jitter and connects again; it never gives up on network errors. Venue differences come in
as data (URL, frames, ping interval), never as ``if venue == ...`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence, Sized
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
import structlog
from aiohttp import ClientWebSocketResponse as _ClientWebSocketResponse
from aiohttp import WSMsgType

from feeds.coalesce import Coalesced, ReadCoalescer
from feeds.net_errors import describe_error

# logger_name: rendered as `logger` by monitor.log (feeds do not import it)
_log = structlog.get_logger(logger_name=__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
POLICY_VIOLATION_BACKOFF_S = 60.0
"""Least wait after a 1008 close (Binance: "too many requests"): reconnecting sooner
only deepens the penalty."""

CLOSE_TIMEOUT_S = 5.0
"""How long to wait for the peer's close frame: a silent peer must not hold a reconnect."""

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
POLICY_VIOLATION = 1008

Sleep = Callable[[float], Awaitable[None]]
FrameHandler = Callable[[str | bytes, int], None]
BatchHandler = Callable[[], None]
ClientWebSocketResponse = _ClientWebSocketResponse[bool]
"""aiohttp's websocket, text frames as str or bytes (``text_as_bytes``)."""


class DisconnectReason(StrEnum):
    CLOSED = "closed"  # the server (or the network) closed the connection
    STALE = "stale"  # nothing received for receive_timeout_s: we closed it
    ERROR = "error"  # an unexpected error while connected
    SEQUENCE = "sequence"  # the connection's message counter jumped: a message was lost
    RECONNECT = "reconnect"  # asked to reconnect (venue notice, control budget spent)
    ROTATED = "rotated"  # planned: a fresh connection took over before the venue's lifetime


SPACING_MARGIN = 1.1


class ControlBudget:
    """Spacing of the frames a client sends on one connection (subscribe, unsubscribe,
    pings): at most ``per_s`` per second, and at most ``per_hour`` per hour (0: no limit).
    Venues close or ban connections that send faster (Binance: 5/s then 1008)."""

    __slots__ = ("_clock", "_hour", "_lock", "_next_s", "interval_s", "per_hour")

    def __init__(
        self, per_s: float, per_hour: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # 10% under the venue's rate: "n per second" is counted by the venue in a sliding
        # window on its receive times, and frames spaced exactly 1/n apart put n + 1 of them
        # within one second as soon as the network delays the first one a little
        self.interval_s = SPACING_MARGIN / per_s if per_s > 0 else 0.0
        self.per_hour = per_hour
        self._clock = clock
        self._next_s = 0.0
        self._hour: deque[float] = deque()
        self._lock = asyncio.Lock()

    def hour_exhausted(self) -> bool:
        if not self.per_hour:
            return False
        now = self._clock()
        while self._hour and now - self._hour[0] >= 3600.0:
            self._hour.popleft()
        return len(self._hour) >= self.per_hour

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait before sending."""
        now = self._clock()
        at = max(now, self._next_s)
        self._next_s = at + self.interval_s
        if self.per_hour:
            self._hour.append(at)
        return at - now

    async def take(self) -> None:
        """Wait for the next slot and take it (callers in turn). The slot after it starts
        one interval after this returns: a wait that overslept (busy event loop) must not
        leave the next frame less than an interval behind this one."""
        async with self._lock:
            wait_s = self.reserve()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._next_s = max(self._next_s, self._clock() + self.interval_s)


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """Timeouts and backoff of a session (from ``Settings.connection``)."""

    connect_timeout_s: float = 10.0
    receive_timeout_s: float = 30.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_after_s: float = 60.0
    policy_violation_backoff_s: float = POLICY_VIOLATION_BACKOFF_S

    @classmethod
    def from_settings(cls, connection: Any) -> ConnectionPolicy:
        """Build from any object with the ``Settings.connection`` attribute names."""
        return cls(
            connect_timeout_s=connection.connect_timeout_s,
            receive_timeout_s=connection.receive_timeout_s,
            backoff_initial_s=connection.backoff_initial_s,
            backoff_max_s=connection.backoff_max_s,
            healthy_after_s=connection.healthy_after_s,
            policy_violation_backoff_s=connection.policy_violation_backoff_s,
        )


class Backoff:
    """Capped exponential backoff with full jitter: ``uniform(0, min(max, initial * 2**n))``."""

    __slots__ = ("attempt", "initial_s", "max_s", "rng")

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.rng = rng
        self.attempt = 0

    def cap_s(self) -> float:
        # 2**attempt overflows float past ~1000 attempts; the cap is reached long before
        return min(self.max_s, self.initial_s * 2.0 ** min(self.attempt, 64))

    def next_delay_s(self) -> float:
        delay = self.rng.uniform(0.0, self.cap_s())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class FeedHealth:
    """Connection counters of one venue (shared by all sessions of that venue)."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    errors: int = 0
    stale: int = 0
    sequence_gaps: int = 0  # per-connection counters that jumped (Coinbase sequence_num)
    rotations: int = 0  # planned reconnects before the venue's connection lifetime
    reconnect_requests: int = 0  # venue notices and spent control budgets
    control_frames: int = 0  # subscribe/unsubscribe/ping frames sent
    frames: int = 0
    open_connections: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    last_error: str | None = None
    last_frame_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["close_codes"] = {str(k): v for k, v in self.close_codes.items()}
        return out


class WsSession:
    """Keeps one websocket connection open forever; cancel :meth:`run` (or :meth:`stop`).

    ``on_frame(data, recv_ns)`` gets every data frame (text as ``str``, binary as
    ``bytes``) with ``recv_ns = time.time_ns()`` taken as it was read. After each connect
    the session sends ``open_frames`` then ``subscribe_frames`` (spaced by the
    ``control`` budget) and calls ``on_connect()``; ``on_disconnect(reason)`` runs after
    each connection ends. Keepalive: ``ping_interval_s`` sends websocket pings (None: the
    server pings and websockets answers); ``keepalive_frame`` is sent whenever the client
    has sent nothing for ``keepalive_s`` (OKX ``ping``). ``reply_to(data)`` may return a
    frame to send back at once (Deribit ``test_request``). ``sequence()`` makes a fresh
    per-connection counter check (Coinbase ``sequence_num``): a jump ends the connection.
    ``connect_gate()`` is awaited before each connect (a venue's new-connections rate).
    ``notice(data)`` returns why when a frame announces that the venue will soon close the
    connection (OKX 64008, service upgrade): the session calls ``on_notice(why)`` once for
    that connection (its owner opens a replacement and then stops this session), or,
    without ``on_notice``, reconnects at once; either way before the venue closes it (the
    frame is still handed to ``on_frame``).
    Venue differences come in as these values, never as ``if venue == ...`` here.
    ``sleep``, ``rng`` and ``clock`` are injectable so tests never wait for real backoff.
    ``text_as_bytes``: hand text frames over as their UTF-8 bytes, undecoded (the batch
    scanners read bytes; a ``str`` would be decoded here only to be encoded again there).
    ``compress``: offer permessage-deflate (only where a venue requires it).
    ``on_batch()`` is called once the frames of a socket read have all been handed to
    ``on_frame``: when aiohttp's queue of parsed frames is empty (it holds every frame of
    the read before the read loop runs), else at the end of the event-loop turn.
    """

    def __init__(
        self,
        url: str,
        *,
        venue: str,
        on_frame: FrameHandler,
        on_batch: BatchHandler | None = None,
        subscribe_frames: Sequence[str] = (),
        open_frames: Sequence[str] = (),
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[DisconnectReason], None] | None = None,
        policy: ConnectionPolicy | None = None,
        ping_interval_s: float | None = None,
        keepalive_s: float | None = None,
        keepalive_frame: str | None = None,
        reply_to: Callable[[str | bytes], str | None] | None = None,
        sequence: Callable[[], Any] | None = None,
        control: ControlBudget | None = None,
        connect_gate: Callable[[], Awaitable[None]] | None = None,
        notice: Callable[[str | bytes], str | None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        health: FeedHealth | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        text_as_bytes: bool = False,
        compress: bool = False,
        coalescer: ReadCoalescer | None = None,
    ) -> None:
        self.url = url
        self.venue = venue
        self.subscribe_frames = list(subscribe_frames)
        self.open_frames = list(open_frames)
        self.policy = policy or ConnectionPolicy()
        self.health = health if health is not None else FeedHealth()
        self.backoff = Backoff(
            self.policy.backoff_initial_s, self.policy.backoff_max_s, rng or random.Random()
        )
        self.control = control or ControlBudget(0.0)
        self.connected = asyncio.Event()
        self.connected_at: float | None = None
        self._on_frame = on_frame
        self._on_batch = on_batch
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._ping_interval_s = ping_interval_s
        self._keepalive_s = keepalive_s
        self._keepalive_frame = keepalive_frame
        self._reply_to = reply_to
        self._sequence = sequence
        self._connect_gate = connect_gate
        self._notice = notice
        self._on_notice = on_notice
        self._noticed = False  # this connection got its notice already
        self._sleep = sleep
        self._clock = clock
        self._max_frame_bytes = max_frame_bytes
        self._text_as_bytes = text_as_bytes
        self._compress = compress
        self._coalescer = coalescer
        self._coalesced: Coalesced | None = None
        self._http: aiohttp.ClientSession | None = None
        self._websocket: ClientWebSocketResponse | None = None
        self._closing: asyncio.Task[bool] | None = None
        self._last_recv_ns = 0
        self._last_sent = 0.0
        self._end_reason: DisconnectReason | None = None
        self._stopping = False
        self._log = _log.bind(venue=venue, url=url)

    async def run(self) -> None:
        """Connect, read, reconnect, forever (until cancelled or stopped)."""
        # total=None: the connect is bounded by connect_timeout_s, reads by the watchdog
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            self._http = http
            try:
                while not self._stopping:
                    delay_s = await self._connect_once()
                    if self._stopping:
                        return
                    await self._sleep(delay_s)
            finally:
                self._http = None

    async def stop(self) -> None:
        """Planned close (rotation): close the connection and let :meth:`run` return."""
        self._stopping = True
        self._end(DisconnectReason.ROTATED)

    def request_reconnect(self, why: str) -> None:
        """Close the current connection and connect again (venue notice, budget spent)."""
        self.health.reconnect_requests += 1
        self._log.info("feed.reconnect_requested", why=why)
        self._end(DisconnectReason.RECONNECT)

    def _act_on_notice(self, why: str) -> None:
        if self._on_notice is None:
            self.request_reconnect(why)
            return
        self.health.reconnect_requests += 1
        self._log.info("feed.reconnect_requested", why=why, replacement=True)
        try:
            self._on_notice(why)
        except Exception as error:  # a hook bug must not leave the connection to be cut
            self.health.errors += 1
            self._log.exception("feed.notice_hook_failed", error=repr(error))
            self._end(DisconnectReason.RECONNECT)

    def _end(self, reason: DisconnectReason) -> None:
        websocket = self._websocket
        if websocket is None:
            return
        self._end_reason = reason
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(websocket.close())

    async def send(self, text: str) -> bool:
        """Send one control frame within the budget. False if not connected (or the hourly
        budget is spent, which reconnects: a new connection starts a new budget)."""
        websocket = self._websocket
        if websocket is None:
            return False
        if self.control.hour_exhausted():
            self.request_reconnect("control budget spent")
            return False
        await self.control.take()
        if websocket is not self._websocket or websocket.closed:
            return False
        await websocket.send_str(text)
        self._last_sent = self._clock()
        self.health.control_frames += 1
        return True

    async def _connect_once(self) -> float:
        """One connection attempt and its lifetime; returns how long to wait before the next."""
        attempt = self.backoff.attempt
        try:
            if self._connect_gate is not None:
                await self._connect_gate()
            websocket = await asyncio.wait_for(self._open(), self.policy.connect_timeout_s)
        except Exception as error:  # any failure to connect is retried: never exit
            problem = describe_error(error, self.url, timeout_s=self.policy.connect_timeout_s)
            self.health.connect_failures += 1
            self.health.last_error = problem
            delay_s = self.backoff.next_delay_s()
            self._log.warning(
                "feed.connect_failed", error=problem, attempt=attempt, delay_s=round(delay_s, 3)
            )
            return delay_s
        try:
            return await self._serve(websocket, attempt)
        finally:
            await self._close(websocket)

    async def _open(self) -> ClientWebSocketResponse:
        assert self._http is not None, "run() owns the HTTP session"
        return await self._http.ws_connect(
            self.url,
            heartbeat=self._ping_interval_s,  # None: the server pings, aiohttp answers
            autoping=True,
            autoclose=True,
            compress=15 if self._compress else 0,
            max_msg_size=self._max_frame_bytes,
            decode_text=not self._text_as_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
        )

    async def _close(self, websocket: ClientWebSocketResponse) -> None:
        """Close the connection (a close frame, and the peer's within CLOSE_TIMEOUT_S)."""
        closing, self._closing = self._closing, None
        with contextlib.suppress(Exception):
            if closing is not None:
                await closing
            await websocket.close()

    async def _serve(self, websocket: ClientWebSocketResponse, attempt: int) -> float:
        connected_at = self._clock()
        self.connected_at = connected_at
        self.health.connects += 1
        self.health.open_connections += 1
        self._websocket = websocket
        self._end_reason = None
        self._noticed = False
        self._last_sent = connected_at
        self._last_recv_ns = time.time_ns()
        self._log.info("feed.connect", attempt=attempt, subscribe_frames=len(self.subscribe_frames))
        close_code: int | None = None
        keepalive: asyncio.Task[None] | None = None
        watchdog: asyncio.Task[None] | None = None
        if self._coalescer is not None:
            self._coalesced = self._coalescer.attach(websocket.get_extra_info("socket"))
        try:
            for frame in (*self.open_frames, *self.subscribe_frames):
                await self.send(frame)
            self.connected.set()
            if self._on_connect is not None:
                self._on_connect()
            if self._keepalive_s and self._keepalive_frame:
                keepalive = asyncio.get_running_loop().create_task(self._keepalive())
            watchdog = asyncio.get_running_loop().create_task(self._watch())
            reason, close_code, close_reason = await self._read(websocket)
            if close_code is not None:
                self.health.close_codes[close_code] += 1
            if close_code not in (None, NORMAL_CLOSURE, GOING_AWAY):
                self.health.last_error = f"close {close_code} {close_reason}"
        except Exception as error:  # task boundary: log, count, reconnect
            reason = DisconnectReason.ERROR
            self.health.errors += 1
            self.health.last_error = describe_error(error, self.url)
            self._log.exception("feed.error", error=self.health.last_error)
        finally:
            if keepalive is not None:
                keepalive.cancel()
            if watchdog is not None:
                watchdog.cancel()
            if self._coalesced is not None:
                self._coalesced.detach()
                self._coalesced = None
            self._websocket = None
            self.connected_at = None
            self.connected.clear()
            self.health.open_connections -= 1
        lived_s = self._clock() - connected_at
        self.health.disconnects += 1
        if reason == DisconnectReason.ROTATED:
            self.health.rotations += 1
        if lived_s >= self.policy.healthy_after_s or reason in (
            DisconnectReason.ROTATED,
            DisconnectReason.RECONNECT,
        ):
            self.backoff.reset()
        delay_s = self.backoff.next_delay_s()
        if close_code == POLICY_VIOLATION:
            delay_s = max(delay_s, self.policy.policy_violation_backoff_s)
        # a planned rotation is routine; every other end of a connection is worth a look
        emit = self._log.info if reason == DisconnectReason.ROTATED else self._log.warning
        emit(
            "feed.disconnect",
            reason=str(reason),
            close_code=close_code,
            lived_s=round(lived_s, 3),
            attempt=self.backoff.attempt,
            delay_s=round(delay_s, 3),
        )
        if self._on_disconnect is not None:
            try:
                self._on_disconnect(reason)
            except Exception as error:  # a hook bug must not end the reconnect loop
                self.health.errors += 1
                self._log.exception("feed.disconnect_hook_failed", error=repr(error))
        return delay_s

    async def _keepalive(self) -> None:
        assert self._keepalive_s and self._keepalive_frame
        while True:
            due = self._last_sent + self._keepalive_s
            now = self._clock()
            if now >= due:
                await self.send(self._keepalive_frame)
                continue
            await asyncio.sleep(due - now)

    async def _watch(self) -> None:
        """End the connection when nothing arrived for ``receive_timeout_s`` (a timer beside
        the read loop: the loop itself takes no timeout per frame)."""
        timeout_s = self.policy.receive_timeout_s
        while True:
            silent_s = (time.time_ns() - self._last_recv_ns) / 1e9
            if silent_s >= timeout_s:
                if self._end_reason is None:
                    self.health.stale += 1
                    self._log.warning("feed.stale", silent_s=timeout_s)
                    self._end(DisconnectReason.STALE)
                return
            await asyncio.sleep(timeout_s - silent_s)

    async def _read(
        self, websocket: ClientWebSocketResponse
    ) -> tuple[DisconnectReason, int | None, str | None]:
        """Hand every data frame to ``on_frame`` until the connection ends; returns why, and
        the peer's close code and reason if it sent a close frame."""
        checker = self._sequence() if self._sequence is not None else None
        reply_to = self._reply_to
        notice = self._notice
        on_frame = self._on_frame
        on_batch = self._on_batch
        # the frames aiohttp parsed from the socket and this loop has not taken yet: empty
        # after a frame means the read is handed over (on_batch). Without that queue (an
        # aiohttp that keeps it elsewhere), on_batch runs at the end of the turn instead.
        parsed = getattr(getattr(websocket, "_reader", None), "_buffer", None)
        if on_batch is not None and not isinstance(parsed, Sized):
            on_batch = self._batch_at_end_of_turn(on_batch)
            parsed = ()
        health = self.health
        coalesced = self._coalesced
        receive = websocket.receive
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        time_ns = time.time_ns
        while True:
            message = await receive()
            kind = message.type
            if kind is not text and kind is not binary:
                return self._ended(websocket, message)
            data = message.data
            recv_ns = time_ns()
            self._last_recv_ns = recv_ns
            health.frames += 1
            health.last_frame_ns = recv_ns
            if checker is not None and not checker.check(data):
                health.sequence_gaps += 1
                self._log.warning("feed.sequence_gap")
                return DisconnectReason.SEQUENCE, None, None
            if reply_to is not None:
                answer = reply_to(data)
                if answer is not None:
                    await self.send(answer)
            if notice is not None and not self._noticed and self._end_reason is None:
                why = notice(data)
                if why is not None:  # act now rather than be cut off later
                    self._noticed = True
                    self._act_on_notice(why)
            try:
                on_frame(data, recv_ns)
            except Exception as error:  # a handler bug must not kill the connection
                health.errors += 1
                health.last_error = repr(error)
                self._log.exception("feed.frame_handler_failed", error=repr(error))
            if not parsed and coalesced is not None:
                coalesced.read_done()
            if on_batch is not None and not parsed:
                try:
                    on_batch()
                except Exception as error:  # nor a batch handler bug
                    health.errors += 1
                    health.last_error = repr(error)
                    self._log.exception("feed.batch_handler_failed", error=repr(error))

    @staticmethod
    def _batch_at_end_of_turn(on_batch: BatchHandler) -> BatchHandler:
        """``on_batch`` once per event-loop turn with frames, at its end (call_soon)."""
        scheduled = False

        def run() -> None:
            nonlocal scheduled
            scheduled = False
            on_batch()

        def schedule() -> None:
            nonlocal scheduled
            if not scheduled:
                scheduled = True
                asyncio.get_running_loop().call_soon(run)

        return schedule

    def _ended(
        self, websocket: ClientWebSocketResponse, message: Any
    ) -> tuple[DisconnectReason, int | None, str | None]:
        """Why the connection ended, from the message that ended the read loop."""
        reason = self._end_reason or DisconnectReason.CLOSED
        kind = message.type
        if kind is WSMsgType.CLOSE:  # the peer's close frame (answered by aiohttp)
            return reason, int(message.data), message.extra or None
        if kind is WSMsgType.ERROR:  # protocol error (frame too big: 1009), no pong
            error = message.data
            if isinstance(error, aiohttp.WebSocketError):
                return reason, int(error.code), str(error)
            self.health.last_error = describe_error(error, self.url)
            return reason, None, None
        return reason, None, None  # CLOSING / CLOSED: our close, or the TCP connection ended
