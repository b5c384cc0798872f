"""Coinbase Advanced Trade market data (spot): URLs, subscriptions, pure parsing.

Protocol (Coinbase CDP docs "Advanced Trade WebSocket
Overview" and "WebSocket Channels", "List Public Products"):

- One socket, ``wss://advanced-trade-ws.coinbase.com``; subscribe by message, one channel
  per message: ``{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}``. No
  authentication is needed for ``level2`` and ``heartbeats``. A connection that has not
  subscribed within 5 s is closed, and most channels close after 60-90 s without updates,
  so every connection also subscribes to ``heartbeats`` (one message per second).
- Every message is ``{"channel","client_id","timestamp","sequence_num","events":[..]}``.
  ``l2_data`` events are ``{"type":"snapshot"|"update","product_id","updates":[{"side":
  "bid"|"offer","event_time","price_level","new_quantity"}]}``; quantities are absolute and
  ``"0"`` deletes. The first event of a product is its full book (type ``snapshot``).
  One frame may carry events of several products: :meth:`CoinbaseAdapter.decode` then
  returns a list (one book message per event), else the single book message.
- Continuity: there are no per-book ids (SeqRule.NONE). ``sequence_num`` counts the
  messages of a connection; a jump of more than 1 means a message was lost.
  :meth:`CoinbaseAdapter.connection_sequence` gives the session a cheap per-connection
  check (:class:`CoinbaseSequence`); on a gap the session reconnects and every book of the
  connection is rebuilt from the snapshots that come with the new subscription.
- ``heartbeats``, ``subscriptions`` (and any other channel) are ignored;
  ``{"type":"error","message":..}`` becomes a :class:`~feeds.contract.VenueMessage`.
- No mark price: this API is spot only.
- Instruments: ``GET /api/v3/brokerage/market/products?product_type=SPOT`` (public).
  ``-USDC`` products that are aliases of the ``-USD`` book (``alias`` set) are skipped:
  market data channels answer them with the ``-USD`` data.

Channels accepted by :meth:`CoinbaseAdapter.subscribe_frames` (the settings table's
``depth_stream``): ``level2`` (the default and only book channel). ``heartbeats`` is
added by the adapter, once per call; the caller makes one call per connection.

Parsing is pure: no I/O, no clock, no state (except the per-connection counter the
session owns). The level arrays are built here, ``[["px","qty"],..]`` per side, for the
book kernel; :func:`parse` converts them, for tests and tools. Batches of frames go
through the adapter's numba scanner first (:mod:`feeds.coinbase_scan`), which writes the
same level arrays for the common ``l2_data`` frame and hands every other frame to
:meth:`CoinbaseAdapter.decode`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from functools import lru_cache

import msgspec
import numpy as np

from feeds.base import book_events, chunks, encode
from feeds.coinbase_scan import N_LEVEL, level_rows, scan_l2_frames, scan_l2_frames_released
from feeds.contract import (
    BookMessage,
    Checksum,
    ConnectionSequence,
    Decoded,
    DecodeResult,
    FrameScanner,
    HttpRequest,
    InstrumentsUpdate,
    Limits,
    NoticeHook,
    PageHook,
    ReplyHook,
    SnapshotSource,
    VenueMessage,
    WeightLimitHook,
)
from feeds.scan import ByteArray, IntArray, join_frames, new_table, symbol_key
from monitor.domain import (
    EventKind,
    FeedEvent,
    Ignored,
    Instrument,
    InstrumentKind,
    ScannedFrames,
    SeqRule,
    Venue,
    significant_decimals,
)
from monitor.errors import ParseError

LEVEL2 = "level2"
HEARTBEATS = "heartbeats"
PRODUCTS_PATH = "/api/v3/brokerage/market/products"
HEARTBEATS_SUBSCRIBE = '{"type":"subscribe","channel":"heartbeats"}'
_SNAPSHOT = EventKind.SNAPSHOT
_DELTA = EventKind.DELTA
_PRODUCT = re.compile(r"\b([A-Z0-9]{2,}-[A-Z0-9]{2,})\b")
_SEQUENCE_TEXT = re.compile(r'"sequence_num"\s*:\s*(\d+)')
_SEQUENCE_BYTES = re.compile(rb'"sequence_num"\s*:\s*(\d+)')


class _Update(msgspec.Struct, gc=False):
    side: str  # bid | offer
    price_level: str
    new_quantity: str  # absolute size; "0" deletes


class _Event(msgspec.Struct, gc=False):
    """One event of any channel (only ``l2_data`` events are read)."""

    type: str = ""  # snapshot | update
    product_id: str = ""
    updates: list[_Update] | None = None


class _Frame(msgspec.Struct, gc=False):
    """A channel message, or an error ``{"type":"error","message":..}``."""

    channel: str = ""  # l2_data | heartbeats | subscriptions | ...
    timestamp: str = ""  # RFC 3339, nanoseconds
    sequence_num: int = -1  # per connection (checked by CoinbaseSequence, not here)
    events: list[_Event] = []
    type: str = ""  # error
    message: str = ""


class _Product(msgspec.Struct):
    product_id: str
    base_currency_id: str = ""
    quote_currency_id: str = ""
    base_increment: str = ""  # size step
    quote_increment: str = ""
    price_increment: str = ""  # price step (same as quote_increment on spot books)
    product_type: str = "SPOT"
    is_disabled: bool = False
    alias: str = ""  # set on -USDC products served by the -USD book


class _Products(msgspec.Struct):
    products: list[_Product] = []


class _RestError(msgspec.Struct):
    error: str = ""
    message: str = ""
    error_details: str = ""


_frame = msgspec.json.Decoder(_Frame)
_products = msgspec.json.Decoder(_Products)
_rest_error = msgspec.json.Decoder(_RestError)
_encode_levels = msgspec.json.Encoder().encode


@lru_cache(maxsize=64)
def _epoch_s(prefix: str) -> int:
    """Seconds since the epoch of ``YYYY-MM-DDTHH:MM:SS`` (UTC); frames share seconds."""
    if len(prefix) != 19 or prefix[4] != "-" or prefix[10] not in "Tt ":
        raise ValueError(prefix)
    return calendar.timegm(
        (
            int(prefix[0:4]),
            int(prefix[5:7]),
            int(prefix[8:10]),
            int(prefix[11:13]),
            int(prefix[14:16]),
            int(prefix[17:19]),
            0,
            0,
            0,
        )
    )


def timestamp_ns(text: str) -> int:
    """Nanoseconds since the epoch of Coinbase's ``2023-02-09T20:32:50.714964855Z``."""
    if not text.endswith(("Z", "z")):
        raise ValueError(f"not a UTC timestamp: {text!r}")
    seconds = _epoch_s(text[:19])
    fraction = text[20:-1] if len(text) > 20 and text[19] == "." else ""
    if len(text) > 20 and text[19] != ".":
        raise ValueError(f"bad timestamp: {text!r}")
    if fraction and not fraction.isdigit():
        raise ValueError(f"bad fraction: {text!r}")
    return seconds * 1_000_000_000 + (int(fraction[:9].ljust(9, "0")) if fraction else 0)


