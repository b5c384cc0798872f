"""The composition root: the one place that wires feeds, the monitor and its sinks together.

``liqmon run`` is :func:`run_daemon` and ``liqmon record`` is :func:`run_recorder`. Both
take their venue adapters from the registry (``feeds.venues.ADAPTERS``) unless given
others; nothing below this module imports the registry or a venue module.
"""

from __future__ import annotations

import asyncio
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
