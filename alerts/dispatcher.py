"""The dispatcher: takes due deliveries from the outbox and sends them, forever.

Shaped like the feeds' reconnect loop (feeds/session.py): the policy is a frozen value
(:class:`DispatchPolicy`), retries wait a capped exponential backoff with full jitter
(:class:`feeds.session.Backoff`), and clock, sleep and randomness are injected.

- One lane per subscription: its deliveries go out in stored order; a delivery being
  retried holds the ones behind it (order kept), other subscriptions are not held.
- Retries: a retryable failure waits ``retry_after`` when the receiver gave one
  (Telegram's 429 ``parameters.retry_after``, HTTP ``Retry-After``), else the backoff for
  the delivery's attempt count. A final answer (400, 403) or a delivery older than
  ``give_up_after_s`` ends as FAILED, kept and visible in the delivery log.
- Rate limits: a global budget and one per target (Telegram chat, webhook URL).
- Every attempt is recorded, before the next one is made.
- If the outbox itself (the database) is unreachable, the loop waits a backoff and asks
  again; nothing is marked sent that was not acknowledged by the receiver, so a crash
  between sending and recording sends it again, with the same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from alerts.channels.base import Delivery, Sender
from alerts.outbox import Attempt, Outbox, Outcome
from alerts.subscriptions import AlertsSettings, Channel
from feeds.session import Backoff, ControlBudget
from monitor.errors import AlertDeliveryError

_log = structlog.get_logger("alerts.dispatcher")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    give_up_after_s: float = 24 * 3600.0
    rate_per_s: float = 25.0
    target_rate_per_s: float = 1.0  # per Telegram chat
    webhook_rate_per_s: float = 50.0  # per webhook URL
    poll_s: float = 1.0  # re-read the outbox at least this often (other writers)
    outbox_retry_max_s: float = 10.0

    @classmethod
    def from_settings(cls, alerts: AlertsSettings) -> DispatchPolicy:
        return cls(
            retry_initial_s=alerts.retry_initial_s,
            retry_max_s=alerts.retry_max_s,
            give_up_after_s=alerts.give_up_after_s,
            rate_per_s=alerts.rate_per_s,
            target_rate_per_s=alerts.chat_rate_per_s,
            webhook_rate_per_s=alerts.webhook_rate_per_s,
        )


@dataclass(slots=True)
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    outbox_errors: int = 0


class Dispatcher:
    """Run :meth:`run` as one task; call :meth:`wake` after storing new deliveries."""

    def __init__(
        self,
        outbox: Outbox,
        senders: Mapping[Channel, Sender],
        policy: DispatchPolicy | None = None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.senders = dict(senders)
        self.policy = policy or DispatchPolicy()
        self.stats = DispatchStats()
        self._clock_ns = clock_ns
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._global = ControlBudget(self.policy.rate_per_s)
        self._per_target: dict[str, ControlBudget] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._outbox_backoff = Backoff(0.05, self.policy.outbox_retry_max_s, self._rng)
        self.idle = asyncio.Event()  # set when nothing is due (tests, shutdown)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Forever (cancel to stop); lanes in flight are cancelled with it."""
        try:
            while True:
                self._wake.clear()
                try:
                    due, later_ns = await self.outbox.due_subscriptions(self._clock_ns())
                    self._outbox_backoff.reset()
                except Exception as exc:  # the database went away: wait, ask again
                    self.stats.outbox_errors += 1
                    delay = self._outbox_backoff.next_delay_s()
                    _log.warning("alerts.outbox_unavailable", error=_short(exc), retry_s=delay)
                    await self._wait(delay)
                    continue
                for sub in due:
                    if sub not in self._lanes:
                        self._lanes[sub] = asyncio.create_task(self._lane(sub), name=f"lane:{sub}")
                if not due and not self._lanes:
                    self.idle.set()
                else:
                    self.idle.clear()
                timeout = self.policy.poll_s
                if later_ns is not None:
                    timeout = min(timeout, max(0.0, (later_ns - self._clock_ns()) / 1e9))
                await self._wait(timeout)
        finally:
            lanes = list(self._lanes.values())
            for task in lanes:
                task.cancel()
            for task in lanes:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _wait(self, timeout_s: float) -> None:
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
        # arrives as the event is set, and the loop would never stop
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    async def _lane(self, subscription: str) -> None:
        try:
            while True:
                try:
                    delivery = await self.outbox.head(subscription)
                except Exception as exc:
                    self.stats.outbox_errors += 1
                    _log.warning("alerts.outbox_unavailable", error=_short(exc))
                    return
                if delivery is None or delivery.next_attempt_ns > self._clock_ns():
                    return
                if not await self._deliver(delivery):
                    return  # the database failed to record: the main loop asks again
        finally:
            self._lanes.pop(subscription, None)
            self._wake.set()

    def _budget(self, channel: Channel, target: str) -> ControlBudget:
        key = f"{channel}:{target}"
        budget = self._per_target.get(key)
        if budget is None:
            rate = (
                self.policy.webhook_rate_per_s
                if channel is Channel.WEBHOOK
                else self.policy.target_rate_per_s
            )
            budget = self._per_target[key] = ControlBudget(rate)
        return budget

    async def _deliver(self, delivery: Delivery) -> bool:
        """One attempt; False if it could not be recorded."""
        sender = self.senders.get(delivery.channel)
        await self._global.take()
        await self._budget(delivery.channel, delivery.target).take()
        now = self._clock_ns()
        number = delivery.attempts + 1
        next_ns: int | None = None
        try:
            if sender is None:
                raise AlertDeliveryError(
                    f"no {delivery.channel} channel configured", retryable=True
                )
            receipt = await sender.send(delivery)
            attempt = Attempt(
                delivery.id, number, now, Outcome.SENT, receipt.status, elapsed_s=receipt.elapsed_s
            )
        except AlertDeliveryError as exc:
            age_s = (now - delivery.created_ns) / 1e9
            final = not exc.retryable or age_s >= self.policy.give_up_after_s
            outcome = Outcome.FAILED if final else Outcome.RETRY
            if not final:
                backoff = Backoff(self.policy.retry_initial_s, self.policy.retry_max_s, self._rng)
                backoff.attempt = delivery.attempts
                delay = (
                    exc.retry_after_s if exc.retry_after_s is not None else (backoff.next_delay_s())
                )
                next_ns = now + int(delay * 1e9)
            attempt = Attempt(
                delivery.id, number, now, outcome, exc.status, str(exc), exc.retry_after_s
            )
        except Exception as exc:  # task boundary: a channel bug must not stop the lane
            _log.exception("alerts.channel_failed", subscription=delivery.subscription)
            backoff = Backoff(self.policy.retry_initial_s, self.policy.retry_max_s, self._rng)
            backoff.attempt = delivery.attempts
            next_ns = now + int(backoff.next_delay_s() * 1e9)
            attempt = Attempt(delivery.id, number, now, Outcome.RETRY, None, _short(exc))
        try:
            await self.outbox.record(delivery, attempt, next_ns)
        except Exception as exc:
            self.stats.outbox_errors += 1
            _log.warning("alerts.outbox_unavailable", error=_short(exc))
            return False
        if attempt.outcome is Outcome.SENT:
            self.stats.sent += 1
        elif attempt.outcome is Outcome.RETRY:
            self.stats.retried += 1
            _log.info(
                "alerts.retry",
                subscription=delivery.subscription,
                attempt=number,
                error=attempt.error,
                retry_s=round(((next_ns or now) - now) / 1e9, 3),
            )
        else:
            self.stats.failed += 1
            _log.warning(
                "alerts.gave_up",
                subscription=delivery.subscription,
                alert_id=delivery.alert_id,
                attempts=number,
                error=attempt.error,
            )
        return True


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
