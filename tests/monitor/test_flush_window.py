"""FlushWindow: the reads of every connection applied together and, in a calm market, at
most once per window.

A real event loop; the clock and the loop thread's sleep are the window's own injection
points, so that what it waits is exact.
"""

from __future__ import annotations

import asyncio

import pytest

from monitor.daemon import FlushWindow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Flushes:
    """The owner's flush: when it ran, and how many frames each one applied."""

    def __init__(self, clock: Clock, frames: int = 3, took_s: float = 0.0) -> None:
        self.clock = clock
        self.frames = frames
        self.took_s = took_s
        self.at: list[float] = []
        self.window: FlushWindow | None = None

    def __call__(self) -> None:
        self.at.append(self.clock.now)
        self.clock.now += self.took_s  # the flush's own time
        assert self.window is not None
        self.window.applied += self.frames  # as Daemon._flush_pending counts them


def window(ms: float, clock: Clock, flushes: Flushes, min_frames: int = 32) -> FlushWindow:
    w = FlushWindow(flushes, ms / 1000.0, min_frames, clock=clock, sleep=clock.sleep)
    flushes.window = w
    return w


async def test_without_a_window_every_read_is_flushed_in_its_own_turn() -> None:
    clock = Clock()
    flushes = Flushes(clock)
    w = window(0, clock, flushes)
    w.read_ended()
    w.read_ended()
    assert flushes.at == [100.0, 100.0]  # at once, in the caller's turn
    assert w.flushes == 2
    await asyncio.sleep(0)
    assert clock.slept == [] and len(flushes.at) == 2


async def test_reads_of_one_turn_are_flushed_once_at_its_end_then_the_window_is_slept_out() -> None:
    clock = Clock()
    flushes = Flushes(clock, frames=5, took_s=0.0005)
    w = window(2, clock, flushes)
    for _ in range(3):  # three connections' reads end in the same event-loop turn
        w.read_ended()
    assert flushes.at == []  # not yet: at the end of the turn
    await asyncio.sleep(0)
    assert flushes.at == [100.0]
    assert w.flushes == 1
    # 5 frames, under min_frames: the flush took 0.5 ms of the 2 ms window opened by the
    # first read, and 1.5 ms are slept
    assert clock.slept == [pytest.approx(0.0015)]
    assert w.sleeps == 1
    w.read_ended()  # the next wake-up opens a new window
    await asyncio.sleep(0)
    assert flushes.at == [100.0, pytest.approx(100.002)]
    assert w.flushes == 2


async def test_a_flush_of_min_frames_or_more_does_not_wait() -> None:
    clock = Clock()
    flushes = Flushes(clock, frames=32)
    w = window(5, clock, flushes, min_frames=32)
    for _ in range(3):
        w.read_ended()
        await asyncio.sleep(0)
    assert len(flushes.at) == 3
    assert clock.slept == [] and w.sleeps == 0
    flushes.frames = 31  # one short: the rest of the window is slept
    w.read_ended()
    await asyncio.sleep(0)
    assert clock.slept == [pytest.approx(0.005)]


async def test_a_flush_longer_than_the_window_does_not_wait() -> None:
    clock = Clock()
    flushes = Flushes(clock, frames=1, took_s=0.003)
    w = window(1, clock, flushes)
    for _ in range(3):
        w.read_ended()
        await asyncio.sleep(0)
    assert len(flushes.at) == 3
    assert clock.slept == []


async def test_a_read_that_ends_while_its_flush_is_pending_joins_it() -> None:
    clock = Clock()
    flushes = Flushes(clock)
    w = window(1, clock, flushes)
    w.read_ended()
    clock.now += 0.0004  # another connection's read, later in the same wake-up
    w.read_ended()
    await asyncio.sleep(0)
    assert flushes.at == [pytest.approx(100.0004)]
    assert clock.slept == [pytest.approx(0.0006)]  # the window counts from the first read


class Stream(Flushes):
    """Frames arriving at ``per_s``: a flush applies those that came since the last one."""

    def __init__(self, clock: Clock, per_s: float, took_s: float = 0.0001) -> None:
        super().__init__(clock, took_s=took_s)
        self.per_s = per_s
        self.since = clock.now
        self.sizes: list[int] = []

    def __call__(self) -> None:
        n = max(1, round((self.clock.now - self.since) * self.per_s))
        self.since = self.clock.now
        self.sizes.append(n)
        self.frames = n
        super().__call__()


async def run_stream(per_s: float, flushes: int = 60) -> tuple[Clock, Stream, FlushWindow]:
    clock = Clock()
    stream = Stream(clock, per_s)
    w = window(5, clock, stream, min_frames=32)
    for _ in range(flushes):
        clock.now += 0.00005  # the next read ends a moment after the last flush
        w.read_ended()
        await asyncio.sleep(0)
    return clock, stream, w


async def test_a_calm_stream_is_flushed_once_per_window() -> None:
    clock, stream, w = await run_stream(5_000.0)  # 25 frames in 5 ms: under 32
    assert w.rate == pytest.approx(5_000.0, rel=0.1)
    assert all(t == pytest.approx(0.0049, abs=0.0001) for t in clock.slept[5:])
    assert all(20 <= n <= 30 for n in stream.sizes[5:])


async def test_a_fast_stream_shortens_the_window_to_the_time_min_frames_take() -> None:
    clock, stream, w = await run_stream(100_000.0)  # 32 frames take 0.32 ms
    assert w.rate == pytest.approx(100_000.0, rel=0.5)
    assert max(clock.slept[5:], default=0.0) < 0.0005  # never the whole 5 ms
    assert min(stream.sizes[5:]) >= 10


async def test_frames_of_bursts_flushed_on_their_own_count_toward_the_batch() -> None:
    # a read of 600 frames: the owner flushed 512 of them itself (every 256), the window's
    # flush gets the last 8; the batch was 600 frames, not 8: no sleep in a burst
    clock = Clock()
    flushes = Flushes(clock, frames=8)
    w = window(5, clock, flushes, min_frames=32)
    w.applied += 512
    w.read_ended()
    await asyncio.sleep(0)
    assert clock.slept == []
    w.read_ended()  # the next read, alone: 8 frames
    await asyncio.sleep(0)
    assert len(clock.slept) == 1


async def test_a_read_of_min_frames_or_more_is_flushed_at_once() -> None:
    clock = Clock()
    flushes = Flushes(clock, frames=40)
    w = window(5, clock, flushes, min_frames=32)
    w.read_ended(40)  # a busy connection's read: in its own turn, no wait
    assert flushes.at == [100.0]
    await asyncio.sleep(0)
    assert clock.slept == [] and w.flushes == 1
    w.read_ended(3)  # a small one waits for the end of the turn
    assert len(flushes.at) == 1
    await asyncio.sleep(0)
    assert len(flushes.at) == 2
