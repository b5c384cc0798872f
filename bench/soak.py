"""Soak: the live monitor against every venue of the local exchange, at a high rate, for minutes.

Two OS processes, so that neither is charged the other's CPU:

- the *exchange*: ``feeds.sim`` (every venue of ``feeds.sim.registry.PROTOCOLS``,
  ``--books-per-venue`` books each from the cached instrument copies, ``--levels`` levels a
  side), started with ``multiprocessing`` (spawn) running :func:`exchange_main`. Once the
  monitor has built its pipeline it runs ``ExchangeSim.run_market(--rate)``: ``--rate`` random
  updates a second in total, round robin over the books (3 level changes each; every update
  is one frame to the book's subscriber). Driven over a pipe (market, stats, stop, tops, close).
- the *monitor*: a :class:`monitor.daemon.Daemon` in this process, exactly as ``liqmon run``
  wires it (settings from ``feeds.sim.exchange.settings_toml``: websockets, REST snapshots,
  resync logic, the metric tick every ``tick_ms``), logging at warning level.

After ``--warmup-s`` of market (numba kernels loaded, connections busy, books grown) the
measured window of ``--minutes`` starts. Every ``--sample-s``: frames received (sum of the
FeedHealth ``frames`` counters in ``daemon.health_state()``), frames the exchange sent and
still queues, process CPU (``resource.getrusage``, user + system, all threads), VmRSS
(with its anonymous and file-backed parts, glibc malloc's bytes in use and free, and
Python's allocated blocks). gc-tracked objects are counted by type at the start and the
end of the window, so a Python-level leak shows by name.

Latency, measured without changing library code (the bench replaces two attributes of the
daemon's instances: ``Daemon._flush_pending``, which runs once per batch window (the reads
of every connection since the last flush; ``[connection] batch_window_ms``) or per full
burst, and ``BookPipeline.tick``):

- *frame → book*: ``recv_ns`` (``time.time_ns()`` taken by ``WsSession`` right after
  ``websocket.recv()`` returned the frame) to ``time.time_ns()`` right after the
  ``_flush`` that decoded and applied it returned. Includes the wait for the read's last
  frame and for the batch window, the decode and the kernel call of the whole batch. Every frame counts
  once (deltas, snapshots, marks, acks, heartbeats alike).
- *frame → metric*: the same ``recv_ns`` to ``time.time_ns()`` when ``on_tick`` is called
  with the rows of the first tick after that flush (the tick computes the metrics of every
  book). So it is ~uniform over [0, tick_ms] plus the tick's own time: with the shipped
  ``tick_ms = 1000`` it measures mostly the tick period (``--tick-ms`` to change it).
- *exchange event → receipt* (catches queueing *before* ``recv_ns``: the exchange's send
  queue, socket buffers, websockets' frame queue): at each tick, for each book changed
  since the previous tick, ``S_TS_RECV - S_TS_EVENT`` of the last update applied (receipt
  time minus the venue's event time, which the exchange process writes from the same
  clock when it makes the frame; mostly whole milliseconds, so up to 1 ms high).
- *tick*: wall time of ``BookPipeline.tick`` (flush, metrics of every book, rows), and
  the 5 slowest ticks; GC pauses (``gc.callbacks``) per generation.

Latencies go into fixed-size histograms (1 % wide log bins, 1 µs..100 s; a percentile is
its bin's upper edge, max exact), drained every 0.5 s, so the bench's own memory is
constant and the RSS figures are the monitor's. Time inside the hooks is measured with
``time.perf_counter_ns`` (the code inside ``_flush`` and ``tick`` never waits, and
``time.thread_time_ns`` costs ~0.9 µs a call here); the hooks' own bookkeeping is
reported apart and is included in the monitor's CPU.

Peers measured in the same run: the exchange's frames (handled / made = 1.00 means the
monitor keeps up; frames queued in the exchange show its own lag), and the time per frame of the
book path inside the daemon (decode + sync + apply: the time inside ``_flush``, what
bench_book.py measures standalone at batch 1024) against the whole process's CPU per
frame (the rest is websockets, asyncio, sessions and the tick; frames are compressed:
websockets offers permessage-deflate and the exchange's aiohttp server accepts it).

Correctness at the end: the market stops, the exchange's queues drain, the monitor waits
until it received every frame the exchange sent, then every book must be valid, with 0
gaps, 0 checksum failures, 0 resyncs, and its top 10 levels a side equal to the exchange's
(``tests.e2e.harness.book_matches``, the e2e tests' check, over the exchange's levels
sent through the pipe), no disconnects or handler errors, and, for windows of 5 minutes
or more, an RSS slope of at most 0.2 MiB/min. The exit status is 1 if any check fails.

Run: ``.venv/bin/python -m bench.soak --minutes 10`` (not part of ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import itertools
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
import numpy as np  # noqa: E402

PREFERRED_BASES = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "LTC", "ADA", "AVAX", "LINK")
QUOTE_ORDER = ("USDT", "USD", "USDC")
KIND_ORDER = ("spot", "perp", "future")
TOP_LEVELS = 10  # levels a side compared with the exchange at the end
DRAIN_S = 0.5  # latency buffers -> histograms
BACKLOG_LIMIT = 2_000_000  # frames queued at the exchange: the monitor fell far behind, stop
RSS_FLAT_MIB_PER_MIN = 0.2  # "flat": under 2 MiB over 10 minutes
RSS_JUDGED_AFTER_MIN = 5.0  # shorter windows are too noisy to call a slope


# --- shared ----------------------------------------------------------------------------------
def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_kib() -> dict[str, int]:
    """Where the resident memory is: anonymous vs file-backed pages (/proc/self/status),
    and glibc malloc's bytes in use vs free inside its heaps (mallinfo2; 0 without it)."""
    out = {"rss_anon_kib": 0, "rss_file_kib": 0, "malloc_in_use_kib": 0, "malloc_free_kib": 0}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            out["rss_anon_kib"] = int(line.split()[1])
        elif line.startswith("RssFile:"):
            out["rss_file_kib"] = int(line.split()[1])
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        out["malloc_in_use_kib"] = (info.uordblks + info.hblkhd) // 1024
        out["malloc_free_kib"] = info.fordblks // 1024
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _load_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # not glibc >= 2.33
        return None
    function.restype = _MallInfo2
    return function  # type: ignore[no-any-return]


