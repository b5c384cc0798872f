"""History through the API equals the replay's metrics-out over the same buckets: a real
recording replayed with ``--store`` into the suite's embedded PostgreSQL, then asked over
HTTP (JSON and CSV, paged)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.api.app import ApiContext, ApiServer, build_app
from monitor.api.history import HistorySource
from monitor.settings import load_settings
from tests.conftest import SPOT_RECORDING
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MINUTE_MS = 60_000


@pytest.fixture
async def stored(db_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:  # noqa: F811
    """The spot recording stored; yields the API's URL and the replay's metrics-out rows."""
    metrics_out = tmp_path / "m.jsonl"
    env = os.environ | {"LIQMON_DATABASE__DSN": db_dsn, "LIQMON_MONITOR__LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "replay", str(SPOT_RECORDING), "--store",
         "--metrics-out", str(metrics_out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in metrics_out.read_text().splitlines()]
    rows = [r for r in lines if r["kind"] == "book"]  # asset and fx rows are not books
    history = await HistorySource.open(db_dsn)
    ctx = ApiContext(load_settings([], env={}))
    ctx.history = history
    try:
        async with ApiServer(build_app(ctx), ("127.0.0.1", 0)) as server:
            yield server.url, rows
    finally:
        await history.close()


def _expected(rows: list[dict[str, Any]], venue: str, symbol: str) -> dict[int, dict[str, Any]]:
    """Buckets of one minute from metrics-out, as the API defines them."""
    out: dict[int, dict[str, Any]] = {}
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["venue"] == venue and r["symbol"] == symbol:
            groups[int(r["ts"] * 1000) // MINUTE_MS * MINUTE_MS].append(r)
    for bucket, members in groups.items():
        members.sort(key=lambda r: r["ts"])
        valid = [r for r in members if r["valid"]]
        depth = [
            None if None in r["depth"]["1"] else r["depth"]["1"][0] + r["depth"]["1"][1]
            for r in valid
        ]
        # SQL aggregates skip nulls (a side that could not be priced in USD)
        values = {
            "depth_1pct_usd": [x for x in depth if x is not None],
            "spread_bps": [r["spread_bps"] for r in valid if r["spread_bps"] is not None],
            "mid": [r["mid"] for r in valid if r["mid"] is not None],
        }
        out[bucket] = {"samples": len(members), "valid_samples": len(valid)}
        for name, xs in values.items():
            out[bucket][name] = (
                {"min": min(xs), "max": max(xs), "avg": sum(xs) / len(xs), "last": xs[-1]}
                if xs
                else {"min": None, "max": None, "avg": None, "last": None}
            )
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


async def _all_pages(
    http: aiohttp.ClientSession, url: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        async with http.get(url, params=params | ({"cursor": cursor} if cursor else {})) as r:
            body = await r.json()
            assert r.status == 200, body
        out += body["buckets"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_history_equals_the_replay_metrics_out(
    stored: tuple[str, list[dict[str, Any]]],
) -> None:
    url, rows = stored
    books = sorted({(r["venue"], r["symbol"]) for r in rows if r["valid"]})
    assert books
    start_ms = int(min(r["ts"] for r in rows) * 1000) // MINUTE_MS * MINUTE_MS
    end_ms = int(max(r["ts"] for r in rows) * 1000) + 1
    fields = ("depth_1pct_usd", "spread_bps", "mid")
    async with aiohttp.ClientSession() as http:
        for venue, symbol in books:
            params = {"venue": venue, "symbol": symbol, "from": str(start_ms), "to": str(end_ms),
                      "interval": "1m", "fields": ",".join(fields)}  # fmt: skip
            # small pages, walked with the cursor: the same buckets as one page
            paged = await _all_pages(http, f"{url}/api/v1/history/metrics", params | {"limit": "3"})
            whole = await _all_pages(http, f"{url}/api/v1/history/metrics", params)
            assert paged == whole
            expected = _expected(rows, venue, symbol)
            assert {b["ts_ms"] for b in whole} == set(expected), (venue, symbol)
            for b in whole:
                want = expected[b["ts_ms"]]
                assert (b["samples"], b["valid_samples"]) == (
                    want["samples"],
                    want["valid_samples"],
                )
                for name in fields:
                    for agg in ("min", "max", "avg", "last"):
                        assert _close(b[name][agg], want[name][agg]), (
                            venue,
                            symbol,
                            b["ts"],
                            name,
                            agg,
                        )
            # CSV carries the same numbers
            async with http.get(
                f"{url}/api/v1/history/metrics", params=params | {"format": "csv"}
            ) as r:
                assert r.status == 200 and r.content_type == "text/csv"
                table = list(csv.DictReader(io.StringIO(await r.text())))
            assert len(table) == len(whole)
            for line, b in zip(table, whole, strict=True):
                assert int(line["ts_ms"]) == b["ts_ms"] and line["venue"] == venue
                for name in fields:
                    for agg in ("min", "max", "avg", "last"):
                        cell = line[f"{name}_{agg}"]
                        assert _close(float(cell) if cell else None, b[name][agg])
        # per asset: the same depth buckets as per book
        venue, symbol = books[0]
        asset = next(r for r in rows if r["symbol"] == symbol)["instrument"].split("-")[0]
        params = {"asset": asset, "from": str(start_ms), "to": str(end_ms), "interval": "1m"}
        by_asset = await _all_pages(http, f"{url}/api/v1/history/depth", params)
        expected = _expected(rows, venue, symbol)
        mine = [b for b in by_asset if (b["venue"], b["symbol"]) == (venue, symbol)]
        assert {b["ts_ms"] for b in mine} == set(expected)
        for b in mine:
            for agg in ("min", "max", "avg", "last"):
                assert _close(b["depth_1pct_usd"][agg], expected[b["ts_ms"]]["depth_1pct_usd"][agg])


async def test_history_errors_and_the_book_at_a_time(
    stored: tuple[str, list[dict[str, Any]]],
) -> None:
    url, rows = stored
    venue, symbol = next((r["venue"], r["symbol"]) for r in rows if r["valid"])
    t0 = int(rows[0]["ts"] * 1000)
    async with aiohttp.ClientSession() as http:
        base = {"venue": venue, "symbol": symbol, "from": str(t0), "to": str(t0 + 3_600_000)}
        cases = [
            (base | {"symbol": "NOPE"}, 404, "symbol"),
            (base | {"venue": "nowhere"}, 404, "venue"),
            (base | {"interval": "0m"}, 400, "interval"),
            (base | {"interval": "1s", "to": str(t0 + 10**12)}, 400, "interval"),
            (base | {"to": str(t0 - 1)}, 400, "to"),
            (base | {"from": "noon"}, 400, "from"),
            (base | {"fields": "depth,vibes"}, 400, "fields"),
            (base | {"format": "xml"}, 400, "format"),
            (base | {"cursor": "o5"}, 400, "cursor"),
            (base | {"limit": "100001"}, 400, "limit"),
        ]
        for params, status, parameter in cases:
            async with http.get(f"{url}/api/v1/history/metrics", params=params) as r:
                body = await r.json()
                assert (r.status, body["error"].get("parameter")) == (status, parameter), (
                    params,
                    body,
                )
        # RFC 3339 and epoch ms name the same instant
        iso = {"from": "2021-10-12T00:00:00Z", "to": "2021-10-13T00:00:00+00:00"}
        ms = {"from": "1633996800000", "to": "1634083200000"}
        answers = []
        for span in (iso, ms):
            async with http.get(f"{url}/api/v1/history/metrics", params=base | span) as r:
                answers.append(await r.json())
        assert answers[0] == answers[1] and answers[0]["buckets"]
        async with http.get(
            f"{url}/api/v1/book", params={"venue": venue, "symbol": symbol, "at": str(t0 + 120_000)}
        ) as r:
            book = await r.json()
            assert r.status == 200, book
        assert (
            book["bids"] and book["asks"] and float(book["bids"][0][0]) < float(book["asks"][0][0])
        )
        async with http.get(f"{url}/api/v1/ranking", params={"at": str(t0 + 120_000)}) as r:
            assert r.status == 200 and "lowest" in await r.json()
        async with http.get(f"{url}/api/v1/live/metrics") as r:
            assert r.status == 503 and "liqmon serve" in (await r.json())["error"]["message"]
        async with http.get(f"{url}/api/v1/instruments", params={"venue": venue}) as r:
            assert (venue, symbol) in {
                (i["venue"], i["symbol"]) for i in (await r.json())["instruments"]
            }
