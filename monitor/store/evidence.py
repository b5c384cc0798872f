"""The black box: the raw frames around every firing alert, into PostgreSQL.

:class:`FrameEvidence` gives the daemon one :class:`~monitor.framering.FrameRing` per venue
(:meth:`attach`) and listens to the alert sink's events (:meth:`listen`). When an alert
fires, once ``evidence_frames_after_s`` have passed it takes from the ring of the alert's
venue (every venue for an asset or market alert) the frames received from
``evidence_frames_before_s`` before the alert fired to ``evidence_frames_after_s`` after;
for an alert on one book, or on one asset, only the frames that name its symbols (a venue
multiplexes many books on a connection). Each venue's frames become one row of
``alert_evidence_frames``: the recording's JSON lines (``feeds.recording``), compressed,
which ``GET /api/v1/alerts/{id}/evidence/frames`` serves and ``liqmon replay`` reads.

The database being away delays a capture, it does not lose the alert: the alert's
notification goes through the outbox on its own. A capture whose store fails is kept in
memory (bounded) and tried again with backoff for ``GIVE_UP_S``, then dropped with one
log line; nothing here raises into the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from feeds.recording import Record
from feeds.session import Backoff
from monitor.framering import FrameRing, RingLimits
from monitor.log import get_logger
from monitor.settings import DatabaseSettings

log = get_logger("monitor.store.evidence")

GIVE_UP_S = 600.0
FLUSH_MARGIN_S = 0.5  # frames reach the ring at the daemon's next flush
MAX_PENDING = 64  # captures waiting to be taken or stored

_encode = msgspec.json.Encoder().encode


def frames_body(records: Sequence[Record]) -> bytes:
    """The recording's JSON lines, compressed (as stored)."""
    return zlib.compress(b"".join(_encode(r) + b"\n" for r in records), 6)


def frames_text(body: bytes) -> bytes:
    """A stored body back to the recording's JSON lines."""
    return zlib.decompress(body)


@dataclass(order=True)
class _Capture:
    due_ns: int
    alert_id: str = field(compare=False)
    fired_ns: int = field(compare=False)
    venue: str = field(compare=False)
    symbol: str = field(compare=False)
    asset: str = field(compare=False)
    rows: list[tuple[Any, ...]] | None = field(default=None, compare=False)
    failures: int = field(default=0, compare=False)


@dataclass(slots=True)
class EvidenceStats:
    captured: int = 0
    stored: int = 0
    store_failures: int = 0
    dropped: int = 0


