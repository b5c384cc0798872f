"""Resident memory of 500 books filled from the recordings' REST snapshots.

Each configuration runs in a fresh subprocess (``--child``). The child imports everything
every configuration needs (numpy, numba, msgspec, liqmon, order_book, sortedcontainers),
builds the 504 snapshot frames of the corpus (8 recorded snapshots x 63 replicas, 174-1000
levels per side) and keeps the first 500, then reads VmRSS from /proc/self/status:

- ``before``: after imports and the input frames (and, for liqmon, after the numba kernel
  was loaded and run once on a throwaway store: that one-off cost is reported apart as
  ``kernel_load``);
- ``after``: after the 500 books were filled (gc.collect() first), input frames still held.

``books`` = after - before is the memory the books take. liqmon: ``BookPipeline(max_books=500,
capacity=C)`` fed every snapshot frame through ``feed``. The level arrays are 500 x 2 sides x C x 16 bytes (int64 key + float64 qty)
whatever the books hold; numpy allocates them zeroed, and since numpy madvise()s large
arrays for transparent huge pages (THP "madvise" mode here), writing one level makes the
whole 2 MiB around it resident: the store is resident at its nominal size. An extra row
switches numpy's madvise off to show the pages the levels alone touch.
Peers: the same decode and level parse as bench_book.py (msgspec floats), levels stored in
``order_book.OrderBook``, ``dict`` per side, or ``sortedcontainers.SortedDict`` per side.

Run alone: ``.venv/bin/python bench/bench_memory.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

N_BOOKS = 500
CONFIGS = [
    ("liqmon BookPipeline, capacity 2048", "liqmon", 2048),
    ("liqmon BookPipeline, capacity 1024", "liqmon", 1024),
    ("info: liqmon, capacity 2048, numpy hugepage madvise off", "liqmon-nothp", 2048),
    ("peer order_book.OrderBook (C)", "order_book", 0),
    ("peer dict per side", "dict", 0),
    ("peer sortedcontainers.SortedDict per side", "sorteddict", 0),
]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(impl: str, capacity: int, n_books: int) -> dict[str, Any]:
    import msgspec  # noqa: PLC0415
    import numba  # noqa: F401, PLC0415
    import numpy as np  # noqa: PLC0415
    from corpus import build_corpus  # noqa: PLC0415
    from order_book import OrderBook  # noqa: PLC0415
    from sortedcontainers import SortedDict  # noqa: PLC0415

    from feeds.binance import ADAPTERS  # noqa: PLC0415
    from monitor.book.layout import S_N_ASK, S_N_BID  # noqa: PLC0415
    from monitor.book.store import BookStore, EventBatch  # noqa: PLC0415
    from monitor.pipeline import BookPipeline  # noqa: PLC0415

    _common.quiet_logs()
    if impl == "liqmon-nothp":
        # numpy madvise()s large arrays for transparent huge pages: one write then makes a
        # whole 2 MiB resident. Switched off here to show what the books themselves touch.
        from numpy._core import multiarray  # noqa: PLC0415

        multiarray._set_madvise_hugepage(False)
        impl = "liqmon"
    corpus = build_corpus(replicas=(n_books + 7) // 8, repeats=1, snapshots_only=True)
    frames = corpus.snapshot_frames()[:n_books]
    registry = corpus.registry
    del corpus
    levels = msgspec.json.Decoder(list[tuple[float, float]], strict=False).decode
    kernel_load = 0
    if impl == "liqmon":
        gc.collect()
        r0 = rss_kib()
        store = BookStore(1, 16)
        b = store.add_book(rule=ADAPTERS[frames[0][0]].sequencing, price_decimals=8)
        batch = EventBatch(1)
        batch.add(b, 1, -1, 1, -1, b'[["1","1"]]', b'[["2","1"]]', 0, 0)
        store.apply(batch)
        del store, batch
        gc.collect()
        kernel_load = rss_kib() - r0
    gc.collect()
    before = rss_kib()
    held: Any
    nominal = 0
    levels_held = 0
    if impl == "liqmon":
        p = BookPipeline(registry, ADAPTERS, max_books=n_books, capacity=capacity)
        for venue, kind, url, data, recv_ns in frames:
            p.feed(venue, kind, url, data, recv_ns)
        p.flush()
        assert len(p.books) == n_books and all(p.is_valid(i) for i in p.books.values())
        st = p.store
        nominal = st.keys.nbytes + st.qtys.nbytes + st.istate.nbytes + st.fstate.nbytes
        levels_held = int(st.istate[:, S_N_BID].sum() + st.istate[:, S_N_ASK].sum())
        held = p
    else:
        books = {}
        for venue, _kind, url, data, recv_ns in frames:
            ev = ADAPTERS[venue].decode_http(url, data, recv_ns)
            bids, asks = levels(ev.bids), levels(ev.asks)
            if impl == "order_book":
                ob = OrderBook()
                for px, q in bids:
                    ob.bids[px] = q
                for px, q in asks:
                    ob.asks[px] = q
                ob.bids.index(0)  # sorts the keys, as the first top-of-book read does
                ob.asks.index(0)
                books[(venue, ev.symbol)] = ob
                levels_held += len(ob.bids) + len(ob.asks)
            else:
                kind_ = dict if impl == "dict" else SortedDict
                sides = (
                    kind_((px, q) for px, q in bids if q > 0),
                    kind_((px, q) for px, q in asks if q > 0),
                )
                books[(venue, ev.symbol)] = sides
                levels_held += len(sides[0]) + len(sides[1])
        held = books
    gc.collect()
    after = rss_kib()
    del held
    return {
        "impl": impl,
        "thp": Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
        if Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
        else "",
        "capacity": capacity,
        "books": n_books,
        "levels": levels_held,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "books_kib": after - before,
        "kernel_load_kib": kernel_load,
        "nominal_bytes": nominal,
        "np_version": np.__version__,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", default=None)
    ap.add_argument("--capacity", type=int, default=0)
    ap.add_argument("--books", type=int, default=N_BOOKS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.capacity, args.books)))
        return {}
    results = []
    for name, impl, cap in CONFIGS:
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                impl,
                "--capacity",
                str(cap),
                "--books",
                str(args.books),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: child failed\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["name"] = name
        results.append(r)
    dict_kib = next(r["books_kib"] for r in results if r["impl"] == "dict")
    rows = []
    for r in results:
        note = f"{r['levels']:,} levels, {r['books_kib'] * 1024 / r['levels']:.0f} B/level, process RSS {r['rss_after_kib'] / 1024:.0f} MiB"
        if r["nominal_bytes"]:
            note += f"; level arrays nominal {r['nominal_bytes'] / 2**20:.1f} MiB (all sides full); numba kernel load {r['kernel_load_kib'] / 1024:.1f} MiB"
        rows.append(
            {
                "name": r["name"],
                "value": r["books_kib"] / 1024,
                "unit": "MiB",
                "ratio": r["books_kib"] / dict_kib,
                "note": note,
                **{
                    k: r[k]
                    for k in (
                        "levels",
                        "rss_before_kib",
                        "rss_after_kib",
                        "books_kib",
                        "kernel_load_kib",
                        "nominal_bytes",
                    )
                },
            }
        )
    _common.print_rows(
        f"memory: RSS growth for {args.books} books from REST snapshots (fresh process each; ratio vs dict peer)",
        rows,
    )
    payload = {"bench": "memory", "books": args.books, "rows": rows, "machine": _common.machine()}
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
