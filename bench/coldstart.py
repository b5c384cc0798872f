"""Cold start: time from the daemon's start to every configured book valid, against the local
exchange serving Binance spot, with Binance's REST weights and limits.

For each ``--books`` size and ``--limits`` snapshot depth: the local exchange (``feeds.sim``,
Binance spot, the first N instruments (USDT pairs first) of the cached copy, 50 levels a side, a market
of ``--rate`` updates/s so that deltas flow and buffer before the snapshots) and a
:class:`monitor.daemon.Daemon` wired as ``liqmon run`` wires it (instruments over REST,
kernels warmed up, connections within 200 streams and 1 new connection/s, REST snapshots
within the venue's weight budget). Same process, one event loop: the exchange's CPU is
charged to the same core, so the figures are an upper bound.

The exchange's request log is the check: every request it answered, with its time; the
weight of each (``depth`` by its ``limit`` as Binance weighs it, ``exchangeInfo`` 20) is
summed over every sliding 60 s window and compared to Binance spot's 6,000/min; any
answer other than 200 (a 429 or 418 would be Binance's) counts as a limit exceeded.

Run: ``python bench/coldstart.py --books 60,200,500 --limits 100,1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


async def one(
    books: int, limit: int, rate: float, timeout_s: float, start_limit: int | None = None
) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415

    from feeds.binance import SPOT  # noqa: PLC0415
    from feeds.sim.base import ExchangeSim  # noqa: PLC0415
    from feeds.sim.exchange import add_books, all_protocols, settings_toml  # noqa: PLC0415
    from feeds.venues import ADAPTERS  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415
    from monitor.domain import Venue  # noqa: PLC0415
    from monitor.instruments import InstrumentRegistry  # noqa: PLC0415
    from monitor.settings import load_settings  # noqa: PLC0415

    venue = Venue.BINANCE
    registry = InstrumentRegistry.load_cached([venue])
    ranked = sorted((i.quote != "USDT", i.symbol) for i in registry.venue_instruments(venue))
    async with ExchangeSim(all_protocols([venue])) as sim:
        names: list[str] = []
        for _, symbol in ranked:  # USDT pairs first
            if len(names) == books:
                break
            try:
                (book,) = add_books(sim, registry, venue, [symbol], levels=50)
            except (ArithmeticError, ValueError):  # the exchange cannot shape a book for it
                continue
            if not (book.bids and book.asks):  # a book with an empty side is never valid
                sim.books.pop((venue, symbol), None)
                continue
            names.append(symbol)
        assert len(names) == books, f"only {len(names)} instruments usable"
        extra = f"[venues.{venue.value}]\nsnapshot_limit = {limit}\n"
        if start_limit is not None:  # None: the shipped start_snapshot_limit
            extra += f"start_snapshot_limit = {start_limit}\n"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cold.toml"
            text = settings_toml({venue: names}, port=sim.port)
            path.write_text(text.replace("[venues.binance]\n", extra, 1))
            settings = load_settings([path], env={})
        market = asyncio.ensure_future(sim.run_market(rate))
        async with aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            loop_t0 = asyncio.get_running_loop().time()
            daemon = Daemon(settings, http, ADAPTERS, health_interval_s=3600.0)
            task = asyncio.ensure_future(daemon.run())
            valid_s = None
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        await asyncio.sleep(0.05)
                        if task.done():
                            task.result()
                        if daemon.pipeline is None:
                            continue
                        state = daemon.health_state().get(venue.value)
                        if not state or state["books"] != books:
                            continue
                        if valid_s is None and state["valid_books"] == books:
                            valid_s = time.monotonic() - t0
                        if state["full_depth_books"] == books:
                            break
                elapsed = time.monotonic() - t0
                state = daemon.health_state()[venue.value]
            finally:
                task.cancel()
                market.cancel()
                with contextlib.suppress(BaseException):
                    await task
    log = [r for r in sim.requests if r.venue is venue and r.at >= loop_t0]
    stamps: list[tuple[float, int]] = []
    for r in log:
        if r.path.endswith("/depth"):
            weight = SPOT.snapshot_weight(int(r.query.get("limit", "100")))
        else:
            weight = SPOT.instruments_weight
        stamps.append((r.at, weight))
    worst = 0
    for i, (at, _) in enumerate(stamps):
        worst = max(worst, sum(w for t, w in stamps[i:] if t - at < 60.0))
    return {
        "books": books,
        "limit": limit,
        "valid_s": valid_s,
        "full_s": elapsed,
        "deepens": state["deepens_ok"],
        "deepens_failed": state["deepens_failed"],
        "requests": len(log),
        "refused": sum(1 for r in log if r.status != 200),
        "weight": sum(w for _, w in stamps),
        "worst_60s_weight": worst,
        "weight_limit": SPOT.weight_limit_per_minute,
        "connections": len(sim.connections),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", default="60,200,500")
    parser.add_argument("--limits", default="100,1000")
    parser.add_argument("--rate", type=float, default=500.0, help="exchange updates/s")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument(
        "--start-limit",
        type=int,
        default=None,
        help="start_snapshot_limit (default: the shipped one; 0: every snapshot at --limits)",
    )
    args = parser.parse_args(argv)
    from _common import quiet_logs  # noqa: PLC0415

    quiet_logs()
    for books in (int(b) for b in args.books.split(",")):
        for limit in (int(x) for x in args.limits.split(",")):
            r = asyncio.run(one(books, limit, args.rate, args.timeout_s, args.start_limit))
            print(
                f"{r['books']:4d} books, depth {r['limit']:5d}: all valid after "
                f"{r['valid_s']:6.1f} s, all at depth {r['limit']} after {r['full_s']:6.1f} s "
                f"({r['deepens']} deepened, {r['deepens_failed']} deepens failed); "
                f"{r['requests']} REST requests, weight {r['weight']:,} "
                f"(worst 60 s window {r['worst_60s_weight']:,} of {r['weight_limit']:,}), "
                f"{r['refused']} refused, {r['connections']} websocket connections",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
