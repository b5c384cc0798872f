"""Every link of a delivered webhook body resolves: the alert, its history, its evidence
(the stored book snapshots before and after it fired) and its delivery log; against the
real embedded PostgreSQL, a webhook receiver on loopback, and the daemon fed by the local
exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alerts.subscriptions import Channel, SubscriptionSpec
from monitor.api.app import ApiContext, ApiServer, build_app
from monitor.api.serve import _use_history
from monitor.domain import Venue
from tests.alerts.receivers import WebhookReceiver
from tests.api.conftest import Stack, api_stack
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

BOOKS: dict[Venue, tuple[str, ...]] = {Venue.COINBASE: ("BTC-USD",), Venue.BINANCE: ("BTCUSDT",)}
# fires a second after the book is live: the evidence ring has the time before it
RULES = (
    '[[rules]]\nname = "wide_spread_evidence"\nmetric = "spread_bps"\n'
    'condition = "above"\nthreshold = 0.0\nfor_s = 1.0\nseverity = "warning"\n'
    'scope = { venue = "coinbase" }\nsummary = "{venue} {symbol}: spread {value} bp"\n'
)


@pytest.fixture
async def delivering(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    receiver: WebhookReceiver,
) -> AsyncIterator[Stack]:
    sub = SubscriptionSpec(name="ops", channel=Channel.WEBHOOK, url=receiver.url)
    async with api_stack(
        tmp_path,
        books=BOOKS,
        dsn=db_dsn,
        rules_toml=RULES,
        subscriptions=(sub,),
        evidence=True,
        evidence_frames={"evidence_frames_before_s": 5.0, "evidence_frames_after_s": 1.0},
    ) as s:
        yield s


async def _get(stack: Stack, url: str, **params: Any) -> tuple[int, Any]:
    async with stack.http.get(url, params=params) as r:
        return r.status, await r.json()


async def test_every_link_of_a_delivered_webhook_resolves_and_evidence_brackets_the_alert(
    delivering: Stack, receiver: WebhookReceiver
) -> None:
    stack = delivering
    await receiver.wait_for(1, timeout_s=30.0)
    body = receiver.bodies[0]
    assert body["state"] == "firing" and body["scope"]["venue"] == "coinbase", body
    alert_id = body["id"]
    links = body["links"]
    assert set(links) == {"alert", "history", "evidence", "frames", "deliveries"}
    assert all(link.startswith(stack.url + "/api/v1/") for link in links.values()), links

    # the evidence: snapshots of the alert's book before and after it fired, once written
    evidence: dict[str, Any] = {}

    async def bracketed() -> bool:
        nonlocal evidence
        status, evidence = await _get(stack, links["evidence"])
        assert status == 200, evidence
        offsets = [s["offset_s"] for s in evidence["snapshots"]]
        # and the raw frames, taken evidence_frames_after_s after it fired
        return (
            any(o < 0 for o in offsets) and any(o > 0 for o in offsets) and bool(evidence["frames"])
        )

    async with asyncio.timeout(30.0):  # the condition, polled: the writer flushes batches
        while not await bracketed():
            await asyncio.sleep(0.1)
    assert evidence["alert"]["id"] == alert_id and evidence["alert"]["firing_since"]
    assert evidence["at"] == evidence["alert"]["firing_since"]
    snaps = evidence["snapshots"]
    assert {(s["venue"], s["symbol"]) for s in snaps} == {("coinbase", "BTC-USD")}
    assert all(abs(s["offset_s"]) <= evidence["window_s"] for s in snaps)
    assert [s["ts_ms"] for s in snaps] == sorted(s["ts_ms"] for s in snaps)
    assert any(s["reason"] == "evidence" for s in snaps)
    assert all(s["bids"] and s["asks"] for s in snaps if s["valid"])

    # every link in the delivered body answers 200
    for name, link in links.items():
        async with stack.http.get(link) as r:
            assert r.status == 200, (name, link, await r.text())
            if name == "frames":  # a recording: JSON lines
                assert r.content_type == "application/x-ndjson"
                assert (await r.text()).count("\n") == evidence["frames"][0]["frames"]
                continue
            got = await r.json()
        if name == "alert":
            assert got["id"] == alert_id and got["rule"] == "wide_spread_evidence"
        elif name == "history":
            assert [a["id"] for a in got["alerts"]] == [alert_id]
        elif name == "deliveries":
            assert [d["subscription"] for d in got["deliveries"]] == ["ops"]

    # unknown alert: 404; not an alert id: 400; a bad limit: 400 (never a 500)
    api = f"{stack.url}/api/v1/alerts"
    unknown = "0" * 20
    for path in (f"{api}/{unknown}", f"{api}/{unknown}/evidence"):
        status, err = await _get(stack, path)
        assert status == 404 and err["error"]["parameter"] == "alert_id", err
    assert await _get(stack, api, alert_id=unknown) == (200, {"alerts": [], "next_cursor": None})
    for path in (f"{api}/nope", f"{api}/nope/evidence", f"{api}/{'A' * 20}/evidence"):
        status, err = await _get(stack, path)
        assert status == 400 and err["error"]["parameter"] == "alert_id", err
    status, err = await _get(stack, links["evidence"], limit="0")
    assert status == 400 and err["error"]["parameter"] == "limit"
    status, err = await _get(stack, api, alert_id="x")
    assert status == 400 and err["error"]["parameter"] == "alert_id"
    status, page = await _get(stack, links["evidence"], limit="1")
    assert status == 200 and len(page["snapshots"]) == 1 and page["truncated"]

    # by time, over the stored events: the alert in its range, in its state now
    status, ranged = await _get(stack, api, **{"from": "0"})
    assert status == 200 and [a["id"] for a in ranged["alerts"]] == [alert_id], ranged
    assert ranged["alerts"][0]["state"] == "firing"
    assert ranged["alerts"][0]["firing_since"] == evidence["alert"]["firing_since"]
    at = evidence["at"]
    for params, ids in (
        ({"from": at, "to": at}, [alert_id]),
        ({"from": at, "state": "firing"}, [alert_id]),
        ({"from": at, "state": "resolved"}, []),
        ({"to": "1000"}, []),
        ({"from": "4102444800000", "to": "4102444800000"}, []),  # 2100
    ):
        status, got = await _get(stack, api, **params)
        assert status == 200 and [a["id"] for a in got["alerts"]] == ids, (params, got)
    for params, parameter in (
        ({"from": "2000", "to": "1000"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-10-10T21:15:00"}, "to"),
        ({"from": "0", "state": "gone"}, "state"),
    ):
        status, err = await _get(stack, api, **params)
        assert status == 400 and err["error"]["parameter"] == parameter, (params, err)

    # `liqmon serve` (no engine in the process): the alert and its evidence from the database
    ctx = ApiContext(stack.settings)
    _use_history(ctx, stack.ctx.history)
    async with ApiServer(build_app(ctx), ("127.0.0.1", 0)) as stored:
        status, again = await _get(stack, f"{stored.url}/api/v1/alerts", **{"from": "0"})
        assert status == 200 and again["alerts"] == ranged["alerts"]
        status, alert = await _get(stack, f"{stored.url}/api/v1/alerts/{alert_id}")
        assert status == 200 and alert["firing_since"] == evidence["alert"]["firing_since"]
        status, again = await _get(stack, f"{stored.url}/api/v1/alerts/{alert_id}/evidence")
        assert status == 200 and again["at"] == evidence["at"]
        assert any(s["offset_s"] < 0 for s in again["snapshots"])
        assert any(s["offset_s"] > 0 for s in again["snapshots"])
