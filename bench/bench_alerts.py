"""Alert delivery benchmark: threshold-crossing tick -> webhook request received on loopback,
and the deliveries per second the dispatcher sustains.

The receiver runs in its own process (aiohttp on 127.0.0.1, verifying the HMAC signature
and stamping each request with CLOCK_MONOTONIC, which both processes share). The monitor
side is the daemon's path: AlertEngineSink.process(frame) evaluates the rules over every
series of the tick (200 books here), routes the notification, stores it in the outbox
(memory, or the embedded PostgreSQL: store first), wakes the dispatcher, which signs and
POSTs it.

    python bench/bench_alerts.py [--crossings 200] [--deliveries 2000] [--no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, quiet_logs  # noqa: F401 (puts the repo on sys.path)

from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher, DispatchPolicy
from alerts.engine import GroupingPolicy
from alerts.outbox import MemoryOutbox, Outbox, deliveries_for
from alerts.rules import Condition, Frame, RuleSpec, Scope
from alerts.subscriptions import Channel, SubscriptionSpec
from monitor.alerting import AlertEngineSink, RuleRunner

SECRET = "bench-secret"
RECEIVER = r"""
import asyncio, hashlib, hmac, json, sys, time
from aiohttp import web
SECRET = sys.argv[1].encode()
seen = {}
async def hook(request):
    raw = await request.read()
    sig = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    if request.headers.get("X-Liqmon-Signature") != sig:
        return web.Response(status=401)
    seen.setdefault(request.headers["Idempotency-Key"], time.monotonic_ns())
    return web.Response(status=204)
async def stats(request):
    return web.json_response(seen)
async def main():
    app = web.Application()
    app.router.add_post("/hook/{n}", hook)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

RULE = RuleSpec(
    name="depth_low",
    metric="depth_usd.1.min",
    condition=Condition.BELOW,
    threshold=100_000,
    severity="warning",
)
BOOKS = [Scope("binance", f"C{i}USDT", f"C{i}", f"C{i}-USDT", "spot") for i in range(200)]
POLICY = DispatchPolicy(
    retry_initial_s=0.01, retry_max_s=0.1, rate_per_s=1e6, target_rate_per_s=1e6,
    webhook_rate_per_s=1e6, poll_s=0.5,
)  # fmt: skip


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def stats(port: int) -> dict[str, int]:
    import aiohttp  # noqa: PLC0415

    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{port}/stats") as r,
    ):
        data: dict[str, int] = await r.json()
        return data


def frame(t_ns: int, low: int | None) -> Frame:
    f = Frame(t_ns)
    for i, scope in enumerate(BOOKS):
        f.add(RULE.metric, scope, 5_000.0 if i == low else 1_000_000.0)
    return f


async def latency(port: int, outbox: Outbox, crossings: int) -> list[float]:
    sub = SubscriptionSpec(
        name="bench", channel=Channel.WEBHOOK, url=f"http://127.0.0.1:{port}/hook/0",
        secret_env="BENCH_SECRET",
    )  # fmt: skip
    sender = WebhookSender(allow_private_urls=True, env={"BENCH_SECRET": SECRET})
    dispatcher = Dispatcher(outbox, {Channel.WEBHOOK: sender}, POLICY)
    sink = AlertEngineSink(
        RuleRunner([RULE], GroupingPolicy(group_wait_s=0, group_interval_s=0)),
        [sub],
        outbox,
        wake=dispatcher.wake,
    )
    task = asyncio.create_task(dispatcher.run())
    crossed_at: dict[str, int] = {}
    try:
        for n in range(crossings):
            low = n % len(BOOKS)
            t0 = time.monotonic_ns()
            await sink.process(frame(time.time_ns(), low))  # the tick that crosses
            for d in sink.last_deliveries:
                crossed_at[d.idempotency_key] = t0
            await asyncio.sleep(0.01)  # ticks apart
            await sink.process(frame(time.time_ns(), None))  # back to normal: resolved
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = await stats(port)
            if all(k in seen for k in crossed_at):
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sender.close()
    return [(seen[k] - t0) / 1e6 for k, t0 in crossed_at.items() if k in seen]


async def throughput(port: int, outbox: Outbox, n: int, lanes: int) -> float:
    from tests.alerts.test_delivery import notifications  # noqa: PLC0415

    subs = [
        SubscriptionSpec(
            name=f"s{k}",
            channel=Channel.WEBHOOK,
            url=f"http://127.0.0.1:{port}/hook/{k}",
            secret_env="BENCH_SECRET",
        )
        for k in range(lanes)
    ]
    notes = notifications(n // lanes)
    deliveries = deliveries_for(notes, subs)
    for i in range(0, len(deliveries), 500):
        await outbox.store([], deliveries[i : i + 500])
    sender = WebhookSender(allow_private_urls=True, env={"BENCH_SECRET": SECRET})
    dispatcher = Dispatcher(outbox, {Channel.WEBHOOK: sender}, POLICY)
    keys = {d.idempotency_key for d in deliveries}
    t0 = time.perf_counter()
    task = asyncio.create_task(dispatcher.run())
    try:
        while dispatcher.stats.sent < len(deliveries):
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sender.close()
    seen = await stats(port)
    assert keys <= set(seen), "every delivery received"
    return len(deliveries) / elapsed


async def pg_outbox(root: Path) -> tuple[Any, Outbox]:
    import asyncpg  # noqa: PLC0415

    from alerts.pg_outbox import PgOutbox  # noqa: PLC0415
    from monitor.store.embedded import EmbeddedPostgres  # noqa: PLC0415
    from monitor.store.migrate import migrate  # noqa: PLC0415

    server = EmbeddedPostgres(root / "postgres")
    await asyncio.to_thread(server.start)
    conn = await asyncpg.connect(server.dsn)
    await migrate(conn)
    await conn.execute("TRUNCATE alert_delivery_attempts, alert_outbox, alert_events")
    await conn.close()
    return server, PgOutbox(server.dsn)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crossings", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, SECRET], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    try:
        kinds: list[str] = ["memory"] if args.no_pg else ["memory", "postgres"]
        for kind in kinds:
            root = Path(tempfile.mkdtemp(prefix="liqmon-bench-alerts-", dir="/tmp"))
            root.chmod(0o755)
            server = None
            try:
                if kind == "memory":
                    box: Outbox = MemoryOutbox()
                else:
                    server, box = await pg_outbox(root)
                ms = await latency(port, box, args.crossings)
                rate1 = await throughput(port, box, args.deliveries // 4, 1)
                rate = await throughput(port, box, args.deliveries, 20)
                results[kind] = {
                    "crossings": len(ms),
                    "p50_ms": round(statistics.median(ms), 2),
                    "p99_ms": round(pct(ms, 0.99), 2),
                    "max_ms": round(max(ms), 2),
                    "deliveries_per_s_1_lane": round(rate1),
                    "deliveries_per_s_20_lanes": round(rate),
                }
                await box.close()
            finally:
                if server is not None:
                    await asyncio.to_thread(server.stop)
                shutil.rmtree(root, ignore_errors=True)
            print(f"{kind:9s} {results[kind]}")
    finally:
        proc.kill()
        proc.wait()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
