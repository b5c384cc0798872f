"""What ``liqmon query`` asks the history, in SQL that runs on plain PostgreSQL and on
TimescaleDB alike (buckets with ``date_bin``; times as epoch seconds, so that rows read
the same through any driver).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from monitor.store.migrate import Database
from monitor.store.rows import BOOK_METRICS_COLUMNS, book_record_from_row

_INTERVAL = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>s|m|h|d)$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RANKING_WINDOW_S: Final = 60.0  # samples older than this before --at are not "at" it


def parse_interval(text: str) -> float:
    """``30s``, ``1m``, ``1h``, ``1d`` -> seconds (ValueError with a readable reason)."""
    match = _INTERVAL.match(text.strip())
    if match is None or float(match["n"]) <= 0:
        raise ValueError(f"expected an interval such as 30s, 1m, 15m, 1h or 1d, got {text!r}")
    return float(match["n"]) * _UNIT_S[match["unit"]]


def parse_time(text: str) -> float:
    """ISO 8601 (``2021-10-12T00:28:33Z``; no zone means UTC) or epoch seconds -> epoch s."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time (2021-10-12T00:28:33Z) or epoch seconds, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


_RAW_COLUMNS: Final = ", ".join(
    ["(extract(epoch FROM ts) * 1000000)::int8 AS ts_us", *BOOK_METRICS_COLUMNS[1:]]
)


async def metrics_raw(
    db: Database, *, venue: str, symbol: str, start_s: float, end_s: float
) -> list[dict[str, Any]]:
    """The stored samples of one book in [start, end], as metrics-out objects."""
    rows = await db.fetch(
        f"SELECT {_RAW_COLUMNS} FROM book_metrics"
        " WHERE venue = $1 AND symbol = $2"
        " AND ts >= to_timestamp($3::float8) AND ts <= to_timestamp($4::float8)"
        " ORDER BY ts",
        venue,
        symbol,
        start_s,
        end_s,
    )
    return [book_record_from_row(row) for row in rows]


async def metrics_bucketed(
    db: Database, *, venue: str, symbol: str, start_s: float, end_s: float, interval_s: float
) -> list[dict[str, Any]]:
    """One book's samples in buckets of ``interval_s``: counts, mean mid and spread, 1%
    depth per side (mean and least)."""
    rows = await db.fetch(
        f"SELECT {_bucket_s(5)}::float8 AS ts, venue, symbol,"
        " count(*)::int4 AS samples, (count(*) FILTER (WHERE valid))::int4 AS valid_samples,"
        " avg(mid) AS mid, avg(spread_bps) AS spread_bps, max(spread_bps) AS spread_bps_max,"
        " avg(depth_1pct_bid_usd) AS depth_1pct_bid_usd,"
        " min(depth_1pct_bid_usd) AS depth_1pct_bid_usd_min,"
        " avg(depth_1pct_ask_usd) AS depth_1pct_ask_usd,"
        " min(depth_1pct_ask_usd) AS depth_1pct_ask_usd_min"
        " FROM book_metrics WHERE venue = $1 AND symbol = $2"
        " AND ts >= to_timestamp($3::float8) AND ts <= to_timestamp($4::float8)"
        " GROUP BY 1, 2, 3 ORDER BY 1",
        venue,
        symbol,
        start_s,
        end_s,
        interval_s,
    )
    return [dict(row) for row in rows]


async def depth(
    db: Database, *, asset: str, start_s: float, end_s: float, interval_s: float
) -> list[dict[str, Any]]:
    """The asset's depth within 1% of mid on every venue, per bucket (USD, mean per side)."""
    rows = await db.fetch(
        f"SELECT {_bucket_s(4)}::float8 AS ts, venue, symbol, instrument,"
        " (count(*) FILTER (WHERE valid))::int4 AS samples,"
        " avg(depth_1pct_bid_usd) AS bid_1pct_usd, avg(depth_1pct_ask_usd) AS ask_1pct_usd,"
        " avg(depth_1pct_bid_usd + depth_1pct_ask_usd) AS total_1pct_usd"
        " FROM book_metrics WHERE base = $1"
        " AND ts >= to_timestamp($2::float8) AND ts <= to_timestamp($3::float8)"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3",
        asset.upper(),
        start_s,
        end_s,
        interval_s,
    )
    return [dict(row) for row in rows]


