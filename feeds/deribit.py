"""Deribit (JSON-RPC 2.0 over websocket): ``book.*`` books, ``ticker.*`` marks, heartbeats.

Protocol (Deribit API docs "book.(instrument_name).(interval)",
"public/set_heartbeat", "Notifications"):

- URL ``wss://www.deribit.com/ws/api/v2``. Subscribe (channels batched per request):
  ``{"jsonrpc":"2.0","id":N,"method":"public/subscribe","params":{"channels":
  ["book.BTC-PERPETUAL.100ms"]}}``, answered ``{"jsonrpc":"2.0","id":N,"result":[..]}``;
  errors are ``{"jsonrpc":"2.0","id":N,"error":{"code":..,"message":..}}``.
- Book notifications: ``{"jsonrpc":"2.0","method":"subscription","params":{"channel":
  "book.BTC-PERPETUAL.100ms","data":{"type":"snapshot"|"change","timestamp":ms,
  "instrument_name","change_id","prev_change_id","bids":[["new"|"change"|"delete",price,
  amount]],"asks":[..]}}}``. The first is the whole book; then changes, each carrying the
  previous ``change_id`` (:attr:`SeqRule.CHAIN`: a snapshot is ``last_seq = change_id``,
  ``prev_seq = -1``; a change ``last_seq = change_id``, ``prev_seq = prev_change_id``).
  The raw level arrays go to the book kernel as they are (price at index 1, amount at 2;
  the action string is skipped). Amounts are absolute and a ``delete`` carries 0 (docs
  example); a delete that carries another amount is rewritten to 0 here.
- Units: perpetuals and inverse futures (``BTC-PERPETUAL``) count USD; linear USDC
  contracts (``BTC_USDC-PERPETUAL``) count the base coin.
- ``ticker.<instrument>.100ms`` -> :class:`~monitor.domain.MarkPriceEvent` (``mark_price``,
  ``index_price``, ``current_funding``; Deribit funding accrues continuously, so there is
  no next funding time).
- Keepalive: :meth:`DeribitAdapter.open_frames` sends ``public/set_heartbeat``
  (interval 30 s); the server then sends ``{"method":"heartbeat","params":{"type":
  "test_request"}}`` and closes the connection unless ``public/test`` follows: decode
  returns that answer as a :class:`~feeds.contract.Reply`.
- Limits: 32 connections per IP, HTTP and websocket together.

Channels accepted by :meth:`DeribitAdapter.subscribe_frames` are ``"<name>.<interval>"``
with the instrument put in between, or just ``"<name>"`` for the 100 ms interval: ``"book"``
or ``"book.100ms"`` (the depth stream, default; ``raw`` needs an authorised connection,
``agg2`` is also public) and ``"ticker"`` or ``"ticker.100ms"`` (the mark stream). Grouped
books (``book.<inst>.<group>.<depth>.<interval>``) are not supported.

Instruments: ``GET /api/v2/public/get_instruments?currency=BTC|ETH|USDC&kind=future``.

Parsing is pure: no I/O, no clock, no globals mutated. :func:`parse` is :meth:`decode` with
the levels converted to arrays (tests and tools).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import msgspec

from feeds.base import book_events, chunks, encode
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
    Reply,
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
    decimal_places,
)
from monitor.errors import ParseError

WS_URL = "wss://www.deribit.com/ws/api/v2"
REST_URL = "https://www.deribit.com"
INSTRUMENTS_PATH = "/api/v2/public/get_instruments"
INSTRUMENT_CURRENCIES = ("BTC", "ETH", "USDC")  # USDC lists the linear USDC contracts
HEARTBEAT_INTERVAL_S = 30  # set_heartbeat interval (Deribit's minimum is 10)
CHANNEL_NAMES = ("book", "ticker")
INTERVALS = ("100ms", "agg2", "raw")
DEFAULT_INTERVAL = "100ms"  # a channel given without interval ("book", "ticker")

# request ids (Deribit echoes them in answers; they only help reading logs)
HEARTBEAT_ID = 1
TEST_ID = 2
SUBSCRIBE_ID = 1000
UNSUBSCRIBE_ID = 2000

MS = 1_000_000  # ns per ms
_ABSENT = msgspec.Raw(b"")
_DELETE = b'"delete"'
# a delete entry whose amount might not be zero (exactly checked after decoding)
_NONZERO_DELETE = re.compile(rb'"delete"\s*,[^,\]]+,(?!\s*0+(?:\.0*)?(?:[eE][+-]?\d+)?\s*\])')
_TEST_REPLY = encode({"jsonrpc": "2.0", "id": TEST_ID, "method": "public/test", "params": {}})


class _Data(msgspec.Struct, gc=False):
    """A notification's ``data``: a book (snapshot/change) or a ticker."""

    type: str = ""  # book: snapshot | change
    timestamp: int = 0  # ms
    instrument_name: str = ""
    change_id: int = -1
    prev_change_id: int = -1
    bids: msgspec.Raw = _ABSENT  # [["new"|"change"|"delete", price, amount], ...]
    asks: msgspec.Raw = _ABSENT
    mark_price: float | None = None  # ticker
    index_price: float | None = None
    current_funding: float | None = None  # perpetuals only


