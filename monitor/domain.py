"""Domain types shared by feeds, the monitor and alerts.

This module imports nothing internal. Prices are exact: a price is held as an integer
number of *price units* of its instrument, where one unit is ``10**-price_decimals`` and
``price_decimals`` is the finer of the tick's decimals and the precision the venue writes
prices with (Binance spot writes 8 decimals, and orders placed before a tick-size change
rest at prices finer than today's tick). A tick is ``tick_units`` units. The integer is
exact, so equality across replays and checksums over formatted levels are exact too.
Quantities are float64 in base units once converted (:class:`BookEvent`, the book); a
:class:`RawBook` still holds the venue's own sizes (contracts, or USD for inverse contracts).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Venue(StrEnum):
    """Venue ids, as used in recordings, config and the API."""

    BINANCE = "binance"
    BINANCE_FUTURES = "binance_futures"
    OKX = "okx"
    BYBIT = "bybit"  # spot (wss://stream.bybit.com/v5/public/spot)
    BYBIT_LINEAR = "bybit_linear"  # USDT/USDC perpetuals and futures (.../v5/public/linear)
    COINBASE = "coinbase"
    KRAKEN = "kraken"
    HYPERLIQUID = "hyperliquid"
    DERIBIT = "deribit"


class InstrumentKind(StrEnum):
    SPOT = "spot"
    PERP = "perp"
    FUTURE = "future"


class EventKind(IntEnum):
    SNAPSHOT = 1
    DELTA = 2


class SeqRule(IntEnum):
    """How a venue's deltas chain onto each other and onto a snapshot (declared as data).

    CONTIGUOUS: each delta's first id is the previous delta's last id + 1, and the first
    delta applied after a snapshot satisfies ``U <= lastUpdateId + 1 <= u`` (Binance spot).
    PREVIOUS: each delta carries the previous delta's last id (``pu == prev u``), and the
    first delta applied satisfies ``U <= lastUpdateId <= u`` (Binance USD-M), or directly
    follows the snapshot (``pu == lastUpdateId``, a snapshot taken between two events).
    CHAIN: the snapshot and every delta carry their own id (``last_seq``) and the previous
    one (``prev_seq``); a delta applies when ``prev_seq`` equals the book's last id, and
    nothing is "stale" (OKX seqId/prevSeqId, which may go down after maintenance; Deribit
    change_id/prev_change_id). A delta with ``prev_seq == last_seq == -1`` carries no ids
    (OKX before seqId existed) and applies unchecked.
    NONE: no sequence ids; every delta applies (Kraken, where the checksum guards the book;
    Hyperliquid, whose every message is a snapshot; Coinbase, checked per connection).
    """

    CONTIGUOUS = 1
    PREVIOUS = 2
    CHAIN = 3
    NONE = 4


class BookState(IntEnum):
    """Lifecycle of one book in the store."""

    EMPTY = 0  # no snapshot yet (or thrown away after a gap): deltas are buffered
    SYNCING = 1  # snapshot applied, waiting for the first delta that bridges it
    LIVE = 2  # snapshot and deltas chained: the book is valid


def decimal_places(text: str) -> int:
    """Number of decimals written in a decimal string ("0.0100" -> 4, "5" -> 0)."""
    dot = text.find(".")
    return 0 if dot < 0 else len(text) - dot - 1


def significant_decimals(text: str) -> int:
    """Decimals needed to write the value of a decimal string exactly ("0.0100" -> 2)."""
    dot = text.find(".")
    if dot < 0:
        return 0
    return len(text[dot + 1 :].rstrip("0"))


def to_units(text: str, decimals: int) -> int:
    """Exact integer value of a decimal string in units of ``10**-decimals``.

    Raises ValueError when the string has more significant decimals than ``decimals``.
    """
    text = text.strip()
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, _, frac = text.partition(".")
    frac_sig = frac.rstrip("0")
    if len(frac_sig) > decimals:
        raise ValueError(f"{text!r} is finer than 1e-{decimals}")
    scale: int = 10**decimals
    value = int(whole or "0") * scale + int(
        (frac_sig or "0").ljust(decimals, "0")[:decimals] or "0"
    )
    return -value if negative else value


def format_units(value: int, decimals: int) -> str:
    """Inverse of :func:`to_units`, writing exactly ``decimals`` decimals."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if decimals == 0:
        return f"{sign}{value}"
    scale = 10**decimals
    return f"{sign}{value // scale}.{value % scale:0{decimals}d}"


