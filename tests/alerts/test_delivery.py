"""Delivery against real HTTP servers on 127.0.0.1: a webhook receiver that checks the
signature and the idempotency key, and a stand-in for the Telegram Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import itertools
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from alerts.channels.telegram import TelegramSender
from alerts.channels.webhook import RefusedAddressError, WebhookSender
from alerts.dispatcher import Dispatcher, DispatchPolicy
from alerts.engine import Engine, GroupingPolicy, Notification
from alerts.outbox import DeliveryStatus, MemoryOutbox, Outcome, deliveries_for
from alerts.rules import Condition, Frame, RuleSpec, Scope
from alerts.subscriptions import Channel, SubscriptionSpec
from tests.alerts.receivers import (
    Scripted,
    TelegramStandIn,
    WebhookReceiver,
    telegram_429,
    telegram_error,
)

S = 1_000_000_000
SECRET = "s3cret-hook-key"
TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ENV = {"HOOK_SECRET": SECRET, "LIQMON_TELEGRAM_BOT_TOKEN": TOKEN}
FAST = DispatchPolicy(
    retry_initial_s=0.02,
    retry_max_s=0.1,
    rate_per_s=10_000,
    target_rate_per_s=10_000,
    webhook_rate_per_s=10_000,
    poll_s=0.05,
)
RULE = RuleSpec(
    name="depth_low",
    metric="depth_usd.1.min",
    condition=Condition.BELOW,
    threshold=100_000,
    severity="warning",
    category="depth",
    summary="1% depth {value} < {threshold} on {venue} {symbol}",
)


def scope(i: int) -> Scope:
    return Scope("binance", f"C{i}USDT", f"C{i}", f"C{i}-USDT", "spot")


def notifications(n: int, t0: float | None = None) -> list[Notification]:
    """n firing alerts (one asset each) from a real engine, stamped now (live clock)."""
    t0 = time.time() if t0 is None else t0
    engine = Engine([RULE], GroupingPolicy(group_wait_s=0, group_interval_s=0))
    out: list[Notification] = []
    for i in range(n):
        f = Frame(int(t0 * S) - (n - i) * 1000)  # 1 us apart, just past
        f.add(RULE.metric, scope(i), 5_000.0 + i)
        engine.evaluate(f)
        out += engine.notifications(f.ts_ns)
    return out


def webhook_sub(url: str, name: str = "ops") -> SubscriptionSpec:
    return SubscriptionSpec(name=name, channel=Channel.WEBHOOK, url=url, secret_env="HOOK_SECRET")


@contextlib.asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for sender in dispatcher.senders.values():
            await sender.close()


async def wait_until(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET.encode())
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramStandIn]:
    t = TelegramStandIn(TOKEN)
    await t.start()
    yield t
    await t.stop()


def webhook_dispatcher(outbox: MemoryOutbox, policy: DispatchPolicy = FAST) -> Dispatcher:
    return Dispatcher(
        outbox, {Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env=ENV)}, policy
    )


def telegram_dispatcher(outbox: MemoryOutbox, t: TelegramStandIn) -> Dispatcher:
    sender = TelegramSender(api_url=t.base_url, env=ENV)
    return Dispatcher(outbox, {Channel.TELEGRAM: sender}, FAST)


# -- webhooks -----------------------------------------------------------------------------


async def test_webhook_is_signed_keyed_and_carries_the_documented_body(
    receiver: WebhookReceiver,
) -> None:
    outbox = MemoryOutbox()
    notes = notifications(1)
    await outbox.store([n.event for n in notes], deliveries_for(notes, [webhook_sub(receiver.url)]))
    async with running(webhook_dispatcher(outbox)):
        await receiver.wait_for(1)
        await wait_until(lambda: outbox.status_counts()[DeliveryStatus.SENT] == 1)
    assert receiver.bad_signatures == 0
    (body,) = receiver.bodies
    assert set(body) >= {
        "id",
        "rule",
        "state",
        "severity",
        "scope",
        "value",
        "components",
        "starts_at",
        "ends_at",
        "links",
    }
    assert body["rule"] == "depth_low" and body["state"] == "firing"
    assert body["severity"] == "warning" and body["value"] == 5000.0
    assert body["scope"] == {"venue": "binance", "symbol": "C0USDT", "asset": "C0"}
    assert body["starts_at"].endswith("Z") and body["ends_at"] is None
    assert body["links"]["evidence"].endswith(f"/api/v1/alerts/{body['id']}/evidence")
    (delivery, status, attempts) = (await outbox.attempts(body["id"]))[0]
    assert status is DeliveryStatus.SENT and [a.outcome for a in attempts] == [Outcome.SENT]
    assert receiver.keys == [delivery.idempotency_key]


async def test_a_wrong_secret_is_refused_by_the_receiver_and_kept_as_failed(
    receiver: WebhookReceiver,
) -> None:
    outbox = MemoryOutbox()
    notes = notifications(1)
    await outbox.store([], deliveries_for(notes, [webhook_sub(receiver.url)]))
    wrong = Dispatcher(
        outbox,
        {Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env={"HOOK_SECRET": "x"})},
        FAST,
    )
    async with running(wrong):
        await wait_until(lambda: outbox.status_counts()[DeliveryStatus.FAILED] == 1)
    assert receiver.bad_signatures == 1 and receiver.bodies == []
    ((_, _, attempts),) = await outbox.attempts(notes[0].event.alert_id)
    assert attempts[0].status_code == 401


async def test_webhook_5xx_and_429_are_retried_with_the_same_key(
    receiver: WebhookReceiver,
) -> None:
    receiver.script.extend(
        [Scripted(503), Scripted(429, headers={"Retry-After": "0"}), Scripted(500)]
    )
    outbox = MemoryOutbox()
    notes = notifications(1)
    await outbox.store([], deliveries_for(notes, [webhook_sub(receiver.url)]))
    async with running(webhook_dispatcher(outbox)):
        await receiver.wait_for(1)
        await wait_until(lambda: outbox.status_counts()[DeliveryStatus.SENT] == 1)
    assert receiver.requests == 4 and len(set(receiver.keys)) == 1
    ((_, status, attempts),) = await outbox.attempts(notes[0].event.alert_id)
    assert status is DeliveryStatus.SENT
    assert [(a.outcome, a.status_code) for a in attempts] == [
        (Outcome.RETRY, 503),
        (Outcome.RETRY, 429),
        (Outcome.RETRY, 500),
        (Outcome.SENT, 204),
    ]
    assert attempts[1].retry_after_s == 0.0


async def test_webhook_4xx_is_final_visible_and_does_not_hold_the_lane(
    receiver: WebhookReceiver,
) -> None:
    receiver.script.append(Scripted(410))
    outbox = MemoryOutbox()
    notes = notifications(2)
    await outbox.store([], deliveries_for(notes, [webhook_sub(receiver.url)]))
    async with running(webhook_dispatcher(outbox)):
        await receiver.wait_for(1)
    assert receiver.bodies[0]["id"] == notes[1].event.alert_id
    ((_, status, attempts),) = await outbox.attempts(notes[0].event.alert_id)
    assert status is DeliveryStatus.FAILED and attempts[0].status_code == 410


async def test_give_up_after_the_configured_age_leaves_it_failed() -> None:
    outbox = MemoryOutbox()
    notes = notifications(1)
    # nothing listens on this port: connection refused, retried until too old
    await outbox.store([], deliveries_for(notes, [webhook_sub("http://127.0.0.1:9/hook")]))
    policy = DispatchPolicy(
        retry_initial_s=0.01,
        retry_max_s=0.02,
        give_up_after_s=0.3,
        rate_per_s=1e4,
        target_rate_per_s=1e4,
        poll_s=0.02,
    )
    dispatcher = Dispatcher(
        outbox,
        {Channel.WEBHOOK: WebhookSender(allow_private_urls=True, env=ENV)},
        policy,
        clock_ns=lambda: notes[0].event.ts_ns + time.monotonic_ns() - started,
    )
    started = time.monotonic_ns()
    async with running(dispatcher):
        await wait_until(lambda: outbox.status_counts()[DeliveryStatus.FAILED] == 1)
    ((_, _, attempts),) = await outbox.attempts(notes[0].event.alert_id)
    assert len(attempts) >= 2 and attempts[-1].outcome is Outcome.FAILED
    assert "cannot connect" in (attempts[0].error or "")


async def test_endpoint_out_for_a_long_span_nothing_lost_order_kept() -> None:
    """The receiver is down while 40 alerts fire for two subscriptions; when it comes back
    every notification arrives once, in stored order per subscription."""
    probe = WebhookReceiver(SECRET.encode())
    await probe.start()
    port = probe.port
    await probe.stop()  # the port is free again: the endpoint is "out"
    subs = [
        webhook_sub(f"http://127.0.0.1:{port}/hook", "a"),
        webhook_sub(f"http://127.0.0.1:{port}/hook?b", "b"),
    ]
    outbox = MemoryOutbox()
    dispatcher = webhook_dispatcher(outbox)
    async with running(dispatcher):
        notes = notifications(40)
        for i in range(0, 40, 4):  # alerts keep firing while it is out
            batch = notes[i : i + 4]
            await outbox.store([n.event for n in batch], deliveries_for(batch, subs))
            dispatcher.wake()
            await asyncio.sleep(0.02)
        await wait_until(lambda: dispatcher.stats.retried >= 20)
        assert outbox.status_counts()[DeliveryStatus.PENDING] == 80
        back = WebhookReceiver(SECRET.encode(), port=port)
        await back.start()
        try:
            await back.wait_for(80, timeout_s=20)
        finally:
            await back.stop()
    assert back.duplicates == 0 and back.bad_signatures == 0
    for sub in ("a", "b"):
        ids = [d.idempotency_key for d, *_ in await _all(outbox) if d.subscription == sub]
        got = [k for k in back.keys if k in set(ids)]
        assert got == ids  # every one, in stored order
    assert outbox.status_counts() == {
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.SENT: 80,
        DeliveryStatus.FAILED: 0,
    }


async def _all(outbox: MemoryOutbox):  # type: ignore[no-untyped-def]
    out = []
    for alert in dict.fromkeys(e.alert_id for e in outbox.events):
        out += await outbox.attempts(alert)
    return sorted(out, key=lambda x: x[0].id)


# -- telegram -----------------------------------------------------------------------------


def telegram_sub(chat: str = "42") -> SubscriptionSpec:
    return SubscriptionSpec(name="tg", channel=Channel.TELEGRAM, chat_id=chat)


async def test_telegram_sendmessage_html_escaped(telegram: TelegramStandIn) -> None:
    rule = RuleSpec(
        name="basis",
        metric="basis_bps",
        condition=Condition.ABOVE,
        threshold=50,
        summary="<b>{symbol}</b> & basis",
    )
    engine = Engine([rule], GroupingPolicy(group_wait_s=0))
    f = Frame(time.time_ns())
    f.add("basis_bps", Scope("okx", "SOL<x>", "SOL", "SOL-USDT-PERP", "perp"), 420.0)
    engine.evaluate(f)
    notes = engine.notifications(f.ts_ns)
    outbox = MemoryOutbox()
    await outbox.store([], deliveries_for(notes, [telegram_sub()]))
    async with running(telegram_dispatcher(outbox, telegram)):
        await wait_until(lambda: len(telegram.messages) == 1)
    (msg,) = telegram.messages
    assert msg["chat_id"] == "42" and msg["parse_mode"] == "HTML"
    text = msg["text"]
    assert "SOL&lt;x&gt;" in text and "&lt;b&gt;SOL&lt;x&gt;&lt;/b&gt; &amp; basis" in text
    assert "WARNING" in text and "firing" in text and "since" in text
    # only our own tags remain once the escaped text is read back
    assert html.unescape(text).count("<b>SOL<x></b>") == 1


async def test_telegram_429_waits_retry_after(telegram: TelegramStandIn) -> None:
    telegram.script.append(telegram_429(1))
    outbox = MemoryOutbox()
    notes = notifications(1)
    await outbox.store([], deliveries_for(notes, [telegram_sub()]))
    async with running(telegram_dispatcher(outbox, telegram)):
        await wait_until(lambda: len(telegram.messages) == 1)
    (first, _), (second, _) = telegram.requests
    assert (second - first) / 1e9 >= 0.95  # parameters.retry_after = 1 s, honoured
    ((_, _, attempts),) = await outbox.attempts(notes[0].event.alert_id)
    assert attempts[0].retry_after_s == 1.0 and attempts[0].status_code == 429


@pytest.mark.parametrize(
    ("status", "final"), [(400, True), (403, True), (500, False), (502, False)]
)
async def test_telegram_error_shapes(telegram: TelegramStandIn, status: int, final: bool) -> None:
    telegram.script.append(telegram_error(status))
    outbox = MemoryOutbox()
    notes = notifications(1)
    await outbox.store([], deliveries_for(notes, [telegram_sub()]))
    async with running(telegram_dispatcher(outbox, telegram)):
        await wait_until(lambda: outbox.status_counts()[DeliveryStatus.PENDING] == 0)
    ((_, state, attempts),) = await outbox.attempts(notes[0].event.alert_id)
    if final:
        assert state is DeliveryStatus.FAILED and len(attempts) == 1
        assert telegram.messages == []
        assert ("blocked" in (attempts[0].error or "")) == (status == 403)
    else:
        assert state is DeliveryStatus.SENT and [a.status_code for a in attempts] == [status, 200]


async def test_telegram_token_is_never_logged(telegram: TelegramStandIn) -> None:
    """Errors of every kind (refused connection, 5xx whose text echoes the token, 401)
    are logged and recorded without the token."""
    telegram.script.append(Scripted(500, {"ok": False, "description": f"boom /bot{TOKEN}/x"}))
    outbox = MemoryOutbox()
    notes = notifications(3)
    await outbox.store([], deliveries_for(notes, [telegram_sub()]))
    with structlog.testing.capture_logs() as logs:
        async with running(telegram_dispatcher(outbox, telegram)):
            await wait_until(lambda: len(telegram.messages) == 3)
        # a dead API (connection refused) and a wrong token
        dead = MemoryOutbox()
        await dead.store([], deliveries_for(notes[:1], [telegram_sub()]))
        sender = TelegramSender(api_url="http://127.0.0.1:9", env=ENV)
        d = Dispatcher(dead, {Channel.TELEGRAM: sender}, FAST)
        async with running(d):
            await wait_until(lambda: d.stats.retried >= 2)
    assert logs, "the failures were logged"
    everything = repr(logs) + repr([await outbox.attempts(n.event.alert_id) for n in notes])
    everything += repr(await dead.attempts(notes[0].event.alert_id)) + repr(sender)
    assert TOKEN not in everything and TOKEN.split(":")[1] not in everything


def test_signature_matches_an_independent_hmac() -> None:
    from alerts.channels.webhook import signature  # noqa: PLC0415

    body = b'{"a":1}'
    assert signature(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


async def test_per_chat_rate_limit_spaces_telegram_messages(telegram: TelegramStandIn) -> None:
    outbox = MemoryOutbox()
    notes = notifications(4)
    await outbox.store([], deliveries_for(notes, [telegram_sub()]))
    policy = DispatchPolicy(rate_per_s=1000, target_rate_per_s=5.0, poll_s=0.05)
    sender = TelegramSender(api_url=telegram.base_url, env=ENV)
    async with running(Dispatcher(outbox, {Channel.TELEGRAM: sender}, policy)):
        await wait_until(lambda: len(telegram.messages) == 4)
    times = [t for t, _ in telegram.requests]
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.18, gaps  # 5 per second for one chat


# -- webhook hosts resolved and checked at send time (DNS rebinding) ----------------------


def _answer(address: str) -> Any:
    """A DNS answer for every name (``getaddrinfo``'s shape): what a hostile or rebinding
    name server would say, without touching /etc/hosts."""
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    getaddrinfo.lookups = lookups  # type: ignore[attr-defined]
    return getaddrinfo


async def _one_delivery(url: str, sender: WebhookSender) -> tuple[MemoryOutbox, str]:
    outbox = MemoryOutbox()
    notes = notifications(1)
    await outbox.store([], deliveries_for(notes, [webhook_sub(url)]))
    dispatcher = Dispatcher(outbox, {Channel.WEBHOOK: sender}, FAST)
    async with running(dispatcher):
        await wait_until(
            lambda: outbox.status_counts()[DeliveryStatus.PENDING] == 0, timeout_s=10.0
        )
    return outbox, notes[0].event.alert_id


async def test_localhost_resolved_at_send_time_is_refused_without_allow_private_urls(
    receiver: WebhookReceiver,
) -> None:
    url = f"http://localhost:{receiver.port}/hook"
    outbox, alert_id = await _one_delivery(url, WebhookSender(env=ENV))
    ((_, status, attempts),) = await outbox.attempts(alert_id)
    # one attempt, final (not retried forever), with the reason in the delivery log
    assert status is DeliveryStatus.FAILED and len(attempts) == 1
    assert attempts[0].outcome is Outcome.FAILED and attempts[0].status_code is None
    assert attempts[0].error is not None
    assert "localhost resolves to 127.0.0.1" in attempts[0].error or (
        "localhost resolves to ::1" in attempts[0].error
    )
    assert "allow_private_urls" in attempts[0].error
    assert receiver.requests == 0


async def test_localhost_resolved_at_send_time_is_delivered_with_allow_private_urls(
    receiver: WebhookReceiver,
) -> None:
    url = f"http://localhost:{receiver.port}/hook"
    outbox, alert_id = await _one_delivery(url, WebhookSender(allow_private_urls=True, env=ENV))
    ((_, status, attempts),) = await outbox.attempts(alert_id)
    assert status is DeliveryStatus.SENT and [a.outcome for a in attempts] == [Outcome.SENT]
    assert len(receiver.bodies) == 1 and receiver.bad_signatures == 0


async def test_a_public_looking_name_that_resolves_to_loopback_is_refused(
    receiver: WebhookReceiver,
) -> None:
    # passes the check made when the subscription is created (a name is not resolved then)
    url = f"http://hooks.example.com:{receiver.port}/hook"
    assert webhook_sub(url).problem(allow_private_urls=False) is None
    lookup = _answer("127.0.0.1")
    outbox, alert_id = await _one_delivery(url, WebhookSender(env=ENV, getaddrinfo=lookup))
    ((_, status, attempts),) = await outbox.attempts(alert_id)
    assert status is DeliveryStatus.FAILED and len(attempts) == 1
    assert attempts[0].error is not None
    assert "hooks.example.com resolves to 127.0.0.1" in attempts[0].error
    assert lookup.lookups == ["hooks.example.com"] and receiver.requests == 0


async def test_the_connection_goes_to_the_address_that_was_checked(
    receiver: WebhookReceiver,
) -> None:
    # the name exists nowhere but in this answer: the request reaching the receiver on
    # 127.0.0.1 shows the connector used the resolved, checked address (one lookup)
    url = f"http://hooks.example.com:{receiver.port}/hook"
    lookup = _answer("127.0.0.1")
    sender = WebhookSender(allow_private_urls=True, env=ENV, getaddrinfo=lookup)
    outbox, alert_id = await _one_delivery(url, sender)
    ((_, status, _),) = await outbox.attempts(alert_id)
    assert status is DeliveryStatus.SENT and len(receiver.bodies) == 1
    assert lookup.lookups == ["hooks.example.com"] and sender.resolver.lookups == 1


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "169.254.169.254", "224.0.0.1", "240.0.0.1", "0.0.0.0", "::1", "fe80::1",
     "::ffff:127.0.0.1", "fc00::5"],
)  # fmt: skip
async def test_every_non_public_answer_is_refused(address: str) -> None:
    sender = WebhookSender(env=ENV, getaddrinfo=_answer(address))
    with pytest.raises(RefusedAddressError, match="allow_private_urls"):
        await sender.resolver.resolve("hooks.example.com", 443)
    public = WebhookSender(env=ENV, getaddrinfo=_answer("93.184.215.14"))
    (result,) = await public.resolver.resolve("hooks.example.com", 443)
    assert result["host"] == "93.184.215.14" and result["hostname"] == "hooks.example.com"


async def test_an_address_literal_is_checked_at_send_time_too() -> None:
    outbox, alert_id = await _one_delivery("http://127.0.0.1:9/hook", WebhookSender(env=ENV))
    ((_, status, attempts),) = await outbox.attempts(alert_id)
    assert status is DeliveryStatus.FAILED and len(attempts) == 1
    assert attempts[0].error is not None and "127.0.0.1 is a loopback" in attempts[0].error
