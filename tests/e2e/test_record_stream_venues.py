"""``liqmon record`` of venues whose books come in-band, then ``liqmon replay`` of the file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from feeds.recording import RecordKind, iter_recording
from feeds.venues import ADAPTERS
from monitor.app import run_recorder
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import areplay
from tests.e2e.harness import book_matches, exchange, until, write_settings

pytestmark = pytest.mark.integration

CASES = {
    Venue.OKX: ("BTC-USDT", "BTC-USD-SWAP"),
    Venue.KRAKEN: ("BTC/USD", "ETH/USD"),
    Venue.DERIBIT: ("BTC-PERPETUAL", "ETH-PERPETUAL"),
    Venue.COINBASE: ("BTC-USD", "ETH-USD"),
}


@pytest.mark.parametrize("venue", list(CASES), ids=lambda v: v.value)
async def test_a_recorded_stream_venue_replays_to_the_exchange_books(
    tmp_path: Path, venue: Venue
) -> None:
    symbols = CASES[venue]
    books = {venue: symbols}
    out = tmp_path / "session.jsonl.gz"
    async with exchange(books) as sim:
        settings = write_settings(tmp_path, sim, books)
        stop = asyncio.Event()
        frames = 0

        def on_record(kind: RecordKind, url: str) -> None:
            nonlocal frames
            frames += kind == RecordKind.WS

        task = asyncio.ensure_future(
            run_recorder(
                settings,
                venue=venue,
                symbols=symbols,
                out_path=out,
                stop=stop,
                flush_interval_s=0.05,
                on_record=on_record,
            )
        )
        for _ in range(400):  # the market moves while the recorder runs
            sim.step(venue)
            await asyncio.sleep(0.005)
            if frames > 60:
                break
        # every frame the exchange wrote has been recorded (no sleep: wait for the count)
        await until(
            lambda: (
                all(c.queue.empty() for c in sim.connections)
                and frames >= sum(c.sent for c in sim.connections if c.venue == venue)
            ),
            timeout_s=10.0,
        )
        stop.set()
        await asyncio.wait_for(task, 10)
        kinds = {r.kind for r in iter_recording(out)}
        assert kinds == {RecordKind.WS, RecordKind.HTTP}  # frames and instrument metadata

        # the instrument metadata in the file is enough: start from an empty registry
        pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
        await areplay([out], pipeline, tick_ms=100)
        for symbol in symbols:
            info = pipeline.books[(venue, symbol)]
            assert pipeline.is_valid(info), symbol
            assert book_matches(pipeline, sim.book(venue, symbol), depth=10), symbol
        summaries = {b["symbol"]: b for b in pipeline.book_summaries(depth=0)}
        assert all(b["gaps"] == 0 and b["checksum_failed"] == 0 for b in summaries.values())