_MALLINFO2 = _load_mallinfo2()


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds since boot of the whole machine (/proc/stat): processes (user, nice,
    system) and interrupts (irq, softirq; loopback TCP work shows there), so that the load
    of other processes during the window can be reported."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(fields[0:3]) / tick, sum(fields[5:7]) / tick


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def choose_symbols(books_per_venue: int) -> dict[Any, list[str]]:
    """Per simulated venue, the first ``books_per_venue`` instruments the cache knows: one per
    base first (BTC, ETH, SOL, XRP, DOGE, ...), quotes USDT, USD, USDC before others."""
    from feeds.sim.registry import PROTOCOLS  # noqa: PLC0415
    from monitor.instruments import InstrumentRegistry  # noqa: PLC0415

    venues = list(PROTOCOLS)
    registry = InstrumentRegistry.load_cached(venues)
    out: dict[Any, list[str]] = {}
    for venue in venues:
        groups: dict[str, list[Any]] = {}
        for inst in registry.venue_instruments(venue):
            groups.setdefault(inst.base, []).append(inst)

        def rank(inst: Any) -> tuple[int, int, str]:
            quote = QUOTE_ORDER.index(inst.quote) if inst.quote in QUOTE_ORDER else 9
            kind = KIND_ORDER.index(inst.kind.value) if inst.kind.value in KIND_ORDER else 9
            return (quote, kind, inst.symbol)

        keyed = []
        for base, insts in groups.items():
            base_rank = PREFERRED_BASES.index(base) if base in PREFERRED_BASES else 99
            for k, inst in enumerate(sorted(insts, key=rank)):
                keyed.append(((k, base_rank, base, *rank(inst)), inst.symbol))
        out[venue] = [symbol for _, symbol in sorted(keyed)[:books_per_venue]]
    return out


# --- the exchange process --------------------------------------------------------------------
def exchange_main(conn: Connection, symbols: dict[str, list[str]], levels: int, seed: int) -> None:
    """Entry point of the exchange process: serve the books, obey the pipe."""
    _common.quiet_logs()
    asyncio.run(_exchange(conn, symbols, levels, seed))


def _exchange_stats(sim: Any) -> dict[str, Any]:
    open_connections = [c for c in sim.connections if not c.closed]
    return {
        "t_ns": time.time_ns(),
        "updates": sim.updates_sent,
        "frames_sent": sum(c.sent for c in sim.connections),
        "frames_queued": sum(c.queue.qsize() for c in open_connections),
        "write_buffer_bytes": sum(
            c.transport.get_write_buffer_size()
            for c in open_connections
            if c.transport is not None and not c.transport.is_closing()
        ),
        "connections": len(open_connections),
        "cpu_s": cpu_s(),
        "rss_kib": rss_kib(),
    }


async def _exchange(
    conn: Connection, symbols: dict[str, list[str]], levels: int, seed: int
) -> None:
    from feeds.sim.base import ExchangeSim  # noqa: PLC0415
    from feeds.sim.exchange import add_books, all_protocols  # noqa: PLC0415
    from monitor.domain import Venue  # noqa: PLC0415
    from monitor.instruments import InstrumentRegistry  # noqa: PLC0415

    wanted = {Venue(v): names for v, names in symbols.items()}
    registry = InstrumentRegistry.load_cached(list(wanted))
    sim = ExchangeSim(all_protocols(list(wanted)), seed=seed)
    for venue, names in wanted.items():
        add_books(sim, registry, venue, names, levels=levels)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the monitor process is gone
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("close", None))

    market: asyncio.Future[None] | None = None
    async with sim:
        conn.send(("ready", sim.port))
        loop.add_reader(conn.fileno(), readable)
        while True:
            command, arg = await inbox.get()
            if command == "market":
                market = asyncio.ensure_future(sim.run_market(float(arg)))
                conn.send(_exchange_stats(sim))
            elif command == "stats":
                conn.send(_exchange_stats(sim))
            elif command == "stop":
                if market is not None:
                    market.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await market
                await sim.wait_for(
                    lambda: all(c.queue.empty() for c in sim.open_connections()), timeout_s=120.0
                )
                conn.send(_exchange_stats(sim))
            elif command == "tops":
                conn.send(
                    [
                        (
                            book.venue.value,
                            book.symbol,
                            book.price_decimals,
                            book.qty_decimals,
                            book.top_bids(TOP_LEVELS),
                            book.top_asks(TOP_LEVELS),
                            len(book.bids),
                            len(book.asks),
                        )
                        for book in sim.books.values()
                    ]
                )
            elif command == "close":
                with contextlib.suppress(OSError):
                    loop.remove_reader(conn.fileno())
                return


