"""Instrument registry: venue symbol <-> canonical instrument, with tick, lot and contract size.

The live source is each venue's public metadata endpoint (Binance ``exchangeInfo``); a
cached copy per venue ships in ``config/instruments/`` so tests and replays work offline.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from monitor.domain import Instrument, InstrumentKind, Venue
from monitor.errors import ParseError

CACHE_DIR = Path(__file__).resolve().parent.parent / "config" / "instruments"


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


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_Symbol]


class _Cached(msgspec.Struct, array_like=True):
    symbol: str
    base: str
    quote: str
    kind: InstrumentKind
    tick: str
    lot: str
    contract_size: float = 1.0
    inverse: bool = False
    price_precision: int = 0
    qty_precision: int = 0


_exchange_info = msgspec.json.Decoder(_ExchangeInfo)


def _normalise_decimal(text: str) -> str:
    """'0.01000000' -> '0.01' (keeps the value, drops the venue's padding)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class InstrumentRegistry:
    """Lookup of instruments by (venue, venue symbol) and by canonical name."""

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._by_symbol: dict[tuple[Venue, str], Instrument] = {}
        for inst in instruments:
            self.add(inst)

    def add(self, instrument: Instrument) -> None:
        self._by_symbol[(instrument.venue, instrument.symbol)] = instrument

    def get(self, venue: Venue, symbol: str) -> Instrument | None:
        return self._by_symbol.get((venue, symbol))

    def venue_instruments(self, venue: Venue) -> list[Instrument]:
        return [inst for (v, _), inst in self._by_symbol.items() if v == venue]

    def merge(self, other: InstrumentRegistry) -> InstrumentRegistry:
        """Instruments of both; ``other`` wins where both hold a symbol."""
        merged = InstrumentRegistry(self)
        for inst in other:
            merged.add(inst)
        return merged

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_symbol.values())

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __contains__(self, key: object) -> bool:
        return key in self._by_symbol

    @classmethod
    def from_exchange_info(cls, venue: Venue, text: str | bytes) -> InstrumentRegistry:
        """Parse a Binance spot or USD-M ``exchangeInfo`` response."""
        try:
            info = _exchange_info.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseError(
                venue.value, text if isinstance(text, str) else bytes(text), str(exc)
            ) from exc
        registry = cls()
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
            registry.add(
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
        return registry

    def to_cache(self, venue: Venue, path: Path) -> None:
        rows = [
            _Cached(
                i.symbol,
                i.base,
                i.quote,
                i.kind,
                i.tick,
                i.lot,
                i.contract_size,
                i.inverse,
                i.price_precision,
                i.qty_precision,
            )
            for i in sorted(self.venue_instruments(venue), key=lambda i: i.symbol)
        ]
        data = msgspec.json.encode(rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)

    @classmethod
    def from_cache(cls, venue: Venue, path: Path) -> InstrumentRegistry:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        rows = msgspec.json.decode(data, type=list[_Cached])
        return cls(
            Instrument(
                venue,
                r.symbol,
                r.base,
                r.quote,
                r.kind,
                r.tick,
                r.lot,
                r.contract_size,
                r.inverse,
                r.price_precision,
                r.qty_precision,
            )
            for r in rows
        )

    @classmethod
    def load_cached(
        cls, venues: Iterable[Venue], cache_dir: Path = CACHE_DIR
    ) -> InstrumentRegistry:
        """The offline copy shipped with liqmon (venues without a cache file are skipped)."""
        registry = cls()
        for venue in venues:
            path = cache_dir / f"{venue.value}.json.gz"
            if path.exists():
                registry = registry.merge(cls.from_cache(venue, path))
        return registry


def cached_venues(cache_dir: Path = CACHE_DIR) -> list[Venue]:
    return [Venue(p.name.removesuffix(".json.gz")) for p in sorted(cache_dir.glob("*.json.gz"))]


def dump_json(registry: InstrumentRegistry) -> str:
    """Human-readable listing (for ``liqmon instruments``)."""
    return json.dumps(
        [
            {
                "venue": i.venue.value,
                "symbol": i.symbol,
                "instrument": i.canonical,
                "tick": i.tick,
                "lot": i.lot,
            }
            for i in registry
        ],
        indent=1,
    )
