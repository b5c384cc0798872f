"""Deterministic replay of recordings through the live message path.

The tick clock is the recordings' receive time, never the wall clock: the same files give
the same books and the same metrics on every run, as fast as the CPU allows or, with
``speed``, paced at a multiple of recorded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import queue
import threading
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec
import numpy as np

from feeds.contract import FrameScanner
from feeds.recording import Frames, Record, RecordBlock, RecordingReader
from monitor.domain import ScannedFrames, Venue
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
BLOCK = 16_384  # records of several files merged (or paced) read as one block
FIRST_BLOCK = 256  # a short first block: books are added as their first frames are decoded,
# and a block's scanned frames go to the books known when the replay reaches the block
READ_AHEAD = 2  # blocks the reader thread may read ahead of the replay (0: no thread)
BLOCK_BYTES = 1 << 23  # text of a block read in one piece (~7k records of ~1 kB)


Scans = dict[int, tuple[np.ndarray, ScannedFrames | None]]
"""A block's websocket frames per venue code, in the order the venues first appear: their
rows in the block and their scan (None: the venue has no batch scanner)."""


@asynccontextmanager
async def _blocks(
    paths: Iterable[str | Path],
    reader: RecordingReader | None,
    names: tuple[str, ...],
    scanners: dict[int, FrameScanner],
    speed: float | None,
) -> AsyncIterator[AsyncIterator[tuple[RecordBlock, Scans]]]:
    """The records to replay, in blocks, each with its frames scanned per venue. One file
    replayed as fast as possible is read and scanned by a thread
    (``RecordingReader.read_blocks`` and the scanners release the GIL: reading runs beside
    the replay, on a second core); several files are merged by receive time record by
    record, and a paced replay reads them so too."""
    paths = [Path(p) for p in paths]
    reader = reader if reader is not None else RecordingReader()
    blocks: Iterator[RecordBlock]
    if len(paths) == 1 and speed is None:
        blocks = reader.read_blocks(paths[0], names, block_bytes=BLOCK_BYTES)
        if READ_AHEAD > 0:
            with _ReadAhead(_prepared(blocks, scanners, release_gil=True)) as ahead:
                yield ahead.items()
            return
    else:
        merged = merged_records(paths, reader)
        blocks = (
            RecordBlock.from_records(batch, names)
            for batch in iter(lambda: list(itertools.islice(merged, BLOCK)), [])
        )
    # (a paced replay steps through every record: its frames are not scanned ahead)
    prepared = _prepared(blocks, scanners if speed is None else {}, release_gil=False)

    async def inline() -> AsyncIterator[tuple[RecordBlock, Scans]]:
        for item in prepared:
            yield item

    yield inline()


def _prepared(
    blocks: Iterator[RecordBlock], scanners: dict[int, FrameScanner], *, release_gil: bool
) -> Iterator[tuple[RecordBlock, Scans]]:
    """Each block with its frames scanned per venue (scanners are pure: what they read
    does not depend on the books). The first block is cut short: books are added as their
    first frames are decoded, and a block's scanned frames go to the books known when the
    replay reaches it."""
    first = True
    for block in blocks:
        parts = block.split(FIRST_BLOCK) if first and len(block) > FIRST_BLOCK else (block,)
        first = False
        for part in parts:
            scans: Scans = {}
            codes = part.codes
            present, at = np.unique(codes, return_index=True)
            for code in present[np.argsort(at)].tolist():  # in the order venues appear
                if code < 0:
                    continue
                rows = np.flatnonzero(codes == code)
                scanner = scanners.get(code)
                scans[code] = (
                    rows,
                    None
                    if scanner is None
                    else scanner.scan_buffer(
                        part.buf, part.starts[rows], part.ends[rows], release_gil=release_gil
                    ),
                )
            yield part, scans


_Item = tuple[tuple[RecordBlock, Scans] | None, BaseException | None]  # (item, error)


class _ReadAhead:
    """Runs a block iterator in a thread, ``READ_AHEAD`` blocks ahead of the consumer;
    what it raises is raised in the consumer, in its place. (The interpreter's switch
    interval stays as it is: a shorter one made the two threads hand the GIL back and
    forth so often that the replay took three times as long.)"""

    def __init__(self, source: Iterator[tuple[RecordBlock, Scans]]) -> None:
        self._source = source
        self._queue: queue.Queue[_Item] = queue.Queue(READ_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-reader", daemon=True)

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting to put
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
        except BaseException as exc:
            self._put((None, exc))
            return
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:  # the file, when the consumer stopped early
                close()
        self._put((None, None))

    async def items(self) -> AsyncIterator[tuple[RecordBlock, Scans]]:
        while True:
            try:
                item, error = self._queue.get_nowait()
            except queue.Empty:
                # the reader is behind: wait for it without holding the event loop
                try:
                    item, error = await asyncio.to_thread(self._queue.get, True, 0.5)
                except queue.Empty:
                    continue
            if error is not None:
                raise error
            if item is None:
                return
            yield item


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
    names = tuple(v.value for v in venue_list)  # a block's venue codes index this

    async def step(recv_ns: int) -> None:
        """The ticks a record at ``recv_ns`` closes (and, paced, the wait for its time)."""
        nonlocal next_tick, first_ns
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
                if first_ns is not None:  # paced, the hole takes no time either
                    first_ns += skipped_to - next_tick
                next_tick = skipped_to
                if next_tick <= recv_ns:
                    next_tick += tick_ns
        if speed is not None and first_ns is not None:
            lag = (recv_ns - first_ns) / 1e9 / speed - (time.perf_counter() - started)
            if lag > 0:
                flush_groups()
                await asyncio.sleep(lag)

    def frame(venue: Venue, data: str, recv_ns: int) -> None:
        """A websocket frame of a venue whose frames are not prescanned: to its group."""
        group = groups.get(venue)
        if group is None:
            group = groups[venue] = ([], [])
        elif len(group[0]) >= MAX_GROUP:
            pipeline.feed_frames(venue, *group)
            group = groups[venue] = ([], [])
        group[0].append(data)
        group[1].append(recv_ns)

    def other(rec: Record, recv_ns: int) -> None:
        """Any other record: an HTTP answer (fed in its place), or an unknown venue's."""
        nonlocal unknown
        venue = venues.get(rec.venue)
        if venue is None:
            unknown += 1
            if rec.venue not in unknown_venues:
                unknown_venues.add(rec.venue)
                log.warning("replay.unknown_venue", venue=rec.venue)
        elif rec.kind == "ws":
            frame(venue, rec.data, recv_ns)
        else:
            flush_groups()
            pipeline.feed(venue, rec.kind, rec.url, rec.data, recv_ns)

    high = -1  # the latest receive time so far: the next tick is the first boundary after it
    scanners: dict[int, FrameScanner] = {}
    for code, venue in enumerate(venue_list):
        adapter = pipeline.adapters.get(venue)
        if adapter is not None and adapter.scanner is not None:
            scanners[code] = adapter.scanner
    async with _blocks(paths, reader, names, scanners, speed) as source:
        async for block, scans in source:
            # once a block, give the event loop a turn: Ctrl-C (asyncio.run cancels the
            # task) stops a replay as fast as possible there, not after its last record
            await asyncio.sleep(0)
            # receive times in ns: round(ts * 1e9), a column at a time (rint rounds half to
            # even as round does)
            times = np.rint(block.ts * 1e9).astype(np.int64)
            codes = block.codes
            known = int(np.count_nonzero(codes >= 0))
            records += known + sum(
                1 for k, r in block.records.items() if codes[k] < 0 and r.venue in venues
            )
            flush_groups()
            prescans.clear()
            fed.clear()
            if speed is not None:  # paced: record by record
                for k, recv_ns in enumerate(times.tolist()):
                    await step(recv_ns)
                    code = int(codes[k])
                    if code >= 0:
                        frame(venue_list[code], block.frame(k), recv_ns)
                    else:
                        other(block.records[k], recv_ns)
                continue
            # as fast as possible: each venue's frames of the block go to its books stretch
            # by stretch from their scan; only the records that close a tick or are not
            # such frames are stepped through
            positions: dict[Venue, list[int]] = {}
            plain = np.ones(len(block), dtype=np.bool_)  # records to step through
            for code, (mine, scan) in scans.items():
                if scan is None:
                    continue
                venue = venue_list[code]
                where = mine.tolist()
                pre = pipeline.prescan_scanned(
                    venue, scan, Frames(block, where), times[mine].tolist()
                )
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
            stepped = np.flatnonzero(plain | closes)
            for k, recv_ns, code in zip(
                stepped.tolist(), times[stepped].tolist(), codes[stepped].tolist(), strict=True
            ):
                for venue, at in positions.items():
                    fed[venue] = bisect_left(at, k, fed[venue])
                await step(recv_ns)
                if code < 0:
                    other(block.records[k], recv_ns)
                    continue
                venue = venue_list[code]
                if venue in prescans:
                    fed[venue] += 1
                else:
                    frame(venue, block.frame(k), recv_ns)
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
