"""The page while ``liqmon demo`` runs: the demo serves the API at api.listen, says where,
and the live endpoints fill with the scenario's books as the collapse plays."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_demo_serves_the_page_and_live_data(tmp_path: Path) -> None:
    port = _free_port()
    env = os.environ | {
        "LIQMON_API__LISTEN": f"127.0.0.1:{port}",
        "LIQMON_MONITOR__LOG_LEVEL": "error",
    }
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "monitor", "demo", "--speed", "300", "--hours", "2"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "the demo ended before saying where the page is"
                if "the page:" in line:
                    break
        assert f"http://127.0.0.1:{port}/" in line
        seen_assets: set[str] = set()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 200 and "liqmon" in await r.text()
            async with asyncio.timeout(60):
                while len(seen_assets) < 4:
                    async with http.get(f"http://127.0.0.1:{port}/api/v1/live/metrics") as r:
                        if r.status == 200:
                            body = await r.json()
                            seen_assets = {a["asset"] for a in body["assets"]}
                            seen_assets &= {r["asset"] for r in body["rows"] if r["valid"]}
                    await asyncio.sleep(0.2)
        assert {"BTC", "ETH", "SOL"} <= seen_assets
        out, err = await asyncio.wait_for(proc.communicate(), 150)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "summary:" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
