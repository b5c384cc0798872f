"""Blast: the live path (socket -> parse -> book, with the tick running) on one core, against
bare websocket receive loops in the same run.

Two OS processes, so that neither is charged the other's CPU:

- the *server* (``multiprocessing``, spawn): a bare asyncio websocket server (RFC 6455
  handshake, no extension) that serves the frames of bench/corpus.py (real Binance spot and
  USD-M depth diffs from tests/recordings, 54 replicas of each recorded book, ids
  re-chained) per venue protocol: a connection to ``/binance/...`` gets the spot diffs,
  ``/binance_futures/...`` the USD-M diffs. Every frame is encoded once, up front; the
  server writes the encoded stream in 256 KiB chunks (``--rate 0``: as fast as the socket
  takes them) or paced every millisecond at a given frames/s. Its CPU per run is reported,
  so that "the server was not the limit" is a figure: a bare client must go faster than
  liqmon.
- the *clients*, in this process, one at a time, each in *rounds* (every client once per
  round, so a burst of load from another process hits them alike):
  - ``websockets``: ``async for`` over a websockets 17 connection, counting frames;
  - ``aiohttp``: ``ws_connect`` + ``receive()`` loop, counting frames;
  - ``picows`` (if importable, ``--peers DIR`` adds a directory to sys.path): a listener
    counting ``on_ws_frame`` calls;
  - ``liqmon``: a :class:`monitor.daemon.Daemon` built as ``liqmon run`` builds it (settings
    file, adapters, pipeline from the settings, its session, its batching, its tick loop
    every ``tick_ms``), its books loaded first from the corpus's REST snapshots (as the
    snapshot loop would), then the connection run through the daemon's own
    ``_run_connection``, its tick loop and its read coalescer. At the end every book must be valid with 0 gaps and 0 resyncs, or
    the run fails.

Per client: frames/s from connect to the last frame, CPU per frame (``getrusage`` of this
process, user + system), and for liqmon: GC pauses (``gc.callbacks``) and, at a paced rate,
frame -> book latency: the server starts the stream at ``t0`` and sends frame ``i`` at
``t0 + i / rate`` (clock ``time.time_ns``, same machine), and the bench wraps
``Daemon._flush`` to note when each frame is applied. The latency includes the socket
buffers and every queue on the client, not just the time after ``recv``.

Run: ``python bench/blast.py`` (``--rounds 3 --venues binance_futures,binance``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHUNK = 256 * 1024
# the [connection] lines of --batch-window-ms, --batch-min-frames, --coalesce-bytes, --coalesce-ms
CONNECTION_TOML = ""
TICK_MS: int | None = None  # --tick-ms: liqmon's [monitor] tick_ms (None: the shipped 1000)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --- server ---------------------------------------------------------------------------------
def _encode(frames: list[bytes]) -> tuple[bytes, list[int]]:
    """Server-to-client text frames (unmasked), concatenated; offsets[i] = start of frame i."""
    parts: list[bytes] = []
    offsets = [0]
    pos = 0
    for data in frames:
        n = len(data)
        if n < 126:
            head = bytes((0x81, n))
        elif n < 65536:
            head = bytes((0x81, 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 127)) + n.to_bytes(8, "big")
        parts.append(head)
        parts.append(data)
        pos += len(head) + n
        offsets.append(pos)
    return b"".join(parts), offsets


class _Server:
    def __init__(self, streams: dict[str, tuple[bytes, list[int]]]) -> None:
        self.streams = streams
        self.current = ""  # the stream the next connection gets
        self.expect = 0  # client text frames (subscriptions) to wait for before streaming
        self.limit = 0  # frames to send (0: the whole stream)
        self.rate = 0.0
        self.t0_ns: list[int] = []
        self.writes: list[tuple[int, int]] = []  # paced: (time written, frames sent so far)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        key = next(
            line.split(":", 1)[1].strip()
            for line in lines
            if line.lower().startswith("sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        del path  # every connection gets the current stream, whatever the venue's path
        blob, offsets = self.streams[self.current]
        n = min(self.limit or len(offsets) - 1, len(offsets) - 1)
        subscribed = asyncio.Event()
        drain = asyncio.ensure_future(self._discard(reader, writer, self.expect, subscribed))
        view = memoryview(blob)
        rate = self.rate
        try:
            await subscribed.wait()  # the stream starts once the client subscribed
            t0 = time.time_ns()
            self.t0_ns.append(t0)
            if rate <= 0:
                end = offsets[n]
                for i in range(0, end, CHUNK):
                    writer.write(view[i : min(end, i + CHUNK)])
                    await writer.drain()
            else:
                sent = 0
                writes = self.writes = []
                while sent < n:
                    due = min(n, int((time.time_ns() - t0) * rate / 1e9) + 1)
                    if due > sent:
                        writer.write(view[offsets[sent] : offsets[due]])
                        writes.append((time.time_ns(), due))
                        sent = due
                        await writer.drain()
                    await asyncio.sleep(0.001)
            await drain  # until the client closes
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            drain.cancel()
            writer.close()

    @staticmethod
    async def _discard(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        expect: int,
        subscribed: asyncio.Event,
    ) -> None:
        """Read the client's frames (subscribes, pings); set ``subscribed`` after ``expect``
        text frames; answer its close frame."""
        texts = 0
        if expect <= 0:
            subscribed.set()
        buf = b""
        while data := await reader.read(65536):
            buf += data
            while len(buf) >= 2:
                n = buf[1] & 0x7F
                at = 2
                if n == 126:
                    n, at = int.from_bytes(buf[2:4], "big"), 4
                elif n == 127:
                    n, at = int.from_bytes(buf[2:10], "big"), 10
                end = at + (4 if buf[1] & 0x80 else 0) + n
                if len(buf) < end:
                    break
                if buf[0] & 0x0F == 8:
                    writer.write(b"\x88\x02\x03\xe8")
                    return
                if buf[0] & 0x0F == 1:
                    texts += 1
                    if texts >= expect:
                        subscribed.set()
                buf = buf[end:]


def server_main(conn: Connection, path: str) -> None:
    """The server process: the streams (``{name: frames}``, pickled at ``path``) encoded."""
    import pickle  # noqa: PLC0415

    with open(path, "rb") as f:
        frames: dict[str, list[bytes]] = pickle.load(f)
    streams = {name: _encode(items) for name, items in frames.items()}
    del frames

    async def main() -> None:
        server = _Server(streams)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=64)
        port = listener.sockets[0].getsockname()[1]
        conn.send(("port", port, {v: len(o) - 1 for v, (_, o) in streams.items()}))
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[Any] = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
        while True:
            cmd, arg = await commands.get()
            if cmd == "rate":
                server.rate = float(arg)
                conn.send(("ok", None))
            elif cmd == "serve":
                server.current, server.expect, server.limit = arg
                conn.send(("ok", None))
            elif cmd == "cpu":
                r = resource.getrusage(resource.RUSAGE_SELF)
                conn.send(("cpu", (r.ru_utime + r.ru_stime, list(server.t0_ns))))
            elif cmd == "writes":
                conn.send(("writes", server.writes))
            elif cmd == "stop":
                listener.close()
                conn.send(("ok", None))
                return

    asyncio.run(main())


# --- clients --------------------------------------------------------------------------------
def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Stream:
    """One venue protocol's frames as the server serves them, and what the liqmon client
    needs besides (its books, instruments, the REST snapshots taken before the stream)."""

    name: str
    venue: Any  # monitor.domain.Venue
    symbols: list[str]
    registry: Any  # monitor.instruments.InstrumentRegistry
    frames: list[bytes]
    snapshots: list[tuple[str, bytes | str]]  # (url or request key, answer)
    client_frames: int  # liqmon's subscribe frames: the server streams after them
    checksums: bool  # the venue's frames carry book checksums (they must all verify)


def recorded_streams(names: list[str], replicas: int, repeats: int) -> list[Stream]:
    """Binance spot / USD-M from the real recordings (bench/corpus.py)."""
    from corpus import build_corpus  # noqa: PLC0415

    if not names:
        return []
    corpus = build_corpus(replicas=replicas, repeats=repeats)
    out = []
    for name in names:
        venue = next(v for v, _ in corpus.books if v.value == name.split("/")[0])
        frames = [f for f in corpus.frames if f[0] is venue]
        out.append(
            Stream(
                name,
                venue,
                [s for v, s in corpus.books if v is venue],
                corpus.registry,
                [f[3] for f in frames if f[1] == "ws"],
                [(f[2], f[3]) for f in frames if f[1] == "http"],
                0,
                False,
            )
        )
    return out


def sim_streams(names: list[str], frames: int) -> list[Stream]:
    """Every other protocol from the local exchange's generators (bench/sim_corpus.py),
    cached in the temp directory (building 50k frames of a venue takes seconds)."""
    import pickle  # noqa: PLC0415

    from sim_corpus import venue_stream  # noqa: PLC0415

    from monitor.domain import Venue  # noqa: PLC0415

    out = []
    for name in names:
        venue = Venue(name.split("/")[0])
        cache = Path(tempfile.gettempdir()) / f"liqmon-blast-{venue.value}-{frames}-v1.pickle"
        if cache.exists():
            with cache.open("rb") as f:
                made = pickle.load(f)
        else:
            made = venue_stream(venue, frames)
            with cache.open("wb") as f:
                pickle.dump(made, f)
        adapter_checksums = venue in CHECKSUM_VENUES
        out.append(
            Stream(
                name,
                venue,
                made.symbols,
                made.registry,
                made.frames,
                list(made.snapshots),
                made.client_frames,
                adapter_checksums,
            )
        )
    return out


async def bare_websockets(url: str, n: int) -> int:
    from websockets.asyncio.client import connect  # noqa: PLC0415

    async with connect(url, compression=None, max_size=2**26, ping_interval=None) as ws:
        count = 0
        async for _ in ws:
            count += 1
            if count >= n:
                return time.time_ns()
    raise RuntimeError("websockets: closed early")


async def bare_aiohttp(url: str, n: int) -> int:
    import aiohttp  # noqa: PLC0415

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, compress=0, max_msg_size=2**26) as ws,
    ):
        count = 0
        while count < n:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                count += 1
            else:
                raise RuntimeError(f"aiohttp: {msg.type}")
        return time.time_ns()


async def bare_picows(url: str, n: int) -> int:
    import picows  # noqa: PLC0415

    done = asyncio.get_running_loop().create_future()

    class Listener(picows.WSListener):  # type: ignore[misc]
        count = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == picows.WSMsgType.TEXT:
                frame.get_payload_as_bytes()  # what a consumer needs at least
                self.count += 1
                if self.count >= n and not done.done():
                    done.set_result(time.time_ns())

    transport, _listener = await picows.ws_connect(Listener, url, max_frame_size=2**26)
    try:
        return int(await done)
    finally:
        transport.disconnect()


async def cryptofeed_peer(python: str, stream: Stream, port: int, n: int) -> dict[str, Any]:
    """cryptofeed's Binance spot handler in its own interpreter (bench/cf_peer.py)."""
    import pickle  # noqa: PLC0415
    from urllib.parse import parse_qsl, urlsplit  # noqa: PLC0415

    instruments = [stream.registry.get(stream.venue, s) for s in stream.symbols]
    job = {
        "port": port,
        "frames": n,
        "symbols": [(i.symbol, i.base, i.quote, str(i.tick)) for i in instruments],
        "snapshots": {
            dict(parse_qsl(urlsplit(url).query))["symbol"]: (
                text.decode() if isinstance(text, bytes) else text
            )
            for url, text in stream.snapshots
        },
    }
    fd, path = tempfile.mkstemp(suffix=".pickle", prefix="liqmon-cf-")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(job, f)
    try:
        proc = await asyncio.create_subprocess_exec(
            python,
            str(ROOT / "bench" / "cf_peer.py"),
            path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 600.0)
    finally:
        os.unlink(path)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"cryptofeed peer failed: {err.decode()[:3000]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if result["resets"] or result["books"] != len(stream.symbols):
        raise SystemExit(f"cryptofeed peer: books {result['books']}, resets {result['resets']}")
    return result


