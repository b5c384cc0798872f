"""The outbox: notifications are stored before they are sent, and every attempt is kept.

:class:`Outbox` is the small interface the dispatcher and the alert sink use;
:class:`MemoryOutbox` keeps it in memory (replay without a database, unit tests, the
benchmark's baseline) and :class:`alerts.pg_outbox.PgOutbox` in PostgreSQL, so a crash or a
dead endpoint delays a notification but never loses it.

Order: deliveries of one subscription go out in the order they were stored; a later one
waits while an earlier one is retried (head of line). Subscriptions are independent.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from alerts.channels.base import Delivery
from alerts.engine import AlertEvent, Notification
from alerts.render import telegram_payload, webhook_body
from alerts.rules import Severity
from alerts.subscriptions import Channel, SubscriptionSpec


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up (final answer, or too old): kept, visible


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one delivery, as the delivery log shows it."""

    delivery_id: int
    number: int
    ts_ns: int
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    elapsed_s: float | None = None


def idempotency_key(notification_id: str, subscription: str) -> str:
    """Stable per notification and subscription: every retry, every restart, the same."""
    raw = f"{notification_id}|{subscription}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def deliveries_for(
    notifications: Iterable[Notification],
    subscriptions: Sequence[SubscriptionSpec],
    *,
    base_url: str = "",
) -> list[Delivery]:
    """Route and render (ids 0 until stored). A webhook subscription gets one Delivery per
    notification (one signed request per alert event, its own Idempotency-Key); a Telegram
    subscription one per group notification: the notifications of one group in this batch
    (what one :meth:`~alerts.engine.Engine.notifications` call flushed together) become one
    message, stored as one row, so it is sent, and recorded as sent, once for all of them.
    """
    out: list[Delivery] = []
    notes = list(notifications)
    for sub in subscriptions:
        wanted = [n for n in notes if sub.wants(n)]
        if sub.channel is Channel.WEBHOOK:
            for note in wanted:
                out.append(_delivery(sub, [note], webhook_body(note, base_url)))
            continue
        groups: dict[tuple[str, ...], list[Notification]] = {}
        for note in wanted:
            groups.setdefault(note.group, []).append(note)
        for members in groups.values():
            out.append(_delivery(sub, members, telegram_payload(members, sub.chat_id or "")))
    return out


def _delivery(sub: SubscriptionSpec, notes: Sequence[Notification], body: bytes) -> Delivery:
    first = notes[0]
    ts = max(n.event.ts_ns for n in notes)
    severity = max((n.event.severity for n in notes), key=Severity.parse)
    ids = tuple(n.id for n in notes)
    many = len(notes) > 1
    return Delivery(
        id=0,
        subscription=sub.name,
        channel=sub.channel,
        target=(sub.url if sub.channel is Channel.WEBHOOK else sub.chat_id) or "",
        body=body,
        # a group's key: every notification it carries (a restart that stores the same
        # group again stores nothing new)
        idempotency_key=idempotency_key("+".join(ids), sub.name),
        alert_id=first.event.alert_id,
        notification_id=first.id,
        created_ns=ts,
        next_attempt_ns=sub.quiet_until_ns(ts, severity) or ts,
        secret_env=sub.secret_env,
        alert_ids=tuple(dict.fromkeys(n.event.alert_id for n in notes)) if many else (),
        notification_ids=ids if many else (),
    )


class Outbox(Protocol):
    """Where alert events and their deliveries live until sent (or given up)."""

    async def store(self, events: Sequence[AlertEvent], deliveries: Sequence[Delivery]) -> None:
        """Keep the events and the deliveries, atomically, before anything is sent."""

    async def due_subscriptions(self, now_ns: int) -> tuple[list[str], int | None]:
        """Subscriptions whose oldest pending delivery is due, and the next due time."""

    async def head(self, subscription: str) -> Delivery | None:
        """The oldest pending delivery of a subscription."""

    async def record(
        self, delivery: Delivery, attempt: Attempt, next_attempt_ns: int | None = None
    ) -> None:
        """Keep an attempt; SENT and FAILED end the delivery, RETRY reschedules it."""

    async def attempts(self, alert_id: str) -> list[tuple[Delivery, DeliveryStatus, list[Attempt]]]:
        """The delivery log of an alert: every delivery, its status and attempts."""

    async def close(self) -> None: ...


class MemoryOutbox:
    """The outbox in memory: the same contract, lost with the process."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []
        self._rows: dict[int, Delivery] = {}
        self._status: dict[int, DeliveryStatus] = {}
        self._attempts: dict[int, list[Attempt]] = {}
        self._keys: set[str] = set()
        self._next_id = 1

    async def store(self, events: Sequence[AlertEvent], deliveries: Sequence[Delivery]) -> None:
        self.events.extend(events)
        for d in deliveries:
            if d.idempotency_key in self._keys:
                continue
            self._keys.add(d.idempotency_key)
            row = dataclasses.replace(d, id=self._next_id)
            self._next_id += 1
            self._rows[row.id] = row
            self._status[row.id] = DeliveryStatus.PENDING
            self._attempts[row.id] = []

    def _pending_heads(self) -> dict[str, Delivery]:
        heads: dict[str, Delivery] = {}
        for rid in sorted(self._rows):
            if self._status[rid] is DeliveryStatus.PENDING:
                row = self._rows[rid]
                heads.setdefault(row.subscription, row)
        return heads

    async def due_subscriptions(self, now_ns: int) -> tuple[list[str], int | None]:
        due: list[str] = []
        later: int | None = None
        for sub, row in self._pending_heads().items():
            if row.next_attempt_ns <= now_ns:
                due.append(sub)
            elif later is None or row.next_attempt_ns < later:
                later = row.next_attempt_ns
        return due, later

    async def head(self, subscription: str) -> Delivery | None:
        return self._pending_heads().get(subscription)

    async def record(
        self, delivery: Delivery, attempt: Attempt, next_attempt_ns: int | None = None
    ) -> None:
        self._attempts[delivery.id].append(attempt)
        if attempt.outcome is Outcome.SENT:
            self._status[delivery.id] = DeliveryStatus.SENT
        elif attempt.outcome is Outcome.FAILED:
            self._status[delivery.id] = DeliveryStatus.FAILED
        self._rows[delivery.id] = dataclasses.replace(
            self._rows[delivery.id],
            attempts=attempt.number,
            next_attempt_ns=next_attempt_ns or delivery.next_attempt_ns,
        )

    async def attempts(self, alert_id: str) -> list[tuple[Delivery, DeliveryStatus, list[Attempt]]]:
        return [
            (row, self._status[rid], list(self._attempts[rid]))
            for rid, row in sorted(self._rows.items())
            if row.covers(alert_id)
        ]

    def status_counts(self) -> dict[DeliveryStatus, int]:
        counts = dict.fromkeys(DeliveryStatus, 0)
        for status in self._status.values():
            counts[status] += 1
        return counts

    async def close(self) -> None:
        return None
