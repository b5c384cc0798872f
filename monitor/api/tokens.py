"""``liqmon token create|list|revoke``: API bearer tokens kept in the database as hashes.

``create NAME`` prints the new token once (only its SHA-256 is stored); ``revoke NAME``
stops it at once (every API process looks tokens up on each write). Tokens from the
environment (``LIQMON_API_TOKENS``) need no database.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from monitor.api.auth import hash_token, new_token
from monitor.errors import StorageError
from monitor.settings import Settings


def add_token_parser(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    token = sub.add_parser("token", help="API bearer tokens stored in the database (hashed)")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token and print it once")
    create.add_argument("name", help="who or what uses it, e.g. grafana or ops-alice")
    actions.add_parser("list", help="the stored tokens' names (never the tokens)")
    revoke = actions.add_parser("revoke", help="stop a token at once")
    revoke.add_argument("name")
    from monitor.store.command import add_data_dir  # noqa: PLC0415

    for parser in actions.choices.values():
        add_config(parser)
        add_data_dir(parser)


async def _run(args: argparse.Namespace, settings: Settings, data_dir: Path, out: IO[str]) -> int:
    import asyncpg  # noqa: PLC0415 (the parser is built on every command)

    from monitor.store.service import Store  # noqa: PLC0415

    store = await Store(settings.database, data_dir).open()
    try:
        conn = await store.connect()
        try:
            if args.action == "create":
                token = new_token()
                try:
                    await conn.execute(
                        "INSERT INTO api_tokens (name, token_sha256) VALUES ($1, $2)",
                        args.name,
                        hash_token(token),
                    )
                except asyncpg.UniqueViolationError:
                    sys.stderr.write(
                        f"liqmon: a token named {args.name!r} exists; revoke it first\n"
                    )
                    return 2
                out.write(f"{token}\n")
                sys.stderr.write(
                    f"liqmon: token {args.name!r} created; it is shown only now "
                    "(send it as 'Authorization: Bearer <token>')\n"
                )
                return 0
            if args.action == "list":
                rows = await conn.fetch(
                    "SELECT name, created_at, revoked_at FROM api_tokens ORDER BY name"
                )
                for row in rows:
                    state = "revoked" if row["revoked_at"] is not None else "active"
                    out.write(
                        f"{row['name']}\t{state}\tcreated {row['created_at']:%Y-%m-%d %H:%M}Z\n"
                    )
                return 0
            status = await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
                args.name,
            )
            if status.endswith(" 0"):
                sys.stderr.write(f"liqmon: no active token named {args.name!r}\n")
                return 1
            return 0
        finally:
            await conn.close()
    finally:
        await store.close()


def run_token(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    try:
        return asyncio.run(_run(args, settings, data_dir, sys.stdout))
    except StorageError as exc:
        sys.stderr.write(f"liqmon: {exc}\n")
        return 1
