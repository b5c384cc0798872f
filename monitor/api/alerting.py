"""Alerts over HTTP: the rule engine's alerts, acknowledgement and silences, and alert
events on the live push.

The engine is the daemon's :class:`monitor.alerting.AlertEngineSink`; its ``listeners`` get
every tick's alert events, which :func:`alert_listener` turns into timeline events
(``kind: "alert"``) on the live state. Every write here needs a bearer token (the
application's auth middleware).
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from alerts.engine import Alert, AlertEvent, Silence
from monitor.api import schemas
from monitor.api.params import ApiError, Query, bad, rfc3339
from monitor.api.spec import P_CURSOR, Param, Route, p_limit, p_time
from monitor.store import queries

if TYPE_CHECKING:
    from monitor.alerting import AlertEngineSink
    from monitor.api.live import LiveState

API = "/api/v1"
ALERT_STATES = ("active", "firing", "pending", "resolved", "all")
MAX_STORED_ALERTS = 10_000  # alerts over a time range, at most
ALERT_ID = re.compile(r"[0-9a-f]{20}")  # alerts.engine.alert_id: 10 bytes, hexadecimal
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
MATCHER_FIELDS = ("rule", "severity", "category", "venue", "symbol", "asset", "instrument")


def alert_listener(live: LiveState) -> Callable[[list[AlertEvent]], None]:
    """An ``AlertEngineSink`` listener: each alert event onto the timeline and the push."""

    def listen(events: list[AlertEvent]) -> None:
        live.add_events(
            [
                {
                    "ts": e.ts_ns // 1_000_000,
                    "kind": "alert",
                    "asset": e.scope.asset or None,
                    "venue": e.scope.venue or None,
                    "symbol": e.scope.symbol or None,
                    "state": e.state.value,
                    "to": e.state.value,
                    "rule": e.rule,
                    "alert_id": e.alert_id,
                    "severity": e.severity,
                    "value": e.value,
                    "text": e.summary,
                }
                for e in events
            ]
        )

    return listen


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def alert_sink(request: web.Request) -> AlertEngineSink:
    from monitor.api.app import CTX  # noqa: PLC0415 (app imports this module)

    sink = request.app[CTX].alerts
    if sink is None:
        raise ApiError(503, "alerting is not running in this process (it runs with `liqmon run`)")
    return sink  # type: ignore[no-any-return]


def _alert(a: Alert) -> dict[str, Any]:
    def t(ns: int | None) -> str | None:
        return None if ns is None else rfc3339(ns // 1_000_000)

    return {
        "id": a.id,
        "rule": a.rule.name,
        "state": a.state.value,
        "severity": a.rule.severity,  # the name (a.severity is the ordered level)
        "venue": a.scope.venue or None,
        "symbol": a.scope.symbol or None,
        "asset": a.scope.asset or None,
        "value": a.value,
        "pending_since": t(a.pending_since_ns),
        "firing_since": t(a.firing_since_ns),
        "acknowledged_by": a.acknowledged_by,
        "acknowledged_at": t(a.acknowledged_at_ns),
        "resolved_at": t(a.resolved_at_ns),
        "stale": a.stale,
    }


def _silence(s: Silence) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": s.matchers,
        "starts_at": rfc3339(s.starts_at_ns // 1_000_000),
        "ends_at": rfc3339(s.ends_at_ns // 1_000_000),
        "created_by": s.created_by,
        "comment": s.comment,
        "active": s.active(time.time_ns()),
    }


def _page(items: list[Any], query: Query) -> tuple[list[Any], str | None]:
    from monitor.api.params import offset_page  # noqa: PLC0415

    page, following, _ = offset_page(items, query, 500, 10_000)
    return page, following


async def list_alerts(request: web.Request) -> web.Response:
    query = Query(request, {"state", "limit", "cursor", "alert_id", "from", "to"})
    ranged = query.get("from") is not None or query.get("to") is not None
    state = query.choice("state", ALERT_STATES, "all" if ranged else "active")
    if ranged:
        return await _stored_between(request, query, state)
    wanted = query.get("alert_id")
    if wanted is not None:  # one alert in any state (the webhook body's "history" link)
        if not ALERT_ID.fullmatch(wanted):
            raise bad("alert_id", "expected an alert id (20 lowercase hexadecimal characters)")
        found = await _find(request, wanted)
        return json_response({"alerts": [] if found is None else [found.body], "next_cursor": None})
    engine = alert_sink(request).engine
    chosen: list[Alert]
    if state == "firing":
        chosen = engine.firing()
    elif state == "pending":
        chosen = engine.pending()
    elif state == "resolved":
        chosen = list(engine.resolved)  # the most recent, kept in memory
    elif state == "all":
        chosen = [*engine.firing(), *engine.pending(), *engine.resolved]
    else:
        chosen = [*engine.firing(), *engine.pending()]
    chosen.sort(key=lambda a: (a.pending_since_ns, a.id))
    page, following = _page([_alert(a) for a in chosen], query)
    return json_response({"alerts": page, "next_cursor": following})


def _ctx(request: web.Request) -> Any:
    from monitor.api.app import CTX  # noqa: PLC0415 (app imports this module)

    return request.app[CTX]


def _alert_id(request: web.Request) -> str:
    alert_id = request.match_info["alert_id"]
    if not ALERT_ID.fullmatch(alert_id):
        raise bad("alert_id", "expected an alert id (20 lowercase hexadecimal characters)")
    return alert_id


@dataclass(frozen=True)
class _Found:
    body: dict[str, Any]  # as schemas.AlertOut
    anchor_ns: int  # when it fired (or went pending, if it never fired)
    venue: str
    symbol: str
    asset: str


def _stored_alert(
    alert_id: str, events: list[dict[str, Any]], ack: tuple[str, int] | None = None
) -> _Found:
    """An alert as its stored rule events (oldest first) and acknowledgement tell it."""

    def first(state: str) -> int | None:
        return next((e["ts_us"] for e in events if e["state"] == state), None)

    def t(ts_us: int | None) -> str | None:
        return None if ts_us is None else rfc3339(ts_us // 1000)

    last = events[-1]
    firing = first("firing")
    body = {
        "id": alert_id,
        "rule": last["rule"],
        "state": last["state"],
        "severity": last["severity"] or "",
        "venue": last["venue"] or None,
        "symbol": last["symbol"] or None,
        "asset": last["asset"] or None,
        "value": last["value"],
        "pending_since": t(first("pending") or events[0]["ts_us"]),
        "firing_since": t(firing),
        "acknowledged_by": None if ack is None else ack[0],
        "acknowledged_at": None if ack is None else t(ack[1]),
        "resolved_at": t(last["ts_us"]) if last["state"] == "resolved" else None,
        "stale": bool(last["stale"]),
    }
    anchor = firing if firing is not None else events[0]["ts_us"]
    return _Found(body, anchor * 1000, last["venue"], last["symbol"], last["asset"])


async def _find(request: web.Request, alert_id: str) -> _Found | None:
    """The alert from the engine's memory, else from the stored events (a database)."""
    ctx = _ctx(request)
    if ctx.alerts is not None:
        a: Alert | None = ctx.alerts.engine.find(alert_id)
        if a is not None:
            anchor = a.firing_since_ns if a.firing_since_ns is not None else a.pending_since_ns
            return _Found(_alert(a), anchor, a.scope.venue, a.scope.symbol, a.scope.asset)
    if ctx.history is None:
        return None
    try:
        events = await queries.alert_events(ctx.history.pool, alert_id)
        acks = await queries.alert_acks(ctx.history.pool, [alert_id]) if events else {}
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    return _stored_alert(alert_id, events, acks.get(alert_id)) if events else None


