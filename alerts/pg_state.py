"""Silences and acknowledgements in PostgreSQL (``alert_silences``, ``alert_acks``).

Written through by the alert sink before the engine changes, read back when it starts, so
a restart of the daemon (or of its API) keeps them. A stored silence's id is its row id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec

from alerts.engine import Silence


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _ns(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000) * 1000


class PgAlertState:
    """``pool()`` gives the asyncpg pool (the outbox's, opened on first use)."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
        self._pool = pool

    async def add_silence(
        self,
        matchers: dict[str, str],
        starts_at_ns: int,
        ends_at_ns: int,
        created_by: str,
        comment: str,
    ) -> str:
        """Store a silence; returns its id."""
        pool = await self._pool()
        row_id = await pool.fetchval(
            "INSERT INTO alert_silences (matchers, starts_at, ends_at, created_by, comment)"
            " VALUES ($1::jsonb, $2, $3, $4, $5) RETURNING id",
            msgspec.json.encode(matchers).decode(),
            _ts(starts_at_ns),
            _ts(ends_at_ns),
            created_by,
            comment,
        )
        return str(row_id)

    async def remove_silence(self, silence_id: str) -> bool:
        if not silence_id.isdigit() or len(silence_id) > 18:
            return False  # not a stored silence's id
        pool = await self._pool()
        gone = await pool.fetchval(
            "DELETE FROM alert_silences WHERE id = $1 RETURNING id", int(silence_id)
        )
        return gone is not None

    async def silences(self) -> list[Silence]:
        """The silences not yet ended, oldest first."""
        pool = await self._pool()
        rows = await pool.fetch(
            "SELECT id, matchers::text AS matchers, starts_at, ends_at, created_by, comment"
            " FROM alert_silences WHERE ends_at > now() ORDER BY starts_at, id"
        )
        return [
            Silence(
                id=str(r["id"]),
                matchers=msgspec.json.decode(r["matchers"], type=dict[str, str]),
                starts_at_ns=_ns(r["starts_at"]),
                ends_at_ns=_ns(r["ends_at"]),
                created_by=r["created_by"],
                comment=r["comment"],
            )
            for r in rows
        ]

    async def acknowledge(self, alert_id: str, by: str, ts_ns: int) -> None:
        pool = await self._pool()
        await pool.execute(
            "INSERT INTO alert_acks (alert_id, acked_by, acked_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (alert_id) DO UPDATE SET acked_by = $2, acked_at = $3",
            alert_id,
            by,
            _ts(ts_ns),
        )

    async def acks(self, alert_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """The acknowledgements of these alerts: alert id -> (by, at ns)."""
        if not alert_ids:
            return {}
        pool = await self._pool()
        rows = await pool.fetch(
            "SELECT alert_id, acked_by, acked_at FROM alert_acks WHERE alert_id = ANY($1::text[])",
            list(alert_ids),
        )
        return {r["alert_id"]: (r["acked_by"], _ns(r["acked_at"])) for r in rows}
