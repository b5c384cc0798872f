"""The alert endpoints, as routes the API mounts (``monitor.api``): handlers take requests
that are already authenticated (the API enforces the bearer token on writes).

    GET    {prefix}/alerts?state=firing|pending|resolved&since=&until=   (epoch seconds)
    GET    {prefix}/alerts/{id}
    POST   {prefix}/alerts/{id}/ack           {"by": "alice"}
    GET    {prefix}/alerts/{id}/deliveries    the delivery log: every delivery, its attempts
    GET    {prefix}/silences
    POST   {prefix}/silences                  {"matchers": {...}, "duration_s" | "ends_at", ...}
    DELETE {prefix}/silences/{id}

Live push: append a callable to ``AlertEngineSink.listeners``; it receives each tick's
alert events (``AlertEvent.record()`` gives the JSON object).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from alerts.engine import Alert, AlertState, Engine, Silence
from alerts.outbox import Outbox
from alerts.render import iso

_MAX_SILENCE_S = 30 * 86400.0


def alert_record(alert: Alert, engine: Engine, now_ns: int) -> dict[str, Any]:
    silence = engine.silenced_by(alert, now_ns)
    inhibitor = engine.inhibited_by(alert) if alert.state is AlertState.FIRING else None
    return {
        "id": alert.id,
        "rule": alert.rule.name,
        "state": alert.state.value,
        "severity": alert.rule.severity,
        "scope": alert.scope.as_dict(),
        "value": alert.value,
        "stale": alert.stale,
        "summary": alert.rule.render_summary(alert.scope, alert.value),
        "pending_since": iso(alert.pending_since_ns),
        "starts_at": iso(alert.firing_since_ns),
        "ends_at": iso(alert.resolved_at_ns),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": iso(alert.acknowledged_at_ns),
        "silenced_by": silence.id if silence else None,
        "inhibited_by": inhibitor.id if inhibitor else None,
        "components": alert.components,
    }


def _seconds(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected epoch seconds, got {text!r}") from None


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        raise web.HTTPBadRequest(text="expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


class AlertsApi:
    """The engine's alerts and silences and the outbox's delivery log, over HTTP."""

    def __init__(
        self, engine: Engine, outbox: Outbox, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self._clock_ns = clock_ns

    def add_routes(self, router: web.UrlDispatcher, prefix: str = "/api") -> None:
        router.add_get(f"{prefix}/alerts", self.list_alerts)
        router.add_get(f"{prefix}/alerts/{{id}}", self.get_alert)
        router.add_post(f"{prefix}/alerts/{{id}}/ack", self.acknowledge)
        router.add_get(f"{prefix}/alerts/{{id}}/deliveries", self.deliveries)
        router.add_get(f"{prefix}/silences", self.list_silences)
        router.add_post(f"{prefix}/silences", self.create_silence)
        router.add_delete(f"{prefix}/silences/{{id}}", self.delete_silence)

    async def list_alerts(self, request: web.Request) -> web.Response:
        now = self._clock_ns()
        state = request.query.get("state")
        if state is not None and state not in {s.value for s in AlertState}:
            raise web.HTTPBadRequest(
                text=f"state: expected firing, pending or resolved, got {state!r}"
            )
        since, until = _seconds(request, "since"), _seconds(request, "until")
        alerts = [*self.engine.active.values(), *reversed(self.engine.resolved)]
        out = []
        for a in alerts:
            if state is not None and a.state.value != state:
                continue
            at = (a.resolved_at_ns or a.firing_since_ns or a.pending_since_ns) / 1e9
            if (since is not None and at < since) or (until is not None and at > until):
                continue
            out.append(alert_record(a, self.engine, now))
        return web.json_response({"alerts": out})

    def _alert(self, request: web.Request) -> Alert:
        alert = self.engine.find(request.match_info["id"])
        if alert is None:
            raise web.HTTPNotFound(text="no such alert")
        return alert

    async def get_alert(self, request: web.Request) -> web.Response:
        return web.json_response(alert_record(self._alert(request), self.engine, self._clock_ns()))

    async def acknowledge(self, request: web.Request) -> web.Response:
        alert = self._alert(request)
        body = await _json(request)
        by = body.get("by")
        if not isinstance(by, str) or not by.strip():
            raise web.HTTPBadRequest(text="by: who acknowledges (a non-empty string)")
        now = self._clock_ns()
        if self.engine.acknowledge(alert.id, by.strip()[:100], now) is None:
            raise web.HTTPConflict(text=f"alert is {alert.state.value}, not firing")
        return web.json_response(alert_record(alert, self.engine, now))

    async def deliveries(self, request: web.Request) -> web.Response:
        alert_id = request.match_info["id"]
        log = await self.outbox.attempts(alert_id)
        return web.json_response(
            {
                "alert_id": alert_id,
                "deliveries": [
                    {
                        "subscription": d.subscription,
                        "channel": d.channel.value,
                        "notification_id": d.notification_id,
                        "status": status.value,
                        "attempts": [
                            {
                                "number": a.number,
                                "at": iso(a.ts_ns),
                                "outcome": a.outcome.value,
                                "status_code": a.status_code,
                                "error": a.error,
                                "retry_after_s": a.retry_after_s,
                            }
                            for a in attempts
                        ],
                    }
                    for d, status, attempts in log
                ],
            }
        )

    async def list_silences(self, request: web.Request) -> web.Response:
        now = self._clock_ns()
        self.engine.expire_silences(now)
        return web.json_response(
            {
                "silences": [
                    {
                        "id": s.id,
                        "matchers": s.matchers,
                        "starts_at": iso(s.starts_at_ns),
                        "ends_at": iso(s.ends_at_ns),
                        "created_by": s.created_by,
                        "comment": s.comment,
                        "active": s.active(now),
                    }
                    for s in self.engine.silences.values()
                ]
            }
        )

    async def create_silence(self, request: web.Request) -> web.Response:
        body = await _json(request)
        matchers = body.get("matchers")
        if (
            not isinstance(matchers, dict)
            or not matchers
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in matchers.items())
        ):
            raise web.HTTPBadRequest(text="matchers: a non-empty object of strings")
        now = self._clock_ns()
        starts = body.get("starts_at", now / 1e9)
        duration = body.get("duration_s")
        ends = body.get("ends_at")
        if not isinstance(starts, int | float):
            raise web.HTTPBadRequest(text="starts_at: epoch seconds")
        if isinstance(duration, int | float) and 0 < duration <= _MAX_SILENCE_S:
            ends = starts + duration
        if not isinstance(ends, int | float) or not 0 < ends - starts <= _MAX_SILENCE_S:
            raise web.HTTPBadRequest(
                text="an expiry is required: duration_s or ends_at, after starts_at, "
                "at most 30 days"
            )
        silence = Silence(
            id=uuid.uuid4().hex[:16],
            matchers={k: v for k, v in matchers.items()},
            starts_at_ns=int(starts * 1e9),
            ends_at_ns=int(ends * 1e9),
            created_by=str(body.get("created_by", ""))[:100],
            comment=str(body.get("comment", ""))[:500],
        )
        self.engine.add_silence(silence)
        return web.json_response({"id": silence.id, "ends_at": iso(silence.ends_at_ns)}, status=201)

    async def delete_silence(self, request: web.Request) -> web.Response:
        if not self.engine.remove_silence(request.match_info["id"]):
            raise web.HTTPNotFound(text="no such silence")
        return web.Response(status=204)
