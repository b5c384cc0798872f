"""The read coalescer on real TCP sockets over loopback: what the kernel reports readable
under the receive low-water mark, and when the coalescer lets the bytes through.

Linux only (SO_RCVLOWAT honoured by poll/epoll); elsewhere the coalescer is off, which the
last tests check through its public switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import sys
from collections.abc import Iterator

import pytest
import structlog

from feeds import coalesce
from feeds.coalesce import SO_RCVLOWAT, ReadCoalescer

LOW_WATER = 4096

linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_RCVLOWAT in epoll: Linux only"
)


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(sender, receiver): a connected TCP pair over loopback."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        receiver = socket.create_connection(server.getsockname())
        sender, _ = server.accept()
    receiver.setblocking(False)
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def readable(sock: socket.socket, timeout_s: float = 0.05) -> bool:
    ready, _, _ = select.select([sock], [], [], timeout_s)
    return bool(ready)


def mark(sock: socket.socket) -> int:
    assert SO_RCVLOWAT is not None
    return sock.getsockopt(socket.SOL_SOCKET, SO_RCVLOWAT)


@linux
def test_a_few_bytes_wait_in_the_kernel_until_released() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 0.05)
    with tcp_pair() as (sender, receiver):
        member = coalescer.attach(receiver)
        assert member is not None
        assert mark(receiver) == LOW_WATER
        sender.sendall(b"x" * 100)
        assert not readable(receiver)  # below the mark: no wake-up
        assert coalescer.release() == 1
        assert member.lowered and mark(receiver) == 1
        assert readable(receiver, 0.0)  # at once, not at the next byte
        assert receiver.recv(1 << 16) == b"x" * 100
        member.read_done()
        assert not member.lowered and mark(receiver) == LOW_WATER
        sender.sendall(b"y" * 10)
        assert not readable(receiver)  # held again
        assert coalescer.releases == 1


@linux
def test_a_busy_socket_wakes_at_once_without_release() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 10.0)
    with tcp_pair() as (sender, receiver):
        assert coalescer.attach(receiver) is not None
        sender.sendall(b"z" * LOW_WATER)
        assert readable(receiver, 1.0)
        got = b""
        while len(got) < LOW_WATER:
            got += receiver.recv(1 << 16)
        assert got == b"z" * LOW_WATER
        assert coalescer.releases == 0


@linux
def test_the_peer_closing_is_seen_below_the_mark() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 10.0)
    with tcp_pair() as (sender, receiver):
        assert coalescer.attach(receiver) is not None
        sender.sendall(b"bye")
        sender.shutdown(socket.SHUT_WR)
        assert readable(receiver, 1.0)  # the FIN wakes the reader: no frame is held back
        assert receiver.recv(100) == b"bye"
        assert receiver.recv(100) == b""


@linux
def test_release_skips_idle_sockets_and_leaves_them_held() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 0.05)
    with tcp_pair() as (s1, r1), tcp_pair() as (_s2, r2):
        m1, m2 = coalescer.attach(r1), coalescer.attach(r2)
        assert m1 is not None and m2 is not None
        s1.sendall(b"a" * 10)
        assert coalescer.release() == 1
        assert m1.lowered and not m2.lowered
        assert mark(r2) == LOW_WATER
        assert coalescer.release() == 0  # m1 already let through; r2 still has nothing


@linux
def test_a_closed_or_detached_socket_is_dropped_quietly() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 0.05)
    with tcp_pair() as (sender, receiver):
        member = coalescer.attach(receiver)
        assert member is not None
        sender.sendall(b"q")
        member.detach()
        assert coalescer.release() == 0  # detached: not looked at
    with tcp_pair() as (sender, receiver):
        assert coalescer.attach(receiver) is not None
        receiver.close()  # the session's socket went away before it detached
        assert coalescer.release() == 0


def test_off_when_disabled_or_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with tcp_pair() as (_sender, receiver):
        assert not ReadCoalescer(0, 0.05).enabled
        assert ReadCoalescer(0, 0.05).attach(receiver) is None
        assert ReadCoalescer(LOW_WATER, 0.0).attach(receiver) is None
        assert ReadCoalescer(LOW_WATER, 0.05).attach(None) is None
        monkeypatch.setattr(coalesce, "SO_RCVLOWAT", None)  # a platform without it
        assert ReadCoalescer(LOW_WATER, 0.05).attach(receiver) is None


@linux
def test_a_socket_that_refuses_the_mark_is_read_as_usual() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 0.05)
    with tcp_pair() as (_sender, receiver):
        receiver.close()
        with structlog.testing.capture_logs() as logs:
            assert coalescer.attach(receiver) is None
        assert coalescer.failed == 1
        assert [e["event"] for e in logs] == ["feed.coalesce_unavailable"]


@linux
async def test_run_lets_held_bytes_through_within_the_delay() -> None:
    coalescer = ReadCoalescer(LOW_WATER, 0.02)
    loop = asyncio.get_running_loop()
    with tcp_pair() as (sender, receiver):
        member = coalescer.attach(receiver)
        assert member is not None
        got = asyncio.Event()
        loop.add_reader(receiver.fileno(), got.set)
        task = asyncio.ensure_future(coalescer.run())
        try:
            sender.sendall(b"late")
            started = loop.time()
            await asyncio.wait_for(got.wait(), 1.0)
            waited = loop.time() - started
            assert receiver.recv(100) == b"late"
            assert coalescer.releases >= 1
            assert waited < 0.5  # one period (20 ms) and a turn, with room for a slow CI
        finally:
            loop.remove_reader(receiver.fileno())
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@linux
async def test_drain_returns_once_the_released_reads_are_handed_over() -> None:
    """Before a tick: drain lets the waiting bytes through and returns only after the
    reader (here a plain add_reader callback, as a session's read would) has taken them."""
    coalescer = ReadCoalescer(LOW_WATER, 3600.0)
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    with tcp_pair() as (sender, receiver):
        member = coalescer.attach(receiver)
        assert member is not None

        def on_readable() -> None:
            got.append(receiver.recv(1 << 16))
            loop.call_soon(member.read_done)  # handed over a turn later, as a session does

        loop.add_reader(receiver.fileno(), on_readable)
        try:
            assert await coalescer.drain() == 0  # nothing waiting: returns at once
            sender.sendall(b"tick me")
            await asyncio.sleep(0.05)
            assert got == []  # held below the mark
            assert await coalescer.drain() == 1
            assert got == [b"tick me"]
            assert not member.lowered
        finally:
            loop.remove_reader(receiver.fileno())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@linux
def test_a_busy_stream_gets_a_quarter_of_the_mark_and_a_calm_one_the_whole() -> None:
    """A read that came on its own (the mark filled) within BUSY_S of the last one means a
    busy stream: the mark drops to a quarter, so a burst does not wait for a calm batch. A
    read a release let through, or one long after the last, means calm: the whole mark."""
    clock = Clock()
    coalescer = ReadCoalescer(LOW_WATER, 0.25, clock=clock)
    assert coalescer.busy_water == LOW_WATER // 4
    with tcp_pair() as (sender, receiver):
        member = coalescer.attach(receiver)
        assert member is not None
        clock.now += coalesce.BUSY_S / 2
        member.read_done()  # on its own, soon after the last: busy
        assert member.mark == mark(receiver) == LOW_WATER // 4
        sender.sendall(b"b" * (LOW_WATER // 4))
        assert readable(receiver, 1.0)  # the busy mark is what wakes it now
        receiver.recv(1 << 16)
        clock.now += coalesce.BUSY_S / 2
        member.read_done()
        assert mark(receiver) == LOW_WATER // 4  # still busy
        clock.now += coalesce.BUSY_S * 10
        member.read_done()  # on its own, but long after: calm
        assert member.mark == mark(receiver) == LOW_WATER
        clock.now += coalesce.BUSY_S / 2
        member.read_done()
        assert mark(receiver) == LOW_WATER // 4
        sender.sendall(b"c")
        assert coalescer.release() == 1
        receiver.recv(10)
        clock.now += coalesce.BUSY_S / 2
        member.read_done()  # let through by a release: calm, however soon
        assert not member.lowered and mark(receiver) == LOW_WATER