async def ranking(db: Database, *, at_s: float) -> list[dict[str, Any]]:
    """Every venue's dislocation from its asset's consensus at ``at_s``, worst first.

    From the cross-venue samples where they exist; otherwise from the book samples: each
    book's latest valid sample in the minute before ``at_s``, its mid in USD, and the
    median over the asset's books as the consensus.
    """
    stored = await db.fetch(
        "SELECT DISTINCT ON (asset) asset, extract(epoch FROM ts)::float8 AS ts,"
        " consensus_usd, venues::text AS venues FROM asset_metrics"
        " WHERE ts <= to_timestamp($1::float8) AND ts > to_timestamp($1::float8 - $2::float8)"
        " ORDER BY asset, ts DESC",
        at_s,
        RANKING_WINDOW_S,
    )
    out: list[dict[str, Any]] = []
    if stored:
        for row in stored:
            for venue in msgspec.json.decode(row["venues"]):
                out.append(
                    {
                        "asset": row["asset"],
                        "venue": venue.get("venue"),
                        "symbol": venue.get("symbol"),
                        "ts": row["ts"],
                        "mid_usd": venue.get("mid_usd"),
                        "consensus_usd": row["consensus_usd"],
                        "dislocation_bps": venue.get("dislocation_bps"),
                        "source": "asset",
                    }
                )
    else:
        rows = await db.fetch(
            "WITH latest AS ("
            " SELECT DISTINCT ON (venue, symbol) base AS asset, venue, symbol,"
            " extract(epoch FROM ts)::float8 AS ts, mid * fx_usd AS mid_usd FROM book_metrics"
            " WHERE valid AND fx_usd IS NOT NULL AND ts <= to_timestamp($1::float8)"
            " AND ts > to_timestamp($1::float8 - $2::float8)"
            " ORDER BY venue, symbol, ts DESC),"
            " consensus AS (SELECT asset, percentile_cont(0.5) WITHIN GROUP"
            " (ORDER BY mid_usd) AS consensus_usd, count(*) AS books FROM latest GROUP BY asset)"
            " SELECT l.asset, l.venue, l.symbol, l.ts, l.mid_usd, c.consensus_usd,"
            " (l.mid_usd / c.consensus_usd - 1) * 10000 AS dislocation_bps"
            " FROM latest l JOIN consensus c USING (asset) WHERE c.books > 1",
            at_s,
            RANKING_WINDOW_S,
        )
        out = [{**dict(row), "source": "book"} for row in rows]
    out.sort(key=lambda r: (-abs(r["dislocation_bps"] or 0.0), r["asset"], r["venue"]))
    return [{"rank": k + 1, **r} for k, r in enumerate(out)]


async def book(db: Database, *, venue: str, symbol: str, at_s: float) -> dict[str, Any] | None:
    """The stored snapshot of one book nearest to ``at_s`` (before or after)."""
    columns = (
        "extract(epoch FROM ts)::float8 AS ts, venue, symbol, instrument, reason, valid, state,"
        " bids::text AS bids, asks::text AS asks"
    )
    where = "FROM book_snapshots WHERE venue = $1 AND symbol = $2"
    before = await db.fetch(
        f"SELECT {columns} {where} AND ts <= to_timestamp($3::float8) ORDER BY ts DESC LIMIT 1",
        venue,
        symbol,
        at_s,
    )
    after = await db.fetch(
        f"SELECT {columns} {where} AND ts > to_timestamp($3::float8) ORDER BY ts LIMIT 1",
        venue,
        symbol,
        at_s,
    )
    found: list[Mapping[str, Any]] = [*before, *after]
    if not found:
        return None
    nearest = dict(min(found, key=lambda r: abs(r["ts"] - at_s)))
    nearest["bids"] = msgspec.json.decode(nearest["bids"])
    nearest["asks"] = msgspec.json.decode(nearest["asks"])
    return nearest


