"""The daemon against the local exchange: settings, a running daemon, book checks."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from feeds.contract import VenueAdapter
from feeds.sim.base import ExchangeSim, SimBook
from feeds.sim.exchange import add_books, all_protocols, settings_toml
from feeds.venues import ADAPTERS
from monitor.daemon import Daemon
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.sample import TickSample
from monitor.settings import Settings, load_settings

FAST_CONNECTION = {
    "connect_timeout_s": 2.0,
    "receive_timeout_s": 5.0,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "healthy_after_s": 60.0,
    "snapshot_timeout_s": 3.0,
    # the read coalescer stays on (the default), with a short delay: a test that steps the
    # market and then looks at the books must not find them a tenth of a second behind
    "coalesce_ms": 5.0,
}


def write_settings(
    tmp_path: Path,
    sim: ExchangeSim,
    symbols: Mapping[Venue, Sequence[str]],
    *,
    tick_ms: int = 20,
    **connection: float,
) -> Settings:
    options = FAST_CONNECTION | connection
    extra = "\n".join(
        [
            "[monitor]",
            f"tick_ms = {tick_ms}",
            "[connection]",
            *(f"{key} = {value}" for key, value in options.items()),
            "",
        ]
    )
    text = settings_toml(symbols, port=sim.port, extra=extra)
    path = tmp_path / "sim.toml"
    path.write_text(text)
    return load_settings([path], env={})


@contextlib.asynccontextmanager
async def exchange(
    symbols: Mapping[Venue, Sequence[str]], *, levels: int = 30, seed: int = 7
) -> AsyncIterator[ExchangeSim]:
    """A local exchange serving these venues' books (instruments from the cached copies)."""
    registry = InstrumentRegistry.load_cached(list(symbols))
    sim = ExchangeSim(all_protocols(list(symbols)), seed=seed)
    for venue, names in symbols.items():
        books = add_books(sim, registry, venue, names, levels=levels)
        assert len(books) == len(names), f"{venue}: cached instruments miss some of {names}"
    async with sim:
        yield sim


@dataclass
class Watch:
    """Every tick's rows, and per book the ticks at which it was invalid."""

    ticks: int = 0
    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    invalid_ticks: dict[tuple[str, str], int] = field(default_factory=dict)
    metrics_from_invalid: int = 0  # rows of invalid books that still carried metrics

    def __call__(self, sample: TickSample) -> None:
        self.ticks += 1
        for row in sample.records():
            key = (row["venue"], row["symbol"])
            self.rows[key] = row
            if not row["valid"]:
                self.invalid_ticks[key] = self.invalid_ticks.get(key, 0) + 1
                if row["depth"] is not None or row["mid"] is not None:
                    self.metrics_from_invalid += 1


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    rotate_after_s: float | None = None,
    adapters: Mapping[Venue, VenueAdapter] = ADAPTERS,
) -> AsyncIterator[tuple[Daemon, Watch]]:
    """``Daemon.run`` in a task for the duration of the block, with these venue adapters."""
    watch = Watch()
    async with aiohttp.ClientSession() as http:
        daemon = Daemon(
            settings,
            http,
            adapters,
            on_tick=watch,
            health_interval_s=3600.0,
            rotate_after_s=rotate_after_s,
        )
        task = asyncio.ensure_future(daemon.run())
        try:
            await until(lambda: daemon.pipeline is not None, timeout_s=10.0, task=task)
            yield daemon, watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(
    predicate: Callable[[], bool], *, timeout_s: float = 10.0, task: asyncio.Task[Any] | None = None
) -> None:
    """Poll ``predicate`` every 10 ms until it holds (fails the test after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            if task is not None and task.done():
                task.result()  # raises the daemon's error
                raise AssertionError("the daemon stopped")
            await asyncio.sleep(0.01)


def valid(daemon: Daemon, venue: Venue, symbol: str) -> bool:
    pipeline = daemon.pipeline
    assert pipeline is not None
    info = pipeline.books.get((venue, symbol))
    return info is not None and pipeline.is_valid(info) and not info.needs_snapshot


def all_valid(daemon: Daemon, books: Mapping[Venue, Sequence[str]]) -> bool:
    return all(valid(daemon, v, s) for v, names in books.items() for s in names)


def book_matches(pipeline: BookPipeline, sim_book: SimBook, depth: int = 20) -> bool:
    """The monitor's book equals the exchange's (top ``depth`` levels, prices exact, sizes
    converted to base units like the monitor does)."""
    info = pipeline.books[(sim_book.venue, sim_book.symbol)]
    pipeline.flush()
    inst = info.instrument
    levels = pipeline.store.levels(info.book, depth)
    scale = 10 ** (inst.price_decimals - sim_book.price_decimals)

    def side(px: Any, qty: Any, want: list[tuple[int, int]]) -> bool:
        if len(px) != len(want):
            return False
        for p, q, (wp, wq) in zip(px, qty, want, strict=True):
            if int(p) != wp * scale:
                return False
            venue_qty = wq / 10**sim_book.qty_decimals
            price = wp / 10**sim_book.price_decimals
            base = venue_qty * inst.contract_size / (price if inst.inverse else 1.0)
            if not math.isclose(float(q), base, rel_tol=1e-9):
                return False
        return True

    return side(levels.bid_px, levels.bid_qty, sim_book.top_bids(depth)) and side(
        levels.ask_px, levels.ask_qty, sim_book.top_asks(depth)
    )


def books_match(
    pipeline: BookPipeline,
    sim: ExchangeSim,
    books: Mapping[Venue, Sequence[str]],
    depth: int = 10,
) -> bool:
    """Every one of ``books`` equals the exchange's (:func:`book_matches`)."""
    return all(
        book_matches(pipeline, sim.book(v, s), depth) for v, names in books.items() for s in names
    )


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a task (the exchange's market) and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
