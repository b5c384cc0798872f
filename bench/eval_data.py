"""Generate the evaluation's scenario recordings (bench/eval_score.py reads them).

    python -m bench.eval_data --out /tmp/liqmon-eval [--collapse-seeds 1,2,3,4,5] [--calm-days 7]

Collapse: 3 h ending T0 + 100 min, all 25 books, diffs every 500 ms. Calm days: 24 h each,
BTC, SOL and ALT1 on V1-V4 plus USDT/USD (13 books), diffs every 2 s (the monitor ticks
every 1 s; nuisance events last 10 s to 20 min), seeds 101.. (day d uses seed 101 + d).
Generalisation: a collapse on ETH/XRP only with its timeline stretched x1.5 and V4 (OKX)
hit hardest instead of V1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from feeds.sim.scenario import spec
from feeds.sim.scenario.core import Scenario
from feeds.sim.scenario.writer import write_scenario

CALM_ASSETS = ("BTC", "SOL", "ALT1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--collapse-seeds", default="1,2,3,4,5")
    parser.add_argument("--calm-days", type=int, default=7)
    parser.add_argument("--only", choices=["collapse", "calm", "general"], default=None)
    parser.add_argument("--general-seeds", default="11")
    args = parser.parse_args()
    out = Path(args.out)
    if args.only in (None, "collapse"):
        for seed in [int(s) for s in args.collapse_seeds.split(",") if s]:
            t = time.perf_counter()
            r = write_scenario(out / f"collapse-{seed}", Scenario("collapse", seed, hours=3.0))
            print(f"collapse seed {seed}: {r.records} records, {time.perf_counter() - t:.1f} s")
    if args.only in (None, "calm"):
        books = spec.books_for(CALM_ASSETS, pegged=False)
        for day in range(args.calm_days):
            t = time.perf_counter()
            sc = Scenario("calm", 101 + day, hours=24.0, step_ms=2000, day=day, books=books)
            r = write_scenario(out / f"calm-{day}", sc)
            print(f"calm day {day}: {r.records} records, {time.perf_counter() - t:.1f} s")

    if args.only in (None, "general"):
        books = spec.books_for(("ETH", "XRP", "SOL"), pegged=False)
        for seed in [int(s) for s in args.general_seeds.split(",") if s]:
            t = time.perf_counter()
            sc = Scenario("collapse", seed, hours=4.0, books=books, timeline=1.5, swap_v1_v4=True)
            r = write_scenario(out / f"general-{seed}", sc)
            print(f"general seed {seed}: {r.records} records, {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