# --- the API's history (monitor.api.history): buckets with min/max/avg/last ---------------
# Bucketed per book over valid samples; "last" is the bucket's latest non-null value.
# Keyset paging: rows come ordered by (bucket, venue, symbol); a page starts at a bucket
# and skips the rows of that bucket the previous page already gave.
BOOK_FIELDS: Final = {
    "mid": "mid",
    "spread_bps": "spread_bps",
    "depth_1pct_usd": "(depth_1pct_bid_usd + depth_1pct_ask_usd)",
    "depth_1pct_bid_usd": "depth_1pct_bid_usd",
    "depth_1pct_ask_usd": "depth_1pct_ask_usd",
    "score": "lvs",
    "book_age_s": "book_age_s",
}
SCORE_FIELDS: Final = {"score": "value"}


def _bucket_s(param: int) -> str:
    """The start of the ``date_bin`` bucket of width ``$param`` seconds, as epoch seconds."""
    width = f"make_interval(secs => ${param}::float8)"
    return f"extract(epoch FROM date_bin({width}, ts, to_timestamp(0)))"


def _range_filters(args: list[Any], filters: Sequence[tuple[str, str | None]]) -> str:
    """``ts`` in [$1, $2) plus ``column = $n`` for each filter given; appends to ``args``."""
    where = ["ts >= to_timestamp($1::float8)", "ts < to_timestamp($2::float8)"]
    for column, value in filters:
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    return " AND ".join(where)


def _aggregates(fields: Mapping[str, str], valid: str) -> str:
    parts = []
    for name, expr in fields.items():
        keep = f"FILTER (WHERE {valid}{expr} IS NOT NULL)"
        parts.append(
            f"min({expr}) {keep} AS {name}_min, max({expr}) {keep} AS {name}_max,"
            f" avg({expr}) {keep} AS {name}_avg,"
            f" (array_agg({expr} ORDER BY ts DESC) {keep})[1] AS {name}_last"
        )
    return ", ".join(parts)


