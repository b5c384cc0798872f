"""Versioned schema migrations, applied at start, idempotent.

Migrations are the SQL files of ``monitor/store/migrations`` (package data), named
``NNNN_name.sql`` (every server), ``NNNN_name.plain.sql`` (plain PostgreSQL only) or
``NNNN_name.timescale.sql`` (with the TimescaleDB extension only). Each version is applied
once and recorded in ``schema_migrations`` with the flavour the schema was created with; a
schema created plain stays plain. A file whose first line is ``-- liqmon: no-transaction``
runs statement by statement outside a transaction (TimescaleDB's continuous aggregates
cannot be created inside one); the others run in one transaction each.

Everything here talks to a :class:`Database`: an asyncpg connection is one, and so is the
test suite's bridge to the TimescaleDB build of PGlite.
"""

from __future__ import annotations

import enum
import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from monitor.log import get_logger
from monitor.settings import DatabaseSettings, TimescaleMode

log = get_logger("monitor.store.migrate")

NO_TRANSACTION: Final = "-- liqmon: no-transaction"
_LOCK_KEY: Final = 7_301_000_010  # pg_advisory_lock key: one migrator at a time
_FILE_NAME = re.compile(
    r"^(?P<version>\d{4})_(?P<name>\w+?)(?:\.(?P<flavour>plain|timescale))?\.sql$"
)
# Hypertables and their time-ordered retention (plain PostgreSQL: the daemon's job).
SAMPLE_TABLES: Final = (
    "book_metrics",
    "asset_metrics",
    "fx_rates",
    "score_samples",
    "venue_health",
    "book_snapshots",
)
COMPRESSED_TABLES: Final = (
    "book_metrics",
    "asset_metrics",
    "fx_rates",
    "score_samples",
    "book_snapshots",
)


class Database(Protocol):
    """What the store needs of a connection (asyncpg's ``Connection`` has it)."""

    async def execute(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> Sequence[Mapping[str, Any]]: ...


class Flavour(enum.Enum):
    PLAIN = "plain"
    TIMESCALE = "timescale"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    flavour: Flavour | None  # None: every server
    sql: str

    @property
    def transactional(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """The statements of the file (split on ``;`` at the end of a line)."""
        body = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]


@dataclass(frozen=True, slots=True)
class MigrationResult:
    flavour: Flavour
    applied: tuple[str, ...]  # file names applied by this call (empty: up to date)


def load_migrations() -> list[Migration]:
    """Every migration file shipped with liqmon, by version."""
    folder = importlib.resources.files("monitor.store.migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        flavour = match["flavour"]
        found.append(
            Migration(
                int(match["version"]),
                entry.name,
                Flavour(flavour) if flavour else None,
                entry.read_text(encoding="utf-8"),
            )
        )
    return sorted(found, key=lambda m: (m.version, m.name))


async def timescale_available(db: Database) -> bool:
    rows = await db.fetch(
        "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    return bool(rows[0]["n"])


async def _choose_flavour(db: Database, mode: TimescaleMode) -> Flavour:
    recorded = await db.fetch("SELECT DISTINCT flavour FROM schema_migrations WHERE flavour <> ''")
    if recorded:  # the schema keeps the flavour it was created with
        return Flavour(recorded[0]["flavour"])
    if mode is TimescaleMode.OFF or not await timescale_available(db):
        return Flavour.PLAIN
    try:
        await db.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except Exception as exc:  # e.g. not in shared_preload_libraries: plain tables work
        log.warning("store.timescale_unusable", error=str(exc))
        return Flavour.PLAIN
    return Flavour.TIMESCALE


async def migrate(
    db: Database, *, timescale: TimescaleMode = TimescaleMode.AUTO
) -> MigrationResult:
    """Bring the schema up to date (safe to call at every start, and concurrently)."""
    await db.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, flavour text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        flavour = await _choose_flavour(db, timescale)
        done = {r["version"] for r in await db.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for migration in load_migrations():
            if migration.version in done or migration.flavour not in (None, flavour):
                continue
            await _apply(db, migration, flavour)
            done.add(migration.version)
            applied.append(migration.name)
            log.info("store.migrated", migration=migration.name, flavour=flavour.value)
        return MigrationResult(flavour, tuple(applied))
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _apply(db: Database, migration: Migration, flavour: Flavour) -> None:
    record = "INSERT INTO schema_migrations (version, name, flavour) VALUES ($1, $2, $3)"
    recorded_flavour = flavour.value if migration.flavour is not None else ""
    if migration.transactional:
        await db.execute("BEGIN")
        try:
            for statement in migration.statements():
                await db.execute(statement)
            await db.execute(record, migration.version, migration.name, recorded_flavour)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return
    # statements written to be re-runnable (IF NOT EXISTS / if_not_exists => true)
    for statement in migration.statements():
        await db.execute(statement)
    await db.execute(record, migration.version, migration.name, recorded_flavour)


async def schema_flavour(db: Database) -> Flavour:
    """The flavour the schema was created with."""
    rows = await db.fetch("SELECT DISTINCT flavour FROM schema_migrations WHERE flavour <> ''")
    return Flavour(rows[0]["flavour"]) if rows else Flavour.PLAIN


def _days(days: float) -> str:
    return f"{round(days * 86400)} seconds"


async def apply_policies(db: Database, settings: DatabaseSettings) -> None:
    """TimescaleDB: compression and retention policies from the settings (at every start,
    so a changed age takes effect). Plain PostgreSQL has none: see :func:`delete_expired`."""
    if await schema_flavour(db) is not Flavour.TIMESCALE:
        return
    compress_after = _days(settings.compress_after_days)
    keep = _days(settings.retention_days)
    for table in COMPRESSED_TABLES:
        await db.execute(f"SELECT remove_compression_policy('{table}', if_exists => true)")
        await db.execute(f"SELECT add_compression_policy('{table}', INTERVAL '{compress_after}')")
    for table in SAMPLE_TABLES:
        await db.execute(f"SELECT remove_retention_policy('{table}', if_exists => true)")
        if settings.retention_days > 0:
            await db.execute(f"SELECT add_retention_policy('{table}', INTERVAL '{keep}')")


async def delete_expired(db: Database, retention_days: float) -> int:
    """Plain PostgreSQL retention: delete samples older than ``retention_days``; rows deleted."""
    if retention_days <= 0:
        return 0
    deleted = 0
    for table in SAMPLE_TABLES:
        status = await db.execute(
            f"DELETE FROM {table} WHERE ts < now() - INTERVAL '{_days(retention_days)}'"
        )
        if isinstance(status, str) and status.startswith("DELETE "):
            deleted += int(status.split()[1])
    return deleted
