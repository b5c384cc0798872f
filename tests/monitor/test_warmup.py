"""warm_up covers every signature the live tick calls: the daemon's first tick must not load
(warm numba cache) or compile (cold cache) a kernel inside the event loop, where it holds
back every frame that arrives meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from feeds import binance_scan, coinbase_scan, hyperliquid_scan, kraken_scan, okx_scan
from feeds.coinbase import ADAPTER as COINBASE_ADAPTER
from feeds.venues import ADAPTERS
from monitor.analytics import kernels as analytics_kernels
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import replay
from monitor.sample import TickSample
from monitor.sinks import CallbackSink
from monitor.warmup import _ENTRY_KERNELS, warm_up

COINBASE = Path(__file__).resolve().parents[1] / "fixtures" / "coinbase"

# the scanners' GIL-free entries, which a replay's reader thread calls
RELEASED: tuple[Any, ...] = (
    binance_scan.scan_depth_frames_released,
    coinbase_scan.scan_l2_frames_released,
    hyperliquid_scan.scan_book_frames_released,
    kraken_scan.scan_book_frames_released,
    okx_scan.scan_book_frames_released,
)


def _signatures() -> dict[str, int]:
    kernels = (*_ENTRY_KERNELS, *analytics_kernels.ENTRY_KERNELS, *RELEASED)
    return {f"{k.py_func.__module__}.{k.py_func.__qualname__}": len(k.signatures) for k in kernels}


def test_ticks_of_a_replay_use_only_warmed_signatures(usdm_recording: Path) -> None:
    warm_up(ADAPTERS.values(), replay=True)
    warmed = _signatures()
    assert all(warmed[f"{k.py_func.__module__}.{k.py_func.__qualname__}"] for k in RELEASED)
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    samples: list[TickSample] = []
    replay([usdm_recording], pipeline, tick_ms=1000, sinks=[CallbackSink(samples.append)])
    assert sum(int(s.valid.sum()) for s in samples) > 0  # the metric and score kernels ran
    assert _signatures() == warmed


def test_a_busy_coinbase_read_uses_only_warmed_signatures() -> None:
    """Coinbase's scanner writes the levels into a buffer of its own: the first read with
    enough frames for the scanner must not compile the book kernel for that buffer (a
    multi-second stall of every connection on a cold cache)."""
    warm_up(ADAPTERS.values())
    warmed = _signatures()
    pipeline = BookPipeline(InstrumentRegistry.load_cached([Venue.COINBASE]), ADAPTERS)
    snapshot, update = (
        json.loads((COINBASE / name).read_text())["data"]
        for name in ("ws_l2_snapshot.json", "ws_l2_update.json")
    )
    pipeline.feed_frames(Venue.COINBASE, [snapshot], [0])
    updates = [
        update.replace('"sequence_num":2,', f'"sequence_num":{k},')
        for k in range(2, 2 + 2 * COINBASE_ADAPTER.min_frames)
    ]
    pipeline.feed_frames(Venue.COINBASE, updates, list(range(1, len(updates) + 1)))
    (book,) = pipeline.book_summaries(depth=1)
    assert book["valid"] and book["messages"] == 1 + len(updates)
    assert pipeline.counters.messages["coinbase.gap"] == 0
    assert _signatures() == warmed


@pytest.mark.parametrize(
    "venue", [v for v, a in ADAPTERS.items() if a.scanner is not None], ids=lambda v: v.value
)
def test_every_prescan_hands_the_book_kernel_read_only_bytes(venue: Venue) -> None:
    """Coinbase's, Kraken's and Hyperliquid's scanners write a buffer of their own, Binance's
    and OKX's read the frames where they lie: the book kernel gets read-only bytes from
    each (the type warm_up compiles)."""
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    pre = pipeline.prescan(venue, [b'{"a":1}'] * 4, [1, 2, 3, 4])
    assert pre is not None and not pre.buf.flags.writeable
