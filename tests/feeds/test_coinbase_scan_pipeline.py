"""Coinbase frames through the pipeline's scanned path (batches the scanner reads) and its
decode path (one frame per call) leave every book with the same levels, states and counters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from feeds.coinbase import ADAPTER
from monitor.domain import RawBook, Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from tests.feeds.scan_check import scanned
from tests.feeds.test_coinbase_scan import sim_frames


def merged(frames: list[bytes]) -> list[bytes]:
    """The frames with, every 97 frames, two updates of different products merged into one
    frame of two events (decode returns a list: the scanner hands it over, and the
    pipeline must decode it in its place between the scanned frames)."""
    out: list[bytes] = []
    k = 0
    while k < len(frames):
        a = json.loads(frames[k])
        b = json.loads(frames[k + 1]) if k + 1 < len(frames) else None
        if (
            k % 97 == 50
            and b is not None
            and a["channel"] == b["channel"] == "l2_data"
            and a["events"][0]["product_id"] != b["events"][0]["product_id"]
        ):
            a["events"] += b["events"]
            out.append(json.dumps(a, separators=(",", ":")).encode())
            k += 2
            continue
        out.append(frames[k])
        k += 1
    return out


def pipeline(symbols: list[str]) -> BookPipeline:
    cached = InstrumentRegistry.load_cached([Venue.COINBASE])
    registry = InstrumentRegistry([i for i in cached if i.symbol in set(symbols)])
    return BookPipeline(registry, {Venue.COINBASE: ADAPTER})


def state(p: BookPipeline) -> tuple[list[dict[str, Any]], dict[str, int]]:
    return p.book_summaries(depth=10_000), dict(p.counters.messages)


@pytest.mark.parametrize("batch", [ADAPTER.min_frames, 64, 1000])
def test_scanned_and_decoded_paths_leave_the_same_books(batch: int) -> None:
    raw, symbols = sim_frames(600)
    frames = merged(raw)
    recv = [1_700_000_000_000_000_000 + 1000 * k for k in range(len(frames))]
    scanned_path = pipeline(symbols)
    for k in range(0, len(frames), batch):
        chunk = frames[k : k + batch]
        scanned_path.feed_frames(Venue.COINBASE, chunk, recv[k : k + batch])
    decoded_path = pipeline(symbols)
    for data, ns in zip(frames, recv, strict=True):
        decoded_path.feed_frames(Venue.COINBASE, [data], [ns])
    books, counters = state(scanned_path)
    assert (books, counters) == state(decoded_path)
    assert sorted(b["symbol"] for b in books) == sorted(symbols)
    assert all(b["valid"] and b["state"] == "live" for b in books), books
    assert sum(b["messages"] for b in books) > 1000
    # the scanner reads every book frame of such batches
    rows = scanned(ADAPTER.scan_frames(raw[:batch]))
    assert [r.is_book for r in rows] == [
        isinstance(ADAPTER.decode(f, 0), RawBook) for f in raw[:batch]
    ]
    assert any(len(json.loads(f)["events"]) == 2 for f in frames if f.startswith(b'{"channel":"l2'))
