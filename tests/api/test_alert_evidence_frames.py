"""The black box: a firing alert's evidence carries the raw frames of its venue from before
it fired to after, only its book's frames on a venue carrying several, retrievable through
the API as a recording that replays to the book the alert saw; the capture's size bound.
Against the daemon fed by the local exchange, a webhook receiver on loopback and the
embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from alerts.subscriptions import Channel, SubscriptionSpec
from feeds.recording import Record, RecordingReader
from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.pipeline import BookPipeline
from tests.alerts.receivers import WebhookReceiver
from tests.api.conftest import Stack, api_stack
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

# two books on coinbase (one connection multiplexes them), one on binance
BOOKS: dict[Venue, tuple[str, ...]] = {
    Venue.COINBASE: ("BTC-USD", "ETH-USD"),
    Venue.BINANCE: ("BTCUSDT",),
}
RULES = (
    '[[rules]]\nname = "wide_spread_frames"\nmetric = "spread_bps"\n'
    'condition = "above"\nthreshold = 0.0\nfor_s = 1.0\nseverity = "warning"\n'
    'scope = { venue = "coinbase", symbol = "BTC-USD" }\n'
    'summary = "{venue} {symbol}: spread {value} bp"\n'
)
BEFORE_S = 30.0
AFTER_S = 1.5


def _stack(tmp_path: Path, dsn: str, receiver: WebhookReceiver, **frames: Any) -> Any:
    sub = SubscriptionSpec(name="ops", channel=Channel.WEBHOOK, url=receiver.url)
    return api_stack(
        tmp_path,
        books=BOOKS,
        dsn=dsn,
        rules_toml=RULES,
        subscriptions=(sub,),
        evidence=True,
        evidence_frames={
            "evidence_frames_before_s": BEFORE_S,
            "evidence_frames_after_s": AFTER_S,
            **frames,
        },
    )


async def _evidence(stack: Stack, url: str) -> dict[str, Any]:
    async with asyncio.timeout(30.0):  # the capture is taken AFTER_S after the alert fires
        while True:
            async with stack.http.get(url) as r:
                assert r.status == 200, await r.text()
                evidence: dict[str, Any] = await r.json()
            if evidence["frames"]:
                return evidence
            await asyncio.sleep(0.1)


async def _download(stack: Stack, url: str, tmp_path: Path) -> tuple[Path, list[Record]]:
    async with stack.http.get(url) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "application/x-ndjson"
        body = await r.read()
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "evidence.jsonl"
    path.write_bytes(body)
    reader = RecordingReader(strict=True)
    return path, list(reader.read(path))


async def test_a_firing_alert_keeps_the_raw_frames_around_it_and_they_replay_to_its_book(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    receiver: WebhookReceiver,
) -> None:
    async with _stack(tmp_path, db_dsn, receiver) as stack:
        await receiver.wait_for(1, timeout_s=30.0)
        body = receiver.bodies[0]
        assert body["scope"]["symbol"] == "BTC-USD" and body["state"] == "firing"
        alert_id = body["id"]
        assert stack.ctx.alerts is not None
        alert = stack.ctx.alerts.engine.find(alert_id)
        assert alert is not None and alert.firing_since_ns is not None
        fired_ns = alert.firing_since_ns
        evidence = await _evidence(stack, body["links"]["evidence"])
        (kept,) = evidence["frames"]
        assert kept["venue"] == "coinbase" and kept["symbols"] == ["BTC-USD"]
        assert kept["from_offset_s"] == -BEFORE_S and kept["to_offset_s"] == AFTER_S
        assert not kept["truncated"] and kept["frames"] > 0
        path, records = await _download(stack, body["links"]["frames"], tmp_path)
        _, same = await _download(stack, stack.url + kept["download"], tmp_path / "x")
        assert same == records
        # the frame value the alert saw, as stored with its firing event
        assert stack.ctx.history is not None
        value = await stack.ctx.history.pool.fetchval(
            "SELECT value FROM alert_events WHERE alert_id = $1 AND state = 'firing'", alert_id
        )
        registry = (
            stack.daemon.pipeline.registry if stack.daemon and stack.daemon.pipeline else None
        )
        settings = stack.settings
    assert registry is not None
    # the recording: the alert's venue only, its book only, before and after it fired
    assert len(records) == kept["frames"]
    assert {r.venue for r in records} == {"coinbase"}
    assert all("BTC-USD" in r.data for r in records if r.kind == "ws")
    # the other book's updates left out (the subscription's answer names both)
    assert not any('"product_id":"ETH-USD"' in r.data for r in records)
    stamps = [r.recv_ns for r in records]
    assert stamps == sorted(stamps)
    assert fired_ns - BEFORE_S * 1e9 - 1e3 <= stamps[0] and stamps[-1] <= fired_ns + AFTER_S * 1e9
    assert any(s < fired_ns for s in stamps) and any(s > fired_ns for s in stamps)
    for r in records:  # each frame is the venue's JSON, as received
        assert isinstance(msgspec.json.decode(r.data), dict | list)
    # replayed up to the tick the alert fired at, the frames rebuild the book it saw: the
    # subscription's snapshot is in the window (the alert fired seconds after the start)
    pipeline = BookPipeline.from_settings(registry, ADAPTERS, settings)
    pipeline.add_book(Venue.COINBASE, "BTC-USD")
    for r in records:
        if r.recv_ns <= fired_ns:
            pipeline.feed(Venue.COINBASE, r.kind, r.url, r.data, r.recv_ns)
    pipeline.flush()
    sample = pipeline.tick(fired_ns)
    (row,) = [i for i, b in enumerate(sample.books) if b.symbol == "BTC-USD"]
    assert bool(sample.valid[row])
    assert float(sample.spread_bps[row]) == pytest.approx(value, rel=1e-12, abs=1e-12)
    # and `liqmon replay` reads the downloaded file as it is
    out = tmp_path / "metrics.jsonl"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "monitor", "replay", str(path), "--metrics-out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    books = [r for r in rows if r.get("kind") == "book" and r.get("symbol") == "BTC-USD"]
    assert books and books[-1]["venue"] == "coinbase" and books[-1]["valid"]


async def test_the_capture_is_bounded_the_newest_frames_kept(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    receiver: WebhookReceiver,
) -> None:
    limit = 4_000
    async with _stack(tmp_path, db_dsn, receiver, evidence_frames_max_bytes=limit) as stack:
        await receiver.wait_for(1, timeout_s=30.0)
        body = receiver.bodies[0]
        evidence = await _evidence(stack, body["links"]["evidence"])
        (kept,) = evidence["frames"]
        _, records = await _download(stack, body["links"]["frames"], tmp_path)
        assert stack.ctx.history is not None
        async with stack.ctx.history.pool.acquire() as conn:
            stored = await _stored_sizes(conn, body["id"])
    assert kept["truncated"] and 0 < kept["bytes"] <= limit
    assert sum(len(r.data.encode()) for r in records) == kept["bytes"] == stored[0]
    assert stored[1] < limit  # compressed as stored
    # the newest kept: the last frame is from after the alert fired
    assert records[-1].recv_ns > records[0].recv_ns


async def _stored_sizes(conn: asyncpg.Connection, alert_id: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT bytes, octet_length(body) AS stored FROM alert_evidence_frames WHERE alert_id = $1",
        alert_id,
    )
    assert row is not None
    return int(row["bytes"]), int(row["stored"])
