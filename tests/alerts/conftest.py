"""The store's PostgreSQL fixtures (a real embedded server, a database per test)."""

from __future__ import annotations

from tests.store.conftest import db_dsn, pg_server

__all__ = ["db_dsn", "pg_server"]
