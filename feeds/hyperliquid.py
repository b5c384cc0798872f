"""Hyperliquid perpetuals (and spot): ``l2Book`` full books, ``activeAssetCtx`` marks.

Protocol (Hyperliquid docs "Websocket / Subscriptions"):

- URL ``wss://api.hyperliquid.xyz/ws``; one subscription per frame (no batching):
  ``{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}``, acked with
  ``{"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":{..}}}``.
- Every ``l2Book`` message is a *full* book of at most 20 levels a side, pushed per block
  when the book changed: ``{"channel":"l2Book","data":{"coin":"BTC","time":ms,
  "levels":[[bids best first],[asks best first]]}}`` with levels ``{"px":"113377.0",
  "sz":"7.6699","n":17}`` (decimal strings; ``n`` is the order count). Each becomes a
  SNAPSHOT with ``limit`` 20 (so nothing beyond the 20th level is taken as known) and
  ``last_seq`` = ``time``. No sequence ids (:attr:`SeqRule.NONE`), no checksum.
- ``activeAssetCtx`` (``{"type":"activeAssetCtx","coin":"BTC"}``): ``{"channel":
  "activeAssetCtx","data":{"coin":"BTC","ctx":{"markPx","oraclePx","funding",..}}}`` ->
  :class:`~monitor.domain.MarkPriceEvent` (oracle price as the index). Funding is paid
  hourly, on the hour, so the next funding time is the next whole hour after receipt.
- Keepalive: the server closes a connection that sent nothing for 60 s; we send
  ``{"method":"ping"}`` after 30 s of silence, answered ``{"channel":"pong"}``.
- Errors: ``{"channel":"error","data":"<text>"}``; a bad coin can close the connection.
- Limits per IP: 1000 subscriptions, 2000 messages sent a minute, and (the lower of two
  published numbers) 10 connections: 100 subscriptions per connection fill 10 connections.

Symbols are coins as Hyperliquid spells them, case-sensitive: ``BTC``, ``ETH``, ``kPEPE``
(perps); spot books are ``@<index>`` (``@107`` is HYPE/USDC) except ``PURR/USDC``.

Channels accepted by :meth:`HyperliquidAdapter.subscribe_frames`: ``"l2Book"`` (the depth
stream, default) and ``"activeAssetCtx"`` (the mark stream).

Instruments: ``POST https://api.hyperliquid.xyz/info`` with ``{"type":"meta"}`` (perps) and
``{"type":"spotMeta"}`` (spot). Prices have at most 5 significant figures and at most
``6 - szDecimals`` decimals for perps (``8 - szDecimals`` for spot), so the finest price a
book can show is ``10**-(6 - szDecimals)``: that is the tick and ``price_precision`` here.
(The 5-significant-figure rule makes the effective step coarser for large prices, e.g. 1
for BTC above 100 000, but every price is a whole multiple of this tick.)

Batches of frames are scanned in one numba call (:meth:`HyperliquidAdapter.scan_frames`,
``feeds.hyperliquid_scan``): ``l2Book`` frames become scan-table rows with their levels
transcoded to arrays; everything else goes through :meth:`~HyperliquidAdapter.decode`.

Parsing is pure: no I/O, no clock, no globals mutated. :func:`parse` is :meth:`decode` with
the levels converted to arrays (tests and tools).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import numpy as np

from feeds.base import book_events, encode
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
from feeds.hyperliquid_scan import scan_book_frames, scan_book_frames_released
from feeds.scan import ByteArray, IntArray, join_frames, new_table, symbol_key
from monitor.domain import (
    EventKind,
    FeedEvent,
    Ignored,
    Instrument,
    InstrumentKind,
    MarkPriceEvent,
    ScannedFrames,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError

WS_URL = "wss://api.hyperliquid.xyz/ws"
REST_URL = "https://api.hyperliquid.xyz"
INFO_PATH = "/info"
BOOK_LEVELS = 20  # l2Book carries at most 20 levels a side
PERP_MAX_DECIMALS = 6  # price decimals <= 6 - szDecimals (perps)
SPOT_MAX_DECIMALS = 8  # price decimals <= 8 - szDecimals (spot)
QUOTE = "USDC"  # perps are quoted and margined in USDC
CHANNELS = ("l2Book", "activeAssetCtx")

MS = 1_000_000  # ns per ms
HOUR_NS = 3_600 * 1_000_000_000
_COIN_IN_ERROR = re.compile(r'"coin"\s*:\s*"([^"]+)"')


class _Level(msgspec.Struct, gc=False):
    px: msgspec.Raw  # decimal string, kept quoted as written
    sz: msgspec.Raw  # (``n``, the order count, is not read)


class _Ctx(msgspec.Struct, gc=False):
    markPx: str | None = None
    oraclePx: str | None = None
    funding: str | None = None  # hourly funding rate (perps only)


class _Data(msgspec.Struct, gc=False):
    coin: str = ""
    time: int = -1  # l2Book: block time (ms)
    levels: tuple[list[_Level], list[_Level]] | None = None  # [bids, asks]
    ctx: _Ctx | None = None  # activeAssetCtx


class _Frame(msgspec.Struct, gc=False):
    channel: str = ""  # l2Book, activeAssetCtx, pong, subscriptionResponse, error, ...
    # an object on the channels we read, a string on ``error``, a list on some others
    data: _Data | str | list[Any] | None = None


# size decimals as the venue uses them (0-8); anything else is a malformed answer
_SizeDecimals = Annotated[int, msgspec.Meta(ge=0, le=18)]


class _Asset(msgspec.Struct, gc=False):
    name: str
    szDecimals: _SizeDecimals
    maxLeverage: int = 0
    isDelisted: bool = False


class _Meta(msgspec.Struct, gc=False):
    universe: list[_Asset]


class _SpotToken(msgspec.Struct, gc=False):
    name: str
    szDecimals: _SizeDecimals
    index: int


class _SpotPair(msgspec.Struct, gc=False):
    name: str  # "PURR/USDC" or "@107"
    tokens: tuple[int, int]  # base token index, quote token index
    index: int = -1


class _SpotMeta(msgspec.Struct, gc=False):
    universe: list[_SpotPair]
    tokens: list[_SpotToken]


_frame = msgspec.json.Decoder(_Frame)
_meta = msgspec.json.Decoder(_Meta)
_spot_meta = msgspec.json.Decoder(_SpotMeta)


def _levels(levels: list[_Level]) -> bytes:
    if not levels:
        return b"[]"
    parts: list[bytes | msgspec.Raw] = []
    for level in levels:  # joined once: faster than formatting each level
        parts += (b"],[", level.px, b",", level.sz)
    parts[0] = b"[["
    parts.append(b"]]")
    return b"".join(parts)


def _float(text: str | None) -> float:
    return float(text) if text else float("nan")


def _power(decimals: int) -> str:
    """``10**-decimals`` as a plain decimal string (3 -> "0.001", 0 -> "1")."""
    return "1" if decimals <= 0 else "0." + "0" * (decimals - 1) + "1"


class HyperliquidAdapter:
    """Adapter for Hyperliquid's websocket (perps and spot books on one connection)."""

    venue = Venue.HYPERLIQUID
    sequencing = SeqRule.NONE  # every message is a full book
    snapshot_source = SnapshotSource.STREAM
    checksum = Checksum.NONE
    px_index = 0
    qty_index = 1
    subscribe_in_url = False  # subscriptions are sent as frames
    reply_to: ReplyHook | None = None
    connection_sequence: SequenceHook | None = None
    reconnect_notice: NoticeHook | None = None
    stated_weight_limit: WeightLimitHook | None = None  # no limit stated in its metadata
    next_instruments_page: PageHook | None = None  # one answer lists every instrument
    book_depth = 0  # the store's default capacity: every message replaces the whole book
    limits = Limits(
        streams_per_connection=100,  # 1000 subscriptions per IP over at most 10 connections
        topics_per_frame=1,  # one coin per subscribe frame
        control_per_s=3.0,  # 2000 messages a minute per IP, shared by up to 10 connections
        connections_per_s=0.5,  # 30 new connections a minute [L]
    )
    ping_interval_s: float | None = None  # the server wants application-level pings
    keepalive_s: float | None = 30.0  # closed after 60 s without a client message
    weight_limit_per_minute = 1200  # REST info weight per IP and minute
    used_weight_header: str | None = None

    __slots__ = ()

    # --- batch scanning (hot path) ----------------------------------------------------
    @property
    def scanner(self) -> FrameScanner:
        """This adapter: it scans ``l2Book`` frames in batches (feeds.hyperliquid_scan)."""
        return self

    symbol_key = staticmethod(symbol_key)
    min_frames = 2  # the scan beats decode from this many frames a read (bench/README.md)

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames:
        """Scan many frames in one numba call (see feeds.hyperliquid_scan): the levels of
        ``l2Book`` frames are transcoded into arrays in a buffer of the scan's own. Pure."""
        return self.scan_buffer(*join_frames(frames))

    def scan_buffer(
        self, buf: ByteArray, starts: IntArray, ends: IntArray, *, release_gil: bool = False
    ) -> ScannedFrames:
        table = new_table(len(starts))
        out = np.empty(int((ends - starts).sum()) + 16, dtype=np.uint8)
        used = (scan_book_frames_released if release_gil else scan_book_frames)(
            buf, starts, ends, table, out
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
        for channel in channels:
            if channel not in CHANNELS:
                raise ValueError(f"Hyperliquid channel {channel!r} is not one of {CHANNELS}")
        return [
            encode({"method": method, "subscription": {"type": channel, "coin": coin}})
            for coin in symbols
            for channel in channels
        ]

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """One ``subscribe`` frame per coin and channel (Hyperliquid takes one per frame)."""
        return self._frames("subscribe", symbols, channels)

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        return self._frames("unsubscribe", symbols, channels)

    # --- REST --------------------------------------------------------------------------------
    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        url = f"{rest_url.rstrip('/')}{INFO_PATH}"
        return [
            HttpRequest(url=url, key=f"{url}#meta", body='{"type":"meta"}', weight=20),
            HttpRequest(url=url, key=f"{url}#spotMeta", body='{"type":"spotMeta"}', weight=20),
        ]

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Perps from a ``meta`` answer, spot pairs from a ``spotMeta`` answer (see module doc)."""
        try:
            if key.endswith("#spotMeta"):
                return self._spot_instruments(_spot_meta.decode(text))
            meta = _meta.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, text, f"info {key}: {exc}") from exc
        instruments = []
        for asset in meta.universe:
            if asset.isDelisted:
                continue
            decimals = max(0, PERP_MAX_DECIMALS - asset.szDecimals)
            instruments.append(
                Instrument(
                    venue=self.venue,
                    symbol=asset.name,
                    base=asset.name,
                    quote=QUOTE,
                    kind=InstrumentKind.PERP,
                    tick=_power(decimals),
                    lot=_power(asset.szDecimals),
                    contract_size=1.0,
                    price_precision=decimals,
                    qty_precision=asset.szDecimals,
                )
            )
        return instruments

    def _spot_instruments(self, meta: _SpotMeta) -> list[Instrument]:
        tokens = {token.index: token for token in meta.tokens}
        instruments = []
        for pair in meta.universe:
            base, quote = tokens.get(pair.tokens[0]), tokens.get(pair.tokens[1])
            if base is None or quote is None:
                continue
            decimals = max(0, SPOT_MAX_DECIMALS - base.szDecimals)
            instruments.append(
                Instrument(
                    venue=self.venue,
                    symbol=pair.name,
                    base=base.name,
                    quote=quote.name,
                    kind=InstrumentKind.SPOT,
                    tick=_power(decimals),
                    lot=_power(base.szDecimals),
                    price_precision=decimals,
                    qty_precision=base.szDecimals,
                )
            )
        return instruments

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        return None  # every websocket message is a snapshot

    # --- parsing -------------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame. Raises ParseError on malformed input."""
        try:
            frame = _frame.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        channel = frame.channel
        d = frame.data
        if channel == "l2Book":
            if not isinstance(d, _Data) or not d.coin or d.levels is None or d.time < 0:
                raise ParseError(self.venue.value, data, "l2Book without coin/time/levels")
            bids, asks = d.levels
            return BookMessage(
                d.coin,
                EventKind.SNAPSHOT,
                -1,
                d.time,
                -1,
                _levels(bids),
                _levels(asks),
                d.time * MS,
                BOOK_LEVELS,
            )
        if channel == "activeAssetCtx":
            if not isinstance(d, _Data) or not d.coin or d.ctx is None:
                raise ParseError(self.venue.value, data, "activeAssetCtx without coin/ctx")
            try:
                return MarkPriceEvent(
                    self.venue,
                    d.coin,
                    _float(d.ctx.markPx),
                    _float(d.ctx.oraclePx),
                    _float(d.ctx.funding),
                    (recv_ns // HOUR_NS + 1) * HOUR_NS,
                    recv_ns,  # the message carries no time
                    recv_ns,
                )
            except ValueError as exc:
                raise ParseError(self.venue.value, data, f"activeAssetCtx: {exc}") from exc
        if channel == "error":
            text = d if isinstance(d, str) else ""
            match = _COIN_IN_ERROR.search(text)
            return VenueMessage("error", text, symbol=match.group(1) if match else None)
        if channel:
            return Ignored(channel)  # pong, subscriptionResponse, other channels
        raise ParseError(self.venue.value, data, "message without a channel")

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> DecodeResult:
        """A REST answer: ``meta``/``spotMeta`` are passed on for :meth:`parse_instruments`."""
        if key.endswith(("#meta", "#spotMeta")):
            return InstrumentsUpdate(key, data)
        return Ignored(f"http {key}")


PERP = HyperliquidAdapter()
ADAPTERS: dict[Venue, HyperliquidAdapter] = {PERP.venue: PERP}


def parse(
    adapter: HyperliquidAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: dict[str, tuple[int, float]],
) -> list[FeedEvent]:
    """Parse one websocket frame into domain events, levels converted to arrays.

    ``instruments`` maps the coin to (price decimals, contract size). Pure.
    """
    return book_events(adapter, adapter.decode(raw, recv_ns), raw, recv_ns, instruments)