class _Params(msgspec.Struct, gc=False):
    channel: str = ""
    data: _Data | list[Any] | None = None  # trades channels send lists
    type: str = ""  # heartbeat: heartbeat | test_request


class _Error(msgspec.Struct, gc=False):
    code: int = 0
    message: str = ""


class _Frame(msgspec.Struct, gc=False):
    id: int | None = None
    method: str = ""  # subscription | heartbeat (server-sent); absent on answers
    params: _Params | None = None
    result: msgspec.Raw = _ABSENT
    error: _Error | None = None


class _Instrument(msgspec.Struct, gc=False):
    instrument_name: str
    kind: str = ""  # future | option | spot | future_combo | option_combo
    tick_size: msgspec.Raw = _ABSENT
    contract_size: float = 0.0
    min_trade_amount: msgspec.Raw = _ABSENT
    settlement_period: str = ""  # perpetual | day | week | month
    instrument_type: str = ""  # reversed (inverse) | linear
    future_type: str = ""  # older name of instrument_type
    base_currency: str = ""
    quote_currency: str = ""
    counter_currency: str = ""
    is_active: bool = True


class _Instruments(msgspec.Struct, gc=False):
    result: list[_Instrument] | None = None
    error: _Error | None = None


_frame = msgspec.json.Decoder(_Frame)
_instruments = msgspec.json.Decoder(_Instruments)
_side = msgspec.json.Decoder(list[tuple[msgspec.Raw, msgspec.Raw, msgspec.Raw]])


def _zero_deletes(raw: msgspec.Raw) -> msgspec.Raw | bytes:
    """The side with every ``delete`` amount written as 0 (unchanged if they already are)."""
    if _NONZERO_DELETE.search(raw) is None:
        return raw  # the usual case, found by one regex scan
    levels = _side.decode(raw)
    deletes = [bytes(action) == _DELETE for action, _, _ in levels]
    if all(float(bytes(level[2])) == 0.0 for level, d in zip(levels, deletes, strict=True) if d):
        return raw
    return b"[%s]" % b",".join(
        [
            b"[%s,%s,%s]" % (action, price, b"0" if delete else amount)
            for (action, price, amount), delete in zip(levels, deletes, strict=True)
        ]
    )


def _plain(raw: msgspec.Raw | str) -> str:
    """A JSON number as a plain decimal string (``0.5``, ``1e-05`` -> ``0.00001``)."""
    text = raw if isinstance(raw, str) else bytes(raw).decode()
    try:
        value = Decimal(text.strip('"'))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {text!r}") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError(f"not a positive decimal: {text!r}")
    return f"{value.normalize():f}"


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


