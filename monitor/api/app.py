"""The aiohttp application: ``/api/v1`` (live and stored data), ``/metrics``, ``/health``,
``/ready`` and the page at ``/``.

:func:`build_app` assembles it from an :class:`ApiContext` (settings, the live state when a
daemon runs, the history source when a database is configured); :class:`ApiServer` serves
it at ``api.listen``. State lives under typed :class:`web.AppKey` keys; the push hub and
the database pool are opened and closed by ``cleanup_ctx``.

``liqmon run`` builds it with a :class:`~monitor.api.live.LiveState` attached to the
daemon; ``liqmon serve`` without one, so its live endpoints answer 503 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.resources
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
from aiohttp import WSMsgType, web

from monitor.api import schemas
from monitor.api.auth import TokenCheck, bearer, env_token_hashes
from monitor.api.live import FilterError, LiveState, PushHub, parse_filters
from monitor.api.params import ApiError, Query, bad, offset_page, rfc3339
from monitor.api.prom import CONTENT_TYPE, PromMetrics
from monitor.api.spec import (
    P_CURSOR,
    Param,
    Route,
    add_routes,
    openapi,
    p_limit,
    p_str,
    p_time,
)
from monitor.log import get_logger
from monitor.settings import ApiSettings, Settings

log = get_logger("monitor.api")

API = "/api/v1"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_LIMIT = 500
MAX_BOOK_DEPTH = 1000

_encode = msgspec.json.Encoder().encode


def _version() -> str:
    try:
        return importlib.metadata.version("liqmon")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def static_dir() -> Path:
    """The page's files (package data ``monitor/api/static``)."""
    return Path(str(importlib.resources.files("monitor.api") / "static"))


@dataclass
class ApiContext:
    """Everything the handlers read; one per application."""

    settings: Settings
    live: LiveState | None = None  # None: `liqmon serve` (no feeds in this process)
    tokens: TokenCheck = field(default_factory=lambda: TokenCheck(env_token_hashes()))
    # extra readiness checks by name: () -> (ok, detail), e.g. the database
    ready_checks: dict[str, Callable[[], Awaitable[tuple[bool, str]]]] = field(default_factory=dict)
    extra_routes: list[Route] = field(default_factory=list)
    history: Any = None  # the stored-data source (monitor.store), None: no database
    alerts: Any = None  # the daemon's AlertEngineSink (monitor.alerting), None: no alerting
    started: float = field(default_factory=time.monotonic)
    prom: PromMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.prom = PromMetrics(self.live)

    @property
    def api(self) -> ApiSettings:
        return self.settings.api

    def need_live(self) -> LiveState:
        if self.live is None:
            raise ApiError(
                503,
                "live data is not available: this is `liqmon serve`, which reads the "
                "database only (live endpoints need `liqmon run`)",
            )
        return self.live


CTX = web.AppKey("ctx", ApiContext)
ROUTES: web.AppKey[list[Route]] = web.AppKey("routes")
HUB_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("hub_tasks")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]


