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

    def __call__(self) -> int:
        self.at.append(self.clock.now)
        self.clock.now += self.took_s  # the flush's own time
        return self.frames


def window(ms: float, clock: Clock, flushes: Flushes, min_frames: int = 32) -> FlushWindow:
    return FlushWindow(flushes, ms / 1000.0, min_frames, clock=clock, sleep=clock.sleep)


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
