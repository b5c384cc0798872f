"""The store writer: a sink that never blocks the tick and never loses a row.

``write(sample)`` turns the sample's changed rows into table rows (column-wise, see
:mod:`monitor.store.rows`) and queues them; one background task sends them in batches by
binary COPY, each batch in one transaction. Every table has a natural key, so a batch sent
twice (the process died between the commit and its acknowledgement) adds nothing: a batch
that meets stored rows fails its COPY as a whole and is sent again through a per-connection
staging table, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (so are the next few
batches: replays come in runs). The common case costs what a raw COPY costs; staging every
batch measured about 2x slower (bench/bench_store.py).

While the database is unreachable, rows stay in memory up to ``memory_rows``; past that
they are appended to a spill file (``<spill_dir>/store.spill``, length-prefixed msgpack
frames, with the offset of the first unwritten frame in ``store.spill.offset``). When the
database returns, memory is written first, then the spill file from its offset, in order;
new rows keep going to the file until it is empty (order is kept), then the file is
truncated. A restart picks up a spill file left behind, from its offset: at most the one
batch in flight when the process died is sent again.

The reconnect loop follows feeds.session: a frozen policy, full-jitter backoff, and an
injected sleep, so tests wait on events.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
import msgspec

from monitor.errors import StorageError
from monitor.log import get_logger
from monitor.sample import TickSample
from monitor.settings import DatabaseSettings
from monitor.store.rows import (
    ALERT_EVENTS_COLUMNS,
    ASSET_METRICS_COLUMNS,
    BOOK_METRICS_COLUMNS,
    BOOK_SNAPSHOT_COLUMNS,
    FX_RATES_COLUMNS,
    SCORE_SAMPLES_COLUMNS,
    VENUE_HEALTH_COLUMNS,
    alert_event_rows,
    asset_metric_rows,
    book_metric_rows,
    book_snapshot_rows,
    book_state_events,
    fx_rate_rows,
    score_sample_rows,
)

log = get_logger("monitor.store.writer")

TABLE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "book_metrics": BOOK_METRICS_COLUMNS,
    "book_snapshots": BOOK_SNAPSHOT_COLUMNS,
    "asset_metrics": ASSET_METRICS_COLUMNS,
    "fx_rates": FX_RATES_COLUMNS,
    "score_samples": SCORE_SAMPLES_COLUMNS,
    "alert_events": ALERT_EVENTS_COLUMNS,
    "venue_health": VENUE_HEALTH_COLUMNS,
}
SPILL_NAME: Final = "store.spill"
STAGING_AFTER_CONFLICT: Final = 8  # batches sent through staging after one met stored rows
_FRAME: Final = struct.Struct("<I")
# What a lost connection looks like (the server went away, or never answered).
CONNECTION_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


@dataclass(frozen=True, slots=True)
class WriterPolicy:
    """Batching, buffering and reconnect of the writer (from ``Settings.database``)."""

    batch_rows: int = 5000
    flush_interval_s: float = 0.5
    memory_rows: int = 200_000
    connect_timeout_s: float = 5.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    retention_days: float = 0.0  # plain PostgreSQL: delete older samples hourly (0: never)

    @classmethod
    def from_settings(cls, database: DatabaseSettings, *, retention: bool = False) -> WriterPolicy:
        return cls(
            batch_rows=database.batch_rows,
            flush_interval_s=database.flush_interval_ms / 1000,
            memory_rows=database.memory_rows,
            connect_timeout_s=database.connect_timeout_s,
            backoff_initial_s=database.backoff_initial_s,
            backoff_max_s=database.backoff_max_s,
            retention_days=database.retention_days if retention else 0.0,
        )


@dataclass(slots=True)
class WriterCounters:
    """What the writer did; ``dropped`` must stay 0."""

    written: int = 0  # rows the database acknowledged (including duplicates it skipped)
    duplicates: int = 0  # acknowledged rows that were already stored (replayed batches)
    conflicts: int = 0  # batches that met stored rows (then sent through the staging table)
    buffered: int = 0  # rows in memory now
    spilled: int = 0  # rows ever appended to the spill file
    spill_pending: int = 0  # rows in the spill file not yet written
    dropped: int = 0  # rows lost (only if the spill file cannot be written)
    batches: int = 0
    failures: int = 0  # unexpected errors the loop survived (logged with their traceback)
    connects: int = 0
    connect_failures: int = 0
    lag_s: float = 0.0  # age of the oldest row not yet written (0 when none)
    spill_peak_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Chunk:
    table: str
    rows: list[tuple[Any, ...]]
    queued_at: float = field(default_factory=time.monotonic)


class SpillFile:
    """Append-only frames ``[table, rows]`` and the offset of the first unwritten one."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # one writer per file (a replay --store beside the daemon, tests in parallel): the
        # first file whose lock is free, store.spill, store.1.spill, ...; a file left by a
        # crash is drained by the next writer that takes it
        for n in range(64):
            name = SPILL_NAME if n == 0 else f"store.{n}.spill"
            lock = open(directory / f"{name}.lock", "a")  # noqa: SIM115 (held while open)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            break
        else:
            raise StorageError(f"every spill file in {directory} is in use by another writer")
        self._lock = lock
        self.path = directory / name
        self.offset_path = directory / (name + ".offset")
        self._encode = msgspec.msgpack.Encoder().encode
        self._decoder = msgspec.msgpack.Decoder(tuple[str, list[tuple[Any, ...]]])
        self.offset = self._read_offset()
        self._out = open(self.path, "ab")  # noqa: SIM115 (kept open for appends)
        self.rows_pending = sum(len(rows) for _, rows, _ in self.frames()) if self.pending else 0

    def _read_offset(self) -> int:
        try:
            return int(self.offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @property
    def size(self) -> int:
        self._out.flush()
        return self.path.stat().st_size

    @property
    def pending(self) -> bool:
        return self.size > self.offset

    def append(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        frame = self._encode((table, rows))
        self._out.write(_FRAME.pack(len(frame)))
        self._out.write(frame)
        self.rows_pending += len(rows)

    def frames(self, limit_rows: int | None = None) -> Iterator[tuple[str, list[Any], int]]:
        """Frames from the offset: ``(table, rows, offset after the frame)``."""
        self._out.flush()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            at = self.offset
            taken = 0
            while True:
                head = f.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    return  # end (or a frame cut short by a crash: never acknowledged)
                (length,) = _FRAME.unpack(head)
                body = f.read(length)
                if len(body) < length:
                    return
                at += _FRAME.size + length
                table, rows = self._decoder.decode(body)
                yield table, rows, at
                taken += len(rows)
                if limit_rows is not None and taken >= limit_rows:
                    return

    def acknowledge(self, offset: int, rows: int) -> None:
        """Everything before ``offset`` is in the database."""
        self.offset = offset
        self.rows_pending = max(0, self.rows_pending - rows)
        if offset >= self.size:  # drained: start the file again
            self._out.truncate(0)
            self._out.seek(0)
            self.offset = 0
            self.rows_pending = 0
        tmp = self.offset_path.with_suffix(".tmp")
        tmp.write_text(str(self.offset))
        os.replace(tmp, self.offset_path)

    def prepend(self, chunks: Sequence[_Chunk]) -> None:
        """Put ``chunks`` (older than everything in the file) before the pending frames."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for chunk in chunks:
                frame = self._encode((chunk.table, chunk.rows))
                out.write(_FRAME.pack(len(frame)))
                out.write(frame)
            self._out.flush()
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while block := f.read(1 << 20):
                    out.write(block)
            out.flush()
            os.fsync(out.fileno())
        self._out.close()
        os.replace(tmp, self.path)
        self._out = open(self.path, "ab")  # noqa: SIM115
        self.rows_pending += sum(len(c.rows) for c in chunks)
        self.offset = 0
        self.offset_path.write_text("0")

    def close(self) -> None:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        self._lock.close()  # releases the lock


Connect = Callable[[], Awaitable[Any]]


class StoreWriter:
    """The store sink (``name = "store"``). Start with :meth:`start`, end with :meth:`close`."""

    name = "store"

    def __init__(
        self,
        connect: Connect,
        spill_dir: Path,
        policy: WriterPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._connect = connect
        self.policy = policy or WriterPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.counters = WriterCounters()
        self._closed = False
        self.spill = SpillFile(spill_dir)
        self.counters.spill_pending = self.spill.rows_pending
        self._memory: deque[_Chunk] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self.connected = asyncio.Event()  # set while a connection is up (tests wait on it)
        self.batch_done = asyncio.Event()  # set after every acknowledged batch
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._last_retention = 0.0
        self._staging_batches = 0
        self._fx_written: dict[str, tuple[Any, Any]] = {}
        self._book_states: dict[tuple[str, str], str] = {}

    @classmethod
    def for_dsn(cls, dsn: str, spill_dir: Path, policy: WriterPolicy | None = None) -> StoreWriter:
        policy = policy or WriterPolicy()

        async def connect() -> Any:
            return await asyncpg.connect(dsn, timeout=policy.connect_timeout_s)

        return cls(connect, spill_dir, policy)

    # -- the sink ---------------------------------------------------------------------

    async def write(self, sample: TickSample) -> None:
        """Queue what the sample adds to the history (never waits on the database): the
        changed books, their state changes (venue health), and once the analytics have
        run, the assets metrics-out writes, the FX rates that moved, the market and asset
        scores, and the score state changes."""
        rows = book_metric_rows(sample)
        if rows:
            self.add("book_metrics", rows)
        if sample.assets is not None:
            for table, more in (
                ("asset_metrics", asset_metric_rows(sample)),
                ("score_samples", score_sample_rows(sample)),
            ):
                if more:
                    self.add(table, more)
        if sample.fx is not None:
            moved = []
            for row in fx_rate_rows(sample):
                key = (row[2], row[3])  # (usd, assumed): as metrics-out, only when it moves
                if self._fx_written.get(row[1]) != key:
                    self._fx_written[row[1]] = key
                    moved.append(row)
            if moved:
                self.add("fx_rates", moved)
        events = alert_event_rows(sample)
        if events:
            self.add("alert_events", events)
        health = book_state_events(sample, self._book_states)
        if health:
            self.add("venue_health", health)
        if self.counters.buffered >= self.policy.batch_rows:
            await asyncio.sleep(0)  # a replay never waits otherwise: let the writer send

    def add_snapshots(self, ts_ns: int, summaries: Sequence[Any], reason: str) -> None:
        """Queue top-N book snapshots (``BookPipeline.book_summaries(depth)``)."""
        rows = book_snapshot_rows(ts_ns, summaries, reason)
        if rows:
            self.add("book_snapshots", rows)

    def add(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Queue rows of ``table`` (columns in :data:`TABLE_COLUMNS` order)."""
        if table not in TABLE_COLUMNS:
            raise StorageError(f"no table {table!r} in the store")
        c = self.counters
        if self.spill.rows_pending or c.buffered + len(rows) > self.policy.memory_rows:
            try:
                self.spill.append(table, rows)
            except OSError as exc:
                c.dropped += len(rows)
                log.error("store.spill_failed", error=str(exc), rows=len(rows))
                return
            if c.spilled == 0 or self.spill.rows_pending == len(rows):
                log.warning("store.spilling", path=str(self.spill.path), buffered=c.buffered)
            c.spilled += len(rows)
            c.spill_pending = self.spill.rows_pending
            c.spill_peak_bytes = max(c.spill_peak_bytes, self.spill.size)
        else:
            self._memory.append(_Chunk(table, rows))
            c.buffered += len(rows)
        self._idle.clear()
        if c.buffered >= self.policy.batch_rows or self.spill.rows_pending:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-writer")

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (up to ``timeout_s``); what is left goes to the spill file.
        Idempotent: the daemon closes its sinks, and so may the code that opened it."""
        if self._closed:
            return
        self._closed = True
        self.start()
        self._closing = True
        # wait while the database takes rows; stop after timeout_s without progress
        while True:
            before = self.counters.written
            written = await self.flush(timeout_s)
            if written or self.counters.written == before:
                break
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not written and self._memory:
            self.spill.prepend(list(self._memory))
            self.counters.spilled += self.counters.buffered
            self._memory.clear()
            self.counters.buffered = 0
        self.counters.spill_pending = self.spill.rows_pending
        if self.spill.rows_pending:
            log.warning(
                "store.unwritten",
                rows=self.spill.rows_pending,
                path=str(self.spill.path),
                note="written at the next start",
            )
        self.spill.close()
        log.info("store.writer_closed", **self.counters.as_dict())

    # -- the loop ---------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        return bool(self._memory) or self.spill.rows_pending > 0

    def _update_lag(self) -> None:
        self.counters.lag_s = time.monotonic() - self._memory[0].queued_at if self._memory else 0.0

    async def _run(self) -> None:
        policy = self.policy
        attempt = 0
        while True:
            try:
                conn = await self._connect()
            except CONNECTION_ERRORS as exc:
                self.counters.connect_failures += 1
                delay = self._rng.uniform(
                    0.0,
                    min(policy.backoff_max_s, policy.backoff_initial_s * 2.0 ** min(attempt, 64)),
                )
                attempt += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("store.connect_failed", error=str(exc), retry_in_s=round(delay, 2))
                self._update_lag()
                await self._sleep(delay)
                continue
            attempt = 0
            self.counters.connects += 1
            self.connected.set()
            log.info("store.connected", pending=self.counters.buffered + self.spill.rows_pending)
            try:
                await self._drain(conn)
            except CONNECTION_ERRORS as exc:
                log.warning("store.connection_lost", error=str(exc))
            except Exception:  # task boundary: the writer must outlive a surprise
                self.counters.failures += 1
                log.exception("store.writer_failed", pending=self.counters.buffered)
                await self._sleep(policy.backoff_max_s)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 1.0)

    async def _drain(self, conn: Any) -> None:
        staged: set[str] = set()
        while True:
            if not self.has_pending:
                self._idle.set()
                self.counters.lag_s = 0.0
                await self._maybe_retention(conn)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.flush_interval_s)
                if not self.has_pending:
                    continue
            elif (
                self.counters.buffered < self.policy.batch_rows
                and not self.spill.rows_pending
                and not self._closing
                and time.monotonic() - self._memory[0].queued_at < self.policy.flush_interval_s
            ):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.flush_interval_s)
            if self._memory:
                await self._write_memory(conn, staged)
            elif self.spill.rows_pending:
                await self._write_spill(conn, staged)
            self._update_lag()

    async def _write_memory(self, conn: Any, staged: set[str]) -> None:
        # the oldest chunks, whatever their tables, up to a batch: one transaction
        batch: dict[str, list[tuple[Any, ...]]] = {}
        count = total = 0
        for chunk in self._memory:
            if total and total + len(chunk.rows) > self.policy.batch_rows:
                break
            batch.setdefault(chunk.table, []).extend(chunk.rows)
            total += len(chunk.rows)
            count += 1
        await self._copy_or_reject(conn, staged, batch)
        for _ in range(count):
            self._memory.popleft()
        self.counters.buffered -= total

    async def _write_spill(self, conn: Any, staged: set[str]) -> None:
        batch: dict[str, list[tuple[Any, ...]]] = {}
        total = 0
        end = self.spill.offset
        for table, rows, after in self.spill.frames(self.policy.batch_rows):
            if total and total + len(rows) > self.policy.batch_rows:
                break  # a batch never exceeds batch_rows (one frame alone may)
            batch.setdefault(table, []).extend(tuple(r) for r in rows)
            total += len(rows)
            end = after
        if not batch:  # only a torn frame left (a crash mid-append): nothing to write
            self.spill.acknowledge(self.spill.size, self.spill.rows_pending)
            self.counters.spill_pending = 0
            return
        await self._copy_or_reject(conn, staged, batch)
        self.spill.acknowledge(end, total)
        self.counters.spill_pending = self.spill.rows_pending

    async def _copy_or_reject(
        self, conn: Any, staged: set[str], batch: dict[str, list[tuple[Any, ...]]]
    ) -> None:
        try:
            await self._copy(conn, staged, batch)
        except CONNECTION_ERRORS:
            raise
        except (asyncpg.PostgresError, asyncpg.DataError) as exc:
            # the server refuses these rows themselves (not the connection): retrying would
            # stop every later row behind them; they are counted as dropped, loudly
            rows = sum(len(r) for r in batch.values())
            self.counters.dropped += rows
            log.error("store.batch_rejected", tables=list(batch), rows=rows, error=str(exc))

    async def _copy(
        self, conn: Any, staged: set[str], batch: dict[str, list[tuple[Any, ...]]]
    ) -> None:
        """One transaction per batch: COPY straight into each table; a batch that meets
        rows already stored (replayed after a crash, or a recording stored twice) is sent
        again through staging tables and ``ON CONFLICT DO NOTHING``, and so are the next
        few batches."""
        rows = sum(len(r) for r in batch.values())
        if self._staging_batches == 0:
            try:
                async with conn.transaction():
                    for table, table_rows in batch.items():
                        await conn.copy_records_to_table(
                            table, records=table_rows, columns=TABLE_COLUMNS[table]
                        )
            except asyncpg.UniqueViolationError:
                self.counters.conflicts += 1
                self._staging_batches = STAGING_AFTER_CONFLICT
            else:
                self._acknowledged(rows, rows)
                return
        self._staging_batches -= 1
        inserted = 0
        async with conn.transaction():
            for table, table_rows in batch.items():
                columns = TABLE_COLUMNS[table]
                stage = f"stage_{table}"
                if table not in staged:
                    await conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                        f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
                    staged.add(table)
                await conn.copy_records_to_table(stage, records=table_rows, columns=columns)
                names = ", ".join(columns)
                status = await conn.execute(
                    f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "
                    "ON CONFLICT DO NOTHING"
                )
                inserted += int(status.split()[-1])
        self._acknowledged(rows, inserted)

    def _acknowledged(self, rows: int, inserted: int) -> None:
        c = self.counters
        c.written += rows
        c.duplicates += rows - inserted
        c.batches += 1
        self.batch_done.set()
        self.batch_done.clear()

    async def _maybe_retention(self, conn: Any) -> None:
        if self.policy.retention_days <= 0 or time.monotonic() - self._last_retention < 3600:
            return
        from monitor.store.migrate import delete_expired  # noqa: PLC0415

        self._last_retention = time.monotonic()
        deleted = await delete_expired(conn, self.policy.retention_days)
        if deleted:
            log.info("store.retention", deleted=deleted, days=self.policy.retention_days)
