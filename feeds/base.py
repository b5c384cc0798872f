"""What every venue adapter provides: the contract between a venue module and the shared code.

A venue module (``feeds/<venue>.py``) holds one adapter object per market it serves. The
adapter is pure: it builds URLs and subscribe frames, and turns the text of one message
into one decoded object, with no I/O, no clock and no state. Everything that reconnects,
pings, batches subscriptions, spends REST weight or resyncs books is shared
(``feeds.session``, ``monitor.daemon``, ``monitor.pipeline``) and reads the venue's
differences from the attributes below; nothing shared branches on the venue.

Decoded objects (what ``decode`` / ``decode_http`` return):

- a :class:`~monitor.domain.RawBook` (a subclass, or :class:`BookMessage`): a snapshot or
  delta of one book whose level arrays are still the venue's raw JSON (``bids``/``asks``,
  each a JSON array of level arrays, price at ``px_index`` and size at ``qty_index``);
- :class:`~monitor.domain.MarkPriceEvent` (mark, index, funding of a derivative);
- :class:`InstrumentsUpdate` (a metadata response, parsed by ``parse_instruments``);
- :class:`VenueMessage` (errors and notices the venue sent), :class:`Ignored` (acks, pongs,
  other channels), or :class:`Reply` (a frame the connection must send back at once, e.g.
  Deribit's ``test_request``).

Malformed input raises :class:`~monitor.errors.ParseError`; nothing else is raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Protocol

import msgspec
import numpy as np

from monitor.domain import (
    BookEvent,
    EventKind,
    FeedEvent,
    Ignored,
    Instrument,
    MarkPriceEvent,
    RawBook,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError, UnknownInstrument


class SnapshotSource(StrEnum):
    """Where a book's snapshot comes from."""

    REST = "rest"  # fetched over REST while deltas buffer (Binance)
    STREAM = "stream"  # sent in-band on (re)subscribe: deltas before it are dropped


class Checksum(IntEnum):
    """Checksum a venue attaches to book messages (verified by the book kernel per event)."""

    NONE = 0
    OKX = 1  # CRC32 of the top 25 levels, bid:ask interleaved, shortest decimals, signed
    KRAKEN = 2  # CRC32 of top 10 asks then top 10 bids, digits at the pair's precision


class BookMessage(RawBook, gc=False):
    """A book event built by the adapter (or by the pipeline while a book resyncs).

    ``bids``/``asks`` are raw JSON level arrays (``msgspec.Raw`` slices of the frame, or
    bytes the adapter wrote, e.g. ``b'[["101.5","2"]]'``). Sequence ids are -1 where the
    venue sends none. ``checksum`` is compared after the event is applied when
    ``has_checksum`` is true. ``limit`` is the depth the snapshot was cut at (0 = full).
    """

    symbol: str
    kind: EventKind
    first_seq: int
    last_seq: int
    prev_seq: int
    bids: bytes | msgspec.Raw
    asks: bytes | msgspec.Raw
    ts_event_ns: int
    limit: int = 0
    checksum: int = 0
    has_checksum: bool = False


@dataclass(slots=True)
class InstrumentsUpdate:
    """A metadata response passed through (the adapter's ``parse_instruments`` reads it)."""

    url: str
    text: str | bytes


@dataclass(slots=True)
class VenueMessage:
    """Something the venue told us that is not market data (error codes, shutdown notices).

    ``reconnect`` asks the connection that received it to reconnect (maintenance notice,
    server shutdown). ``symbol`` names the book an error is about, where the venue says.
    """

    code: str
    message: str
    reconnect: bool = False
    symbol: str | None = None


@dataclass(slots=True)
class Reply:
    """A frame to send back on the connection that received this one (venue keepalive)."""

    text: str


