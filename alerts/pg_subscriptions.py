"""Subscriptions kept in PostgreSQL (``alert_subscriptions``): the API's and the CLI's.

Config subscriptions (``[[subscriptions]]``) are not stored; a stored subscription may not
take the name of a configured one. Each row keeps the whole subscription (``spec``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from alerts.subscriptions import Channel, SubscriptionSpec


async def load(conn: Any) -> list[SubscriptionSpec]:
    rows = await conn.fetch(
        "SELECT spec FROM alert_subscriptions WHERE spec IS NOT NULL ORDER BY id"
    )
    return [msgspec.json.decode(r["spec"], type=SubscriptionSpec) for r in rows]


async def add(conn: Any, spec: SubscriptionSpec) -> bool:
    """False when a subscription of that name is already stored."""
    target = spec.url if spec.channel is Channel.WEBHOOK else spec.chat_id
    row = await conn.fetchrow(
        "INSERT INTO alert_subscriptions (name, channel, target, rules, scope, min_severity,"
        " enabled, spec) VALUES ($1,$2,$3,$4,$5::jsonb,$6,$7,$8::jsonb)"
        " ON CONFLICT (name) DO NOTHING RETURNING id",
        spec.name,
        spec.channel.value,
        target or "",
        list(spec.rules),
        msgspec.json.encode(spec.scope).decode(),
        spec.min_severity,
        spec.enabled,
        msgspec.json.encode(spec).decode(),
    )
    return row is not None


async def remove(conn: Any, name: str) -> bool:
    """False when no stored subscription has that name."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id FROM alert_subscriptions WHERE name = $1 AND spec IS NOT NULL", name
        )
        if row is None:
            return False
        await conn.execute("DELETE FROM alert_subscriptions WHERE id = $1", row["id"])
    return True
