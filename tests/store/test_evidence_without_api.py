"""`liqmon run` with the API switched off still keeps the black box: a firing alert's raw
frames and book snapshots are stored (they are read later with `liqmon serve`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zlib
from pathlib import Path

import asyncpg
import msgspec

from monitor.domain import Venue
from tests.e2e.harness import exchange, write_settings

ROOT = Path(__file__).resolve().parents[2]
BOOKS = {Venue.OKX: ["BTC-USDT"]}

RULES = """
[[rules]]
name = "any_spread"
metric = "spread_bps"
condition = "above"
threshold = 0.0
severity = "warning"
summary = "{venue} {symbol}: spread {value}"
"""


async def _evidence(dsn: str) -> tuple[int, int, bytes | None]:
    """(frame rows, evidence snapshots, the first frame row's body), 0s while not there."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return 0, 0, None
    try:
        frames = await conn.fetch("SELECT body FROM alert_evidence_frames")
        snaps = await conn.fetchval("SELECT count(*) FROM book_snapshots WHERE reason = 'evidence'")
        return len(frames), int(snaps), (bytes(frames[0]["body"]) if frames else None)
    except asyncpg.UndefinedTableError:
        return 0, 0, None
    finally:
        await conn.close()


async def test_a_firing_alert_takes_its_evidence_with_the_api_off(
    tmp_path: Path, db_dsn: str
) -> None:
    async with exchange(BOOKS) as sim:
        write_settings(tmp_path, sim, BOOKS, tick_ms=100)
        rules = tmp_path / "rules.toml"
        rules.write_text(RULES)
        config = tmp_path / "sim.toml"
        config.write_text(
            config.read_text()
            + "\n[api]\nenabled = false\n"
            + f'\n[alerts]\nenabled = true\nrules_files = ["{rules}"]\n'
            + "\n[database]\nevidence_frames_before_s = 5.0\nevidence_frames_after_s = 0.5\n"
            + "evidence_window_s = 5.0\nevidence_every_s = 0.2\n"
        )
        env = os.environ | {"LIQMON_DATABASE__DSN": db_dsn, "PYTHONUNBUFFERED": "1"}
        err = tmp_path / "run.err"
        command = [
            sys.executable, "-m", "monitor", "run", "--config", str(config),
            "--data-dir", str(tmp_path / "data"), "--log-format", "json",
        ]  # fmt: skip
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err.open("wb")
        )
        try:
            async with asyncio.timeout(90):
                while True:
                    sim.step()
                    frames, snaps, body = await _evidence(db_dsn)
                    if frames and snaps:
                        break
                    assert proc.poll() is None, err.read_text()[-2000:]
                    await asyncio.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(30)
    assert body is not None
    lines = zlib.decompress(body).decode().splitlines()
    records = [msgspec.json.decode(line) for line in lines]
    assert records and all("BTC-USDT" in str(r) for r in records)
    text = err.read_text()
    assert "Traceback" not in text
    assert "api.listen" not in text  # no server was started
