"""The two ways the API runs: beside the daemon (``liqmon run``, composed in
:mod:`monitor.app`, which takes :func:`api_context`) or alone (``liqmon serve``).

The API reads history through a small pool on the database :func:`opened_store` opens;
``liqmon serve`` opens the database only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from monitor.api.app import ApiContext, ApiServer, build_app, live_context
from monitor.api.auth import TokenCheck, env_token_hashes
from monitor.api.history import HistorySource
from monitor.api.spec import Route
from monitor.log import get_logger
from monitor.settings import Settings

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


def api_context(
    settings: Settings, *, alerts: Any = None, history: HistorySource | None, writer: Any = None
) -> ApiContext:
    """The API's context for ``liqmon run``: the live state (a sink the daemon feeds), the
    alert engine's events on the timeline and the live push, its alerts and silences under
    /api/v1, history and the writer's counters when there is a database."""
    ctx = live_context(settings)
    if alerts is not None:
        from monitor.api.alerting import alert_listener  # noqa: PLC0415

        assert ctx.live is not None
        alerts.listeners.append(alert_listener(ctx.live))
        ctx.alerts = alerts
    if history is not None:
        _use_history(ctx, history)
    if writer is not None:
        ctx.prom.add_stats("writer", lambda: _writer_stats(writer))
    return ctx


def _use_history(ctx: ApiContext, history: HistorySource) -> None:
    """History endpoints, the database readiness check, and tokens stored there."""
    ctx.history = history
    ctx.ready_checks["database"] = history.ping
    ctx.tokens = TokenCheck(env_token_hashes(), history.token_valid)


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
