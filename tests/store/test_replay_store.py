"""`liqmon replay --store`, then `liqmon query`: the stored history reads back exactly as the
replay's metrics-out, through the real command line and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import SPOT_RECORDING, USDM_RECORDING
from tests.store.conftest import open_tmp_dir

ROOT = Path(__file__).resolve().parents[2]


def liqmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def _env(dsn: str) -> dict[str, str]:
    # a data directory of its own: the spill file stays out of ~/.liqmon
    return os.environ | {
        "LIQMON_DATABASE__DSN": dsn,
        "LIQMON_MONITOR__LOG_FORMAT": "json",
        "LIQMON_MONITOR__DATA_DIR": str(open_tmp_dir("liqmon-test-data-")),
    }


def test_replay_store_then_query_metrics_returns_exactly_the_metrics_out_rows(
    db_dsn: str, tmp_path: Path
) -> None:
    metrics_out = tmp_path / "m.jsonl"
    env = _env(db_dsn)
    replay = liqmon(
        "replay",
        str(SPOT_RECORDING),
        str(USDM_RECORDING),
        "--store",
        "--metrics-out",
        str(metrics_out),
        env=env,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    expected: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in metrics_out.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "book":  # asset and fx rows are not book_metrics rows
            expected[record["venue"], record["symbol"]].append(record)
    assert len(expected) >= 4  # spot and USD-M books, valid and not
    for (venue, symbol), rows in expected.items():
        query = liqmon(
            "query",
            "metrics",
            "--venue",
            venue,
            "--symbol",
            symbol,
            "--from",
            str(rows[0]["ts"]),
            "--to",
            str(rows[-1]["ts"]),
            "--format",
            "json",
            env=env,
        )
        assert query.returncode == 0, query.stderr[-2000:]
        stored = [json.loads(line) for line in query.stdout.splitlines()]
        assert stored == rows, (venue, symbol)
        # same fields in the same order, as metrics-out writes them
        assert [list(r) for r in stored] == [list(r) for r in rows]

    # a second --store run of the same recordings adds nothing (natural keys)
    again = liqmon("replay", str(SPOT_RECORDING), str(USDM_RECORDING), "--store", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    total = sum(len(rows) for rows in expected.values())

    async def count() -> int:
        conn = await asyncpg.connect(db_dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM book_metrics"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == total


def test_query_metrics_interval_depth_and_book_read_the_stored_replay(db_dsn: str) -> None:
    env = _env(db_dsn)
    replay = liqmon("replay", str(SPOT_RECORDING), "--store", env=env)
    assert replay.returncode == 0, replay.stderr[-2000:]

    async def first_book() -> tuple[str, str, float, float, int]:
        conn = await asyncpg.connect(db_dsn)
        try:
            row = await conn.fetchrow(
                "SELECT venue, symbol, base, extract(epoch FROM min(ts))::float8 AS t0,"
                " extract(epoch FROM max(ts))::float8 AS t1, count(*) AS n FROM book_metrics"
                " GROUP BY 1, 2, 3 ORDER BY n DESC LIMIT 1"
            )
            return row["venue"], row["symbol"], row["t0"], row["t1"], row["n"]
        finally:
            await conn.close()

    venue, symbol, t0, t1, n = asyncio.run(first_book())
    bucketed = liqmon(
        "query",
        "metrics",
        "--venue",
        venue,
        "--symbol",
        symbol,
        "--from",
        str(t0),
        "--to",
        str(t1),
        "--interval",
        "1m",
        "--format",
        "csv",
        env=env,
    )
    assert bucketed.returncode == 0, bucketed.stderr
    lines = bucketed.stdout.splitlines()
    assert lines[0].split(",")[:5] == ["ts", "venue", "symbol", "samples", "valid_samples"]
    assert sum(int(line.split(",")[3]) for line in lines[1:]) == n

    table = liqmon(
        "query",
        "metrics",
        "--venue",
        venue,
        "--symbol",
        symbol,
        "--from",
        str(t0),
        "--to",
        str(t1),
        env=env,
    )
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == [
        "ts",
        "venue",
        "symbol",
    ]
    assert len(table.stdout.splitlines()) == n + 1

    book = liqmon(
        "query",
        "book",
        "--venue",
        venue,
        "--symbol",
        symbol,
        "--at",
        str(t1),
        "--format",
        "json",
        env=env,
    )
    assert book.returncode == 0, book.stderr
    snapshot = json.loads(book.stdout)
    assert snapshot["venue"] == venue and snapshot["reason"] == "periodic"
    assert snapshot["bids"] and all(len(level) == 2 for level in snapshot["bids"])

    nothing = liqmon(
        "query",
        "metrics",
        "--venue",
        venue,
        "--symbol",
        "NOPE",
        "--from",
        str(t0),
        "--to",
        str(t1),
        env=env,
    )
    assert nothing.returncode == 1 and "(no rows)" in nothing.stdout


def test_query_rejects_bad_times_and_intervals_in_one_line(db_dsn: str) -> None:
    env = _env(db_dsn)
    bad_time = liqmon("query", "ranking", "--at", "yesterday-ish", env=env)
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr
    assert "Traceback" not in bad_time.stderr
    bad_interval = liqmon(
        "query",
        "depth",
        "--asset",
        "BTC",
        "--from",
        "0",
        "--to",
        "1",
        "--interval",
        "5 minutes",
        env=env,
    )
    assert bad_interval.returncode == 2 and "interval" in bad_interval.stderr


def test_replay_store_with_its_own_data_dir_starts_the_embedded_server() -> None:
    data_dir = open_tmp_dir("liqmon-test-datadir-")
    env = os.environ.copy()
    env.pop("LIQMON_DATABASE__DSN", None)
    replay = liqmon("replay", str(SPOT_RECORDING), "--store", "--data-dir", str(data_dir), env=env)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert (data_dir / "postgres" / "PG_VERSION").is_file()
    query = liqmon(
        "query",
        "depth",
        "--asset",
        "NKN",
        "--from",
        "2021-10-12T00:00:00Z",
        "--to",
        "2021-10-13T00:00:00Z",
        "--data-dir",
        str(data_dir),
        "--format",
        "json",
        env=env,
    )
    assert query.returncode == 0, query.stderr[-2000:]
    rows = [json.loads(line) for line in query.stdout.splitlines()]
    assert (
        rows
        and {r["venue"] for r in rows} == {"binance"}
        and all(r["bid_1pct_usd"] > 0 for r in rows)
    )
    # the server was stopped when each command ended
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


def test_a_scenario_replay_stores_its_assets_fx_scores_and_score_events(
    db_dsn: str, tmp_path: Path
) -> None:
    """The analytics' rows: as many as metrics-out's "asset"/"fx" lines and alerts-out's
    lines, with the same values."""
    env = _env(db_dsn)
    made = liqmon("scenario", "--out", str(tmp_path), "--hours", "0.5", env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    metrics_out, alerts_out = tmp_path / "m.jsonl", tmp_path / "a.jsonl"
    replay = liqmon(
        "replay", str(tmp_path / "scenario.jsonl.gz"), "--config", str(tmp_path / "liqmon.toml"),
        "--store", "--metrics-out", str(metrics_out), "--alerts-out", str(alerts_out), env=env,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-2000:]
    lines = [json.loads(line) for line in metrics_out.read_text().splitlines()]
    assets = [r for r in lines if r["kind"] == "asset"]
    fx = [r for r in lines if r["kind"] == "fx"]
    # score state changes (rule events are the alert engine's to store)
    events = [
        e for e in map(json.loads, alerts_out.read_text().splitlines()) if e["kind"] == "score"
    ]
    assert assets and fx

    async def stored() -> dict[str, Any]:
        conn = await asyncpg.connect(db_dsn)
        try:
            return {
                "assets": await conn.fetch(
                    "SELECT (extract(epoch FROM ts) * 1e6)::int8 AS ts_us, asset, consensus_usd,"
                    " lvs, state, depth_1pct_consolidated FROM asset_metrics ORDER BY ts, asset"
                ),
                "fx": await conn.fetch(
                    "SELECT (extract(epoch FROM ts) * 1e6)::int8 AS ts_us, currency, usd, assumed"
                    " FROM fx_rates ORDER BY ts, currency"
                ),
                "events": await conn.fetchval(
                    "SELECT count(*) FROM alert_events WHERE kind = 'score'"
                ),
                "asset_scores": await conn.fetchval(
                    "SELECT count(*) FROM score_samples WHERE scope = 'asset'"
                ),
                "market_scores": await conn.fetchval(
                    "SELECT count(DISTINCT ts) FROM score_samples WHERE scope = 'market'"
                ),
                "ticks": await conn.fetchval("SELECT count(DISTINCT ts) FROM book_metrics"),
            }
        finally:
            await conn.close()

    got = asyncio.run(stored())
    assert [
        (
            r["ts_us"] / 1e6,
            r["asset"],
            r["consensus_usd"],
            r["lvs"],
            r["state"],
            r["depth_1pct_consolidated"],
        )
        for r in got["assets"]
    ] == sorted(
        (
            a["ts"],
            a["asset"],
            a["consensus_usd"],
            a["lvs"],
            a["state"],
            a["depth_1pct_usd"]["consolidated"],
        )
        for a in assets
    )
    assert [(r["ts_us"] / 1e6, r["currency"], r["usd"], r["assumed"]) for r in got["fx"]] == sorted(
        (f["ts"], f["currency"], f["usd"], f["assumed"]) for f in fx
    )
    assert got["asset_scores"] == len(assets)
    assert got["market_scores"] >= got["ticks"] > 0
    assert got["events"] == len(events)
