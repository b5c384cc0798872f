"""Evidence: a firing alert takes book snapshots around it (the window before it from
memory, every tick after it), through the store's snapshot sink and real writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from monitor.store.command import SnapshotSink
from monitor.store.migrate import migrate
from monitor.store.writer import StoreWriter, WriterPolicy
from tests.store.samples import identities, synthetic_sample

pytestmark = pytest.mark.integration
T0_NS = 1_700_000_000_000_000_000
BOOKS = identities(8)


async def test_a_firing_alert_stores_snapshots_before_and_after(
    db_dsn: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(db_dsn)
    await migrate(conn)
    writer = StoreWriter.for_dsn(db_dsn, tmp_path / "spill", WriterPolicy(flush_interval_s=0.01))
    writer.start()

    def books(depth: int) -> list[dict[str, Any]]:
        return [
            {"venue": b.venue, "symbol": b.symbol, "instrument": b.instrument, "valid": True,
             "state": "live", "bids": [["99.5", "1"]], "asks": [["100.5", "1"]]}
            for b in BOOKS
        ]  # fmt: skip

    # periodic snapshots once an hour: only the first tick, then evidence alone
    sink = SnapshotSink(books, writer, 3600.0, 3, evidence_window_s=10.0, evidence_every_s=2.0)
    target = BOOKS[5]
    for tick in range(61):
        if tick == 30:  # what monitor.api.serve's listener does for a firing alert event
            sink.request_evidence(target.venue, target.symbol, target.base)
        await sink.write(synthetic_sample(tick, len(BOOKS)))
    assert await writer.flush(30)
    await writer.close()
    try:
        rows = await conn.fetch(
            "SELECT venue, symbol, ((extract(epoch FROM ts) * 1e9)::int8 - $1) / 1000000000 AS tick"
            " FROM book_snapshots WHERE reason = 'evidence'",
            T0_NS,
        )
    finally:
        await conn.close()
    got = sorted(
        r["tick"] for r in rows if (r["venue"], r["symbol"]) == (target.venue, target.symbol)
    )
    assert got == [20, 22, 24, 26, 28, *range(30, 41)]
    assert {(r["venue"], r["symbol"]) for r in rows} == {(target.venue, target.symbol)}
