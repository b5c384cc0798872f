"""Frames the local exchange (feeds/sim) sends one subscribed connection, made offline.

No socket: the subscription the adapter writes is played into a connection object and
the market is stepped until enough frames are queued (subscription answers, in-band
snapshots, deltas with their checksums), as bench/sim_corpus.py does for the benches.
"""

from __future__ import annotations

from collections.abc import Sequence

from feeds.contract import VenueAdapter
from feeds.sim.base import ExchangeSim, SimConnection, VenueProtocol
from feeds.sim.exchange import add_books, all_protocols
from monitor.domain import Instrument, Venue
from monitor.instruments import InstrumentRegistry


def offline_connection(
    sim: ExchangeSim, protocol: VenueProtocol, venue: Venue, path: str = "/"
) -> SimConnection:
    """A connection of the local exchange with no socket: what it is sent stays queued
    (``conn.queue``), and what the client would send is played with ``protocol.on_text``."""
    conn = SimConnection(
        id=1,
        venue=venue,
        path=path,
        query={},
        websocket=None,  # type: ignore[arg-type]  # nothing is sent: frames stay queued
        transport=None,
        opened_at=0.0,
    )
    sim.connections.append(conn)
    protocol.on_open(sim, conn)
    return conn


def sim_frames(
    venue: Venue,
    adapter: VenueAdapter,
    symbols: Sequence[str],
    channels: Sequence[str],
    n_frames: int,
    *,
    path: str = "/",
    seed: int = 7,
    levels: int = 60,
    marks_every: int = 0,
) -> tuple[list[bytes], list[Instrument]]:
    """At least ``n_frames`` frames the local exchange sends a connection of ``adapter``
    subscribed to ``symbols`` on ``channels``, in order, and the books' instruments.
    ``marks_every``: after every that many market steps, the mark-price frames the
    exchange's mark timer would send (derivative books), as it sends them."""
    registry = InstrumentRegistry.load_cached([venue])
    (protocol,) = all_protocols([venue])
    sim = ExchangeSim([protocol], seed=seed)
    books = add_books(sim, registry, venue, symbols, levels=levels)
    assert len(books) == len(symbols), "every symbol is in the cached instruments"
    conn = offline_connection(sim, protocol, venue, path)
    for text in [*adapter.open_frames(), *adapter.subscribe_frames(symbols, channels)]:
        protocol.on_text(sim, conn, text)
    out: list[bytes] = []
    steps = 0
    while len(out) < n_frames:
        while not conn.queue.empty():
            out.append(conn.queue.get_nowait().encode())
        if len(out) < n_frames:
            sim.step(venue)
            steps += 1
            if marks_every and steps % marks_every == 0:
                for book in books:
                    if book.derivative and book.symbol in conn.subscriptions:
                        for text in protocol.mark_frames(conn, book):
                            conn.send(text)
    instruments = [registry.get(venue, s) for s in symbols]
    return out, [i for i in instruments if i is not None]
