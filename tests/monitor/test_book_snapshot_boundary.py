"""A REST snapshot that meets the buffered deltas exactly is used, not refetched.

Binance spot: a snapshot whose ``lastUpdateId + 1`` equals the first buffered delta's ``U``
leaves nothing between them. Binance USD-M: a snapshot whose ``lastUpdateId`` equals the
first buffered delta's ``pu`` was taken between two events. liqmon called both stale and
asked for another snapshot; a replay never gets one, so the book stayed empty.

The frames are the real recordings' with one change: the symbol's REST snapshot is taken
at a later id. Its levels are the book the recording itself builds at that id (a pipeline
fed the recording up to there), its ``lastUpdateId`` that delta's ``u``; the deltas up to
it are left out, so the first one buffered starts right after the snapshot.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.venues import ADAPTERS
from monitor.book.layout import E_STATUS, R_GAP, S_LAST_ID
from monitor.book.store import BookStore, EventBatch, snapshot_predates
from monitor.domain import EventKind, SeqRule, Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.conftest import SPOT_RECORDING, USDM_RECORDING

Record = dict[str, Any]


def records(path: Path) -> list[Record]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def depth_update(rec: Record, symbol: str) -> dict[str, Any] | None:
    """The depthUpdate event of ``symbol`` a websocket record carries, if it is one."""
    if rec["kind"] != "ws" or '"depthUpdate"' not in rec["data"]:
        return None
    event: dict[str, Any] = json.loads(rec["data"])["data"]
    return event if event["s"] == symbol else None


def is_snapshot_of(rec: Record, symbol: str) -> bool:
    return rec["kind"] == "http" and "/depth?" in rec["url"] and f"symbol={symbol}&" in rec["url"]


def feed(pipeline: BookPipeline, rec: Record) -> None:
    pipeline.on_message(
        Venue(rec["venue"]), rec["kind"], rec["url"], rec["data"], int(rec["ts"] * 1e9)
    )


def book_state(pipeline: BookPipeline, venue: Venue, symbol: str) -> tuple[list[Any], ...]:
    levels = pipeline.store.levels(pipeline.books[(venue, symbol)].book)
    return (
        levels.bid_px.tolist(),
        levels.bid_qty.tolist(),
        levels.ask_px.tolist(),
        levels.ask_qty.tolist(),
    )


class Boundary:
    """The recording replayed with ``symbol``'s snapshot taken at its ``at``-th delta after
    the real one, and handed over once ``buffered`` later deltas wait for it."""

    def __init__(
        self, path: Path, venue: Venue, symbol: str, at: int, buffered: int, shift: int = 0
    ) -> None:
        recs = records(path)
        real = next(i for i, r in enumerate(recs) if is_snapshot_of(r, symbol))
        every = [i for i, r in enumerate(recs) if depth_update(r, symbol)]
        deltas = [i for i in every if i > real]
        cut, handover = deltas[at], deltas[at + buffered]
        # the symbol's real snapshot and every delta the new snapshot already holds
        left_out = {real} | {i for i in every if i <= cut}
        source = BookPipeline(InstrumentRegistry(), ADAPTERS)
        for rec in recs[: cut + 1]:
            feed(source, rec)
        info = source.books[(venue, symbol)]
        assert source.is_valid(info)
        self.last_update_id = int(source.store.istate[info.book, S_LAST_ID]) + shift
        bids, asks = source.store.wire_levels(info.book, source.store.capacity)
        snapshot = dict(recs[real], ts=recs[handover]["ts"])
        snapshot["data"] = json.dumps(
            {"lastUpdateId": self.last_update_id, "bids": bids, "asks": asks}
        )
        first = depth_update(recs[deltas[at + 1]], symbol)
        assert first is not None
        self.first_buffered = first

        self.pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
        self.requested_after_snapshot: list[tuple[Venue, str]] = []
        for i, rec in enumerate(recs):
            if i in left_out:
                continue
            feed(self.pipeline, rec)
            if i == handover:
                feed(self.pipeline, snapshot)
                self.valid_after_snapshot = self.pipeline.is_valid(
                    self.pipeline.books[(venue, symbol)]
                )
                self.requested_after_snapshot = self.pipeline.take_snapshot_requests()
        self.summary = next(
            s for s in self.pipeline.book_summaries(depth=1) if s["symbol"] == symbol
        )
        plain = BookPipeline(InstrumentRegistry(), ADAPTERS)
        for rec in recs:
            feed(plain, rec)
        self.expected = book_state(plain, venue, symbol)
        self.got = book_state(self.pipeline, venue, symbol)


def test_spot_snapshot_with_last_update_id_plus_one_equal_to_first_u_is_used() -> None:
    run = Boundary(SPOT_RECORDING, Venue.BINANCE, "NKNUSDT", at=3, buffered=4)
    assert run.first_buffered["U"] == run.last_update_id + 1  # the boundary itself
    assert run.valid_after_snapshot
    assert (Venue.BINANCE, "NKNUSDT") not in run.requested_after_snapshot
    assert run.summary["stale_snapshots"] == 0
    assert run.summary["gaps"] == 0
    assert run.summary["state"] == "live"
    assert run.got == run.expected  # every later delta applied on top


def test_spot_snapshot_one_id_short_of_the_first_u_is_stale_and_refetched() -> None:
    run = Boundary(SPOT_RECORDING, Venue.BINANCE, "NKNUSDT", at=3, buffered=4, shift=-1)
    assert run.first_buffered["U"] == run.last_update_id + 2  # update U - 1 is missing
    assert not run.valid_after_snapshot
    assert (Venue.BINANCE, "NKNUSDT") in run.requested_after_snapshot
    assert run.summary["stale_snapshots"] == 1


def test_usdm_snapshot_equal_to_the_first_pu_is_used() -> None:
    run = Boundary(USDM_RECORDING, Venue.BINANCE_FUTURES, "SUSHIUSDT", at=3, buffered=4)
    first = run.first_buffered
    assert first["pu"] == run.last_update_id < first["U"]  # between two events
    assert run.valid_after_snapshot
    assert (Venue.BINANCE_FUTURES, "SUSHIUSDT") not in run.requested_after_snapshot
    assert run.summary["stale_snapshots"] == 0
    assert run.summary["gaps"] == 0
    assert run.got == run.expected


def test_usdm_snapshot_before_the_first_pu_is_stale_and_refetched() -> None:
    run = Boundary(USDM_RECORDING, Venue.BINANCE_FUTURES, "SUSHIUSDT", at=3, buffered=4, shift=-1)
    assert run.last_update_id < run.first_buffered["pu"]
    assert not run.valid_after_snapshot
    assert (Venue.BINANCE_FUTURES, "SUSHIUSDT") in run.requested_after_snapshot
    assert run.summary["stale_snapshots"] == 1


# --- the stale test agrees with the kernel's sync rule --------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    rule=st.sampled_from([SeqRule.CONTIGUOUS, SeqRule.PREVIOUS]),
    last_update_id=st.integers(10, 10**12),
    first_offset=st.integers(-4, 6),
    length=st.integers(0, 5),
    prev_back=st.integers(1, 6),
)
def test_a_snapshot_is_stale_exactly_when_the_kernel_finds_a_gap_at_the_first_delta(
    rule: SeqRule, last_update_id: int, first_offset: int, length: int, prev_back: int
) -> None:
    """The pipeline refetches a snapshot (``snapshot_predates``) exactly when the kernel,
    given that snapshot and then the first buffered delta, would throw the book away."""
    first = last_update_id + first_offset
    last = first + length
    prev = first - prev_back if rule == SeqRule.PREVIOUS else -1
    store = BookStore(max_books=1, capacity=4)
    book = store.add_book(rule=rule, price_decimals=0)
    batch = EventBatch()
    batch.add(
        book, EventKind.SNAPSHOT, -1, last_update_id, -1, b'[["1","1"]]', b'[["3","1"]]', 0, 0
    )
    batch.add(book, EventKind.DELTA, first, last, prev, b"[]", b"[]", 0, 0)
    store.apply(batch)
    gap = int(batch.meta[1, E_STATUS]) == R_GAP
    assert snapshot_predates(rule, last_update_id, first, prev) == gap
