"""The TimescaleDB path, run for real on the TimescaleDB build of PGlite (under node):
migrations from empty and re-applied, hypertables, compression, continuous aggregates,
policies (run by hand: they do not run on their own there), and the bucketed queries,
which must give the same answers as on the embedded (plain) PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from monitor.settings import DatabaseSettings
from monitor.store import queries
from monitor.store.migrate import Flavour, apply_policies, load_migrations, migrate
from tests.store.pglite import PgliteDatabase, install

T0 = 1_700_002_800  # 2023-11-14T23:00:00Z, a whole hour
HOURS = 2

# Three books of asset XYZ on three venues, one sample a second for two hours; one sample
# in 13 invalid; depth and mid move with time, so every bucket differs.
FILL = f"""
INSERT INTO book_metrics (ts, venue, symbol, instrument, base, quote, kind, valid, stale, state,
    bid, ask, mid, spread_bps, layout, depth_usd, depth_quote, covered_mask, slippage_bps,
    exhausted_mask, depth_1pct_bid_usd, depth_1pct_ask_usd,
    levels_bid, levels_ask, truncated, fx_usd, fx_assumed, book_age_s, updates)
SELECT to_timestamp({T0} + s), v.venue, 'XYZUSDT', 'XYZ-USDT-SPOT', 'XYZ', 'USDT', 'spot',
    s % 13 <> 0, false, CASE WHEN s % 13 <> 0 THEN 'live' ELSE 'syncing' END,
    100 + v.k + (s % 600) / 1000.0 - 0.01, 100 + v.k + (s % 600) / 1000.0 + 0.01,
    100 + v.k + (s % 600) / 1000.0, 2.0 + (s % 7) / 10.0,
    '0.1,0.5,1.0,2.0|10000.0,100000.0,1000000.0',
    ARRAY[[1e4, 1e4], [5e4, 5e4], [1e5 + s, 2e5 - s], [2e5, 3e5]],
    ARRAY[[1e4, 1e4], [5e4, 5e4], [1e5 + s, 2e5 - s], [2e5, 3e5]], 127,
    ARRAY[[1.0, 1.5], [5.0, 6.0], [50.0, 60.0]], 16,
    CASE WHEN s % 13 <> 0 THEN 1e5 + s * (1 + v.k) END, CASE WHEN s % 13 <> 0 THEN 2e5 - s END,
    100, 100, false, 1.0, true, 0.1, s
FROM generate_series(0, {HOURS * 3600 - 1}) AS s,
     (VALUES ('binance', 0), ('okx', 1), ('kraken', 2)) AS v(venue, k)
