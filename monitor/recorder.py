"""``liqmon record``: one venue's raw traffic to a recording (the daemon's connections, no
books), so that a replay of the file rebuilds every book, across reconnects too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from feeds.contract import HttpRequest, SnapshotSource, VenueAdapter
from feeds.recording import RecordingWriter, RecordKind
from feeds.rest import RestClient, RestError
from feeds.session import ConnectionPolicy, FeedHealth, WsSession
from monitor.domain import Venue
from monitor.log import get_logger
from monitor.planning import (
    ConnectionPlan,
    fetch,
    instrument_answers,
    open_session,
    plan_connections,
)
from monitor.settings import VenueSettings

log = get_logger("monitor.recorder")

RecordObserver = Callable[[RecordKind, str], None]


class Recorder:
    """Records one venue: metadata once at the start, every frame of its connections, and
    after every (re)connect, once frames flow, a REST snapshot per book (REST venues).

    ``on_record(kind, url)`` is called after each record is written.
    """

    def __init__(
        self,
        venue: Venue,
        table: VenueSettings,
        adapter: VenueAdapter,
        *,
        symbols: Sequence[str],
        policy: ConnectionPolicy,
        rest: RestClient,
        writer: RecordingWriter,
        flush_interval_s: float,
        on_record: RecordObserver | None,
    ) -> None:
        self.venue = venue
        self.table = table
        self.adapter = adapter
        self.symbols = list(symbols)
        self.policy = policy
        self.rest = rest
        self.writer = writer
        self.health = FeedHealth()
        self.flush_interval_s = flush_interval_s
        self.on_record = on_record
        self._snapshots_wanted = asyncio.Event()
        self._live = asyncio.Event()

    async def run(self) -> None:
        async for _ in instrument_answers(self.adapter, self.table.rest_url, self._fetch):
            pass  # each answer is recorded by _fetch
        async with asyncio.TaskGroup() as group:
            for plan in plan_connections(self.table, self.adapter, self.symbols):
                group.create_task(self._session(plan).run())
            if self.adapter.snapshot_source == SnapshotSource.REST:
                group.create_task(self._snapshot_loop())
            group.create_task(self._flush_loop())

    def _session(self, plan: ConnectionPlan) -> WsSession:
        venue = self.venue.value
        writer = self.writer
        depth = plan.carries_books

        def on_frame(data: str | bytes, recv_ns: int) -> None:
            writer.write(venue, RecordKind.WS, plan.url, data, recv_ns)
            if depth:
                self._live.set()
            if self.on_record is not None:
                self.on_record(RecordKind.WS, plan.url)

        def on_connect() -> None:
            if depth:
                self._live.clear()
                self._snapshots_wanted.set()

        return open_session(
            self.adapter,
            plan,
            on_frame=on_frame,
            on_connect=on_connect,
            policy=self.policy,
            health=self.health,
        )

    async def _snapshot_loop(self) -> None:
        limit = self.table.snapshot_limit
        while True:
            await self._snapshots_wanted.wait()
            self._snapshots_wanted.clear()
            await self._live.wait()  # deltas first, then the snapshots they bridge
            for symbol in self.symbols:
                request = self.adapter.snapshot_request(self.table.rest_url, symbol, limit)
                if request is not None:
                    await self._fetch(request)

    async def _fetch(self, request: HttpRequest) -> str | None:
        try:
            text = await fetch(self.rest, request)
        except RestError as error:
            log.warning(
                "recorder.fetch_failed", venue=self.venue.value, url=request.url, error=str(error)
            )
            return None
        self.writer.write(self.venue.value, RecordKind.HTTP, request.key, text, time.time_ns())
        if self.on_record is not None:
            self.on_record(RecordKind.HTTP, request.key)
        return text

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self.writer.flush()
