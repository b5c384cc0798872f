"""One scenario: its books' instruments (as the venues describe them), paths, and book
generation in time order, shared by the recording writer and the live local exchange."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feeds.sim.base import SimBook
from feeds.sim.binance import BinanceProtocol
from feeds.sim.coinbase import CoinbaseProtocol
from feeds.sim.okx import OkxProtocol
from feeds.sim.scenario import spec
from feeds.sim.scenario.books import BookGenerator, Chunk
from feeds.sim.scenario.model import Paths, build_paths
from feeds.sim.scenario.spec import BookSpec
from feeds.venues import ADAPTERS
from monitor.domain import Instrument, InstrumentKind, Venue, significant_decimals, to_units

# where each venue's metadata lives (path below the venue's REST root)
METADATA_PATHS: dict[Venue, str] = {
    Venue.BINANCE: "/api/v3/exchangeInfo",
    Venue.BINANCE_FUTURES: "/fapi/v1/exchangeInfo",
    Venue.COINBASE: "/api/v3/brokerage/market/products",
    Venue.OKX: "/api/v5/public/instruments?instType=SPOT",
}


def _protocol(venue: Venue) -> Any:
    if venue in (Venue.BINANCE, Venue.BINANCE_FUTURES):
        return BinanceProtocol(venue)
    if venue == Venue.COINBASE:
        return CoinbaseProtocol()
    if venue == Venue.OKX:
        return OkxProtocol()
    raise ValueError(f"the scenario does not simulate {venue.value}")


def sim_book(b: BookSpec, mid: float) -> SimBook:
    """An empty :class:`SimBook` for a scenario book (its instrument in ``extra``)."""
    decimals = significant_decimals(b.tick)
    qty_decimals = significant_decimals(b.lot)
    instrument = Instrument(
        b.venue, b.symbol, b.base, b.quote, b.kind, b.tick, b.lot, price_precision=decimals
    )
    book = SimBook(
        b.venue,
        b.symbol,
        price_decimals=decimals,
        qty_decimals=qty_decimals,
        tick_units=to_units(b.tick, decimals),
        derivative=b.kind != InstrumentKind.SPOT,
    )
    book.extra["instrument"] = instrument
    book.extra["base"] = b.base
    book.extra["quote"] = b.quote
    book.mark_px = round(mid * 10**decimals)
    return book


@dataclass
class _Stand:
    """What a protocol's metadata answer reads of the exchange: its books."""

    books: dict[tuple[Venue, str], SimBook] = field(default_factory=dict)


def metadata_answers(books: list[BookSpec], mids: list[float]) -> dict[Venue, tuple[str, str]]:
    """Each venue's instrument metadata answer for the scenario's books: (path, text)."""
    stand = _Stand()
    for b, mid in zip(books, mids, strict=True):
        stand.books[(b.venue, b.symbol)] = sim_book(b, mid)
    out = {}
    for venue in sorted({b.venue for b in books}, key=lambda v: v.value):
        path = METADATA_PATHS[venue]
        route, _, query = path.partition("?")
        from feeds.sim.base import RestRequest  # noqa: PLC0415

        params = dict(p.split("=", 1) for p in query.split("&") if p)
        answer = _protocol(venue).rest(stand, RestRequest(venue, "GET", route, params, ""))
        assert answer is not None and answer[0] == 200, (venue, answer)
        out[venue] = (path, answer[1])
    return out


class Scenario:
    """A scenario's books, instruments and paths; :meth:`chunks` generates the books."""

    def __init__(
        self,
        kind: str = "collapse",
        seed: int = 1,
        *,
        hours: float = 3.0,
        step_ms: int = 500,
        day: int = 0,
        books: list[BookSpec] | None = None,
        timeline: float = 1.0,
        swap_v1_v4: bool = False,
    ) -> None:
        if kind not in ("collapse", "calm"):
            raise ValueError(f"unknown scenario kind {kind!r} (collapse or calm)")
        self.kind = kind
        self.seed = seed
        self.hours = hours
        self.step_ms = step_ms
        self.day = day
        self.books = books if books is not None else spec.books_for()
        self.paths: Paths = build_paths(
            kind,
            seed,
            self.books,
            hours=hours,
            step_ms=step_ms,
            day=day,
            timeline=timeline,
            swap_v1_v4=swap_v1_v4,
        )
        mids = [float(p.mid[0]) for p in self.paths.books]
        self.metadata = metadata_answers(self.books, mids)
        # the instruments as the monitor will read them (its own adapters parse the answers)
        self.instruments: list[Instrument] = []
        for b in self.books:
            path, text = self.metadata[b.venue]
            parsed = {i.symbol: i for i in ADAPTERS[b.venue].parse_instruments(path, text)}
            self.instruments.append(parsed[b.symbol])
        self.generators = [
            BookGenerator(p, inst, seed, step_ms / 1000.0)
            for p, inst in zip(self.paths.books, self.instruments, strict=True)
        ]

    @property
    def n_steps(self) -> int:
        return self.paths.n

    def step_ns(self, k: int | np.ndarray) -> Any:
        return self.paths.start_ns + np.asarray(k, dtype=np.int64) * self.paths.step_ns

    def chunks(
        self, snapshot_steps: dict[int, set[int]], chunk_steps: int = 240
    ) -> Iterator[tuple[int, int, list[list[Chunk]]]]:
        """Steps in order, ``chunk_steps`` at a time: (k0, k1, per book its chunks)."""
        n = self.paths.n
        for k0 in range(0, n, chunk_steps):
            k1 = min(n, k0 + chunk_steps)
            yield (
                k0,
                k1,
                [
                    g.chunks(k0, k1, snapshot_steps.get(i, set()))
                    for i, g in enumerate(self.generators)
                ],
            )
