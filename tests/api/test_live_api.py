"""Live endpoints against a daemon fed by the local exchange."""

from __future__ import annotations

import pytest

from tests.api.conftest import BOOKS, Stack

pytestmark = pytest.mark.integration


async def test_live_endpoints(stack: Stack) -> None:
    http, url = stack.http, stack.url
    async with http.get(f"{url}/api/v1/venues") as r:
        assert r.status == 200
        venues = {v["venue"]: v for v in (await r.json())["venues"]}
    for venue, symbols in BOOKS.items():
        v = venues[venue.value]
        assert v["enabled"] and v["books"] == len(symbols) and v["valid_books"] == len(symbols)
        assert v["status"] == "ok" and v["health"]["open_connections"] >= 1
    async with http.get(f"{url}/api/v1/live/metrics", params={"asset": "SOL"}) as r:
        body = await r.json()
    assert r.status == 200
    rows = body["rows"]
    assert {(x["venue"], x["symbol"]) for x in rows} == {
        ("binance", "SOLUSDT"),
        ("binance_futures", "SOLUSDT"),
        ("coinbase", "SOL-USD"),
    }
    for row in rows:
        assert row["valid"] and row["depth_1pct_usd"] > 0 and row["spread_bps"] >= 0
        assert row["dislocation_bps"] is not None
        assert (row["basis_bps"] is None) == (row["kind"] == "spot")
    async with http.get(
        f"{url}/api/v1/live/book", params={"venue": "binance", "symbol": "SOLUSDT", "depth": "5"}
    ) as r:
        book = await r.json()
    assert r.status == 200 and len(book["bids"]) == 5 and len(book["asks"]) == 5
    assert float(book["bids"][0][0]) < float(book["asks"][0][0])


async def test_errors_name_the_parameter(stack: Stack) -> None:
    http, url = stack.http, stack.url
    cases = [
        ("/api/v1/live/book", {"venue": "binance"}, 400, "symbol"),
        (
            "/api/v1/live/book",
            {"venue": "binance", "symbol": "SOLUSDT", "depth": "x"},
            400,
            "depth",
        ),
        (
            "/api/v1/live/book",
            {"venue": "binance", "symbol": "SOLUSDT", "depth": "100000"},
            400,
            "depth",
        ),
        ("/api/v1/live/book", {"venue": "binance", "symbol": "NOPE"}, 404, "symbol"),
        ("/api/v1/live/metrics", {"venue": "nowhere"}, 404, "venue"),
        ("/api/v1/live/metrics", {"limit": "0"}, 400, "limit"),
        ("/api/v1/live/metrics", {"cursor": "%%%"}, 400, "cursor"),
        ("/api/v1/live/metrics", {"bogus": "1"}, 400, "bogus"),
        ("/api/v1/events", {"from": "yesterday"}, 400, "from"),
        (
            "/api/v1/events",
            {"from": "2025-10-10T21:00:00Z", "to": "2025-10-10T20:00:00Z"},
            400,
            "to",
        ),
    ]
    for path, params, status, parameter in cases:
        async with http.get(f"{url}{path}", params=params) as r:
            body = await r.json()
            assert r.status == status, (path, params, body)
            assert body["error"]["parameter"] == parameter, (path, params, body)
            if status == 400:
                assert parameter in body["error"]["message"]
    async with http.get(f"{url}/api/v1/nothing") as r:
        assert r.status == 404 and "openapi.json" in (await r.json())["error"]["message"]


async def test_limits_and_cursor_pagination(stack: Stack) -> None:
    http, url = stack.http, stack.url
    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        async with http.get(f"{url}/api/v1/instruments", params=params) as r:
            body = await r.json()
        assert r.status == 200 and len(body["instruments"]) <= 2
        seen += [(i["venue"], i["symbol"]) for i in body["instruments"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 6
    max_limit = stack.settings.api.max_limit
    async with http.get(f"{url}/api/v1/instruments", params={"limit": str(max_limit + 1)}) as r:
        assert r.status == 400 and (await r.json())["error"]["parameter"] == "limit"


async def test_operations(stack: Stack) -> None:
    http, url = stack.http, stack.url
    async with http.get(f"{url}/health") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with http.get(f"{url}/ready") as r:
        body = await r.json()
        assert r.status == 200 and body["ready"], body
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    assert r.status == 200
    for needle in (
        'liqmon_books{condition="valid",venue="binance"} 2.0',
        'liqmon_venue_frames_total{venue="coinbase"}',
        'liqmon_sink_queue_depth{sink="api-live"}',
        'liqmon_sink_overflow_total{sink="api-live"} 0.0',
        "liqmon_venue_resyncs_total",
        "liqmon_venue_errors_total",
        "liqmon_ws_clients 0.0",
        "liqmon_api_request_seconds_bucket",
    ):
        assert needle in text, needle


async def test_page_and_assets(stack: Stack) -> None:
    http, url = stack.http, stack.url
    async with http.get(f"{url}/") as r:
        html = await r.text()
        assert r.status == 200 and "uPlot.iife.min.js" in html
    for asset in ("/static/app.js", "/static/style.css", "/static/vendor/uPlot.iife.min.js"):
        async with http.get(f"{url}{asset}") as r:
            assert r.status == 200, asset
