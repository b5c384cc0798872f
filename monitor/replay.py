"""Deterministic replay of recordings through the live message path.

The tick clock is the recordings' receive time, never the wall clock: the same files give
the same books and the same metrics on every run, as fast as the CPU allows or, with
``speed``, paced at a multiple of recorded time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO

import msgspec
import numpy as np

from feeds.recording import Record, RecordingReader, RecordKind
from monitor.domain import Venue
from monitor.log import get_logger
from monitor.pipeline import BookPipeline, Prescan
from monitor.sinks import Sink, drive

log = get_logger("monitor.replay")
_encode = msgspec.json.Encoder().encode


@dataclass
class ReplayResult:
    records: int
    ticks: int
    metric_rows: int
    unknown_venue: int
    seconds: float


def merged_records(
    paths: Iterable[str | Path], reader: RecordingReader | None = None
) -> Iterator[Record]:
    """Records of several files merged by receive time (file order breaks ties).

    ``reader`` skips and counts lines that are not records (a strict one raises
    RecordingError); by default a new lenient one."""
    reader = reader if reader is not None else RecordingReader()
    streams = [reader.read(p) for p in paths]
    if len(streams) == 1:
        return streams[0]
    return (
        rec
        for _, _, rec in heapq.merge(*(((r.ts, i, r) for r in s) for i, s in enumerate(streams)))
    )


MAX_GROUP = 4096  # frames of one venue fed in one call, at most
BLOCK = 16_384  # records read ahead; the frames of each venue among them are scanned at once
FIRST_BLOCK = 256  # a short first block: books are added as their first frames are decoded,
# and a block's frames are scanned against the books known when the block starts


def replay(
    paths: Iterable[str | Path],
    pipeline: BookPipeline,
    *,
    tick_ms: int = 1000,
    sinks: Sequence[Sink] = (),
    speed: float | None = None,
    max_idle_s: float = 60.0,
    reader: RecordingReader | None = None,
) -> ReplayResult:
    """:func:`areplay` in its own event loop (for callers that are not async)."""
    return asyncio.run(
        areplay(
            paths,
            pipeline,
            tick_ms=tick_ms,
            sinks=sinks,
            speed=speed,
            max_idle_s=max_idle_s,
            reader=reader,
        )
    )


async def areplay(
    paths: Iterable[str | Path],
    pipeline: BookPipeline,
    *,
    tick_ms: int = 1000,
    sinks: Sequence[Sink] = (),
    speed: float | None = None,
    max_idle_s: float = 60.0,
    reader: RecordingReader | None = None,
) -> ReplayResult:
    """Feed every record to ``pipeline``; every ``tick_ms`` of recorded time take the tick
    sample and hand it to every sink in turn (awaited: deterministic, nothing dropped).

    Ticks keep coming through silences of up to ``max_idle_s`` (book age grows, as it
    would live, and books go stale); a longer hole in the recording is skipped. The sinks
    are not closed here: the caller owns them. ``reader``: see :func:`merged_records`.
    """
    tick_ns = tick_ms * 1_000_000
    max_idle_ticks = max(1, int(max_idle_s * 1e9 // tick_ns))
    next_tick: int | None = None
    records = ticks = rows = unknown = 0
    started = time.perf_counter()
    first_ns: int | None = None
    unknown_venues: set[str] = set()

    async def emit(at_ns: int) -> None:
        nonlocal ticks, rows
        sample = pipeline.tick(at_ns)
        ticks += 1
        rows += int(np.count_nonzero(sample.changed))
        await drive(sinks, sample)

    # The websocket frames of each venue between two ticks go to the pipeline together.
    # Books are per venue, so feeding one venue's frames before another's changes nothing a
    # tick sees; a venue's order is kept, and REST answers are fed in their place (every
    # venue's frames before them go first). Records are read in blocks, and each venue with
    # a batch scanner has its frames of the block scanned in one call up front
    # (``BookPipeline.prescan``); ticks then feed them stretch by stretch.
    groups: dict[Venue, tuple[list[str], list[int]]] = {}
    prescans: dict[Venue, Prescan] = {}
    fed: dict[Venue, int] = {}  # frames of the block reached, per prescanned venue

    def flush_groups() -> None:
        for venue, upto in fed.items():
            pipeline.feed_prescanned(prescans[venue], upto)
        for venue, (frames, stamps) in groups.items():
            pipeline.feed_frames(venue, frames, stamps)
        groups.clear()

    venues = {v.value: v for v in Venue}
    venue_list = list(Venue)
    codes_of = {v.value: k for k, v in enumerate(venue_list)}  # a venue's websocket frames
    ws = RecordKind.WS

    async def step(rec: Record, recv_ns: int, venue: Venue | None) -> None:
        """One record: the ticks it closes, then the record itself."""
        nonlocal next_tick, first_ns, unknown
        if next_tick is None:
            next_tick = (recv_ns // tick_ns + 1) * tick_ns
            first_ns = recv_ns
        if recv_ns >= next_tick:
            flush_groups()
            idle = 0
            while recv_ns >= next_tick and idle < max_idle_ticks:
                await emit(next_tick)
                next_tick += tick_ns
                idle += 1
            if recv_ns >= next_tick:
                # a hole in the recording (recorder stopped, or files of different days):
                # skip it rather than print the same books for every tick of the hole
                skipped_to = (recv_ns // tick_ns) * tick_ns
                log.info("replay.skip_silence", from_ts=next_tick / 1e9, to_ts=skipped_to / 1e9)
                next_tick = skipped_to
                if next_tick <= recv_ns:
                    next_tick += tick_ns
        if speed is not None and first_ns is not None:
            lag = (recv_ns - first_ns) / 1e9 / speed - (time.perf_counter() - started)
            if lag > 0:
                flush_groups()
                await asyncio.sleep(lag)
        if venue is None:
            unknown += 1
            if rec.venue not in unknown_venues:
                unknown_venues.add(rec.venue)
                log.warning("replay.unknown_venue", venue=rec.venue)
        elif rec.kind == "ws":
            if venue in prescans:
                fed[venue] += 1
                return
            group = groups.get(venue)
            if group is None:
                group = groups[venue] = ([], [])
            elif len(group[0]) >= MAX_GROUP:
                pipeline.feed_frames(venue, *group)
                group = groups[venue] = ([], [])
            group[0].append(rec.data)
            group[1].append(recv_ns)
        else:
            flush_groups()
            pipeline.feed(venue, rec.kind, rec.url, rec.data, recv_ns)

    source = merged_records(paths, reader)
    high = -1  # the latest receive time so far: the next tick is the first boundary after it
    size = min(FIRST_BLOCK, BLOCK)
    while block := list(itertools.islice(source, size)):
        size = BLOCK
        # receive times in ns: round(ts * 1e9), a column at a time (rint rounds half to even
        # as round does)
        times = np.rint(np.array([rec.ts for rec in block]) * 1e9).astype(np.int64)
        stamps = times.tolist()
        of = [venues.get(rec.venue) for rec in block]
        records += len(of) - of.count(None)
        flush_groups()
        prescans.clear()
        fed.clear()
        if speed is not None:  # paced: record by record
            for rec, recv_ns, venue in zip(block, stamps, of, strict=True):
                await step(rec, recv_ns, venue)
            continue
        # as fast as possible: each venue's frames of the block are scanned in one call, and
        # only the records that close a tick or are not such frames are stepped through
        # each venue's websocket frames: their places in the block, data and receive times
        codes = np.fromiter(
            (codes_of.get(rec.venue, -1) if rec.kind is ws else -1 for rec in block),
            dtype=np.int64,
            count=len(block),
        )
        data = [rec.data for rec in block]
        positions: dict[Venue, list[int]] = {}
        plain = np.ones(len(block), dtype=np.bool_)  # records to step through
        present, first = np.unique(codes, return_index=True)
        for code in present[np.argsort(first)].tolist():  # in the order the venues appear
            if code < 0:
                continue
            venue = venue_list[code]
            mine = np.flatnonzero(codes == code)
            where = mine.tolist()
            frames = [data[k] for k in where] if len(where) == 1 else itemgetter(*where)(data)
            pre = pipeline.prescan(venue, frames, times[mine].tolist())
            if pre is not None:
                prescans[venue] = pre
                fed[venue] = 0
                positions[venue] = where
                plain[mine] = False
        if high < 0:
            high = int(times[0])
            plain[0] = True  # the first record starts the clock
        # a record closes a tick when it moves the latest time past a tick boundary
        buckets = np.maximum.accumulate(np.maximum(times, high)) // tick_ns
        closes = np.empty(len(block), dtype=np.bool_)
        closes[0] = buckets[0] > high // tick_ns
        closes[1:] = buckets[1:] > buckets[:-1]
        high = max(high, int(times.max()))
        for k in np.flatnonzero(plain | closes).tolist():
            for venue, at in positions.items():
                fed[venue] = bisect_left(at, k, fed[venue])
            await step(block[k], stamps[k], of[k])
        for venue, at in positions.items():
            fed[venue] = len(at)
    flush_groups()
    if next_tick is not None:
        await emit(next_tick)
    result = ReplayResult(records, ticks, rows, unknown, time.perf_counter() - started)
    log.info(
        "replay.done",
        records=records,
        ticks=ticks,
        metric_rows=rows,
        seconds=round(result.seconds, 3),
        counters=dict(pipeline.counters.messages),
    )
    return result


def write_books(pipeline: BookPipeline, out: IO[bytes], depth: int = 50) -> int:
    summaries = pipeline.book_summaries(depth)
    out.write(b"".join(_encode(s) + b"\n" for s in summaries))
    return len(summaries)
