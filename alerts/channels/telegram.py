"""Telegram: ``sendMessage`` through the Bot API, HTML parse mode.

The bot token is read from the environment (``alerts.telegram_token_env``, by default
``LIQMON_TELEGRAM_BOT_TOKEN``) when a message is sent; it appears only in the request
path (``/bot<token>/sendMessage``) and never in a log line or an error: errors name the
API's host and the method, not the URL. The base URL is configurable
(``alerts.telegram_api_url``), so tests point it at a local stand-in.

Answers: ``{"ok": true, ...}`` is delivered. ``429`` with ``parameters.retry_after`` is
retried after that many seconds; ``5xx`` and network errors are retried with backoff;
``400`` (bad request, chat not found) and ``403`` (bot blocked, kicked) are final.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from alerts.channels.base import Delivery, Receipt
from monitor.errors import AlertDeliveryError

DEFAULT_API_URL = "https://api.telegram.org"
DEFAULT_TOKEN_ENV = "LIQMON_TELEGRAM_BOT_TOKEN"


class TelegramSender:
    def __init__(
        self,
        *,
        api_url: str = DEFAULT_API_URL,
        token_env: str = DEFAULT_TOKEN_ENV,
        timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._host = urlsplit(self.api_url).netloc
        self.token_env = token_env
        self._env = env if env is not None else os.environ
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token
        return f"TelegramSender(api={self._host}, token_env={self.token_env})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def send(self, delivery: Delivery) -> Receipt:
        token = self._env.get(self.token_env)
        if not token:
            raise AlertDeliveryError(f"{self.token_env} is not set", retryable=True)
        url = f"{self.api_url}/bot{token}/sendMessage"
        started = time.perf_counter()
        try:
            async with self._client().post(
                url,
                data=delivery.body,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                status = response.status
                raw = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # aiohttp's messages may carry the URL, hence the token: name the host only
            what = "timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
            raise AlertDeliveryError(
                f"telegram {self._host} sendMessage: {what}", retryable=True
            ) from None
        answer = _decode(raw)
        if status == 200 and answer.get("ok") is True:
            return Receipt(status, time.perf_counter() - started)
        description = str(answer.get("description", ""))[:200].replace(token, "***")
        parameters = answer.get("parameters")
        retry_after: float | None = None
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            retry_after = float(parameters["retry_after"])
        retryable = status == 429 or status >= 500
        raise AlertDeliveryError(
            f"telegram sendMessage: HTTP {status} {description}".rstrip(),
            retryable=retryable,
            retry_after_s=retry_after if status == 429 else None,
            status=status,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}
