"""The store's part of the command line: ``liqmon query ...``, ``replay --store``, and the
daemon's writer. monitor.cli calls these; the parsing of the store's options lives here."""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import msgspec

from monitor.errors import StorageError
from monitor.log import get_logger
from monitor.settings import Settings

if TYPE_CHECKING:  # the parser is built on every command: the database modules load on use
    from monitor.sample import TickSample
    from monitor.store.writer import StoreWriter

log = get_logger("monitor.store.command")

FORMATS: Final = ("table", "csv", "json")
# Columns of `query metrics` (raw samples) in a table; CSV and JSON carry every field.
_RAW_TABLE_COLUMNS: Final = (
    "ts",
    "venue",
    "symbol",
    "valid",
    "state",
    "bid",
    "ask",
    "spread_bps",
    "depth.1.0",
    "depth.1.1",
    "levels.0",
    "levels.1",
    "book_age_s",
)


def data_dir(settings: Settings, override: str | None) -> Path:
    """``--data-dir``, else ``monitor.data_dir``."""
    return Path(override).expanduser() if override else settings.monitor.data_path


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="liqmon's data directory for this command (embedded database, spill file); "
        "default: monitor.data_dir",
    )


def add_query_parser(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """``liqmon query metrics|depth|ranking|book``."""
    query = sub.add_parser("query", help="answer questions from the stored history")
    kinds = query.add_subparsers(dest="query", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        add_config(parser)
        add_data_dir(parser)
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="table",
            help="table (default), csv, or json (one object per line)",
        )

    metrics = kinds.add_parser("metrics", help="one book's metrics: raw samples or buckets")
    metrics.add_argument("--venue", required=True)
    metrics.add_argument("--symbol", required=True, help="the venue's symbol, e.g. BTCUSDT")
    metrics.add_argument(
        "--from", dest="start", required=True, metavar="T", help="ISO time or epoch s"
    )
    metrics.add_argument("--to", dest="end", required=True, metavar="T")
    metrics.add_argument(
        "--interval", help="bucket, e.g. 1m or 1h (without it: the raw samples, as metrics-out)"
    )
    common(metrics)

    depth = kinds.add_parser("depth", help="an asset's depth within 1%% on every venue")
    depth.add_argument("--asset", required=True, help="base asset, e.g. BTC")
    depth.add_argument("--from", dest="start", required=True, metavar="T")
    depth.add_argument("--to", dest="end", required=True, metavar="T")
    depth.add_argument("--interval", default="1m", help="bucket (default 1m)")
    common(depth)

    ranking = kinds.add_parser("ranking", help="the cross-venue dislocation ranking at a time")
    ranking.add_argument("--at", required=True, metavar="T")
    common(ranking)

    book = kinds.add_parser("book", help="the stored book snapshot nearest to a time")
    book.add_argument("--venue", required=True)
    book.add_argument("--symbol", required=True)
    book.add_argument("--at", required=True, metavar="T")
    common(book)


def run_query(args: argparse.Namespace, settings: Settings, out: IO[str] = sys.stdout) -> int:
    """``liqmon query ...``: 0 with rows; 1 with none, or no database; 2 on bad input."""

    try:
        params = _query_params(args)
    except ValueError as exc:
        sys.stderr.write(f"liqmon: {exc}\n")
        return 2
    try:
        rows = asyncio.run(_query(args, settings, params))
    except StorageError as exc:
        sys.stderr.write(f"liqmon: {exc}\n")
        return 1
    if args.query == "book":
        _print_book(rows[0] if rows else None, args.format, out)
    else:
        columns = _RAW_TABLE_COLUMNS if args.query == "metrics" and not args.interval else None
        print_rows(rows, args.format, out, table_columns=columns)
    return 0 if rows else 1


def _query_params(args: argparse.Namespace) -> dict[str, float]:
    from monitor.store import queries  # noqa: PLC0415

    params: dict[str, float] = {}
    for name in ("start", "end", "at"):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = queries.parse_time(value)
    if getattr(args, "interval", None):
        params["interval"] = queries.parse_interval(args.interval)
    if "start" in params and params["end"] < params["start"]:
        raise ValueError("--to is before --from")
    return params


async def _query(
    args: argparse.Namespace, settings: Settings, p: dict[str, float]
) -> list[dict[str, Any]]:
    from monitor.store import queries  # noqa: PLC0415
    from monitor.store.service import Store  # noqa: PLC0415

    store = await Store(settings.database, data_dir(settings, args.data_dir)).open()
    try:
        conn = await store.connect()
        try:
            if args.query == "metrics" and "interval" in p:
                return await queries.metrics_bucketed(
                    conn,
                    venue=args.venue,
                    symbol=args.symbol,
                    start_s=p["start"],
                    end_s=p["end"],
                    interval_s=p["interval"],
                )
            if args.query == "metrics":
                return await queries.metrics_raw(
                    conn, venue=args.venue, symbol=args.symbol, start_s=p["start"], end_s=p["end"]
                )
            if args.query == "depth":
                return await queries.depth(
                    conn,
                    asset=args.asset,
                    start_s=p["start"],
                    end_s=p["end"],
                    interval_s=p["interval"],
                )
            if args.query == "ranking":
                return await queries.ranking(conn, at_s=p["at"])
            found = await queries.book(conn, venue=args.venue, symbol=args.symbol, at_s=p["at"])
            return [found] if found else []
        finally:
            await conn.close()
    finally:
        await store.close()


# -- output ----------------------------------------------------------------------------


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat.update(_flatten({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            flat[name] = value
    return flat


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "ts" and isinstance(value, float):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="milliseconds")
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def print_rows(
    rows: Sequence[dict[str, Any]],
    fmt: str,
    out: IO[str],
    *,
    table_columns: Sequence[str] | None = None,
) -> None:
    """Rows as JSON lines, CSV (nested fields flattened as ``a.b.0``) or an aligned table."""
    if fmt == "json":
        encode = msgspec.json.Encoder().encode
        for row in rows:
            out.write(encode(row).decode() + "\n")
        return
    flat = [_flatten(row) for row in rows]
    columns: list[str] = []
    for row in flat:
        columns.extend(c for c in row if c not in columns)
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return
    if table_columns is not None:
        columns = [c for c in table_columns if c in columns] or columns
    if not rows:
        out.write("(no rows)\n")
        return
    cells = [[_cell(c, row.get(c)) for c in columns] for row in flat]
    widths = [max(len(c), *(len(r[k]) for r in cells)) for k, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in cells:
        out.write("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _print_book(found: dict[str, Any] | None, fmt: str, out: IO[str]) -> None:
    if found is None:
        if fmt == "table":
            out.write("(no snapshot)\n")
        return
    if fmt == "json":
        out.write(msgspec.json.encode(found).decode() + "\n")
        return
    bids, asks = found["bids"], found["asks"]
    levels = [
        {
            "level": k + 1,
            "bid_price": bids[k][0] if k < len(bids) else None,
            "bid_size": bids[k][1] if k < len(bids) else None,
            "ask_price": asks[k][0] if k < len(asks) else None,
            "ask_size": asks[k][1] if k < len(asks) else None,
        }
        for k in range(max(len(bids), len(asks)))
    ]
    if fmt == "csv":
        head = {k: found[k] for k in ("ts", "venue", "symbol", "reason", "valid", "state")}
        print_rows([{**head, **level} for level in levels], "csv", out)
        return
    when = _cell("ts", found["ts"])
    out.write(
        f"{found['venue']} {found['symbol']} at {when} ({found['reason']} snapshot, "
        f"{'valid' if found['valid'] else 'not valid'}, {found['state']})\n"
    )
    buffer = io.StringIO()
    print_rows(levels, "table", buffer)
    out.write(buffer.getvalue())


# -- writing ---------------------------------------------------------------------------


class SnapshotSink:
    """Top-N book snapshots: every book every ``every_s`` of sample time (``periodic``,
    aligned to the interval, so a replay stores the same snapshots every time), and dense
    around every score state change (``evidence``): the books of the event's scope (the
    book, or every book of the asset) every ``evidence_every_s`` over the
    ``evidence_window_s`` before it (kept in memory, written when the event comes) and at
    every tick for ``evidence_window_s`` after it. ``books(depth)`` reads the live books
    (``BookPipeline.book_summaries``)."""

    name = "store-snapshots"

    def __init__(
        self,
        books: Callable[[int], list[dict[str, Any]]],
        writer: StoreWriter,
        every_s: float,
        depth: int,
        *,
        evidence_window_s: float = 0.0,
        evidence_every_s: float = 5.0,
    ) -> None:
        self.books = books
        self.writer = writer
        self.every_ns = int(every_s * 1e9)
        self.depth = depth
        self.window_ns = int(evidence_window_s * 1e9)
        self.ring_every_ns = max(1, int(evidence_every_s * 1e9))
        self._next_ns: int | None = None
        self._next_ring_ns = 0
        self._ring: deque[tuple[int, list[dict[str, Any]]]] = deque()
        self._until: dict[tuple[str, str], int] = {}  # book -> end of its evidence window
        # alert rules that fired since the last tick: (venue, symbol, asset), "" = any
        self._requested: list[tuple[str, str, str]] = []
        self._written: set[tuple[str, str, int]] = set()  # (venue, symbol, ts) stored

    @classmethod
    def from_settings(
        cls, books: Callable[[int], list[dict[str, Any]]], writer: StoreWriter, settings: Settings
    ) -> SnapshotSink:
        db = settings.database
        return cls(
            books,
            writer,
            db.snapshot_every_s,
            db.snapshot_depth,
            evidence_window_s=db.evidence_window_s,
            evidence_every_s=db.evidence_every_s,
        )

    def request_evidence(self, venue: str, symbol: str, asset: str) -> None:
        """An alert fired on this scope (the alert sink's listener): the next tick takes
        evidence as for a score state change (the window before it from memory)."""
        self._requested.append((venue, symbol, asset))

    def _scope(self, sample: TickSample) -> set[tuple[str, str]]:
        """Books named by this tick's score events (a market-wide event names none) and
        by the alerts that fired since the last tick."""
        keys: set[tuple[str, str]] = set()
        requested, self._requested = self._requested, []
        for venue, symbol, asset in requested:
            if venue and symbol:
                keys.add((venue, symbol))
            elif asset:
                keys.update((b.venue, b.symbol) for b in sample.books if b.base == asset)
            elif venue:
                keys.update((b.venue, b.symbol) for b in sample.books if b.venue == venue)
        for event in sample.events:
            if event.venue is not None and event.symbol is not None:
                keys.add((event.venue, event.symbol))
            elif event.asset is not None:
                keys.update((b.venue, b.symbol) for b in sample.books if b.base == event.asset)
        return keys

    def _store(self, ts_ns: int, summaries: list[dict[str, Any]], reason: str) -> None:
        fresh = [s for s in summaries if (s["venue"], s["symbol"], ts_ns) not in self._written]
        if fresh:
            self._written.update((s["venue"], s["symbol"], ts_ns) for s in fresh)
            self.writer.add_snapshots(ts_ns, fresh, reason)

    async def write(self, sample: TickSample) -> None:
        ts = sample.ts_ns
        if self._next_ns is None:
            self._next_ns = (ts // self.every_ns) * self.every_ns
        periodic = ts >= self._next_ns
        started = self._scope(sample) if self.window_ns else set()
        for key in started:
            self._until[key] = ts + self.window_ns
        active = {key for key, until in self._until.items() if until >= ts}
        ring = self.window_ns > 0 and ts >= self._next_ring_ns
        if not (periodic or active or ring):
            return
        summaries = self.books(self.depth)
        if periodic:
            self._store(ts, summaries, "periodic")
            self._next_ns = (ts // self.every_ns + 1) * self.every_ns
        if started:  # the window before the event, from memory
            for at, kept in self._ring:
                if at >= ts - self.window_ns:
                    chosen = [s for s in kept if (s["venue"], s["symbol"]) in started]
                    self._store(at, chosen, "evidence")
        if active:
            self._store(
                ts, [s for s in summaries if (s["venue"], s["symbol"]) in active], "evidence"
            )
        if ring:
            self._ring.append((ts, summaries))
            self._next_ring_ns = (ts // self.ring_every_ns + 1) * self.ring_every_ns
        horizon = ts - self.window_ns
        while self._ring and self._ring[0][0] < horizon:
            self._ring.popleft()
        if len(self._written) > 100_000 or (periodic and self._written):
            self._written = {w for w in self._written if w[2] >= horizon}
        self._until = {key: until for key, until in self._until.items() if until >= ts}

    async def close(self) -> None:
        return None


@asynccontextmanager
async def opened_writer(settings: Settings, data_dir_path: Path) -> AsyncIterator[StoreWriter]:
    """The configured (or embedded) database, migrated, and a started writer to it; both
    closed on exit (what the writer could not write stays in its spill file)."""
    from monitor.store.service import Store  # noqa: PLC0415

    store = await Store(settings.database, data_dir_path).open()
    try:
        writer = store.writer(retention=False)  # a replay: rows as old as the recording
        writer.start()
        try:
            yield writer
        finally:
            await writer.close()
    finally:
        await store.close()


def replay_to_store(
    paths: Sequence[str],
    pipeline: Any,
    settings: Settings,
    data_dir_path: Path,
    *,
    tick_ms: int,
    sinks: Sequence[Any],
    speed: float | None,
    reader: Any = None,
) -> tuple[Any, int]:
    """``liqmon replay --store``: the replay's samples and periodic snapshots into the
    database; returns the replay result and the rows left unwritten (in the spill file)."""
    from monitor.replay import areplay  # noqa: PLC0415

    async def main() -> tuple[Any, int]:
        async with opened_writer(settings, data_dir_path) as writer:
            snapshots = SnapshotSink.from_settings(pipeline.book_summaries, writer, settings)
            result = await areplay(
                paths,
                pipeline,
                tick_ms=tick_ms,
                sinks=[*sinks, writer, snapshots],
                speed=speed,
                reader=reader,
            )
        return result, writer.counters.spill_pending

    return asyncio.run(main())
