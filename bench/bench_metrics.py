"""compute_metrics (monitor/metrics/kernels.py) for 1 book and for 1,000 books in one call.

Books: the 8 REST snapshots of the recordings (``/depth?limit=1000``: 174-1000 levels per
side, 1,000 on at least one side of 7 of them), applied by liqmon's own kernel to 8 books
of a BookStore (capacity 2048), then copied row for row into 1,000 books (book i is
snapshot i % 8). Bands 0.1/0.5/1/2 % of mid, notionals 1e4/1e5/1e6 USD. Quote -> USD rates
of the recording dates: USDT 1, EUR 1.16, ETH 3,500, BTC 57,000 (fixed numbers: they only
decide how deep the notional walks go).

Rows: the full kernel; the same kernel asked for depth only (no notionals) with the 4 bands
and with the 1 % band alone (the target: 1 % depth of 1,000 books <= 0.3 ms). Each is timed
hot (the same call repeated; best and median of ``--calls``) and cold (a 64 MB buffer is
written between calls, so the books come from DRAM as after a second of other work). The
levels each variant reads per book are counted, to say where the time goes.

Run alone: ``.venv/bin/python bench/bench_metrics.py [--json PATH]``.
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
from corpus import build_corpus

from feeds.binance import ADAPTERS
from monitor.book.layout import S_N_ASK, S_N_BID, S_PRICE_DEC
from monitor.book.store import BookStore, EventBatch
from monitor.metrics import kernels as mk

FX = {"USDT": 1.0, "BUSD": 1.0, "EUR": 1.16, "ETH": 3500.0, "BTC": 57000.0}
BANDS = np.array([0.001, 0.005, 0.01, 0.02])
NOTIONALS = np.array([1e4, 1e5, 1e6])
TARGET_MS = 0.3


def build_store(n_books: int, capacity: int = 2048) -> tuple[BookStore, np.ndarray, list[str]]:
    corpus = build_corpus(replicas=1, repeats=1)
    snaps = corpus.snapshot_frames()
    store = BookStore(n_books, capacity)
    fx = np.empty(n_books)
    names = []
    batch = EventBatch(1)
    for venue, _kind, url, data, recv_ns in snaps:
        ev = ADAPTERS[venue].decode_http(url, data, recv_ns)
        inst = corpus.registry.get(venue, ev.symbol)
        b = store.add_book(rule=ADAPTERS[venue].sequencing, price_decimals=inst.price_decimals)
        batch.add(b, 1, -1, ev.last_seq, -1, ev.bids, ev.asks, ev.ts_event_ns, recv_ns, ev.limit)
        store.apply(batch)
        batch.clear()
        fx[b] = FX[inst.quote]
        names.append(corpus.originals[(venue, ev.symbol)])
    k = len(snaps)
    for b in range(k, n_books):
        store.add_book(rule=ADAPTERS[snaps[b % k][0]].sequencing, price_decimals=0)
        store.istate[b] = store.istate[b % k]
        store.keys[b] = store.keys[b % k]
        store.qtys[b] = store.qtys[b % k]
        fx[b] = fx[b % k]
    return store, fx, names


def levels_read(
    store: BookStore, fx: np.ndarray, book: int, bands: np.ndarray, notionals: np.ndarray
) -> int:
    """Levels compute_metrics reads for one book: the widest band's walk per side (plus the
    one that stops it) and every notional walk (up to the level that fills it)."""
    st = store.istate[book]
    scale = 10.0 ** st[S_PRICE_DEC]
    nb, na = int(st[S_N_BID]), int(st[S_N_ASK])
    bpx = store.keys[book, 0, :nb][::-1] / scale
    apx = -store.keys[book, 1, :na][::-1] / scale
    bq = store.qtys[book, 0, :nb][::-1]
    aq = store.qtys[book, 1, :na][::-1]
    mid = 0.5 * (bpx[0] + apx[0])
    total = 0
    if len(bands):
        w = bands[-1]
        total += min(nb, int(np.sum(bpx >= mid * (1 - w))) + 1) + min(
            na, int(np.sum(apx <= mid * (1 + w))) + 1
        )
    for target in notionals:
        for px, q, n in ((bpx, bq, nb), (apx, aq, na)):
            cum = np.cumsum(px * q * fx[book])
            total += min(n, int(np.searchsorted(cum, target)) + 1)
    return total


def walk_table(store: BookStore, fx: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Per book type: levels per side, levels inside the 2 % band, levels each notional walk reads."""
    out = []
    for book, name in enumerate(names):
        st = store.istate[book]
        scale = 10.0 ** st[S_PRICE_DEC]
        nb, na = int(st[S_N_BID]), int(st[S_N_ASK])
        bpx = store.keys[book, 0, :nb][::-1] / scale
        apx = -store.keys[book, 1, :na][::-1] / scale
        cb = np.cumsum(bpx * store.qtys[book, 0, :nb][::-1] * fx[book])
        ca = np.cumsum(apx * store.qtys[book, 1, :na][::-1] * fx[book])
        mid = 0.5 * (bpx[0] + apx[0])
        walks = []
        for t in NOTIONALS:
            wb, wa = int(np.searchsorted(cb, t)) + 1, int(np.searchsorted(ca, t)) + 1
            walks.append((min(wb, nb), min(wa, na), wb > nb, wa > na))
        out.append(
            {
                "book": name,
                "levels": (nb, na),
                "band": (
                    int(np.sum(bpx >= mid * (1 - BANDS[-1]))),
                    int(np.sum(apx <= mid * (1 + BANDS[-1]))),
                ),
                "walks": walks,
            }
        )
    return out