# --- middlewares ---------------------------------------------------------------------------
@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error is JSON with a sentence; bad input is a 4xx, never a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _json(exc.body(), exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text or exc.reason
        if exc.status == 404:
            message = f"no such endpoint: {request.path} (see {API}/openapi.json)"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        resp = _json({"error": {"status": exc.status, "message": message}}, exc.status)
        for header in ("Allow", "WWW-Authenticate"):
            if header in exc.headers:
                resp.headers[header] = exc.headers[header]
        return resp
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("api.handler_failed", path=request.path, method=request.method)
        return _json({"error": {"status": 500, "message": "internal error (logged)"}}, 500)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Writes always need a bearer token; reads too unless ``api.open_reads``."""
    ctx = _ctx(request)
    guarded = request.path.startswith(API) and request.path != f"{API}/openapi.json"
    write = request.method not in READ_METHODS
    if (
        guarded
        and (write or not ctx.api.open_reads)
        and not await ctx.tokens.valid(bearer(request.headers.get("Authorization")))
    ):
        what = "this endpoint changes state" if write else "reads are not open"
        resp = _json(
            {"error": {"status": 401, "message": f"a valid bearer token is required ({what})"}},
            401,
        )
        resp.headers["WWW-Authenticate"] = 'Bearer realm="liqmon"'
        return resp
    return await handler(request)


@web.middleware
async def cors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """CORS only for the configured origins (``api.cors_origins``; empty: off)."""
    origins = _ctx(request).api.cors_origins
    origin = request.headers.get("Origin")
    allowed = bool(origins) and origin is not None and ("*" in origins or origin in origins)
    if (
        allowed
        and request.method == "OPTIONS"
        and "Access-Control-Request-Method" in request.headers
    ):
        resp: web.StreamResponse = web.Response(status=204)
    else:
        resp = await handler(request)
    if allowed and not resp.prepared:
        resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else (origin or "")
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        resp.headers["Vary"] = "Origin"
    return resp


@web.middleware
async def timing_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    start = time.perf_counter()
    resp = await handler(request)
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    _ctx(request).prom.requests.labels(route, str(resp.status)).observe(time.perf_counter() - start)
    return resp


# --- operations ----------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return _json({"status": "ok", "uptime_s": round(time.monotonic() - ctx.started, 3)})


async def ready(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    checks: list[dict[str, Any]] = []
    if ctx.live is not None:
        checks.append(_feeds_ready(ctx.live))
    for name, check in sorted(ctx.ready_checks.items()):
        try:
            ok, detail = await asyncio.wait_for(check(), 5.0)
        except Exception as exc:  # a failing check is an answer, not an error
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks.append({"name": name, "ok": ok, "detail": detail})
    if not checks:
        checks.append(
            {"name": "sources", "ok": False, "detail": "no feeds and no database in this process"}
        )
    is_ready = all(c["ok"] for c in checks)
    return _json({"ready": is_ready, "checks": checks}, 200 if is_ready else 503)


def _feeds_ready(live: LiveState) -> dict[str, Any]:
    sample = live.sample
    if sample is None or not len(sample):
        return {"name": "feeds", "ok": False, "detail": "no tick yet (starting)"}
    venues: dict[str, int] = {}
    for i, ident in enumerate(sample.books):
        venues[ident.venue] = venues.get(ident.venue, 0) + int(sample.valid[i])
    down = sorted(v for v, n in venues.items() if n == 0)
    valid = int(sample.valid.sum())
    detail = f"{valid}/{len(sample)} books valid"
    if down:
        detail += f"; no valid book on {', '.join(down)}"
    return {"name": "feeds", "ok": not down, "detail": detail}


async def info(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return _json(
        {
            "version": _version(),
            "live": ctx.live is not None,
            "history": ctx.history is not None,
            "openapi": f"{API}/openapi.json",
        }
    )


async def prometheus(request: web.Request) -> web.Response:
    body = _ctx(request).prom.render()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE
    return resp


async def openapi_doc(request: web.Request) -> web.Response:
    routes: list[Route] = request.app[ROUTES]
    return _json(openapi(routes, _version()))


# --- live ----------------------------------------------------------------------------------
_STATUS_OK_RATIO = 1.0


async def venues(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    query = Query(request, {"limit", "cursor"})
    live = ctx.live
    health: dict[str, dict[str, Any]] = {}
    if live is not None and live.daemon is not None and live.daemon.pipeline is not None:
        health = live.daemon.health_state()
    counts: dict[str, list[int]] = {}
    if live is not None and live.sample is not None:
        s = live.sample
        for i, ident in enumerate(s.books):
            c = counts.setdefault(ident.venue, [0, 0, 0])
            c[0] += 1
            c[1] += int(s.valid[i])
            c[2] += int(s.stale[i])
    now_ns = time.time_ns()
    out = []
    for venue, table in ctx.settings.venues.items():
        name = venue.value
        books, valid, stale = counts.get(name, [len(table.symbols) if table.enabled else 0, 0, 0])
        h = health.get(name)
        if live is None or not table.enabled:
            status = "unknown" if table.enabled else "disabled"
        elif books and valid == books:
            status = "ok"
        elif valid:
            status = "degraded"
        else:
            status = "down"
        out.append(
            {
                "venue": name,
                "enabled": table.enabled,
                "books": books,
                "valid_books": valid,
                "stale_books": stale,
                "status": status,
                "health": _venue_health(h, now_ns) if h is not None else None,
            }
        )
    page, following, _ = offset_page(out, query, DEFAULT_LIMIT, ctx.api.max_limit)
    return _json({"venues": page, "next_cursor": following})


def _venue_health(h: dict[str, Any], now_ns: int) -> dict[str, Any]:
    last = h.get("last_frame_ns", 0)
    return {
        "connects": h.get("connects", 0),
        "connect_failures": h.get("connect_failures", 0),
        "disconnects": h.get("disconnects", 0),
        "errors": h.get("errors", 0),
        "stale": h.get("stale", 0),
        "open_connections": h.get("open_connections", 0),
        "gaps": h.get("gaps", 0),
        "resyncs": h.get("resyncs", 0),
        "checksum_failed": h.get("checksum_failed", 0),
        "snapshots_failed": h.get("snapshots_failed", 0),
        "last_error": h.get("last_error"),
        "last_frame_age_s": round((now_ns - last) / 1e9, 3) if last else None,
    }


def _live_sample(ctx: ApiContext) -> LiveState:
    live = ctx.need_live()
    if live.sample is None:
        raise ApiError(503, "live data is not available yet: the daemon has not ticked")
    return live


async def instruments(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    query = Query(request, {"venue", "asset", "kind", "limit", "cursor"})
    venue, asset, kind = query.get("venue"), query.get("asset"), query.get("kind")
    if ctx.live is None and ctx.history is not None:
        known = await ctx.history.known()
        source = [
            {
                "venue": k["venue"],
                "symbol": k["symbol"],
                "instrument": k["instrument"],
                "asset": k["base"],
                "quote": k["quote"],
                "kind": k["kind"],
                "valid": None,
                "stale": None,
                "state": None,
            }
            for k in known
        ]
    else:
        source = _live_sample(ctx).rows
    rows = [
        {
            "venue": r["venue"],
            "symbol": r["symbol"],
            "instrument": r["instrument"],
            "asset": r["asset"],
            "quote": r["quote"],
            "kind": r["kind"],
            "valid": r["valid"],
            "stale": r["stale"],
            "state": r["state"],
        }
        for r in source
        if (venue is None or r["venue"] == venue)
        and (asset is None or r["asset"] == asset.upper())
        and (kind is None or r["kind"] == kind)
    ]
    page, following, _ = offset_page(rows, query, DEFAULT_LIMIT, ctx.api.max_limit)
    return _json({"instruments": page, "next_cursor": following})


async def live_metrics(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    query = Query(request, {"venue", "asset", "symbol", "limit", "cursor"})
    venue, asset, symbol = query.get("venue"), query.get("asset"), query.get("symbol")
    live = _live_sample(ctx)
    assert live.sample is not None
    _check_known(live, venue, symbol, asset)
    rows = [
        r
        for r in live.rows
        if (venue is None or r["venue"] == venue)
        and (asset is None or r["asset"] == asset.upper())
        and (symbol is None or r["symbol"] == symbol)
    ]
    page, following, _ = offset_page(rows, query, DEFAULT_LIMIT, ctx.api.max_limit)
    ts_ms = live.sample.ts_ns // 1_000_000
    assets = [a for a in live.assets if asset is None or a["asset"] == asset.upper()]
    return _json(
        {
            "ts": rfc3339(ts_ms),
            "ts_ms": ts_ms,
            "rows": page,
            "assets": assets,
            "next_cursor": following,
        }
    )


def _check_known(live: LiveState, venue: str | None, symbol: str | None, asset: str | None) -> None:
    rows = live.rows
    if venue is not None and not any(r["venue"] == venue for r in rows):
        raise ApiError(404, f"unknown venue {venue!r} (no book of it is monitored)", "venue")
    if symbol is not None and not any(
        r["symbol"] == symbol and (venue is None or r["venue"] == venue) for r in rows
    ):
        where = f" on {venue}" if venue else ""
        raise ApiError(404, f"unknown instrument {symbol!r}{where}", "symbol")
    if asset is not None and not any(r["asset"] == asset.upper() for r in rows):
        raise ApiError(404, f"unknown asset {asset!r}", "asset")


async def live_book(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    query = Query(request, {"venue", "symbol", "depth"})
    venue, symbol = query.required("venue"), query.required("symbol")
    depth = query.integer("depth", 20, 1, MAX_BOOK_DEPTH)
    live = _live_sample(ctx)
    _check_known(live, venue, symbol, None)
    daemon = live.daemon
    if daemon is None or daemon.pipeline is None:
        raise ApiError(503, "live books are not available yet: the daemon is starting")
    for book in daemon.pipeline.book_summaries(depth=depth):
        if book["venue"] == venue and book["symbol"] == symbol:
            ts = book["ts_event"]
            return _json(
                {
                    "venue": venue,
                    "symbol": symbol,
                    "instrument": book["instrument"],
                    "ts": rfc3339(int(ts * 1000)) if ts > 0 else None,
                    "valid": book["valid"],
                    "state": book["state"],
                    "bids": [[str(p), str(q)] for p, q in book["bids"]],
                    "asks": [[str(p), str(q)] for p, q in book["asks"]],
                    "resyncs": book["resyncs"],
                    "gaps": book["gaps"],
                    "messages": book["messages"],
                }
            )
    raise ApiError(404, f"unknown instrument {symbol!r} on {venue}", "symbol")


async def events(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    query = Query(request, {"from", "to", "kind", "asset", "venue", "limit", "cursor"})
    start, end = query.time("from"), query.time("to")
    if start is not None and end is not None and end < start:
        raise bad("to", "earlier than from")
    kinds = set(query.names("kind"))
    asset, venue = query.get("asset"), query.get("venue")
    live = ctx.need_live()
    rows = [
        e
        for e in live.events
        if (start is None or e["ts"] >= start)
        and (end is None or e["ts"] < end)
        and (not kinds or e["kind"] in kinds)
        and (asset is None or e.get("asset") == asset.upper())
        and (venue is None or e.get("venue") == venue)
    ]
    page, following, _ = offset_page(rows, query, DEFAULT_LIMIT, ctx.api.max_limit)
    return _json({"events": page, "next_cursor": following})


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    """An operator's note on the timeline (``POST /api/v1/events``)."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    asset: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    venue: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None


async def add_note(request: web.Request) -> web.Response:
    """A note on the events timeline ("binance maintenance"), pushed to live clients."""
    ctx = _ctx(request)
    live = ctx.need_live()
    body = await request.read()
    try:
        note = msgspec.json.decode(body, type=NoteIn)
    except msgspec.ValidationError as exc:
        raise bad("body", str(exc)) from None
    except msgspec.DecodeError:
        raise bad("body", 'expected a JSON object such as {"text": "..."}') from None
    event: dict[str, Any] = {"ts": time.time_ns() // 1_000_000, "kind": "note", "text": note.text}
    if note.asset is not None:
        event["asset"] = note.asset.upper()
    if note.venue is not None:
        event["venue"] = note.venue
    live.add_events([event])
    return _json(live.events[-1], 201)


async def live_ws(request: web.Request) -> web.StreamResponse:
    """Live push: ``tick`` messages (the rows the filters select) and ``event`` messages."""
    ctx = _ctx(request)
    live = ctx.need_live()
    query = Query(request, {"assets", "venues", "kinds"})
    try:
        filters = parse_filters(
            {k: query.get(k) for k in ("assets", "venues", "kinds") if k in request.query}
        )
    except FilterError as exc:
        raise bad(exc.parameter, exc.message) from None
    hub = live.hub
    if len(hub.clients) >= hub.max_clients:
        raise ApiError(503, f"too many live clients ({hub.max_clients}); try again later")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        raise bad("Upgrade", "this endpoint speaks WebSocket only (send Upgrade: websocket)")
    await ws.prepare(request)
    client = hub.add(ws, filters, request.remote or "?", request.transport)
    await ws.send_str(
        _encode(
            {
                "type": "hello",
                "filters": filters.as_dict(),
                "queue": hub.queue_size,
                "events": [e for e in list(live.events)[-200:] if filters.row_ok(e)],
            }
        ).decode()
    )
    sender = asyncio.create_task(hub.send_loop(client), name=f"ws:{client.peer}")
    tasks = request.app[HUB_TASKS]
    tasks.add(sender)
    sender.add_done_callback(tasks.discard)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = msgspec.json.decode(msg.data)
                if not isinstance(data, dict) or not isinstance(data.get("subscribe"), dict):
                    raise FilterError("subscribe", 'expected {"subscribe": {"assets": [...]}}')
                client.filters = parse_filters(data["subscribe"])
                answer = {"type": "subscribed", "filters": client.filters.as_dict()}
            except (msgspec.DecodeError, FilterError) as exc:
                answer = {"type": "error", "message": str(exc)}
            if not client.dropped:
                client.queue.put_nowait(_encode(answer)) if not client.queue.full() else None
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        hub.remove(client)
    return ws


# --- the page ------------------------------------------------------------------------------
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(static_dir() / "index.html")


def live_routes(api: ApiSettings) -> list[Route]:
    limit, cursor = p_limit(DEFAULT_LIMIT, api.max_limit), P_CURSOR
    venue_p, asset_p = (
        p_str("venue", "venue id, e.g. binance"),
        p_str("asset", "base asset, e.g. SOL"),
    )
    return [
        Route("GET", f"{API}/venues", venues, "Venues with their health", schemas.VenueList,
              (limit, cursor), tag="venues"),
        Route("GET", f"{API}/instruments", instruments, "Monitored instruments with their state",
              schemas.InstrumentList,
              (venue_p, asset_p, p_str("kind", "spot, perp or future"), limit, cursor),
              tag="venues", errors=(400, 503)),
        Route("GET", f"{API}/live/metrics", live_metrics,
              "Latest tick per book: 1% depth, spread, dislocation, basis, score, state",
              schemas.LiveMetrics,
              (venue_p, asset_p, p_str("symbol", "venue symbol"), limit, cursor),
              errors=(400, 404, 503)),
        Route("GET", f"{API}/live/book", live_book, "A live book's top N levels per side",
              schemas.LiveBook,
              (p_str("venue", "venue id", True), p_str("symbol", "venue symbol", True),
               Param("depth", {"type": "integer", "minimum": 1, "maximum": MAX_BOOK_DEPTH,
                               "default": 20}, "levels per side")),
              errors=(400, 404, 503)),
        Route("GET", f"{API}/events", events,
              "State changes and alerts (newest last), from the live process",
              schemas.EventList,
              (p_time("from", "first time (inclusive)"), p_time("to", "end (exclusive)"),
               p_str("kind", "comma-separated kinds: book_state, score, alert"), asset_p, venue_p,
               limit, cursor),
              tag="events", errors=(400, 503)),
        Route("POST", f"{API}/events", add_note, "Add an operator's note to the timeline",
              schemas.Event, tag="events", write=True, errors=(400, 401, 503),
              request=NoteIn, status=201),
        Route("GET", f"{API}/live/ws", live_ws,
              "Live push (WebSocket): tick and event messages; filters assets, venues, kinds",
              None,
              (p_str("assets", "comma-separated assets"), p_str("venues", "comma-separated venues"),
               p_str("kinds", "tick,event (default both)")),
              errors=(400, 503), content_type="application/json",
              extra={"x-websocket": True}),
        Route("GET", f"{API}/info", info, "What this process serves: live data, history",
              schemas.Info, tag="operations", errors=()),
        Route("GET", "/health", health, "Liveness", schemas.Health, tag="operations", errors=()),
        Route("GET", "/ready", ready, "Readiness: feeds and database", schemas.Ready,
              tag="operations", errors=()),
        Route("GET", "/metrics", prometheus, "Prometheus metrics", None, tag="operations",
              errors=(), content_type="text/plain"),
    ]  # fmt: skip


def build_app(ctx: ApiContext, routes: Sequence[Route] = ()) -> web.Application:
    """The application: the declared routes, the OpenAPI document, the page."""
    app = web.Application(
        middlewares=[cors_middleware, error_middleware, timing_middleware, auth_middleware]
    )
    app[CTX] = ctx
    app[HUB_TASKS] = set()
    from monitor.api.alerting import alert_routes  # noqa: PLC0415
    from monitor.api.history import history_routes  # noqa: PLC0415
    from monitor.api.rules import rule_routes  # noqa: PLC0415

    declared = [
        *live_routes(ctx.api),
        *history_routes(ctx.api.max_limit),
        *alert_routes(ctx.api.max_limit),
        *rule_routes(ctx.api.max_limit),
        *routes,
        *ctx.extra_routes,
    ]
    declared.append(
        Route("GET", f"{API}/openapi.json", openapi_doc, "This document", None, tag="operations",
              errors=())
    )  # fmt: skip
    app[ROUTES] = declared
    add_routes(app, declared)
    app.router.add_get("/", index)
    app.router.add_static("/static/", static_dir(), name="static")
    app.cleanup_ctx.append(_hub_ctx)
    return app


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    live = app[CTX].live
    if live is not None:
        await live.hub.close_all()
    tasks: set[asyncio.Task[None]] = app[HUB_TASKS]
    for task in list(tasks):
        task.cancel()


class ApiServer:
    """Serves an application at ``api.listen`` while the ``async with`` block runs."""

    def __init__(self, app: web.Application, listen: tuple[str, int]) -> None:
        self.app = app
        self.host, self.port = listen
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def __aenter__(self) -> ApiServer:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            raise
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        log.info("api.listening", url=self.url)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def live_context(settings: Settings) -> ApiContext:
    """The context of `liqmon run`: a live state fed as a sink, attached to the daemon."""
    hub = PushHub(settings.api.ws_queue, settings.api.ws_max_clients)
    return ApiContext(settings, LiveState(hub))
