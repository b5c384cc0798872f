"""The outbox in a real PostgreSQL (the embedded server the suite starts): store first,
the database out while alerts fire, kill -9 of a dispatcher process mid-delivery."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher
from alerts.engine import GroupingPolicy
from alerts.outbox import DeliveryStatus, Outcome, deliveries_for
from alerts.pg_outbox import PgOutbox
from alerts.rules import Frame
from alerts.subscriptions import Channel
from monitor.alerting import AlertEngineSink, RuleRunner
from monitor.store.embedded import EmbeddedPostgres
from monitor.store.migrate import migrate
from tests.alerts.receivers import WebhookReceiver
from tests.alerts.test_delivery import (
    ENV,
    FAST,
    RULE,
    SECRET,
    notifications,
    running,
    scope,
    wait_until,
    webhook_sub,
)
from tests.store.conftest import open_tmp_dir

pytestmark = pytest.mark.integration


async def migrated(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET.encode())
    await r.start()
    yield r
    await r.stop()


def tick(t_ns: int, values: dict[int, float]) -> Frame:
    f = Frame(t_ns)
    for i, v in values.items():
        f.add(RULE.metric, scope(i), v)
    return f


async def test_events_and_deliveries_are_stored_before_anything_is_sent(
    db_dsn: str, receiver: WebhookReceiver
) -> None:
    await migrated(db_dsn)
    outbox = PgOutbox(db_dsn)
    sink = AlertEngineSink(
        RuleRunner([RULE], GroupingPolicy(group_wait_s=0, group_interval_s=0)),
        [webhook_sub(receiver.url)],
        outbox,
    )
    now = time.time_ns()
    await sink.process(tick(now, {0: 5000.0, 1: 200_000.0}))
    await sink.process(tick(now + 1000, {0: 500_000.0, 1: 200_000.0}))  # resolves
    conn = await asyncpg.connect(db_dsn)
    try:
        events = await conn.fetch(
            "SELECT state, alert_id FROM alert_events WHERE kind='rule' ORDER BY id"
        )
        queued = await conn.fetch("SELECT status, notification_id FROM alert_outbox ORDER BY id")
    finally:
        await conn.close()
    assert [e["state"] for e in events] == ["pending", "firing", "resolved"]
    assert [q["status"] for q in queued] == ["pending", "pending"]  # stored, nothing sent
    assert receiver.requests == 0
    dispatcher = Dispatcher(
        outbox, {Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env=ENV)}, FAST
    )
    async with running(dispatcher):
        await receiver.wait_for(2)
        await wait_until(lambda: dispatcher.stats.sent == 2)
    assert [b["state"] for b in receiver.bodies] == ["firing", "resolved"]
    ((_, status, attempts),) = (await outbox.attempts(events[0]["alert_id"]))[:1]
    assert status is DeliveryStatus.SENT and attempts[0].outcome is Outcome.SENT
    await outbox.close()


@pytest.fixture
async def own_server() -> AsyncIterator[EmbeddedPostgres]:
    """A server of this test's own, to stop and start."""
    root = open_tmp_dir("liqmon-test-alerts-outage-")
    server = EmbeddedPostgres(root / "postgres")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)
    shutil.rmtree(root, ignore_errors=True)


