"""Access: bearer tokens on every write endpoint (and on reads when they are closed), CORS
off unless configured, and tokens kept only as hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.api.app import ROUTES
from monitor.api.auth import TokenCheck, env_token_hashes, hash_token, new_token
from tests.api.conftest import TOKEN, Stack, api_stack

pytestmark = pytest.mark.integration

GOOD = {"Authorization": f"Bearer {TOKEN}"}


async def test_every_write_endpoint_needs_a_token(stack: Stack) -> None:
    routes = stack.app[ROUTES]
    writes = [r for r in routes if r.method not in {"GET", "HEAD", "OPTIONS"}]
    assert writes, "no write endpoint is declared"
    assert all(r.write for r in writes), "a write endpoint is not marked as needing a token"
    for route in writes:
        url = f"{stack.url}{route.path}".replace("{alert_id}", "a1").replace("{silence_id}", "s1")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            async with stack.http.request(
                route.method, url, json={"text": "x"}, headers=headers
            ) as r:
                assert r.status == 401, (route.path, headers)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "token" in (await r.json())["error"]["message"]
    async with stack.http.post(
        f"{stack.url}/api/v1/events",
        json={"text": "binance maintenance", "venue": "binance"},
        headers=GOOD,
    ) as r:
        assert r.status == 201, await r.text()
        note = await r.json()
    assert note["kind"] == "note" and note["text"] == "binance maintenance"
    async with stack.http.get(f"{stack.url}/api/v1/events", params={"kind": "note"}) as r:
        assert [e["id"] for e in (await r.json())["events"]] == [note["id"]]
    async with stack.http.post(f"{stack.url}/api/v1/events", json={"txt": 1}, headers=GOOD) as r:
        body = await r.json()
        assert r.status == 400 and body["error"]["parameter"] == "body", body
    async with stack.http.post(f"{stack.url}/api/v1/events", data=b"{", headers=GOOD) as r:
        assert r.status == 400


async def test_closed_reads_and_cors(tmp_path: Path) -> None:
    async with api_stack(tmp_path, open_reads=False) as stack:
        url = f"{stack.url}/api/v1/live/metrics"
        async with stack.http.get(url) as r:
            assert r.status == 401
        async with stack.http.get(url, headers=GOOD) as r:
            assert r.status == 200
        # operations and the document stay open (probes, scrapers, clients' generators)
        for path in ("/health", "/metrics", "/api/v1/openapi.json"):
            async with stack.http.get(f"{stack.url}{path}") as r:
                assert r.status == 200, path
        # CORS off by default: no Access-Control-* header, a preflight is not answered
        origin = {"Origin": "https://example.org"}
        async with stack.http.get(url, headers=GOOD | origin) as r:
            assert not any(h.lower().startswith("access-control") for h in r.headers)
        async with stack.http.options(
            url, headers=origin | {"Access-Control-Request-Method": "GET"}
        ) as r:
            assert r.status in {401, 405} and "Access-Control-Allow-Origin" not in r.headers


async def test_cors_for_configured_origins(tmp_path: Path) -> None:
    async with api_stack(tmp_path, cors_origins=("https://ok.example",)) as stack:
        url = f"{stack.url}/api/v1/venues"
        async with stack.http.get(url, headers={"Origin": "https://ok.example"}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "https://ok.example"
        async with stack.http.options(
            url, headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"}
        ) as r:
            assert r.status == 204 and "POST" in r.headers["Access-Control-Allow-Methods"]
        async with stack.http.get(url, headers={"Origin": "https://evil.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_tokens_are_hashed_and_compared_by_hash() -> None:
    token = new_token()
    assert token.startswith("lqm_") and len(token) > 40
    hashes = env_token_hashes({"LIQMON_API_TOKENS": f" {token} , other"})
    assert hashes == {hash_token(token), hash_token("other")} and token not in hashes
    check = TokenCheck(hashes)
    assert await check.valid(token) and await check.valid("other")
    assert not await check.valid(token + "x") and not await check.valid(None)
    seen: list[str] = []

    async def lookup(digest: str) -> bool:
        seen.append(digest)
        return digest == hash_token("from-db")

    check = TokenCheck(hashes, lookup)
    assert await check.valid("from-db") and seen == [hash_token("from-db")]
