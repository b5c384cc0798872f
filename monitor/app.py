"""The composition root: the one place that wires feeds, the monitor and its sinks together.

``liqmon run`` is :func:`run_monitor` (the daemon of :func:`run_daemon` with its sinks:
storage, alerts with their evidence, the API) and ``liqmon record`` is :func:`run_recorder`.
Both take their venue adapters from the registry (``feeds.venues.ADAPTERS``) unless given
others; nothing below this module imports the registry or a venue module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

from feeds.contract import VenueAdapter
from feeds.recording import RecordingWriter
from feeds.session import ConnectionPolicy
from feeds.venues import ADAPTERS
from monitor.daemon import Daemon, TickObserver
from monitor.domain import Venue
from monitor.errors import ConfigError
from monitor.log import get_logger
from monitor.planning import rest_client
from monitor.recorder import Recorder, RecordObserver
from monitor.settings import Settings
from monitor.sinks import Sink

log = get_logger("monitor.app")


async def _until_stopped(
    work: Callable[[], Coroutine[Any, Any, None]], stop: asyncio.Event | None
) -> None:
    """Run ``work()`` until ``stop`` is set (or forever); an error in it ends both."""
    stop = stop if stop is not None else asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(work())
        waiter = group.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()


async def run_daemon(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_tick: TickObserver | None = None,
    adapters: Mapping[Venue, VenueAdapter] | None = None,
    sinks: Sequence[Sink] = (),
    status_out: IO[str] | None = None,
    on_daemon: Callable[[Daemon], None] | None = None,
) -> None:
    """Monitor every enabled venue until ``stop`` is set (forever if None).

    ``on_tick(sample)`` is called with every tick's :class:`TickSample`; each sink gets
    every sample through its own bounded queue; ``status_out`` gets the status text;
    ``on_daemon(daemon)`` is called once it exists (the API reads its books and health).
    ``adapters`` default to every venue liqmon has (``feeds.venues.ADAPTERS``).
    """
    async with aiohttp.ClientSession() as http:
        daemon = Daemon(
            settings,
            http,
            ADAPTERS if adapters is None else adapters,
            on_tick=on_tick,
            sinks=sinks,
            status_out=status_out,
        )
        if on_daemon is not None:
            on_daemon(daemon)
        try:
            await _until_stopped(daemon.run, stop)
        finally:
            await daemon.close()
            if daemon.pipeline is not None:
                daemon.log_health()
            log.info("daemon.stop")


async def run_monitor(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    sinks: Sequence[Sink] = (),
    status_out: IO[str] | None = None,
    routes: Sequence[Any] = (),
    data_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
    api_optional: bool = False,
    alerts: Any = None,
) -> None:
    """``liqmon run``: the daemon, storing when ``data_dir`` is given, with the API at
    ``api.listen`` (unless ``api.enabled`` is false). ``announce(text)`` is told where the
    page is; with ``api_optional`` (``liqmon demo``) a port that cannot be opened is said
    in one line and the daemon runs without the API. ``alerts``: the alert sink (with its
    delivery); without it, the configured one (``alerts.enabled``). With a database and
    alerts, every firing alert takes its evidence (book snapshots and raw frames), with or
    without the API."""
    from monitor.api.serve import opened_store  # noqa: PLC0415

    async with (
        opened_store(settings, data_dir, writer=True) as (writer, history),
        contextlib.AsyncExitStack() as stack,
    ):
        daemon_sinks: list[Sink] = list(sinks)
        if writer is not None:
            daemon_sinks.append(writer)
        if alerts is None and settings.alerts.enabled:
            # the rules with delivery to the subscriptions: the outbox in the database
            # (store first) when there is one, else in memory
            from alerts.pg_outbox import PgOutbox  # noqa: PLC0415
            from monitor.alerting import alert_delivery  # noqa: PLC0415

            outbox = PgOutbox.from_pool(history.pool) if history is not None else None
            alerts = await stack.enter_async_context(alert_delivery(settings, outbox))
        if alerts is not None:
            daemon_sinks.append(alerts)
        evidence = await _evidence(settings, writer, history, alerts, stack, daemon_sinks)
        if not settings.api.enabled:
            await run_daemon(
                settings, stop=stop, sinks=daemon_sinks, status_out=status_out, on_daemon=evidence
            )
            return
        from monitor.api.app import ApiServer, build_app  # noqa: PLC0415
        from monitor.api.serve import api_context  # noqa: PLC0415

        ctx = api_context(settings, alerts=alerts, history=history, writer=writer)
        live = ctx.live
        assert live is not None
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
                settings, stop=stop, sinks=daemon_sinks, status_out=status_out, on_daemon=evidence
            )
            return

        def attach(daemon: Daemon) -> None:
            live.attach(daemon)
            evidence(daemon)

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


async def _evidence(
    settings: Settings,
    writer: Any,
    history: Any,
    alerts: Any,
    stack: contextlib.AsyncExitStack,
    daemon_sinks: list[Sink],
) -> Callable[[Daemon], None]:
    """The black box, wired when there is a database: periodic book snapshots (a sink), and
    with alerts, snapshots and each venue's recent raw frames stored around every firing
    alert. Returns what attaches them to the daemon once it exists."""
    snapshots: Any = None
    frames: Any = None
    if writer is not None:
        from monitor.store.command import SnapshotSink  # noqa: PLC0415

        snapshots = SnapshotSink.from_settings(_no_books, writer, settings)
        daemon_sinks.append(snapshots)
        if alerts is not None:
            alerts.listeners.append(_snapshots_on_fire(snapshots))
    if alerts is not None and history is not None and settings.database.evidence_frames:
        from monitor.store.evidence import FrameEvidence  # noqa: PLC0415

        frames = FrameEvidence(history.pool, settings.database)
        alerts.listeners.append(frames.listen)
        await stack.enter_async_context(frames.running())

    def attach(daemon: Daemon) -> None:
        if snapshots is not None:
            snapshots.books = _books_of(daemon)
        if frames is not None:
            frames.attach(daemon)

    return attach


def _snapshots_on_fire(snapshots: Any) -> Callable[[list[Any]], None]:
    """An alert sink listener: every firing alert takes book snapshots around it."""

    def listen(events: list[Any]) -> None:
        for e in events:
            if e.state.value == "firing":
                snapshots.request_evidence(e.scope.venue, e.scope.symbol, e.scope.asset)

    return listen


def _no_books(depth: int) -> list[dict[str, Any]]:
    return []


def _books_of(daemon: Daemon) -> Callable[[int], list[dict[str, Any]]]:
    def books(depth: int) -> list[dict[str, Any]]:
        pipeline = daemon.pipeline
        return [] if pipeline is None else pipeline.book_summaries(depth=depth)

    return books


async def run_recorder(
    settings: Settings,
    *,
    venue: Venue,
    symbols: Sequence[str],
    out_path: str | Path,
    stop: asyncio.Event | None = None,
    flush_interval_s: float = 1.0,
    on_record: RecordObserver | None = None,
    adapters: Mapping[Venue, VenueAdapter] | None = None,
) -> None:
    """Record one venue's raw depth (and mark-price) frames to ``out_path`` until ``stop``.

    Writes the venue's metadata once at the start, and after every (re)connect, once frames
    flow, a REST depth snapshot per symbol, all as ``kind: "http"`` records, so that a
    replay of the file can rebuild every book even across reconnects. ``.gz`` paths are
    compressed. ``on_record(kind, url)`` is called after each record is written.
    """
    table = settings.venues.get(venue)
    if table is None:
        raise ConfigError("venues", venue.value, "no settings for this venue")
    adapter = (ADAPTERS if adapters is None else adapters).get(venue)
    if adapter is None:
        raise ConfigError("venues", venue.value, "no live connection support for this venue yet")
    if not symbols:
        symbols = table.symbols
    policy = ConnectionPolicy.from_settings(settings.connection)
    with RecordingWriter(out_path, flush_interval_s=flush_interval_s) as writer:
        async with aiohttp.ClientSession() as http:
            recorder = Recorder(
                venue,
                table,
                adapter,
                symbols=symbols,
                policy=policy,
                rest=rest_client(http, venue, adapter, settings),
                writer=writer,
                flush_interval_s=flush_interval_s,
                on_record=on_record,
            )
            log.info("recorder.start", venue=venue.value, symbols=list(symbols), path=str(out_path))
            try:
                await _until_stopped(recorder.run, stop)
            finally:
                writer.flush()
                log.info("recorder.stop", venue=venue.value, records=writer.records_written)
