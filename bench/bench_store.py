"""History benchmark, on the embedded PostgreSQL (started here, in a temporary directory).

1. Sustained rows/s of ``book_metrics`` rows (38 columns, 12 of them arrays) in the same
   run, in rounds (each way once per round):
   - liqmon's StoreWriter, end to end: ``write(sample)`` (rows built from the numpy columns)
     to the last batch acknowledged (COPY into a staging table + INSERT ... ON CONFLICT DO
     NOTHING, batches of ``--batch`` rows);
   - the same rows, prebuilt, by plain ``executemany`` INSERT;
   - the same rows, prebuilt, by one raw ``copy_records_to_table`` into the table;
   - the same rows, prebuilt, by raw COPY in batches of ``--batch`` (what the writer's
     staging + ON CONFLICT costs on top of COPY).
2. Storage per book-day at 1 s ticks: an hour of ``--books`` books written, table plus
   indexes measured, scaled to 86,400 rows per book.
3. A 24 h, 1-minute bucket query (``liqmon query metrics --interval 1m``) over 100 books
   stored for 24 h (``--query-tick-s`` apart): p50/p99 over the books, and the asset depth
   query (every venue of an asset, 24 h, 1-minute buckets).

    .venv/bin/python bench/bench_store.py [--rows 40000] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import asyncpg

from monitor.store.embedded import EmbeddedPostgres
from monitor.store.migrate import migrate
from monitor.store.queries import depth, metrics_bucketed
from monitor.store.rows import BOOK_METRICS_COLUMNS, book_metric_rows
from monitor.store.writer import TABLE_COLUMNS, StoreWriter, WriterPolicy
from tests.store.samples import synthetic_sample


async def _fresh(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE book_metrics")
    await conn.execute("VACUUM ANALYZE book_metrics")


async def _race(
    dsn: str,
    spill: Path,
    args: argparse.Namespace,
    table: str,
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    samples: list[Any] | None,
) -> dict[str, Any]:
    """Each way of writing ``rows`` into ``table``, once per round, into an empty table."""
    n = len(rows)
    conn = await asyncpg.connect(dsn)
    names = ", ".join(columns)
    marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
    insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    policy = WriterPolicy(batch_rows=args.batch, memory_rows=max(n, args.batch))

    async def through_writer(feed: Any) -> None:
        w = StoreWriter.for_dsn(dsn, spill, policy)
        w.start()
        await feed(w)
        assert await w.flush(600)
        await w.close()
        assert w.counters.written == n and w.counters.duplicates == 0

    async def writer_samples() -> None:
        async def feed(w: StoreWriter) -> None:
            for sample in samples or ():
                await w.write(sample)

        await through_writer(feed)

    async def writer_rows() -> None:
        async def feed(w: StoreWriter) -> None:
            for i in range(0, n, 200):  # as ticks of 200 rows
                w.add(table, rows[i : i + 200])

        await through_writer(feed)

    async def executemany() -> None:
        await conn.executemany(insert, rows)

    async def copy_all() -> None:
        await conn.copy_records_to_table(table, records=rows, columns=columns)

    async def copy_batched() -> None:
        for i in range(0, n, args.batch):
            await conn.copy_records_to_table(
                table, records=rows[i : i + args.batch], columns=columns
            )

    ways = {"writer_rows": writer_rows}
    if samples is not None:
        ways = {"writer_samples": writer_samples, **ways}
    ways |= {"executemany": executemany, "copy": copy_all, "copy_batched": copy_batched}
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():
            await conn.execute(f"TRUNCATE {table}")
            await conn.execute(f"VACUUM ANALYZE {table}")
            t0 = time.perf_counter()
            await fn()
            times[name].append(time.perf_counter() - t0)
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == n
    await conn.execute(f"TRUNCATE {table}")
    await conn.close()
    best = {k: min(v) for k, v in times.items()}
    ref = "writer_rows"
    ratio = {
        k: statistics.median(t / w for t, w in zip(v, times[ref], strict=True))
        for k, v in times.items()
    }
    return {
        "table": table,
        "rows": n,
        "columns": len(columns),
        "batch_rows": args.batch,
        "rows_per_s_best": {k: round(n / b) for k, b in best.items()},
        "rows_per_s_median": {k: round(n / statistics.median(v)) for k, v in times.items()},
        "median_time_ratio_vs_writer_rows": {k: round(r, 2) for k, r in ratio.items()},
    }


async def throughput(dsn: str, spill: Path, args: argparse.Namespace) -> dict[str, Any]:
    books = 200
    samples = [synthetic_sample(t, books) for t in range(args.rows // books)]
    t0 = time.perf_counter()
    rows = [r for s in samples for r in book_metric_rows(s)]
    convert_s = time.perf_counter() - t0
    wide = await _race(dsn, spill, args, "book_metrics", BOOK_METRICS_COLUMNS, rows, samples)
    wide["convert_rows_per_s"] = round(len(rows) / convert_s)
    # narrow rows (8 columns, no arrays): score samples
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    narrow_rows = [
        (start + dt.timedelta(seconds=i // 500), "book", f"v{i % 5}", f"S{i % 500}", f"A{i % 100}",
         float(i % 97), "normal", None)
        for i in range(args.rows * 2)
    ]  # fmt: skip
    narrow = await _race(
        dsn, spill, args, "score_samples", TABLE_COLUMNS["score_samples"], narrow_rows, None
    )
    return {"book_metrics": wide, "score_samples": narrow}


async def footprint(dsn: str, books: int) -> dict[str, Any]:
    """An hour at 1 s ticks of ``books`` books (generated rows, every column filled)."""
    conn = await asyncpg.connect(dsn)
    await _fresh(conn)
    ticks = 3600
    samples_rows: list[tuple[Any, ...]] = []
    t0 = time.perf_counter()
    for t in range(ticks):
        samples_rows.extend(book_metric_rows(synthetic_sample(t, books)))
        if len(samples_rows) >= 50_000:
            await conn.copy_records_to_table(
                "book_metrics", records=samples_rows, columns=BOOK_METRICS_COLUMNS
            )
            samples_rows.clear()
    if samples_rows:
        await conn.copy_records_to_table(
            "book_metrics", records=samples_rows, columns=BOOK_METRICS_COLUMNS
        )
    await conn.execute("VACUUM ANALYZE book_metrics")
    rows = await conn.fetchval("SELECT count(*) FROM book_metrics")
    table = await conn.fetchval("SELECT pg_table_size('book_metrics')")
    total = await conn.fetchval("SELECT pg_total_relation_size('book_metrics')")
    await conn.close()
    per_row = total / rows
    return {
        "rows": rows,
        "seconds_to_write": round(time.perf_counter() - t0, 1),
        "bytes_per_row_total": round(per_row),
        "bytes_per_row_table": round(table / rows),
        "mb_per_book_day": round(per_row * 86_400 / 1e6, 1),
    }


FILL = """
INSERT INTO book_metrics (ts, venue, symbol, instrument, base, quote, kind, valid, stale, state,
    bid, ask, mid, spread_bps, layout, depth_usd, depth_quote, covered_mask, slippage_bps,
    exhausted_mask, depth_1pct_bid_usd, depth_1pct_ask_usd,
    levels_bid, levels_ask, truncated, fx_usd, fx_assumed, book_age_s, updates)