class LiqmonRun:
    """A Daemon wired as ``liqmon run`` wires it, with its books loaded from the snapshots."""

    def __init__(self, stream: Stream, port: int) -> None:
        from sim_corpus import blast_settings  # noqa: PLC0415

        self.stream = stream
        self.venue = stream.venue
        extra = "[connection]\n" + CONNECTION_TOML
        settings = blast_settings({self.venue: stream.symbols}, port, extra)
        if TICK_MS is not None:
            monitor = msgspec.structs.replace(settings.monitor, tick_ms=TICK_MS)
            settings = msgspec.structs.replace(settings, monitor=monitor)
        self.settings = settings
        self.latencies_ns: list[Any] = []
        self.gc_pauses_ms: list[float] = []  # wall clock (a preempted pause counts in full)
        self.gc_cpu_ms: list[float] = []  # the loop thread's CPU time in each pause
        self.flushes = 0
        self.ticks: list[tuple[int, int]] = []  # (start, end) of every pipeline.tick, time_ns

    async def run(self, n: int, rate: float, t0_ns: Any, writes: Any = None) -> dict[str, Any]:
        import aiohttp  # noqa: PLC0415

        from feeds.venues import ADAPTERS  # noqa: PLC0415
        from monitor.daemon import Daemon  # noqa: PLC0415

        async with aiohttp.ClientSession() as http:
            daemon = Daemon(self.settings, http, ADAPTERS, health_interval_s=3600.0)
            pipeline = daemon.build_pipeline(self.stream.registry)
            for url, data in self.stream.snapshots:  # as the snapshot loop would fetch them
                pipeline.feed(self.venue, "http", url, data, time.time_ns())
            pipeline.flush()
            connections = daemon.connections()
            gc.collect()
            gc.freeze()  # as Daemon.run does after start-up
            connections = [c for c in connections if c.plan.carries_books]
            assert len(connections) == 1, "one connection carries every frame of the stream"
            health = daemon.venues[self.venue].health
            done = asyncio.Event()
            last_ns = [0]
            flush = daemon._flush_pending  # the end of a turn, or a full burst
            lat = self.latencies_ns

            def pending() -> int:
                return sum(len(f) for f, _ in daemon._pending.values())

            stamps_of = daemon._pending[self.venue][1]
            thread_ns = time.thread_time_ns

            def timed_flush() -> int:
                before = pending()
                stamps = list(stamps_of) if rate > 0 else None
                before_cpu = (time.time_ns(), thread_ns()) if rate > 0 else None
                applied = flush()
                k = before - pending()
                if k:
                    self.flushes += 1
                    if rate > 0:
                        now = time.time_ns()
                        lat.append(
                            (now, health.frames - pending() - k, stamps, thread_ns(), before_cpu)
                        )
                if health.frames >= n and not done.is_set():
                    last_ns[0] = time.time_ns()
                    done.set()
                return applied

            daemon._flush_pending = timed_flush  # type: ignore[method-assign]
            tick = pipeline.tick
            ticks = self.ticks

            def timed_tick(now_ns: int) -> Any:
                t = time.time_ns()
                out = tick(now_ns)
                ticks.append((t, time.time_ns()))
                return out

            pipeline.tick = timed_tick  # type: ignore[method-assign]
            gc_start = [0, 0]
            gc_cpu_ms = self.gc_cpu_ms

            def on_gc(phase: str, _info: dict[str, Any]) -> None:
                if phase == "start":
                    gc_start[0] = time.perf_counter_ns()
                    gc_start[1] = time.thread_time_ns()
                else:
                    self.gc_pauses_ms.append((time.perf_counter_ns() - gc_start[0]) / 1e6)
                    gc_cpu_ms.append((time.thread_time_ns() - gc_start[1]) / 1e6)

            gc.collect()
            gc.callbacks.append(on_gc)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0_thread = time.thread_time()
            c0 = cpu_s()
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(daemon._run_connection(connections[0])),
                        group.create_task(daemon._tick_loop()),
                        group.create_task(daemon.coalescer.run()),
                    ]
                    await asyncio.wait_for(done.wait(), 300.0)
                    cpu = cpu_s() - c0
                    thread_cpu = time.thread_time() - t0_thread
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    for task in tasks:
                        task.cancel()
            finally:
                gc.callbacks.remove(on_gc)
            check_books(self.stream, pipeline.book_summaries(depth=1))
        gc.unfreeze()
        out = {
            "last_ns": last_ns[0],
            "cpu_s": cpu,
            "user_s": r1.ru_utime - r0.ru_utime,
            "sys_s": r1.ru_stime - r0.ru_stime,
            "loop_thread_s": thread_cpu,  # the event loop's own thread
            "wakeups": (r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw),
            "frames": health.frames,
            "flushes": self.flushes,
            "window_sleeps": daemon.flush_window.sleeps,  # batch windows slept out
            "gc": sorted(self.gc_pauses_ms),
            "gc_cpu": sorted(self.gc_cpu_ms),
        }
        out["tick_ms"] = sorted((b - a) / 1e6 for a, b in self.ticks)
        if rate > 0 and t0_ns:
            out.update(latency(t0_ns[0], rate, lat, writes() if writes else []))
        return out


