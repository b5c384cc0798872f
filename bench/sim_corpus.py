"""Pre-encoded frame streams of every venue protocol the local exchange speaks (bench/blast.py).

For one venue, :func:`venue_stream` builds the local exchange (feeds/sim) with the venue's
cached instruments (as many books as one connection carries, at most ``max_books``), plays
the subscription liqmon sends (the adapter's own open and subscribe frames, or the
subscription in the URL) into a :class:`~feeds.sim.base.SimConnection` that no socket
backs, and then steps the market until ``frames`` frames were made. Every frame the
exchange queued for that connection is kept in order: subscription answers, in-band
snapshots, deltas (with their sequence numbers and checksums, Kraken and OKX CRC32
included). Venues whose snapshots come over REST (Binance) get the REST answer taken right
after the subscription, as the snapshot loop would fetch it. A client that reads the
stream from its first frame ends with books equal to the exchange's.

``python bench/sim_corpus.py --scan [--venues kraken,hyperliquid]`` also prints the CPU
per frame of each venue's batch scanner (runs of 256) and of its decode, frame by frame;
``--break-even``: the pipeline's CPU per frame for reads of 1 to 32 frames, scanned or
decoded, where each venue's ``min_frames`` comes from.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from feeds.contract import SnapshotSource  # noqa: E402
from feeds.sim.base import ExchangeSim, RestRequest, SimConnection  # noqa: E402
from feeds.sim.exchange import STABLES, add_books, all_protocols, mid_for, settings_toml  # noqa: E402
from feeds.venues import ADAPTERS  # noqa: E402
from monitor.domain import Venue  # noqa: E402
from monitor.instruments import InstrumentRegistry  # noqa: E402
from monitor.pipeline import BookPipeline  # noqa: E402
from monitor.planning import plan_connections  # noqa: E402
from monitor.settings import Settings, load_settings  # noqa: E402

PORT = 1  # placeholder in the URLs the exchange sees (only paths and queries matter)


@dataclass
class VenueStream:
    venue: Venue
    symbols: list[str]
    frames: list[bytes]  # server -> client, in order
    snapshots: list[tuple[str, str]]  # REST venues: (request key, answer), else empty
    client_frames: int  # open + subscribe frames liqmon sends before the stream starts
    registry: InstrumentRegistry
    build_s: float

    @property
    def n_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def blast_settings(symbols: dict[Venue, list[str]], port: int, extra: str = "") -> Settings:
    """liqmon settings for the local exchange without the mark-price channels: every book
    of a venue on one connection (the blast streams carry book frames only)."""
    text = settings_toml(symbols, port=port, extra=extra)
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith(("mark_price_stream", "market_ws_url"))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blast.toml"
        path.write_text("\n".join(lines) + "\n")
        return load_settings([path], env={})


def _symbols(venue: Venue, registry: InstrumentRegistry, max_books: int) -> list[str]:
    """The venue's cached instruments (perps and spot as the venue lists them), as many as
    fit on one connection of the venue."""
    adapter = ADAPTERS[venue]
    known = sorted(
        i.symbol
        for i in registry
        if i.venue is venue
        and i.quote in STABLES  # a plausible price on its tick (the exchange's USD table)
        and float(mid_for(i)) > 0
    )
    symbols = known[:max_books]
    while len(symbols) > 1:
        settings = blast_settings({venue: symbols}, PORT)
        plans = plan_connections(settings.venues[venue], adapter)
        if sum(1 for p in plans if p.carries_books) == 1:
            break
        symbols = symbols[:-1]
    return symbols


def venue_stream(
    venue: Venue, frames: int, *, max_books: int = 100, seed: int = 7, levels: int = 200
) -> VenueStream:
    started = time.perf_counter()
    registry = InstrumentRegistry.load_cached([venue])
    symbols = _symbols(venue, registry, max_books)
    registry = InstrumentRegistry([i for i in registry if i.symbol in set(symbols)])
    settings = blast_settings({venue: symbols}, PORT)
    table = settings.venues[venue]
    adapter = ADAPTERS[venue]
    (plan,) = [p for p in plan_connections(table, adapter) if p.carries_books]
    (protocol,) = all_protocols([venue])
    sim = ExchangeSim([protocol], seed=seed)
    add_books(sim, registry, venue, symbols, levels=levels)
    url = urlsplit(plan.url)
    prefix = f"/{venue.value}"
    conn = SimConnection(
        id=1,
        venue=venue,
        path=url.path.removeprefix(prefix) or "/",
        query=dict(parse_qsl(url.query)),
        websocket=None,  # type: ignore[arg-type]  # nothing is sent: frames stay queued
        transport=None,
        opened_at=0.0,
    )
    sim.connections.append(conn)
    protocol.on_open(sim, conn)
    sent = list(adapter.open_frames())
    if not adapter.subscribe_in_url:
        sent += adapter.subscribe_frames(list(plan.symbols), list(plan.channels))
    for text in sent:
        protocol.on_text(sim, conn, text)
    snapshots: list[tuple[str, str]] = []
    if adapter.snapshot_source == SnapshotSource.REST:
        for symbol in symbols:
            request = adapter.snapshot_request(table.rest_url, symbol, table.snapshot_limit)
            assert request is not None
            parts = urlsplit(request.url)
            answer = protocol.rest(
                sim,
                RestRequest(
                    venue,
                    "GET",
                    parts.path.removeprefix(prefix),
                    dict(parse_qsl(parts.query)),
                    "",
                ),
            )
            assert answer is not None and answer[0] == 200, (venue, symbol, answer)
            snapshots.append((request.key, answer[1]))
    out: list[bytes] = []
    queue = conn.queue
    while len(out) < frames:
        while not queue.empty():
            out.append(queue.get_nowait().encode())
        if len(out) < frames:
            sim.step(venue)
    return VenueStream(
        venue,
        symbols,
        out,
        snapshots,
        len(sent),
        registry,
        time.perf_counter() - started,
    )


def scan_cost(stream: VenueStream, run: int = 256, repeat: int = 5) -> tuple[float, float]:
    """CPU per frame (us, best of ``repeat``) of the adapter's batch scanner over the stream
    in runs of ``run`` frames (``scan_frames``: join and kernel), and of its msgspec decode
    frame by frame."""
    adapter = ADAPTERS[stream.venue]
    frames = stream.frames
    scanner = adapter.scanner
    scan = float("nan")
    if scanner is not None:
        scanner.scan_frames(frames[:run])  # compiled before timing
        best = float("inf")
        for _ in range(repeat):
            t = time.process_time()
            for at in range(0, len(frames), run):
                scanner.scan_frames(frames[at : at + run])
            best = min(best, time.process_time() - t)
        scan = best / len(frames) * 1e6
    best = float("inf")
    for _ in range(max(1, repeat // 2)):
        t = time.process_time()
        for frame in frames:
            adapter.decode(frame, 1)  # the exchange's frames all decode
        best = min(best, time.process_time() - t)
    return scan, best / len(frames) * 1e6


READ_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 32)


def read_cost(stream: VenueStream, k: int, scan: bool, repeat: int = 3) -> float:
    """CPU per frame (us, best of ``repeat``) of the pipeline fed the stream in reads of
    ``k`` frames, each read scanned (``prescan`` + ``feed_prescanned``) or decoded frame by
    frame, and flushed to the books: the choice ``feed_frames`` makes per read. Books are
    loaded from the first 1,000 frames (and the REST snapshots) first; every read must
    leave them without a gap or resync."""
    venue, frames = stream.venue, stream.frames
    settings = blast_settings({venue: stream.symbols}, PORT)
    adapter = ADAPTERS[venue]
    best = float("inf")
    for _ in range(repeat):
        pipeline = BookPipeline.from_settings(stream.registry, ADAPTERS, settings)
        for url, data in stream.snapshots:
            pipeline.feed(venue, "http", url, data, 0)
        pipeline.feed_frames(venue, frames[:1000], list(range(1000)))
        pipeline.flush()
        fed = 0
        t = time.process_time()
        for at in range(1000, len(frames) - k + 1, k):
            chunk, recv = frames[at : at + k], list(range(at, at + k))
            pre = pipeline.prescan(venue, chunk, recv) if scan else None
            if pre is not None:
                pipeline.feed_prescanned(pre, k)
            else:
                pipeline._feed_decoded(venue, adapter, chunk, recv)
            pipeline.flush()
            fed += k
        best = min(best, time.process_time() - t)
        lost = {
            key: n
            for key, n in pipeline.counters.messages.items()
            if "gap" in key or "resync" in key
        }
        assert not lost, lost
    return best / fed * 1e6


def break_even(stream: VenueStream) -> str:
    """Per read size: CPU per frame scanned / decoded, and the venue's ``min_frames``."""
    scanner = ADAPTERS[stream.venue].scanner
    if scanner is None:
        return "no scanner"
    cells = [
        f"{k}: {read_cost(stream, k, True):.1f}/{read_cost(stream, k, False):.1f}"
        for k in READ_SIZES
    ]
    return f"min_frames {scanner.min_frames}; us/frame scanned/decoded by frames a read: " + (
        "  ".join(cells)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scan", action="store_true", help="CPU per frame of each batch scanner and of decode"
    )
    parser.add_argument(
        "--break-even",
        action="store_true",
        help="CPU per frame of reads of 1-32 frames, scanned or decoded (the venue's "
        "min_frames is where the scan starts to pay)",
    )
    parser.add_argument("--venues", default="", help="comma-separated venues (default: all)")
    args = parser.parse_args(argv)
    venues = [Venue(v) for v in args.venues.split(",") if v] or list(ADAPTERS)
    for venue in venues:
        stream = venue_stream(venue, 20_000)
        size = stream.n_bytes / len(stream.frames)
        line = (
            f"{venue.value:16s} {len(stream.symbols):3d} books {len(stream.frames):6d} frames "
            f"{size:7.0f} B/frame, {len(stream.snapshots)} REST snapshots, "
            f"{stream.client_frames} client frames, built in {stream.build_s:.1f} s"
        )
        if args.scan:
            scan, decode = scan_cost(stream)
            line += f"; CPU per frame: scan_frames {scan:.2f} us, decode {decode:.2f} us"
        print(line, flush=True)
        if args.break_even:
            print(f"  {break_even(stream)}", flush=True)


if __name__ == "__main__":
    main()
