"""What a notification says: the webhook JSON body and the Telegram message.

Both are rendered once, when the notification enters the outbox, and stored: a retry
sends the same bytes (the same signature), even after a restart.

Webhook body (documented in docs/alerts.md)::

    {"id": "<alert id>", "event_id": "<notification id>", "rule": "...",
     "state": "firing" | "resolved", "severity": "info" | "warning" | "critical",
     "scope": {"venue", "symbol", "asset"}, "value": <number or null>,
     "components": {...}, "starts_at": "<ISO 8601 UTC>", "ends_at": "<ISO 8601 UTC or null>",
     "links": {"alert", "history", "evidence", "frames", "deliveries"},
     "summary": "...", "metric": "...", "threshold": <number>, "stale": bool, "repeat": n}
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from alerts.engine import AlertEvent, AlertState, Notification
from alerts.rules import Severity

_encode = msgspec.json.Encoder(order="deterministic").encode
_SEVERITY_MARK = {"critical": "\U0001f534", "warning": "\U0001f7e0", "info": "\U0001f535"}


def iso(ts_ns: int | None) -> str | None:
    if ts_ns is None:
        return None
    return (
        datetime.fromtimestamp(ts_ns / 1e9, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def links(alert_id: str, base_url: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {
        "alert": f"{base}/api/v1/alerts/{alert_id}",
        "history": f"{base}/api/v1/alerts?alert_id={alert_id}",
        "evidence": f"{base}/api/v1/alerts/{alert_id}/evidence",
        "frames": f"{base}/api/v1/alerts/{alert_id}/evidence/frames",
        "deliveries": f"{base}/api/v1/alerts/{alert_id}/deliveries",
    }


def webhook_body(notification: Notification, base_url: str = "") -> bytes:
    event = notification.event
    body: dict[str, Any] = {
        "id": event.alert_id,
        "event_id": notification.id,
        "rule": event.rule,
        "state": event.state.value,
        "severity": event.severity,
        "scope": event.scope.as_dict(),
        "value": event.value,
        "components": event.components,
        "starts_at": iso(event.starts_at_ns),
        "ends_at": iso(event.ends_at_ns),
        "links": links(event.alert_id, base_url),
        "summary": event.summary,
        "metric": event.metric,
        "threshold": event.threshold,
        "stale": event.stale,
        "repeat": notification.repeat,
    }
    if event.reason:  # resolved because its rule was removed or replaced: docs/alerts.md
        body["reason"] = event.reason
    return _encode(body)


def _amount(x: float | None) -> str:
    if x is None:
        return "n/a"
    ax = abs(x)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if ax >= limit:
            return f"{x / limit:.3g}{suffix}"
    return f"{x:.4g}"


def telegram_text(notification: Notification) -> str:
    """A few short lines for a phone, HTML parse mode, every dynamic part escaped."""
    e = notification.event
    where = " · ".join(x for x in (e.scope.asset, e.scope.venue, e.scope.symbol) if x)
    mark = _SEVERITY_MARK.get(e.severity, "")
    if e.state is AlertState.RESOLVED:
        head = f"\u2705 <b>RESOLVED</b> {html.escape(where)}"
    else:
        again = " (repeat)" if notification.repeat else ""
        head = f"{mark} <b>{html.escape(e.severity.upper())}</b> {html.escape(where)}{again}"
    moved = _moved(e)
    since = iso(e.starts_at_ns) or ""
    when = (
        f"since {since[11:16]} UTC"
        if e.state is AlertState.FIRING
        else (f"{since[11:16]}\u2013{(iso(e.ends_at_ns) or '')[11:16]} UTC")
    )
    lines = [head, moved, f"{html.escape(e.summary)}", f"{when} · {e.state.value}"]
    return "\n".join(lines)


TELEGRAM_MAX_CHARS = 4096  # sendMessage's limit on the text (UTF-16 code units)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _moved(e: AlertEvent) -> str:
    moved = f"{html.escape(e.metric or e.rule)} {_amount(e.value)}"
    for key in ("drop_pct", "rise_pct"):
        if key in e.components:
            sign = "\u2212" if key == "drop_pct" else "+"
            moved += f" ({sign}{e.components[key]:.0f}% vs {_amount(e.components.get('baseline'))})"
    if e.stale:
        moved += " <i>(no fresh data)</i>"
    return moved


def _group_line(notification: Notification) -> str:
    """One alert of a group message: severity, where, what moved, since when."""
    e = notification.event
    where = " ".join(x for x in (e.scope.venue, e.scope.symbol) if x) or e.scope.asset or "market"
    since = (iso(e.starts_at_ns) or "")[11:16]
    if e.state is AlertState.RESOLVED:
        until = (iso(e.ends_at_ns) or "")[11:16]
        return f"\u2705 {html.escape(where)}: {html.escape(e.rule)} resolved ({since}\u2013{until})"
    mark = _SEVERITY_MARK.get(e.severity, "\u2022")
    again = " (repeat)" if notification.repeat else ""
    return (
        f"{mark} <b>{html.escape(e.severity.upper())}</b> {html.escape(where)}: {_moved(e)}"
        f" since {since}{again}"
    )


def telegram_group_text(notifications: Sequence[Notification]) -> str:
    """One message for one group notification (the engine's flush of one group): a
    headline with the group (the asset by default) and how many alerts fire or resolved,
    then a line per alert, most severe first, cut with "+N more" to stay within
    Telegram's 4096 characters. HTML parse mode, every dynamic part escaped."""
    if len(notifications) == 1:
        return telegram_text(notifications[0])
    group = " \u00b7 ".join(g for g in notifications[0].group if g) or "market"
    firing = [n for n in notifications if n.event.state is not AlertState.RESOLVED]
    resolved = len(notifications) - len(firing)
    counts = []
    if firing:
        counts.append(f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing")
    if resolved:
        counts.append(f"{resolved} resolved")
    worst = max((Severity.parse(n.event.severity) for n in firing), default=None)
    mark = "\u2705" if worst is None else _SEVERITY_MARK[worst.label]
    head = f"{mark} <b>{html.escape(group)}</b> \u2014 {', '.join(counts)}"
    ordered = sorted(
        notifications,
        key=lambda n: (
            n.event.state is AlertState.RESOLVED,
            -Severity.parse(n.event.severity),
            n.event.starts_at_ns or 0,
        ),
    )
    lines = [head]
    size = _utf16_len(head)
    for i, note in enumerate(ordered):
        line = _group_line(note)
        rest = len(ordered) - i - 1
        tail = f"\n+{rest} more" if rest else ""
        if size + 1 + _utf16_len(line) + _utf16_len(tail) > TELEGRAM_MAX_CHARS:
            lines.append(f"+{len(ordered) - i} more")
            break
        lines.append(line)
        size += 1 + _utf16_len(line)
    return "\n".join(lines)


def telegram_payload(notification: Notification | Sequence[Notification], chat_id: str) -> bytes:
    """sendMessage's parameters for one notification, or one message for a group's."""
    notes = [notification] if isinstance(notification, Notification) else list(notification)
    return _encode(
        {
            "chat_id": chat_id,
            "text": telegram_group_text(notes),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
    )
