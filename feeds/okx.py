"""OKX v5: spot, swaps (linear USDT/USDC and inverse USD) and futures on one public socket.

Protocol (OKX v5 docs "WebSocket / Public channel"):

- URL ``wss://ws.okx.com:8443/ws/v5/public``; subscriptions by message,
  ``{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},...]}``, answered by
  ``{"event":"subscribe","arg":{..},"connId":".."}`` per arg, or
  ``{"event":"error","code":"60018","msg":"..","connId":".."}``.
- Keepalive: the server closes a connection after 30 s without a push; the client sends the
  text ``ping`` and gets the text ``pong``. ``{"event":"notice","code":"64008"}`` announces a
  disconnect for a service upgrade 30 s ahead: reconnect.
- Book (channel ``books``, 400 levels, 100 ms):
  ``{"arg":{"channel":"books","instId":..},"action":"snapshot"|"update","data":[{"asks":[[px,
  sz,"0",numOrders],..],"bids":[..],"ts":"ms","checksum":int,"prevSeqId":int,"seqId":int}]}``.
  Sizes are absolute (``"0"`` deletes) and count contracts for SWAP/FUTURES, base currency
  for SPOT. The third level field is a deprecated, always ``"0"``; the fourth counts orders.
- Sequencing (SeqRule.CHAIN): the snapshot carries ``seqId`` (and ``prevSeqId`` -1); each
  update's ``prevSeqId`` equals the previous ``seqId``. After about 60 s without changes an
  update with empty sides and ``seqId == prevSeqId`` arrives: it chains like any other and is
  passed on. After maintenance ``seqId`` may go *down*; the chain still holds. Frames of the
  2022 era (tests/recordings/okx-2022-05-13.jsonl.gz) carry neither id: both are -1.
- Checksum (Checksum.OKX): CRC32 of ``bidPx:bidSz:askPx:askSz:..`` over the top 25 levels of
  each side after the message is applied (the longer side continues alone), as a signed
  int32; see :func:`checksum`. The live feed now sends ``"checksum":0`` on every frame (and
  the 2022 frames a real CRC): 0 or an absent field means "no checksum".
- Mark/index/funding (derivatives): ``mark-price`` (``markPx``), ``funding-rate``
  (``fundingRate``; ``fundingTime`` is when that rate settles, ``nextFundingTime`` the
  settlement after it), ``index-tickers`` (``idxPx``; subscribed and answered under the
  *index* id, e.g. ``BTC-USDT`` for ``BTC-USDT-SWAP``).

Channels accepted by :meth:`OkxAdapter.subscribe_frames` (each entry may also be a
comma-separated list, so one settings string can name several):

- ``books`` (the default depth stream: 400 levels, snapshot then updates, public);
  ``books5`` (5-level snapshots) and ``bbo-tbt`` (1 level) also decode, as snapshots;
- ``mark-price`` (the default mark stream), ``funding-rate`` and ``index-tickers``; they are
  subscribed for derivatives only (funding for perpetual swaps only), and ``index-tickers``
  under the index id, once per index. ``mark-price,funding-rate,index-tickers`` gives all.

Parsing is pure: no I/O, no clock, no globals mutated. :meth:`OkxAdapter.decode` is one
msgspec decode per frame and hands the raw level arrays on as ``msgspec.Raw`` (price at
index 0, size at index 1); :func:`parse` converts them, for tests and tools. The hot path
scans batches of frames instead (:meth:`OkxAdapter.scan_frames`, feeds.okx_scan): one numba
call reads every ``books`` frame into the shared scan table, and hands every other frame
(events, pong, other channels, several books in one frame, anything odd) to decode.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

import msgspec

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
    PageHook,
    ReplyHook,
    SequenceHook,
    SnapshotSource,
    VenueMessage,
    WeightLimitHook,
)
from feeds.okx_scan import scan_book_frames, scan_book_frames_released
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
    format_units,
)
from monitor.errors import ParseError

MS = 1_000_000  # ns per ms
NAN = float("nan")
CHECKSUM_DEPTH = 25  # levels per side in the checksum
NOTICE_RECONNECT = "64008"  # "The connection will soon be closed for a service upgrade"

# book channels: snapshot depth (levels per side); the first two send snapshot + updates,
# the others a snapshot in every message (no "action")
BOOK_CHANNELS: dict[str, int] = {
    "books": 400,
    "books-l2-tbt": 400,
    "books50-l2-tbt": 50,
    "books5": 5,
    "bbo-tbt": 1,
}
SNAPSHOT_ONLY_CHANNELS = frozenset({"books5", "bbo-tbt"})
MARK_CHANNELS = frozenset({"mark-price", "funding-rate", "index-tickers"})
INSTRUMENT_TYPES = ("SPOT", "SWAP", "FUTURES")
INSTRUMENTS_PATH = "/api/v5/public/instruments"

_ABSENT = msgspec.Raw(b"")
_PONG = frozenset({"pong", b"pong"})  # the answer to our text "ping"
_INST_ID_IN_MESSAGE = re.compile(r"instId:([A-Za-z0-9_.\-]+)")


# --- wire types ---------------------------------------------------------------------------
class _Arg(msgspec.Struct, gc=False):
    channel: str = ""
    instId: str = ""


class _Data(msgspec.Struct, gc=False):
    """One element of ``data``: the union of the fields of the channels liqmon reads.

    Other channels (trades, tickers) decode into it too; their own fields are skipped.
    """

    asks: msgspec.Raw = _ABSENT  # books: raw level arrays [[px, sz, "0", orders], ...]
    bids: msgspec.Raw = _ABSENT
    ts: int = -1  # event time, ms (a JSON string on the wire)
    checksum: int = 0  # books: signed CRC32 of the top 25 levels; 0 = none sent
    seqId: int = -1  # books: this message's sequence id
    prevSeqId: int = -1  # books: the previous message's seqId (-1 on a snapshot)
    markPx: msgspec.Raw = _ABSENT  # mark-price
    idxPx: msgspec.Raw = _ABSENT  # index-tickers
    fundingRate: msgspec.Raw = _ABSENT  # funding-rate: the rate settling at fundingTime
    fundingTime: int = 0  # funding-rate: ms when this rate settles (nextFundingTime: the one after)


class _Frame(msgspec.Struct, gc=False):
    """A push (``arg`` + ``data``, ``action`` on books) or an event (subscribe, error, notice)."""

    arg: _Arg | None = None
    action: str = ""
    data: list[_Data] = []
    event: str = ""
    code: str | int = ""
    msg: str = ""


class _Envelope(msgspec.Struct, gc=False):
    """Fallback shape for a frame whose ``data`` is not objects (candles and the like)."""

    arg: _Arg | None = None
    event: str = ""


class _InstrumentRow(msgspec.Struct, gc=False):
    instId: str
    instType: str
    tickSz: str = ""
    lotSz: str = ""
    baseCcy: str = ""
    quoteCcy: str = ""
    settleCcy: str = ""
    uly: str = ""
    instFamily: str = ""
    ctType: str = ""  # linear | inverse (derivatives)
    ctVal: str = ""  # contract value, in ctValCcy
    ctMult: str = ""
    ctValCcy: str = ""
    state: str = "live"


class _Instruments(msgspec.Struct, gc=False):
    code: str | int = "0"
    msg: str = ""
    data: list[_InstrumentRow] = []


class _RestHead(msgspec.Struct, gc=False):
    code: str | int = "0"
    msg: str = ""


# strict=False: OKX writes timestamps and some ids as JSON strings
_frame = msgspec.json.Decoder(_Frame, strict=False)
_envelope = msgspec.json.Decoder(_Envelope)
_instruments = msgspec.json.Decoder(_Instruments, strict=False)
_rest_head = msgspec.json.Decoder(_RestHead)


# --- pure helpers -------------------------------------------------------------------------
def checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """OKX book checksum of best-first ``(price, size)`` strings, as a signed int32.

    The strings must be written as OKX writes them (shortest decimal, no trailing zeros;
    :func:`okx_number` makes them from exact values). Reference for the book kernel's check.
    """
    parts: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def okx_number(value: Decimal | int, decimals: int = 0) -> str:
    """A number as OKX writes it: plain decimal, no exponent, no trailing zeros.

    ``value`` is a Decimal, or an int of ``10**-decimals`` units (the book's price units).
    """
    text = format_units(value, decimals) if isinstance(value, int) else format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def index_id(symbol: str) -> str | None:
    """The index a derivative is priced against (``BTC-USDT-SWAP`` -> ``BTC-USDT``), or None."""
    parts = symbol.split("-")
    if len(parts) != 3:
        return None  # spot pair or option
    return f"{parts[0]}-{parts[1].removesuffix('_UM')}"


def _kind_of(symbol: str) -> InstrumentKind | None:
    parts = symbol.split("-")
    if len(parts) == 2:
        return InstrumentKind.SPOT
    if len(parts) == 3:
        return InstrumentKind.PERP if parts[2] == "SWAP" else InstrumentKind.FUTURE
    return None  # options: not subscribed


def _float(raw: msgspec.Raw) -> float:
    if not raw:
        return NAN
    text = bytes(raw).strip(b'"')
    return float(text) if text else NAN


def _decimal_text(text: str) -> str:
    """'0.01000000' -> '0.01' (the value, without the venue's padding)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _decimals(text: str) -> int:
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


# --- the adapter --------------------------------------------------------------------------
class OkxAdapter:
    """Adapter for OKX v5 public market data (one socket for every instrument type)."""

    __slots__ = ()

    venue = Venue.OKX
    sequencing = SeqRule.CHAIN
    snapshot_source = SnapshotSource.STREAM
    checksum = Checksum.OKX
    px_index = 0
    qty_index = 1
    book_depth = 400  # `books` keeps 400 levels a side (and deletes what leaves the window)
    subscribe_in_url = False
    reply_to: ReplyHook | None = None
    connection_sequence: SequenceHook | None = None
    stated_weight_limit: WeightLimitHook | None = None  # no limit stated in its metadata
    next_instruments_page: PageHook | None = None  # one answer lists every instrument
    # OKX v5 docs: 3 connections/s per IP; 480 subscribe/unsubscribe/login ops per
    # hour per connection; fewer than 30 channels of 400/50-level books per connection
    # (25 keeps a margin; the mark channels beside them are not book channels)
    limits = Limits(
        streams_per_connection=25,
        topics_per_frame=25,
        control_per_hour=480,
        connections_per_s=3.0,
        lifetime_s=0.0,
    )
    ping_interval_s: float | None = None  # no websocket pings: the text ping below
    keepalive_s: float | None = 20.0  # the server drops a connection silent for 30 s
    # REST /api/v5/public/instruments: 20 requests per 2 s per IP and instType (no header)
    weight_limit_per_minute = 600
    used_weight_header: str | None = None

    # --- URLs and subscriptions -----------------------------------------------------------
    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        """OKX subscribes by message: the URL does not depend on the subscriptions."""
        return base_url

    def open_frames(self) -> list[str]:
        return []

    def keepalive_frame(self) -> str | None:
        return "ping"

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``subscribe`` frames of at most ``limits.topics_per_frame`` args each."""
        return self._frames("subscribe", symbols, channels)

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        return self._frames("unsubscribe", symbols, channels)

    def topics(self, symbols: Sequence[str], channels: Sequence[str]) -> list[dict[str, str]]:
        """The subscription args for these symbols and channels (see the module doc)."""
        names = [c.strip() for entry in channels for c in entry.split(",") if c.strip()]
        args: list[dict[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for symbol in symbols:
            kind = _kind_of(symbol)
            for channel in names:
                inst_id: str | None = symbol
                if channel in MARK_CHANNELS:
                    if kind in {None, InstrumentKind.SPOT}:
                        continue
                    if channel == "funding-rate" and kind != InstrumentKind.PERP:
                        continue
                    if channel == "index-tickers":
                        inst_id = index_id(symbol)
                if inst_id is None or (channel, inst_id) in seen:
                    continue
                seen.add((channel, inst_id))
                args.append({"channel": channel, "instId": inst_id})
        return args

    def _frames(self, op: str, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        args = self.topics(symbols, channels)
        return [
            encode({"op": op, "args": batch})
            for batch in chunks(args, self.limits.topics_per_frame)
        ]

    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        """``GET /api/v5/public/instruments?instType=SPOT|SWAP|FUTURES``."""
        base = rest_url.rstrip("/")
        urls = [f"{base}{INSTRUMENTS_PATH}?instType={t}" for t in INSTRUMENT_TYPES]
        return [HttpRequest(url=url, key=url) for url in urls]

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        """None: the snapshot arrives on the socket after each (re)subscribe."""
        return None

    # --- instruments ------------------------------------------------------------------------
    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Instruments of one ``/api/v5/public/instruments`` answer (options are skipped).

        Spot sizes are base units (contract size 1). Linear contracts: base = contracts x
        ctVal x ctMult. Inverse contracts (ctValCcy USD): ``inverse`` and contract size
        ctVal x ctMult in USD. Base and quote of a derivative come from ``uly`` (or
        ``instFamily``), e.g. ``BTC-USDT``; the ``_UM`` tag of USD-margined linear futures
        families is dropped.
        """
        try:
            answer = _instruments.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, text, f"instruments: {exc}") from exc
        if str(answer.code) != "0":
            raise ParseError(
                self.venue.value, text, f"instruments: code {answer.code}: {answer.msg}"
            )
        out: list[Instrument] = []
        for row in answer.data:
            try:
                inst = self._instrument(row)
            except (InvalidOperation, ValueError) as exc:
                raise ParseError(self.venue.value, text, f"{row.instId}: {exc}") from exc
            if inst is not None:
                out.append(inst)
        return out

    def _instrument(self, row: _InstrumentRow) -> Instrument | None:
        if row.state == "test" or not row.tickSz or not row.lotSz:
            return None
        if Decimal(row.tickSz) <= 0:
            return None
        tick = _decimal_text(row.tickSz)
        lot = _decimal_text(row.lotSz)
        if row.instType == "SPOT":
            base, quote = row.baseCcy, row.quoteCcy
            if not base or not quote:
                base, _, quote = row.instId.partition("-")
            return Instrument(
                venue=self.venue,
                symbol=row.instId,
                base=base,
                quote=quote,
                kind=InstrumentKind.SPOT,
                tick=tick,
                lot=lot,
                qty_precision=_decimals(lot),
            )
        if row.instType not in {"SWAP", "FUTURES"} or row.ctType not in {"linear", "inverse"}:
            return None
        family = row.uly or row.instFamily or row.instId
        base, _, quote = family.partition("-")
        quote = quote.removesuffix("_UM")
        if not base or not quote:
            return None
        contract_size = Decimal(row.ctVal or "1") * Decimal(row.ctMult or "1")
        return Instrument(
            venue=self.venue,
            symbol=row.instId,
            base=base,
            quote=quote,
            kind=InstrumentKind.PERP if row.instType == "SWAP" else InstrumentKind.FUTURE,
            tick=tick,
            lot=lot,
            contract_size=float(contract_size),
            inverse=row.ctType == "inverse",
            qty_precision=_decimals(lot),
        )

    def reconnect_notice(self, data: bytes | str) -> str | None:
        """Why the venue is about to close the connection this frame came on (the 64008
        service-upgrade notice), else None. Called by the session on every frame: a frame
        whose head does not say ``"notice"`` is not decoded."""
        head = data[:40]
        said = '"notice"' in head if isinstance(head, str) else b'"notice"' in head
        if not said:
            return None
        try:
            decoded = self.decode(data, 0)
        except ParseError:
            return None
        if type(decoded) is VenueMessage and decoded.reconnect:
            return f"notice {decoded.code}: {decoded.message}"
        return None

    # --- batch scanning (hot path) ----------------------------------------------------------
    @property
    def scanner(self) -> FrameScanner:
        """This adapter: it scans OKX book frames in batches (feeds.okx_scan)."""
        return self

    symbol_key = staticmethod(symbol_key)
    min_frames = 8  # the scan beats decode from this many frames a read (bench/README.md)

    def scan_frames(self, frames: Sequence[bytes | str]) -> ScannedFrames:
        """Scan many frames in one numba call (see feeds.okx_scan). Pure."""
        return self.scan_buffer(*join_frames(frames))

    def scan_buffer(
        self, buf: ByteArray, starts: IntArray, ends: IntArray, *, release_gil: bool = False
    ) -> ScannedFrames:
        table = new_table(len(starts))
        (scan_book_frames_released if release_gil else scan_book_frames)(buf, starts, ends, table)
        return ScannedFrames(buf, table)

    # --- parsing ----------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame. Raises ParseError on malformed input."""
        if data in _PONG:
            return Ignored("pong")
        try:
            frame = _frame.decode(data)
        except msgspec.ValidationError as exc:
            return self._not_ours(data, exc)
        except msgspec.DecodeError as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        arg = frame.arg
        if frame.event:
            return self._event(frame)
        if arg is None or not arg.channel:
            raise ParseError(self.venue.value, data, "neither event nor arg.channel")
        channel = arg.channel
        depth = BOOK_CHANNELS.get(channel)
        if depth is not None:
            return self._book(data, frame, arg, depth)
        if channel in MARK_CHANNELS:
            return self._mark(data, frame, arg, recv_ns)
        return Ignored(channel)

    def _book(
        self, data: bytes | str, frame: _Frame, arg: _Arg, depth: int
    ) -> BookMessage | list[Decoded]:
        action = frame.action
        if action == "update":
            kind = EventKind.DELTA
        elif action == "snapshot" or (not action and arg.channel in SNAPSHOT_ONLY_CHANNELS):
            kind = EventKind.SNAPSHOT
        else:
            raise ParseError(self.venue.value, data, f"book action {action!r}")
        if not frame.data or not arg.instId:
            raise ParseError(self.venue.value, data, "book frame without instId or data")
        out: list[Decoded] = []
        for d in frame.data:
            if not d.bids or not d.asks or d.ts < 0:
                raise ParseError(self.venue.value, data, "book data without bids/asks/ts")
            if kind == EventKind.SNAPSHOT:
                prev, limit = -1, depth
            else:
                prev, limit = d.prevSeqId, 0
            out.append(
                BookMessage(
                    arg.instId,
                    kind,
                    d.seqId,
                    d.seqId,
                    prev,
                    d.bids,
                    d.asks,
                    d.ts * MS,
                    limit,
                    d.checksum,
                    d.checksum != 0,
                )
            )
        return out[0] if len(out) == 1 else out  # type: ignore[return-value]

    def _mark(
        self, data: bytes | str, frame: _Frame, arg: _Arg, recv_ns: int
    ) -> MarkPriceEvent | list[Decoded]:
        if not frame.data or not arg.instId:
            raise ParseError(self.venue.value, data, f"{arg.channel} without instId or data")
        out: list[Decoded] = []
        channel = arg.channel
        try:
            for d in frame.data:
                ts = d.ts * MS if d.ts >= 0 else recv_ns
                if channel == "mark-price":
                    if not d.markPx:
                        raise ValueError("no markPx")
                    event = MarkPriceEvent(
                        self.venue, arg.instId, _float(d.markPx), NAN, NAN, 0, ts, recv_ns
                    )
                elif channel == "index-tickers":
                    if not d.idxPx:
                        raise ValueError("no idxPx")
                    event = MarkPriceEvent(
                        self.venue, arg.instId, NAN, _float(d.idxPx), NAN, 0, ts, recv_ns
                    )
                else:
                    if not d.fundingRate:
                        raise ValueError("no fundingRate")
                    event = MarkPriceEvent(
                        self.venue,
                        arg.instId,
                        NAN,
                        NAN,
                        _float(d.fundingRate),
                        d.fundingTime * MS,
                        ts,
                        recv_ns,
                    )
                out.append(event)
        except ValueError as exc:
            raise ParseError(self.venue.value, data, f"{channel}: {exc}") from exc
        return out[0] if len(out) == 1 else out  # type: ignore[return-value]

    def _event(self, frame: _Frame) -> Decoded:
        event = frame.event
        if event == "error":
            symbol = frame.arg.instId if frame.arg is not None and frame.arg.instId else None
            if symbol is None:
                found = _INST_ID_IN_MESSAGE.search(frame.msg)
                symbol = found.group(1) if found else None
            return VenueMessage(str(frame.code), frame.msg, symbol=symbol)
        if event == "notice":
            code = str(frame.code)
            return VenueMessage(code, frame.msg, reconnect=code == NOTICE_RECONNECT)
        return Ignored(event)  # subscribe, unsubscribe, login, channel-conn-count

    def _not_ours(self, data: bytes | str, exc: msgspec.ValidationError) -> Decoded:
        # a channel whose data is not objects (candles) fails the typed decode: ignore it
        # when it is not a channel liqmon reads; this path is off the hot path
        try:
            envelope = _envelope.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            envelope = None
        channel = envelope.arg.channel if envelope is not None and envelope.arg else ""
        if channel and channel not in BOOK_CHANNELS and channel not in MARK_CHANNELS:
            return Ignored(channel)
        raise ParseError(self.venue.value, data, str(exc)) from exc

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> Decoded:
        """Decode a REST answer: instrument metadata (OKX has no REST book liqmon uses)."""
        if INSTRUMENTS_PATH not in key:
            return Ignored(f"http {key}")
        try:
            head = _rest_head.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, f"instruments: {exc}") from exc
        if str(head.code) != "0":
            return VenueMessage(str(head.code), head.msg)
        return InstrumentsUpdate(key, data)


OKX = OkxAdapter()
ADAPTERS: dict[Venue, OkxAdapter] = {OKX.venue: OKX}


def parse(
    adapter: OkxAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: Mapping[str, Instrument | tuple[int, float]],
) -> list[FeedEvent]:
    """Parse one websocket frame into domain events, levels converted to arrays. Pure.

    ``instruments`` maps the OKX symbol to its Instrument, or to (price decimals, contract
    size). Sizes become base units: contracts x contract size, divided by the price for
    inverse contracts (feeds.base.book_events).
    """
    return book_events(adapter, adapter.decode(raw, recv_ns), raw, recv_ns, instruments)


__all__ = [
    "ADAPTERS",
    "BOOK_CHANNELS",
    "OKX",
    "OkxAdapter",
    "checksum",
    "index_id",
    "okx_number",
    "parse",
]
