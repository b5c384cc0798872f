"""Webhooks: POST the stored JSON body, signed, with an idempotency key.

Headers: ``Content-Type: application/json``, ``Idempotency-Key: <key>`` (the same on every
retry of one notification to one subscription: receivers dedupe on it), and
``X-Liqmon-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with the secret in
the environment variable the subscription names (``secret_env``; no header without one).
2xx is delivered; 408, 425, 429 (honouring ``Retry-After``), 5xx and network errors are
retried; any other 4xx is final.

The target's host is checked when the request is made, not only when the subscription was
made: a host name is resolved then (``getaddrinfo``) and refused if any of its addresses is
loopback, private, link-local, multicast, reserved or unspecified (unless
``allow_private_urls``); the connection goes to the addresses that were checked (the
connector's resolver is :class:`CheckedResolver`), so a name cannot resolve to something
else between the check and the connect (DNS rebinding). A refused target is a final
failure, kept in the delivery log with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from alerts.channels.base import Delivery, Receipt
from alerts.subscriptions import is_private_address
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


GetAddrInfo = Callable[..., Awaitable[Sequence[tuple[Any, ...]]]]


class RefusedAddressError(OSError):
    """A webhook host that resolves to an address the settings do not allow."""


def address_problem(host: str, address: str) -> str | None:
    """Why a resolved address may not be a webhook target (without allow_private_urls)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{host} resolves to {address!r}, not an IP address"
    if is_private_address(ip):
        shown = host if host == address else f"{host} resolves to {address}, which"
        return (
            f"{shown} is a loopback, private, link-local, multicast or reserved address"
            " (set alerts.allow_private_urls = true to allow it)"
        )
    return None


class CheckedResolver(AbstractResolver):
    """Resolves a webhook host at connect time and refuses disallowed addresses: the
    connector connects to exactly the addresses returned here, after the check."""

    def __init__(self, allow_private_urls: bool, getaddrinfo: GetAddrInfo | None = None) -> None:
        self.allow_private_urls = allow_private_urls
        self._getaddrinfo = getaddrinfo
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        lookup = self._getaddrinfo or asyncio.get_running_loop().getaddrinfo
        self.lookups += 1
        infos = await lookup(host, port, type=socket.SOCK_STREAM, family=family)
        hosts: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            if not self.allow_private_urls:
                why = address_problem(host, address)
                if why:
                    raise RefusedAddressError(why)
            hosts.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=int(sockaddr[1]),
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not hosts:
            raise OSError(f"cannot resolve {host}: no address")
        return hosts

    async def close(self) -> None:
        return None


class WebhookSender:
    """One aiohttp session for every webhook subscription; targets checked at send time
    (see the module's docstring; ``getaddrinfo`` replaces the system's, for tests)."""

    def __init__(
        self,
        *,
        allow_private_urls: bool = False,
        timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        getaddrinfo: GetAddrInfo | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._env = env if env is not None else os.environ
        self.allow_private_urls = allow_private_urls
        self.resolver = CheckedResolver(allow_private_urls, getaddrinfo)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # no DNS cache: every new connection resolves, and is checked, afresh
            connector = aiohttp.TCPConnector(resolver=self.resolver, use_dns_cache=False)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    def target_problem(self, url: str) -> str | None:
        """An address literal in the URL that is not allowed (names: at connect time)."""
        if self.allow_private_urls:
            return None
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None  # aiohttp refuses it with its own error
        if not host:
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
        return address_problem(host, host)

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
        refused = self.target_problem(delivery.target)
        if refused:
            raise AlertDeliveryError(f"webhook refused: {refused}", retryable=False)
        started = time.perf_counter()
        try:
            async with self._client().post(
                delivery.target, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddressError):
                raise AlertDeliveryError(
                    f"webhook refused: {exc.os_error}", retryable=False
                ) from None
            raise AlertDeliveryError(f"webhook: {_describe(exc)}", retryable=True) from None
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
        if self._session is not None:
            await self._session.close()
        self._session = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
