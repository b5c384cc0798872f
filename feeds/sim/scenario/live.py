"""A scenario played live on the local exchange, time-compressed (``liqmon demo``).

The books of :class:`~feeds.sim.scenario.core.Scenario` are generated chunk by chunk and
applied to the :class:`~feeds.sim.base.ExchangeSim` books at ``speed`` x scenario time, so
every venue's protocol object formats the updates (Binance ``depthUpdate`` + REST snapshots,
USD-M ``markPriceUpdate``, Coinbase ``l2_data``, OKX ``books``) and the monitor connects
exactly as it would to the real venues. At high speed several scenario steps are merged
into one update per book (net changes), at most ``updates_per_s`` per book and wall second.

Feed faults on the live exchange: dropped diffs (``lose_next``: a hole in the ids, the
monitor resyncs over REST), REST 503 for the first scenario minute of the fault window,
V1 frozen (``set_silent``) and V4 disconnected (connections dropped while the window
lasts). Latency is not emulated live (the recording has it). Mark prices follow the
book's mid here (the exchange's own rule), not the scenario's median formula.

Run as a process: ``python -m feeds.sim.scenario.live --port P --speed S`` prints one JSON
line ``{"ready": ..., "port": ..., "wall_start": ..., "scenario_start_ns": ..., "speed":
...}`` once the books are ready, ``{"started": true, "wall_start": ...}`` when pacing starts,
``{"t": <scenario ns>, "w": <wall s>}`` about every 0.1 s (where the exchange really is: it
may lag the nominal speed on a busy machine), and ``{"done": true}`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from feeds.sim.base import Change, ExchangeSim
from feeds.sim.scenario import spec
from feeds.sim.scenario.books import Chunk
from feeds.sim.scenario.core import Scenario, _protocol, sim_book
from feeds.sim.scenario.spec import MINUTE_NS
from feeds.sim.scenario.writer import plan_faults
from monitor.domain import Venue


class LivePlayer:
    """Plays a scenario into an ExchangeSim (see the module doc)."""

    def __init__(
        self,
        sc: Scenario,
        speed: float,
        *,
        updates_per_s: float = 4.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.sc = sc
        self.speed = speed
        venues = sorted({b.venue for b in sc.books}, key=lambda v: v.value)
        self.sim = ExchangeSim([_protocol(v) for v in venues], host=host, port=port)
        self.steps_per_update = max(1, math.ceil((1000.0 / sc.step_ms) * speed / updates_per_s))
        self.plan = plan_faults(sc)
        self.snapshot_steps = {i: {0} for i in range(len(sc.books))}
        self._chunks = sc.chunks(self.snapshot_steps, chunk_steps=60)
        self._pending = next(self._chunks)
        self.wall_start = 0.0
        _k0, _k1, per_book = self._pending
        for i, (b, chunks) in enumerate(zip(sc.books, per_book, strict=True)):
            book = sim_book(b, float(sc.paths.books[i].mid[0]))
            bp, bq, ap, aq = chunks[0].snapshots[0]
            book.bids = dict(zip(bp.tolist(), bq.tolist(), strict=True))
            book.asks = dict(zip(ap.tolist(), aq.tolist(), strict=True))
            book.mark_px = (max(book.bids) + min(book.asks)) // 2
            self.sim.books[(b.venue, b.symbol)] = book
        self._dropped_steps: dict[int, set[int]] = {}
        for i, k in self.plan.dropped:
            self._dropped_steps.setdefault(k, set()).add(i)
        self.step_wall = sc.step_ms / 1000.0 / speed

    def scenario_ns(self, wall: float) -> int:
        """Scenario time at a wall-clock time (epoch seconds)."""
        return int(self.sc.paths.start_ns + (wall - self.wall_start) * self.speed * 1e9)

    async def play(self, progress: Callable[[int], None] | None = None) -> None:
        """Pace the scenario to its end (the books start at step 0, already served)."""
        sc = self.sc
        loop = asyncio.get_running_loop()
        self.wall_start = time.time()
        start_loop = loop.time()
        t_ns = sc.paths.t_ns
        books = sc.books
        carry: list[dict[tuple[int, int], int]] = [{} for _ in books]
        group_end = 1
        silent_now: set[Venue] = set()
        faults = self._fault_schedule()
        chunk_iter = self._chunk_stream()
        for k0, k1, per_book in chunk_iter:
            bounds = [
                [(ch, np.searchsorted(ch.step, np.arange(ch.k0, ch.k1 + 1))) for ch in chunks]
                for chunks in per_book
            ]
            for k in range(max(k0, 1), k1):
                for i in self._dropped_steps.get(k, ()):
                    self.sim.lose_next(books[i].venue, books[i].symbol)
                for i, pieces in enumerate(bounds):
                    for ch, bnd in pieces:
                        if ch.k0 <= k < ch.k1:
                            a, b_ = bnd[k - ch.k0], bnd[k - ch.k0 + 1]
                            if b_ > a:
                                for s, p, q in zip(
                                    ch.side[a:b_].tolist(),
                                    ch.price[a:b_].tolist(),
                                    ch.qty[a:b_].tolist(),
                                    strict=True,
                                ):
                                    carry[i][(s, p)] = q
                if k < group_end and k != k1 - 1 and k != sc.n_steps - 1:
                    continue
                group_end = k + self.steps_per_update
                due = start_loop + (int(t_ns[k]) - sc.paths.start_ns) / 1e9 / self.speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)
                await self._faults_at(int(t_ns[k]), faults, silent_now)
                for i, changes in enumerate(carry):
                    if not changes:
                        continue
                    b = books[i]
                    out = [
                        Change("bid" if s == 0 else "ask", p, q)
                        for (s, p), q in sorted(changes.items())
                    ]
                    changes.clear()
                    self.sim.update(b.venue, b.symbol, out)
                if progress is not None:
                    progress(int(t_ns[k]))

    def _chunk_stream(self) -> Iterator[tuple[int, int, list[list[Chunk]]]]:
        yield self._pending
        yield from self._chunks

    def _fault_schedule(self) -> list[tuple[int, str, Venue]]:
        events: list[tuple[int, str, Venue]] = []
        if self.sc.kind == "collapse":
            lo, _ = spec.V1_LATENCY
            events.append((spec.T0_NS + int(lo * MINUTE_NS), "rest503", spec.V1))
        for w in self.plan.windows:
            if w["kind"] in ("frozen", "disconnect", "outage"):
                venue = Venue(w["venue"])
                kind = "freeze" if w["kind"] == "frozen" else "disconnect"
                events.append((w["start_ns"], kind, venue))
                events.append((w["end_ns"], "resume", venue))
        return sorted(events, key=lambda e: (e[0], e[1]))

    async def _faults_at(
        self, now_ns: int, faults: list[tuple[int, str, Venue]], silent: set[Venue]
    ) -> None:
        while faults and faults[0][0] <= now_ns:
            _, kind, venue = faults.pop(0)
            if kind == "rest503":
                path = "/api/v3/depth" if venue == Venue.BINANCE else "/fapi/v1/depth"
                self.sim.fail_next(venue, 503, path=path, count=3)
            elif kind == "freeze":
                self.sim.set_silent(venue, True)
            elif kind == "disconnect":
                silent.add(venue)
                await self.sim.drop(venue)
            elif kind == "resume":
                self.sim.set_silent(venue, False)
                silent.discard(venue)
        for venue in silent:  # a disconnected venue keeps refusing its clients
            if self.sim.open_connections(venue):
                await self.sim.drop(venue)


def _quiet_resets(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """A frame written to a client the exchange just dropped (the V4 disconnect) fails in
    a task nobody awaits: that is the fault working, not an error worth a traceback."""
    if isinstance(context.get("exception"), ConnectionResetError):
        return
    loop.default_exception_handler(context)


async def _main(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().set_exception_handler(_quiet_resets)
    books = None
    if args.assets:
        books = spec.books_for(tuple(args.assets.split(",")), pegged="USDE" in args.assets)
    sc = Scenario(args.kind, args.seed, hours=args.hours, step_ms=args.step_ms, books=books)
    player = LivePlayer(sc, args.speed, port=args.port)
    async with player.sim:
        player.wall_start = time.time()
        ready = {
            "ready": True,
            "port": player.sim.port,
            "scenario_start_ns": sc.paths.start_ns,
            "scenario_end_ns": int(sc.paths.t_ns[-1]),
            "speed": args.speed,
        }
        # the monitor needs a moment to connect: pacing starts when told (a line on stdin)
        # or after --lead-s seconds
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(args.lead_s)
        last = [0.0]

        def progress(now_ns: int) -> None:
            # where the exchange is on the scenario clock (it may lag behind the nominal
            # speed on a busy machine): the monitor's view maps its samples with these
            wall = time.time()
            if wall - last[0] >= 0.1:
                last[0] = wall
                sys.stdout.write(json.dumps({"t": now_ns, "w": wall}) + "\n")
                sys.stdout.flush()

        play = asyncio.ensure_future(player.play(progress))
        sys.stdout.write(json.dumps({"started": True, "wall_start": time.time()}) + "\n")
        sys.stdout.flush()
        await play
        sys.stdout.write(json.dumps({"done": True}) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(args.linger_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feeds.sim.scenario.live")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kind", default="collapse", choices=["collapse", "calm"])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--step-ms", type=int, default=500)
    parser.add_argument("--assets", default="", help="comma-separated subset, e.g. BTC,ALT1")
    parser.add_argument("--lead-s", type=float, default=3.0)
    parser.add_argument("--linger-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