class LevelError(ValueError):
    """A level array that does not parse (``off_grid`` when a price is finer than the tick)."""

    def __init__(self, reason: str, off_grid: bool = False) -> None:
        super().__init__(reason)
        self.off_grid = off_grid


_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")


def _reject_constant(name: str) -> None:
    raise LevelError(f"{name} is not a number")


def _number(value: object, level: object) -> Decimal:
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            raise LevelError(f"bad number in {level!r}")
        value = Decimal(value)
    if not isinstance(value, Decimal) or value < 0:
        raise LevelError(f"bad number in {level!r}")
    digits = value.normalize().as_tuple()
    exponent = digits.exponent if isinstance(digits.exponent, int) else 0
    # the kernel holds a number as an int64 mantissa of at most 18 digits, 18 decimals at most
    if len(digits.digits) + max(exponent, 0) > 18 or -exponent > 18:
        raise LevelError(f"number out of range in {level!r}")
    return value


def parse_levels(
    raw: bytes | str,
    *,
    px_index: int = 0,
    qty_index: int = 1,
    price_decimals: int,
    contract_size: float = 1.0,
) -> list[tuple[int, float]]:
    """A raw level array ``[["px","qty"],...]`` -> [(price units, size x contract_size)].

    The plain-Python reading of :class:`RawBook` levels (tools, tests, and the twin of the
    book kernel's ``parse_levels``). Raises :class:`LevelError`.
    """
    try:
        levels = json.loads(
            raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant
        )
    except ValueError as exc:
        raise LevelError(f"not JSON: {exc}") from exc
    if not isinstance(levels, list):
        raise LevelError("not an array")
    out: list[tuple[int, float]] = []
    scale = Decimal(10) ** price_decimals
    for level in levels:
        if not isinstance(level, list) or len(level) <= max(px_index, qty_index):
            raise LevelError(f"bad level {level!r}")
        if any(isinstance(x, list | dict) for x in level):
            raise LevelError(f"nested value in {level!r}")
        px = _number(level[px_index], level)
        qty = _number(level[qty_index], level)
        units = px * scale
        if units != units.to_integral_value():
            raise LevelError(f"price {px} finer than 1e-{price_decimals}", off_grid=True)
        out.append((int(units), float(qty) * contract_size))
    return out


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable book on one venue, with what is needed to read its numbers.

    ``symbol`` is the venue's own spelling (``BTCUSDT``); ``canonical`` is liqmon's
    (``BTC-USDT-PERP``). Venue sizes become base units as follows: linear (``inverse``
    false), ``base = size * contract_size`` (1 for Binance, whose sizes are in base units;
    ctVal x ctMult for OKX swaps); inverse (sizes count quote-currency amounts, e.g. USD
    for Deribit BTC-PERPETUAL or OKX BTC-USD-SWAP contracts of 100 USD),
    ``base = size * contract_size / price``.
    """

    venue: Venue
    symbol: str
    base: str
    quote: str
    kind: InstrumentKind
    tick: str
    lot: str
    contract_size: float = 1.0
    inverse: bool = False
    price_precision: int = 0  # decimals the venue may write prices with (can exceed the tick's)
    qty_precision: int = 0  # decimals of the venue's sizes, where a checksum needs them (Kraken)
    price_decimals: int = field(init=False)
    tick_units: int = field(init=False)

    def __post_init__(self) -> None:
        # orders placed before a tick-size change rest at prices finer than today's tick:
        # the unit must be fine enough for every price the venue can write
        decimals = max(significant_decimals(self.tick), self.price_precision)
        object.__setattr__(self, "price_decimals", decimals)
        object.__setattr__(self, "tick_units", max(1, to_units(self.tick, decimals)))

    @property
    def canonical(self) -> str:
        return f"{self.base}-{self.quote}-{self.kind.value.upper()}"

    def price_to_units(self, text: str) -> int:
        return to_units(text, self.price_decimals)

    def units_to_price(self, units: int) -> float:
        scale: int = 10**self.price_decimals
        return units / scale


@dataclass(slots=True)
class BookEvent:
    """A snapshot or delta for one book, as parsed from one venue message.

    Bid and ask prices are int64 price units (see module doc); sizes are float64 in base
    units, absolute (0 deletes the level): the venue's size x the instrument's
    ``contract_size``, divided by the price for inverse contracts, whose venue sizes count
    the quote currency (Deribit BTC-PERPETUAL: USD). The raw sizes of a :class:`RawBook`
    are the venue's; the book kernel and ``feeds.base.book_events`` convert them the same
    way. ``first_seq``/``last_seq``/``prev_seq`` are the
    venue's sequence ids (Binance U/u/pu; a snapshot has ``last_seq = lastUpdateId``);
    -1 where the venue sends none.
    """

    venue: Venue
    symbol: str
    kind: EventKind
    bid_px: IntArray
    bid_qty: FloatArray
    ask_px: IntArray
    ask_qty: FloatArray
    ts_event_ns: int
    ts_recv_ns: int
    first_seq: int = -1
    last_seq: int = -1
    prev_seq: int = -1
    depth_limit: int = 0  # snapshot: levels requested per side (0 = full book)


class RawBook(msgspec.Struct, gc=False):
    """Base of a book event whose level arrays are still the venue's raw JSON (hot path).

    The feed adapter's own msgspec type for a delta may derive from it, so the decoded
    message *is* the event (no second object per message); the others build a
    ``feeds.contract.BookMessage``. The members below are declared for the type checker
    only; each subclass provides them as fields, class constants or properties
    (Binance's delta holds ``E`` in ms and computes ``ts_event_ns``). ``bids``/``asks``
    are JSON arrays of level arrays (price at the adapter's ``px_index``, size at its
    ``qty_index``), as the venue wrote them: prices and sizes are the venue's decimal
    strings; what a size counts (base, contracts, quote currency) is the instrument's
    (see :class:`Instrument`).
    """

    if TYPE_CHECKING:  # declared for the type checker; each subclass provides them

        @property
        def symbol(self) -> str:
            """The venue's symbol of the book."""
            ...

        @property
        def kind(self) -> EventKind: ...

        @property
        def first_seq(self) -> int:
            """First sequence id covered (-1 where the venue sends none)."""
            ...

        @property
        def last_seq(self) -> int:
            """Last sequence id covered (a snapshot's id), -1 where the venue sends none."""
            ...

        @property
        def prev_seq(self) -> int:
            """The previous event's ``last_seq`` (SeqRule.PREVIOUS and CHAIN), else -1."""
            ...

        @property
        def bids(self) -> bytes | msgspec.Raw: ...

        @property
        def asks(self) -> bytes | msgspec.Raw: ...

        @property
        def ts_event_ns(self) -> int:
            """Venue time of the event, ns."""
            ...

        @property
        def limit(self) -> int:
            """Snapshot: levels per side it was cut at (0 = full book); deltas: 0."""
            ...

        @property
        def checksum(self) -> int:
            """The venue's checksum of the book after this event (when ``has_checksum``)."""
            ...

        @property
        def has_checksum(self) -> bool: ...


@dataclass(slots=True)
class ScannedFrames:
    """Many websocket frames scanned at once by a venue's batch scanner.

    ``table`` has one row per frame, in the layout of ``feeds.scan`` (status, symbol key,
    kind, sequence ids, venue time, checksum, and the byte ranges of the frame's bid and
    ask level arrays inside ``buf``). Rows the scanner did not vouch for go through the
    adapter's ``decode``.
    """

    buf: npt.NDArray[np.uint8]
    table: IntArray


@dataclass(slots=True)
class MarkPriceEvent:
    """Mark price, index price and funding of a perpetual (Binance ``markPriceUpdate``)."""

    venue: Venue
    symbol: str
    mark_price: float
    index_price: float
    funding_rate: float
    next_funding_ns: int
    ts_event_ns: int
    ts_recv_ns: int


@dataclass(slots=True)
class Ignored:
    """A message the adapter understood and has no use for (acks, other channels)."""

    reason: str


FeedEvent = BookEvent | MarkPriceEvent | Ignored
