"""The two ways the API runs: beside the daemon (``liqmon run``) or alone (``liqmon serve``).

``liqmon run`` composes the daemon's sinks: the API's live state, and with a database the
store writer and its periodic book snapshots (``monitor.store``); the API reads history
through a small pool on the same database. ``liqmon serve`` opens the database only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from monitor.api.app import ApiContext, ApiServer, build_app, live_context
from monitor.api.auth import TokenCheck, env_token_hashes
from monitor.api.history import HistorySource
from monitor.api.spec import Route
from monitor.log import get_logger
from monitor.settings import Settings
from monitor.sinks import Sink

log = get_logger("monitor.api.serve")


@contextlib.asynccontextmanager
async def opened_store(
    settings: Settings, data_dir: Path | None, *, writer: bool
) -> AsyncIterator[tuple[Any, HistorySource | None]]:
    """The database (configured or embedded, migrated): ``(writer or None, history)``;
    ``(None, None)`` without a data directory (storage off)."""
    if data_dir is None:
        yield None, None
        return
    from monitor.store.service import Store  # noqa: PLC0415

    store = await Store(settings.database, data_dir).open()
    try:
        history = await HistorySource.open(store.dsn)
        try:
            if not writer:
                yield None, history
                return
            w = store.writer()
            w.start()
            try:
                yield w, history
            finally:
                await w.close()
        finally:
            await history.close()
    finally:
        await store.close()


async def run_with_api(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    sinks: Sequence[Sink] = (),
    status_out: IO[str] | None = None,
    routes: Sequence[Route] = (),
    data_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
    api_optional: bool = False,
    alerts: Any = None,
) -> None:
    """``liqmon run``: the daemon, storing when ``data_dir`` is given, with the API at
    ``api.listen`` (unless ``api.enabled`` is false). ``announce(text)`` is told where the
    page is; with ``api_optional`` (``liqmon demo``) a port that cannot be opened is said
    in one line and the daemon runs without the API. ``alerts``: the alert sink (with its
    delivery); without it, the configured one (``alerts.enabled``)."""
    from monitor.app import run_daemon  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415

    async with (
        opened_store(settings, data_dir, writer=True) as (writer, history),
        contextlib.AsyncExitStack() as delivery,
    ):
        daemon_sinks: list[Sink] = list(sinks)
        snapshots: Any = None
        if writer is not None:
            from monitor.store.command import SnapshotSink  # noqa: PLC0415

            daemon_sinks.append(writer)
        if alerts is None and settings.alerts.enabled:
            # the rules with delivery to the subscriptions: the outbox in the database
            # (store first) when there is one, else in memory
            from alerts.pg_outbox import PgOutbox  # noqa: PLC0415
            from monitor.alerting import alert_delivery  # noqa: PLC0415

            outbox = PgOutbox.from_pool(history.pool) if history is not None else None
            alerts = await delivery.enter_async_context(alert_delivery(settings, outbox))
        if not settings.api.enabled:
            if alerts is not None:
                daemon_sinks.append(alerts)
            await run_daemon(settings, stop=stop, sinks=daemon_sinks, status_out=status_out)
            return
        ctx = live_context(settings)
        live = ctx.live
        assert live is not None
        # the alert engine's events go onto the timeline and the live push, its alerts and
        # silences to /api/v1
        if alerts is not None:
            from monitor.api.alerting import alert_listener  # noqa: PLC0415

            alerts.listeners.append(alert_listener(live))
            ctx.alerts = alerts
            daemon_sinks.append(alerts)
        if history is not None:
            _use_history(ctx, history)
        if writer is not None:
            ctx.prom.add_stats("writer", lambda: _writer_stats(writer))

        frames: Any = None
        if alerts is not None and history is not None and settings.database.evidence_frames:
            # the black box: each venue's recent raw frames, stored around firing alerts
            from monitor.store.evidence import FrameEvidence  # noqa: PLC0415

            frames = FrameEvidence(history.pool, settings.database)
            alerts.listeners.append(frames.listen)
            await delivery.enter_async_context(frames.running())

        def attach_evidence(daemon: Daemon) -> None:
            if snapshots is not None:
                snapshots.books = _books_of(daemon)
            if frames is not None:
                frames.attach(daemon)

        def attach(daemon: Daemon) -> None:
            live.attach(daemon)
            attach_evidence(daemon)

        if writer is not None:
            snapshots = SnapshotSink.from_settings(_no_books, writer, settings)
            daemon_sinks.append(snapshots)
            if alerts is not None:
                alerts.listeners.append(_evidence_on_fire(snapshots))
        server = ApiServer(build_app(ctx, routes), settings.api.host_port)
        try:
            await server.__aenter__()
        except OSError as exc:
            if not api_optional:
                raise
            if announce is not None:
                announce(
                    f"the page is not served: cannot listen on {settings.api.listen} "
                    f"({exc.strerror or exc}); set api.listen or LIQMON_API__LISTEN"
                )
            # no page, but the evidence is still taken (`liqmon serve` reads it)
            await run_daemon(
                settings,
                stop=stop,
                sinks=daemon_sinks,
                status_out=status_out,
                on_daemon=attach_evidence,
            )
            return
        try:
            if announce is not None:
                announce(f"the page: {server.url}/")
            await run_daemon(
                settings,
                stop=stop,
                sinks=[*daemon_sinks, live],
                status_out=status_out,
                on_daemon=attach,
            )
        finally:
            await server.__aexit__(None, None, None)


def _evidence_on_fire(snapshots: Any) -> Callable[[list[Any]], None]:
    """An alert sink listener: every firing alert takes book snapshots around it."""

    def listen(events: list[Any]) -> None:
        for e in events:
            if e.state.value == "firing":
                snapshots.request_evidence(e.scope.venue, e.scope.symbol, e.scope.asset)

    return listen


def _use_history(ctx: ApiContext, history: HistorySource) -> None:
    """History endpoints, the database readiness check, and tokens stored there."""
    ctx.history = history
    ctx.ready_checks["database"] = history.ping
    ctx.tokens = TokenCheck(env_token_hashes(), history.token_valid)


def _no_books(depth: int) -> list[dict[str, Any]]:
    return []


def _books_of(daemon: Any) -> Any:
    def books(depth: int) -> list[dict[str, Any]]:
        pipeline = daemon.pipeline
        return [] if pipeline is None else pipeline.book_summaries(depth=depth)

    return books


def _writer_stats(writer: Any) -> dict[str, float]:
    c = writer.counters
    return {
        "rows_written_total": c.written,
        "rows_duplicate_total": c.duplicates,
        "rows_spilled_total": c.spilled,
        "rows_dropped_total": c.dropped,
        "rows_buffered": c.buffered,
        "rows_spill_pending": c.spill_pending,
        "lag_seconds": c.lag_s,
        "batches_total": c.batches,
        "connect_failures_total": c.connect_failures,
    }


async def serve(
    settings: Settings,
    data_dir: Path | None = None,
    *,
    stop: asyncio.Event | None = None,
    routes: Sequence[Route] = (),
) -> None:
    """``liqmon serve``: the API from stored data only (live endpoints answer 503)."""
    store_dir = data_dir if settings.database.enabled else None
    async with opened_store(settings, store_dir, writer=False) as (_, history):
        ctx = ApiContext(settings)
        if history is not None:
            _use_history(ctx, history)
        async with ApiServer(build_app(ctx, routes), settings.api.host_port):
            await (stop or asyncio.Event()).wait()
