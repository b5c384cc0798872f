"""Telegram gets one message per group notification (webhooks keep one signed request per
alert event): against the Bot API stand-in and the webhook receiver on 127.0.0.1, with the
memory outbox and with PostgreSQL (a dispatcher process killed mid-delivery)."""

from __future__ import annotations

import asyncio
import html
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from alerts.channels.base import Sender
from alerts.channels.telegram import TelegramSender
from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher
from alerts.engine import Engine, GroupingPolicy, Notification
from alerts.outbox import DeliveryStatus, MemoryOutbox, Outcome, deliveries_for
from alerts.pg_outbox import PgOutbox
from alerts.render import TELEGRAM_MAX_CHARS
from alerts.rules import Frame, Scope
from alerts.subscriptions import Channel, SubscriptionSpec
from monitor.alerting import AlertEngineSink, RuleRunner
from tests.alerts.receivers import TelegramStandIn, WebhookReceiver, telegram_429
from tests.alerts.test_delivery import ENV, FAST, RULE, SECRET, TOKEN, running, wait_until
from tests.alerts.test_pg_outbox import migrated, wait_until_async

S = 1_000_000_000
ETH = [
    Scope("binance", "ETHUSDT", "ETH", "ETH-USDT-SPOT", "spot"),
    Scope("okx", "ETH-USDT", "ETH", "ETH-USDT-SPOT", "spot"),
    Scope("bybit", "ETHUSDT", "ETH", "ETH-USDT-PERP", "perp"),
]


def tg(name: str = "tg", chat: str = "42") -> SubscriptionSpec:
    return SubscriptionSpec(name=name, channel=Channel.TELEGRAM, chat_id=chat)


def hook(url: str) -> SubscriptionSpec:
    return SubscriptionSpec(name="ops", channel=Channel.WEBHOOK, url=url, secret_env="HOOK_SECRET")


def frame(ts_ns: int, values: dict[Scope, float]) -> Frame:
    f = Frame(ts_ns)
    for scope, value in values.items():
        f.add(RULE.metric, scope, value)
    return f


def group_notes(scopes: list[Scope], t0_ns: int, wait_s: float = 5.0) -> list[Notification]:
    """Alerts of the scopes firing one after another inside one group wait: its flush."""
    engine = Engine([RULE], GroupingPolicy(group_wait_s=wait_s, group_interval_s=wait_s))
    values = {s: 200_000.0 for s in scopes}
    notes: list[Notification] = []
    for i, scope in enumerate(scopes):
        values[scope] = 5_000.0 + i
        f = frame(t0_ns + i * int(wait_s * S) // (len(scopes) + 1), values)
        engine.evaluate(f)
        notes += engine.notifications(f.ts_ns)
    assert notes == []  # all inside the group wait
    done = t0_ns + int(wait_s * S)
    engine.evaluate(frame(done, values))
    return engine.notifications(done)


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramStandIn]:
    t = TelegramStandIn(TOKEN)
    await t.start()
    yield t
    await t.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET.encode())
    await r.start()
    yield r
    await r.stop()


def both(outbox: MemoryOutbox | PgOutbox, t: TelegramStandIn) -> Dispatcher:
    senders: dict[Channel, Sender] = {
        Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env=ENV),
        Channel.TELEGRAM: TelegramSender(api_url=t.base_url, env=ENV),
    }
    return Dispatcher(outbox, senders, FAST)


