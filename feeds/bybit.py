"""Bybit v5 public spot and linear (USDT/USDC perpetuals and futures): URLs, subscriptions,
pure parsing.

Protocol (bybit-exchange/docs ``v5/websocket/public/
orderbook.mdx``, ``ticker.mdx``, ``wss-authentication.mdx`` ("Connect"),
``v5/market/instrument.mdx``):

- Sockets: ``wss://stream.bybit.com/v5/public/spot`` (:data:`SPOT`, Venue.BYBIT) and
  ``.../v5/public/linear`` (:data:`LINEAR`, Venue.BYBIT_LINEAR). Both markets spell symbols
  the same (``BTCUSDT``): the socket tells them apart, so they are two venues.
- Subscribe by message: ``{"req_id":"..","op":"subscribe","args":["orderbook.50.BTCUSDT"]}``.
  Acks ``{"success":true,"ret_msg":"","op":"subscribe",..}`` are ignored; a refusal
  (``"success":false``) becomes a :class:`~feeds.contract.VenueMessage` naming the symbol when
  ``ret_msg`` names the topic (``error:handler not found,topic:orderbook.500.BTCUSDT``).
- Book: ``{"topic":"orderbook.50.BTCUSDT","type":"snapshot"|"delta","ts":ms,
  "data":{"s":..,"b":[["px","sz"]],"a":[..],"u":update id,"seq":cross seq},"cts":ms}``.
  Sizes are absolute, 0 deletes. Spot writes ``ts`` before ``type``, linear after: the
  decoder reads keys by name, never by position. A snapshot comes on subscribe (and again
  whenever Bybit resets the book); ``u == 1`` marks a service restart whose message
  overwrites the book, so it is emitted as a SNAPSHOT whatever its ``type``.
- Sequencing (SeqRule.CONTIGUOUS): ``first_seq = last_seq = u``; the book kernel requires
  ``u == previous u + 1`` and drops ``u <= last`` as stale. Bybit does not document the step
  of ``u``; community code treats it as +1 per message per topic.
- Mark price (linear only): ``tickers.BTCUSDT``, a snapshot and then partial deltas whose
  missing fields are unchanged (NaN in the :class:`~monitor.domain.MarkPriceEvent`).
- Keepalive: ``{"req_id":"ping","op":"ping"}`` every 20 s; the pong
  (``{"success":true,"ret_msg":"pong","op":"ping",..}``) is ignored.
- Instruments: ``GET /v5/market/instruments-info?category=spot|linear`` (linear:
  ``limit=1000``, then ``cursor=<nextPageCursor>`` until the cursor is empty).

Channels accepted by :meth:`BybitAdapter.subscribe_frames` (the settings table's
``depth_stream`` and ``mark_price_stream``): ``orderbook.50`` (the default depth stream),
``orderbook.200``, ``orderbook.1000`` or plain ``orderbook`` (the adapter's ``depth``), and
``tickers`` on linear (the mark price stream). Books are kept to the adapter's ``depth``
levels a side (``book_depth``), so an explicit depth must equal it: the module's
:data:`SPOT` and :data:`LINEAR` serve ``orderbook.50``; ``BybitAdapter(..., depth=200)``
serves ``orderbook.200``. ``orderbook.1`` is refused: level 1 is snapshot-only, re-sent
every 3 s with the *same* ``u`` when nothing changes, so it never carries the +1 delta
chain the kernel checks, and a single level is no depth to measure liquidity on.

Parsing is pure: no I/O, no clock, no state. :meth:`BybitAdapter.decode` hands the raw
level arrays on untouched; :func:`parse` converts them, for tests and tools.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import msgspec

from feeds.base import book_events, chunks, encode
from feeds.contract import (
    BookMessage,
    Checksum,
    Decoded,
    FrameScanner,
    HttpRequest,
    InstrumentsUpdate,
    Limits,
    NoticeHook,
    ReplyHook,
    SequenceHook,
    SnapshotSource,
    VenueMessage,
    WeightLimitHook,
)
from monitor.domain import (
    EventKind,
    FeedEvent,
    Ignored,
    Instrument,
    InstrumentKind,
    MarkPriceEvent,
    SeqRule,
    Venue,
)
from monitor.errors import ParseError

MS = 1_000_000  # ns per ms
_ABSENT = msgspec.Raw(b"")  # a field the message does not carry
_NAN = float("nan")
_SNAPSHOT = EventKind.SNAPSHOT
_DELTA = EventKind.DELTA

DEPTHS = (50, 200, 1000)  # orderbook depths with a delta stream (1 is snapshot-only)
TICKERS = "tickers"
INSTRUMENTS_PATH = "/v5/market/instruments-info"
PING_FRAME = '{"req_id":"ping","op":"ping"}'
MAX_ARGS_CHARS = 21_000  # Bybit: the args of one public connection, in characters
_TOPIC_SYMBOL = re.compile(r"(?:orderbook\.\d+|tickers)\.([0-9A-Za-z_\-]+)")


class _Data(msgspec.Struct, gc=False):
    """The ``data`` object of a book or ticker message (fields of the other stay unset)."""

    s: str = ""  # orderbook: symbol
    b: msgspec.Raw = _ABSENT  # orderbook: bid levels [["px","sz"],..]
    a: msgspec.Raw = _ABSENT  # orderbook: ask levels
    u: int = -1  # orderbook: update id (+1 per message; 1 = service restart)
    seq: int = -1  # orderbook: cross sequence (orders books of different depths)
    symbol: str = ""  # tickers: symbol
    markPrice: msgspec.Raw = _ABSENT  # tickers (linear): mark price
    indexPrice: msgspec.Raw = _ABSENT  # tickers (linear): index price
    fundingRate: msgspec.Raw = _ABSENT  # tickers (perps): funding rate ("" on futures)
    nextFundingTime: msgspec.Raw = _ABSENT  # tickers (perps): next funding, ms ("" on futures)


class _Frame(msgspec.Struct, gc=False):
    """Any frame on a public socket: topic data, an ack, a pong."""

    topic: str = ""
    type: str = ""  # snapshot | delta
    ts: int | str = 0  # ms; a number in every example, written as a string in one doc note
    data: _Data | list[msgspec.Raw] | None = None  # arrays: publicTrade, kline, ...
    success: bool | None = None  # acks and pongs
    ret_msg: str = ""
    op: str = ""  # subscribe | unsubscribe | ping | pong


class _PriceFilter(msgspec.Struct):
    tickSize: str = ""


class _LotSizeFilter(msgspec.Struct):
    basePrecision: str = ""  # spot: size step
    qtyStep: str = ""  # linear: size step


class _InstrumentInfo(msgspec.Struct):
    symbol: str
    baseCoin: str = ""
    quoteCoin: str = ""
    status: str = "Trading"
    contractType: str = ""  # linear: LinearPerpetual | LinearFutures
    priceScale: str = ""  # linear: decimals prices are written with
    priceFilter: _PriceFilter = msgspec.field(default_factory=_PriceFilter)
    lotSizeFilter: _LotSizeFilter = msgspec.field(default_factory=_LotSizeFilter)


class _InstrumentsResult(msgspec.Struct):
    category: str = ""
    items: list[_InstrumentInfo] = msgspec.field(default_factory=list, name="list")
    nextPageCursor: str = ""


class _Rest(msgspec.Struct):
    """The envelope of every v5 REST answer (``result`` left raw unless asked for)."""

    retCode: int = 0
    retMsg: str = ""


class _InstrumentsResponse(_Rest):
    result: _InstrumentsResult = msgspec.field(default_factory=_InstrumentsResult)


_frame = msgspec.json.Decoder(_Frame)
_rest = msgspec.json.Decoder(_Rest)
_instruments = msgspec.json.Decoder(_InstrumentsResponse)


def _float(raw: msgspec.Raw) -> float:
    """A decimal field as float; absent or ``""`` -> NaN (unchanged / not applicable)."""
    text = bytes(raw).strip(b'"')
    return float(text) if text else _NAN


def _int(raw: msgspec.Raw) -> int:
    text = bytes(raw).strip(b'"')
    return int(text) if text else 0


def _normalise_decimal(text: str) -> str:
    """'0.10' -> '0.1' (keeps the value, drops the venue's padding)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _kind(info: _InstrumentInfo) -> InstrumentKind | None:
    if not info.contractType:
        return InstrumentKind.SPOT
    if info.contractType == "LinearPerpetual":
        return InstrumentKind.PERP
    if info.contractType == "LinearFutures":
        return InstrumentKind.FUTURE
    return None  # inverse contracts live on another socket


class BybitAdapter:
    """Adapter for one Bybit v5 public market (spot or linear); see the module doc."""

    __slots__ = ("category", "depth", "derivatives", "limits", "venue", "weight_limit_per_minute")

    sequencing = SeqRule.CONTIGUOUS
    snapshot_source = SnapshotSource.STREAM
    checksum = Checksum.NONE
    px_index = 0
    qty_index = 1
    ping_interval_s: float | None = None  # Bybit wants application-level pings instead
    keepalive_s: float | None = 20.0  # Bybit recommends a ping every 20 s
    used_weight_header: str | None = None  # public market endpoints report no IP usage
    subscribe_in_url = False
    scanner: FrameScanner | None = None  # every frame goes through decode
    reply_to: ReplyHook | None = None
    connection_sequence: SequenceHook | None = None
    reconnect_notice: NoticeHook | None = None

    def __init__(
        self,
        venue: Venue,
        category: str,
        *,
        derivatives: bool,
        limits: Limits,
        weight_limit_per_minute: int,
        depth: int = 50,
    ) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"Bybit book depth must be one of {DEPTHS}, not {depth}")
        self.venue = venue
        self.category = category  # REST category: spot | linear
        self.derivatives = derivatives  # tickers carry mark/index/funding
        self.limits = limits
        self.weight_limit_per_minute = weight_limit_per_minute
        self.depth = depth  # levels per side of the orderbook topic this adapter serves

    @property
    def book_depth(self) -> int:
        """Capacity of each book: Bybit books are kept to the subscribed depth."""
        return self.depth

    # --- URLs and subscriptions -------------------------------------------------------
    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        """Bybit subscribes by message: the URL is the market's socket as configured."""
        return base_url

    def open_frames(self) -> list[str]:
        return []

    def keepalive_frame(self) -> str | None:
        return PING_FRAME

    def topics(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """Topic names (``orderbook.50.BTCUSDT``, ``tickers.BTCUSDT``); ValueError for a
        channel this adapter does not serve."""
        names = [self._check_channel(channel) for channel in channels]
        return [f"{name}.{symbol}" for symbol in symbols for name in names]

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``subscribe`` frames, at most ``limits.topics_per_frame`` topics each (spot: 10).

        The caller keeps one connection's topics within ``limits.streams_per_connection``,
        which keeps its args under Bybit's 21,000 characters (:data:`MAX_ARGS_CHARS`).
        """
        return self._frames("subscribe", symbols, channels)

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        return self._frames("unsubscribe", symbols, channels)

    def _frames(self, op: str, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        topics = self.topics(symbols, channels)
        return [
            encode({"req_id": f"{op}-{n}", "op": op, "args": batch})
            for n, batch in enumerate(chunks(topics, self.limits.topics_per_frame), 1)
        ]

    def _check_channel(self, channel: str) -> str:
        if channel == TICKERS:
            if not self.derivatives:
                raise ValueError(f"{self.venue.value}: spot tickers carry no mark price")
            return channel
        if channel == "orderbook":
            return f"orderbook.{self.depth}"
        head, _, depth = channel.partition(".")
        if head != "orderbook" or not depth.isdigit():
            raise ValueError(
                f"{self.venue.value}: unknown channel {channel!r} "
                "(orderbook, orderbook.50, orderbook.200, orderbook.1000 or tickers)"
            )
        if int(depth) == 1:
            raise ValueError(
                f"{self.venue.value}: orderbook.1 is snapshot-only (re-sent with the same u "
                "every 3 s), so it has no delta chain to check; use orderbook.50 or deeper"
            )
        if int(depth) not in DEPTHS:
            raise ValueError(f"{self.venue.value}: orderbook depth {depth} not in {DEPTHS}")
        if int(depth) != self.depth:
            # books are kept to book_depth levels: a deeper topic would be cut, a shallower
            # one would leave levels that left its window
            raise ValueError(
                f"{self.venue.value}: channel {channel!r} but the adapter keeps "
                f"{self.depth} levels; use BybitAdapter(..., depth={depth})"
            )
        return channel

    # --- REST -----------------------------------------------------------------------------
    def instruments_url(self, rest_url: str) -> str:
        url = f"{rest_url.rstrip('/')}{INSTRUMENTS_PATH}?category={self.category}"
        # linear lists more than the default page of 500; 1000 is the largest page
        return f"{url}&limit=1000" if self.derivatives else url

    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        url = self.instruments_url(rest_url)
        return [HttpRequest(url=url, key=url)]

    stated_weight_limit: WeightLimitHook | None = None  # no limit stated in its metadata

    def next_instruments_page(self, request: HttpRequest, text: str | bytes) -> HttpRequest | None:
        """The request for the page after ``request``'s answer ``text``: the same query with
        ``cursor`` set to its ``nextPageCursor``; None when it has none (the last page,
        spot's single answer) or cannot be read (parse_instruments reports that)."""
        try:
            cursor = _instruments.decode(text).result.nextPageCursor
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if not cursor:
            return None
        parts = urlsplit(request.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "cursor"]
        # the cursor comes percent-encoded already; it goes back as the same string
        query.append(("cursor", cursor))
        url = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
        return HttpRequest(url=url, key=url, weight=request.weight)

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        """None: the snapshot comes in-band on subscribe."""
        return None

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Instruments from an ``instruments-info`` answer (inverse and non-trading skipped).

        Linear sizes are in base coin (``contract_size`` 1). A ``nextPageCursor`` means
        more pages exist (:meth:`next_instruments_page` asks for the next one).
        """
        try:
            response = _instruments.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, text, f"instruments-info: {exc}") from exc
        if response.retCode != 0:
            raise ParseError(
                self.venue.value, text, f"instruments-info: {response.retCode} {response.retMsg}"
            )
        out: list[Instrument] = []
        for info in response.result.items:
            kind = _kind(info)
            tick = info.priceFilter.tickSize
            lot = info.lotSizeFilter.qtyStep or info.lotSizeFilter.basePrecision
            if (
                kind is None
                or info.status != "Trading"
                or not tick
                or not lot
                or not info.baseCoin
                or not info.quoteCoin
                or float(tick) <= 0
            ):
                continue
            out.append(
                Instrument(
                    venue=self.venue,
                    symbol=info.symbol,
                    base=info.baseCoin,
                    quote=info.quoteCoin,
                    kind=kind,
                    tick=_normalise_decimal(tick),
                    lot=_normalise_decimal(lot),
                    contract_size=1.0,
                    price_precision=int(info.priceScale) if info.priceScale.isdigit() else 0,
                )
            )
        return out

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> Decoded:
        """Decode a REST answer: instruments-info passes through; error bodies are messages."""
        if INSTRUMENTS_PATH not in key:
            return Ignored(f"http {key}")
        try:
            envelope = _rest.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, f"instruments-info: {exc}") from exc
        if envelope.retCode != 0:
            return VenueMessage(str(envelope.retCode), envelope.retMsg)
        return InstrumentsUpdate(key, data)

    # --- websocket ------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> Decoded:
        """Decode one websocket frame. Raises ParseError on malformed input."""
        try:
            frame = _frame.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        topic = frame.topic
        if topic.startswith("orderbook."):
            d = frame.data
            if not isinstance(d, _Data) or not d.s or not d.b or not d.a or d.u < 0:
                raise ParseError(self.venue.value, data, "orderbook without data s/b/a/u")
            if frame.type == "delta" and d.u != 1:
                kind, limit = _DELTA, 0
            elif frame.type in ("snapshot", "delta"):  # u == 1: a restart, overwrite the book
                kind, limit = _SNAPSHOT, self._depth(topic, data)
            else:
                raise ParseError(self.venue.value, data, f"orderbook type {frame.type!r}")
            return BookMessage(
                d.s, kind, d.u, d.u, -1, d.b, d.a, self._ts_ns(frame.ts, data), limit
            )
        if topic.startswith("tickers."):
            return self._ticker(frame, data, recv_ns)
        if frame.success is not None or frame.op:
            return self._reply(frame)
        return Ignored(topic.partition(".")[0] if topic else "unknown")

    def _ticker(self, frame: _Frame, data: bytes | str, recv_ns: int) -> Decoded:
        d = frame.data
        if not self.derivatives:
            return Ignored("tickers")
        if not isinstance(d, _Data) or not d.symbol:
            raise ParseError(self.venue.value, data, "tickers without data.symbol")
        if not (d.markPrice or d.indexPrice or d.fundingRate or d.nextFundingTime):
            return Ignored("tickers")  # a delta that changed none of the fields we keep
        try:
            return MarkPriceEvent(
                self.venue,
                d.symbol,
                _float(d.markPrice),
                _float(d.indexPrice),
                _float(d.fundingRate),
                _int(d.nextFundingTime) * MS,
                self._ts_ns(frame.ts, data),
                recv_ns,
            )
        except ValueError as exc:
            raise ParseError(self.venue.value, data, f"tickers: {exc}") from exc

    def _reply(self, frame: _Frame) -> Decoded:
        if frame.success is False:
            match = _TOPIC_SYMBOL.search(frame.ret_msg)
            return VenueMessage(
                f"{frame.op or 'request'}_failed",
                frame.ret_msg,
                symbol=match.group(1) if match else None,
            )
        if frame.op in ("ping", "pong"):
            return Ignored("pong")
        return Ignored(f"ack {frame.op}" if frame.op else "ack")

    def _depth(self, topic: str, data: bytes | str) -> int:
        # orderbook.{depth}.{symbol}
        try:
            return int(topic[10 : topic.index(".", 10)])
        except ValueError as exc:
            raise ParseError(self.venue.value, data, f"topic {topic!r}") from exc

    def _ts_ns(self, ts: int | str, data: bytes | str) -> int:
        if type(ts) is int:
            return ts * MS
        try:
            return int(ts) * MS
        except ValueError as exc:
            raise ParseError(self.venue.value, data, f"ts {ts!r}") from exc


# Limits (Bybit "Connect" page): at most 500 connections per 5 min per
# WS domain, shared by the spot and linear sockets (stream.bybit.com), so each market takes
# 0.8/s (1.6/s together, under 500/300 s). Spot takes at most 10 args per subscribe request;
# linear has no per-request cap (50 keeps frames small). One connection's args may not
# exceed 21,000 characters: 200 topics of the longest realistic name
# ("orderbook.1000.1000000BABYDOGEUSDT", 34 characters + quotes and comma) take ~7,400.
# REST: 600 requests per 5 s per IP on api.bybit.com, shared by both markets.
SPOT = BybitAdapter(
    Venue.BYBIT,
    "spot",
    derivatives=False,
    limits=Limits(
        streams_per_connection=200,
        topics_per_frame=10,
        control_per_s=5.0,
        connections_per_s=0.8,
    ),
    weight_limit_per_minute=3600,
)
LINEAR = BybitAdapter(
    Venue.BYBIT_LINEAR,
    "linear",
    derivatives=True,
    limits=Limits(
        streams_per_connection=200,
        topics_per_frame=50,
        control_per_s=5.0,
        connections_per_s=0.8,
    ),
    weight_limit_per_minute=3600,
)
ADAPTERS: dict[Venue, BybitAdapter] = {SPOT.venue: SPOT, LINEAR.venue: LINEAR}


def parse(
    adapter: BybitAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: dict[str, tuple[int, float]],
) -> list[FeedEvent]:
    """Parse one websocket frame into domain events, levels converted to arrays.

    ``instruments`` maps the venue symbol to (price decimals, contract size). Pure.
    """
    return book_events(adapter, adapter.decode(raw, recv_ns), raw, recv_ns, instruments)