class DeribitAdapter:
    """Adapter for Deribit futures and perpetuals (inverse and linear) over websocket."""

    venue = Venue.DERIBIT
    sequencing = SeqRule.CHAIN  # prev_change_id == previous change_id
    snapshot_source = SnapshotSource.STREAM
    checksum = Checksum.NONE
    px_index = 1  # ["new", price, amount]
    qty_index = 2
    subscribe_in_url = False  # subscriptions are sent as frames
    scanner: FrameScanner | None = None  # every frame goes through decode
    connection_sequence: SequenceHook | None = None
    reconnect_notice: NoticeHook | None = None
    stated_weight_limit: WeightLimitHook | None = None  # no limit stated in its metadata
    next_instruments_page: PageHook | None = None  # one answer lists every instrument
    book_depth = 0  # full books: the store's default capacity
    limits = Limits(
        streams_per_connection=200,  # not documented: a modest choice
        topics_per_frame=50,
        control_per_s=5.0,
        connections_per_s=2.0,  # 32 connections per IP (HTTP + websocket) in all
    )
    ping_interval_s: float | None = None  # Deribit's heartbeat (test_request) instead
    keepalive_s: float | None = None
    # non-matching-engine requests: about 20 a second sustained per account/IP [L]
    weight_limit_per_minute = 1200
    used_weight_header: str | None = None

    __slots__ = ()

    # --- URLs and subscriptions ------------------------------------------------------------
    def ws_url(self, base_url: str, symbols: Sequence[str], channels: Sequence[str]) -> str:
        return base_url

    def open_frames(self) -> list[str]:
        """``public/set_heartbeat``: the server then sends test requests we answer."""
        return [
            encode(
                {
                    "jsonrpc": "2.0",
                    "id": HEARTBEAT_ID,
                    "method": "public/set_heartbeat",
                    "params": {"interval": HEARTBEAT_INTERVAL_S},
                }
            )
        ]

    def keepalive_frame(self) -> str | None:
        return None

    def channel_names(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """Full names: ``book.100ms`` and ``BTC-PERPETUAL`` -> ``book.BTC-PERPETUAL.100ms``."""
        names: list[str] = []
        for channel in channels:
            name, dot, interval = channel.partition(".")
            interval = interval if dot else DEFAULT_INTERVAL
            if name not in CHANNEL_NAMES or interval not in INTERVALS:
                raise ValueError(
                    f"Deribit channel {channel!r} is not <{'|'.join(CHANNEL_NAMES)}>."
                    f"<{'|'.join(INTERVALS)}>"
                )
            names.extend(f"{name}.{symbol}.{interval}" for symbol in symbols)
        return names

    def _frames(
        self, method: str, first_id: int, symbols: Sequence[str], channels: Sequence[str]
    ) -> list[str]:
        batches = chunks(self.channel_names(symbols, channels), self.limits.topics_per_frame)
        return [
            encode(
                {
                    "jsonrpc": "2.0",
                    "id": first_id + i,
                    "method": method,
                    "params": {"channels": batch},
                }
            )
            for i, batch in enumerate(batches)
        ]

    def subscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        """``public/subscribe`` frames, at most ``limits.topics_per_frame`` channels each."""
        return self._frames("public/subscribe", SUBSCRIBE_ID, symbols, channels)

    def unsubscribe_frames(self, symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
        return self._frames("public/unsubscribe", UNSUBSCRIBE_ID, symbols, channels)

    # --- REST --------------------------------------------------------------------------------
    def instruments_requests(self, rest_url: str) -> list[HttpRequest]:
        base = f"{rest_url.rstrip('/')}{INSTRUMENTS_PATH}"
        urls = [f"{base}?currency={currency}&kind=future" for currency in INSTRUMENT_CURRENCIES]
        return [HttpRequest(url=url, key=url) for url in urls]

    def parse_instruments(self, key: str, text: str | bytes) -> list[Instrument]:
        """Perpetuals and dated futures from a ``get_instruments`` answer.

        Inverse contracts (``instrument_type`` ``reversed``, e.g. BTC-PERPETUAL) have book
        amounts in USD: ``inverse`` with ``contract_size`` 1 (one book unit is 1 USD; the
        venue's own contract_size, 10 USD, is the order step). Linear USDC contracts count
        the base coin: ``contract_size`` 1. Combos, options and inactive ones are left out.
        """
        try:
            answer = _instruments.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, text, f"get_instruments: {exc}") from exc
        if answer.error is not None or answer.result is None:
            message = answer.error.message if answer.error else "no result"
            raise ParseError(self.venue.value, text, f"get_instruments error: {message}")
        instruments = []
        for item in answer.result:
            if item.kind not in ("future", "spot") or not item.is_active:
                continue
            if item.kind == "spot":
                kind = InstrumentKind.SPOT
            elif item.settlement_period == "perpetual":
                kind = InstrumentKind.PERP
            else:
                kind = InstrumentKind.FUTURE
            inverse = (item.instrument_type or item.future_type) == "reversed"
            try:
                tick = _plain(item.tick_size)
                lot = _plain(item.min_trade_amount)
            except ValueError as exc:
                raise ParseError(self.venue.value, text, f"{item.instrument_name}: {exc}") from exc
            instruments.append(
                Instrument(
                    venue=self.venue,
                    symbol=item.instrument_name,
                    base=item.base_currency,
                    quote=item.quote_currency or item.counter_currency,
                    kind=kind,
                    tick=tick,
                    lot=lot,
                    contract_size=1.0,
                    inverse=inverse,
                    price_precision=decimal_places(tick),
                    qty_precision=decimal_places(lot),
                )
            )
        return instruments

    def snapshot_request(self, rest_url: str, symbol: str, limit: int) -> HttpRequest | None:
        return None  # the first notification of a subscription is the snapshot

    def reply_to(self, data: bytes | str) -> str | None:
        """The connection's answer to a heartbeat ``test_request`` (None for anything else).

        Called by the session on every frame, so it only decodes frames that mention it."""
        marker = "test_request" if isinstance(data, str) else b"test_request"
        if marker not in data:  # type: ignore[operator]
            return None
        try:
            decoded = self.decode(data, 0)
        except ParseError:
            return None
        return decoded.text if isinstance(decoded, Reply) else None

    # --- parsing -------------------------------------------------------------------------------
    def decode(self, data: bytes | str, recv_ns: int) -> DecodeResult:
        """Decode one websocket frame. Raises ParseError on malformed input."""
        try:
            frame = _frame.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(self.venue.value, data, str(exc)) from exc
        method = frame.method
        params = frame.params
        if method == "subscription" and params is not None:
            channel = params.channel
            if channel.startswith("book."):
                return self._book(params.data, data)
            if channel.startswith("ticker."):
                return self._ticker(params.data, data, recv_ns)
            return Ignored(channel.partition(".")[0] or "subscription")
        if method == "heartbeat" and params is not None:
            if params.type == "test_request":
                return Reply(_TEST_REPLY)
            return Ignored("heartbeat")
        if frame.error is not None:
            return VenueMessage(str(frame.error.code), frame.error.message)
        if frame.id is not None or frame.result:
            return Ignored("rpc result")  # subscribe, set_heartbeat and test answers
        raise ParseError(self.venue.value, data, "neither a notification nor an RPC answer")

    def _book(self, d: _Data | list[Any] | None, data: bytes | str) -> BookMessage:
        if (
            not isinstance(d, _Data)
            or not d.instrument_name
            or d.change_id < 0
            or not d.bids
            or not d.asks
        ):
            raise ParseError(
                self.venue.value, data, "book without instrument_name/change_id/bids/asks"
            )
        bids: msgspec.Raw | bytes = d.bids
        asks: msgspec.Raw | bytes = d.asks
        if (_DELETE in data) if isinstance(data, bytes) else ('"delete"' in data):
            try:
                bids, asks = _zero_deletes(d.bids), _zero_deletes(d.asks)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                raise ParseError(self.venue.value, data, f"book levels: {exc}") from exc
        if d.type == "snapshot":
            return BookMessage(
                d.instrument_name,
                EventKind.SNAPSHOT,
                -1,
                d.change_id,
                -1,
                bids,
                asks,
                d.timestamp * MS,
            )
        if d.type == "change":
            if d.prev_change_id < 0:
                raise ParseError(self.venue.value, data, "book change without prev_change_id")
            return BookMessage(
                d.instrument_name,
                EventKind.DELTA,
                d.change_id,
                d.change_id,
                d.prev_change_id,
                bids,
                asks,
                d.timestamp * MS,
            )
        raise ParseError(self.venue.value, data, f"book notification of type {d.type!r}")

    def _ticker(
        self, d: _Data | list[Any] | None, data: bytes | str, recv_ns: int
    ) -> MarkPriceEvent:
        if not isinstance(d, _Data) or not d.instrument_name:
            raise ParseError(self.venue.value, data, "ticker without instrument_name")
        return MarkPriceEvent(
            self.venue,
            d.instrument_name,
            _nan(d.mark_price),
            _nan(d.index_price),
            _nan(d.current_funding),
            0,
            d.timestamp * MS if d.timestamp else recv_ns,
            recv_ns,
        )

    def decode_http(self, key: str, data: bytes | str, recv_ns: int) -> DecodeResult:
        """A REST answer: ``get_instruments`` is passed on for :meth:`parse_instruments`."""
        if urlsplit(key).path.endswith(INSTRUMENTS_PATH):
            return InstrumentsUpdate(key, data)
        return Ignored(f"http {key}")


FUTURES = DeribitAdapter()
ADAPTERS: dict[Venue, DeribitAdapter] = {FUTURES.venue: FUTURES}


def parse(
    adapter: DeribitAdapter,
    raw: bytes | str,
    recv_ns: int,
    instruments: Mapping[str, Instrument | tuple[int, float]],
) -> list[FeedEvent]:
    """Parse one websocket frame into domain events, levels converted to arrays. Pure.

    ``instruments`` maps the instrument name to its Instrument, or to (price decimals,
    contract size) for a linear one. Sizes become base units: an inverse contract's USD
    amounts are divided by the price (feeds.base.book_events).
    """
    return book_events(adapter, adapter.decode(raw, recv_ns), raw, recv_ns, instruments)
