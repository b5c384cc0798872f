"""Subscriptions: who hears what, and the ``[alerts]`` settings.

A subscription binds one channel (a webhook URL or a Telegram chat) to filters on the
rule name, the severity and the scope, with optional quiet hours (UTC) during which only
critical alerts go out at once; the others wait for the end of the quiet hours (delayed,
not dropped). The config form, as users and tools write it::

    [alerts]
    allow_private_urls = true          # loopback/private webhook targets (demo, tests)

    [[subscriptions]]
    name = "ops"
    channel = "webhook"                # or "telegram" with chat_id = "..."
    url = "http://127.0.0.1:9000/hook"
    secret_env = "LIQMON_HOOK_SECRET"  # HMAC key, read from this environment variable
    min_severity = "warning"
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final
from urllib.parse import urlsplit

from msgspec import Meta, Struct

from alerts.engine import Notification
from alerts.rules import ScopeMatch, Severity

SubscriptionName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
SeverityName = Annotated[str, Meta(pattern=r"^(info|warning|critical)$")]
EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
QuietHours = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]


class Channel(StrEnum):
    WEBHOOK = "webhook"
    TELEGRAM = "telegram"


class SubscriptionSpec(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One ``[[subscriptions]]`` table (also the API's and the CLI's subscription)."""

    name: SubscriptionName
    channel: Channel
    url: str | None = None  # webhook
    secret_env: EnvName | None = None  # webhook: HMAC key from this environment variable
    chat_id: str | None = None  # telegram
    min_severity: SeverityName = "warning"
    rules: tuple[str, ...] = ("*",)  # glob patterns on rule names
    scope: ScopeMatch = ScopeMatch()
    quiet_hours: QuietHours | None = None  # "22:00-07:00" UTC
    send_resolved: bool = True
    enabled: bool = True

    def wants(self, notification: Notification) -> bool:
        event = notification.event
        if not self.enabled:
            return False
        if Severity.parse(event.severity) < Severity.parse(self.min_severity):
            return False
        if event.state.value == "resolved" and not self.send_resolved:
            return False
        if not any(fnmatch.fnmatchcase(event.rule, p) for p in self.rules):
            return False
        return self.scope.matches(event.scope)

    def quiet_until_ns(self, ts_ns: int, severity: str) -> int | None:
        """During quiet hours, when a non-critical notification may go out; else None."""
        if self.quiet_hours is None or Severity.parse(severity) >= Severity.CRITICAL:
            return None
        start_s, end_s = self.quiet_hours.split("-")
        at = datetime.fromtimestamp(ts_ns / 1e9, UTC)
        start = _at(at, start_s)
        end = _at(at, end_s)
        if start <= end:
            inside = start <= at < end
        else:  # over midnight
            inside = at >= start or at < end
            if at >= start:
                end += timedelta(days=1)
        return int(end.timestamp() * 1e9) if inside else None

    def problem(self, allow_private_urls: bool) -> tuple[str, str] | None:
        """(key, problem) if the subscription cannot work, else None."""
        if self.channel is Channel.WEBHOOK:
            if not self.url:
                return "url", "a webhook subscription needs a url"
            why = url_problem(self.url, allow_private_urls)
            if why:
                return "url", why
            if self.chat_id is not None:
                return "chat_id", "only for telegram subscriptions"
        else:
            if not self.chat_id:
                return "chat_id", "a telegram subscription needs a chat_id"
            if self.url is not None or self.secret_env is not None:
                return "url", "a telegram subscription takes chat_id, not url/secret_env"
        return None


def _at(day: datetime, hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return day.replace(hour=int(h), minute=int(m), second=0, microsecond=0)


_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_HOST_RE: Final = re.compile(r"^[A-Za-z0-9.-]+$")


def url_problem(url: str, allow_private_urls: bool) -> str | None:
    """Why a webhook URL is refused, or None: http/https only, with a host; loopback,
    private, link-local and reserved addresses only with ``allow_private_urls``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    del port
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {url!r}"
    host = parts.hostname
    if not host:
        return f"the URL has no host: {url!r}"
    if parts.username or parts.password:
        return "credentials in the URL are refused (use secret_env)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_RE.match(host):
            return f"not a valid host name: {host!r}"
        local = host.lower() in _LOCAL_NAMES or host.lower().endswith((".localhost", ".local"))
        if local and not allow_private_urls:
            return f"{host} is a local address (set alerts.allow_private_urls = true)"
        return None
    if not allow_private_urls and is_private_address(address):
        return f"{host} is a private or loopback address (set alerts.allow_private_urls = true)"
    return None


def is_private_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


class AlertsSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[alerts]`` table."""

    enabled: bool = True
    allow_private_urls: bool = False
    # rule files: absolute, or relative to the shipped config directory (config/)
    rules_files: tuple[str, ...] = ("rules.toml",)
    group_by: tuple[str, ...] = ("asset",)
    group_wait_s: NonNegativeFloat = 0.0
    group_interval_s: NonNegativeFloat = 10.0
    repeat_interval_s: PositiveFloat = 4 * 3600.0
    telegram_api_url: Annotated[str, Meta(pattern=r"^https?://\S+$")] = "https://api.telegram.org"
    telegram_token_env: EnvName = "LIQMON_TELEGRAM_BOT_TOKEN"
    request_timeout_s: PositiveFloat = 10.0
    retry_initial_s: PositiveFloat = 1.0
    retry_max_s: PositiveFloat = 300.0
    give_up_after_s: PositiveFloat = 24 * 3600.0
    rate_per_s: PositiveFloat = 25.0  # all channels together (Telegram: 30/s per bot)
    chat_rate_per_s: PositiveFloat = 1.0  # per Telegram chat (the Bot API's limit)
    webhook_rate_per_s: PositiveFloat = 50.0  # per webhook URL
    base_url: str = ""  # the API's public base URL, for the links in notifications
    # market seconds per engine second: rule durations, baselines and grouping intervals are
    # divided by it (the demo plays a compressed market against the wall clock)
    time_scale: PositiveFloat = 1.0


def select(
    subscriptions: Sequence[SubscriptionSpec], notification: Notification
) -> list[SubscriptionSpec]:
    return [s for s in subscriptions if s.wants(notification)]


def check_all(
    subscriptions: Iterable[SubscriptionSpec], allow_private_urls: bool
) -> list[tuple[int, str, str]]:
    """Every (index, key, problem) of a list of subscriptions, names used twice too."""
    problems: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for i, sub in enumerate(subscriptions):
        found = sub.problem(allow_private_urls)
        if found:
            problems.append((i, *found))
        if sub.name in seen:
            problems.append((i, "name", f"{sub.name!r} is used twice"))
        seen.add(sub.name)
    return problems
