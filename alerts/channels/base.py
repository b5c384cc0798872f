"""What a channel is: one outbox entry in, delivered or an AlertDeliveryError out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from alerts.subscriptions import Channel


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored notification for one subscription, exactly as it will be sent."""

    id: int  # outbox row id: increasing in enqueue order
    subscription: str
    channel: Channel
    target: str  # webhook URL or Telegram chat id
    body: bytes  # the webhook body or the sendMessage parameters, rendered once
    idempotency_key: str
    alert_id: str
    notification_id: str
    created_ns: int
    attempts: int = 0
    next_attempt_ns: int = 0
    secret_env: str | None = None
    # a Telegram group message covers several alert events: every one of them (the first
    # is ``alert_id``/``notification_id``); empty for a delivery of one event
    alert_ids: tuple[str, ...] = ()
    notification_ids: tuple[str, ...] = ()

    def covers(self, alert_id: str) -> bool:
        """Whether this delivery tells of ``alert_id`` (alone, or in its group)."""
        return alert_id == self.alert_id or alert_id in self.alert_ids


@dataclass(frozen=True, slots=True)
class Receipt:
    """A successful delivery: HTTP status and how long the request took."""

    status: int
    elapsed_s: float


class Sender(Protocol):
    """A channel: ``send`` returns a Receipt or raises AlertDeliveryError(retryable=...)."""

    async def send(self, delivery: Delivery) -> Receipt: ...

    async def close(self) -> None: ...
