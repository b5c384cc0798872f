"""kill -9 of `liqmon run` while it stores, then a restart on the same data directory: the
daemon comes back without a traceback, keeps storing, and no row is stored twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg

from feeds.sim.base import ExchangeSim
from monitor.domain import Venue
from tests.e2e.harness import exchange, write_settings

ROOT = Path(__file__).resolve().parents[2]
BOOKS = {Venue.BINANCE: ["BTCUSDT", "ETHUSDT"], Venue.OKX: ["BTC-USDT"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _count(dsn: str) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return 0
    try:
        return int(await conn.fetchval("SELECT count(*) FROM book_metrics"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def _until_rows(
    dsn: str, at_least: int, proc: subprocess.Popen[bytes], sim: ExchangeSim
) -> int:
    """Move the market (rows are written for books that changed) until enough are stored."""
    async with asyncio.timeout(90):
        while True:
            sim.step()
            n = await _count(dsn)
            if n >= at_least:
                return n
            assert proc.poll() is None, "liqmon run exited"
            await asyncio.sleep(0.05)


async def test_kill_9_of_the_daemon_then_restart_stores_on_without_duplicates(
    tmp_path: Path, db_dsn: str
) -> None:
    async with exchange(BOOKS) as sim:
        write_settings(tmp_path, sim, BOOKS, tick_ms=100)
        config = tmp_path / "sim.toml"
        config.write_text(config.read_text() + f'\n[api]\nlisten = "127.0.0.1:{_free_port()}"\n')
        data_dir = tmp_path / "data"
        env = os.environ | {"LIQMON_DATABASE__DSN": db_dsn, "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable, "-m", "monitor", "run", "--config", str(config),
            "--data-dir", str(data_dir), "--log-format", "json",
        ]  # fmt: skip

        def start(name: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / name).open("wb"),
            )

        first = start("first.err")
        try:
            before = await _until_rows(db_dsn, 10, first, sim)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        second = start("second.err")
        try:
            after = await _until_rows(db_dsn, before + 10, second, sim)
        finally:
            second.send_signal(signal.SIGINT)
            second.wait(30)
    assert after > before
    conn = await asyncpg.connect(db_dsn)
    try:
        total, distinct = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (venue, symbol, ts)) FROM book_metrics"
        )
        books = {r[0] for r in await conn.fetch("SELECT DISTINCT symbol FROM book_metrics")}
    finally:
        await conn.close()
    assert total == distinct  # nothing stored twice
    assert books  # books of both runs were stored
    errors = (tmp_path / "second.err").read_text()
    assert "Traceback" not in errors, errors[-2000:]
    assert second.returncode in (0, 130), errors[-2000:]
