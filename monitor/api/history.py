"""Stored data over HTTP: bucketed history, scores, health events, a book at a time, the
dislocation ranking at a time. SQL lives in :mod:`monitor.store.queries`; this module
parses parameters, pages and formats (JSON or CSV).

Paging: rows are ordered by bucket (then venue, symbol); ``next_cursor`` is
``k<bucket ms>_<n>``: the next page starts at that bucket and skips the ``n`` rows of it
already given, so a page never repeats or misses a row.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from monitor.api import schemas
from monitor.api.params import ApiError, Query, bad, decode_cursor, parse_interval, rfc3339
from monitor.api.spec import (
    P_FORMAT,
    P_INTERVAL,
    P_KEY_CURSOR,
    Param,
    Route,
    p_limit,
    p_str,
    p_time,
)
from monitor.store import queries

API = "/api/v1"
DEFAULT_LIMIT = 1000
KNOWN_TTL_S = 30.0
FIELDS = tuple(queries.BOOK_FIELDS)
AGGS = ("min", "max", "avg", "last")


@dataclass
class HistorySource:
    """The database behind the history endpoints: a small asyncpg pool."""

    pool: asyncpg.Pool
    _known: list[dict[str, Any]] = field(default_factory=list)
    _known_at: float = 0.0

    @classmethod
    async def open(cls, dsn: str, size: int = 4) -> HistorySource:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def known(self) -> list[dict[str, Any]]:
        """Every stored book (venue, symbol, instrument, base, quote, kind), cached briefly."""
        now = time.monotonic()
        if not self._known or now - self._known_at > KNOWN_TTL_S:
            self._known = await queries.books_known(self.pool)
            self._known_at = now
        return self._known

    async def token_valid(self, digest: str) -> bool:
        """A stored, unrevoked token with this SHA-256 (the auth's database lookup)."""
        try:
            found = await self.pool.fetchval(
                "SELECT 1 FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                digest,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False  # the database away: only the environment's tokens work
        return found is not None

    async def ping(self) -> tuple[bool, str]:
        try:
            await self.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return False, f"database unreachable: {exc}"
        return True, "database reachable"


def _source(request: web.Request) -> HistorySource:
    from monitor.api.app import CTX  # noqa: PLC0415 (app imports this module)

    history = request.app[CTX].history
    if history is None:
        raise ApiError(
            503,
            "stored data is not available: no database in this process "
            "(database.dsn, or database.embedded with `liqmon run`/`liqmon serve`)",
        )
    assert isinstance(history, HistorySource)
    return history


def _max_limit(request: web.Request) -> int:
    from monitor.api.app import CTX  # noqa: PLC0415

    return request.app[CTX].api.max_limit


def _max_buckets(request: web.Request) -> int:
    from monitor.api.app import CTX  # noqa: PLC0415

    return request.app[CTX].api.max_buckets


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int
    interval_ms: int
    page_start_ms: int | None
    skip: int
    limit: int
    fmt: str


def _window(request: web.Request, query: Query, *, default_interval: str = "1m") -> Window:
    start = query.time("from")
    end = query.time("to")
    if start is None:
        raise bad("from", "required")
    if end is None:
        raise bad("to", "required")
    if end <= start:
        raise bad("to", "must be later than from")
    interval = parse_interval(query.get("interval", default_interval) or default_interval)
    buckets = -(-(end - start) // interval)
    if buckets > _max_buckets(request):
        raise bad(
            "interval",
            f"{buckets} buckets between from and to; at most {_max_buckets(request)}: "
            "choose a wider interval or a shorter span",
        )
    limit = query.integer("limit", DEFAULT_LIMIT, 1, _max_limit(request))
    cursor = query.get("cursor")
    page_start, skip = (None, 0) if cursor is None else decode_cursor(cursor, "k")
    fmt = query.choice("format", ("json", "csv"), "json")
    return Window(start, end, interval, page_start, skip, limit, fmt)


def _next_cursor(rows: Sequence[dict[str, Any]], window: Window) -> str | None:
    if len(rows) < window.limit:
        return None
    last = rows[-1]["ts_ms"]
    same = sum(1 for r in rows if r["ts_ms"] == last)
    if window.page_start_ms == last:
        same += window.skip  # the whole page sat in one bucket
    return f"k{last}_{same}"


def _agg(row: dict[str, Any], name: str) -> dict[str, float | None]:
    return {a: _float(row.get(f"{name}_{a}")) for a in AGGS}


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def _answer(
    request: web.Request,
    window: Window,
    rows: list[dict[str, Any]],
    cursor: str | None,
    csv_columns: Sequence[str],
) -> web.Response:
    if window.fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(csv_columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in csv_columns])
        resp = web.Response(text=out.getvalue(), content_type="text/csv")
        if cursor is not None:
            resp.headers["X-Next-Cursor"] = cursor
        return resp
    body = {
        "interval_ms": window.interval_ms,
        "from_ms": window.start_ms,
        "to_ms": window.end_ms,
        "buckets": rows,
        "next_cursor": cursor,
    }
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def _flat(bucket: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    flat = {k: v for k, v in bucket.items() if not isinstance(v, dict)}
    for name in fields:
        for agg, value in bucket[name].items():
            flat[f"{name}_{agg}"] = value
    return flat


async def _check_book(
    source: HistorySource, venue: str | None, symbol: str | None, asset: str | None
) -> None:
    known = await source.known()
    if venue is not None and not any(k["venue"] == venue for k in known):
        raise ApiError(404, f"unknown venue {venue!r}: nothing of it is stored", "venue")
    if symbol is not None and not any(
        k["symbol"] == symbol and (venue is None or k["venue"] == venue) for k in known
    ):
        raise ApiError(404, f"unknown instrument {symbol!r} on {venue}: nothing stored", "symbol")
    if asset is not None and not any(k["base"] == asset for k in known):
        raise ApiError(404, f"unknown asset {asset!r}: nothing of it is stored", "asset")


def _fields(query: Query) -> list[str]:
    names = query.names("fields") or list(FIELDS)
    for name in names:
        if name not in FIELDS:
            raise bad("fields", f"unknown field {name!r} (one of {', '.join(FIELDS)})")
    return list(dict.fromkeys(names))


async def history_metrics(request: web.Request) -> web.Response:
    """One book's metrics in buckets: min/max/avg/last of each field over valid samples."""
    query = Query(
        request,
        {"venue", "symbol", "from", "to", "interval", "fields", "format", "limit", "cursor"},
    )
    venue, symbol = query.required("venue"), query.required("symbol")
    fields = _fields(query)
    window = _window(request, query)
    source = _source(request)
    await _check_book(source, venue, symbol, None)
    return await _book_buckets(request, source, window, fields, venue=venue, symbol=symbol)


async def history_depth(request: web.Request) -> web.Response:
    """An asset's ±1% depth on every venue, in buckets (min/max/avg/last, USD)."""
    query = Query(request, {"asset", "from", "to", "interval", "format", "limit", "cursor"})
    asset = query.required("asset").upper()
    window = _window(request, query)
    source = _source(request)
    await _check_book(source, None, None, asset)
    return await _book_buckets(request, source, window, ["depth_1pct_usd"], asset=asset)


async def _book_buckets(
    request: web.Request,
    source: HistorySource,
    window: Window,
    fields: list[str],
    **scope: str,
) -> web.Response:
    rows = await queries.book_buckets(
        source.pool,
        fields=fields,
        start_s=window.start_ms / 1000,
        end_s=window.end_ms / 1000,
        interval_s=window.interval_ms / 1000,
        page_start_s=None if window.page_start_ms is None else window.page_start_ms / 1000,
        skip=window.skip,
        limit=window.limit,
        **scope,
    )
    buckets = [
        {
            "ts": rfc3339(r["ts_ms"]),
            "ts_ms": r["ts_ms"],
            "venue": r["venue"],
            "symbol": r["symbol"],
            "asset": r["asset"],
            "samples": r["samples"],
            "valid_samples": r["valid_samples"],
            **{name: _agg(r, name) for name in fields},
        }
        for r in rows
    ]
    cursor = _next_cursor(rows, window)
    if window.fmt == "csv":
        columns = ["ts", "ts_ms", "venue", "symbol", "asset", "samples", "valid_samples"]
        columns += [f"{n}_{a}" for n in fields for a in AGGS]
        return _answer(request, window, [_flat(b, fields) for b in buckets], cursor, columns)
    return _answer(request, window, buckets, cursor, ())


async def history_scores(request: web.Request) -> web.Response:
    """Score samples in buckets, per scope (book or asset), with the last state and
    components."""
    query = Query(
        request,
        {
            "asset",
            "venue",
            "symbol",
            "scope",
            "from",
            "to",
            "interval",
            "format",
            "limit",
            "cursor",
        },
    )
    asset = query.get("asset")
    venue, symbol = query.get("venue"), query.get("symbol")
    scope = query.get("scope")
    if scope is not None and scope not in {"book", "asset"}:
        raise bad("scope", f"expected book or asset, got {scope!r}")
    window = _window(request, query)
    source = _source(request)
    rows = await queries.score_buckets(
        source.pool,
        start_s=window.start_ms / 1000,
        end_s=window.end_ms / 1000,
        interval_s=window.interval_ms / 1000,
        asset=None if asset is None else asset.upper(),
        venue=venue,
        symbol=symbol,
        scope=scope,
        page_start_s=None if window.page_start_ms is None else window.page_start_ms / 1000,
        skip=window.skip,
        limit=window.limit,
    )
    buckets = [
        {
            "ts": rfc3339(r["ts_ms"]),
            "ts_ms": r["ts_ms"],
            "scope": r["scope"],
            "venue": r["venue"] or None,
            "symbol": r["symbol"] or None,
            "asset": r["asset"],
            "samples": r["samples"],
            "score": _agg(r, "score"),
            "state": r["state"],
            "components": None if r["components"] is None else msgspec.json.decode(r["components"]),
        }
        for r in rows
    ]
    cursor = _next_cursor(rows, window)
    if window.fmt == "csv":
        columns = ["ts", "ts_ms", "scope", "venue", "symbol", "asset", "samples"]
        columns += [f"score_{a}" for a in AGGS] + ["state"]
        flat = [
            _flat({k: v for k, v in b.items() if k != "components"}, ["score"]) for b in buckets
        ]
        return _answer(request, window, flat, cursor, columns)
    return _answer(request, window, buckets, cursor, ())


async def history_health(request: web.Request) -> web.Response:
    """Venue-health events (connects, disconnects, gaps, resyncs, stale, errors)."""
    query = Query(request, {"venue", "from", "to", "limit", "cursor"})
    venue = query.get("venue")
    start, end = query.time("from"), query.time("to")
    if start is None:
        raise bad("from", "required")
    if end is None:
        raise bad("to", "required")
    if end <= start:
        raise bad("to", "must be later than from")
    limit = query.integer("limit", DEFAULT_LIMIT, 1, _max_limit(request))
    cursor = query.get("cursor")
    page_start, skip = (None, 0) if cursor is None else decode_cursor(cursor, "k")
    source = _source(request)
    rows = await queries.health_events(
        source.pool,
        start_s=start / 1000,
        end_s=end / 1000,
        venue=venue,
        page_start_s=None if page_start is None else page_start / 1000,
        skip=skip,
        limit=limit,
    )
    window = Window(start, end, 0, page_start, skip, limit, "json")
    events = [
        {
            "ts": rfc3339(r["ts_ms"]),
            "ts_ms": r["ts_ms"],
            "venue": r["venue"],
            "event": r["event"],
            "symbol": r["symbol"] or None,
            "detail": None if r["detail"] is None else msgspec.json.decode(r["detail"]),
        }
        for r in rows
    ]
    body = {"events": events, "next_cursor": _next_cursor(rows, window)}
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


async def book_at(request: web.Request) -> web.Response:
    """The stored top-N snapshot of a book nearest to a time (before or after)."""
    query = Query(request, {"venue", "symbol", "at"})
    venue, symbol = query.required("venue"), query.required("symbol")
    at = query.time("at")
    if at is None:
        raise bad("at", "required")
    source = _source(request)
    await _check_book(source, venue, symbol, None)
    found = await queries.book(source.pool, venue=venue, symbol=symbol, at_s=at / 1000)
    if found is None:
        raise ApiError(404, f"no stored snapshot of {venue} {symbol}", "symbol")
    ts_ms = round(found["ts"] * 1000)
    body = {
        "venue": venue,
        "symbol": symbol,
        "instrument": found["instrument"],
        "at": rfc3339(at),
        "ts": rfc3339(ts_ms),
        "ts_ms": ts_ms,
        "reason": found["reason"],
        "valid": found["valid"],
        "state": found["state"],
        "bids": [[str(p), str(q)] for p, q in found["bids"]],
        "asks": [[str(p), str(q)] for p, q in found["asks"]],
    }
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


async def ranking(request: web.Request) -> web.Response:
    """At a time: per asset, the venue printing the lowest USD price against the second
    lowest ("lowest vs second lowest"), then every venue's dislocation, worst first."""
    query = Query(request, {"at", "asset", "limit", "cursor"})
    at = query.time("at")
    if at is None:
        raise bad("at", "required")
    asset = query.get("asset")
    limit = query.integer("limit", DEFAULT_LIMIT, 1, _max_limit(request))
    cursor = query.get("cursor")
    offset = 0 if cursor is None else decode_cursor(cursor, "o")[0]
    source = _source(request)
    rows = await queries.ranking(source.pool, at_s=at / 1000)
    if asset is not None:
        rows = [r for r in rows if r["asset"] == asset.upper()]
    by_asset: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("mid_usd") is not None:
            by_asset.setdefault(r["asset"], []).append(r)
    lowest = []
    for name, members in sorted(by_asset.items()):
        cheapest = sorted(members, key=lambda r: r["mid_usd"])
        first = cheapest[0]
        second = cheapest[1] if len(cheapest) > 1 else None
        lowest.append(
            {
                "asset": name,
                "lowest_venue": first["venue"],
                "lowest_symbol": first["symbol"],
                "lowest_usd": first["mid_usd"],
                "second_venue": None if second is None else second["venue"],
                "second_usd": None if second is None else second["mid_usd"],
                "gap_bps": None
                if second is None
                else (second["mid_usd"] / first["mid_usd"] - 1.0) * 1e4,
                "consensus_usd": first.get("consensus_usd"),
            }
        )
    lowest.sort(key=lambda r: -(r["gap_bps"] or 0.0))
    page = rows[offset : offset + limit]
    venues_out = [
        {
            "rank": r["rank"],
            "asset": r["asset"],
            "venue": r["venue"],
            "symbol": r["symbol"],
            "ts_ms": None if r.get("ts") is None else round(r["ts"] * 1000),
            "mid_usd": r.get("mid_usd"),
            "consensus_usd": r.get("consensus_usd"),
            "dislocation_bps": r.get("dislocation_bps"),
        }
        for r in page
    ]
    body = {
        "at": rfc3339(at),
        "ts_ms": at,
        "lowest": lowest,
        "venues": venues_out,
        "next_cursor": f"o{offset + limit}" if offset + limit < len(rows) else None,
    }
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def history_routes(max_limit: int) -> list[Route]:
    limit = p_limit(DEFAULT_LIMIT, max_limit)
    span = (p_time("from", "start (inclusive)", True), p_time("to", "end (exclusive)", True))
    fields = Param(
        "fields",
        {"type": "string", "pattern": "^(" + "|".join(FIELDS) + ")(,(" + "|".join(FIELDS) + "))*$"},
        f"comma-separated: {', '.join(FIELDS)} (default all)",
    )
    errors = (400, 404, 503)
    return [
        Route("GET", f"{API}/history/metrics", history_metrics,
              "One book's metrics in buckets (min/max/avg/last), JSON or CSV",
              schemas.BookHistory,
              (p_str("venue", "venue id", True), p_str("symbol", "venue symbol", True), *span,
               P_INTERVAL, fields, P_FORMAT, limit, P_KEY_CURSOR),
              tag="history", csv=True, errors=errors),
        Route("GET", f"{API}/history/depth", history_depth,
              "An asset's ±1% depth on every venue in buckets (min/max/avg/last), JSON or CSV",
              schemas.BookHistory,
              (p_str("asset", "base asset, e.g. SOL", True), *span, P_INTERVAL, P_FORMAT, limit,
               P_KEY_CURSOR),
              tag="history", csv=True, errors=errors),
        Route("GET", f"{API}/history/scores", history_scores,
              "Scores and their components in buckets, per book or asset, JSON or CSV",
              schemas.ScoreHistory,
              (p_str("asset", "base asset"), p_str("venue", "venue id"),
               p_str("symbol", "venue symbol"),
               Param("scope", {"type": "string", "enum": ["book", "asset"]}, "book or asset"),
               *span, P_INTERVAL, P_FORMAT, limit, P_KEY_CURSOR),
              tag="history", csv=True, errors=(400, 503)),
        Route("GET", f"{API}/history/health", history_health,
              "Venue-health events: connects, disconnects, gaps, resyncs, staleness, errors",
              schemas.HealthEvents, (p_str("venue", "venue id"), *span, limit, P_KEY_CURSOR),
              tag="history", errors=(400, 503)),
        Route("GET", f"{API}/book", book_at, "The stored book snapshot nearest to a time",
              schemas.BookAt,
              (p_str("venue", "venue id", True), p_str("symbol", "venue symbol", True),
               p_time("at", "time", True)),
              tag="history", errors=errors),
        Route("GET", f"{API}/ranking", ranking,
              "Dislocation ranking at a time: lowest vs second-lowest venue per asset",
              schemas.Ranking,
              (p_time("at", "time", True), p_str("asset", "base asset"), limit,
               Param("cursor", {"type": "string", "pattern": r"^o[0-9]{1,15}$"},
                     "next_cursor of the previous page")),
              tag="history", errors=(400, 503)),
    ]  # fmt: skip
