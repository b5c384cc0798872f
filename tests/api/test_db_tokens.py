"""Tokens kept in the database: `liqmon token create` prints one (only its hash is
stored), the API accepts it on a write endpoint, `liqmon token revoke` stops it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from monitor.api.auth import hash_token
from tests.api.conftest import api_stack
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def liqmon(dsn: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"LIQMON_DATABASE__DSN": dsn, "LIQMON_MONITOR__LOG_LEVEL": "error"}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "token", *args, "--data-dir", str(tmp)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_database_tokens_hashed_and_revocable(db_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    made = liqmon(db_dsn, tmp_path, "create", "ops")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("lqm_") and "shown only now" in made.stderr
    conn = await asyncpg.connect(db_dsn)
    try:
        stored = await conn.fetch("SELECT name, token_sha256 FROM api_tokens")
    finally:
        await conn.close()
    assert [(r["name"], r["token_sha256"]) for r in stored] == [("ops", hash_token(token))]
    assert liqmon(db_dsn, tmp_path, "create", "ops").returncode == 2  # one per name
    async with api_stack(tmp_path, dsn=db_dsn) as stack:
        note = f"{stack.url}/api/v1/events"
        headers = {"Authorization": f"Bearer {token}"}
        async with stack.http.post(note, json={"text": "db token"}, headers=headers) as r:
            assert r.status == 201, await r.text()
        revoked = liqmon(db_dsn, tmp_path, "revoke", "ops")
        assert revoked.returncode == 0, revoked.stderr
        async with stack.http.post(note, json={"text": "db token"}, headers=headers) as r:
            assert r.status == 401
    listed = liqmon(db_dsn, tmp_path, "list")
    assert listed.returncode == 0 and listed.stdout.startswith("ops\trevoked")
    assert token not in listed.stdout