async def book_buckets(
    db: Database,
    *,
    fields: list[str],
    start_s: float,
    end_s: float,
    interval_s: float,
    venue: str | None = None,
    symbol: str | None = None,
    asset: str | None = None,
    page_start_s: float | None = None,
    skip: int = 0,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Per book and bucket of ``interval_s`` in [start, end): samples, valid samples and
    ``<field>_min/_max/_avg/_last`` over the valid samples, for ``fields`` of BOOK_FIELDS.
    ``venue``/``symbol`` select one book, ``asset`` every book of a base asset."""
    chosen = {name: BOOK_FIELDS[name] for name in fields}
    args: list[Any] = [max(start_s, page_start_s or start_s), end_s, interval_s]
    where = _range_filters(args, (("venue", venue), ("symbol", symbol), ("base", asset)))
    args += [skip, limit]
    rows = await db.fetch(
        f"SELECT ({_bucket_s(3)} * 1000)::int8 AS ts_ms, venue, symbol, min(base) AS asset,"
        " count(*)::int4 AS samples, (count(*) FILTER (WHERE valid))::int4 AS valid_samples, "
        + _aggregates(chosen, "valid AND ")
        + f" FROM book_metrics WHERE {where}"
        f" GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 OFFSET ${len(args) - 1} LIMIT ${len(args)}",
        *args,
    )
    return [dict(row) for row in rows]


async def score_buckets(
    db: Database,
    *,
    start_s: float,
    end_s: float,
    interval_s: float,
    asset: str | None = None,
    venue: str | None = None,
    symbol: str | None = None,
    scope: str | None = None,
    page_start_s: float | None = None,
    skip: int = 0,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Score samples per scope and bucket: ``score_min/_max/_avg/_last``, the last state
    and the last components (JSON text)."""
    args: list[Any] = [max(start_s, page_start_s or start_s), end_s, interval_s]
    where = _range_filters(
        args, (("asset", asset), ("venue", venue), ("symbol", symbol), ("scope", scope))
    )
    args += [skip, limit]
    rows = await db.fetch(
        f"SELECT ({_bucket_s(3)} * 1000)::int8 AS ts_ms, scope, venue, symbol, asset,"
        " count(*)::int4 AS samples, "
        + _aggregates(SCORE_FIELDS, "")
        + ", (array_agg(state ORDER BY ts DESC))[1] AS state,"
        " ((array_agg(components ORDER BY ts DESC))[1])::text AS components"
        f" FROM score_samples WHERE {where}"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
        f" OFFSET ${len(args) - 1} LIMIT ${len(args)}",
        *args,
    )
    return [dict(row) for row in rows]


async def health_events(
    db: Database,
    *,
    start_s: float,
    end_s: float,
    venue: str | None = None,
    page_start_s: float | None = None,
    skip: int = 0,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Venue-health events in [start, end), oldest first (paged like the buckets)."""
    where = ["ts >= to_timestamp($1::float8)", "ts < to_timestamp($2::float8)"]
    args: list[Any] = [max(start_s, page_start_s or start_s), end_s]
    if venue is not None:
        args.append(venue)
        where.append(f"venue = ${len(args)}")
    args += [skip, limit]
    rows = await db.fetch(
        "SELECT (extract(epoch FROM ts) * 1000)::int8 AS ts_ms, venue, event, symbol,"
        f" detail::text AS detail FROM venue_health WHERE {' AND '.join(where)}"
        f" ORDER BY ts, venue, event, symbol OFFSET ${len(args) - 1} LIMIT ${len(args)}",
        *args,
    )
    return [dict(row) for row in rows]


async def books_known(db: Database) -> list[dict[str, Any]]:
    """Every (venue, symbol) ever stored, with its latest instrument, currencies and kind:
    a skip scan of the (venue, symbol, ts) key, one index probe per book (a DISTINCT over
    the table reads every row: seconds for a day of 100 books)."""
    rows = await db.fetch(
        "WITH RECURSIVE books AS ("
        " (SELECT venue, symbol FROM book_metrics ORDER BY venue, symbol LIMIT 1)"
        " UNION ALL"
        " SELECT n.venue, n.symbol FROM books b, LATERAL (SELECT venue, symbol"
        " FROM book_metrics WHERE (venue, symbol) > (b.venue, b.symbol)"
        " ORDER BY venue, symbol LIMIT 1) n)"
        " SELECT b.venue, b.symbol, l.instrument, l.base, l.quote, l.kind FROM books b,"
        " LATERAL (SELECT instrument, base, quote, kind FROM book_metrics m"
        " WHERE m.venue = b.venue AND m.symbol = b.symbol ORDER BY ts DESC LIMIT 1) l"
    )
    return [dict(row) for row in rows]


# --- alerts (monitor.api.alerting): an alert's stored events and its evidence ------------


async def alert_events(db: Database, alert_id: str) -> list[dict[str, Any]]:
    """The stored rule events of one alert, oldest first (``ts_us``: epoch microseconds)."""
    rows = await db.fetch(
        "SELECT (extract(epoch FROM ts) * 1000000)::int8 AS ts_us, rule, state, severity,"
        " venue, symbol, asset, value, stale FROM alert_events WHERE alert_id = $1 ORDER BY ts, id",
        alert_id,
    )
    return [dict(r) for r in rows]


async def snapshots_between(
    db: Database,
    books: Sequence[tuple[str, str]],
    start_s: float,
    end_s: float,
    limit: int,
) -> list[dict[str, Any]]:
    """The stored top-N snapshots of these books (venue, symbol) in [start_s, end_s],
    oldest first, at most ``limit``."""
    if not books:
        return []
    rows = await db.fetch(
        "SELECT extract(epoch FROM s.ts)::float8 AS ts, s.venue, s.symbol, s.instrument,"
        " s.reason, s.valid, s.state, s.bids::text AS bids, s.asks::text AS asks"
        " FROM book_snapshots s"
        " JOIN unnest($1::text[], $2::text[]) AS b(venue, symbol)"
        "   ON s.venue = b.venue AND s.symbol = b.symbol"
        " WHERE s.ts BETWEEN to_timestamp($3::float8) AND to_timestamp($4::float8)"
        " ORDER BY s.ts, s.venue, s.symbol LIMIT $5",
        [v for v, _ in books],
        [s for _, s in books],
        start_s,
        end_s,
        limit,
    )
    out = []
    for r in rows:
        row = dict(r)
        row["bids"] = msgspec.json.decode(row["bids"])
        row["asks"] = msgspec.json.decode(row["asks"])
        out.append(row)
    return out


async def alerts_between(
    db: Database, start_ms: int, end_ms: int, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """The alerts with a stored rule event in [start_ms, end_ms], at most ``limit`` (the
    earliest first), each with all its stored events, oldest first (as
    :func:`alert_events`)."""
    rows = await db.fetch(
        "WITH hit AS (SELECT alert_id, min(ts) AS first FROM alert_events"
        "  WHERE kind = 'rule' AND alert_id IS NOT NULL"
        "  AND ts >= to_timestamp($1::float8 / 1000)"
        "  AND ts < to_timestamp(($2::float8 + 1) / 1000)"  # to: its whole millisecond
        "  GROUP BY alert_id ORDER BY first, alert_id LIMIT $3)"
        " SELECT e.alert_id, (extract(epoch FROM e.ts) * 1000000)::int8 AS ts_us, e.rule,"
        " e.state, e.severity, e.venue, e.symbol, e.asset, e.value, e.stale"
        " FROM alert_events e JOIN hit USING (alert_id)"
        " ORDER BY hit.first, e.alert_id, e.ts, e.id",
        start_ms,
        end_ms,
        limit,
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["alert_id"], []).append(dict(r))
    return out


async def alert_acks(db: Database, alert_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Stored acknowledgements: alert id -> (by, at epoch microseconds)."""
    if not alert_ids:
        return {}
    rows = await db.fetch(
        "SELECT alert_id, acked_by, (extract(epoch FROM acked_at) * 1000000)::int8 AS at_us"
        " FROM alert_acks WHERE alert_id = ANY($1::text[])",
        list(alert_ids),
    )
    return {r["alert_id"]: (r["acked_by"], r["at_us"]) for r in rows}


async def evidence_frames(db: Database, alert_id: str) -> list[dict[str, Any]]:
    """The raw-frame evidence stored for an alert: one row per venue (no bodies)."""
    rows = await db.fetch(
        "SELECT venue, extract(epoch FROM fired_at)::float8 AS fired_s,"
        " extract(epoch FROM from_ts)::float8 AS from_s,"
        " extract(epoch FROM to_ts)::float8 AS to_s, symbols, frames, bytes, truncated"
        " FROM alert_evidence_frames WHERE alert_id = $1 ORDER BY venue",
        alert_id,
    )
    return [dict(r) for r in rows]


async def evidence_frame_bodies(
    db: Database, alert_id: str, venue: str | None
) -> list[tuple[str, bytes]]:
    """The stored frame bodies of an alert (compressed JSON lines), per venue."""
    rows = await db.fetch(
        "SELECT venue, body FROM alert_evidence_frames"
        " WHERE alert_id = $1 AND ($2::text IS NULL OR venue = $2) ORDER BY venue",
        alert_id,
        venue,
    )
    return [(r["venue"], bytes(r["body"])) for r in rows]