SELECT to_timestamp($1::float8 + s * $2::float8), v, 'S' || b, 'A' || (b / 4) || '-USDT-SPOT',
    'A' || (b / 4), 'USDT', 'spot', true, false, 'live',
    99.99 + b, 100.01 + b, 100 + b, 2.0, '0.1,0.5,1.0,2.0|10000.0,100000.0,1000000.0',
    ARRAY[[1e4, 1e4], [5e4, 5e4], [1e5 + s % 1000, 2e5 - s % 1000], [2e5, 3e5]],
    ARRAY[[1e4, 1e4], [5e4, 5e4], [1e5, 2e5], [2e5, 3e5]], 255,
    ARRAY[[1.0, 1.5], [5.0, 6.0], [50.0, 60.0]], 16, 1e5 + s % 1000, 2e5 - s % 1000, 500, 500, false, 1.0, true, 0.1, s
FROM generate_series(0, $3::int - 1) AS s,
     (SELECT b, (ARRAY['binance', 'okx', 'bybit', 'kraken'])[b % 4 + 1] AS v
      FROM generate_series(0, 99) AS b) AS books
"""


async def query_latency(dsn: str, tick_s: float, repeat: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    await _fresh(conn)
    start = 1_700_002_800.0
    ticks = int(86_400 / tick_s)
    t0 = time.perf_counter()
    await conn.execute(FILL, start, tick_s, ticks)
    await conn.execute("VACUUM ANALYZE book_metrics")
    fill_s = time.perf_counter() - t0
    rows = await conn.fetchval("SELECT count(*) FROM book_metrics")
    books = await conn.fetch("SELECT DISTINCT venue, symbol, base FROM book_metrics")
    end = start + 86_400
    per_book = []
    for _ in range(repeat):
        for b in books:
            q0 = time.perf_counter()
            out = await metrics_bucketed(
                conn,
                venue=b["venue"],
                symbol=b["symbol"],
                start_s=start,
                end_s=end - 1,
                interval_s=60,
            )
            per_book.append(time.perf_counter() - q0)
            assert len(out) == 1440
    per_asset = []
    for _ in range(repeat):
        for base in sorted({b["base"] for b in books})[:25]:
            q0 = time.perf_counter()
            out = await depth(conn, asset=base, start_s=start, end_s=end - 1, interval_s=60)
            per_asset.append(time.perf_counter() - q0)
            assert len(out) == 1440 * 4
    await conn.close()

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {
        "books": len(books),
        "rows": rows,
        "tick_s": tick_s,
        "fill_s": round(fill_s, 1),
        "metrics_1m_24h_per_book_ms": {
            "p50": pct(per_book, 0.5),
            "p99": pct(per_book, 0.99),
            "n": len(per_book),
        },
        "depth_1m_24h_per_asset_ms": {
            "p50": pct(per_asset, 0.5),
            "p99": pct(per_asset, 0.99),
            "n": len(per_asset),
        },
    }


def _literal(value: Any) -> str:
    """A SQL literal of a row value (PGlite is fed statements, not COPY)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "'NaN'::float8" if value != value else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, list):

        def inner(v: Any) -> str:
            if isinstance(v, list):
                return "{" + ",".join(inner(x) for x in v) + "}"
            return "NaN" if v != v else repr(v)

        return f"'{inner(value)}'"
    return "'" + str(value).replace("'", "''") + "'"


