"""Alert rules kept in PostgreSQL (``alert_rules``): the API's and ``liqmon rules``'.

Config rules (``[alerts] rules_files``) are not stored. Each row keeps the whole rule
(``spec``, the ``[[rules]]`` table's keys as JSON), so a restart loads it as it was made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from alerts.rules import RuleSpec

_encode = msgspec.json.Encoder(order="deterministic").encode


def _spec(rule: RuleSpec) -> str:
    return _encode(rule).decode()


class PgRules:
    """``pool()`` gives an asyncpg pool or connection (anything with fetch/fetchrow)."""

    def __init__(self, pool: Callable[[], Awaitable[Any]]) -> None:
        self._pool = pool

    async def load(self) -> tuple[list[RuleSpec], list[tuple[str, str]]]:
        """The stored rules, oldest first, and (name, problem) for rows that no longer
        decode as a rule (kept, not used)."""
        db = await self._pool()
        rows = await db.fetch(
            "SELECT name, spec::text AS spec FROM alert_rules ORDER BY created_at"
        )
        rules: list[RuleSpec] = []
        broken: list[tuple[str, str]] = []
        for row in rows:
            try:
                rules.append(msgspec.json.decode(row["spec"], type=RuleSpec))
            except msgspec.ValidationError as exc:
                broken.append((row["name"], str(exc)))
        return rules, broken

    async def add(self, rule: RuleSpec) -> bool:
        """False when a rule of that name is already stored."""
        db = await self._pool()
        row = await db.fetchrow(
            "INSERT INTO alert_rules (name, spec) VALUES ($1, $2::jsonb)"
            " ON CONFLICT (name) DO NOTHING RETURNING name",
            rule.name,
            _spec(rule),
        )
        return row is not None

    async def replace(self, rule: RuleSpec) -> bool:
        """False when no rule of that name is stored."""
        db = await self._pool()
        row = await db.fetchrow(
            "UPDATE alert_rules SET spec = $2::jsonb, updated_at = now() WHERE name = $1"
            " RETURNING name",
            rule.name,
            _spec(rule),
        )
        return row is not None

    async def remove(self, name: str) -> bool:
        """False when no rule of that name is stored."""
        db = await self._pool()
        row = await db.fetchrow("DELETE FROM alert_rules WHERE name = $1 RETURNING name", name)
        return row is not None
