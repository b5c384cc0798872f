"""What a notification says: the webhook JSON body and the Telegram message.

Both are rendered once, when the notification enters the outbox, and stored: a retry
sends the same bytes (the same signature), even after a restart.

Webhook body (documented in docs/alerts.md)::

    {"id": "<alert id>", "event_id": "<notification id>", "rule": "...",
     "state": "firing" | "resolved", "severity": "info" | "warning" | "critical",
     "scope": {"venue", "symbol", "asset"}, "value": <number or null>,
     "components": {...}, "starts_at": "<ISO 8601 UTC>", "ends_at": "<ISO 8601 UTC or null>",
     "links": {"alert", "history", "evidence", "deliveries"},
     "summary": "...", "metric": "...", "threshold": <number>, "stale": bool, "repeat": n}
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import msgspec

from alerts.engine import AlertState, Notification

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
    moved = f"{html.escape(e.metric or e.rule)} {_amount(e.value)}"
    for key in ("drop_pct", "rise_pct"):
        if key in e.components:
            sign = "\u2212" if key == "drop_pct" else "+"
            moved += f" ({sign}{e.components[key]:.0f}% vs {_amount(e.components.get('baseline'))})"
    if e.stale:
        moved += " <i>(no fresh data)</i>"
    since = iso(e.starts_at_ns) or ""
    when = (
        f"since {since[11:16]} UTC"
        if e.state is AlertState.FIRING
        else (f"{since[11:16]}\u2013{(iso(e.ends_at_ns) or '')[11:16]} UTC")
    )
    lines = [head, moved, f"{html.escape(e.summary)}", f"{when} · {e.state.value}"]
    return "\n".join(lines)


def telegram_payload(notification: Notification, chat_id: str) -> bytes:
    return _encode(
        {
            "chat_id": chat_id,
            "text": telegram_text(notification),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
    )