class ExchangeClient:
    """The monitor side of the pipe: one request, one answer, without blocking the loop."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()

    async def ask(self, command: str, arg: Any = None, timeout_s: float = 30.0) -> Any:
        async with self._lock:
            self.conn.send((command, arg))
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(self.conn.fileno(), readable)
            try:
                async with asyncio.timeout(timeout_s):
                    await ready
            finally:
                loop.remove_reader(self.conn.fileno())
            return self.conn.recv()


# --- latency ---------------------------------------------------------------------------------
class Histogram:
    """Counts of latencies (ns) in 1 % wide log bins from 1 µs to 100 s: fixed memory."""

    LOW_NS = 1_000.0
    GROWTH = 1.01
    BINS = math.ceil(math.log(1e8) / math.log(1.01)) + 1

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS, dtype=np.int64)
        self.n = 0
        self.sum_ns = 0.0
        self.max_ns = 0
        self.negative = 0  # below zero (an event stamp rounded past the receipt)

    def add(self, latencies_ns: np.ndarray) -> None:
        if not len(latencies_ns):
            return
        self.n += len(latencies_ns)
        self.sum_ns += float(latencies_ns.sum())
        self.max_ns = max(self.max_ns, int(latencies_ns.max()))
        self.negative += int((latencies_ns < 0).sum())
        x = np.maximum(latencies_ns, self.LOW_NS) / self.LOW_NS
        idx = np.minimum((np.log(x) / math.log(self.GROWTH)).astype(np.int64), self.BINS - 1)
        self.counts += np.bincount(idx, minlength=self.BINS)

    def quantile_ns(self, q: float) -> float:
        if not self.n:
            return math.nan
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n))
        return min(self.LOW_NS * self.GROWTH ** (i + 1), float(self.max_ns))

    def summary_ms(self) -> dict[str, float]:
        return {
            "count": self.n,
            "p50_ms": self.quantile_ns(0.5) / 1e6,
            "p99_ms": self.quantile_ns(0.99) / 1e6,
            "p999_ms": self.quantile_ns(0.999) / 1e6,
            "max_ms": self.max_ns / 1e6,
            "mean_ms": self.sum_ns / self.n / 1e6 if self.n else math.nan,
            "negative": self.negative,
        }


class Probe:
    """Hooks on one Daemon's instances: latencies, time in the book path and the tick, GC."""

    def __init__(self, daemon: Any) -> None:
        from monitor.book.layout import S_MESSAGES, S_TS_EVENT, S_TS_RECV  # noqa: PLC0415

        self.daemon = daemon
        self.recording = False
        self.book = Histogram()
        self.metric = Histogram()
        self.transport = Histogram()
        self.tick = Histogram()
        self.flushes = 0
        self.flush_ns = 0  # inside Daemon._flush_pending: decode + sync + apply
        self.ticks = 0
        self.tick_ns = 0  # inside BookPipeline.tick
        self.bench_ns = 0  # the hooks' own bookkeeping and the drains
        self.slowest_ticks: list[tuple[float, float]] = []  # (ms, s into the window), top 5
        self.gc_count = [0, 0, 0]
        self.gc_ns = [0, 0, 0]
        self.gc_max_ns = [0, 0, 0]
        self._gc_t0 = 0
        self._t_start = 0.0
        self._cols = (S_MESSAGES, S_TS_EVENT, S_TS_RECV)
        # raw stamps since the last drain (bounded by DRAIN_S of traffic)
        self._recv: list[int] = []  # recv_ns of every flushed frame
        self._flushed: list[tuple[int, int]] = []  # (time after the flush, frames in it)
        self._since_tick: list[int] = []  # recv_ns of frames flushed since the last tick
        self._metric_recv: list[int] = []
        self._metric_done: list[tuple[int, int]] = []
        self._last_messages: np.ndarray | None = None
        self._book_ids: np.ndarray | None = None
        original = daemon._flush_pending  # the end of a turn, or a full burst
        pending = daemon._pending  # frames of this turn, with their recv_ns
        clock = time.perf_counter_ns
        wall = time.time_ns

        def flush() -> int:
            t0 = clock()
            stamps: list[int] = []
            for _frames, recv in pending.values():
                stamps.extend(recv)
            t1 = clock()
            applied = original()
            t2 = clock()
            done = wall()
            if stamps:
                self._recv.extend(stamps)
                self._flushed.append((done, len(stamps)))
                self._since_tick.extend(stamps)
            self.flushes += 1
            self.flush_ns += t2 - t1
            self.bench_ns += (t1 - t0) + (clock() - t2)
            return applied

        daemon._flush_pending = flush

    def hook_pipeline(self, pipeline: Any) -> None:
        original = pipeline.tick
        clock = time.perf_counter_ns

        def tick(now_ns: int) -> Any:
            t0 = clock()
            rows = original(now_ns)
            took = clock() - t0
            self.tick_ns += took
            self.ticks += 1
            if self.recording:
                b0 = clock()
                self.tick.add(np.array([took], dtype=np.int64))
                slow = self.slowest_ticks
                slow.append((took / 1e6, time.monotonic() - self._t_start))
                slow.sort(reverse=True)
                del slow[5:]
                self.bench_ns += clock() - b0
            return rows

        pipeline.tick = tick
        self._book_ids = np.array([i.book for i in pipeline._by_id], dtype=np.int64)

    def on_tick(self, _sample: Any) -> None:
        done = time.time_ns()
        t0 = time.perf_counter_ns()
        if self._since_tick:
            self._metric_recv.extend(self._since_tick)
            self._metric_done.append((done, len(self._since_tick)))
            self._since_tick.clear()
        pipeline = self.daemon.pipeline
        if pipeline is not None and self._book_ids is not None:
            s_messages, s_ts_event, s_ts_recv = self._cols
            st = pipeline.store.istate
            messages = st[self._book_ids, s_messages]
            if self._last_messages is not None and self.recording:
                changed = self._book_ids[messages != self._last_messages]
                event = st[changed, s_ts_event]
                recv = st[changed, s_ts_recv]
                has = event > 0
                self.transport.add(recv[has] - event[has])
            self._last_messages = messages.copy()
        self.bench_ns += time.perf_counter_ns() - t0

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter_ns()
            return
        took = time.perf_counter_ns() - self._gc_t0
        if self.recording:
            gen = info["generation"]
            self.gc_count[gen] += 1
            self.gc_ns[gen] += took
            self.gc_max_ns[gen] = max(self.gc_max_ns[gen], took)

    def drain(self) -> None:
        t0 = time.perf_counter_ns()
        for recv, done, hist in (
            (self._recv, self._flushed, self.book),
            (self._metric_recv, self._metric_done, self.metric),
        ):
            if recv and self.recording:
                ends = np.repeat(
                    np.fromiter((d for d, _ in done), np.int64, len(done)),
                    np.fromiter((n for _, n in done), np.int64, len(done)),
                )
                hist.add(ends - np.array(recv, dtype=np.int64))
            recv.clear()
            done.clear()
        self.bench_ns += time.perf_counter_ns() - t0

    def start_recording(self) -> None:
        self.drain()
        self.recording = True
        self._t_start = time.monotonic()
        self.flushes = self.ticks = 0
        self.flush_ns = self.tick_ns = self.bench_ns = 0
        gc.callbacks.append(self._gc)

    def stop_recording(self) -> None:
        self.drain()
        self.recording = False
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc)

    def gc_summary(self) -> list[dict[str, float]]:
        return [
            {
                "generation": g,
                "collections": self.gc_count[g],
                "total_ms": self.gc_ns[g] / 1e6,
                "max_ms": self.gc_max_ns[g] / 1e6,
            }
            for g in range(3)
        ]


