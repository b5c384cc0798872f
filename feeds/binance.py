"""Binance spot and USD-M perpetuals: URLs, subscriptions and pure parsing.

Protocol (Binance spot and USD-M API docs, "WebSocket Streams" and "Market Data"):

- Diff depth:
  ``{"e":"depthUpdate","E":ms,"s":"BNBBTC","U":first,"u":last,"b":[["px","qty"]],"a":[..]}``;
  USD-M adds ``"T"`` (transaction time) and ``"pu"`` (the previous event's ``u``). Quantities
  are absolute; 0 deletes. Combined streams wrap it as ``{"stream":..,"data":{..}}``.
- Snapshot: REST ``/api/v3/depth`` (spot) or ``/fapi/v1/depth`` (USD-M):
  ``{"lastUpdateId":N,"bids":[..],"asks":[..]}`` (USD-M adds ``E`` and ``T``).
- Sync, spot (SeqRule.CONTIGUOUS): drop ``u <= lastUpdateId``; the first delta applied has
  ``U <= lastUpdateId + 1``; then every ``U == previous u + 1``. A snapshot older than the
  first buffered delta (``lastUpdateId < U``) is fetched again.
- Sync, USD-M (SeqRule.PREVIOUS): drop ``u < lastUpdateId``; the first applied has
  ``U <= lastUpdateId <= u``; then every ``pu == previous u``.
- Mark price (USD-M ``<sym>@markPrice``, on the ``/market`` path since 2026-04):
  ``{"e":"markPriceUpdate","E":ms,"s":"BTCUSDT","p":mark,"i":index,"P":settle,"r":funding,
  "T":next funding ms}``.

Parsing is pure: no I/O, no clock, no globals mutated. The hot path (:meth:`decode`) hands
the raw level arrays on untouched, so the book store converts them in one batched kernel
call; :func:`parse` is the same decode with the levels converted here, for tests and tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import msgspec

from feeds.base import book_events, chunks, encode
from feeds.binance_scan import scan_depth_frames, scan_depth_frames_released
from feeds.contract import (
    BookMessage,
    Checksum,
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
from feeds.scan import ByteArray, IntArray, join_frames, new_table, symbol_key
from monitor.domain import (
    EventKind,
    FeedEvent,
    Ignored,
    Instrument,
    InstrumentKind,
    MarkPriceEvent,
    RawBook,
    ScannedFrames,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError

MS = 1_000_000  # ns per ms
_ABSENT = msgspec.Raw(b"")  # a field the message does not carry


class _Data(
    RawBook,
    gc=False,
    rename={
        "event": "e",
        "ts_ms": "E",
        "symbol": "s",
        "first_seq": "U",
        "last_seq": "u",
        "prev_seq": "pu",
        "bids": "b",
        "asks": "a",
    },
):
    """One Binance stream payload; a ``depthUpdate`` is itself the book event (RawBook).

    Fields absent from a message keep their defaults. Wire names in ``rename``.
    """

    kind: ClassVar[EventKind] = EventKind.DELTA
    limit: ClassVar[int] = 0
    checksum: ClassVar[int] = 0
    has_checksum: ClassVar[bool] = False
    event: str = ""  # e: depthUpdate, markPriceUpdate, aggTrade, kline, ...
    ts_ms: int = 0  # E: event time (ms)
    T: int = 0  # depthUpdate: transaction time; markPriceUpdate: next funding time (ms)
    symbol: str = ""  # s
    first_seq: int = -1  # U: first update id in the event
    last_seq: int = -1  # u: last update id in the event
    prev_seq: int = -1  # pu (USD-M): last update id of the previous event
    bids: msgspec.Raw = _ABSENT  # b: bid levels (bookTicker: best bid price)
    asks: msgspec.Raw = _ABSENT  # a: ask levels (aggTrade: aggregate trade id)
    p: msgspec.Raw = _ABSENT  # mark price (aggTrade: trade price)
    i: msgspec.Raw = _ABSENT  # index price
    r: msgspec.Raw = _ABSENT  # funding rate

    @property
    def ts_event_ns(self) -> int:
        return self.ts_ms * MS


class _Frame(_Data):
    """A raw-stream payload, a combined-stream envelope, an ack or an error."""

    stream: str | None = None
    data: _Data | None = None
    result: msgspec.Raw = _ABSENT
    id: msgspec.Raw = _ABSENT
    code: msgspec.Raw = _ABSENT
    msg: str | None = None


class _Snapshot(msgspec.Struct, gc=False):
    lastUpdateId: int = -1
    E: int = 0
    T: int = 0
    bids: msgspec.Raw = _ABSENT
    asks: msgspec.Raw = _ABSENT
    code: int | None = None
    msg: str | None = None


class _Filter(msgspec.Struct):
    filterType: str
    tickSize: str | None = None
    stepSize: str | None = None


class _Symbol(msgspec.Struct):
    symbol: str
    baseAsset: str
    quoteAsset: str
    status: str = "TRADING"
    contractType: str | None = None
    quoteAssetPrecision: int = 0
    pricePrecision: int = 0
    filters: list[_Filter] = []


class _RateLimit(msgspec.Struct):
    rateLimitType: str = ""
    interval: str = ""
    intervalNum: int = 1
    limit: int = 0


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_Symbol]


class _RateLimits(msgspec.Struct):
    rateLimits: list[_RateLimit] = []


_INTERVAL_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


_exchange_info = msgspec.json.Decoder(_ExchangeInfo)
_rate_limits = msgspec.json.Decoder(_RateLimits)
_frame = msgspec.json.Decoder(_Frame)
_snapshot = msgspec.json.Decoder(_Snapshot)


def _normalise_decimal(text: str) -> str:
    """'0.01000000' -> '0.01' (keeps the value, drops the venue's padding)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def parse_exchange_info(venue: Venue, text: str | bytes) -> list[Instrument]:
    """Instruments of a Binance spot or USD-M ``exchangeInfo`` response. Pure.

    Symbols without a price or lot filter are skipped, and so are delisted futures (an
    empty ``contractType``). Raises ParseError on malformed input.
    """
    try:
        info = _exchange_info.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ParseError(
            venue.value, text if isinstance(text, str) else bytes(text), str(exc)
        ) from exc
    instruments: list[Instrument] = []
    for sym in info.symbols:
        tick = next((f.tickSize for f in sym.filters if f.filterType == "PRICE_FILTER"), None)
        lot = next((f.stepSize for f in sym.filters if f.filterType == "LOT_SIZE"), None)
        if not tick or not lot or float(tick) <= 0:
            continue
        if sym.contractType is None:
            kind = InstrumentKind.SPOT
        elif sym.contractType == "PERPETUAL":
            kind = InstrumentKind.PERP
        elif sym.contractType:
            kind = InstrumentKind.FUTURE
        else:
            continue  # delisted futures carry an empty contractType
        instruments.append(
            Instrument(
                venue=venue,
                symbol=sym.symbol,
                base=sym.baseAsset,
                quote=sym.quoteAsset,
                kind=kind,
                tick=_normalise_decimal(tick),
                lot=_normalise_decimal(lot),
                price_precision=min(sym.pricePrecision or sym.quoteAssetPrecision, 12),
            )
        )
    return instruments


def stated_weight_limit(request: HttpRequest, text: str | bytes) -> tuple[int, float] | None:
    """The IP's ``REQUEST_WEIGHT`` limit an ``exchangeInfo`` answer states, as (weight,
    window seconds): the tightest per second if it states several; None if it states none
    (or the answer is not exchangeInfo, or is malformed). Pure."""
    try:
        stated = _rate_limits.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    best: tuple[int, float] | None = None
    for rate in stated.rateLimits:
        unit = _INTERVAL_S.get(rate.interval)
        if rate.rateLimitType != "REQUEST_WEIGHT" or unit is None or rate.limit <= 0:
            continue
        window_s = unit * max(1, rate.intervalNum)
        if best is None or rate.limit / window_s < best[0] / best[1]:
            best = (rate.limit, window_s)
    return best


def _float(raw: msgspec.Raw) -> float:
    if not raw:
        return float("nan")
    return float(bytes(raw).strip(b'"'))


class BinanceAdapter:
    """Adapter for one Binance market (spot or USD-M)."""

    __slots__ = (
        "depth_path",
        "depth_weights",
        "instruments_path",
        "instruments_weight",
        "limits",
        "sequencing",
        "snapshot_limits",
        "venue",
        "weight_limit_per_minute",
    )

    used_weight_header: str | None = "X-MBX-USED-WEIGHT-1M"  # Binance reports the IP's weight used
    snapshot_source = SnapshotSource.REST
    checksum = Checksum.NONE
    px_index = 0
    qty_index = 1
    book_depth = 0  # diff streams cover the whole book: no depth cap
    subscribe_in_url = True  # streams are named in the connection URL (combined stream)
    ping_interval_s: float | None = None  # the server pings; websockets answers with pongs
    keepalive_s: float | None = None  # no application-level ping

    def __init__(
        self,
        venue: Venue,
        sequencing: SeqRule,
        depth_path: str,
        instruments_path: str,
        snapshot_limits: tuple[int, ...],
        *,
        depth_weights: tuple[tuple[int, int], ...],
        instruments_weight: int,
        weight_limit_per_minute: int,
        limits: Limits,
    ) -> None:
        self.venue = venue
        self.limits = limits
        self.sequencing = sequencing
        self.depth_path = depth_path
        self.instruments_path = instruments_path
        self.snapshot_limits = snapshot_limits
        self.depth_weights = depth_weights  # (largest limit, request weight), ascending
        self.instruments_weight = instruments_weight
        self.weight_limit_per_minute = weight_limit_per_minute  # the IP's REQUEST_WEIGHT/min

    reply_to: ReplyHook | None = None  # the server's pings are websocket pings
    connection_sequence: SequenceHook | None = None  # continuity is per book (update ids)
    reconnect_notice: NoticeHook | None = None
    next_instruments_page: PageHook | None = None  # one answer lists every instrument
    # exchangeInfo.rateLimits states the IP's weight limit: read at run time
    stated_weight_limit: WeightLimitHook | None = staticmethod(stated_weight_limit)

    # --- batch scanning (hot path) ----------------------------------------------------
    @property
    def scanner(self) -> FrameScanner:
        """This adapter: it scans Binance depth frames in batches (feeds.binance_scan)."""
        return self

    symbol_key = staticmethod(symbol_key)
    min_frames = 12  # the scan beats decode from this many frames a read (bench/README.md)

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames:
        """Scan many frames in one numba call (see feeds.binance_scan). Pure."""
        return self.scan_buffer(*join_frames(frames))

    def scan_buffer(
        self, buf: ByteArray, starts: IntArray, ends: IntArray, *, release_gil: bool = False
    ) -> ScannedFrames:
        table = new_table(len(starts))
        (scan_depth_frames_released if release_gil else scan_depth_frames)(buf, starts, ends, table)
        return ScannedFrames(buf, table)

    def snapshot_weight(self, limit: int) -> int:
        """Request weight of one depth snapshot of ``limit`` levels."""
        for largest, weight in self.depth_weights:
            if limit <= largest:
                return weight
        return self.depth_weights[-1][1]

    # --- URLs and subscriptions -------------------------------------------------------
    def stream_url(self, ws_url: str, symbols: Sequence[str], streams: Sequence[str]) -> str:
        """Combined-stream URL, e.g. ``wss://h/stream?streams=btcusdt@depth@100ms/...``."""
        names = [f"{s.lower()}@{stream}" for s in symbols for stream in streams]
        return f"{ws_url.rstrip('/')}?streams={'/'.join(names)}"

    def subscribe_frames(
        self, symbols: Sequence[str], channels: Sequence[str], per_frame: int | None = None
    ) -> list[str]:
        """``SUBSCRIBE`` frames for a live connection (each at most ``per_frame`` streams)."""
        frames = self._control_frames("SUBSCRIBE", symbols, channels)
        if per_frame is None:
            return frames
        names = [f"{s.lower()}@{channel}" for s in symbols for channel in channels]
        return [
            encode({"method": "SUBSCRIBE", "params": part, "id": n + 1})
            for n, part in enumerate(chunks(names, per_frame))
        ]

    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        """Binance takes the streams in the URL (combined stream)."""
        return self.stream_url(base_url, symbols, channels)

    def open_frames(self) -> list[str]:
        return []

    def keepalive_frame(self) -> str | None:
        return None

    def _control_frames(
        self, method: str, symbols: Sequence[str], channels: Sequence[str]
    ) -> list[str]:
        names = [f"{s.lower()}@{channel}" for s in symbols for channel in channels]
        per_frame = self.limits.topics_per_frame
        return [
            encode({"method": method, "params": part, "id": i + 1})
            for i, part in enumerate(chunks(names, per_frame))
        ]

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        return self._control_frames("UNSUBSCRIBE", symbols, channels)

    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        url = self.instruments_url(rest_url)
        return [HttpRequest(url, url, weight=self.instruments_weight)]

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        return parse_exchange_info(self.venue, text)

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        url = self.snapshot_url(rest_url, symbol, limit)
        return HttpRequest(url, url, weight=self.snapshot_weight(limit))

    def snapshot_url(self, rest_url: str, symbol: str, limit: int) -> str:
        return f"{rest_url.rstrip('/')}{self.depth_path}?symbol={symbol}&limit={limit}"

    def instruments_url(self, rest_url: str) -> str:
        return f"{rest_url.rstrip('/')}{self.instruments_path}"

    # --- parsing ------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame. Raises ParseError on malformed input."""
        try:
            frame = _frame.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        d: _Data = frame.data if frame.data is not None else frame
        e = d.event
        if e == "depthUpdate":
            if not d.bids or not d.asks or d.last_seq < 0 or d.first_seq < 0 or not d.symbol:
                raise ParseError(self.venue.value, data, "depthUpdate without s/U/u/b/a")
            return d
        if e == "markPriceUpdate":
            try:
                return MarkPriceEvent(
                    self.venue,
                    d.symbol,
                    _float(d.p),
                    _float(d.i),
                    _float(d.r),
                    d.T * MS,
                    d.ts_ms * MS,
                    recv_ns,
                )
            except (ValueError, msgspec.DecodeError) as exc:
                raise ParseError(self.venue.value, data, f"markPriceUpdate: {exc}") from exc
        if frame.code and frame.data is None:
            return VenueMessage(bytes(frame.code).decode(), frame.msg or "")
        if frame.result or frame.id:
            return Ignored("ack")
        if e == "serverShutdown":
            return VenueMessage("serverShutdown", "venue announced a shutdown: reconnect")
        return Ignored(e or (frame.stream or "unknown"))

    def decode_http(self, url: str, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode a REST response: a depth snapshot or exchangeInfo."""
        parts = urlsplit(url)
        if parts.path.endswith(self.instruments_path):
            return InstrumentsUpdate(url, data)
        if not parts.path.endswith(self.depth_path):
            return Ignored(f"http {parts.path}")
        query = parse_qs(parts.query)
        symbol = (query.get("symbol") or [""])[0]
        try:
            limit = int((query.get("limit") or ["0"])[0])
            snap = _snapshot.decode(data)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, f"depth snapshot: {exc}") from exc
        if snap.code is not None:
            return VenueMessage(str(snap.code), snap.msg or "")
        if not symbol or snap.lastUpdateId < 0 or not snap.bids or not snap.asks:
            raise ParseError(
                self.venue.value, data, "depth snapshot without symbol/lastUpdateId/bids/asks"
            )
        ts = snap.E * MS if snap.E else recv_ns
        return BookMessage(
            symbol, EventKind.SNAPSHOT, -1, snap.lastUpdateId, -1, snap.bids, snap.asks, ts, limit
        )


# REST weights: the Binance spot and USD-M REST docs
SPOT = BinanceAdapter(
    Venue.BINANCE,
    SeqRule.CONTIGUOUS,
    "/api/v3/depth",
    "/api/v3/exchangeInfo",
    tuple(range(1, 5001)),
    depth_weights=((100, 5), (500, 25), (1000, 50), (5000, 250)),
    instruments_weight=20,
    weight_limit_per_minute=6000,
    # 5 incoming messages/s, 1024 streams per connection, 24 h lifetime (spot docs)
    limits=Limits(
        streams_per_connection=200,
        topics_per_frame=200,
        control_per_s=4.0,
        connections_per_s=1.0,
        lifetime_s=24 * 3600.0,
    ),
)
USDM = BinanceAdapter(
    Venue.BINANCE_FUTURES,
    SeqRule.PREVIOUS,
    "/fapi/v1/depth",
    "/fapi/v1/exchangeInfo",
    (5, 10, 20, 50, 100, 500, 1000),
    depth_weights=((50, 2), (100, 5), (500, 10), (1000, 20)),
    instruments_weight=1,
    weight_limit_per_minute=2400,
    # 10 incoming messages/s, 1024 streams per connection, 24 h lifetime (USD-M docs)
    limits=Limits(
        streams_per_connection=200,
        topics_per_frame=200,
        control_per_s=8.0,
        connections_per_s=1.0,
        lifetime_s=24 * 3600.0,
    ),
)
ADAPTERS: dict[Venue, BinanceAdapter] = {SPOT.venue: SPOT, USDM.venue: USDM}


def parse(
    adapter: BinanceAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: dict[str, tuple[int, float]],
    *,
    kind: str = "ws",
    url: str = "",
) -> list[FeedEvent]:
    """Parse one message into domain events, levels converted to arrays.

    ``instruments`` maps the venue symbol to (price decimals, contract size). Pure.
    """
    decoded = (
        adapter.decode_http(url, raw, recv_ns) if kind == "http" else adapter.decode(raw, recv_ns)
    )
    return book_events(adapter, decoded, raw, recv_ns, instruments)
