"""Alerts through the API: the rule engine's alerts listed, acknowledged (token), silences
added and removed (token), and alert events on the live push."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.api.conftest import TOKEN, Stack

pytestmark = pytest.mark.integration

GOOD = {"Authorization": f"Bearer {TOKEN}"}


async def _alert_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    async with asyncio.timeout(15.0):
        while True:
            msg: dict[str, Any] = await ws.receive_json()
            events = msg["events"] if msg["type"] == "hello" else [msg.get("event", {})]
            for e in events:  # pending first, then firing (the rule has no for_s)
                if e.get("kind") == "alert" and e["state"] == "firing":
                    return e  # type: ignore[no-any-return]


async def test_alerts_ack_silences_and_push(stack: Stack) -> None:
    http, url = stack.http, stack.url
    ws_url = url.replace("http://", "ws://") + "/api/v1/live/ws"
    async with http.ws_connect(ws_url, params={"kinds": "event"}) as ws:
        event = await _alert_event(ws)
    assert event["rule"] == "wide_spread_test" and event["venue"] == "coinbase"
    assert event["state"] == "firing" and "spread" in event["text"]
    async with http.get(f"{url}/api/v1/alerts", params={"state": "firing"}) as r:
        alerts = (await r.json())["alerts"]
    assert r.status == 200 and {a["symbol"] for a in alerts} == {"BTC-USD", "SOL-USD"}
    target = alerts[0]["id"]
    ack = f"{url}/api/v1/alerts/{target}/ack"
    async with http.post(ack, json={"by": "ops"}) as r:
        assert r.status == 401
    async with http.post(ack, json={"by": "ops"}, headers=GOOD) as r:
        body = await r.json()
        assert r.status == 200 and body["acknowledged_by"] == "ops", body
    async with http.get(f"{url}/api/v1/alerts", params={"state": "resolved"}) as r:
        resolved = (await r.json())["alerts"]
        assert r.status == 200 and all(
            a["state"] == "resolved" and a["resolved_at"] for a in resolved
        )
    assert all(a["severity"] in ("info", "warning", "critical") for a in alerts)
    # the delivery log (this stack has no subscription: nothing was routed)
    async with http.get(f"{url}/api/v1/alerts/{target}/deliveries") as r:
        log = await r.json()
        assert r.status == 200 and log == {"alert_id": target, "deliveries": []}, log
    async with http.post(f"{url}/api/v1/alerts/nope/ack", json={"by": "ops"}, headers=GOOD) as r:
        assert r.status == 404 and (await r.json())["error"]["parameter"] == "alert_id"
    async with http.post(ack, json={"who": "ops"}, headers=GOOD) as r:
        assert r.status == 400 and (await r.json())["error"]["parameter"] == "body"
    # silences: token to add or end one; bad matchers are 400
    silence = {"matchers": {"venue": "coinbase"}, "duration_s": 600, "comment": "maintenance"}
    async with http.post(f"{url}/api/v1/silences", json=silence) as r:
        assert r.status == 401
    async with http.post(f"{url}/api/v1/silences", json=silence, headers=GOOD) as r:
        made = await r.json()
        assert r.status == 201 and made["active"] and made["matchers"] == {"venue": "coinbase"}
    bad = silence | {"matchers": {"colour": "red"}}
    async with http.post(f"{url}/api/v1/silences", json=bad, headers=GOOD) as r:
        assert r.status == 400 and "colour" in (await r.json())["error"]["message"]
    async with http.get(f"{url}/api/v1/silences") as r:
        assert [s["id"] for s in (await r.json())["silences"]] == [made["id"]]
    async with http.delete(f"{url}/api/v1/silences/{made['id']}") as r:
        assert r.status == 401
    async with http.delete(f"{url}/api/v1/silences/{made['id']}", headers=GOOD) as r:
        assert r.status == 200
    async with http.delete(f"{url}/api/v1/silences/{made['id']}", headers=GOOD) as r:
        assert r.status == 404