async def test_database_out_while_alerts_fire_they_are_delivered_when_it_returns(
    own_server: EmbeddedPostgres, receiver: WebhookReceiver
) -> None:
    dsn = own_server.dsn
    await migrated(dsn)
    outbox = PgOutbox(dsn)
    dispatcher = Dispatcher(
        outbox, {Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env=ENV)}, FAST
    )
    sink = AlertEngineSink(
        RuleRunner([RULE], GroupingPolicy(group_wait_s=0, group_interval_s=0)),
        [webhook_sub(receiver.url)],
        outbox,
        wake=dispatcher.wake,
    )
    now = time.time_ns()
    async with running(dispatcher):
        await sink.process(tick(now, {0: 5000.0}))
        await receiver.wait_for(1)
        await asyncio.to_thread(own_server.pg_ctl_stop)
        for i in range(1, 21):  # 20 alerts fire while the database is away
            await sink.process(tick(now + i * 1000, {k: 5000.0 for k in range(i + 1)}))
        assert sink.buffered == 20 and sink.store_failures >= 20
        assert len(receiver.bodies) == 1
        await asyncio.to_thread(own_server.restart)
        await sink.process(tick(now + 22_000, {k: 5000.0 for k in range(21)}))
        assert sink.buffered == 0
        await receiver.wait_for(21, timeout_s=30)
    assert [b["scope"]["asset"] for b in receiver.bodies] == [f"C{i}" for i in range(21)]
    # a delivery whose record the outage cut is sent again: the receiver dedupes it
    assert len(set(receiver.keys)) == 21 and receiver.bad_signatures == 0
    assert receiver.requests == 21 + receiver.duplicates
    assert dispatcher.stats.outbox_errors >= 1  # it noticed, waited, came back
    await outbox.close()


async def test_kill_9_of_the_dispatcher_mid_delivery_then_restart(
    db_dsn: str, receiver: WebhookReceiver
) -> None:
    """Every alert delivered, none twice to the receiver (it dedupes by Idempotency-Key;
    the re-sent ones are counted), in order."""
    await migrated(db_dsn)
    outbox = PgOutbox(db_dsn)
    notes = notifications(60)
    deliveries = deliveries_for(notes, [webhook_sub(receiver.url)])
    await outbox.store([n.event for n in notes], deliveries)
    receiver.delay_s = 0.05  # takes the notification, answers 50 ms later
    env = {**os.environ, **ENV, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "tests.alerts.dispatcher_proc", db_dsn]
    kills = 0
    proc = None
    while len(receiver.bodies) < 60:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        await asyncio.to_thread(proc.stdout.readline)  # "ready"
        if kills == 3:  # the last run delivers the rest
            break
        await receiver.wait_for(len(receiver.bodies) + 10, timeout_s=30)
        await asyncio.sleep(0.02)  # inside the 50 ms a request waits for its answer
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
    try:
        await receiver.wait_for(60, timeout_s=60)
        await wait_until_async(lambda: _all_sent(outbox, 60), timeout_s=30)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    assert kills >= 1
    assert receiver.keys == [d.idempotency_key for d in deliveries]  # all, once, in order
    assert receiver.requests == 60 + receiver.duplicates
    sys.stderr.write(f"kill -9 x{kills}: {receiver.duplicates} re-sent, deduped by the receiver\n")
    await outbox.close()


async def _all_sent(outbox: PgOutbox, n: int) -> bool:
    return (await outbox.status_counts())[DeliveryStatus.SENT] == n


async def wait_until_async(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def test_a_restarted_engine_takes_over_firing_alerts_from_the_database(db_dsn: str) -> None:
    """The daemon killed and started again: alerts still firing are not fired (nor sent)
    twice; their resolved goes out under the same id."""
    await migrated(db_dsn)
    subs = [webhook_sub("http://127.0.0.1:9/hook")]
    policy = GroupingPolicy(group_wait_s=0, group_interval_s=0)
    outbox = PgOutbox(db_dsn)
    now = time.time_ns()
    before = AlertEngineSink(RuleRunner([RULE], policy), subs, outbox)
    await before.process(tick(now, {0: 5000.0, 1: 5000.0}))
    fired = {d.alert_id for d in before.last_deliveries}
    assert len(fired) == 2
    after = AlertEngineSink(RuleRunner([RULE], policy), subs, outbox)  # a new process
    after.engine.restore(await outbox.firing_alerts())
    await after.process(tick(now + 10**9, {0: 5000.0, 1: 5000.0}))
    assert after.last_deliveries == [] and after.engine.pending() == []
    await after.process(tick(now + 2 * 10**9, {0: 500_000.0, 1: 5000.0}))
    (resolved,) = after.last_deliveries
    assert resolved.notification_id.endswith(":resolved") and resolved.alert_id in fired
    assert {a.id for a in after.engine.firing()} == fired - {resolved.alert_id}
    await outbox.close()