async def _stored_between(request: web.Request, query: Query, state: str) -> web.Response:
    """Alerts with a stored event in [from, to] (the database), in their state now."""
    start = query.time("from", 0)
    end = query.time("to", time.time_ns() // 1_000_000)
    assert start is not None and end is not None
    if start > end:
        raise bad("from", "after to")
    ctx = _ctx(request)
    if ctx.history is None:
        raise ApiError(503, "alerts by time are stored data: no database in this process")
    try:
        stored = await queries.alerts_between(ctx.history.pool, start, end, MAX_STORED_ALERTS)
        acks = await queries.alert_acks(ctx.history.pool, list(stored))
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    wanted = {"active": ("firing", "pending"), "all": ALERT_STATES}.get(state, (state,))
    bodies = [
        found.body
        for alert_id, events in stored.items()
        if (found := _stored_alert(alert_id, events, acks.get(alert_id))).body["state"] in wanted
    ]
    page, following = _page(bodies, query)
    return json_response({"alerts": page, "next_cursor": following})


async def get_alert(request: web.Request) -> web.Response:
    """One alert: active or resolved, from memory or from the stored events."""
    Query(request, set())
    alert_id = _alert_id(request)
    found = await _find(request, alert_id)
    if found is None:
        raise ApiError(404, f"no alert {alert_id!r}", "alert_id")
    return json_response(found.body)


async def alert_evidence(request: web.Request) -> web.Response:
    """The stored top-N book snapshots of the alert's scope around the time it fired
    (the evidence window before and after it, ``database.evidence_window_s``)."""
    query = Query(request, {"limit"})
    limit = query.integer("limit", 2000, 1, 20_000)
    alert_id = _alert_id(request)
    found = await _find(request, alert_id)
    if found is None:
        raise ApiError(404, f"no alert {alert_id!r}", "alert_id")
    ctx = _ctx(request)
    if ctx.history is None:
        raise ApiError(503, "evidence is stored data: no database in this process")
    db = ctx.settings.database
    window_s = max(db.evidence_window_s, db.snapshot_every_s)
    anchor_s = found.anchor_ns / 1e9
    try:
        if found.venue and found.symbol:
            books = [(found.venue, found.symbol)]
        else:
            known = await ctx.history.known()
            books = [
                (k["venue"], k["symbol"])
                for k in known
                if (not found.asset or k["base"] == found.asset)
                and (not found.venue or k["venue"] == found.venue)
            ]
        rows = await queries.snapshots_between(
            ctx.history.pool, books, anchor_s - window_s, anchor_s + window_s, limit + 1
        )
        stored_frames = await queries.evidence_frames(ctx.history.pool, alert_id)
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    snapshots = [
        {
            "ts": rfc3339(round(r["ts"] * 1000)),
            "ts_ms": round(r["ts"] * 1000),
            "offset_s": round(r["ts"] - anchor_s, 3),
            "venue": r["venue"],
            "symbol": r["symbol"],
            "instrument": r["instrument"],
            "reason": r["reason"],
            "valid": r["valid"],
            "state": r["state"],
            "bids": r["bids"],
            "asks": r["asks"],
        }
        for r in rows[:limit]
    ]
    return json_response(
        {
            "alert": found.body,
            "at": rfc3339(found.anchor_ns // 1_000_000),
            "window_s": window_s,
            "snapshots": snapshots,
            "truncated": len(rows) > limit,
            "frames": [
                {
                    "venue": f["venue"],
                    "symbols": list(f["symbols"]),
                    "from": rfc3339(round(f["from_s"] * 1000)),
                    "to": rfc3339(round(f["to_s"] * 1000)),
                    "from_offset_s": round(f["from_s"] - anchor_s, 3),
                    "to_offset_s": round(f["to_s"] - anchor_s, 3),
                    "frames": f["frames"],
                    "bytes": f["bytes"],
                    "truncated": f["truncated"],
                    "download": f"{API}/alerts/{alert_id}/evidence/frames?venue={f['venue']}",
                }
                for f in stored_frames
            ],
        }
    )


async def alert_evidence_frames(request: web.Request) -> web.StreamResponse:
    """The raw frames stored around the time an alert fired, as a recording (JSON lines,
    ``{"ts", "venue", "kind", "url", "data"}``) that ``liqmon replay`` reads; every venue,
    or one (``venue``)."""
    query = Query(request, {"venue"})
    venue = query.get("venue")
    if venue is not None and len(venue) > 64:
        raise bad("venue", "longer than 64 characters")
    alert_id = _alert_id(request)
    ctx = _ctx(request)
    if ctx.history is None:
        raise ApiError(503, "evidence is stored data: no database in this process")
    try:
        bodies = await queries.evidence_frame_bodies(ctx.history.pool, alert_id, venue)
        if not bodies and await _find(request, alert_id) is None:
            raise ApiError(404, f"no alert {alert_id!r}", "alert_id")
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    if not bodies:
        raise ApiError(
            404,
            f"no raw frames stored for alert {alert_id!r}"
            + (f" on {venue}" if venue else "")
            + " (taken evidence_frames_after_s after it fires)",
            "venue" if venue else "alert_id",
        )
    lines = b"".join(zlib.decompress(body) for _, body in bodies)
    name = f"liqmon-{alert_id}{'-' + venue if venue else ''}.jsonl"
    return web.Response(
        body=lines,
        content_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def alert_deliveries(request: web.Request) -> web.Response:
    """The delivery log of an alert: each delivery (subscription), its status, its attempts."""
    from alerts.render import iso  # noqa: PLC0415

    outbox = alert_sink(request).outbox
    alert_id = request.match_info["alert_id"]
    # evaluation without delivery (no outbox): nothing was sent, the log is empty
    log = [] if outbox is None else await outbox.attempts(alert_id)
    return json_response(
        {
            "alert_id": alert_id,
            "deliveries": [
                {
                    "subscription": d.subscription,
                    "channel": d.channel.value,
                    # this alert's notification (a Telegram group message carries several)
                    "notification_id": next(
                        (n for n in d.notification_ids if n.startswith(f"{alert_id}:")),
                        d.notification_id,
                    ),
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


class AckIn(msgspec.Struct, forbid_unknown_fields=True):
    by: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SilenceIn(msgspec.Struct, forbid_unknown_fields=True):
    matchers: dict[str, Annotated[str, msgspec.Meta(min_length=1, max_length=200)]]
    duration_s: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)]
    created_by: Annotated[str, msgspec.Meta(max_length=100)] = ""
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


async def _body(request: web.Request, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(await request.read(), type=kind)
    except msgspec.ValidationError as exc:
        raise bad("body", str(exc)) from None
    except msgspec.DecodeError:
        raise bad("body", "expected a JSON object") from None


async def ack_alert(request: web.Request) -> web.Response:
    """Acknowledge a firing alert: no more repeats (its resolution is still sent)."""
    Query(request, set())
    body: AckIn = await _body(request, AckIn)
    sink = alert_sink(request)
    alert_id = request.match_info["alert_id"]
    found = sink.engine.find(alert_id)
    if found is None:
        raise ApiError(404, f"no active alert {alert_id!r}", "alert_id")
    try:
        acked = await sink.acknowledge(alert_id, body.by, time.time_ns())
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    if acked is None:
        raise ApiError(409, f"alert {alert_id!r} is {found.state.value}, not firing", "alert_id")
    return json_response(_alert(acked))


async def list_silences(request: web.Request) -> web.Response:
    query = Query(request, {"limit", "cursor"})
    engine = alert_sink(request).engine
    items = sorted(engine.silences.values(), key=lambda s: (s.starts_at_ns, s.id))
    page, following = _page([_silence(s) for s in items], query)
    return json_response({"silences": page, "next_cursor": following})


async def add_silence(request: web.Request) -> web.Response:
    """Mute every alert matching all ``matchers`` (globs on rule, severity, venue, ...)."""
    Query(request, set())
    body: SilenceIn = await _body(request, SilenceIn)
    if not body.matchers:
        raise bad("body", 'matchers: at least one (e.g. {"venue": "binance"})')
    unknown = sorted(set(body.matchers) - set(MATCHER_FIELDS))
    if unknown:
        raise bad("body", f"matchers: unknown field {unknown[0]!r} (one of {MATCHER_FIELDS})")
    now = time.time_ns()
    try:
        silence = await alert_sink(request).add_silence(
            dict(body.matchers),
            now,
            now + int(body.duration_s * 1e9),
            body.created_by,
            body.comment,
        )
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    return json_response(_silence(silence), 201)


async def delete_silence(request: web.Request) -> web.Response:
    Query(request, set())
    silence_id = request.match_info["silence_id"]
    try:
        removed = await alert_sink(request).remove_silence(silence_id)
    except DB_ERRORS as exc:
        raise ApiError(503, f"database unavailable: {str(exc)[:200]}") from None
    if not removed:
        raise ApiError(404, f"no silence {silence_id!r}", "silence_id")
    return json_response({"deleted": silence_id})


def alert_routes(max_limit: int) -> Sequence[Route]:
    limit = p_limit(500, max_limit)
    alert_id = Param("alert_id", {"type": "string", "minLength": 1}, "alert id", where="path")
    silence_id = Param("silence_id", {"type": "string", "minLength": 1}, "silence id", where="path")
    errors = (400, 401, 404, 503)
    return [
        Route("GET", f"{API}/alerts", list_alerts,
              "Alerts: active, recently resolved, or by time (stored)", schemas.AlertList,
              (Param("state", {"type": "string", "enum": [*ALERT_STATES]},
                     "which alerts (default active: firing and pending; resolved: the "
                     "latest; with from/to the default is all)"), limit, P_CURSOR,
               p_time("from", "alerts with a stored event at or after this time (the "
                      "database; each in its state now, the earliest first)"),
               p_time("to", "alerts with a stored event at or before this time (default "
                      "now)"),
               Param("alert_id", {"type": "string", "pattern": "^[0-9a-f]{20}$"},
                     "only this alert, in any state (the state filter does not apply)")),
              tag="alerts", errors=(400, 503)),
        Route("GET", f"{API}/alerts/{{alert_id}}", get_alert,
              "One alert, active or resolved (from memory or the stored events)",
              schemas.AlertOut, (alert_id,), tag="alerts", errors=(400, 401, 404, 503)),
        Route("GET", f"{API}/alerts/{{alert_id}}/evidence", alert_evidence,
              "The stored book snapshots around the time an alert fired", schemas.Evidence,
              (alert_id, Param("limit", {"type": "integer", "minimum": 1, "maximum": 20000,
                                         "default": 2000}, "at most this many snapshots")),
              tag="alerts", errors=(400, 401, 404, 503)),
        Route("GET", f"{API}/alerts/{{alert_id}}/evidence/frames", alert_evidence_frames,
              "The raw frames stored around the time an alert fired: a recording (JSON "
              "lines) for liqmon replay", None,
              (alert_id, Param("venue", {"type": "string", "minLength": 1, "maxLength": 64},
                               "only this venue's frames")),
              tag="alerts", errors=(400, 401, 404, 503), content_type="application/x-ndjson"),
        Route("POST", f"{API}/alerts/{{alert_id}}/ack", ack_alert,
              "Acknowledge a firing alert (no more repeats)", schemas.AlertOut, (alert_id,),
              tag="alerts", write=True, errors=(*errors, 409), request=AckIn),
        Route("GET", f"{API}/alerts/{{alert_id}}/deliveries", alert_deliveries,
              "The delivery log of an alert (every delivery and attempt)", schemas.DeliveryLog,
              (alert_id,), tag="alerts", errors=(400, 401, 503)),
        Route("GET", f"{API}/silences", list_silences, "Silences", schemas.SilenceList,
              (limit, P_CURSOR), tag="alerts", errors=(400, 503)),
        Route("POST", f"{API}/silences", add_silence,
              "Mute alerts matching all matchers for a duration", schemas.SilenceOut,
              tag="alerts", write=True, errors=errors, request=SilenceIn, status=201),
        Route("DELETE", f"{API}/silences/{{silence_id}}", delete_silence, "End a silence",
              schemas.Deleted, (silence_id,), tag="alerts", write=True, errors=errors),
    ]  # fmt: skip
