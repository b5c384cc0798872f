"""The store writer against a real PostgreSQL: exact round trip, batching, the database
going away mid-run (memory bound, spill file, order), and an unreachable database at close."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from monitor.store.embedded import EmbeddedPostgres
from monitor.store.migrate import migrate
from monitor.store.queries import metrics_raw
from monitor.store.rows import timestamp
from monitor.store.writer import SpillFile, StoreWriter, WriterPolicy
from tests.store.conftest import open_tmp_dir
from tests.store.samples import identities, synthetic_sample

DEAD_DSN = "postgresql://postgres@/postgres?host=/nonexistent-liqmon-socket-dir"


async def _wait_for(predicate, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_written_samples_read_back_exactly_as_their_metrics_out_records(
    db_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    writer = StoreWriter.for_dsn(
        db_dsn, tmp_path / "spill", WriterPolicy(batch_rows=40, flush_interval_s=0.05)
    )
    writer.start()
    samples = [synthetic_sample(t, 12) for t in range(10)]
    for sample in samples:
        await writer.write(sample)
    assert await writer.flush(30)
    await writer.close()
    assert writer.counters.dropped == 0
    assert writer.counters.batches >= 3  # batch_rows = 40
    try:
        assert await conn.fetchval("SELECT count(*) FROM book_metrics") == 120
        for i, book in enumerate(identities(12)):
            stored = await metrics_raw(
                conn, venue=book.venue, symbol=book.symbol, start_s=0, end_s=2e9
            )
            assert stored == [s.book_record(i) for s in samples]
        perp = await metrics_raw(
            conn,
            venue=identities(12)[2].venue,
            symbol=identities(12)[2].symbol,
            start_s=0,
            end_s=2e9,
        )
        assert "mark_price" in perp[0] and perp[0]["funding_rate"] == 1e-4
    finally:
        await conn.close()


@pytest.fixture
async def own_server() -> AsyncIterator[EmbeddedPostgres]:
    """A server of this test's own, to stop and start."""
    root = open_tmp_dir("liqmon-test-outage-")
    server = EmbeddedPostgres(root / "postgres")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)
    shutil.rmtree(root, ignore_errors=True)


async def test_database_stopped_mid_run_loses_nothing_keeps_order_and_bounds_memory(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = own_server.dsn
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    # insertion order, to check the writer kept the tick order through the outage
    await conn.execute("ALTER TABLE book_metrics ADD COLUMN seq bigserial")
    await conn.close()
    policy = WriterPolicy(
        batch_rows=50,
        flush_interval_s=0.02,
        memory_rows=200,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
    )
    writer = StoreWriter.for_dsn(dsn, tmp_path / "spill", policy)
    writer.start()
    books, tick = 20, 0
    peak_buffered = 0

    async def write_ticks(n: int) -> None:
        nonlocal tick, peak_buffered
        for _ in range(n):
            await writer.write(synthetic_sample(tick, books))
            tick += 1
            peak_buffered = max(peak_buffered, writer.counters.buffered)
            await asyncio.sleep(0)

    await write_ticks(10)
    assert await writer.flush(30)
    assert writer.counters.written >= 200  # the books, and their state changes

    await asyncio.to_thread(own_server.pg_ctl_stop)
    await write_ticks(60)  # 1200 rows while the database is down: 200 in memory, the rest spilled
    await _wait_for(lambda: not writer.connected.is_set())
    assert writer.counters.buffered <= policy.memory_rows
    assert writer.counters.spilled >= 1000 and writer.spill.size > 0
    assert writer.counters.connect_failures > 0 or not writer.connected.is_set()

    await asyncio.to_thread(own_server.restart)
    await write_ticks(10)  # more rows while the spill drains: they queue behind it
    assert await writer.flush(60)
    c = writer.counters
    assert peak_buffered <= policy.memory_rows
    assert c.dropped == 0 and c.buffered == 0 and c.spill_pending == 0
    assert writer.spill.size == 0  # the spill file was emptied
    await writer.close()

    conn = await asyncpg.connect(own_server.dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM ts)::float8 AS ts, symbol FROM book_metrics ORDER BY seq"
        )
        assert len(rows) == 80 * books  # nothing lost
        assert len({(r["ts"], r["symbol"]) for r in rows}) == len(rows)  # nothing twice
        stamps = [r["ts"] for r in rows]
        assert stamps == sorted(stamps)  # in tick order, across the outage
    finally:
        await conn.close()


async def test_unreachable_database_at_close_leaves_rows_in_the_spill_file_for_the_next_start(
    db_dsn: str, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    policy = WriterPolicy(
        batch_rows=30,
        memory_rows=60,
        flush_interval_s=0.02,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        connect_timeout_s=0.5,
    )
    down = StoreWriter.for_dsn(DEAD_DSN, spill, policy)
    down.start()
    for t in range(10):
        await down.write(synthetic_sample(t, 10))
    await down.close(timeout_s=0.3)
    assert down.counters.written == 0 and down.counters.dropped == 0
    pending = down.counters.spill_pending  # memory went to the file too, first
    assert pending >= 100  # 100 book rows, and their state changes

    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    await conn.execute("ALTER TABLE book_metrics ADD COLUMN seq bigserial")
    up = StoreWriter.for_dsn(db_dsn, spill, policy)
    assert up.counters.spill_pending == pending
    up.start()
    await up.write(synthetic_sample(10, 10))
    assert await up.flush(30)
    await up.close()
    try:
        stamps = [r[0] for r in await conn.fetch("SELECT ts FROM book_metrics ORDER BY seq")]
        assert len(stamps) == 110 and stamps == sorted(stamps)
        assert up.counters.duplicates == 0
    finally:
        await conn.close()


def test_writers_sharing_a_spill_directory_each_hold_their_own_file(tmp_path: Path) -> None:
    """A replay --store beside the daemon (same data dir): one writer per spill file; a file
    left with rows is taken, rows and all, by the next writer."""
    first, second = SpillFile(tmp_path), SpillFile(tmp_path)
    assert first.path != second.path
    first.append("fx_rates", [(timestamp(0), "USDT", 1.0, True, 0.0)])
    first.close()
    second.close()
    again = SpillFile(tmp_path)
    try:
        assert again.path == first.path and again.rows_pending == 1
    finally:
        again.close()


async def test_book_state_changes_are_stored_as_venue_health_events(
    db_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    writer = StoreWriter.for_dsn(db_dsn, tmp_path / "spill", WriterPolicy(flush_interval_s=0.01))
    writer.start()
    samples = [synthetic_sample(t, 10) for t in range(15)]  # one book in 7 syncing, rotating
    expected = set()
    for before, after in itertools.pairwise(samples):
        for i, b in enumerate(after.books):
            if before.book_state[i] != after.book_state[i]:
                to = "live" if after.book_state[i] == 2 else "syncing"
                expected.add((after.ts_ns // 1000, b.venue, b.symbol, f"book_{to}"))
    for sample in samples:
        await writer.write(sample)
    assert await writer.flush(30)
    await writer.close()
    try:
        rows = await conn.fetch(
            "SELECT (extract(epoch FROM ts) * 1e6)::int8 AS us, venue, symbol, event, detail::text AS d"
            " FROM venue_health"
        )
        assert (
            expected and {(r["us"], r["venue"], r["symbol"], r["event"]) for r in rows} == expected
        )
        assert all(json.loads(r["d"])["to"] == r["event"].removeprefix("book_") for r in rows)
    finally:
        await conn.close()
