"""Migrations on the embedded PostgreSQL: from empty, then re-applied."""

from __future__ import annotations

import asyncpg

from monitor.settings import DatabaseSettings, TimescaleMode
from monitor.store.migrate import (
    Flavour,
    apply_policies,
    delete_expired,
    load_migrations,
    migrate,
)

EXPECTED_TABLES = {
    "book_metrics",
    "asset_metrics",
    "fx_rates",
    "score_samples",
    "venue_health",
    "book_snapshots",
    "alert_events",
    "alert_outbox",
    "alert_delivery_attempts",
    "alert_subscriptions",
    "alert_silences",
    "schema_migrations",
}


async def _schema(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY 1, 2"
    )
    return [tuple(r) for r in rows]


async def test_migrations_from_empty_then_reapplied_change_nothing(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        first = await migrate(conn)
        assert first.flavour is Flavour.PLAIN  # no TimescaleDB in the embedded server
        shipped = [m.name for m in load_migrations() if m.flavour in (None, Flavour.PLAIN)]
        assert list(first.applied) == shipped
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables >= EXPECTED_TABLES
        brin = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING brin%'"
        )
        assert {r["indexname"] for r in brin} >= {"book_metrics_ts_brin", "book_snapshots_ts_brin"}
        schema = await _schema(conn)
        versions = await conn.fetch("SELECT version, flavour FROM schema_migrations ORDER BY 1")

        again = await migrate(conn)
        assert again.applied == () and again.flavour is Flavour.PLAIN
        assert await _schema(conn) == schema
        assert (
            await conn.fetch("SELECT version, flavour FROM schema_migrations ORDER BY 1")
            == versions
        )
        await apply_policies(conn, DatabaseSettings())  # plain: nothing to set, no error
    finally:
        await conn.close()


async def test_timescale_off_and_missing_extension_both_give_plain_tables(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        result = await migrate(conn, timescale=TimescaleMode.OFF)
        assert result.flavour is Flavour.PLAIN
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        )
    finally:
        await conn.close()


async def test_the_natural_key_refuses_a_second_copy_of_a_sample(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await migrate(conn)
        insert = (
            "INSERT INTO fx_rates (ts, currency, usd, assumed, age_s)"
            " VALUES ('2024-01-01T00:00:00Z', 'USDT', 1.0, false, 0.5) ON CONFLICT DO NOTHING"
        )
        assert await conn.execute(insert) == "INSERT 0 1"
        assert await conn.execute(insert) == "INSERT 0 0"
    finally:
        await conn.close()


async def test_plain_retention_deletes_only_samples_older_than_the_age(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO fx_rates (ts, currency, usd, assumed, age_s) VALUES"
            " (now() - interval '40 days', 'USDT', 1.0, false, 0),"
            " (now() - interval '1 day', 'USDT', 1.0, false, 0)"
        )
        assert await delete_expired(conn, 30.0) == 1
        assert await conn.fetchval("SELECT count(*) FROM fx_rates") == 1
        assert await delete_expired(conn, 0.0) == 0  # 0 keeps everything
    finally:
        await conn.close()