def _normalise_decimal(text: str) -> str:
    """'0.010' -> '0.01' (keeps the value, drops the venue's padding)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class CoinbaseSequence(ConnectionSequence):
    """The ``sequence_num`` check of one connection (a :class:`~feeds.contract.ConnectionSequence`).

    The first message sets the start; afterwards a message whose ``sequence_num`` is more
    than 1 above the previous one means messages were lost (False). The field is found
    with one regex search near the start of the frame, not a decode. Frames without it
    (errors) pass.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = -1

    def check(self, data: bytes | str) -> bool:
        match = (
            _SEQUENCE_TEXT.search(data) if isinstance(data, str) else _SEQUENCE_BYTES.search(data)
        )
        if match is None:
            return True
        value = int(match.group(1))
        last = self.last
        self.last = value
        return last < 0 or value <= last + 1


class CoinbaseAdapter:
    """Adapter for Coinbase Advanced Trade spot books; see the module doc."""

    __slots__ = ()

    venue = Venue.COINBASE
    sequencing = SeqRule.NONE  # no per-book ids: continuity is per connection
    snapshot_source = SnapshotSource.STREAM
    checksum = Checksum.NONE
    px_index = 0
    qty_index = 1
    # Coinbase docs: 8 connections/s and 8 unauthenticated messages/s per IP: each
    # connection sends two subscribe frames (level2, heartbeats), so 2 connections/s and 4
    # frames/s per connection keep the IP under 8 messages/s while connections open.
    # 16 products per connection: 32 failed with "too many L2 streams requested in a
    # single session" (empirical, Coinbase.Net #19). The BTC-USD snapshot runs to several
    # MB, hence frames of up to 64 MiB.
    limits = Limits(
        streams_per_connection=16,
        topics_per_frame=16,
        control_per_s=4.0,
        connections_per_s=2.0,
        max_frame_bytes=64 * 1024 * 1024,
    )
    ping_interval_s: float | None = None  # the heartbeats channel keeps the socket busy
    keepalive_s: float | None = None
    weight_limit_per_minute = 600  # public REST: 10 requests/s per IP
    used_weight_header: str | None = None
    book_depth = 0  # full books: the store's default capacity
    subscribe_in_url = False
    reply_to: ReplyHook | None = None
    reconnect_notice: NoticeHook | None = None
    stated_weight_limit: WeightLimitHook | None = None  # no limit stated in its metadata
    next_instruments_page: PageHook | None = None  # one answer lists every instrument

    # --- batch scanning (hot path) ----------------------------------------------------
    @property
    def scanner(self) -> FrameScanner:
        """This adapter: it scans ``l2_data`` frames in batches (feeds.coinbase_scan)."""
        return self

    symbol_key = staticmethod(symbol_key)
    min_frames = 6  # the scan beats decode from this many frames a read (bench/README.md)

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames:
        """Scan many frames in one numba call (see feeds.coinbase_scan): the levels are
        written as arrays into a buffer of their own, which the ranges point into. Pure."""
        return self.scan_buffer(*join_frames(frames))

    def scan_buffer(
        self, buf: ByteArray, starts: IntArray, ends: IntArray, *, release_gil: bool = False
    ) -> ScannedFrames:
        table = new_table(len(starts))
        sizes = ends - starts
        largest = int(sizes.max()) if len(sizes) else 0
        # a book frame's levels are shorter than the frame
        out = np.empty(int(sizes.sum()) + 64, dtype=np.uint8)
        levels = np.empty((level_rows(largest), N_LEVEL), dtype=np.int64)
        used = (scan_l2_frames_released if release_gil else scan_l2_frames)(
            buf, starts, ends, out, levels, table
        )
        return ScannedFrames(out[:used], table)

    # --- URLs and subscriptions -------------------------------------------------------
    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        """Coinbase subscribes by message: the URL is the socket as configured."""
        return base_url

    def open_frames(self) -> list[str]:
        return []

    def keepalive_frame(self) -> str | None:
        return None

    def connection_sequence(self) -> CoinbaseSequence:
        """A fresh ``sequence_num`` check for a new connection."""
        return CoinbaseSequence()

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``level2`` subscribe frames for these products, then one ``heartbeats`` frame.

        Called once per connection (``limits.streams_per_connection`` products at most).
        """
        frames = self._frames("subscribe", symbols, channels)
        return [*frames, HEARTBEATS_SUBSCRIBE] if frames else []

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``level2`` unsubscribe frames (heartbeats stay: other products share them)."""
        return self._frames("unsubscribe", symbols, channels)

    def _frames(self, action: str, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        books = [c for c in channels if c != HEARTBEATS]
        for channel in books:
            if channel != LEVEL2:
                raise ValueError(f"coinbase: unknown channel {channel!r} (level2)")
        return [
            encode({"type": action, "product_ids": batch, "channel": channel})
            for channel in books
            for batch in chunks(symbols, self.limits.topics_per_frame)
            if batch
        ]

    # --- REST -----------------------------------------------------------------------------
    def instruments_url(self, rest_url: str) -> str:
        return f"{rest_url.rstrip('/')}{PRODUCTS_PATH}?product_type=SPOT"

    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        url = self.instruments_url(rest_url)
        return [HttpRequest(url=url, key=url)]

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        """None: the full book comes in-band on subscribe."""
        return None

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Spot instruments from a ``market/products`` answer.

        The tick is ``price_increment`` (``quote_increment`` where it is missing), the lot
        ``base_increment``. Disabled products, aliases and non-spot products are skipped.
        """
        try:
            answer = _products.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, text, f"products: {exc}") from exc
        out: list[Instrument] = []
        for product in answer.products:
            tick = product.price_increment or product.quote_increment
            lot = product.base_increment
            if (
                product.product_type != "SPOT"
                or product.is_disabled
                or product.alias
                or not tick
                or not lot
                or not product.base_currency_id
                or not product.quote_currency_id
                or float(tick) <= 0
            ):
                continue
            out.append(
                Instrument(
                    venue=self.venue,
                    symbol=product.product_id,
                    base=product.base_currency_id,
                    quote=product.quote_currency_id,
                    kind=InstrumentKind.SPOT,
                    tick=_normalise_decimal(tick),
                    lot=_normalise_decimal(lot),
                    # prices are written at the finer of the two increments
                    price_precision=max(
                        significant_decimals(product.price_increment),
                        significant_decimals(product.quote_increment),
                    ),
                )
            )
        return out

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> Decoded:
        """Decode a REST answer: the product list passes through; errors are messages."""
        if PRODUCTS_PATH not in key:
            return Ignored(f"http {key}")
        try:
            error = _rest_error.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, f"products: {exc}") from exc
        if error.error:
            return VenueMessage(error.error, error.message or error.error_details)
        return InstrumentsUpdate(key, data)

    # --- websocket ------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame: one book message per ``l2_data`` event (a list when
        the frame carries several). Raises ParseError on malformed input."""
        try:
            frame = _frame.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        channel = frame.channel
        if channel == "l2_data":
            try:
                ts = timestamp_ns(frame.timestamp) if frame.timestamp else recv_ns
            except ValueError as exc:
                raise ParseError(self.venue.value, data, f"timestamp: {exc}") from exc
            books: list[Decoded] = [self._book(event, ts, data) for event in frame.events]
            if not books:
                return Ignored("l2_data without events")
            return books[0] if len(books) == 1 else books
        if channel:
            return Ignored(channel)
        if frame.type == "error":
            match = _PRODUCT.search(frame.message)
            return VenueMessage("error", frame.message, symbol=match.group(1) if match else None)
        return Ignored(frame.type or "unknown")

    def _book(self, event: _Event, ts: int, data: bytes | str) -> BookMessage:
        if event.type == "update":
            kind = _DELTA
        elif event.type == "snapshot":
            kind = _SNAPSHOT
        else:
            raise ParseError(self.venue.value, data, f"l2_data event type {event.type!r}")
        if not event.product_id or event.updates is None:
            raise ParseError(self.venue.value, data, "l2_data event without product_id/updates")
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for update in event.updates:
            side = update.side
            if side == "bid":
                bids.append([update.price_level, update.new_quantity])
            elif side in ("offer", "ask"):
                asks.append([update.price_level, update.new_quantity])
            else:
                raise ParseError(self.venue.value, data, f"l2_data side {side!r}")
        return BookMessage(
            event.product_id,
            kind,
            -1,
            -1,
            -1,
            _encode_levels(bids),
            _encode_levels(asks),
            ts,
            0,  # a snapshot is the full book
        )


ADAPTER = CoinbaseAdapter()
ADAPTERS: dict[Venue, CoinbaseAdapter] = {ADAPTER.venue: ADAPTER}


def parse(
    adapter: CoinbaseAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: dict[str, tuple[int, float]],
) -> list[FeedEvent]:
    """Parse one websocket frame into domain events, levels converted to arrays.

    ``instruments`` maps the product id to (price decimals, contract size). Pure.
    """
    return book_events(adapter, adapter.decode(raw, recv_ns), raw, recv_ns, instruments)
