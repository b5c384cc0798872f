"""Bad input never kills the pipeline: each case has a logged, counted, explicit outcome."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.conftest import SPOT_RECORDING

SNAPSHOT_URL = "https://api.binance.com/api/v3/depth?symbol={}&limit=1000"


def records() -> list[dict[str, Any]]:
    with gzip.open(SPOT_RECORDING, "rt") as f:
        return [json.loads(line) for line in f]


def feed_all(pipeline: BookPipeline, recs: list[dict[str, Any]]) -> None:
    for rec in recs:
        pipeline.on_message(
            Venue(rec["venue"]), rec["kind"], rec["url"], rec["data"], int(rec["ts"] * 1e9)
        )


def summary(pipeline: BookPipeline, symbol: str) -> dict[str, Any]:
    return next(s for s in pipeline.book_summaries(depth=5) if s["symbol"] == symbol)


@pytest.fixture
def synced() -> BookPipeline:
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    feed_all(pipeline, records())
    assert all(s["valid"] for s in pipeline.book_summaries())
    return pipeline


def test_malformed_frames_are_counted_and_logged_and_books_carry_on(synced: BookPipeline) -> None:
    before = {s["symbol"]: (s["bids"], s["asks"]) for s in synced.book_summaries()}
    with capture_logs() as logs:
        for garbage in ["{{{", "", "\x00\x01", '{"stream":"a","data":{"e":"depthUpdate"}}', "[1,2"]:
            synced.on_message(Venue.BINANCE, "ws", "wss://x", garbage, 1)
    assert synced.counters.messages["binance.parse_error"] == 5
    assert sum(1 for e in logs if e["event"] == "feed.parse_error") == 5
    after = {s["symbol"]: (s["bids"], s["asks"]) for s in synced.book_summaries()}
    assert after == before
    assert all(s["valid"] for s in synced.book_summaries())


def test_unknown_symbol_is_counted_every_time_and_logged_once(synced: BookPipeline) -> None:
    frame = next(r for r in records() if '"s":"NKNUSDT"' in r["data"])["data"].replace(
        "NKNUSDT", "NOSUCHCOIN"
    )
    with capture_logs() as logs:
        for _ in range(3):
            synced.on_message(Venue.BINANCE, "ws", "wss://x", frame, 1)
    assert synced.counters.messages["binance.unknown_symbol"] == 3
    assert [e["symbol"] for e in logs if e["event"] == "book.unknown_symbol"] == ["NOSUCHCOIN"]
    assert len(synced.book_summaries()) == 4  # no book was made up for it


def test_snapshot_with_crossed_levels_is_rejected_and_a_new_snapshot_requested() -> None:
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    recs = records()
    pipeline.on_message(Venue.BINANCE, "http", recs[0]["url"], recs[0]["data"], 1)  # exchangeInfo
    snap = json.loads(recs[2]["data"])  # the NKNUSDT snapshot
    snap["bids"].insert(0, ["0.36000000", "5.00000000"])  # above the best ask 0.3526
    with capture_logs() as logs:
        pipeline.on_message(
            Venue.BINANCE, "http", SNAPSHOT_URL.format("NKNUSDT"), json.dumps(snap), 2
        )
    s = summary(pipeline, "NKNUSDT")
    assert not s["valid"] and s["state"] == "empty" and s["rejected"] == 1
    assert pipeline.counters.messages["binance.crossed"] == 1
    assert any(e["event"] == "book.rejected" and e["reason"] == "crossed" for e in logs)
    assert (Venue.BINANCE, "NKNUSDT") in pipeline.take_snapshot_requests()
    # the real snapshot then restores it
    pipeline.on_message(Venue.BINANCE, "http", recs[2]["url"], recs[2]["data"], 3)
    assert summary(pipeline, "NKNUSDT")["valid"]


def test_empty_book_snapshot_is_held_as_invalid_with_no_metrics() -> None:
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    recs = records()
    pipeline.on_message(Venue.BINANCE, "http", recs[0]["url"], recs[0]["data"], 1)
    empty = json.dumps({"lastUpdateId": 499869752, "bids": [], "asks": []})
    with capture_logs() as logs:
        pipeline.on_message(Venue.BINANCE, "http", SNAPSHOT_URL.format("NKNUSDT"), empty, 2)
    s = summary(pipeline, "NKNUSDT")
    assert not s["valid"] and s["state"] == "syncing" and s["bids"] == [] and s["asks"] == []
    assert pipeline.counters.messages["binance.empty_book"] == 1
    assert any(e["event"] == "book.empty_side" for e in logs)
    (row,) = pipeline.tick(3).records()
    assert row["valid"] is False and row["mid"] is None and row["depth"] is None
    assert row["levels"] == [0, 0]


def test_malformed_levels_inside_a_delta_throw_the_book_away_and_resync(
    synced: BookPipeline,
) -> None:
    last_id = summary(synced, "NKNUSDT")["last_update_id"]
    bad = json.dumps(
        {
            "e": "depthUpdate",
            "E": 1,
            "s": "NKNUSDT",
            "U": last_id + 1,
            "u": last_id + 1,
            "b": [["abc", "1"]],
            "a": [],
        }
    )
    with capture_logs() as logs:
        synced.on_message(Venue.BINANCE, "ws", "wss://x", bad, 5)
    s = summary(synced, "NKNUSDT")
    assert not s["valid"] and s["resyncs"] == 1 and s["rejected"] == 1
    assert synced.counters.messages["binance.parse_error"] == 1
    assert any(e["event"] == "book.rejected" and e["reason"] == "parse_error" for e in logs)
    assert (Venue.BINANCE, "NKNUSDT") in synced.take_snapshot_requests()
    assert all(x["valid"] for x in synced.book_summaries() if x["symbol"] != "NKNUSDT")


def test_venue_error_reply_is_logged_and_counted(synced: BookPipeline) -> None:
    with capture_logs() as logs:
        synced.on_message(Venue.BINANCE, "ws", "wss://x", '{"code":3,"msg":"Invalid JSON"}', 1)
    assert synced.counters.messages["binance.venue_message"] == 1
    assert any(e["event"] == "feed.venue_message" and e["code"] == "3" for e in logs)


def test_stale_snapshot_older_than_buffered_deltas_is_refused_and_refetched() -> None:
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    recs = records()
    pipeline.on_message(Venue.BINANCE, "http", recs[0]["url"], recs[0]["data"], 1)
    later = [
        r
        for r in recs
        if r["kind"] == "ws" and '"s":"NKNUSDT"' in r["data"] and "depthUpdate" in r["data"]
    ][5:]
    for r in later:
        pipeline.on_message(Venue.BINANCE, "ws", r["url"], r["data"], 2)
    pipeline.take_snapshot_requests()
    pipeline.on_message(
        Venue.BINANCE, "http", recs[2]["url"], recs[2]["data"], 3
    )  # older than `later`
    s = summary(pipeline, "NKNUSDT")
    assert not s["valid"] and s["stale_snapshots"] == 1 and s["pending"] == len(later)
    assert (Venue.BINANCE, "NKNUSDT") in pipeline.take_snapshot_requests()


def test_reconnect_invalidates_every_book_of_the_venue(synced: BookPipeline) -> None:
    synced.invalidate_venue(Venue.BINANCE)
    assert not any(s["valid"] for s in synced.book_summaries())
    assert len(synced.take_snapshot_requests()) == 4