async def timescale_footprint(books: int) -> dict[str, Any]:
    """An hour of synthetic rows (``tests.store.samples``: random figures in every column)
    in the TimescaleDB build of PGlite (tests/store/pglite.py, node + npm): hypertable size
    before and after compress_chunk."""
    from tests.store.pglite import PgliteDatabase, install  # noqa: PLC0415

    db = await PgliteDatabase.start(install())
    try:
        await migrate(db)
        names = ", ".join(BOOK_METRICS_COLUMNS)
        pending: list[str] = []
        for t in range(3600):
            for row in book_metric_rows(synthetic_sample(t, books)):
                pending.append("(" + ", ".join(_literal(v) for v in row) + ")")
            if len(pending) >= 2000 or t == 3599:
                await db.execute(f"INSERT INTO book_metrics ({names}) VALUES {', '.join(pending)}")
                pending.clear()
        rows = (await db.fetch("SELECT count(*)::int4 AS n FROM book_metrics"))[0]["n"]
        size = "SELECT hypertable_size('book_metrics')::int8 AS b"
        before = (await db.fetch(size))[0]["b"]
        for chunk in await db.fetch("SELECT show_chunks('book_metrics') AS c"):
            await db.execute(f"SELECT compress_chunk('{chunk['c']}')")
        after = (await db.fetch(size))[0]["b"]
    finally:
        await db.close()
    return {
        "rows": rows,
        "bytes_per_row_uncompressed": round(before / rows),
        "bytes_per_row_compressed": round(after / rows),
        "ratio": round(before / after, 1),
        "mb_per_book_day_compressed": round(after / rows * 86_400 / 1e6, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="liqmon-bench-store-", dir="/tmp"))
    root.chmod(0o755)  # root: the server's user must enter it
    server = EmbeddedPostgres(root / "postgres")
    try:
        dsn = await asyncio.to_thread(server.start)
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        results: dict[str, Any] = {"postgres": version}
        results["throughput"] = await throughput(dsn, root / "spill", args)
        print(json.dumps(results["throughput"], indent=1), flush=True)
        results["footprint"] = await footprint(dsn, args.footprint_books)
        print(json.dumps(results["footprint"], indent=1), flush=True)
        results["query"] = await query_latency(dsn, args.query_tick_s, args.query_repeat)
        print(json.dumps(results["query"], indent=1), flush=True)
        if args.timescale:
            results["timescale"] = await timescale_footprint(args.footprint_books)
            print(json.dumps(results["timescale"], indent=1), flush=True)
        return results
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--footprint-books", type=int, default=20)
    ap.add_argument("--query-tick-s", type=float, default=10.0)
    ap.add_argument("--query-repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--timescale", action="store_true", help="also the compressed footprint (PGlite, node)"
    )
    args = ap.parse_args()
    _common.quiet_logs()
    results = asyncio.run(main_async(args))
    results["machine"] = _common.machine()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