CHECKSUM_VENUES = frozenset({"okx", "kraken"})  # CRC32 of the top levels in every frame


def check_books(stream: Stream, summaries: list[dict[str, Any]]) -> None:
    """Every book valid, never resynced, no gap; where the venue sends checksums, every
    one verified and none failed. Otherwise the run does not count."""
    bad = [s for s in summaries if not s["valid"] or s["gaps"] or s["resyncs"]]
    failed = sum(s["checksum_failed"] for s in summaries)
    checked = sum(s["checksum_ok"] for s in summaries)
    if bad or failed:
        raise SystemExit(
            f"{stream.name}: {len(bad)} books invalid, with gaps or resynced; "
            f"{failed} checksums failed"
        )
    if stream.checksums and not checked:
        raise SystemExit(f"{stream.name}: no checksum was verified")


def describe_paced(label: str, r: dict[str, Any]) -> str:
    """One paced run: latency and its parts (p50/p99/max, ms), CPU, flushes, ticks, GC."""

    def part(name: str) -> str:
        if f"{name}_p50_ms" not in r:
            return "-"
        return f"{r[f'{name}_p50_ms']:.2f}/{r[f'{name}_p99_ms']:.2f}/{r[f'{name}_max_ms']:.1f}"

    ticks = r["tick_ms"]
    return (
        f"liqmon at {label}: frame->book p50 {r['lat_p50_ms']:.2f} ms p99 "
        f"{r['lat_p99_ms']:.2f} ms max {r['lat_max_ms']:.1f} ms; parts p50/p99/max ms: "
        f"server late {part('lat_server')}, wire+read {part('lat_wire')}, "
        f"queue {part('lat_queue')}, written->book {part('lat_written')}, on-CPU "
        f"{part('lat_cpu')}; "
        f"{r['us_per_frame']:.2f} us CPU/frame (user {r['user_s'] / r['frames'] * 1e6:.1f}, "
        f"sys {r['sys_s'] / r['frames'] * 1e6:.1f}, loop thread "
        f"{r['loop_thread_s'] / r['frames'] * 1e6:.1f}; context switches vol/invol "
        f"{r['wakeups'][0]}/{r['wakeups'][1]}), "
        f"{r['frames'] / max(1, r['flushes']):.1f} frames per flush, "
        f"{r['window_sleeps']} batch windows slept, {r['writes']} server "
        f"writes; ticks {len(ticks)} max {max(ticks, default=0):.1f} ms; GC max "
        f"{max(r['gc'], default=0):.2f} ms (CPU {max(r['gc_cpu'], default=0):.2f} ms)"
    )


