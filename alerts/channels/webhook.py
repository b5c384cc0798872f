"""Webhooks: POST the stored JSON body, signed, with an idempotency key.

Headers: ``Content-Type: application/json``, ``Idempotency-Key: <key>`` (the same on every
retry of one notification to one subscription: receivers dedupe on it), and
``X-Liqmon-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with the secret in
the environment variable the subscription names (``secret_env``; no header without one).
2xx is delivered; 408, 425, 429 (honouring ``Retry-After``), 5xx and network errors are
retried; any other 4xx is final.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from collections.abc import Mapping

import aiohttp

from alerts.channels.base import Delivery, Receipt
from monitor.errors import AlertDeliveryError

RETRYABLE_4XX = frozenset({408, 425, 429})


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Liqmon-Signature`` value."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class WebhookSender:
    """One aiohttp session for every webhook subscription."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._env = env if env is not None else os.environ
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.idempotency_key,
            "User-Agent": "liqmon-alerts",
        }
        if delivery.secret_env:
            secret = self._env.get(delivery.secret_env)
            if not secret:
                raise AlertDeliveryError(
                    f"secret_env {delivery.secret_env} is not set", retryable=True
                )
            headers["X-Liqmon-Signature"] = signature(secret.encode(), delivery.body)
        return headers

    async def send(self, delivery: Delivery) -> Receipt:
        headers = self.headers(delivery)
        started = time.perf_counter()
        try:
            async with self._client().post(
                delivery.target, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AlertDeliveryError(f"webhook: {_describe(exc)}", retryable=True) from None
        if 200 <= status < 300:
            return Receipt(status, time.perf_counter() - started)
        retryable = status >= 500 or status in RETRYABLE_4XX
        raise AlertDeliveryError(
            f"webhook answered HTTP {status}",
            retryable=retryable,
            retry_after_s=retry_after if status == 429 else None,
            status=status,
        )

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
