"""warm_up covers every signature the live tick calls: the daemon's first tick must not load
(warm numba cache) or compile (cold cache) a kernel inside the event loop, where it holds
back every frame that arrives meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feeds import binance_scan, coinbase_scan, hyperliquid_scan, kraken_scan, okx_scan
from feeds.venues import ADAPTERS
from monitor.analytics import kernels as analytics_kernels
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import replay
from monitor.sample import TickSample
from monitor.sinks import CallbackSink
from monitor.warmup import _ENTRY_KERNELS, warm_up

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
