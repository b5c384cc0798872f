"""The outbox in PostgreSQL (the store's alerting tables, migration 0004).

``store`` writes the tick's alert events and their deliveries in one transaction before
anything is sent; the dispatcher reads lanes (pending deliveries of one subscription, by
id) and records every attempt with the delivery's new state in one transaction. A crash
between a receiver's answer and the record sends that delivery again with the same
Idempotency-Key: receivers dedupe; nothing is lost.

Connections come from an asyncpg pool made lazily; when the database is away every call
raises (asyncpg's or OS errors) and the callers keep their data and try again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from alerts.channels.base import Delivery
from alerts.engine import AlertEvent, RestoredAlert
from alerts.outbox import Attempt, DeliveryStatus, Outcome
from alerts.subscriptions import Channel

_encode = msgspec.json.Encoder().encode
_COLUMNS = (
    "id, subscription, channel, target, payload, idempotency_key, alert_id, notification_id,"
    " created_ns, attempts, next_attempt_ns, status"
)


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _delivery(row: Any) -> Delivery:
    payload = msgspec.json.decode(row["payload"])
    return Delivery(
        id=row["id"],
        subscription=row["subscription"],
        channel=Channel(row["channel"]),
        target=row["target"],
        body=payload["body"].encode(),
        idempotency_key=row["idempotency_key"],
        alert_id=row["alert_id"],
        notification_id=row["notification_id"],
        created_ns=row["created_ns"],
        attempts=row["attempts"],
        next_attempt_ns=row["next_attempt_ns"],
        secret_env=payload.get("secret_env"),
        alert_ids=tuple(payload.get("alert_ids", ())),
        notification_ids=tuple(payload.get("notification_ids", ())),
    )


def _payload(d: Delivery) -> str:
    payload: dict[str, Any] = {"body": d.body.decode(), "secret_env": d.secret_env}
    if d.alert_ids:  # a group message: every alert and notification it carries
        payload["alert_ids"] = list(d.alert_ids)
        payload["notification_ids"] = list(d.notification_ids)
    return _encode(payload).decode()


def event_row(e: AlertEvent) -> tuple[Any, ...]:
    rec = e.record()
    return (
        _ts(e.ts_ns),
        "rule",
        e.rule,
        e.state.value,
        e.severity,
        e.scope.venue,
        e.scope.symbol,
        e.scope.asset,
        e.value,
        _encode(rec["components"]).decode(),
        f"rule|{e.alert_id}",
        e.alert_id,
        e.summary,
        e.stale,
    )


class PgOutbox:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._sizes = (min_size, max_size)
        self._own_pool = True

    @classmethod
    def from_pool(cls, pool: asyncpg.Pool) -> PgOutbox:
        """On a pool owned by someone else (the API's history pool): not closed here."""
        box = cls("")
        box._pool = pool
        box._own_pool = False
        return box

    @property
    def pool(self) -> asyncpg.Pool | None:
        return self._pool

    async def open_pool(self) -> asyncpg.Pool:
        """The pool, opened on first use (also the silences' and acknowledgements')."""
        return await self._get_pool()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=self._sizes[0], max_size=self._sizes[1], timeout=5
            )
        return self._pool

    async def store(self, events: Sequence[AlertEvent], deliveries: Sequence[Delivery]) -> None:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            if events:
                await conn.executemany(
                    "INSERT INTO alert_events (ts, kind, rule, state, severity, venue, symbol,"
                    " asset, value, components, fingerprint, alert_id, summary, stale)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10::jsonb,$11,$12,$13,$14)"
                    " ON CONFLICT (fingerprint, ts, state) DO NOTHING",
                    [event_row(e) for e in events],
                )
            if deliveries:
                await conn.executemany(
                    "INSERT INTO alert_outbox (subscription, channel, target, payload,"
                    " idempotency_key, alert_id, notification_id, created_ns, next_attempt_ns,"
                    " next_attempt_at, status, attempts)"
                    " VALUES ($1,$2,$3,$4::jsonb,$5,$6,$7,$8,$9,$10,'pending',0)"
                    " ON CONFLICT (idempotency_key) DO NOTHING",
                    [
                        (
                            d.subscription,
                            d.channel.value,
                            d.target,
                            _payload(d),
                            d.idempotency_key,
                            d.alert_id,
                            d.notification_id,
                            d.created_ns,
                            d.next_attempt_ns,
                            _ts(d.next_attempt_ns),
                        )
                        for d in deliveries
                    ],
                )

    async def due_subscriptions(self, now_ns: int) -> tuple[list[str], int | None]:
        pool = await self._get_pool()
        rows = await pool.fetch(
            "SELECT DISTINCT ON (subscription) subscription, next_attempt_ns FROM alert_outbox"
            " WHERE status = 'pending' ORDER BY subscription, id"
        )
        due = [r["subscription"] for r in rows if r["next_attempt_ns"] <= now_ns]
        later = [r["next_attempt_ns"] for r in rows if r["next_attempt_ns"] > now_ns]
        return due, (min(later) if later else None)

    async def head(self, subscription: str) -> Delivery | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            f"SELECT {_COLUMNS} FROM alert_outbox WHERE status = 'pending' AND subscription = $1"
            " ORDER BY id LIMIT 1",
            subscription,
        )
        return None if row is None else _delivery(row)

    async def record(
        self, delivery: Delivery, attempt: Attempt, next_attempt_ns: int | None = None
    ) -> None:
        status = {
            Outcome.SENT: DeliveryStatus.SENT,
            Outcome.FAILED: DeliveryStatus.FAILED,
            Outcome.RETRY: DeliveryStatus.PENDING,
        }[attempt.outcome]
        next_ns = next_attempt_ns or delivery.next_attempt_ns
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            # an attempt's record need not wait for the disk: lost in a crash, the delivery
            # is pending again and re-sent with the same Idempotency-Key (receivers dedupe);
            # the events and deliveries themselves (store) are committed durably
            await conn.execute("SET LOCAL synchronous_commit TO OFF")
            await conn.execute(
                "INSERT INTO alert_delivery_attempts (outbox_id, attempted_at, status_code, error,"
                " retry_after_s, number, outcome, elapsed_s) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                delivery.id,
                _ts(attempt.ts_ns),
                attempt.status_code,
                attempt.error,
                attempt.retry_after_s,
                attempt.number,
                attempt.outcome.value,
                attempt.elapsed_s,
            )
            await conn.execute(
                "UPDATE alert_outbox SET status = $2, attempts = $3, next_attempt_ns = $4,"
                " next_attempt_at = $5, last_error = $6,"
                " sent_at = CASE WHEN $2 = 'sent' THEN $7 ELSE sent_at END WHERE id = $1",
                delivery.id,
                status.value,
                attempt.number,
                next_ns,
                _ts(next_ns),
                attempt.error,
                _ts(attempt.ts_ns),
            )

    async def attempts(self, alert_id: str) -> list[tuple[Delivery, DeliveryStatus, list[Attempt]]]:
        pool = await self._get_pool()
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM alert_outbox"
            " WHERE alert_id = $1 OR payload->'alert_ids' ? $1 ORDER BY id",
            alert_id,
        )
        out = []
        for row in rows:
            tries = await pool.fetch(
                "SELECT number, attempted_at, outcome, status_code, error, retry_after_s,"
                " elapsed_s FROM alert_delivery_attempts WHERE outbox_id = $1 ORDER BY id",
                row["id"],
            )
            out.append(
                (
                    _delivery(row),
                    DeliveryStatus(row["status"]),
                    [
                        Attempt(
                            row["id"],
                            t["number"],
                            int(t["attempted_at"].timestamp() * 1e9),
                            Outcome(t["outcome"]),
                            t["status_code"],
                            t["error"],
                            t["retry_after_s"],
                            t["elapsed_s"],
                        )
                        for t in tries
                    ],
                )
            )
        return out

    async def firing_alerts(self, days: float = 30.0) -> list[RestoredAlert]:
        """The rule alerts whose last stored event is "firing" (a previous run's), with
        whether their firing notification went into the outbox."""
        pool = await self._get_pool()
        rows = await pool.fetch(
            "SELECT e.alert_id, e.rule, e.state, e.venue, e.symbol, e.asset, e.ts,"
            " EXISTS (SELECT 1 FROM alert_outbox o"
            "         WHERE o.notification_id = e.alert_id || ':firing'"
            "         OR o.payload->'notification_ids' ? (e.alert_id || ':firing')) AS notified"
            " FROM (SELECT DISTINCT ON (alert_id) alert_id, rule, state, venue, symbol, asset, ts"
            "       FROM alert_events WHERE kind = 'rule' AND alert_id IS NOT NULL"
            "       AND ts > now() - make_interval(secs => $1)"
            "       ORDER BY alert_id, ts DESC, id DESC) e"
            " WHERE e.state = 'firing'",
            days * 86400.0,
        )
        return [
            RestoredAlert(
                r["alert_id"],
                r["rule"],
                r["venue"],
                r["symbol"],
                r["asset"],
                int(r["ts"].timestamp() * 1e9),
                bool(r["notified"]),
            )
            for r in rows
        ]

    async def status_counts(self) -> dict[DeliveryStatus, int]:
        pool = await self._get_pool()
        rows = await pool.fetch("SELECT status, count(*) AS n FROM alert_outbox GROUP BY status")
        counts = dict.fromkeys(DeliveryStatus, 0)
        for r in rows:
            counts[DeliveryStatus(r["status"])] = r["n"]
        return counts

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._own_pool:
                await pool.close()
