"""The venue-adapter contract: what every venue module provides and the shared code uses.

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

This module imports only :mod:`monitor.domain`: a venue module needs nothing else of the
monitor (the import rules are import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Protocol

import msgspec

from monitor.domain import (
    EventKind,
    Ignored,
    Instrument,
    MarkPriceEvent,
    RawBook,
    ScannedFrames,
    SeqRule,
    Venue,
)

if TYPE_CHECKING:
    from feeds.scan import ByteArray, IntArray


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
    bytes the adapter wrote, e.g. ``b'[["101.5","2"]]'``), sizes in the venue's unit
    (contracts; USD for inverse contracts), converted to base units by the book. Sequence
    ids are -1 where the venue sends none. ``checksum`` is compared after the event is applied when
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
"""One decoded message."""

DecodeResult = Decoded | list[Decoded]
"""What ``decode``/``decode_http`` return: one decoded object, or several for a frame that
carries several books (OKX ``data`` arrays, Kraken)."""


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
    """A venue's documented connection limits (its API docs); the shared layer stays within them.

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


class ConnectionSequence:
    """Per-connection message counter check (Coinbase ``sequence_num``); base: no check.

    A venue whose continuity is per connection, not per book, gives the session one of
    these per connection (``adapter.connection_sequence()``); :meth:`check` returns False
    when a message was lost, and the session then reconnects (every book on it resyncs).
    """

    __slots__ = ()

    def check(self, data: bytes | str) -> bool:
        return True


class FrameScanner(Protocol):
    """A venue's batch scanner of depth frames (hot path; Binance).

    ``scan_frames`` reads many frames in one call; ``symbol_key`` is the integer key the
    scan gives a frame's symbol (the pipeline indexes its books by it). ``min_frames``: from
    this many frames in one read the scan costs less than the adapter's ``decode`` frame by
    frame (a scan call has a fixed cost of ~15 us; large frames break even sooner).
    """

    @property
    def min_frames(self) -> int: ...

    def symbol_key(self, symbol: str) -> int: ...

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames: ...

    def scan_buffer(
        self, buf: ByteArray, starts: IntArray, ends: IntArray, *, release_gil: bool = False
    ) -> ScannedFrames:
        """``scan_frames`` of frames already in one buffer: frame k is
        ``buf[starts[k]:ends[k]]`` (in any order, anywhere in ``buf``). ``release_gil``:
        scan without holding the GIL (from a thread beside the one that feeds)."""
        ...


ReplyHook = Callable[[bytes | str], str | None]
"""Called on every frame: the frame to send back at once (venue keepalive), or None."""

SequenceHook = Callable[[], ConnectionSequence]
"""Makes a fresh per-connection message-counter check for a new connection."""

PageHook = Callable[[HttpRequest, bytes | str], HttpRequest | None]
"""Given a metadata request and its answer: the request for the next page (Bybit
``nextPageCursor``), or None when that was the last page."""

WeightLimitHook = Callable[[HttpRequest, bytes | str], tuple[int, float] | None]
"""Given a metadata request and its answer: the REST weight limit the venue states there
for this IP, as (weight, window in seconds) (Binance ``exchangeInfo.rateLimits``), or None."""

NoticeHook = Callable[[bytes | str], str | None]
"""Called on every frame: why the venue will soon close this connection (a maintenance
notice such as OKX 64008), or None. The session then reconnects at once."""


class VenueAdapter(Protocol):
    """The attributes and methods the shared code uses (see the module doc).

    Optional behaviours are members too, whose value is None where a venue has none:
    ``scanner`` (batch scanning of depth frames), ``reply_to`` (answers to venue
    keepalives, Deribit ``test_request``), ``connection_sequence`` (per-connection message
    counters, Coinbase), ``reconnect_notice`` (advance notice of a disconnect, OKX),
    ``next_instruments_page`` (paginated metadata, Bybit), ``stated_weight_limit`` (the REST
    weight limit read from the metadata at run time, Binance).
    Nothing shared probes an adapter for a member.
    """

    # read-only members (the shared code never sets them): properties or class constants
    @property
    def venue(self) -> Venue: ...

    @property
    def sequencing(self) -> SeqRule:
        """How deltas chain (checked by the book kernel)."""
        ...

    @property
    def snapshot_source(self) -> SnapshotSource: ...

    @property
    def checksum(self) -> Checksum: ...

    @property
    def px_index(self) -> int:
        """Position of the price inside one raw level array."""
        ...

    @property
    def qty_index(self) -> int:
        """Position of the size inside one raw level array."""
        ...

    @property
    def limits(self) -> Limits: ...

    @property
    def book_depth(self) -> int:
        """Levels per side the feed covers (Kraken: the subscribed depth), 0 = all."""
        ...

    @property
    def subscribe_in_url(self) -> bool:
        """Streams named in the URL (Binance): no subscribe frames on connect."""
        ...

    @property
    def ping_interval_s(self) -> float | None:
        """Websocket-level pings we send (None: the server pings, we answer)."""
        ...

    @property
    def keepalive_s(self) -> float | None:
        """An application-level ping is sent after this long without sending."""
        ...

    @property
    def weight_limit_per_minute(self) -> int:
        """REST budget: request weight per minute per IP."""
        ...

    @property
    def used_weight_header(self) -> str | None:
        """The REST header reporting the weight used, if the venue sends one."""
        ...

    # --- optional behaviours (None: the venue has none) -------------------------------
    @property
    def scanner(self) -> FrameScanner | None:
        """Batch scanner of depth frames (Binance), or None: every frame is decoded."""
        ...

    @property
    def reply_to(self) -> ReplyHook | None:
        """Answers frames that ask for one at once (Deribit ``test_request``), or None."""
        ...

    @property
    def connection_sequence(self) -> SequenceHook | None:
        """Per-connection message-counter check factory (Coinbase), or None."""
        ...

    @property
    def next_instruments_page(self) -> PageHook | None:
        """Follows a paginated metadata answer to its next page (Bybit), or None."""
        ...

    @property
    def stated_weight_limit(self) -> WeightLimitHook | None:
        """Reads the REST weight limit the venue states in its metadata (Binance), or None."""
        ...

    @property
    def reconnect_notice(self) -> NoticeHook | None:
        """Reads a venue's notice that it will close the connection (OKX 64008), or None."""
        ...

    # --- connections --------------------------------------------------------------------
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

    # --- REST ---------------------------------------------------------------------------
    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        """Metadata requests whose answers describe every instrument of this market."""
        ...

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Instruments from one metadata answer (``key`` as in the HttpRequest)."""
        ...

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        """REST snapshot of one book (None for STREAM venues)."""
        ...

    # --- parsing (pure) -----------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame. Raises ParseError on malformed input."""
        ...

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one REST answer (snapshot or metadata), ``key`` as in the HttpRequest."""
        ...


__all__ = [
    "BookMessage",
    "Checksum",
    "ConnectionSequence",
    "DecodeResult",
    "Decoded",
    "FrameScanner",
    "HttpRequest",
    "InstrumentsUpdate",
    "Limits",
    "NoticeHook",
    "PageHook",
    "Reply",
    "ReplyHook",
    "SequenceHook",
    "SnapshotSource",
    "VenueAdapter",
    "VenueMessage",
    "WeightLimitHook",
]
