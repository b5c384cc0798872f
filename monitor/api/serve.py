"""The two ways the API runs: beside the daemon (``liqmon run``) or alone (``liqmon serve``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import IO

from monitor.api.app import ApiContext, ApiServer, build_app, live_context
from monitor.api.spec import Route
from monitor.log import get_logger
from monitor.settings import Settings
from monitor.sinks import Sink

log = get_logger("monitor.api.serve")


async def run_with_api(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    sinks: Sequence[Sink] = (),
    status_out: IO[str] | None = None,
    routes: Sequence[Route] = (),
) -> None:
    """``liqmon run``: the daemon, with the API at ``api.listen`` (unless disabled)."""
    from monitor.daemon import run_daemon  # noqa: PLC0415

    if not settings.api.enabled:
        await run_daemon(settings, stop=stop, sinks=sinks, status_out=status_out)
        return
    ctx = live_context(settings)
    assert ctx.live is not None
    async with ApiServer(build_app(ctx, routes), settings.api.host_port):
        await run_daemon(
            settings,
            stop=stop,
            sinks=[*sinks, ctx.live],
            status_out=status_out,
            on_daemon=ctx.live.attach,
        )


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    routes: Sequence[Route] = (),
    ctx: ApiContext | None = None,
) -> None:
    """``liqmon serve``: the API from stored data only (live endpoints answer 503)."""
    ctx = ctx or ApiContext(settings)
    async with ApiServer(build_app(ctx, routes), settings.api.host_port):
        await (stop or asyncio.Event()).wait()
