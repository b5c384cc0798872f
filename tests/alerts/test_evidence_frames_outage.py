"""The database out while an alert fires and its raw frames are taken: the alert is not
lost (stored and delivered when the database returns), the capture does not raise or log a
traceback, and its frames are stored on a later try. A real PostgreSQL of the test's own
(stopped and started), a real recording's frames in the ring, a webhook receiver."""

from __future__ import annotations

import asyncio
import time
import zlib

import asyncpg
import msgspec
import pytest
import structlog

from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher
from alerts.engine import GroupingPolicy
from alerts.pg_outbox import PgOutbox
from alerts.rules import Condition, Frame, RuleSpec, Scope
from alerts.subscriptions import Channel
from feeds.recording import RecordingReader
from monitor.alerting import AlertEngineSink, RuleRunner
from monitor.framering import FrameRing
from monitor.settings import DatabaseSettings
from monitor.store.embedded import EmbeddedPostgres
from monitor.store.evidence import FrameEvidence
from tests.alerts.receivers import WebhookReceiver
from tests.alerts.test_delivery import ENV, FAST, running, webhook_sub
from tests.alerts.test_pg_outbox import migrated, own_server, receiver  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

S = 1_000_000_000
RECORDING = "tests/recordings/okx-2022-05-13.jsonl.gz"
SCOPE = Scope("okx", "BTC-USDT", "BTC", "BTC-USDT-SPOT", "spot")
RULE = RuleSpec(
    name="spread_wide",
    metric="spread_bps",
    condition=Condition.ABOVE,
    threshold=1.0,
    severity="warning",
    summary="{venue} {symbol}: spread {value} bp",
)


async def test_database_out_during_capture_no_alert_lost_no_traceback_frames_stored_later(
    own_server: EmbeddedPostgres,  # noqa: F811
    receiver: WebhookReceiver,  # noqa: F811
) -> None:
    dsn = own_server.dsn
    await migrated(dsn)
    records = list(RecordingReader(strict=True).read(RECORDING))
    ws = [r for r in records if r.kind == "ws"]
    now = {"ns": 0}
    offset = time.time_ns() - 60 * S - ws[0].recv_ns  # the recording's clock moved to today
    settings = DatabaseSettings(evidence_frames_before_s=20.0, evidence_frames_after_s=5.0)
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2, timeout=2)
    evidence = FrameEvidence(pool, settings, clock_ns=lambda: now["ns"])
    ring = FrameRing("okx", "wss://ws.okx.com:8443/ws/v5/public", evidence.limits)
    evidence.rings["okx"] = ring
    for i in range(0, len(ws), 8):  # batches, as the daemon hands them over
        batch = ws[i : i + 8]
        ring.add([r.data.encode() for r in batch], [r.recv_ns + offset for r in batch])
    fired_ns = ws[len(ws) // 2].recv_ns + offset
    outbox = PgOutbox(dsn)
    sink = AlertEngineSink(
        RuleRunner([RULE], GroupingPolicy(group_wait_s=0, group_interval_s=0)),
        [webhook_sub(receiver.url)],
        outbox,
    )
    sink.listeners.append(evidence.listen)
    tick = Frame(fired_ns)
    tick.add(RULE.metric, SCOPE, 7.5)
    with structlog.testing.capture_logs() as logs:
        await asyncio.to_thread(own_server.stop)
        events = await sink.process(tick)  # fires while the database is out: kept
        assert [e.state.value for e in events] == ["pending", "firing"]
        assert sink.buffered == 1
        now["ns"] = fired_ns + 6 * S  # the window after it has passed: the capture is due
        assert await evidence.step() == 0  # the store failed: kept, retried later
        assert evidence.stats.store_failures == 1 and evidence.stats.dropped == 0
        await asyncio.to_thread(own_server.start)
        assert await sink.flush()  # the alert is stored ...
        dispatcher = Dispatcher(
            outbox, {Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env=ENV)}, FAST
        )
        async with running(dispatcher):
            await receiver.wait_for(1, timeout_s=20)  # ... and delivered
        now["ns"] = fired_ns + 120 * S  # past the capture's backoff
        assert await evidence.step() == 1
    assert (
        receiver.bodies[0]["state"] == "firing" and receiver.bodies[0]["id"] == events[1].alert_id
    )
    failed = [e for e in logs if e["event"] == "evidence.store_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "warning"
    assert "exc_info" not in failed[0] and "exception" not in failed[0]
    assert all(e["log_level"] not in ("error", "critical") for e in logs), logs
    row = await pool.fetchrow(
        "SELECT venue, symbols, frames, bytes, truncated, body FROM alert_evidence_frames"
        " WHERE alert_id = $1",
        events[1].alert_id,
    )
    assert row is not None and row["venue"] == "okx" and row["symbols"] == ["BTC-USDT"]
    lines = zlib.decompress(row["body"]).splitlines()
    stored = [msgspec.json.decode(line) for line in lines]
    assert len(stored) == row["frames"] > 0 and not row["truncated"]
    stamps = [round(r["ts"] * 1e9) for r in stored]
    assert min(stamps) >= fired_ns - 20 * S - 1_000 and max(stamps) <= fired_ns + 5 * S + 1_000
    assert min(stamps) < fired_ns < max(stamps)
    expected = [
        r.data
        for r in ws
        if fired_ns - 20 * S <= r.recv_ns + offset <= fired_ns + 5 * S and '"BTC-USDT"' in r.data
    ]
    assert [r["data"] for r in stored] == expected  # as received, in order, only its book's
    await pool.close()
    await outbox.close()
