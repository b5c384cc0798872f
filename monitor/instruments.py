"""Instrument registry: venue symbol <-> canonical instrument, with tick, lot and contract size.

The live source is each venue's public metadata endpoint, parsed by its adapter
(``parse_instruments``); a cached copy per venue ships in ``config/instruments/`` (installed
as package data with ``monitor.config``) so tests and replays work offline, from any
directory.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from monitor.domain import Instrument, InstrumentKind, Venue
from monitor.settings import shipped_config_dir

CACHE_DIR = shipped_config_dir() / "instruments"


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
