"""The alert routes on a real aiohttp server on loopback: list, acknowledge, silences with
an expiry, the delivery log."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alerts.api import AlertsApi
from alerts.engine import Engine, GroupingPolicy
from alerts.outbox import Attempt, MemoryOutbox, Outcome, deliveries_for
from alerts.rules import Frame
from tests.alerts.test_delivery import RULE, scope, webhook_sub


@pytest.fixture
async def setup() -> AsyncIterator[
    tuple[TestClient[web.Request, web.Application], Engine, MemoryOutbox]
]:
    engine = Engine([RULE], GroupingPolicy(group_wait_s=0, group_interval_s=0))
    outbox = MemoryOutbox()
    now = time.time_ns()
    f = Frame(now)
    f.add(RULE.metric, scope(0), 5000.0)
    f.add(RULE.metric, scope(1), 5000.0)
    engine.evaluate(f)
    notes = engine.notifications(now)
    await outbox.store([], deliveries_for(notes, [webhook_sub("http://example.com/hook")]))
    app = web.Application()
    AlertsApi(engine, outbox).add_routes(app.router)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, engine, outbox
    await client.close()


async def test_list_ack_and_delivery_log(
    setup: tuple[TestClient[web.Request, web.Application], Engine, MemoryOutbox],
) -> None:
    client, _engine, outbox = setup
    r = await client.get("/api/alerts", params={"state": "firing"})
    alerts = (await r.json())["alerts"]
    assert r.status == 200 and len(alerts) == 2
    first = alerts[0]["id"]
    r = await client.post(f"/api/alerts/{first}/ack", json={"by": "alice"})
    assert r.status == 200 and (await r.json())["acknowledged_by"] == "alice"
    assert (await client.post(f"/api/alerts/{first}/ack", json={})).status == 400
    assert (await client.post("/api/alerts/nope/ack", json={"by": "a"})).status == 404
    assert (await client.get("/api/alerts", params={"state": "bogus"})).status == 400
    (delivery, _, _) = (await outbox.attempts(first))[0]
    await outbox.record(
        delivery,
        Attempt(delivery.id, 1, time.time_ns(), Outcome.RETRY, 503, "HTTP 503"),
        time.time_ns(),
    )
    log = await (await client.get(f"/api/alerts/{first}/deliveries")).json()
    (entry,) = log["deliveries"]
    assert entry["status"] == "pending" and entry["attempts"][0]["status_code"] == 503


async def test_silences_need_an_expiry_and_mute(
    setup: tuple[TestClient[web.Request, web.Application], Engine, MemoryOutbox],
) -> None:
    client, _engine, _ = setup
    assert (await client.post("/api/silences", json={"matchers": {"asset": "C0"}})).status == 400
    r = await client.post(
        "/api/silences", json={"matchers": {"asset": "C0"}, "duration_s": 60, "created_by": "bob"}
    )
    assert r.status == 201
    sid = (await r.json())["id"]
    alerts = (await (await client.get("/api/alerts")).json())["alerts"]
    muted = {a["scope"]["asset"]: a["silenced_by"] for a in alerts}
    assert muted == {"C0": sid, "C1": None}
    assert len((await (await client.get("/api/silences")).json())["silences"]) == 1
    assert (await client.delete(f"/api/silences/{sid}")).status == 204
    assert (await client.delete(f"/api/silences/{sid}")).status == 404
