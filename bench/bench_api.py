"""API latency: history queries through HTTP, and live push fan-out.

1. A 24 h history query at 1-minute buckets for each of 100 books stored for 24 h (one
   sample every ``--tick-s`` seconds, in the embedded PostgreSQL), through
   ``GET /api/v1/history/metrics`` (1,440 buckets, min/max/avg/last of three fields) and
   the same as CSV; and ``GET /api/v1/history/depth`` for an asset (4 venues): p50/p99 of
   the wall time seen by an HTTP client.
2. Live push fan-out: 100 WebSocket clients (in a separate process, so that reading does
   not share the server's event loop) subscribed to every book; each tick's 100 rows go
   to all of them. Latency from the publish (``LiveState.observe``) to each client's
   receipt of that tick, p50/p99/max, and the publish cost per tick (rows built and
   queued for 100 clients; it runs on the daemon's sink task, never on the tick).

    python bench/bench_api.py [--tick-s 10] [--clients 100] [--ticks 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import aiohttp
import asyncpg
import bench_store

from monitor.api.app import ApiContext, ApiServer, build_app
from monitor.api.history import HistorySource
from monitor.api.live import LiveState, PushHub
from monitor.settings import load_settings
from monitor.store.embedded import EmbeddedPostgres
from monitor.store.migrate import migrate
from tests.store.samples import synthetic_sample

START_S = 1_700_002_800.0  # bench_store.FILL's first sample


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(values, 0.5), "p99_ms": _pct(values, 0.99), "n": len(values)}


async def history(dsn: str, tick_s: float, repeat: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()
    await conn.execute(bench_store.FILL, START_S, tick_s, int(86_400 / tick_s))
    await conn.execute("VACUUM ANALYZE book_metrics")
    fill_s = time.perf_counter() - t0
    rows = await conn.fetchval("SELECT count(*) FROM book_metrics")
    books = await conn.fetch("SELECT DISTINCT venue, symbol, base FROM book_metrics")
    await conn.close()
    source = await HistorySource.open(dsn)
    ctx = ApiContext(load_settings([], env={}))
    ctx.history = source
    per_book: list[float] = []
    per_book_csv: list[float] = []
    per_asset: list[float] = []
    span = {"from": str(int(START_S * 1000)), "to": str(int((START_S + 86_400) * 1000))}
    try:
        async with (
            ApiServer(build_app(ctx), ("127.0.0.1", 0)) as server,
            aiohttp.ClientSession() as http,
        ):
            url = f"{server.url}/api/v1/history"
            for _ in range(repeat):
                for b in books:
                    params = span | {
                        "venue": b["venue"],
                        "symbol": b["symbol"],
                        "interval": "1m",
                        "fields": "depth_1pct_usd,spread_bps,mid",
                        "limit": "10000",
                    }
                    q0 = time.perf_counter()
                    async with http.get(f"{url}/metrics", params=params) as r:
                        body = await r.json()
                    per_book.append(time.perf_counter() - q0)
                    assert r.status == 200 and len(body["buckets"]) == 1440, body
                    q0 = time.perf_counter()
                    async with http.get(f"{url}/metrics", params=params | {"format": "csv"}) as r:
                        text = await r.text()
                    per_book_csv.append(time.perf_counter() - q0)
                    assert text.count("\n") == 1441
                for base in sorted({b["base"] for b in books})[:25]:
                    params = span | {"asset": base, "interval": "1m", "limit": "10000"}
                    q0 = time.perf_counter()
                    async with http.get(f"{url}/depth", params=params) as r:
                        body = await r.json()
                    per_asset.append(time.perf_counter() - q0)
                    assert r.status == 200 and len(body["buckets"]) == 1440 * 4
    finally:
        await source.close()
    return {
        "books": len(books),
        "rows": rows,
        "tick_s": tick_s,
        "fill_s": round(fill_s, 1),
        "metrics_24h_1m_per_book_json": _stats(per_book),
        "metrics_24h_1m_per_book_csv": _stats(per_book_csv),
        "depth_24h_1m_per_asset_4_venues": _stats(per_asset),
    }


# --- fan-out --------------------------------------------------------------------------------
def _clients_main(url: str, n: int, ticks: int, conn: Any) -> None:
    """Child process: ``n`` clients; sends back every (tick ts, receipt time) pair."""

    async def main() -> list[tuple[int, float]]:
        got: list[tuple[int, float]] = []
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(url, max_msg_size=0) for _ in range(n)]
            conn.send("connected")

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                seen = 0
                async for msg in ws:
                    now = time.time()
                    if msg.type != aiohttp.WSMsgType.TEXT or not msg.data.startswith(
                        '{"type":"tick"'
                    ):
                        continue
                    ts = int(msg.data[msg.data.index('"ts":') + 5 : msg.data.index(",", 20)])
                    got.append((ts, now))
                    seen += 1
                    if seen == ticks:
                        return

            await asyncio.wait_for(asyncio.gather(*(read(ws) for ws in sockets)), 300)
            for ws in sockets:
                await ws.close()
        return got

    conn.send(asyncio.run(main()))


async def fanout(n_clients: int, ticks: int, books: int, period_s: float) -> dict[str, Any]:
    live = LiveState(PushHub(queue_size=256, max_clients=n_clients + 10))
    ctx = ApiContext(load_settings([], env={}), live)
    samples = [synthetic_sample(t, books) for t in range(ticks)]
    live.observe(samples[0])  # the state exists before clients connect
    async with ApiServer(build_app(ctx), ("127.0.0.1", 0)) as server:
        url = server.url.replace("http://", "ws://") + "/api/v1/live/ws?kinds=tick"
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(
            target=_clients_main, args=(url, n_clients, ticks, child), daemon=True
        )
        proc.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, parent.recv)  # "connected"
        while len(live.hub.clients) < n_clients:
            await asyncio.sleep(0.01)
        sent: dict[int, float] = {}
        base_ms = int(time.time() * 1000)
        publish: list[float] = []
        max_queue = 0
        for t in range(ticks):
            ts_ms = base_ms + t  # the tick's identity in the pushed message
            s = dataclasses.replace(samples[t], ts_ns=ts_ms * 1_000_000)
            p0 = time.perf_counter()
            sent[ts_ms] = time.time()
            live.observe(s)
            publish.append(time.perf_counter() - p0)
            max_queue = max(max_queue, live.hub.max_queue_depth())
            await asyncio.sleep(period_s)
        got = await loop.run_in_executor(None, parent.recv)
        proc.join(30)
    latencies = [now - sent[ts] for ts, now in got if ts in sent]
    return {
        "clients": n_clients,
        "books_per_tick": books,
        "ticks": ticks,
        "tick_period_s": period_s,
        "deliveries": len(latencies),
        "expected_deliveries": n_clients * ticks,
        "dropped_clients": live.hub.dropped_total,
        "message_bytes": len(json.dumps({"type": "tick", "rows": live.rows})),
        "publish_to_receipt": {
            **_stats(latencies),
            "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        },
        "publish_per_tick": _stats(publish),
        "deepest_client_queue": max_queue,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["fanout"] = await fanout(args.clients, args.ticks, args.books, args.period_s)
    print(json.dumps(results["fanout"], indent=1), flush=True)
    root = Path(tempfile.mkdtemp(prefix="liqmon-bench-api-", dir="/tmp"))
    root.chmod(0o755)  # root: the server's user must enter it
    server = EmbeddedPostgres(root / "postgres")
    try:
        dsn = await asyncio.to_thread(server.start)
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        results["postgres"] = await conn.fetchval("SHOW server_version")
        await conn.close()
        results["history"] = await history(dsn, args.tick_s, args.repeat)
        print(json.dumps(results["history"], indent=1), flush=True)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tick-s", type=float, default=10.0, help="seconds between stored samples")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--books", type=int, default=100)
    ap.add_argument("--period-s", type=float, default=0.05, help="seconds between ticks")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    _common.quiet_logs()
    results = asyncio.run(main_async(args))
    results["machine"] = _common.machine()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
