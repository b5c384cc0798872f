"""The analytics stage's tick (cross-venue analytics + liquidity-vacuum score) for 1,000
books of 100 assets, against the metric kernel's tick for 1,000 books in the same run.

Books: 100 assets x 10 books (6 spot venues, 4 perp venues with mark/index/funding; 8
venues in all, quotes USD/USDT/USDC), each a tick sample row with 4 depth bands and 3
slippage notionals, as ``BookPipeline.tick`` hands them to the stage. Every tick moves
every mid, spread and depth a little (pre-drawn, seeded), a few books go stale and come
back, and one asset's books empty out for a while, so consensus, baselines, breadth, the
state machine and the events all work. The stage runs 600 ticks first (warm-up: numba,
baselines), then ``--ticks`` timed ticks.

Reported: ``AnalyticsStage.process`` per tick (best, median, p99), the part spent in the
four numba kernels (``score_tick`` holds ``combine_scores`` and ``step_states``), and
``compute_metrics`` for 1,000 books of ~1,000 levels/side (the recordings' snapshots,
bench_metrics.py's store; full: 4 bands + 3 notionals) in the same process: the ratio says
what the analytics add to the metric tick.

Run alone: ``.venv/bin/python bench/bench_analytics.py [--ticks N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import numpy as np
from bench_metrics import BANDS, NOTIONALS, build_store

from monitor.analytics import kernels as ak
from monitor.analytics.stage import AnalyticsStage
from monitor.metrics import kernels as mk
from monitor.sample import BookIdentity, TickSample

N_ASSETS = 100
SPOT_VENUES = (("coinbase", "USD"), ("kraken", "USD"), ("binance", "USDT"),
               ("okx", "USDT"), ("bybit", "USDT"), ("binance", "USDC"))  # fmt: skip
PERP_VENUES = (("binance_futures", "USDT"), ("okx", "USDT"), ("bybit_linear", "USDT"),
               ("hyperliquid", "USDC"))  # fmt: skip
TARGET_MS = 2.0


def identities() -> tuple[BookIdentity, ...]:
    books = []
    for a in range(N_ASSETS):
        base = f"A{a:03d}"
        for venue, quote in SPOT_VENUES:
            books.append(BookIdentity(venue, f"{base}{quote}", f"{base}-{quote}-SPOT", base, quote, "spot"))  # fmt: skip
        for venue, quote in PERP_VENUES:
            books.append(BookIdentity(venue, f"{base}{quote}P", f"{base}-{quote}-PERP", base, quote, "perp"))  # fmt: skip
    # the stablecoins priced by the USD venues
    books.append(BookIdentity("kraken", "USDT/USD", "USDT-USD-SPOT", "USDT", "USD", "spot"))
    books.append(BookIdentity("coinbase", "USDC-USD", "USDC-USD-SPOT", "USDC", "USD", "spot"))
    return tuple(books)


class Market:
    """Pre-drawn per-tick columns for the books (seeded)."""

    def __init__(self, books: tuple[BookIdentity, ...], seed: int = 7) -> None:
        self.books = books
        n = len(books)
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.price = np.array([10.0 ** (1 + (hash(b.base) % 4)) for b in books])
        self.price[-2:] = 1.0
        self.is_perp = np.array([b.kind == "perp" for b in books])
        self.depth1 = rng.lognormal(13.5, 1.0, n)
        self.n = n
        self.stressed = np.zeros(n, dtype=bool)
        self.stressed[:10] = True  # asset A000

    def sample(self, tick: int) -> TickSample:
        n, rng = self.n, self.rng
        nk, nn = len(BANDS), len(NOTIONALS)
        vacuum = 1200 <= tick % 2400 < 1500  # asset A000 empties out for 5 minutes
        m = self.price * (1 + rng.normal(0, 2e-4, n))
        spread = rng.lognormal(0.5, 0.2, n)
        depth1 = self.depth1 * rng.lognormal(0, 0.05, n)
        if vacuum:
            depth1[self.stressed] *= 0.03
            spread[self.stressed] *= 20
        shape = np.array([0.28, 0.68, 1.0, 1.46])
        depth = depth1[:, None, None] * shape[None, :, None] * np.ones((1, 1, 2))
        slip = np.broadcast_to(np.array([0.5, 3.0, 30.0])[None, :, None], (n, nn, 2)).copy()
        valid = rng.random(n) > 0.002  # a few books drop out now and then
        stale = ~valid
        mid = np.where(valid, m, np.nan)
        mark = np.where(self.is_perp, m * 0.9999, np.nan)
        return TickSample(
            ts_ns=1_700_000_000_000_000_000 + tick * 1_000_000_000,
            books=self.books,
            bands_pct=tuple(100 * b for b in BANDS),
            notionals_usd=tuple(NOTIONALS),
            book_id=np.arange(n, dtype=np.int64),
            valid=valid,
            stale=stale,
            changed=np.ones(n, dtype=bool),
            book_state=np.where(stale, 3, 2).astype(np.int8),
            bid=mid * (1 - spread / 2e4),
            ask=mid * (1 + spread / 2e4),
            mid=mid,
            spread_bps=np.where(valid, spread, np.nan),
            depth_usd=depth,
            depth_quote=depth,
            depth_covered=np.ones((n, nk, 2), dtype=bool),
            slippage_bps=slip,
            slippage_exhausted=np.zeros((n, nn, 2), dtype=bool),
            levels=np.full((n, 2), 1000, dtype=np.int64),
            truncated=np.zeros(n, dtype=bool),
            fx_usd=np.ones(n),
            fx_assumed=np.zeros(n, dtype=bool),
            book_age_s=np.full(n, 0.2),
            updates=np.full(n, 100, dtype=np.int64),
            mark_price=mark,
            index_price=np.where(self.is_perp, m, np.nan),
            funding_rate=np.where(self.is_perp, 1e-4, np.nan),
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ticks", type=int, default=1200, help="timed ticks")
    ap.add_argument("--warmup", type=int, default=600, help="untimed ticks first")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    _common.quiet_logs()
    books = identities()
    market = Market(books)
    samples = [market.sample(t) for t in range(args.warmup + args.ticks)]
    stage = AnalyticsStage()
    # time the kernels inside the stage too (wrapping the module's references)
    kernel_s = [0.0]
    # (score_tick calls combine_scores and step_states inside numba: timed as one)
    originals = {name: getattr(ak, name) for name in ("cross_venue", "asset_rollup",
                 "book_components", "score_tick")}  # fmt: skip

    def timed(fn: Any) -> Any:
        def call(*a: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*a)
            kernel_s[0] += time.perf_counter() - t0
            return out

        return call

    for name, fn in originals.items():
        setattr(ak, name, timed(fn))
    events = 0
    per_tick: list[float] = []
    per_kernel: list[float] = []
    try:
        for t, sample in enumerate(samples):
            kernel_s[0] = 0.0
            t0 = time.perf_counter()
            out = stage.process(sample)
            dt = time.perf_counter() - t0
            events += len(out.events)
            if t >= args.warmup:
                per_tick.append(dt)
                per_kernel.append(kernel_s[0])
    finally:
        for name, fn in originals.items():
            setattr(ak, name, fn)
    assert out.assets is not None and len(out.assets) == N_ASSETS + 2
    assert events > 0, "the vacuum produced no score event"
    # the metric kernel, 1,000 books, same process
    store, fx, _ = build_store(1000)
    todo = np.arange(1000, dtype=np.int64)
    res = np.empty((1000, mk.n_columns(len(BANDS), len(NOTIONALS))))
    metric: list[float] = []
    for _ in range(50):
        t0 = time.perf_counter()
        mk.compute_metrics(todo, store.istate, store.keys, store.qtys, fx, BANDS, NOTIONALS, res)
        metric.append(time.perf_counter() - t0)
    ms = 1e3
    tick_best, tick_med = min(per_tick) * ms, statistics.median(per_tick) * ms
    p99 = float(np.percentile(per_tick, 99)) * ms
    kern_med = statistics.median(per_kernel) * ms
    metric_best, metric_med = min(metric) * ms, statistics.median(metric) * ms
    ratio = tick_best / metric_best
    ratio_med = tick_med / metric_med
    rows = [
        {"name": "analytics + score tick, 1,000 books / 100 assets (best)",
         "value": tick_best, "unit": "ms", "ratio": ratio,
         "note": f"median {tick_med:.3f}, p99 {p99:.3f}; ratio of bests vs the metric kernel, "
                 f"of medians {ratio_med:.2f}"},
        {"name": "  of which the numba kernels (median)", "value": kern_med, "unit": "ms"},
        {"name": "metric kernel compute_metrics, 1,000 books, full (best)",
         "value": metric_best, "unit": "ms", "note": f"median {metric_med:.3f}"},
    ]  # fmt: skip
    _common.print_rows("analytics tick (bench_analytics.py)", rows)
    verdict = "meets" if tick_med <= TARGET_MS else "misses"
    print(f"target <= {TARGET_MS} ms per tick on one core: {verdict} ({tick_med:.3f} ms median)")
    payload = {
        "rows": rows,
        "books": len(books),
        "assets": N_ASSETS,
        "ticks": len(per_tick),
        "events": events,
        "tick_ms": {"best": tick_best, "median": tick_med, "p99": p99},
        "kernels_ms_median": kern_med,
        "metric_kernel_ms": {"best": metric_best, "median": metric_med},
        "ratio_best": ratio,
        "ratio_median": ratio_med,
        "target_ms": TARGET_MS,
        "machine": _common.machine(),
    }
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
