"""A read goes through the venue's batch scanner from the scanner's ``min_frames`` frames
on, and frame by frame through ``decode`` below it: each venue breaks even at its own
count (Hyperliquid's 20-level snapshots at 2 frames, Binance's small diffs at about 12)."""

from __future__ import annotations

from typing import Any

import pytest

from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline

SCANNING = [v for v, a in ADAPTERS.items() if a.scanner is not None]


def test_every_scanning_venue_says_when_its_scan_pays() -> None:
    assert {v.value for v in SCANNING} >= {"binance", "okx", "kraken", "coinbase", "hyperliquid"}
    for venue in SCANNING:
        threshold = ADAPTERS[venue].scanner.min_frames  # type: ignore[union-attr]
        assert isinstance(threshold, int) and 1 <= threshold <= 64, venue


@pytest.mark.parametrize("venue", SCANNING, ids=lambda v: v.value)
def test_a_read_is_scanned_from_the_venues_threshold_on(
    venue: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = ADAPTERS[venue]
    threshold = adapter.scanner.min_frames  # type: ignore[union-attr]
    scans: list[int] = []
    decoded: list[Any] = []
    cls: Any = type(adapter)
    scan_frames, decode = cls.scan_frames, cls.decode

    def spy_scan(self: Any, frames: Any) -> Any:
        scans.append(len(frames))
        return scan_frames(self, frames)

    def spy_decode(self: Any, data: Any, recv_ns: int) -> Any:
        decoded.append(data)
        return decode(self, data, recv_ns)

    monkeypatch.setattr(cls, "scan_frames", spy_scan)
    monkeypatch.setattr(cls, "decode", spy_decode)
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    frames = [b'{"not":"a book"}'] * threshold
    pipeline.feed_frames(venue, frames[:-1], list(range(threshold - 1)))
    assert scans == [] and len(decoded) == threshold - 1
    decoded.clear()
    pipeline.feed_frames(venue, frames, list(range(threshold)))
    assert scans == [threshold]
    # what the scanner does not vouch for still goes through decode, in its place
    assert len(decoded) == threshold