Decoded = RawBook | MarkPriceEvent | InstrumentsUpdate | VenueMessage | Reply | Ignored


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One REST request: GET ``url``, or POST ``body`` (JSON) to ``url`` when body is set.

    ``key`` is how the response is recorded and handed to ``decode_http`` (the URL for a
    GET; for a POST the adapter makes one up that says what was asked, e.g. ``...#meta``).
    """

    url: str
    key: str
    body: str | None = None
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """A venue's documented connection limits (venues.md); the shared layer stays within them.

    ``streams_per_connection``: subscriptions (topics) carried by one connection.
    ``topics_per_frame``: topics in one subscribe frame. ``control_per_s``: frames the
    client may send per second on one connection (subscribe, unsubscribe, pings).
    ``control_per_hour``: the same per hour (OKX: 480), 0 = no such limit.
    ``connections_per_s``: new connections per second per IP.
    ``lifetime_s``: the venue closes a connection after this long (0 = never); it is rotated
    shortly before. ``max_frame_bytes``: largest frame the venue may send (snapshots).
    """

    streams_per_connection: int = 200
    topics_per_frame: int = 50
    control_per_s: float = 5.0
    control_per_hour: int = 0
    connections_per_s: float = 5.0
    lifetime_s: float = 0.0
    max_frame_bytes: int = 16 * 1024 * 1024


class VenueAdapter(Protocol):
    """The attributes and methods the shared code uses (see the module doc)."""

    venue: Venue
    sequencing: SeqRule  # how deltas chain (checked by the book kernel)
    snapshot_source: SnapshotSource
    checksum: Checksum
    px_index: int  # position of the price inside one raw level array
    qty_index: int  # position of the size inside one raw level array
    limits: Limits
    book_depth: int  # levels per side the feed covers (Kraken: the subscribed depth), 0 = all
    subscribe_in_url: bool  # streams named in the URL (Binance): no subscribe frames on connect
    # keepalive: websocket-level pings we send (None: the server pings and we answer),
    # and an application-level frame sent after ``keepalive_s`` without sending anything
    ping_interval_s: float | None
    keepalive_s: float | None
    # REST budget: weight per minute per IP, and the header reporting what is used
    weight_limit_per_minute: int
    used_weight_header: str | None

    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        """URL of a connection carrying these symbols (Binance puts streams in the URL)."""
        ...

    def open_frames(self) -> list[str]:
        """Frames sent first on every connection (e.g. Deribit ``set_heartbeat``)."""
        ...

    def keepalive_frame(self) -> str | None:
        """The application-level ping frame (OKX ``ping``), or None."""
        ...

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """Subscribe frames for these symbols and channels, within ``limits``."""
        ...

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]: ...

    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        """Metadata requests whose answers describe every instrument of this market."""
        ...

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Instruments from one metadata answer (``key`` as in the HttpRequest)."""
        ...

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        """REST snapshot of one book (None for STREAM venues)."""
        ...

    def decode(self, data: bytes | str, recv_ns: int) -> Any:
        """Decode one websocket frame into one Decoded object."""
        ...

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> Any:
        """Decode one REST answer (snapshot or metadata)."""
        ...


class ConnectionSequence:
    """Per-connection message counter check (Coinbase ``sequence_num``); base: no check.

    A venue whose continuity is per connection, not per book, gives the session one of
    these per connection (``adapter.connection_sequence()``); :meth:`check` returns False
    when a message was lost, and the session then reconnects (every book on it resyncs).
    """

    __slots__ = ()

    def check(self, data: bytes | str) -> bool:
        return True


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut into lists of at most ``size``."""
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def encode(value: Any) -> str:
    """Compact JSON text of a frame to send."""
    return msgspec.json.encode(value).decode()


def levels_json(levels: Sequence[tuple[str, str]]) -> bytes:
    """Raw level array bytes ``[["px","qty"],...]`` from decimal strings the adapter read
    (venues whose levels are objects, e.g. Coinbase and Hyperliquid)."""
    return msgspec.json.encode([[px, qty] for px, qty in levels])


def book_events(
    adapter: Any,
    decoded: Any,
    raw: bytes | str,
    recv_ns: int,
    instruments: Mapping[str, tuple[int, float]],
) -> list[FeedEvent]:
    """What a decoded frame says, with its level arrays converted (tools and tests; the
    live path leaves them to the book kernel). ``instruments`` maps the venue symbol to
    (price decimals, contract size). Pure; raises ParseError or UnknownInstrument."""
    from monitor.book.reference import LevelError, parse_levels  # noqa: PLC0415 (tools-only)

    out: list[FeedEvent] = []
    for item in decoded if type(decoded) is list else (decoded,):
        if isinstance(item, MarkPriceEvent | Ignored):
            out.append(item)
            continue
        if not isinstance(item, RawBook):
            out.append(Ignored(type(item).__name__))
            continue
        meta = instruments.get(item.symbol)
        if meta is None:
            raise UnknownInstrument(adapter.venue.value, item.symbol)
        decimals, contract_size = meta
        try:
            bids, asks = (
                parse_levels(
                    bytes(side),
                    px_index=adapter.px_index,
                    qty_index=adapter.qty_index,
                    price_decimals=decimals,
                    contract_size=contract_size,
                )
                for side in (item.bids, item.asks)
            )
        except LevelError as exc:
            raise ParseError(adapter.venue.value, raw, str(exc)) from exc
        out.append(
            BookEvent(
                venue=adapter.venue,
                symbol=item.symbol,
                kind=item.kind,
                bid_px=np.array([p for p, _ in bids], dtype=np.int64),
                bid_qty=np.array([q for _, q in bids], dtype=np.float64),
                ask_px=np.array([p for p, _ in asks], dtype=np.int64),
                ask_qty=np.array([q for _, q in asks], dtype=np.float64),
                ts_event_ns=item.ts_event_ns,
                ts_recv_ns=recv_ns,
                first_seq=item.first_seq,
                last_seq=item.last_seq,
                prev_seq=item.prev_seq,
                depth_limit=item.limit,
            )
        )
    return out


__all__ = [
    "BookMessage",
    "Checksum",
    "ConnectionSequence",
    "Decoded",
    "HttpRequest",
    "Ignored",
    "InstrumentsUpdate",
    "Limits",
    "Reply",
    "SnapshotSource",
    "VenueAdapter",
    "VenueMessage",
    "book_events",
    "chunks",
    "encode",
    "levels_json",
]
