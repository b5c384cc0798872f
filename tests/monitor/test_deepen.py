"""A book synced from a shallow snapshot is deepened by a second sync, never going invalid.

The real recordings, with the symbol's REST snapshot cut to 100 levels (as a start snapshot
is): the book is valid from it, but knows only 100 levels a side. A deeper snapshot is then
handed to :meth:`BookPipeline.deepen_snapshot` while the deltas flow: its levels are the
book the recording itself builds at a later update (a pipeline fed the real, full snapshot
and the deltas up to there), its ``lastUpdateId`` that update's ``u``. The deepened book
must then equal, at every level, the book the plain replay of the recording builds, and
the book must be valid at every message from its first snapshot on. A deeper snapshot
older than the deltas buffered for it is refused (the book carries on at its depth), and
one newer than the book waits for the deltas to catch up before it is taken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from feeds.venues import ADAPTERS
from monitor.book.layout import S_LAST_ID, S_N_ASK, S_N_BID
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.conftest import SPOT_RECORDING, USDM_RECORDING
from tests.monitor.test_book_snapshot_boundary import (
    Record,
    book_state,
    depth_update,
    feed,
    is_snapshot_of,
    records,
)

START_LIMIT = 100
CASES = [
    pytest.param(SPOT_RECORDING, Venue.BINANCE, "NKNUSDT", id="spot"),
    pytest.param(USDM_RECORDING, Venue.BINANCE_FUTURES, "SUSHIUSDT", id="usdm"),
]


def shallow(rec: Record) -> Record:
    """The REST snapshot record cut to START_LIMIT levels, asked for with that limit."""
    data = json.loads(rec["data"])
    data["bids"] = data["bids"][:START_LIMIT]
    data["asks"] = data["asks"][:START_LIMIT]
    url = rec["url"].replace("limit=1000", f"limit={START_LIMIT}")
    return dict(rec, url=url, data=json.dumps(data))


class Deepen:
    """The recording replayed from a shallow snapshot; ``begin_deepen`` at the ``begin``-th
    delta after the snapshot, the deeper snapshot taken at the ``at``-th and handed over at
    the ``handover``-th."""

    def __init__(
        self, path: Path, venue: Venue, symbol: str, begin: int, at: int, handover: int
    ) -> None:
        recs = records(path)
        real = next(i for i, r in enumerate(recs) if is_snapshot_of(r, symbol))
        deltas = [i for i, r in enumerate(recs) if depth_update(r, symbol) and i > real]
        source = BookPipeline(InstrumentRegistry(), ADAPTERS)
        for rec in recs[: deltas[at] + 1]:
            feed(source, rec)
        info = source.books[(venue, symbol)]
        bids, asks = source.store.wire_levels(info.book, source.store.capacity)
        last_update_id = int(source.store.istate[info.book, S_LAST_ID])
        deep_url = recs[real]["url"]
        deep_text = json.dumps({"lastUpdateId": last_update_id, "bids": bids, "asks": asks})

        self.pipeline = pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
        self.invalid_after_sync = 0  # messages after which the synced book was not valid
        self.levels_before: tuple[int, int] = (0, 0)
        self.accepted: bool | None = None
        self.deepening_after_handover = False
        synced = False
        for i, rec in enumerate(recs):
            feed(pipeline, shallow(rec) if i == real else rec)
            book = pipeline.books.get((venue, symbol))
            if i == deltas[begin]:
                assert book is not None
                self.levels_before = self.levels(book.book)
                assert pipeline.begin_deepen(venue, symbol)
                assert not pipeline.begin_deepen(venue, symbol)  # one at a time
            if i == deltas[handover]:
                self.accepted = pipeline.deepen_snapshot(
                    venue, symbol, deep_url, deep_text, int(rec["ts"] * 1e9)
                )
                self.deepening_after_handover = pipeline.deepening(venue, symbol)
            if book is not None and i >= real:
                synced = synced or pipeline.is_valid(book)
                if synced and not pipeline.is_valid(book):
                    self.invalid_after_sync += 1
        self.info = pipeline.books[(venue, symbol)]
        self.summary = next(s for s in pipeline.book_summaries(depth=1) if s["symbol"] == symbol)
        plain = BookPipeline(InstrumentRegistry(), ADAPTERS)
        for rec in recs:
            feed(plain, rec)
        self.expected = book_state(plain, venue, symbol)
        self.got = book_state(pipeline, venue, symbol)

    def levels(self, book: int) -> tuple[int, int]:
        st = self.pipeline.store.istate[book]
        return int(st[S_N_BID]), int(st[S_N_ASK])


@pytest.mark.parametrize(("path", "venue", "symbol"), CASES)
def test_a_deeper_snapshot_replaces_the_shallow_book_exactly(
    path: Path, venue: Venue, symbol: str
) -> None:
    run = Deepen(path, venue, symbol, begin=5, at=8, handover=14)
    assert max(run.levels_before) <= START_LIMIT + 20  # shallow before
    assert run.accepted and not run.deepening_after_handover  # caught up at once
    assert run.info.limit == 1000 and run.info.deepens == 1
    assert run.invalid_after_sync == 0
    assert run.summary["resyncs"] == 0 and run.summary["gaps"] == 0
    assert run.got == run.expected  # every level, as the full snapshot's replay has it
    assert max(run.levels(run.info.book)) > START_LIMIT + 100


@pytest.mark.parametrize(("path", "venue", "symbol"), CASES)
def test_a_deeper_snapshot_newer_than_the_book_waits_for_the_deltas(
    path: Path, venue: Venue, symbol: str
) -> None:
    run = Deepen(path, venue, symbol, begin=5, at=12, handover=8)
    assert run.accepted and run.deepening_after_handover  # ahead of the book: it waits
    assert run.info.limit == 1000 and run.info.deepens == 1  # taken once caught up
    assert run.invalid_after_sync == 0
    assert run.got == run.expected


@pytest.mark.parametrize(("path", "venue", "symbol"), CASES)
def test_a_deeper_snapshot_older_than_its_buffered_deltas_is_refused(
    path: Path, venue: Venue, symbol: str
) -> None:
    run = Deepen(path, venue, symbol, begin=5, at=2, handover=9)
    assert run.accepted is False and not run.deepening_after_handover
    assert run.info.limit == START_LIMIT and run.info.deepens == 0
    assert run.invalid_after_sync == 0
    assert run.summary["resyncs"] == 0
    # the shallow book is still exact where it knows the book: its top levels
    top = 20
    assert [side[:top] for side in run.got] == [side[:top] for side in run.expected]


def test_only_a_valid_book_of_a_rest_venue_is_deepened() -> None:
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    recs: list[dict[str, Any]] = records(SPOT_RECORDING)
    first = next(r for r in recs if r["kind"] == "ws" and '"depthUpdate"' in r["data"])
    feed(pipeline, first)  # the book exists, waiting for its snapshot
    symbol = json.loads(first["data"])["data"]["s"]
    assert not pipeline.begin_deepen(Venue.BINANCE, symbol)
    assert not pipeline.begin_deepen(Venue.BINANCE, "NOSUCHSYMBOL")
    assert not pipeline.deepen_snapshot(Venue.BINANCE, symbol, "u", "{}", 0)
