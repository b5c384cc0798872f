"""The API against a daemon fed by the local exchange (feeds/sim), on ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from alerts.pg_outbox import PgOutbox
from alerts.subscriptions import SubscriptionSpec
from feeds.sim.base import ExchangeSim
from monitor.alerting import AlertEngineSink, RuleRunner, alert_delivery
from monitor.api.alerting import alert_listener
from monitor.api.app import ApiContext, ApiServer, build_app, live_context
from monitor.api.auth import TokenCheck, hash_token
from monitor.api.serve import _use_history, opened_store
from monitor.app import _books_of, _no_books, _snapshots_on_fire, run_daemon
from monitor.daemon import Daemon
from monitor.domain import Venue
from monitor.settings import Settings
from monitor.store.command import SnapshotSink
from monitor.store.evidence import FrameEvidence
from tests.alerts.receivers import WebhookReceiver
from tests.e2e.harness import exchange, until, write_settings

# Three venues, two assets on several of them: enough for consensus, basis and a table.
BOOKS: dict[Venue, tuple[str, ...]] = {
    Venue.BINANCE: ("BTCUSDT", "SOLUSDT"),
    Venue.BINANCE_FUTURES: ("BTCUSDT", "SOLUSDT"),
    Venue.COINBASE: ("BTC-USD", "SOL-USD"),
}
TOKEN = "lqm_test_token_0123456789"


@dataclass
class Stack:
    sim: ExchangeSim
    settings: Settings
    ctx: ApiContext
    url: str
    http: aiohttp.ClientSession
    daemon: Daemon | None
    app: web.Application
    frames: FrameEvidence | None = None


@contextlib.asynccontextmanager
async def api_stack(
    tmp_path: Path,
    *,
    books: dict[Venue, tuple[str, ...]] = BOOKS,
    tick_ms: int = 100,
    ws_queue: int = 256,
    open_reads: bool = True,
    cors_origins: tuple[str, ...] = (),
    dsn: str | None = None,
    rules_toml: str | None = None,
    subscriptions: tuple[SubscriptionSpec, ...] = (),
    evidence: bool = False,
    alerts: dict[str, Any] | None = None,
    evidence_frames: dict[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """Exchange, daemon with the live-state sink, API on an ephemeral port; all valid.
    With ``dsn``: the store writer among the daemon's sinks and history served from it;
    then ``subscriptions`` are delivered through the outbox in the database (links to this
    API), and ``evidence`` stores book snapshots and raw frames around firing alerts (as
    ``liqmon run``; ``evidence_frames``: database settings of the raw frames).
    ``alerts``: changes to the ``[alerts]`` settings (e.g. grouping intervals)."""
    async with exchange(books) as sim, contextlib.AsyncExitStack() as stores:
        settings = write_settings(tmp_path, sim, books, tick_ms=tick_ms)
        # a venue that goes quiet is stale after a second (the tests' state change)
        venues = {
            v: msgspec.structs.replace(t, stale_after_s=1.0) for v, t in settings.venues.items()
        }
        settings = msgspec.structs.replace(settings, venues=venues)
        # one rule that fires on every book of the exchange (spreads are always > 0), so
        # that alerts, acknowledgement and the push of alert events have something to show
        rules = tmp_path / "rules.toml"
        rules.write_text(
            rules_toml
            or '[[rules]]\nname = "wide_spread_test"\nmetric = "spread_bps"\n'
            'condition = "above"\nthreshold = 0.0\nseverity = "warning"\n'
            'scope = { venue = "coinbase" }\nsummary = "{venue} {symbol}: spread {value} bp"\n'
        )
        settings = msgspec.structs.replace(
            settings,
            alerts=msgspec.structs.replace(settings.alerts, rules_files=(str(rules),)),
        )
        settings = _api(
            settings, ws_queue=ws_queue, open_reads=open_reads, cors_origins=cors_origins
        )
        sinks: list[Any] = []
        if dsn is not None:
            settings = msgspec.structs.replace(
                settings, database=msgspec.structs.replace(settings.database, dsn=dsn)
            )
        if subscriptions:
            settings = msgspec.structs.replace(
                settings,
                subscriptions=subscriptions,
                alerts=msgspec.structs.replace(
                    settings.alerts, allow_private_urls=True, retry_initial_s=0.05
                ),
            )
        if alerts:
            settings = msgspec.structs.replace(
                settings, alerts=msgspec.structs.replace(settings.alerts, **alerts)
            )
        if evidence:  # the ring every tick: snapshots before an alert that fires early
            settings = msgspec.structs.replace(
                settings,
                database=msgspec.structs.replace(
                    settings.database,
                    evidence_window_s=30.0,
                    evidence_every_s=0.1,
                    **(evidence_frames or {}),
                ),
            )
        ctx = live_context(settings)
        assert ctx.live is not None
        writer, history = None, None
        if dsn is not None:
            writer, history = await stores.enter_async_context(
                opened_store(settings, tmp_path, writer=True)
            )
            assert history is not None
            _use_history(ctx, history)
        if subscriptions and history is not None:
            outbox = PgOutbox.from_pool(history.pool)
            alert_sink = await stores.enter_async_context(alert_delivery(settings, outbox))
        else:
            alert_sink = AlertEngineSink(RuleRunner.from_settings(settings))
        alert_sink.listeners.append(alert_listener(ctx.live))
        ctx.alerts = alert_sink
        sinks.append(alert_sink)
        snapshots: SnapshotSink | None = None
        frames: FrameEvidence | None = None
        if writer is not None:
            sinks.append(writer)
            if evidence:
                snapshots = SnapshotSink.from_settings(_no_books, writer, settings)
                alert_sink.listeners.append(_snapshots_on_fire(snapshots))
                sinks.append(snapshots)
                assert history is not None
                frames = FrameEvidence(history.pool, settings.database)
                alert_sink.listeners.append(frames.listen)
                await stores.enter_async_context(frames.running())
        # the tests' token as if from the environment (and the database's, with one)
        ctx.tokens = TokenCheck([hash_token(TOKEN)], ctx.tokens.db_lookup)
        holder: list[Daemon] = []

        def attach(daemon: Daemon) -> None:
            holder.append(daemon)
            assert ctx.live is not None
            ctx.live.attach(daemon)
            if snapshots is not None:
                snapshots.books = _books_of(daemon)
            if frames is not None:
                frames.attach(daemon)

        stop = asyncio.Event()
        market = asyncio.ensure_future(sim.run_market(200.0))
        app = build_app(ctx)
        async with ApiServer(app, ("127.0.0.1", 0)) as server:
            alert_sink.base_url = server.url  # the links in notifications
            task = asyncio.create_task(
                run_daemon(settings, stop=stop, sinks=[*sinks, ctx.live], on_daemon=attach)
            )
            try:
                n = sum(len(v) for v in books.values())
                live = ctx.live
                await until(
                    lambda: (
                        live.sample is not None
                        and len(live.sample) == n
                        and bool(live.sample.valid.all())
                    ),
                    timeout_s=20.0,
                    task=task,
                )
                async with aiohttp.ClientSession() as http:
                    yield Stack(sim, settings, ctx, server.url, http, holder[0], app, frames)
            finally:
                market.cancel()
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 10.0)


def _api(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, api=msgspec.structs.replace(settings.api, **changes))


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with api_stack(tmp_path) as s:
        yield s


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver on loopback (no signature key: it records what it gets)."""
    r = WebhookReceiver(None)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()