"""


@pytest.fixture
async def timescale() -> AsyncIterator[PgliteDatabase]:
    db = await PgliteDatabase.start(install())
    yield db
    await db.close()


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # the two servers may sum floats in a different order: compare to 1e-9 relative
    return [
        {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dict(r).items()} for r in rows
    ]


@pytest.mark.integration
async def test_timescale_migrations_policies_and_bucketed_queries(
    timescale: PgliteDatabase, db_dsn: str
) -> None:
    first = await migrate(timescale)
    assert first.flavour is Flavour.TIMESCALE
    assert list(first.applied) == [
        m.name for m in load_migrations() if m.flavour in (None, Flavour.TIMESCALE)
    ]
    again = await migrate(timescale)
    assert again.applied == () and again.flavour is Flavour.TIMESCALE

    hypertables = {
        r["hypertable_name"]
        for r in await timescale.fetch(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        )
    }
    assert hypertables == {
        "book_metrics",
        "asset_metrics",
        "fx_rates",
        "score_samples",
        "venue_health",
        "book_snapshots",
    }
    aggregates = {
        r["view_name"]
        for r in await timescale.fetch(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        )
    }
    assert aggregates == {"book_metrics_1m", "book_metrics_1h"}

    settings = DatabaseSettings(compress_after_days=1.0, retention_days=30.0)
    await apply_policies(timescale, settings)
    await apply_policies(timescale, settings)  # at every start: replaced, not doubled
    jobs = await timescale.fetch(
        "SELECT proc_name, hypertable_name, config::text AS config FROM timescaledb_information.jobs"
        " WHERE proc_name IN ('policy_compression', 'policy_retention', 'policy_refresh_continuous_aggregate')"
    )
    by_kind: dict[str, list[str]] = {}
    for job in jobs:
        by_kind.setdefault(job["proc_name"], []).append(job["hypertable_name"])
    assert sorted(by_kind["policy_retention"]) == sorted(hypertables)
    assert (
        len(by_kind["policy_compression"]) == 5
        and len(by_kind["policy_refresh_continuous_aggregate"]) == 2
    )

    # the same rows in both servers, the same answers from both
    plain = await asyncpg.connect(db_dsn)
    try:
        assert (await migrate(plain)).flavour is Flavour.PLAIN
        await plain.execute(FILL)
        await timescale.execute(FILL)
        end = T0 + HOURS * 3600
        asks: list[tuple[str, Any]] = [
            (
                "metrics_bucketed",
                dict(venue="okx", symbol="XYZUSDT", start_s=T0, end_s=end, interval_s=60),
            ),
            (
                "metrics_bucketed",
                dict(venue="kraken", symbol="XYZUSDT", start_s=T0, end_s=end, interval_s=3600),
            ),
            ("depth", dict(asset="XYZ", start_s=T0, end_s=end, interval_s=900)),
            ("ranking", dict(at_s=T0 + 1800.5)),
            (
                "metrics_raw",
                dict(venue="binance", symbol="XYZUSDT", start_s=T0 + 10, end_s=T0 + 20),
            ),
        ]
        for name, params in asks:
            on_timescale = await getattr(queries, name)(timescale, **params)
            on_plain = await getattr(queries, name)(plain, **params)
            assert on_timescale, name
            assert _rounded(on_timescale) == _rounded(on_plain), name
        minutes = await queries.metrics_bucketed(
            timescale, venue="okx", symbol="XYZUSDT", start_s=T0, end_s=end - 1, interval_s=60
        )
        assert len(minutes) == HOURS * 60 and {m["samples"] for m in minutes} == {60}
        ranking = await queries.ranking(timescale, at_s=T0 + 1800.5)
        assert ranking[0]["venue"] in {"binance", "kraken"}
        assert ranking[0]["source"] == "book"

        # the 1-minute continuous aggregate agrees with date_bin on the raw rows
        await timescale.execute("CALL refresh_continuous_aggregate('book_metrics_1m', NULL, NULL)")
        cagg = await timescale.fetch(
            "SELECT extract(epoch FROM bucket)::float8 AS ts, samples::int4 AS samples, mid"
            " FROM book_metrics_1m WHERE venue = 'okx' ORDER BY bucket"
        )
        assert [(r["ts"], r["samples"]) for r in cagg] == [(m["ts"], m["samples"]) for m in minutes]
        assert [round(r["mid"], 9) for r in cagg] == [round(m["mid"], 9) for m in minutes]

        # compressed chunks answer the same
        chunks = await timescale.fetch("SELECT show_chunks('book_metrics') AS chunk")
        for chunk in chunks:
            await timescale.execute(f"SELECT compress_chunk('{chunk['chunk']}')")
        compressed = await timescale.fetch(
            "SELECT count(*)::int4 AS n FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'book_metrics' AND is_compressed"
        )
        assert compressed[0]["n"] == len(chunks) > 0
        after = await queries.metrics_bucketed(
            timescale, venue="okx", symbol="XYZUSDT", start_s=T0, end_s=end - 1, interval_s=60
        )
        assert _rounded(after) == _rounded(minutes)

        # retention (run by hand: policies do not run on their own in PGlite)
        await timescale.execute(
            "INSERT INTO fx_rates (ts, currency, usd, assumed, age_s) VALUES"
            " (now() - interval '40 days', 'USDT', 1.0, false, 0), (now(), 'USDT', 1.0, false, 0)"
        )
        job = await timescale.fetch(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_name = 'fx_rates'"
        )
        await timescale.execute(f"CALL run_job({job[0]['job_id']})")
        left = await timescale.fetch("SELECT count(*)::int4 AS n FROM fx_rates")
        assert left[0]["n"] == 1
    finally:
        await plain.close()