def _pcts(values: list[float]) -> tuple[float, float, float]:
    values = sorted(values)
    return values[len(values) // 2], values[int(len(values) * 0.99)], values[-1]


def latency(
    t0: int,
    rate: float,
    flushes: list[tuple[int, int, Any, int, Any]],
    writes: list[tuple[int, int]],
) -> dict[str, Any]:
    """Frame -> book latency from the frame's due time (``t0 + i / rate``), and its parts:
    the server's lateness (due -> written), the socket and the client's read (written ->
    ``recv_ns`` stamped by the session), the wait for the flush (``recv_ns`` -> applied).

    ``on-CPU``: the client thread's CPU time (``thread_time_ns``) spent between the frame's
    write and the end of the flush that applied it, taken from the last sample at or before
    the write (samples at the start and end of every flush; so an overestimate). On a busy
    shared machine the wall-clock figures also count the time the OS gave the core to other
    processes; this one counts only the work liqmon did while the frame waited.
    """
    import bisect  # noqa: PLC0415

    upto = [u for _, u in writes]
    samples = sorted([(f[0], f[3]) for f in flushes] + [f[4] for f in flushes if f[4] is not None])
    sample_wall = [w for w, _ in samples]
    total: list[float] = []
    late: list[float] = []
    wire: list[float] = []
    queue: list[float] = []
    from_write: list[float] = []
    on_cpu: list[float] = []
    for applied, first, stamps, cpu_applied, _ in flushes:
        for j, recv in enumerate(stamps, start=first):
            due = t0 + j * 1e9 / rate
            total.append((applied - due) / 1e6)
            queue.append((applied - recv) / 1e6)
            w = bisect.bisect_right(upto, j)
            if w < len(writes):
                written = writes[w][0]
                late.append((written - due) / 1e6)
                wire.append((recv - written) / 1e6)
                from_write.append((applied - written) / 1e6)
                k = bisect.bisect_right(sample_wall, written) - 1
                if k >= 0:
                    on_cpu.append((cpu_applied - samples[k][1]) / 1e6)
    out: dict[str, Any] = {}
    for name, values in (
        ("lat", total),
        ("lat_server", late),
        ("lat_wire", wire),
        ("lat_queue", queue),
        ("lat_written", from_write),
        ("lat_cpu", on_cpu),
    ):
        if values:
            p50, p99, top = _pcts(values)
            out[f"{name}_p50_ms"], out[f"{name}_p99_ms"], out[f"{name}_max_ms"] = p50, p99, top
    out["writes"] = len(writes)
    return out


# --- driver ---------------------------------------------------------------------------------
class ServerHandle:
    def __init__(self, streams: list[Stream]) -> None:
        import pickle  # noqa: PLC0415

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        fd, self.path = tempfile.mkstemp(suffix=".pickle", prefix="liqmon-blast-")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump({s.name: s.frames for s in streams}, f)
            self.proc = ctx.Process(target=server_main, args=(child, self.path))
            self.proc.start()
            _, self.port, self.counts = self.conn.recv()
        finally:
            os.unlink(self.path)

    def ask(self, cmd: str, arg: Any = None) -> Any:
        self.conn.send((cmd, arg))
        return self.conn.recv()[1]


async def one_run(
    server: ServerHandle, client: str, stream: Stream, rate: float = 0.0, limit: int = 0
) -> dict[str, Any]:
    n = min(limit or server.counts[stream.name], server.counts[stream.name])
    url = f"ws://127.0.0.1:{server.port}/{stream.venue.value}/stream"
    expect = stream.client_frames if client == "liqmon" else 0
    server.ask("serve", (stream.name, expect, n))
    server.ask("rate", rate)
    s_cpu0, _ = server.ask("cpu")
    gc.collect()
    if client == "liqmon":
        out = await LiqmonRun(stream, server.port).run(n, rate, None)
    elif client == "cryptofeed":
        out = await cryptofeed_peer(CRYPTOFEED_PYTHON[0], stream, server.port, n)
    else:
        fn = {"websockets": bare_websockets, "aiohttp": bare_aiohttp, "picows": bare_picows}[client]
        c0 = cpu_s()
        last = await asyncio.wait_for(fn(url, n), 300.0)
        out = {"last_ns": last, "cpu_s": cpu_s() - c0, "frames": n}
    s_cpu1, t0 = server.ask("cpu")
    out["wall_s"] = (out["last_ns"] - t0[-1]) / 1e9  # from the server's first write
    out["server_cpu_s"] = s_cpu1 - s_cpu0
    out["fps"] = out["frames"] / out["wall_s"]
    out["us_per_frame"] = out["cpu_s"] / out["frames"] * 1e6
    return out


async def paced_liqmon(
    server: ServerHandle, stream: Stream, rate: float, max_s: float
) -> dict[str, Any]:
    """liqmon on the stream (at most ``max_s`` of it) written at ``rate`` frames/s."""
    n = min(server.counts[stream.name], max(2_000, int(rate * max_s)))
    server.ask("serve", (stream.name, stream.client_frames, n))
    server.ask("rate", rate)
    run = LiqmonRun(stream, server.port)
    gc.collect()
    s_cpu0, known = server.ask("cpu")
    # the server's t0 of this connection is known once it streams: the run reads it at the end
    holder: list[int] = []
    profile_to = os.environ.get("BLAST_PROFILE")  # a cProfile of the paced runs (a path)
    profiler = None
    if profile_to:
        import cProfile  # noqa: PLC0415

        profiler = cProfile.Profile()
        profiler.enable()
    task = asyncio.ensure_future(run.run(n, rate, holder, lambda: server.ask("writes")))
    while not holder and not task.done():
        await asyncio.sleep(0.02)
        _, t0s = server.ask("cpu")
        if len(t0s) > len(known):
            holder.append(t0s[len(known)])
    out = await task
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.{int(rate)}")
    s_cpu1, _ = server.ask("cpu")
    out["server_cpu_s"] = s_cpu1 - s_cpu0
    out["us_per_frame"] = out["cpu_s"] / out["frames"] * 1e6
    out["wall_s"] = (out["last_ns"] - holder[0]) / 1e9
    out["fps"] = out["frames"] / out["wall_s"]
    return out


CRYPTOFEED_PYTHON = [""]  # --cryptofeed: an interpreter with cryptofeed installed
CRYPTOFEED_STREAMS = ("binance/sim",)  # its Binance spot handler; distinct real symbols

RECORDED = ("binance_futures/rec", "binance/rec")
SIMULATED = (
    "binance_futures/sim",
    "binance/sim",
    "bybit/sim",
    "bybit_linear/sim",
    "okx/sim",
    "coinbase/sim",
    "kraken/sim",
    "deribit/sim",
    "hyperliquid/sim",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--streams",
        default=",".join(RECORDED + SIMULATED),
        help="NAME/rec (Binance recordings) or NAME/sim (the local exchange's generator)",
    )
    parser.add_argument("--replicas", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--sim-frames", type=int, default=50_000)
    parser.add_argument("--peers", default=os.environ.get("BLAST_PEERS", ""))
    parser.add_argument("--moderate", type=float, default=5000.0, help="paced frames/s")
    parser.add_argument("--paced-s", type=float, default=4.0, help="longest paced run, s")
    from _common import add_live_arguments  # noqa: PLC0415

    add_live_arguments(parser)  # --loop (every client's), --batch-window-ms (liqmon's)
    parser.add_argument(
        "--cryptofeed",
        default=os.environ.get("BLAST_CRYPTOFEED", ""),
        help="a Python with cryptofeed installed (a separate venv): its Binance spot "
        "handler becomes a peer on binance/sim",
    )
    parser.add_argument(
        "--tick-ms",
        type=int,
        default=None,
        help="liqmon's metric tick (default: the shipped 1000 ms); a paced run at 50%% "
        "lasts well under a second, so 100 puts several ticks inside it",
    )
    parser.add_argument(
        "--half", type=float, default=0.0, help="only the paced runs, this as the 50%% rate"
    )
    args = parser.parse_args(argv)
    if args.peers:
        sys.path.append(args.peers)
    from _common import quiet_logs  # noqa: PLC0415

    quiet_logs()
    from monitor.warmup import warm_up  # noqa: PLC0415

    names = args.streams.split(",")
    streams = recorded_streams(
        [n for n in names if n.endswith("/rec")], args.replicas, args.repeats
    ) + sim_streams([n for n in names if n.endswith("/sim")], args.sim_frames)
    streams.sort(key=lambda s: names.index(s.name))
    server = ServerHandle(streams)
    from feeds.venues import ADAPTERS  # noqa: PLC0415

    warm_up(list(ADAPTERS.values()))
    clients = ["websockets", "aiohttp"]
    try:
        import picows  # noqa: F401, PLC0415

        clients.append("picows")
    except ImportError:
        print("picows not importable: left out (pip install picows, or --peers DIR)")
    clients.append("liqmon")
    from monitor.cli import loop_runner  # noqa: PLC0415

    global CONNECTION_TOML, TICK_MS  # noqa: PLW0603 (read by LiqmonRun, deep in the rounds)
    TICK_MS = args.tick_ms
    from _common import live_connection_toml  # noqa: PLC0415

    CONNECTION_TOML = live_connection_toml(args)

    runner: Any = loop_runner(args.loop)
    print(f"event loop: {'uvloop' if runner is not asyncio.run else 'asyncio'}")
    print(f"load average at start: {os.getloadavg()}")

    async def bench() -> dict[str, Any]:
        results: dict[str, Any] = {}
        for stream in streams:
            n = server.counts[stream.name]
            size = sum(len(f) for f in stream.frames) / len(stream.frames)
            print(
                f"\n== {stream.name}: {len(stream.symbols)} books, {n:,} frames of "
                f"{size:.0f} B per run, {args.rounds} rounds; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            these = list(clients)
            if args.cryptofeed and stream.name in CRYPTOFEED_STREAMS:
                CRYPTOFEED_PYTHON[0] = args.cryptofeed
                these.insert(-1, "cryptofeed")
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in these}
            for _ in range(args.rounds if not args.half else 0):
                for client in these:
                    runs[client].append(await one_run(server, client, stream))
            best = {c: max(r, key=lambda x: x["fps"]) for c, r in runs.items() if r}
            for c, b in best.items():
                ratio = statistics.median(
                    r["fps"] / runs["liqmon"][i]["fps"] for i, r in enumerate(runs[c])
                )
                cpu_ratio = statistics.median(
                    r["us_per_frame"] / runs["liqmon"][i]["us_per_frame"]
                    for i, r in enumerate(runs[c])
                )
                print(
                    f"{c:11s} {b['fps']:>10,.0f} frames/s  "
                    f"{min(r['us_per_frame'] for r in runs[c]):6.2f} us CPU/frame  "
                    f"server CPU {b['server_cpu_s'] / b['wall_s'] * 100:4.0f}%  "
                    f"x{ratio:.2f} frames/s, x{cpu_ratio:.2f} CPU of liqmon (median of rounds)"
                    + (
                        f"  {b['frames'] / b['flushes']:.0f} frames per flush, GC "
                        f"{len(b['gc'])} pauses max {max(b['gc'], default=0):.2f} ms "
                        f"(CPU {max(b['gc_cpu'], default=0):.2f} ms)"
                        if "flushes" in b
                        else ""
                    ),
                    flush=True,
                )
            # the median round's rate, not the best: on a shared machine the best round is
            # a quiet moment, and half of it may be more than a busier one sustains
            max_fps = statistics.median(r["fps"] for r in runs["liqmon"]) if best else args.half * 2
            half = await paced_liqmon(server, stream, max_fps / 2, args.paced_s)
            print(describe_paced(f"{max_fps / 2:,.0f} frames/s (50%)", half), flush=True)
            moderate = await paced_liqmon(server, stream, args.moderate, args.paced_s)
            print(describe_paced(f"{args.moderate:,.0f} frames/s", moderate), flush=True)
            frames = int(args.moderate * args.paced_s)
            for c in clients[:-1]:  # the bare loops at the same steady rate
                peer = await one_run(server, c, stream, args.moderate, frames)
                moderate[f"{c}_us_per_frame"] = peer["us_per_frame"]
                print(
                    f"{c} at {args.moderate:,.0f} frames/s: {peer['us_per_frame']:.2f} us "
                    f"CPU/frame",
                    flush=True,
                )
            results[stream.name] = {"runs": runs, "half": half, "moderate": moderate}
        return results

    try:
        results = runner(bench())
    finally:
        server.ask("stop")
        server.proc.join(5)
    summary(results)
    print(f"load average at end: {os.getloadavg()}")
    return 0


def summary(results: dict[str, Any]) -> None:
    """One line per stream: liqmon's best frames/s and CPU, the peers' ratios, latency."""
    print(
        "\nstream               liqmon f/s  us/frame  aiohttp x  picows x  websockets x  "
        "cryptofeed x  "
        "p50/p99 ms at 50% (from the write; on-CPU)  us/frame at moderate"
    )
    for name, r in results.items():
        runs = r["runs"]
        if not runs.get("liqmon"):
            continue
        best = max(runs["liqmon"], key=lambda x: x["fps"])

        def ratio(c: str, runs: dict[str, Any] = runs) -> str:
            if not runs.get(c):
                return "   -"
            return f"x{statistics.median(x['fps'] / runs['liqmon'][i]['fps'] for i, x in enumerate(runs[c])):.2f}"

        h, m = r["half"], r["moderate"]
        print(
            f"{name:20s} {best['fps']:>12,.0f} {min(x['us_per_frame'] for x in runs['liqmon']):8.2f}  "
            f"{ratio('aiohttp'):>8s} {ratio('picows'):>8s} {ratio('websockets'):>12s} "
            f"{ratio('cryptofeed'):>12s}  "
            f"{h['lat_p50_ms']:.2f}/{h['lat_p99_ms']:.2f} ({h.get('lat_written_p50_ms', 0):.2f}/"
            f"{h.get('lat_written_p99_ms', 0):.2f}; {h.get('lat_cpu_p50_ms', 0):.2f}/"
            f"{h.get('lat_cpu_p99_ms', 0):.2f})  {m['us_per_frame']:.1f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