class FrameEvidence:
    """Raw-frame evidence of firing alerts. ``pool`` is an asyncpg pool (or anything with
    its ``acquire``); run :meth:`running` around the daemon."""

    def __init__(
        self,
        pool: Any,
        settings: DatabaseSettings,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.before_ns = int(settings.evidence_frames_before_s * 1e9)
        self.after_ns = int(settings.evidence_frames_after_s * 1e9)
        self.max_bytes = settings.evidence_frames_max_bytes
        self.retention_s = settings.retention_days * 86400.0
        self.limits = RingLimits(
            max_age_s=settings.evidence_frames_before_s
            + settings.evidence_frames_after_s
            + 30.0,  # room for a slow tick or sink queue between the frames and the event
            max_frames=settings.frame_ring_max_frames,
            max_bytes=settings.frame_ring_max_bytes,
        )
        self.rings: dict[str, FrameRing] = {}
        self.stats = EvidenceStats()
        self._books: Callable[[], list[tuple[str, str, str]]] = list
        self._clock_ns = clock_ns
        self._rng = rng or random.Random()
        self._queue: list[_Capture] = []
        self._wake = asyncio.Event()

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, daemon: Any) -> None:
        """A ring per venue of the daemon (``Daemon.frame_rings``), and its books (venue,
        symbol, base asset) for the alerts on an asset."""
        for venue, runtime in daemon.venues.items():
            ring = FrameRing(venue.value, runtime.settings.ws_url, self.limits)
            daemon.frame_rings[venue] = ring
            self.rings[venue.value] = ring

        def books() -> list[tuple[str, str, str]]:
            sample = daemon.last_sample
            if sample is None:
                return []
            return [(b.venue, b.symbol, b.base) for b in sample.books]

        self._books = books

    def listen(self, events: Sequence[Any]) -> None:
        """The alert sink's listener: every firing event schedules a capture."""
        for event in events:
            if event.state.value != "firing":
                continue
            if len(self._queue) >= MAX_PENDING:
                self.stats.dropped += 1
                log.warning("evidence.frames_dropped", alert_id=event.alert_id, reason="backlog")
                continue
            scope = event.scope
            heapq.heappush(
                self._queue,
                _Capture(
                    event.ts_ns + self.after_ns + int(FLUSH_MARGIN_S * 1e9),
                    event.alert_id,
                    event.ts_ns,
                    scope.venue,
                    scope.symbol,
                    scope.asset,
                ),
            )
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FrameEvidence]:
        """The capture loop as a task; on exit, what is due is taken and stored once."""
        task = asyncio.create_task(self.run(), name="evidence:frames")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.drain(), 5.0)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            timeout = 1.0
            if self._queue:
                timeout = max(0.0, (self._queue[0].due_ns - self._clock_ns()) / 1e9)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            await self.step()

    async def step(self) -> int:
        """Take and store every capture that is due; returns how many were stored."""
        now = self._clock_ns()
        stored = 0
        while self._queue and self._queue[0].due_ns <= now:
            capture = heapq.heappop(self._queue)
            try:
                if capture.rows is None:
                    capture.rows = self._take(capture)
                    self.stats.captured += 1
                if capture.rows:
                    await self._store(capture.rows)
                stored += 1
                self.stats.stored += 1
            except Exception as exc:  # the database is away (or a bug): keep it, retry
                self._retry(capture, exc, now)
        return stored

    async def drain(self) -> None:
        """Everything still waiting, taken now (shutdown: the window after is cut short)."""
        for capture in self._queue:
            capture.due_ns = 0
        await self.step()

    def _retry(self, capture: _Capture, exc: Exception, now: int) -> None:
        capture.failures += 1
        self.stats.store_failures += 1
        if (now - capture.fired_ns) / 1e9 > GIVE_UP_S or capture.rows is None:
            self.stats.dropped += 1
            log.error(
                "evidence.frames_dropped",
                alert_id=capture.alert_id,
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
            )
            return
        backoff = Backoff(0.5, 30.0, self._rng)
        backoff.attempt = capture.failures
        delay = max(0.2, backoff.next_delay_s())
        capture.due_ns = now + int(delay * 1e9)
        heapq.heappush(self._queue, capture)
        log.warning(
            "evidence.store_failed",
            alert_id=capture.alert_id,
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
            retry_s=round(delay, 2),
        )

    # -- taking and storing ---------------------------------------------------------------

    def _take(self, capture: _Capture) -> list[tuple[Any, ...]]:
        start = capture.fired_ns - self.before_ns
        end = capture.fired_ns + self.after_ns
        if capture.venue:
            venues = [capture.venue] if capture.venue in self.rings else []
        else:
            venues = sorted(self.rings)
        books = self._books() if not capture.symbol and capture.asset else []
        rows: list[tuple[Any, ...]] = []
        for venue in venues:
            if capture.symbol:
                symbols = [capture.symbol]
            elif capture.asset:
                symbols = sorted(
                    {s for v, s, base in books if v == venue and base == capture.asset}
                )
                if not symbols:
                    continue  # the asset has no book on this venue
            else:
                symbols = []  # a venue or the market: all its frames
            found = self.rings[venue].window(start, end, symbols=symbols, max_bytes=self.max_bytes)
            if not found.records:
                continue
            rows.append(
                (
                    capture.alert_id,
                    venue,
                    _ts(capture.fired_ns),
                    _ts(start),
                    _ts(end),
                    symbols,
                    len(found.records),
                    found.nbytes,
                    found.truncated,
                    frames_body(found.records),
                )
            )
        return rows

    async def _store(self, rows: list[tuple[Any, ...]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO alert_evidence_frames (alert_id, venue, fired_at, from_ts, to_ts,"
                " symbols, frames, bytes, truncated, body)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
                rows,
            )
            if self.retention_s > 0:
                await conn.execute(
                    "DELETE FROM alert_evidence_frames"
                    " WHERE fired_at < now() - make_interval(secs => $1)",
                    self.retention_s,
                )


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)