async def test_three_alerts_of_one_asset_in_one_group_wait_are_one_telegram_message(
    telegram: TelegramStandIn, receiver: WebhookReceiver
) -> None:
    """Through the alert sink: the group's flush is one sendMessage (and one for its
    resolution), while the webhook gets one signed request per alert event."""
    outbox = MemoryOutbox()
    sink = AlertEngineSink(
        RuleRunner([RULE], GroupingPolicy(group_wait_s=2.0, group_interval_s=2.0)),
        [hook(receiver.url), tg()],
        outbox,
    )
    t0 = time.time_ns() - 30 * S
    values = {s: 200_000.0 for s in ETH}
    for i, scope in enumerate(ETH):  # one fires every half second: all in the group wait
        values[scope] = 5_000.0 + i
        await sink.process(frame(t0 + i * S // 2, values))
    assert sink.last_deliveries == []
    await sink.process(frame(t0 + 2 * S, values))  # the group wait is over
    assert [d.channel for d in sink.last_deliveries] == [Channel.WEBHOOK] * 3 + [Channel.TELEGRAM]
    healthy = dict.fromkeys(ETH, 300_000.0)
    await sink.process(frame(t0 + 3 * S, healthy))  # all three resolve in one tick
    await sink.process(frame(t0 + 5 * S, healthy))  # the group interval later: sent
    async with running(both(outbox, telegram)):
        await receiver.wait_for(6)
        await wait_until(lambda: len(telegram.messages) == 2)
        await wait_until(lambda: outbox.status_counts()[DeliveryStatus.SENT] == 8)
    firing, resolved = (m["text"] for m in telegram.messages)
    assert firing.startswith("\U0001f7e0 <b>ETH</b> \u2014 3 alerts firing")
    for scope in ETH:
        assert f"{scope.venue} {scope.symbol}" in firing
    assert firing.count("\n") == 3 and len(firing) < 600  # short: a line per alert
    assert resolved.startswith("\u2705 <b>ETH</b> \u2014 3 resolved")
    # webhooks: one request per alert event, each with its own key (contract unchanged)
    assert len(set(receiver.keys)) == 6 == receiver.requests
    assert sorted(b["state"] for b in receiver.bodies) == ["firing"] * 3 + ["resolved"] * 3
    assert {b["scope"]["venue"] for b in receiver.bodies} == {"binance", "okx", "bybit"}
    # every alert's delivery log shows the group message it went out in
    for alert_id in {b["id"] for b in receiver.bodies}:
        log = await outbox.attempts(alert_id)
        channels = sorted(d.channel.value for d, status, _ in log if status is DeliveryStatus.SENT)
        assert channels == ["telegram", "telegram", "webhook", "webhook"]


async def test_group_message_429_retry_after_is_honoured(telegram: TelegramStandIn) -> None:
    telegram.script.append(telegram_429(1))
    outbox = MemoryOutbox()
    notes = group_notes(ETH, time.time_ns() - 10 * S)
    deliveries = deliveries_for(notes, [tg()])
    assert len(deliveries) == 1
    await outbox.store([], deliveries)
    async with running(both(outbox, telegram)):
        await wait_until(lambda: len(telegram.messages) == 1)
    (first, refused), (second, sent) = telegram.requests
    assert (second - first) / 1e9 >= 0.95  # parameters.retry_after = 1 s
    assert refused == sent  # the same message again
    for note in notes:  # the attempt is in each member alert's log
        ((_, status, attempts),) = await outbox.attempts(note.event.alert_id)
        assert status is DeliveryStatus.SENT
        assert [a.outcome for a in attempts] == [Outcome.RETRY, Outcome.SENT]
        assert attempts[0].retry_after_s == 1.0


async def test_a_large_group_stays_within_4096_characters_with_a_more_tail(
    telegram: TelegramStandIn,
) -> None:
    scopes = [Scope(f"v<{i}>", f"ETH&{i}", "ETH", f"ETH-{i}", "spot") for i in range(300)]
    notes = group_notes(scopes, time.time_ns() - 60 * S)
    assert len(notes) == 300
    (delivery,) = deliveries_for(notes, [tg()])
    outbox = MemoryOutbox()
    await outbox.store([], [delivery])
    async with running(both(outbox, telegram)):
        await wait_until(lambda: len(telegram.messages) == 1)
    text = telegram.messages[0]["text"]
    assert len(text.encode("utf-16-le")) // 2 <= TELEGRAM_MAX_CHARS
    shown = text.count("\n") - 1  # the headline and the tail are not alerts
    assert text.startswith("\U0001f7e0 <b>ETH</b> \u2014 300 alerts firing")
    assert text.endswith(f"\n+{300 - shown} more") and 20 < shown < 300
    assert "v&lt;0&gt; ETH&amp;0" in text and "<0>" not in text  # escaped


def test_one_alert_alone_keeps_the_single_alert_message() -> None:
    (note,) = group_notes(ETH[:1], time.time_ns())
    (delivery,) = deliveries_for([note], [tg()])
    assert delivery.alert_ids == () and delivery.notification_id == note.id
    text = html.unescape(delivery.body.decode())
    assert "WARNING" in text and "since" in text and "alerts firing" not in text


# -- PostgreSQL: a restart mid-delivery does not send a group message twice -----------------

pg = pytest.mark.integration


@pg
async def test_restart_mid_delivery_sends_no_group_message_twice(
    db_dsn: str, telegram: TelegramStandIn
) -> None:
    """Two chats, two groups (ETH, SOL) of three alerts: four messages. One lane waits a
    429's retry_after while the other sends both of its messages; the dispatcher process is
    killed (-9) and started again: the message still owed goes out after its retry_after,
    the two acknowledged are not sent again."""
    await migrated(db_dsn)
    sol = [Scope(s.venue, s.symbol.replace("ETH", "SOL"), "SOL", s.instrument, s.kind) for s in ETH]
    t0 = time.time_ns() - 20 * S
    notes = group_notes(ETH, t0) + group_notes(sol, t0 + S)
    deliveries = deliveries_for(notes, [tg("tg1", "1"), tg("tg2", "2")])
    assert len(deliveries) == 4 and all(len(d.alert_ids) == 3 for d in deliveries)
    outbox = PgOutbox(db_dsn)
    await outbox.store([n.event for n in notes], deliveries)
    # a restarted daemon sees every member alert as notified (not fired and sent again)
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.executemany(
            "UPDATE alert_events SET ts = now() WHERE alert_id = $1",
            [(n.event.alert_id,) for n in notes],
        )
    finally:
        await conn.close()
    restored = await outbox.firing_alerts()
    assert len(restored) == 6 and all(r.notified for r in restored)
    telegram.script.append(telegram_429(2))
    env = {**os.environ, **ENV, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "tests.alerts.dispatcher_proc", db_dsn, telegram.base_url]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        return proc

    proc = await asyncio.to_thread(start)
    try:
        await wait_until(lambda: len(telegram.messages) == 2, timeout_s=20)
        await wait_until_async(lambda: _sent(outbox, 2), timeout_s=20)
        assert len(telegram.requests) == 3  # the 429, and the other chat's two
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        proc = await asyncio.to_thread(start)
        await wait_until(lambda: len(telegram.messages) == 4, timeout_s=20)
        await wait_until_async(lambda: _sent(outbox, 4), timeout_s=20)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    sent = [(m["chat_id"], m["text"]) for m in telegram.messages]
    assert len(set(sent)) == 4 == len(telegram.requests) - 1  # none twice; one 429
    assert sorted(sent) == sorted((d.target, _text(d.body)) for d in deliveries)
    (refused_at, refused), *_ = telegram.requests
    resent_at = next(t for t, p in telegram.requests[1:] if p == refused)
    assert (resent_at - refused_at) / 1e9 >= 1.95  # retry_after kept across the restart
    for note in notes:
        log = await outbox.attempts(note.event.alert_id)
        assert sorted(d.subscription for d, status, _ in log if status is DeliveryStatus.SENT) == [
            "tg1",
            "tg2",
        ]
    await outbox.close()


def _text(body: bytes) -> str:
    import msgspec  # noqa: PLC0415

    return str(msgspec.json.decode(body)["text"])


async def _sent(outbox: PgOutbox, n: int) -> bool:
    return (await outbox.status_counts())[DeliveryStatus.SENT] == n


def test_a_groups_repeat_and_a_mixed_flush_are_one_message_each() -> None:
    """The group still firing after repeat_interval_s: one message for its repeats; a
    flush that resolves one and fires another: one message saying both."""
    policy = GroupingPolicy(group_wait_s=0, group_interval_s=1.0, repeat_interval_s=60.0)
    engine = Engine([RULE], policy)
    t0 = time.time_ns() - 600 * S
    values = {s: 5_000.0 for s in ETH[:2]} | {ETH[2]: 200_000.0}
    engine.evaluate(frame(t0, values))
    first = engine.notifications(t0)
    assert len(deliveries_for(first, [tg()])) == 1 and len(first) == 2
    later = t0 + 61 * S
    engine.evaluate(frame(later, values))
    repeats = engine.notifications(later)
    assert [n.repeat for n in repeats] == [1, 1]
    (repeat,) = deliveries_for(repeats, [tg()])
    text = html.unescape(msgspec.json.decode(repeat.body)["text"])
    assert text.startswith("\U0001f7e0 <b>ETH</b> \u2014 2 alerts firing")
    assert text.count("(repeat)") == 2
    # one resolves, the third fires: the next flush, one message
    values = {ETH[0]: 300_000.0, ETH[1]: 5_000.0, ETH[2]: 4_000.0}
    mixed_at = later + 2 * S
    engine.evaluate(frame(mixed_at, values))
    mixed = engine.notifications(mixed_at)
    assert sorted(n.event.state.value for n in mixed) == ["firing", "resolved"]
    (delivery,) = deliveries_for(mixed, [tg()])
    text = html.unescape(msgspec.json.decode(delivery.body)["text"])
    lines = text.splitlines()
    assert lines[0] == "\U0001f7e0 <b>ETH</b> \u2014 1 alert firing, 1 resolved"
    assert "bybit ETHUSDT" in lines[1] and "resolved" in lines[2] and "binance" in lines[2]
    assert set(delivery.alert_ids) == {n.event.alert_id for n in mixed}
