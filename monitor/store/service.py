"""A ready database for a command: the configured server, or the embedded one, migrated."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from monitor.errors import StorageError
from monitor.log import get_logger
from monitor.settings import DatabaseSettings
from monitor.store.embedded import EmbeddedPostgres
from monitor.store.migrate import Flavour, apply_policies, migrate
from monitor.store.writer import CONNECTION_ERRORS, StoreWriter, WriterPolicy

log = get_logger("monitor.store")


def embedded_dir(data_dir: Path) -> Path:
    """Where the embedded server keeps its cluster."""
    return data_dir.expanduser() / "postgres"


def spill_dir(settings: DatabaseSettings, data_dir: Path) -> Path:
    return Path(settings.spill_dir).expanduser() if settings.spill_dir else data_dir / "spill"


@dataclass
class Store:
    """The database a command uses; :meth:`open` then :meth:`close`."""

    settings: DatabaseSettings
    data_dir: Path
    dsn: str = ""
    flavour: Flavour = Flavour.PLAIN
    server: EmbeddedPostgres | None = None

    async def open(self, *, migrate_schema: bool = True) -> Store:
        """Start the embedded server if no DSN is set, then migrate (StorageError if not)."""
        if self.settings.dsn:
            self.dsn = self.settings.dsn
        elif self.settings.embedded:
            self.server = EmbeddedPostgres(
                embedded_dir(self.data_dir), open_parent_dirs=self.settings.open_parent_dirs
            )
            self.dsn = await asyncio.to_thread(self.server.start)
        else:
            raise StorageError("storage is off: set database.dsn or database.embedded = true")
        if migrate_schema:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.settings.connect_timeout_s)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                await self.close()
                raise StorageError(f"cannot connect to the database: {exc}") from exc
            try:
                result = await migrate(conn, timescale=self.settings.timescale)
                await apply_policies(conn, self.settings)
                self.flavour = result.flavour
            finally:
                await conn.close()
        log.info(
            "store.open",
            embedded=self.server is not None,
            flavour=self.flavour.value,
            where=str(self.server.pgdata) if self.server else "dsn",
        )
        return self

    async def connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self.dsn, timeout=self.settings.connect_timeout_s)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            raise StorageError(f"cannot connect to the database: {exc}") from exc

    def writer(self, *, retention: bool = True) -> StoreWriter:
        """A writer to this database (the caller starts and closes it). On plain
        PostgreSQL it also deletes samples past ``retention_days`` (the daemon's job);
        ``retention=False`` for a replay, whose rows are as old as the recording."""
        policy = WriterPolicy.from_settings(
            self.settings, retention=retention and self.flavour is Flavour.PLAIN
        )
        return StoreWriter.for_dsn(self.dsn, spill_dir(self.settings, self.data_dir), policy)

    async def close(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None
