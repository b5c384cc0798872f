"""cryptofeed's Binance spot handler as a blast peer (bench/blast.py ``--cryptofeed PYTHON``).

Runs in its own interpreter, the one of a virtual environment with cryptofeed installed
(never a liqmon dependency: ``python -m venv /tmp/cfvenv && /tmp/cfvenv/bin/pip install
cryptofeed``). It imports nothing from liqmon. cryptofeed's hosts are class attributes,
so the bench subclasses its ``Binance`` feed: the websocket endpoint is the blast server,
the symbol table comes from the stream's instruments rather than the venue's
exchangeInfo, and ``_snapshot`` takes the REST answers the stream was made with rather
than fetching them. Everything else is cryptofeed's own: its connection handler
(websockets), its combined-stream message handler (JSON with Decimal), the update-id
check and its C order book.

Input: a pickle with ``port``, ``frames`` (how many to read), ``symbols`` ([(symbol, base,
quote, tick)]) and ``snapshots`` ({symbol: REST answer}). Output, one JSON line: the
time of the last frame (``time.time_ns()``), the CPU seconds (``getrusage``) from the
connect to the last frame, books seen, updates applied, and the resets cryptofeed made
(a gap it saw: the stream must never give it one).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import resource
import sys
import time
from decimal import Decimal
from typing import Any


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(path: str) -> None:
    import logging  # noqa: PLC0415

    from cryptofeed.connection import WebsocketEndpoint  # noqa: PLC0415
    from cryptofeed.defines import L2_BOOK  # noqa: PLC0415
    from cryptofeed.exchanges import Binance  # noqa: PLC0415
    from cryptofeed.symbols import Symbols  # noqa: PLC0415
    from cryptofeed.types import OrderBook  # noqa: PLC0415

    with open(path, "rb") as f:
        job: dict[str, Any] = pickle.load(f)
    n = job["frames"]
    snapshots: dict[str, str] = job["snapshots"]
    info = {
        "symbols": [
            {
                "symbol": symbol,
                "baseAsset": base,
                "quoteAsset": quote,
                "status": "TRADING",
                "filters": [{"tickSize": tick}],
            }
            for symbol, base, quote, tick in job["symbols"]
        ]
    }
    syms, extra = Binance._parse_symbol_data(info)
    Symbols.set(Binance.id, syms, extra)
    logging.getLogger("feedhandler").setLevel(logging.ERROR)
    state = {"frames": 0, "updates": 0, "resets": 0, "last_ns": 0}
    done = asyncio.Event()

    import cryptofeed.feed  # noqa: PLC0415
    from cryptofeed.connection import WSAsyncConn  # noqa: PLC0415

    class LocalConn(WSAsyncConn):  # type: ignore[misc]
        """cryptofeed accepts wss:// addresses only: the blast server speaks plain ws."""

        def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
            super().__init__(address.replace("ws://", "wss://", 1), *args, **kwargs)
            self.address = address

    cryptofeed.feed.WSAsyncConn = LocalConn  # the name Feed.connect builds connections with

    class LocalBinance(Binance):  # type: ignore[misc]
        websocket_endpoints = (WebsocketEndpoint(f"ws://127.0.0.1:{job['port']}"),)

        async def _snapshot(self, pair: str) -> None:
            """cryptofeed's own _snapshot, with the answer the stream was made with."""
            resp = json.loads(snapshots[pair], parse_float=Decimal)
            std_pair = self.exchange_symbol_to_std_symbol(pair)
            self.last_update_id[std_pair] = resp["lastUpdateId"]
            self._l2_book[std_pair] = OrderBook(
                self.id,
                std_pair,
                max_depth=self.max_depth,
                bids={Decimal(u[0]): Decimal(u[1]) for u in resp["bids"]},
                asks={Decimal(u[0]): Decimal(u[1]) for u in resp["asks"]},
            )

        def _reset(self) -> None:
            state["resets"] += 1
            super()._reset()

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            await super().message_handler(msg, conn, timestamp)
            state["frames"] += 1
            if state["frames"] >= n and not done.is_set():
                state["last_ns"] = time.time_ns()
                done.set()

    async def on_book(_book: Any, _receipt: float) -> None:
        state["updates"] += 1

    async def run() -> None:
        feed = LocalBinance(
            symbols=sorted(syms),
            channels=[L2_BOOK],
            callbacks={L2_BOOK: on_book},
            depth_interval="100ms",
        )
        state["resets"] = 0  # the constructor's own reset
        c0 = cpu_s()
        feed.start(asyncio.get_running_loop())
        await asyncio.wait_for(done.wait(), 600.0)
        cpu = cpu_s() - c0
        feed.stop()
        print(
            json.dumps(
                {
                    "last_ns": state["last_ns"],
                    "cpu_s": cpu,
                    "frames": state["frames"],
                    "books": len(feed._l2_book),
                    "updates": state["updates"],
                    "resets": state["resets"] - 1,  # subscribe() resets once on connect
                }
            ),
            flush=True,
        )

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1])
