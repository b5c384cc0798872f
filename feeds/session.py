"""One websocket connection, kept alive forever: the only reconnect policy in liqmon.

A :class:`WsSession` owns one URL and the subscribe frames for it. It connects (with a
connect timeout), sends the stored subscribe frames after every (re)connect, reads frames
with a receive timeout, stamps each with ``time.time_ns()`` and hands it to ``on_frame``.
When the connection ends for any reason it waits a capped exponential backoff with full
jitter and connects again; it never gives up on network errors. Venue differences come in
as data (URL, frames, ping interval), never as ``if venue == ...`` here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

_log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
POLICY_VIOLATION_BACKOFF_S = 60.0
"""Least wait after a 1008 close (Binance: "too many requests"): reconnecting sooner
only deepens the penalty."""

CLOSE_TIMEOUT_S = 5.0
"""How long to wait for the peer's close frame: a silent peer must not hold a reconnect."""

Sleep = Callable[[float], Awaitable[None]]
FrameHandler = Callable[[str | bytes, int], None]


class DisconnectReason(StrEnum):
    CLOSED = "closed"  # the server (or the network) closed the connection
    STALE = "stale"  # nothing received for receive_timeout_s: we closed it
    ERROR = "error"  # an unexpected error while connected


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
    frames: int = 0
    open_connections: int = 0
    last_error: str | None = None
    last_frame_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _close_code(error: ConnectionClosed) -> int | None:
    return error.rcvd.code if error.rcvd is not None else None


class WsSession:
    """Keeps one websocket connection open forever; cancel :meth:`run` to stop it.

    ``on_frame(data, recv_ns)`` gets every data frame (text as ``str``, binary as
    ``bytes``) with ``recv_ns = time.time_ns()`` taken as it was read. ``on_connect()`` runs
    after each successful connect and subscribe; ``on_disconnect(reason)`` after each
    connection ends. ``ping_interval_s=None`` means the server pings (Binance) and we only
    answer, which websockets does by itself. ``sleep`` and ``rng`` are injectable so tests
    never wait for real backoff time.
    """

    def __init__(
        self,
        url: str,
        *,
        venue: str,
        on_frame: FrameHandler,
        subscribe_frames: Sequence[str] = (),
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[DisconnectReason], None] | None = None,
        policy: ConnectionPolicy | None = None,
        ping_interval_s: float | None = None,
        health: FeedHealth | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.url = url
        self.venue = venue
        self.subscribe_frames = list(subscribe_frames)
        self.policy = policy or ConnectionPolicy()
        self.health = health if health is not None else FeedHealth()
        self.backoff = Backoff(
            self.policy.backoff_initial_s, self.policy.backoff_max_s, rng or random.Random()
        )
        self.connected = asyncio.Event()
        self._on_frame = on_frame
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._ping_interval_s = ping_interval_s
        self._sleep = sleep
        self._clock = clock
        self._max_frame_bytes = max_frame_bytes
        self._log = _log.bind(venue=venue, url=url)

    async def run(self) -> None:
        """Connect, read, reconnect, forever (until cancelled)."""
        while True:
            delay_s = await self._connect_once()
            await self._sleep(delay_s)

    async def _connect_once(self) -> float:
        """One connection attempt and its lifetime; returns how long to wait before the next."""
        attempt = self.backoff.attempt
        try:
            websocket = await asyncio.wait_for(self._open(), self.policy.connect_timeout_s)
        except Exception as error:  # any failure to connect is retried: never exit
            if isinstance(error, TimeoutError):
                problem = f"no connection within {self.policy.connect_timeout_s} s"
            else:
                problem = repr(error)
            self.health.connect_failures += 1
            self.health.last_error = problem
            delay_s = self.backoff.next_delay_s()
            self._log.warning(
                "feed.connect_failed", error=problem, attempt=attempt, delay_s=delay_s
            )
            return delay_s
        async with websocket:
            return await self._serve(websocket, attempt)

    async def _open(self) -> ClientConnection:
        return await connect(
            self.url,
            open_timeout=None,  # wait_for above bounds the whole connect
            ping_interval=self._ping_interval_s,
            ping_timeout=self._ping_interval_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=self._max_frame_bytes,
            max_queue=1024,
        )

    async def _serve(self, websocket: ClientConnection, attempt: int) -> float:
        connected_at = self._clock()
        self.health.connects += 1
        self.health.open_connections += 1
        self._log.info("feed.connect", attempt=attempt, subscribe_frames=len(self.subscribe_frames))
        close_code: int | None = None
        try:
            for frame in self.subscribe_frames:
                await websocket.send(frame)
            self.connected.set()
            if self._on_connect is not None:
                self._on_connect()
            reason = await self._read(websocket)
        except ConnectionClosed as error:
            reason = DisconnectReason.CLOSED
            close_code = _close_code(error)
            if close_code not in (None, CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
                self.health.last_error = f"close {close_code} {error.rcvd and error.rcvd.reason}"
        except Exception as error:  # task boundary: log, count, reconnect
            reason = DisconnectReason.ERROR
            self.health.errors += 1
            self.health.last_error = repr(error)
            self._log.exception("feed.error", error=repr(error))
        finally:
            self.connected.clear()
            self.health.open_connections -= 1
        lived_s = self._clock() - connected_at
        self.health.disconnects += 1
        if lived_s >= self.policy.healthy_after_s:
            self.backoff.reset()
        delay_s = self.backoff.next_delay_s()
        if close_code == CloseCode.POLICY_VIOLATION:
            delay_s = max(delay_s, self.policy.policy_violation_backoff_s)
        self._log.warning(
            "feed.disconnect",
            reason=str(reason),
            close_code=close_code,
            lived_s=round(lived_s, 3),
            attempt=self.backoff.attempt,
            delay_s=delay_s,
        )
        if self._on_disconnect is not None:
            try:
                self._on_disconnect(reason)
            except Exception as error:  # a hook bug must not end the reconnect loop
                self.health.errors += 1
                self._log.exception("feed.disconnect_hook_failed", error=repr(error))
        return delay_s

    async def _read(self, websocket: ClientConnection) -> DisconnectReason:
        timeout_s = self.policy.receive_timeout_s
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    data = await websocket.recv()
            except TimeoutError:
                self.health.stale += 1
                self._log.warning("feed.stale", silent_s=timeout_s)
                return DisconnectReason.STALE
            recv_ns = time.time_ns()
            self.health.frames += 1
            self.health.last_frame_ns = recv_ns
            try:
                self._on_frame(data, recv_ns)
            except Exception as error:  # a handler bug must not kill the connection
                self.health.errors += 1
                self.health.last_error = repr(error)
                self._log.exception("feed.frame_handler_failed", error=repr(error))
