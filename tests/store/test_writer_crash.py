"""kill -9 of a writer process mid-run, then a restart: no duplicates, nothing lost, and at
most the unacknowledged batch sent again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from monitor.store.migrate import migrate
from monitor.store.writer import SpillFile, StoreWriter, WriterPolicy
from tests.store.samples import synthetic_sample

ROOT = Path(__file__).resolve().parents[2]
DEAD_DSN = "postgresql://postgres@/postgres?host=/nonexistent-liqmon-socket-dir"


def _writer(dsn: str, spill: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.writer_proc", dsn, str(spill), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT), "LIQMON_MONITOR__LOG_FORMAT": "json"},
    )  # fmt: skip


def _last(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


async def test_kill_9_while_draining_the_spill_file_then_restart_stores_every_row_once(
    db_dsn: str, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    try:
        # 1. the database is unreachable: 200 ticks x 100 books end up in the spill file
        down = _last(_writer(DEAD_DSN, spill, "--ticks", "200", "--close-timeout", "0.2"))
        total = down["counters"]["spill_pending"]  # 20,000 book rows and their state changes
        assert total > 20_000 and down["counters"]["dropped"] == 0
        count_all = (
            "SELECT (SELECT count(*) FROM book_metrics) + (SELECT count(*) FROM venue_health)"
        )

        # 2. a writer drains it and is killed -9 once it has acknowledged two batches
        proc = _writer(db_dsn, spill)
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line).get("batch", 0) >= 2:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        stored = await conn.fetchval(count_all)
        assert 0 < stored < total  # killed mid-run, two batches (or more) in

        # 3. a restart finishes from the acknowledged offset
        up = _last(_writer(db_dsn, spill))
        counters = up["counters"]
        assert counters["duplicates"] <= 500  # at most the batch that was in flight
        assert counters["written"] - counters["duplicates"] == total - stored
        assert counters["spill_pending"] == 0 and counters["dropped"] == 0
        assert await conn.fetchval(count_all) == total
        assert await conn.fetchval("SELECT count(*) FROM book_metrics") == 20_000
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM (SELECT DISTINCT venue, symbol, ts FROM book_metrics) AS d"
            )
            == 20_000
        )
        assert (spill / "store.spill").stat().st_size == 0
    finally:
        await conn.close()


async def test_a_batch_committed_but_not_acknowledged_is_sent_again_and_adds_nothing(
    db_dsn: str, tmp_path: Path
) -> None:
    """The worst moment for a crash, reproduced on disk: the database committed the batch,
    the offset file still points before it."""
    spill_dir = tmp_path / "spill"
    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    policy = WriterPolicy(
        batch_rows=100,
        memory_rows=100,
        flush_interval_s=0.01,
        connect_timeout_s=0.5,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )
    try:
        down = StoreWriter.for_dsn(DEAD_DSN, spill_dir, policy)
        for tick in range(10):
            await down.write(synthetic_sample(tick, 50))
        await down.close(timeout_s=0.1)
        total = down.counters.spill_pending  # 500 book rows and their state changes
        spill = SpillFile(spill_dir)
        frames = list(spill.frames())
        spill.close()
        # the first two frames (100 rows) reach the database ...
        first = StoreWriter.for_dsn(db_dsn, spill_dir, policy)
        first.start()
        assert await first.flush(30)
        await first.close()
        assert await conn.fetchval("SELECT count(*) FROM book_metrics") == 500
        # ... then the crash state: everything from the second batch on "not acknowledged"
        rows_before = sum(len(rows) for _, rows, _ in frames[:2])
        assert (spill_dir / "store.spill").read_bytes() == b""  # drained and truncated
        # rebuild the file as it was, with the offset after the first batch only
        again = SpillFile(spill_dir)
        for table, rows, _ in frames:
            again.append(table, [tuple(r) for r in rows])
        again.acknowledge(frames[1][2], rows_before)
        again.close()
        restarted = StoreWriter.for_dsn(db_dsn, spill_dir, policy)
        assert restarted.counters.spill_pending == total - rows_before
        restarted.start()
        assert await restarted.flush(30)
        await restarted.close()
        assert restarted.counters.duplicates == total - rows_before
        assert await conn.fetchval("SELECT count(*) FROM book_metrics") == 500
    finally:
        await conn.close()
