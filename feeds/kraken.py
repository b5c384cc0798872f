"""Kraken spot, websocket API v2: URLs, subscriptions, pure parsing and the book checksum.

Protocol (Kraken API docs "Book (Level 2)" and the guide
"Spot Websockets (v2) Book Checksum"):

- URL ``wss://ws.kraken.com/v2``; subscribe by message:
  ``{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":100,
  "snapshot":true},"req_id":1}`` (depth one of 10, 25, 100, 500, 1000). Kraken acks each
  symbol separately: ``{"method":"subscribe","result":{..},"success":true,..}``; a refusal
  is ``{"error":"..","method":"subscribe","success":false,"symbol":"..",..}``.
- Book messages: ``{"channel":"book","type":"snapshot"|"update","data":[{"symbol",
  "bids":[{"price":45283.5,"qty":0.1}],"asks":[..],"checksum":3310070434,
  "timestamp":"2023-10-06T17:35:55.440160Z"}]}``. ``price``/``qty`` are JSON *numbers*
  written at full precision; they are kept as the exact wire text (``msgspec.Raw``) and
  written into level arrays ``[[45283.5,0.1],...]`` (price at 0, size at 1) for the book
  kernel. Sizes are absolute; 0 deletes.
- No sequence ids (:attr:`SeqRule.NONE`). The book is truncated to the subscribed depth
  after every message (Kraken sends no delete for levels pushed out of the window, and
  sends the level that enters the window when one inside it is deleted): the store does
  that when the book's capacity is :attr:`KrakenAdapter.book_depth`. Integrity rests on the
  CRC32 ``checksum`` of the top 10 levels (:func:`checksum`), which every v2 snapshot and
  update carries; the book kernel verifies it with the pair's ``price_precision`` and
  ``qty_precision`` (:class:`~monitor.domain.Instrument`). On a mismatch: resubscribe.
- Keepalive: the ``heartbeat`` channel ticks about once a second after a subscribe; we
  send ``{"method":"ping"}`` after 30 s of sending nothing (answered ``{"method":"pong"}``).

Channels accepted by :meth:`KrakenAdapter.subscribe_frames`: ``"book"`` (the default depth
stream; the depth is the adapter's :attr:`~KrakenAdapter.depth`, default 100). Kraken spot
has no mark price, so there is no mark channel.

Instruments: REST ``GET https://api.kraken.com/0/public/AssetPairs``. Its ``wsname`` is the
v1 spelling (``XBT/USD``); v2 spells Kraken's legacy asset codes by their common names
(``XBT`` -> ``BTC``, ``XDG`` -> ``DOGE``), see :data:`V2_ASSET_NAMES`.

Batches of frames are scanned in one numba call (:meth:`KrakenAdapter.scan_frames`,
``feeds.kraken_scan``): single-book ``book`` frames become scan-table rows with their
levels transcoded to arrays; everything else goes through :meth:`~KrakenAdapter.decode`.

Parsing is pure: no I/O, no clock, no globals mutated. :func:`parse` is :meth:`decode` with
the levels converted to arrays (tests and tools).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
import numpy as np

from feeds.base import book_events, chunks, encode
from feeds.contract import (
    BookMessage,
    Checksum,
    Decoded,
    DecodeResult,
    FrameScanner,
    HttpRequest,
    InstrumentsUpdate,
    Limits,
    NoticeHook,
    PageHook,
    ReplyHook,
    SequenceHook,
    SnapshotSource,
    VenueMessage,
    WeightLimitHook,
)
from feeds.kraken_scan import scan_book_frames, scan_book_frames_released
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
)
from monitor.errors import ParseError

WS_URL = "wss://ws.kraken.com/v2"
REST_URL = "https://api.kraken.com"
ASSET_PAIRS_PATH = "/0/public/AssetPairs"
DEPTHS = (10, 25, 100, 500, 1000)  # the depths the book channel accepts
CHECKSUM_LEVELS = 10  # the checksum covers the top 10 levels of each side
# Kraken's legacy asset codes (AssetPairs wsname, v1) -> the names websocket v2 uses
V2_ASSET_NAMES = {"XBT": "BTC", "XDG": "DOGE"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Level(msgspec.Struct, gc=False):
    price: msgspec.Raw  # JSON number, kept as written (the checksum needs every digit)
    qty: msgspec.Raw


class _Entry(msgspec.Struct, gc=False):
    """One element of ``data``: a book (other channels' entries decode with defaults)."""

    symbol: str = ""
    bids: list[_Level] | None = None
    asks: list[_Level] | None = None
    checksum: int | None = None  # CRC32 (unsigned) of the top 10 levels after this message
    # RFC 3339, e.g. "2023-10-06T17:35:55.440160Z"; one without its offset is malformed
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    system: str | None = None  # status channel: online, maintenance, cancel_only, post_only


class _Frame(msgspec.Struct, gc=False):
    channel: str = ""  # book, heartbeat, status, instrument, ticker, ...
    type: str = ""  # snapshot | update
    # a list of entries on every channel except ``instrument`` (an object: not used)
    data: list[_Entry] | dict[str, Any] | None = None
    method: str = ""  # subscribe, unsubscribe, pong (answers to our requests)
    success: bool | None = None
    error: str | None = None
    symbol: str | None = None  # the symbol an error answer is about


class _AssetPair(msgspec.Struct, gc=False):
    altname: str = ""
    wsname: str = ""  # v1 spelling: XBT/USD
    base: str = ""  # XXBT
    quote: str = ""  # ZUSD
    pair_decimals: int = -1  # price decimals
    lot_decimals: int = -1  # volume decimals
    tick_size: str | None = None  # newer field: price increment
    status: str = "online"


class _AssetPairs(msgspec.Struct, gc=False):
    error: list[str] = []
    result: dict[str, _AssetPair] | None = None


_frame = msgspec.json.Decoder(_Frame)
_asset_pairs = msgspec.json.Decoder(_AssetPairs)


def _levels(levels: list[_Level] | None) -> bytes:
    if not levels:
        return b"[]"
    parts: list[bytes | msgspec.Raw] = []
    for level in levels:  # joined once: faster than formatting each level
        parts += (b"],[", level.price, b",", level.qty)
    parts[0] = b"[["
    parts.append(b"]]")
    return b"".join(parts)


def _time_ns(value: datetime) -> int:
    """A wire time (RFC 3339, decoded by msgspec to microseconds) as ns since the epoch."""
    return (value - _EPOCH) // _MICROSECOND * 1_000


def _decimal_text(value: str | int | float | Decimal, places: int) -> str:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return f"{number:.{places}f}"


def checksum(
    bids: Iterable[tuple[str | int | float | Decimal, str | int | float | Decimal]],
    asks: Iterable[tuple[str | int | float | Decimal, str | int | float | Decimal]],
    price_precision: int,
    qty_precision: int,
) -> int:
    """Kraken's book checksum (reference implementation; the book kernel has its own).

    Takes the 10 best asks (low to high) then the 10 best bids (high to low); each price
    and size is written at the pair's precision (``price_precision``/``qty_precision``
    decimals, as the ``instrument`` channel and AssetPairs give them), the ``.`` removed
    and leading zeros stripped; price then size, all concatenated. Returns the unsigned
    CRC32 of that text. Levels may be given in any order, as decimal strings or numbers.
    """
    best_asks = sorted(((Decimal(str(p)), q) for p, q in asks), key=lambda lv: lv[0])
    best_bids = sorted(((Decimal(str(p)), q) for p, q in bids), key=lambda lv: -lv[0])
    parts = []
    for price, qty in best_asks[:CHECKSUM_LEVELS] + best_bids[:CHECKSUM_LEVELS]:
        parts.append(_decimal_text(price, price_precision).replace(".", "").lstrip("0"))
        parts.append(_decimal_text(qty, qty_precision).replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


def v2_symbol(wsname: str) -> str:
    """A v1 ``wsname`` (``XBT/USD``, ``XDG/EUR``) in websocket v2 spelling (``BTC/USD``)."""
    base, _, quote = wsname.partition("/")
    return f"{V2_ASSET_NAMES.get(base, base)}/{V2_ASSET_NAMES.get(quote, quote)}"


class KrakenAdapter:
    """Adapter for Kraken spot over websocket v2 (one book channel, checksummed)."""

    venue = Venue.KRAKEN
    sequencing = SeqRule.NONE  # no sequence ids: the checksum guards the book
    snapshot_source = SnapshotSource.STREAM
    checksum = Checksum.KRAKEN
    subscribe_in_url = False  # subscriptions are sent as frames
    reply_to: ReplyHook | None = None
    connection_sequence: SequenceHook | None = None
    reconnect_notice: NoticeHook | None = None
    stated_weight_limit: WeightLimitHook | None = None  # no limit stated in its metadata
    next_instruments_page: PageHook | None = None  # one answer lists every instrument
    px_index = 0
    qty_index = 1
    # Kraken documents no subscription or message caps for public websocket v2 (its message
    # rate limit is dynamic: "Exceeded msg rate"); these are conservative choices
    limits = Limits(
        streams_per_connection=100,
        topics_per_frame=50,
        control_per_s=1.0,
        connections_per_s=0.2,
    )
    ping_interval_s: float | None = None  # no websocket pings; the app-level ping below
    keepalive_s: float | None = 30.0
    weight_limit_per_minute = 60  # public REST: about one call a second per IP
    used_weight_header: str | None = None

    __slots__ = ("depth",)

    def __init__(self, depth: int = 100) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {DEPTHS}, not {depth}")
        self.depth = depth

    @property
    def book_depth(self) -> int:
        """Capacity of each book: Kraken books are truncated to the subscribed depth."""
        return self.depth

    # --- batch scanning (hot path) ----------------------------------------------------
    @property
    def scanner(self) -> FrameScanner:
        """This adapter: it scans Kraken book frames in batches (feeds.kraken_scan)."""
        return self

    symbol_key = staticmethod(symbol_key)
    min_frames = 6  # the scan beats decode from this many frames a read (bench/README.md)

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames:
        """Scan many frames in one numba call (see feeds.kraken_scan): the levels of book
        frames are transcoded into arrays in a buffer of the scan's own. Pure."""
        return self.scan_buffer(*join_frames(frames))

    def scan_buffer(
        self, buf: ByteArray, starts: IntArray, ends: IntArray, *, release_gil: bool = False
    ) -> ScannedFrames:
        table = new_table(len(starts))
        out = np.empty(int((ends - starts).sum()) + 4 * len(starts), dtype=np.uint8)
        used = (scan_book_frames_released if release_gil else scan_book_frames)(
            buf, starts, ends, table, out, self.depth
        )
        return ScannedFrames(out[:used], table)

    # --- URLs and subscriptions ------------------------------------------------------------
    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        return base_url

    def open_frames(self) -> list[str]:
        return []

    def keepalive_frame(self) -> str | None:
        return '{"method":"ping"}'

    def _frames(self, method: str, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        frames: list[str] = []
        for channel in channels:
            if channel != "book":
                raise ValueError(f"Kraken channel {channel!r} is not supported (use 'book')")
            for batch in chunks(symbols, self.limits.topics_per_frame):
                params = {"channel": "book", "symbol": batch, "depth": self.depth}
                if method == "subscribe":
                    params["snapshot"] = True
                frames.append(
                    encode({"method": method, "params": params, "req_id": len(frames) + 1})
                )
        return frames

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``subscribe`` frames, at most ``limits.topics_per_frame`` symbols each."""
        return self._frames("subscribe", symbols, channels)

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``unsubscribe`` frames (the depth is repeated: Kraken's default would be 10)."""
        return self._frames("unsubscribe", symbols, channels)

    # --- REST --------------------------------------------------------------------------------
    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        url = f"{rest_url.rstrip('/')}{ASSET_PAIRS_PATH}"
        return [HttpRequest(url=url, key=url)]

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Spot pairs from an AssetPairs answer, under their websocket v2 symbols.

        The price tick is ``tick_size`` where the answer has it, else ``10**-pair_decimals``;
        ``price_precision`` is ``pair_decimals`` and ``qty_precision`` ``lot_decimals`` (the
        checksum writes prices and sizes at these precisions). Pairs without a ``wsname``
        (dark-pool books) and delisted pairs are left out.
        """
        try:
            answer = _asset_pairs.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, text, f"AssetPairs: {exc}") from exc
        if answer.error or answer.result is None:
            raise ParseError(self.venue.value, text, f"AssetPairs error {answer.error}")
        instruments = []
        for pair in answer.result.values():
            if not pair.wsname or "/" not in pair.wsname or pair.status == "delisted":
                continue
            if pair.pair_decimals < 0 or pair.lot_decimals < 0:
                raise ParseError(self.venue.value, text, f"{pair.wsname}: no decimals")
            symbol = v2_symbol(pair.wsname)
            base, _, quote = symbol.partition("/")
            tick = _plain(pair.tick_size) if pair.tick_size else _power(pair.pair_decimals)
            instruments.append(
                Instrument(
                    venue=self.venue,
                    symbol=symbol,
                    base=base,
                    quote=quote,
                    kind=InstrumentKind.SPOT,
                    tick=tick,
                    lot=_power(pair.lot_decimals),
                    price_precision=pair.pair_decimals,
                    qty_precision=pair.lot_decimals,
                )
            )
        return instruments

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        return None  # snapshots come in-band on subscribe

    # --- parsing -------------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame (a list of BookMessage if it carries several books)."""
        try:
            frame = _frame.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        channel = frame.channel
        if channel == "book":
            return self._book(frame, data, recv_ns)
        if channel == "heartbeat":
            return Ignored("heartbeat")
        if frame.method:
            if frame.success is False or frame.error:
                return VenueMessage(frame.method, frame.error or "", symbol=frame.symbol)
            return Ignored(frame.method)  # subscribe/unsubscribe acks, pong
        if channel == "status" and isinstance(frame.data, list) and frame.data:
            system = frame.data[0].system or ""
            if system and system != "online":
                return VenueMessage("status", f"Kraken system status: {system}")
            return Ignored("status")
        if channel:
            return Ignored(channel)  # instrument, ticker, trade, ...
        if frame.error:
            return VenueMessage("error", frame.error, symbol=frame.symbol)
        raise ParseError(self.venue.value, data, "neither a channel message nor an answer")

    def _book(self, frame: _Frame, data: bytes | str, recv_ns: int) -> DecodeResult:
        if frame.type == "snapshot":
            kind, limit = EventKind.SNAPSHOT, self.depth
        elif frame.type == "update":
            kind, limit = EventKind.DELTA, 0
        else:
            raise ParseError(self.venue.value, data, f"book message of type {frame.type!r}")
        if not isinstance(frame.data, list) or not frame.data:
            raise ParseError(self.venue.value, data, "book message without data")
        events: list[Decoded] = []
        for entry in frame.data:
            if not entry.symbol or (
                kind == EventKind.SNAPSHOT and (entry.bids is None or entry.asks is None)
            ):
                raise ParseError(self.venue.value, data, "book entry without symbol/bids/asks")
            ts = recv_ns if entry.timestamp is None else _time_ns(entry.timestamp)
            events.append(
                BookMessage(
                    entry.symbol,
                    kind,
                    -1,
                    -1,
                    -1,
                    _levels(entry.bids),
                    _levels(entry.asks),
                    ts,
                    limit,
                    entry.checksum or 0,
                    entry.checksum is not None,
                )
            )
        return events[0] if len(events) == 1 else events

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> DecodeResult:
        """A REST answer: AssetPairs is passed on for :meth:`parse_instruments`."""
        if key.split("?", 1)[0].endswith(ASSET_PAIRS_PATH):
            return InstrumentsUpdate(key, data)
        return Ignored(f"http {key}")


def _power(decimals: int) -> str:
    """``10**-decimals`` as a plain decimal string (3 -> "0.001", 0 -> "1")."""
    return "1" if decimals <= 0 else "0." + "0" * (decimals - 1) + "1"


def _plain(text: str) -> str:
    """A decimal string without padding or exponent ("0.10000" -> "0.1", "1e-05")."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {text!r}") from exc
    out = f"{value.normalize():f}"
    return out


SPOT = KrakenAdapter()
ADAPTERS: dict[Venue, KrakenAdapter] = {SPOT.venue: SPOT}


def parse(
    adapter: KrakenAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: dict[str, tuple[int, float]],
) -> list[FeedEvent]:
    """Parse one websocket frame into domain events, levels converted to arrays.

    ``instruments`` maps the v2 symbol to (price decimals, contract size). Pure.
    """
    return book_events(adapter, adapter.decode(raw, recv_ns), raw, recv_ns, instruments)