# --- the monitor (this process) --------------------------------------------------------------
def frames_received(health: dict[str, dict[str, Any]]) -> int:
    return sum(int(state["frames"]) for state in health.values())


async def _until(predicate: Callable[[], bool], timeout_s: float, task: asyncio.Task[Any]) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            if task.done():
                task.result()
                raise RuntimeError("the daemon stopped")
            await asyncio.sleep(0.05)


def _census() -> Counter[str]:
    """gc-tracked objects by type name."""
    return Counter(type(o).__name__ for o in gc.get_objects())


def _others_s(a: dict[str, Any], b: dict[str, Any]) -> float:
    """CPU seconds other processes used between two samples."""
    machine = b["machine_process_s"] - a["machine_process_s"]
    return machine - (b["cpu_s"] - a["cpu_s"]) - (b["ex_cpu_s"] - a["ex_cpu_s"])


def _slope_per_min(t_s: Sequence[float], y: Sequence[float]) -> float:
    if len(t_s) < 2:
        return math.nan
    return float(np.polyfit(np.asarray(t_s) / 60.0, np.asarray(y), 1)[0])


async def soak(
    args: argparse.Namespace, exchange: ExchangeClient, port: int, symbols: dict[Any, list[str]]
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    from feeds.sim.base import SimBook  # noqa: PLC0415
    from feeds.sim.exchange import settings_toml  # noqa: PLC0415
    from feeds.venues import ADAPTERS  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415
    from monitor.domain import Venue  # noqa: PLC0415
    from monitor.settings import load_settings  # noqa: PLC0415
    from tests.e2e.harness import book_matches  # noqa: PLC0415

    extra = "[monitor]\n" + (f"tick_ms = {args.tick_ms}\n" if args.tick_ms else "")
    extra += "[connection]\n" + _common.live_connection_toml(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "soak.toml"
        path.write_text(settings_toml(symbols, port=port, extra=extra))
        settings = load_settings([path], env={})
    n_books = sum(len(v) for v in symbols.values())
    async with aiohttp.ClientSession() as http:
        daemon = Daemon(settings, http, ADAPTERS, health_interval_s=3600.0)
        probe = Probe(daemon)
        daemon.on_tick = probe.on_tick
        task = asyncio.ensure_future(daemon.run())

        async def drain_loop() -> None:
            while True:
                await asyncio.sleep(DRAIN_S)
                probe.drain()

        drainer = asyncio.ensure_future(drain_loop())
        try:
            t_start = time.monotonic()
            await _until(lambda: daemon.pipeline is not None, 30.0, task)
            probe.hook_pipeline(daemon.pipeline)

            def all_valid() -> bool:
                return all(s["valid_books"] == s["books"] for s in daemon.health_state().values())

            # the market runs from the start: REST venues fetch their snapshots once deltas flow
            await exchange.ask("market", args.rate)
            await _until(all_valid, 60.0, task)
            startup_s = time.monotonic() - t_start
            print(
                f"{n_books} books valid after {startup_s:.1f} s, market at {args.rate:,.0f} "
                f"updates/s; warm-up {args.warmup_s:.0f} s",
                flush=True,
            )
            await asyncio.sleep(args.warmup_s)

            samples: list[dict[str, Any]] = []

            async def sample() -> dict[str, Any]:
                t0 = time.perf_counter_ns()
                health = daemon.health_state()
                probe.bench_ns += time.perf_counter_ns() - t0
                ex = await exchange.ask("stats")
                machine_process_s, machine_irq_s = machine_cpu_s()
                row = {
                    "t_s": time.monotonic(),
                    "frames": frames_received(health),
                    "valid_books": sum(s["valid_books"] for s in health.values()),
                    "cpu_s": cpu_s(),
                    "rss_kib": rss_kib(),
                    "blocks": sys.getallocatedblocks(),
                    "machine_process_s": machine_process_s,
                    "machine_irq_s": machine_irq_s,
                    **memory_kib(),
                    "ex_frames_sent": ex["frames_sent"],
                    "ex_frames_queued": ex["frames_queued"],
                    "ex_write_buffer_bytes": ex["write_buffer_bytes"],
                    "ex_updates": ex["updates"],
                    "ex_cpu_s": ex["cpu_s"],
                    "ex_rss_kib": ex["rss_kib"],
                }
                samples.append(row)
                return row

            census_start = _census()  # before the first RSS sample: its list is transient
            probe.start_recording()
            first = await sample()
            end_at = first["t_s"] + args.minutes * 60.0
            stopped_early = None
            last = first
            while last["t_s"] < end_at:
                await asyncio.sleep(min(args.sample_s, max(0.0, end_at - time.monotonic())))
                prev, last = last, await sample()
                dt = last["t_s"] - prev["t_s"]
                rate = (last["frames"] - prev["frames"]) / dt
                sent = (
                    last["ex_frames_sent"]
                    + last["ex_frames_queued"]
                    - prev["ex_frames_sent"]
                    - prev["ex_frames_queued"]
                ) / dt
                print(
                    f"  {last['t_s'] - first['t_s']:6.0f} s  {rate:9,.0f} frames/s handled "
                    f"({sent:9,.0f} made by the exchange, {last['ex_frames_queued']:,} queued there)  "
                    f"cpu {100 * (last['cpu_s'] - prev['cpu_s']) / dt:5.1f} %  "
                    f"exchange cpu {100 * (last['ex_cpu_s'] - prev['ex_cpu_s']) / dt:5.1f} %  "
                    f"others {100 * _others_s(prev, last) / dt:5.1f} %  "
                    f"rss {last['rss_kib'] / 1024:7.1f} MiB  valid {last['valid_books']}/{n_books}",
                    flush=True,
                )
                if last["ex_frames_queued"] > BACKLOG_LIMIT:
                    stopped_early = f"exchange backlog {last['ex_frames_queued']:,} frames"
                    print(f"stopping early: {stopped_early}", flush=True)
                    break
            probe.stop_recording()
            census_end = _census()  # after the last RSS sample, before the checks' objects
            window = {
                "flushes": probe.flushes,
                "flush_s": probe.flush_ns / 1e9,
                "ticks": probe.ticks,
                "tick_s": probe.tick_ns / 1e9,
                "bench_s": probe.bench_ns / 1e9,
            }

            # --- drain and verify ---------------------------------------------------------
            stop = await exchange.ask("stop", timeout_s=180.0)
            await _until(
                lambda: frames_received(daemon.health_state()) >= stop["frames_sent"], 180.0, task
            )
            daemon._flush()
            health = daemon.health_state()
            tops = await exchange.ask("tops")
            pipeline = daemon.pipeline
            assert pipeline is not None
            mismatched = []
            exchange_levels = []
            for venue, symbol, px_dec, qty_dec, bids, asks, n_bid, n_ask in tops:
                sim_book = SimBook(
                    Venue(venue), symbol, px_dec, qty_dec, bids=dict(bids), asks=dict(asks)
                )
                exchange_levels.append(n_bid + n_ask)
                if not book_matches(pipeline, sim_book, depth=TOP_LEVELS):
                    mismatched.append(f"{venue}:{symbol}")
            summaries = pipeline.book_summaries(depth=0)
        finally:
            drainer.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(asyncio.CancelledError):
                await drainer

    # --- figures ----------------------------------------------------------------------------
    end = samples[-1]
    wall_s = end["t_s"] - first["t_s"]
    frames = end["frames"] - first["frames"]
    made = (end["ex_frames_sent"] + end["ex_frames_queued"]) - (
        first["ex_frames_sent"] + first["ex_frames_queued"]
    )
    cpu = end["cpu_s"] - first["cpu_s"]
    t_rel = [s["t_s"] - first["t_s"] for s in samples]
    rss_mib = [s["rss_kib"] / 1024 for s in samples]
    ex_rss_mib = [s["ex_rss_kib"] / 1024 for s in samples]
    per_interval_cpu = [
        100 * (b["cpu_s"] - a["cpu_s"]) / (b["t_s"] - a["t_s"])
        for a, b in itertools.pairwise(samples)
    ]
    per_interval_ratio = [
        (b["frames"] - a["frames"])
        / max(
            1,
            b["ex_frames_sent"]
            + b["ex_frames_queued"]
            - a["ex_frames_sent"]
            - a["ex_frames_queued"],
        )
        for a, b in itertools.pairwise(samples)
    ]
    checks = {
        "books": len(summaries),
        "valid_books": sum(1 for s in summaries if s["valid"]),
        "gaps": sum(s["gaps"] for s in summaries),
        "checksum_failed": sum(s["checksum_failed"] for s in summaries),
        "checksum_ok": sum(s["checksum_ok"] for s in summaries),
        "resyncs": sum(s["resyncs"] for s in summaries),
        "crossed": sum(s["crossed"] for s in summaries),
        "truncated_books": sum(1 for s in summaries if s["truncated"]),
        "truncated": [f"{s['venue']}:{s['symbol']}" for s in summaries if s["truncated"]],
        "rejected": sum(s["rejected"] for s in summaries),
        "disconnects": sum(int(h["disconnects"]) for h in health.values()),
        "errors": sum(int(h["errors"]) for h in health.values()),
        "stale": sum(int(h["stale"]) for h in health.values()),
        "top_levels_equal_exchange": len(summaries) - len(mismatched),
        "mismatched": mismatched,
        "frames_sent_by_exchange": stop["frames_sent"],
        "frames_received": frames_received(health),
        "exchange_levels_max": max(exchange_levels) if exchange_levels else 0,
        "counters": {
            f"{venue}.{k}": v for venue, h in health.items() for k, v in h["counters"].items() if v
        },
        "gaps_by_venue": {venue: int(h["gaps"]) for venue, h in health.items() if h["gaps"]},
        "frames_by_venue": {venue: int(h["frames"]) for venue, h in health.items()},
    }
    slope = _slope_per_min(t_rel, rss_mib)
    if wall_s / 60.0 >= RSS_JUDGED_AFTER_MIN:
        checks["rss_flat"] = bool(slope <= RSS_FLAT_MIB_PER_MIN)
    checks["ok"] = (
        checks["valid_books"] == checks["books"] == n_books
        and checks["gaps"] == 0
        and checks["checksum_failed"] == 0
        and checks["resyncs"] == 0
        and not mismatched
        and checks["disconnects"] == 0
        and checks["errors"] == 0
        and checks.get("rss_flat", True)
    )
    return {
        "books": n_books,
        "symbols": {v.value: names for v, names in symbols.items()},
        "startup_s": startup_s,
        "rate_target": args.rate,
        "measured_s": wall_s,
        "stopped_early": stopped_early,
        "frames_handled": frames,
        "frames_made_by_exchange": made,
        "handled_per_s": frames / wall_s,
        "made_per_s": made / wall_s,
        "handled_over_sent": frames / made if made else math.nan,
        "handled_over_sent_min_interval": min(per_interval_ratio)
        if per_interval_ratio
        else math.nan,
        "exchange_updates_per_s": (end["ex_updates"] - first["ex_updates"]) / wall_s,
        "exchange_backlog_end": end["ex_frames_queued"],
        "exchange_backlog_max": max(s["ex_frames_queued"] for s in samples),
        "exchange_write_buffer_max_bytes": max(s["ex_write_buffer_bytes"] for s in samples),
        "cpu_pct": 100 * cpu / wall_s,
        "cpu_pct_max_interval": max(per_interval_cpu) if per_interval_cpu else math.nan,
        "cpu_us_per_frame": 1e6 * cpu / frames if frames else math.nan,
        "book_path_us_per_frame": 1e6 * window["flush_s"] / frames if frames else math.nan,
        "tick_us_per_frame": 1e6 * window["tick_s"] / frames if frames else math.nan,
        "bench_hooks_us_per_frame": 1e6 * window["bench_s"] / frames if frames else math.nan,
        "frames_per_flush": frames / window["flushes"] if window["flushes"] else math.nan,
        "exchange_cpu_pct": 100 * (end["ex_cpu_s"] - first["ex_cpu_s"]) / wall_s,
        "other_processes_cpu_pct": 100 * _others_s(first, end) / wall_s,
        "other_processes_cpu_pct_max_interval": max(
            (100 * _others_s(a, b) / (b["t_s"] - a["t_s"]) for a, b in itertools.pairwise(samples)),
            default=math.nan,
        ),
        "interrupts_cpu_pct": 100 * (end["machine_irq_s"] - first["machine_irq_s"]) / wall_s,
        "rss_start_mib": rss_mib[0],
        "rss_end_mib": rss_mib[-1],
        "rss_max_mib": max(rss_mib),
        "rss_slope_mib_per_min": slope,
        "exchange_rss_start_mib": ex_rss_mib[0],
        "exchange_rss_end_mib": ex_rss_mib[-1],
        "latency": {
            "frame_to_book": probe.book.summary_ms(),
            "frame_to_metric": probe.metric.summary_ms(),
            "exchange_event_to_receipt": probe.transport.summary_ms(),
            "tick": probe.tick.summary_ms(),
        },
        "slowest_ticks": [{"ms": ms, "at_s": at} for ms, at in probe.slowest_ticks],
        "gc": probe.gc_summary(),
        "gc_objects_start": sum(census_start.values()),
        "gc_objects_end": sum(census_end.values()),
        "gc_objects_growth_by_type": dict(
            sorted(
                ((k, n - census_start.get(k, 0)) for k, n in census_end.items()),
                key=lambda kv: -kv[1],
            )[:10]
        ),
        "allocated_blocks_start": samples[0]["blocks"],
        "allocated_blocks_end": samples[-1]["blocks"],
        "allocated_blocks_slope_per_min": _slope_per_min(t_rel, [s["blocks"] for s in samples]),
        "memory_growth_kib": {
            key: samples[-1][key] - samples[0][key]
            for key in (
                "rss_kib",
                "rss_anon_kib",
                "rss_file_kib",
                "malloc_in_use_kib",
                "malloc_free_kib",
            )
        },
        "tick_ms": settings.monitor.tick_ms,
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "batch_window_ms": settings.connection.batch_window_ms,
        "batch_min_frames": settings.connection.batch_min_frames,
        "coalesce_bytes": settings.connection.coalesce_bytes if daemon.coalescer.enabled else 0,
        "coalesce_ms": settings.connection.coalesce_ms,
        "coalesce_releases": daemon.coalescer.releases,
        "window": window,
        "checks": checks,
        "samples": samples,
    }


def report(r: dict[str, Any]) -> None:
    lat = r["latency"]
    print("\n== soak: the live monitor (Daemon) against every venue of the local exchange")
    print(
        f"  {r['books']} books over {len(r['symbols'])} venues, {r['measured_s']:.0f} s measured "
        f"after warm-up, target {r['rate_target']:,.0f} updates/s, tick {r['tick_ms']} ms"
    )
    print(
        f"  event loop {r['event_loop']}, batch window {r['batch_window_ms']} ms, "
        f"batch min frames {r['batch_min_frames']}, coalesce {r['coalesce_bytes']} bytes "
        f"or {r['coalesce_ms']} ms ({r['coalesce_releases']:,} sockets released)"
    )
    rows = [
        ("frames handled per second", r["handled_per_s"], "frames/s", None),
        ("frames made per second by the exchange", r["made_per_s"], "frames/s", None),
        ("handled / made (1.00 = keeps up)", r["handled_over_sent"], "ratio", None),
        ("  worst sample interval", r["handled_over_sent_min_interval"], "ratio", None),
        (
            "frames queued in the exchange at end",
            r["exchange_backlog_end"],
            "frames",
            f"max {r['exchange_backlog_max']:,}; transport buffers max {r['exchange_write_buffer_max_bytes']:,} B",
        ),
        (
            "monitor CPU (user+sys, % of one core)",
            r["cpu_pct"],
            "%",
            f"max 5 s interval {r['cpu_pct_max_interval']:.1f} %",
        ),
        ("monitor CPU per frame", r["cpu_us_per_frame"], "us", None),
        (
            "  of which book path (decode+sync+apply)",
            r["book_path_us_per_frame"],
            "us",
            f"whole process x{r['cpu_us_per_frame'] / r['book_path_us_per_frame']:.2f} the book path",
        ),
        ("  of which metric tick", r["tick_us_per_frame"], "us", None),
        ("  of which bench hooks", r["bench_hooks_us_per_frame"], "us", None),
        (
            "  rest: websockets, asyncio, sessions",
            r["cpu_us_per_frame"]
            - r["book_path_us_per_frame"]
            - r["tick_us_per_frame"]
            - r["bench_hooks_us_per_frame"],
            "us",
            None,
        ),
        ("frames per flush (the reads of a batch window)", r["frames_per_flush"], "frames", None),
        ("exchange process CPU", r["exchange_cpu_pct"], "%", None),
        (
            "other processes' CPU on the machine (+-10)",
            r["other_processes_cpu_pct"],
            "%",
            f"max 5 s interval {r['other_processes_cpu_pct_max_interval']:.1f} %; /proc/stat is tick-sampled",
        ),
        ("interrupts (irq + softirq: loopback TCP)", r["interrupts_cpu_pct"], "%", None),
        ("RSS at start of window", r["rss_start_mib"], "MiB", None),
        ("RSS at end", r["rss_end_mib"], "MiB", f"max {r['rss_max_mib']:.1f}"),
        ("RSS slope (least squares over samples)", r["rss_slope_mib_per_min"], "MiB/min", None),
    ]
    for name, key in (
        ("frame -> book", "frame_to_book"),
        ("frame -> metric", "frame_to_metric"),
        ("exchange event -> receipt", "exchange_event_to_receipt"),
        ("tick duration", "tick"),
    ):
        s = lat[key]
        rows.append((f"{name} p50", s["p50_ms"], "ms", None))
        rows.append(
            (f"{name} p99", s["p99_ms"], "ms", f"max {s['max_ms']:.2f} ms, n {s['count']:,}")
        )
    _common.print_rows(
        "soak", [{"name": n, "value": v, "unit": u, "note": note} for n, v, u, note in rows]
    )
    gcs = ", ".join(
        f"gen{g['generation']} {g['collections']:,} ({g['total_ms']:.0f} ms, max {g['max_ms']:.1f} ms)"
        for g in r["gc"]
    )
    print(f"\n  gc pauses in the window: {gcs}")
    growth = ", ".join(f"{k} {v:+,}" for k, v in r["gc_objects_growth_by_type"].items() if v)
    print(
        f"  gc-tracked objects {r['gc_objects_start']:,} -> {r['gc_objects_end']:,} "
        f"({growth or 'no type grew'}); pymalloc blocks {r['allocated_blocks_start']:,} -> "
        f"{r['allocated_blocks_end']:,} (slope {r['allocated_blocks_slope_per_min']:+,.0f}/min)"
    )
    g = r["memory_growth_kib"]
    print(
        f"  RSS growth over the window {g['rss_kib']:+,} KiB: anonymous {g['rss_anon_kib']:+,}, "
        f"file-backed {g['rss_file_kib']:+,}; malloc in use {g['malloc_in_use_kib']:+,}, "
        f"free inside malloc's heaps {g['malloc_free_kib']:+,}"
    )
    print(
        "  slowest ticks: "
        + ", ".join(f"{t['ms']:.1f} ms at {t['at_s']:.0f} s" for t in r["slowest_ticks"])
    )
    c = r["checks"]
    print(
        f"\n  end: {c['valid_books']}/{c['books']} books valid, gaps {c['gaps']}, checksum failures "
        f"{c['checksum_failed']} (ok {c['checksum_ok']:,}), resyncs {c['resyncs']}, disconnects "
        f"{c['disconnects']}, errors {c['errors']}, top {TOP_LEVELS} levels equal to the exchange's: "
        f"{c['top_levels_equal_exchange']}/{c['books']}, frames {c['frames_received']:,} received "
        f"/ {c['frames_sent_by_exchange']:,} sent; truncated books {c['truncated_books']}, "
        f"exchange book levels max {c['exchange_levels_max']} (both sides)"
    )
    if c["counters"]:
        print(f"  pipeline counters: {c['counters']}")
    if "rss_flat" in c:
        print(
            f"  RSS {'flat' if c['rss_flat'] else 'GROWING'} (slope {r['rss_slope_mib_per_min']:+.3f} "
            f"MiB/min; flat: <= {RSS_FLAT_MIB_PER_MIN} MiB/min)"
        )
    else:
        print(f"  RSS slope not judged: windows under {RSS_JUDGED_AFTER_MIN:g} min are too noisy")
    if c["truncated"]:
        print(
            f"  truncated (levels beyond the book's capacity dropped): {', '.join(c['truncated'])}"
        )
    if r["made_per_s"] < 0.98 * r["rate_target"] or r["exchange_cpu_pct"] > 90:
        print(
            f"  NOTE: the exchange made {r['exchange_updates_per_s']:,.0f} of {r['rate_target']:,.0f} "
            f"updates/s at {r['exchange_cpu_pct']:.0f} % CPU: the exchange, not the monitor, "
            "limits the rate"
        )
    if c["mismatched"]:
        print(f"  MISMATCHED: {c['mismatched']}")
    print(
        f"  verdict: {'OK' if c['ok'] else 'FAILED'}"
        + (f" (stopped early: {r['stopped_early']})" if r["stopped_early"] else "")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="measured window (after warm-up)")
    ap.add_argument(
        "--rate", type=float, default=5000.0, help="updates/s over all books (one frame each)"
    )
    ap.add_argument("--books-per-venue", type=int, default=5)
    ap.add_argument("--levels", type=int, default=50, help="initial levels a side per book")
    ap.add_argument("--warmup-s", type=float, default=30.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--tick-ms", type=int, default=None, help="default: config/default.toml")
    ap.add_argument("--seed", type=int, default=7)
    _common.add_live_arguments(ap)
    ap.add_argument("--out", "--json", dest="out", default=str(_common.RESULTS / "soak.json"))
    args = ap.parse_args(argv)
    _common.quiet_logs()
    machine = _common.machine()
    print(
        f"machine: {machine['cpu']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"loadavg {' '.join(machine['loadavg'])}",
        flush=True,
    )
    symbols = choose_symbols(args.books_per_venue)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(
        target=exchange_main,
        args=(child, {v.value: names for v, names in symbols.items()}, args.levels, args.seed),
        name="liqmon-soak-exchange",
        daemon=True,
    )
    process.start()
    child.close()
    try:
        if not parent.poll(60.0):
            raise RuntimeError("the exchange process did not start")
        _, port = parent.recv()
        from monitor.cli import loop_runner  # noqa: PLC0415

        result = loop_runner(args.loop)(soak(args, ExchangeClient(parent), port, symbols))
        with contextlib.suppress(OSError):
            parent.send(("close", None))
        process.join(10.0)
    finally:
        if process.is_alive():
            process.terminate()
            process.join(5.0)
    result["machine"] = machine
    result["loadavg_end"] = _common.machine()["loadavg"]
    result["command"] = " ".join(
        ["python -m bench.soak", *(argv if argv is not None else sys.argv[1:])]
    )
    report(result)
    _common.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