def time_call(fn: Any, calls: int, cold: bool, evict: np.ndarray) -> list[float]:
    times = []
    for _ in range(calls):
        if cold:
            evict += 1  # write 64 MB: the books' cache lines are gone
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--books", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=300, help="timed calls per row")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    _common.quiet_logs()
    store, fx, names = build_store(args.books)
    per_type = [
        (names[b], int(store.istate[b, S_N_BID]), int(store.istate[b, S_N_ASK]))
        for b in range(len(names))
    ]
    print(
        "books:",
        args.books,
        "built from",
        ", ".join(f"{n} ({b}/{a} levels)" for n, b, a in per_type),
    )
    evict = np.zeros(64 * 2**20 // 8)
    variants = [
        ("full: 4 bands + 3 notionals", BANDS, NOTIONALS),
        ("4 bands + 2 notionals (1e4, 1e5)", BANDS, NOTIONALS[:2]),
        ("depth only: 4 bands", BANDS, np.empty(0)),
        ("depth only: 1% band", np.array([0.01]), np.empty(0)),
    ]
    rows = []
    checks: dict[str, Any] = {}
    for vname, bands, notionals in variants:
        for n_books in (1, args.books):
            books = np.arange(n_books, dtype=np.int64)
            out = np.empty((n_books, mk.n_columns(len(bands), len(notionals))))
            f = fx[:n_books].copy()

            def call(
                books: np.ndarray = books,
                out: np.ndarray = out,
                f: np.ndarray = f,
                bands: np.ndarray = bands,
                notionals: np.ndarray = notionals,
            ) -> None:
                mk.compute_metrics(
                    books, store.istate, store.keys, store.qtys, f, bands, notionals, out
                )

            for _ in range(20):  # warm-up (compile or load from cache)
                call()
            if vname.startswith("depth only: 1%") and n_books > 1:
                c = mk.band_col(0)
                checks["1% depth, book 0 (quote)"] = (float(out[0, c]), float(out[0, c + 1]))
            for cold in (False, True):
                t = time_call(
                    call, args.calls if not cold else max(20, args.calls // 5), cold, evict
                )
                best, med = min(t), statistics.median(t)
                lv = sum(
                    levels_read(store, fx, b % len(names), bands, notionals)
                    for b in range(min(n_books, len(names)))
                )
                lv_per_book = lv / min(n_books, len(names))
                row = {
                    "name": f"{vname}, {n_books} book{'s' if n_books > 1 else ''}, {'cold' if cold else 'hot'}",
                    "value": best * 1e6,
                    "unit": "us/call",
                    "median_us": med * 1e6,
                    "us_per_book": best * 1e6 / n_books,
                    "levels_read_per_book": lv_per_book,
                    "ns_per_level": best * 1e9 / (n_books * lv_per_book) if n_books > 1 else None,
                    "note": f"median {med * 1e6:.1f} us, {best * 1e6 / n_books:.3f} us/book, ~{lv_per_book:.0f} levels read/book",
                }
                if n_books == args.books:
                    row["target_ms"] = TARGET_MS
                    row["meets_0.3ms"] = best * 1e3 <= TARGET_MS
                    row["note"] += (
                        f", {'within' if best * 1e3 <= TARGET_MS else 'OVER'} 0.3 ms (x{best * 1e3 / TARGET_MS:.2f})"
                    )
                rows.append(row)
    walks = walk_table(store, fx, names)
    print(
        "\nlevels compute_metrics reads per side (bid/ask) of each book type; * = the walk exhausts the side"
    )
    print(
        f"  {'book':<10} {'levels':>10} {'in 2% band':>11} "
        + " ".join(f"{'walk ' + format(t, 'g'):>13}" for t in NOTIONALS)
    )
    for w in walks:
        cells = " ".join(
            f"{w['walks'][i][0]:>5}{'*' if w['walks'][i][2] else ' '}/{w['walks'][i][1]:>5}{'*' if w['walks'][i][3] else ' '}"
            for i in range(len(NOTIONALS))
        )
        print(
            f"  {w['book']:<10} {w['levels'][0]:>4}/{w['levels'][1]:<5} {w['band'][0]:>5}/{w['band'][1]:<5} {cells}"
        )
    _common.print_rows(
        f"metrics: compute_metrics, {args.books} books of ~1000 levels/side, best of {args.calls} calls (cold: of {max(20, args.calls // 5)})",
        rows,
    )
    payload = {
        "bench": "metrics",
        "books": args.books,
        "book_types": per_type,
        "walks": walks,
        "rows": rows,
        "checks": checks,
        "machine": _common.machine(),
    }
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
