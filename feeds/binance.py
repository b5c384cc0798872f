"""Binance spot and USD-M perpetuals: URLs, subscriptions and pure parsing.

Protocol (../shared/venues.md sections 1-2):

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
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import msgspec
import numpy as np

from feeds.binance_scan import (
    F_ASK_END,
    F_ASK_START,
    F_BID_END,
    F_BID_START,
    F_FIRST,
    F_LAST,
    F_PREV,
    F_STATUS,
    F_SYMBOL_HASH,
    F_TS_MS,
    FRAME_DEPTH,
    N_FRAME,
    scan_depth_frames,
    symbol_hash,
)
from monitor.domain import (
    BookEvent,
    EventKind,
    FeedEvent,
    Ignored,
    MarkPriceEvent,
    RawBook,
    ScannedFrames,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError, UnknownInstrument

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


_frame = msgspec.json.Decoder(_Frame)
_snapshot = msgspec.json.Decoder(_Snapshot)


class RawBookUpdate(RawBook, gc=False):
    """A book event built by hand (REST snapshots, deltas kept while a book resyncs)."""

    symbol: str
    kind: EventKind
    first_seq: int
    last_seq: int
    prev_seq: int
    bids: bytes | msgspec.Raw
    asks: bytes | msgspec.Raw
    ts_event_ns: int
    limit: int = 0


@dataclass(slots=True)
class InstrumentsUpdate:
    """An ``exchangeInfo`` response passed through (the registry parses it)."""

    text: str | bytes


@dataclass(slots=True)
class VenueMessage:
    """Something the venue told us that is not market data (error codes, shutdown notices)."""

    code: str
    message: str


Decoded = RawBook | MarkPriceEvent | InstrumentsUpdate | VenueMessage | Ignored


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
        "sequencing",
        "snapshot_limits",
        "venue",
        "weight_limit_per_minute",
    )

    used_weight_header = "X-MBX-USED-WEIGHT-1M"  # Binance reports the IP's weight used

    ping_interval_s: float | None = None  # the server pings; websockets answers with pongs

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
    ) -> None:
        self.venue = venue
        self.sequencing = sequencing
        self.depth_path = depth_path
        self.instruments_path = instruments_path
        self.snapshot_limits = snapshot_limits
        self.depth_weights = depth_weights  # (largest limit, request weight), ascending
        self.instruments_weight = instruments_weight
        self.weight_limit_per_minute = weight_limit_per_minute  # the IP's REQUEST_WEIGHT/min

    # --- batch scanning (hot path) ----------------------------------------------------
    symbol_key = staticmethod(symbol_hash)

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames:
        """Scan many frames in one numba call (see feeds.binance_scan). Pure."""
        kinds = {type(f) for f in frames}
        raw = b""
        if kinds == {bytes}:
            raw = b"".join(frames)  # type: ignore[arg-type]
            lens = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        elif kinds == {str}:  # websockets hands text frames over as str
            text = "".join(frames)  # type: ignore[arg-type]
            raw = text.encode()
            lens = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
            if len(raw) != len(text):  # not all ASCII: character and byte offsets differ
                raw = b""
        if not raw and frames:
            encoded = [f.encode() if isinstance(f, str) else bytes(f) for f in frames]
            raw = b"".join(encoded)
            lens = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        buf = np.frombuffer(raw, dtype=np.uint8)
        ends = np.cumsum(lens)
        out = np.zeros((len(frames), N_FRAME), dtype=np.int64)
        scan_depth_frames(buf, ends - lens, ends, out)
        return ScannedFrames(
            buf=buf,
            is_delta=out[:, F_STATUS] == FRAME_DEPTH,
            symbol_key=out[:, F_SYMBOL_HASH],
            first_seq=out[:, F_FIRST],
            last_seq=out[:, F_LAST],
            prev_seq=out[:, F_PREV],
            ts_event_ns=out[:, F_TS_MS] * MS,
            bid_start=out[:, F_BID_START],
            bid_len=out[:, F_BID_END] - out[:, F_BID_START],
            ask_start=out[:, F_ASK_START],
            ask_len=out[:, F_ASK_END] - out[:, F_ASK_START],
        )

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
        self, symbols: Sequence[str], streams: Sequence[str], per_frame: int = 200
    ) -> list[str]:
        """``SUBSCRIBE`` frames for a live connection (each at most ``per_frame`` streams)."""
        names = [f"{s.lower()}@{stream}" for s in symbols for stream in streams]
        return [
            msgspec.json.encode(
                {
                    "method": "SUBSCRIBE",
                    "params": names[i : i + per_frame],
                    "id": i // per_frame + 1,
                }
            ).decode()
            for i in range(0, len(names), per_frame)
        ]

    def snapshot_url(self, rest_url: str, symbol: str, limit: int) -> str:
        return f"{rest_url.rstrip('/')}{self.depth_path}?symbol={symbol}&limit={limit}"

    def instruments_url(self, rest_url: str) -> str:
        return f"{rest_url.rstrip('/')}{self.instruments_path}"

    # --- parsing ------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> Decoded:
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

    def decode_http(self, url: str, data: bytes | str, recv_ns: int) -> Decoded:
        """Decode a REST response: a depth snapshot or exchangeInfo."""
        parts = urlsplit(url)
        if parts.path.endswith(self.instruments_path):
            return InstrumentsUpdate(data)
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
        return RawBookUpdate(
            symbol, EventKind.SNAPSHOT, -1, snap.lastUpdateId, -1, snap.bids, snap.asks, ts, limit
        )


# REST weights: venues.md sections 1-2 (Binance spot and USD-M REST docs)
SPOT = BinanceAdapter(
    Venue.BINANCE,
    SeqRule.CONTIGUOUS,
    "/api/v3/depth",
    "/api/v3/exchangeInfo",
    tuple(range(1, 5001)),
    depth_weights=((100, 5), (500, 25), (1000, 50), (5000, 250)),
    instruments_weight=20,
    weight_limit_per_minute=6000,
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
    from monitor.book.reference import LevelError, parse_levels  # noqa: PLC0415 (tools-only path)

    decoded = (
        adapter.decode_http(url, raw, recv_ns) if kind == "http" else adapter.decode(raw, recv_ns)
    )
    if isinstance(decoded, MarkPriceEvent | Ignored):
        return [decoded]
    if not isinstance(decoded, RawBook):
        return [Ignored(type(decoded).__name__)]
    meta = instruments.get(decoded.symbol)
    if meta is None:
        raise UnknownInstrument(adapter.venue.value, decoded.symbol)
    decimals, contract_size = meta
    try:
        bids = parse_levels(
            bytes(decoded.bids), price_decimals=decimals, contract_size=contract_size
        )
        asks = parse_levels(
            bytes(decoded.asks), price_decimals=decimals, contract_size=contract_size
        )
    except LevelError as exc:
        raise ParseError(adapter.venue.value, raw, str(exc)) from exc
    return [
        BookEvent(
            venue=adapter.venue,
            symbol=decoded.symbol,
            kind=decoded.kind,
            bid_px=np.array([p for p, _ in bids], dtype=np.int64),
            bid_qty=np.array([q for _, q in bids], dtype=np.float64),
            ask_px=np.array([p for p, _ in asks], dtype=np.int64),
            ask_qty=np.array([q for _, q in asks], dtype=np.float64),
            ts_event_ns=decoded.ts_event_ns,
            ts_recv_ns=recv_ns,
            first_seq=decoded.first_seq,
            last_seq=decoded.last_seq,
            prev_seq=decoded.prev_seq,
            depth_limit=decoded.limit,
        )
    ]
