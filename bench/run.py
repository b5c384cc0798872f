"""Run every benchmark, print one table, write bench/results/latest.json.

Each bench_*.py runs in its own process (``--json`` to bench/results/<name>.json), so
one benchmark's heap and caches do not colour the next. Usage, from the repo root:

    .venv/bin/python bench/run.py [--quick]

``--quick``: fewer repeats (a smoke run; the figures are noisier).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

BENCHES = [
    ("book", "bench_book.py", ["--repeat", "5"], ["--repeat", "1", "--no-breakdown"]),
    ("metrics", "bench_metrics.py", ["--calls", "300"], ["--calls", "50"]),
    ("memory", "bench_memory.py", [], []),
    ("analytics", "bench_analytics.py", ["--ticks", "1200"], ["--ticks", "100", "--warmup", "100"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    _common.RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    machine = _common.machine()
    print(
        f"machine: {machine['cpu']}, {machine['cpus']} CPUs, Python {machine['python']}, numpy {machine['numpy']}, "
        f"numba {machine['numba']}, msgspec {machine['msgspec']}, loadavg {' '.join(machine['loadavg'])}",
        flush=True,
    )
    results = {}
    for name, script, full, quick in BENCHES:
        out = _common.RESULTS / f"{name}.json"
        t0 = time.perf_counter()
        print(f"\n### {script}", flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                str(HERE / script),
                *(quick if args.quick else full),
                "--json",
                str(out),
            ],
            check=False,
        )
        if proc.returncode != 0:
            print(f"{script} failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        results[name] = json.loads(out.read_text())
        results[name]["wall_s"] = time.perf_counter() - t0

    print("\n" + "=" * 100)
    print("SUMMARY")
    book = results["book"]
    _common.print_rows(
        f"book: decode + sync + apply + top-of-book read, {book['messages']:,} messages (ratio vs best peer: {book['best_peer']})",
        book["rows"],
    )
    print(
        "  targets:",
        ", ".join(f"{k}: {'MET' if v else 'MISSED'}" for k, v in book["targets"].items()),
    )
    if book.get("breakdown"):
        _common.print_rows("book: liqmon time per message", book["breakdown"])
    _common.print_rows("metrics: compute_metrics", results["metrics"]["rows"])
    _common.print_rows("memory: RSS of 500 books (ratio vs dict peer)", results["memory"]["rows"])
    _common.print_rows(
        "analytics: cross-venue + score tick (ratio vs the metric kernel)",
        results["analytics"]["rows"],
    )
    total = time.perf_counter() - started
    walls = ", ".join(f"{k} {v['wall_s']:.0f}s" for k, v in results.items())
    machine_end = _common.machine()
    print(
        f"\nwall time {total:.0f}s ({walls}); "
        f"loadavg at start {' '.join(machine['loadavg'])}, at end {' '.join(machine_end['loadavg'])}"
    )
    payload = {
        "machine": machine,
        "loadavg_end": machine_end["loadavg"],
        "wall_s": total,
        "results": results,
    }
    (_common.RESULTS / "latest.json").write_text(json.dumps(payload, indent=1, default=float))
    print(f"wrote {_common.RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
