"""Book snapshots: periodic, and dense around a score state change (the window before
it from memory, every tick after it), stored through the real writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import asyncpg

from monitor.sample import SCORE_NORMAL, SCORE_WARNING, ScoreEvent
from monitor.store.command import SnapshotSink
from monitor.store.migrate import migrate
from monitor.store.queries import book
from monitor.store.writer import StoreWriter, WriterPolicy
from tests.store.samples import identities, synthetic_sample

T0_NS = 1_700_000_000_000_000_000
BOOKS = identities(8)


def _levels(ts_ns: int, side: int) -> list[list[str]]:
    tick = (ts_ns - T0_NS) // 1_000_000_000
    return [[f"{100 + side + k * (1 if side else -1)}.{tick:02d}", f"{k + 1}.5"] for k in range(3)]


async def test_periodic_and_evidence_snapshots_round_trip(db_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    writer = StoreWriter.for_dsn(db_dsn, tmp_path / "spill", WriterPolicy(flush_interval_s=0.01))
    writer.start()
    now = {"ts": 0}

    def books(depth: int) -> list[dict[str, Any]]:
        return [
            {"venue": b.venue, "symbol": b.symbol, "instrument": b.instrument, "valid": True,
             "state": "live", "bids": _levels(now["ts"], 0)[:depth], "asks": _levels(now["ts"], 1)[:depth]}
            for b in BOOKS
        ]  # fmt: skip

    sink = SnapshotSink(books, writer, 60.0, 3, evidence_window_s=10.0, evidence_every_s=2.0)
    target, asset = BOOKS[5], BOOKS[0].base
    for tick in range(61):
        sample = synthetic_sample(tick, len(BOOKS))
        events: tuple[ScoreEvent, ...] = ()
        if tick == 30:  # a book's change, and its asset's 15 s later
            events = (
                ScoreEvent(
                    sample.ts_ns,
                    SCORE_WARNING,
                    SCORE_NORMAL,
                    60.0,
                    (0.0,) * 7,
                    target.base,
                    target.venue,
                    target.symbol,
                ),
            )
        if tick == 45:
            events = (
                ScoreEvent(sample.ts_ns, SCORE_NORMAL, SCORE_WARNING, 10.0, (0.0,) * 7, asset),
            )
        now["ts"] = sample.ts_ns
        await sink.write(dataclasses.replace(sample, events=events))
    assert await writer.flush(30)
    await writer.close()
    try:
        rows = await conn.fetch(
            "SELECT venue, symbol, reason, ((extract(epoch FROM ts) * 1e9)::int8 - $1) / 1000000000 AS tick"
            " FROM book_snapshots",
            T0_NS,
        )
        stored = {(r["venue"], r["symbol"], r["tick"], r["reason"]) for r in rows}
        assert len(stored) == len(rows)  # nothing twice
        for b in BOOKS:
            ticks = {(t, reason) for v, s, t, reason in stored if (v, s) == (b.venue, b.symbol)}
            # the first tick, then every whole minute of sample time (T0 + 40 s); a tick
            # with a periodic snapshot needs no evidence one
            periodic = {0} | {t for t in range(61) if (T0_NS // 10**9 + t) % 60 == 0}
            expected = {(t, "periodic") for t in periodic}
            if b == target:  # before: every 2 s from memory; after: every tick
                expected |= {(t, "evidence") for t in (20, 22, 24, 26, 28)}
                expected |= {(t, "evidence") for t in range(30, 41)}
            if b.base == asset:
                expected |= {(t, "evidence") for t in (36, 38, 40, 42, 44)} | {
                    (t, "evidence") for t in range(45, 56)
                }
            expected = {(t, r) for t, r in expected if r == "periodic" or t not in periodic}
            assert ticks == expected, b
        # the nearest snapshot reads back as it was taken
        found = await book(
            conn, venue=target.venue, symbol=target.symbol, at_s=(T0_NS + 33.4e9) / 1e9
        )
        assert found is not None and found["reason"] == "evidence"
        assert found["bids"] == _levels(T0_NS + 33 * 1_000_000_000, 0)
        assert found["asks"] == _levels(T0_NS + 33 * 1_000_000_000, 1)
    finally:
        await conn.close()
