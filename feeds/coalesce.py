"""Fewer, larger socket reads in a calm market: the kernel's receive low-water mark.

Every wake-up of the event loop costs CPU whatever it brings (measured on the 2-core VM
the benches run on: a sleep and wake-up of the loop thread is ~21-40 µs of CPU, and the
Python that runs after it runs on cold caches at several times its hot cost). In a calm
market each websocket read brings one or two frames, so most of the monitor's CPU goes to
waking up. A socket with ``SO_RCVLOWAT`` set to a mark of N bytes is reported readable
only once N bytes wait in the kernel (or the peer closed), so:

- in a calm market the bytes stay in the kernel until :meth:`ReadCoalescer.release` (every
  ``max_delay_s`` from :meth:`ReadCoalescer.run`, and :meth:`ReadCoalescer.drain` before
  each metric tick) lowers the mark to one byte on the sockets that have bytes waiting:
  Linux then reports them readable at once, and the event loop reads them all in one
  wake-up. After that read (:meth:`Coalesced.read_done`) the mark goes back up;
- the mark is ``low_water`` on a calm socket and a quarter of it on a busy one: a socket
  whose mark fills within ``BUSY_S`` of its last read is busy, and a burst then waits in
  the kernel for a fraction of a millisecond (16 KiB of a crash day's stream), not for a
  calm market's batch. A socket that was let through by a release is calm again.

A frame therefore waits in the kernel at most ``max_delay_s`` (plus a turn of the loop),
and a tick sees every frame received before it. Linux only: elsewhere (and where a socket
refuses the mark) a connection is read as it would be without this.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

_log = structlog.get_logger(logger_name=__name__)
_INT = struct.Struct("i")
_ZERO = bytes(_INT.size)
SO_RCVLOWAT: int | None = None
if sys.platform.startswith("linux"):
    # Linux re-checks a socket's readiness when its mark is lowered (tcp_set_rcvlowat); a
    # BSD kernel may not until more bytes come, which would hold the waiting frames back
    import fcntl
    import termios

    _ioctl = fcntl.ioctl
    _FIONREAD = termios.FIONREAD
    SO_RCVLOWAT = getattr(socket, "SO_RCVLOWAT", None)
DRAIN_TURNS = 16  # event-loop turns drain() waits at most (a read takes two or three)
BUSY_S = 0.02  # a socket that fills its mark this soon after its last read is busy


class Coalesced:
    """One connection's socket under the coalescer (``attach``); ``read_done`` after each
    read that was handed over."""

    __slots__ = ("_owner", "fd", "last_read", "lowered", "mark", "sock")

    def __init__(self, owner: ReadCoalescer, sock: Any, fd: int) -> None:
        self._owner = owner
        self.sock = sock
        self.fd = fd
        self.lowered = False  # the mark is down to one byte until the next read is done
        self.mark = owner.low_water  # the mark now: low_water, or busy_water on a busy stream
        self.last_read = owner.clock()

    def read_done(self) -> None:
        """A read is handed over. If a release let it through, the socket is calm: the
        calm mark again. If it came on its own within ``BUSY_S`` of the last one, the
        stream is busy: the busy mark (a quarter), so that a burst waits in the kernel for
        microseconds, not for a calm market's batch; otherwise the calm mark."""
        owner = self._owner
        now = owner.clock()
        busy = not self.lowered and now - self.last_read < BUSY_S
        self.last_read = now
        want = owner.busy_water if busy else owner.low_water
        if self.lowered or want != self.mark:
            self.lowered = False
            owner.set_mark(self, want)

    def detach(self) -> None:
        self._owner.detach(self)


class ReadCoalescer:
    """Holds the sockets of the live connections at a receive low-water mark of
    ``low_water`` bytes (a quarter of it on a busy stream) and lets their bytes through
    every ``max_delay_s`` (module doc)."""

    def __init__(
        self,
        low_water: int,
        max_delay_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.low_water = low_water
        self.busy_water = max(1, low_water // 4)
        self.max_delay_s = max_delay_s
        self.clock = clock
        self._members: dict[int, Coalesced] = {}
        self.releases = 0  # sockets let through by release()
        self.failed = 0  # sockets the mark could not be set on (read as usual)

    @property
    def enabled(self) -> bool:
        return SO_RCVLOWAT is not None and self.low_water > 1 and self.max_delay_s > 0

    def attach(self, sock: Any) -> Coalesced | None:
        """Put a connected socket under the mark; None when it cannot be (no socket, no
        SO_RCVLOWAT, or the kernel refused it): that connection is read as usual."""
        if not self.enabled or sock is None:
            return None
        try:
            fd = sock.fileno()
            member = Coalesced(self, sock, fd)
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVLOWAT, self.low_water)
        except (OSError, AttributeError, ValueError) as error:
            self.failed += 1
            _log.warning("feed.coalesce_unavailable", error=repr(error))
            return None
        self._members[fd] = member
        return member

    def detach(self, member: Coalesced) -> None:
        if self._members.get(member.fd) is member:
            del self._members[member.fd]

    def set_mark(self, member: Coalesced, value: int) -> None:
        try:
            member.sock.setsockopt(socket.SOL_SOCKET, SO_RCVLOWAT, value)
            if value > 1:
                member.mark = value
        except OSError:  # the connection is going away: its session sees that itself
            self.detach(member)

    def release(self) -> int:
        """Let every socket's waiting bytes through now (the loop reads them in its next
        turn); returns how many sockets had bytes waiting."""
        return len(self._release())

    def _release(self) -> list[Coalesced]:
        released = []
        buf = _ZERO
        for member in list(self._members.values()):
            if member.lowered:
                continue
            try:
                waiting = _INT.unpack(_ioctl(member.fd, _FIONREAD, buf))[0]
            except OSError:
                self.detach(member)
                continue
            if waiting > 0:
                member.lowered = True
                self.set_mark(member, 1)  # Linux checks the mark at once: readable now
                released.append(member)
        self.releases += len(released)
        return released

    async def drain(self, turns: int = DRAIN_TURNS) -> int:
        """:meth:`release`, then let the event loop run until every socket let through has
        handed its read over (``read_done``), for at most ``turns`` turns (a socket whose
        waiting bytes end in the middle of a frame has nothing to hand over yet). Before a
        tick: the tick then sees every frame received before it. Returns how many sockets
        had bytes waiting."""
        released = self._release()
        for _ in range(turns if released else 0):
            if not any(member.lowered for member in released):
                break
            await asyncio.sleep(0)
        return len(released)

    async def run(self) -> None:
        """Release every ``max_delay_s`` until cancelled."""
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            now = loop.time()
            due = max(due + self.max_delay_s, now)  # fell behind: no catch-up burst
            await asyncio.sleep(due - now)
            try:
                self.release()
            except Exception as error:  # a task of the daemon's: log, and keep releasing
                _log.exception("feed.coalesce_failed", error=repr(error))
