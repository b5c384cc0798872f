"""Silences and acknowledgements are kept in the database: both survive a restart of the
daemon and its API (the alert engine, the outbox, the dispatcher) on the same database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from alerts.subscriptions import Channel, SubscriptionSpec
from monitor.domain import Venue
from tests.alerts.receivers import WebhookReceiver
from tests.api.conftest import TOKEN, Stack, api_stack
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

GOOD = {"Authorization": f"Bearer {TOKEN}"}
BOOKS: dict[Venue, tuple[str, ...]] = {Venue.COINBASE: ("BTC-USD",), Venue.BINANCE: ("BTCUSDT",)}


async def _json(stack: Stack, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with stack.http.request(method, stack.url + path, **kw) as r:
        return r.status, await r.json()


async def test_a_silence_and_an_ack_survive_a_restart_on_the_same_database(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    receiver: WebhookReceiver,
) -> None:
    sub = SubscriptionSpec(name="ops", channel=Channel.WEBHOOK, url=receiver.url)

    def run(name: str) -> Any:
        (tmp_path / name).mkdir()
        return api_stack(tmp_path / name, books=BOOKS, dsn=db_dsn, subscriptions=(sub,))

    async with run("first") as first:
        await receiver.wait_for(1, timeout_s=30.0)
        alert_id = receiver.bodies[0]["id"]
        status, acked = await _json(
            first, "POST", f"/api/v1/alerts/{alert_id}/ack", json={"by": "ops"}, headers=GOOD
        )
        assert status == 200 and acked["acknowledged_by"] == "ops", acked
        silence = {"matchers": {"asset": "ETH"}, "duration_s": 600, "comment": "upgrade"}
        status, made = await _json(first, "POST", "/api/v1/silences", json=silence, headers=GOOD)
        assert status == 201, made
        gone = {"matchers": {"venue": "kraken"}, "duration_s": 600}
        status, ended = await _json(first, "POST", "/api/v1/silences", json=gone, headers=GOOD)
        assert status == 201
        status, _ = await _json(first, "DELETE", f"/api/v1/silences/{ended['id']}", headers=GOOD)
        assert status == 200
    # stored, not only in memory
    conn = await asyncpg.connect(db_dsn)
    try:
        assert (
            await conn.fetchval("SELECT acked_by FROM alert_acks WHERE alert_id = $1", alert_id)
            == "ops"
        )
        assert await conn.fetchval("SELECT count(*) FROM alert_silences") == 1
    finally:
        await conn.close()

    async with run("second") as second:
        status, listed = await _json(second, "GET", "/api/v1/silences")
        assert status == 200 and [s["id"] for s in listed["silences"]] == [made["id"]]
        kept = listed["silences"][0]
        assert kept["matchers"] == {"asset": "ETH"} and kept["comment"] == "upgrade"
        assert kept["active"] and kept["ends_at"] == made["ends_at"]
        # the firing alert is taken over (same id) when its book has data, acknowledged
        async with asyncio.timeout(20.0):
            while True:
                status, alert = await _json(second, "GET", f"/api/v1/alerts/{alert_id}")
                if status == 200 and alert["state"] == "firing":
                    break
                await asyncio.sleep(0.05)  # the condition, polled: the next ticks
        assert alert["acknowledged_by"] == "ops"
        assert alert["acknowledged_at"] == acked["acknowledged_at"]
        status, ranged = await _json(second, "GET", "/api/v1/alerts", params={"from": "0"})
        assert status == 200 and [a["id"] for a in ranged["alerts"]] == [alert_id]
        assert ranged["alerts"][0]["acknowledged_by"] == "ops"  # from the database
        assert ranged["alerts"][0]["acknowledged_at"] == acked["acknowledged_at"]
        status, _ = await _json(second, "DELETE", f"/api/v1/silences/{made['id']}", headers=GOOD)
        assert status == 200
    assert len(receiver.bodies) == 1  # taken over: not fired (nor sent) again
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM alert_silences") == 0
    finally:
        await conn.close()
