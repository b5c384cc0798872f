"""run_daemon and run_recorder end to end against the local exchange playing back a recorded
Binance session (real recorded frames)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from feeds.recording import RecordKind, iter_recording
from feeds.sim import BinanceProtocol, BinanceRecording, ExchangeSim
from feeds.venues import ADAPTERS
from monitor.app import run_daemon, run_recorder
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import areplay
from monitor.sample import TickSample
from monitor.settings import Settings, load_settings

pytestmark = pytest.mark.integration

RECORDINGS = Path(__file__).resolve().parents[1] / "recordings"
SPOT = RECORDINGS / "binance-spot-2021-10-12.jsonl.gz"
SPOT_VENUE = Venue.BINANCE
SYMBOLS = ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")
# The recording's mid prices, so that a wrong book cannot pass for a right one.
MID_RANGES = {
    "NKNUSDT": (0.30, 0.40),
    "BLZETH": (0.00005, 0.00008),
    "LRCBTC": (0.000005, 0.000008),
    "RUNEEUR": (5.0, 7.5),
}


def settings_for(
    tmp_path: Path, ws_url: str, rest_url: str, symbols: tuple[str, ...], **connection: float
) -> Settings:
    """Binance spot only, pointed at 127.0.0.1, with short ticks and timeouts."""
    options = {
        "connect_timeout_s": 2.0,
        "receive_timeout_s": 30.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "healthy_after_s": 60.0,
        "snapshot_timeout_s": 2.0,
    } | connection
    lines = [
        "[monitor]",
        "tick_ms = 50",
        "[connection]",
        *(f"{key} = {value}" for key, value in options.items()),
        "[venues.binance]",
        "enabled = true",
        f'ws_url = "{ws_url}/stream"',
        f'rest_url = "{rest_url}"',
        "snapshot_limit = 1000",
        f"symbols = {json.dumps(list(symbols))}",
        # every other venue off: this test is about Binance spot alone
        *(f"[venues.{v.value}]\nenabled = false" for v in Venue if v != Venue.BINANCE),
    ]
    path = tmp_path / "test.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_settings([path], env={})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def spot_session() -> BinanceRecording:
    """The recorded Binance spot session, played back by the local exchange."""
    return BinanceRecording.load(SPOT)


@pytest.fixture
async def spot_sim(spot_session: BinanceRecording) -> AsyncIterator[ExchangeSim]:
    async with ExchangeSim([BinanceProtocol(recording=spot_session)]) as sim:
        yield sim


class TickWatch:
    """Keeps the latest metric rows and wakes the test when a condition holds."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.ticks = 0
        self.condition: Callable[[], bool] = lambda: False
        self.reached = asyncio.Event()

    def __call__(self, sample: TickSample) -> None:
        self.rows = sample.records()
        self.ticks += 1
        if self.condition():
            self.reached.set()


async def stop_daemon(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, timeout=10.0)


async def test_run_daemon_builds_valid_books_from_a_recorded_binance_session(
    tmp_path: Path, spot_sim: ExchangeSim
) -> None:
    settings = settings_for(
        tmp_path, spot_sim.ws_url(SPOT_VENUE), spot_sim.rest_url(SPOT_VENUE), SYMBOLS
    )
    watch = TickWatch()
    watch.condition = lambda: {row["symbol"] for row in watch.rows if row["valid"]} == set(SYMBOLS)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_daemon(settings, stop=stop, on_tick=watch))
        await asyncio.wait_for(watch.reached.wait(), timeout=20.0)
        await stop_daemon(task, stop)

    rows = {row["symbol"]: row for row in watch.rows}
    for symbol, (low, high) in MID_RANGES.items():
        row = rows[symbol]
        assert row["venue"] == "binance"
        assert low < row["bid"] < row["ask"] < high, row
        assert row["spread_bps"] > 0
    paths = Counter(entry.path for entry in spot_sim.requests)
    assert paths == {"/api/v3/exchangeInfo": 1, "/api/v3/depth": 4}
    depth_queries = [e.query for e in spot_sim.requests if e.path == "/api/v3/depth"]
    assert sorted(q["symbol"] for q in depth_queries) == sorted(SYMBOLS)
    assert {q["limit"] for q in depth_queries} == {"1000"}
    (connection,) = spot_sim.connections
    assert sorted(connection.state["streams"]) == sorted(
        f"{s.lower()}@depth@100ms" for s in SYMBOLS
    )
    events = Counter(entry["event"] for entry in logs)
    assert events["instruments.fetched"] == 1
    assert events["feed.connect"] == 1
    assert events["book.metrics"] == 0  # no per-book line every tick: the status says it
    assert events["venue.health"] >= 1  # logged once more at stop
    assert events["daemon.stop"] == 1
    assert all(min(rows[s]["depth_quote"]["1"]) > 0 for s in SYMBOLS)
    await spot_sim.wait_for(lambda: not spot_sim.open_connections())


async def test_a_reconnect_invalidates_and_resyncs_the_books(
    tmp_path: Path, spot_sim: ExchangeSim
) -> None:
    settings = settings_for(
        tmp_path, spot_sim.ws_url(SPOT_VENUE), spot_sim.rest_url(SPOT_VENUE), SYMBOLS
    )
    watch = TickWatch()

    def all_valid() -> bool:
        return sum(bool(row["valid"]) for row in watch.rows) == len(SYMBOLS)

    watch.condition = all_valid
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_daemon(settings, stop=stop, on_tick=watch))
        await asyncio.wait_for(watch.reached.wait(), timeout=20.0)
        watch.reached.clear()
        watch.condition = lambda: len(spot_sim.connections) == 2 and all_valid()
        await spot_sim.drop()
        await asyncio.wait_for(watch.reached.wait(), timeout=20.0)
        await stop_daemon(task, stop)
    resyncs = [e for e in logs if e["event"] == "book.resync" and e["reason"] == "reconnect"]
    assert {e["symbol"] for e in resyncs} == set(SYMBOLS)
    assert Counter(e.path for e in spot_sim.requests)["/api/v3/depth"] == 8


@pytest.mark.parametrize(
    ("status", "retry_after_s", "event"),
    [(429, 0.2, "rest.rate_limited"), (503, None, "rest.retry"), (418, 0.3, "snapshot.banned")],
)
async def test_snapshot_errors_delay_the_books_but_they_still_sync(
    tmp_path: Path, spot_sim: ExchangeSim, status: int, retry_after_s: float | None, event: str
) -> None:
    settings = settings_for(
        tmp_path, spot_sim.ws_url(SPOT_VENUE), spot_sim.rest_url(SPOT_VENUE), SYMBOLS
    )
    faults = 1 if status == 418 else 2  # a ban is one answer; the refusals it causes are local
    spot_sim.fail_next(
        SPOT_VENUE, status, retry_after_s=retry_after_s, path="/api/v3/depth", count=faults
    )
    watch = TickWatch()
    watch.condition = lambda: sum(bool(row["valid"]) for row in watch.rows) == len(SYMBOLS)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(run_daemon(settings, stop=stop, on_tick=watch))
        await asyncio.wait_for(watch.reached.wait(), timeout=20.0)
        await stop_daemon(task, stop)
    depth_statuses = [e.status for e in spot_sim.requests if e.path == "/api/v3/depth"]
    assert depth_statuses.count(status) == faults
    assert depth_statuses.count(200) == len(SYMBOLS)
    assert any(e["event"] == event for e in logs)


async def test_run_daemon_keeps_running_while_the_venue_is_unreachable(tmp_path: Path) -> None:
    port = closed_port()
    settings = settings_for(
        tmp_path, f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", ("BTCUSDT", "ETHUSDT")
    )
    watch = TickWatch()
    stop = asyncio.Event()
    with capture_logs() as logs:
        watch.condition = lambda: sum(e["event"] == "feed.connect_failed" for e in logs) >= 3
        task = asyncio.create_task(run_daemon(settings, stop=stop, on_tick=watch))
        await asyncio.wait_for(watch.reached.wait(), timeout=20.0)
        assert not task.done()
        await stop_daemon(task, stop)
    assert task.exception() is None
    failed = next(e for e in logs if e["event"] == "instruments.fetch_failed")
    assert failed["venue"] == "binance"
    assert failed["cached"] > 0  # fell back to the shipped instrument list
    connect_failures = [e for e in logs if e["event"] == "feed.connect_failed"]
    assert (
        "refused" in connect_failures[0]["error"].lower()
        or "connect" in connect_failures[0]["error"].lower()
    )
    assert all(e["delay_s"] <= 0.2 for e in connect_failures)
    assert {row["symbol"] for row in watch.rows} == {"BTCUSDT", "ETHUSDT"}
    assert not any(row["valid"] for row in watch.rows)
    health = [e for e in logs if e["event"] == "venue.health"][-1]
    assert health["connects"] == 0
    assert health["connect_failures"] >= 3
    assert health["valid_books"] == 0
    assert Counter(e["event"] for e in logs)["daemon.stop"] == 1


async def test_run_recorder_writes_a_recording_that_replays_to_valid_books(
    tmp_path: Path, spot_sim: ExchangeSim, spot_session: BinanceRecording
) -> None:
    settings = settings_for(
        tmp_path, spot_sim.ws_url(SPOT_VENUE), spot_sim.rest_url(SPOT_VENUE), SYMBOLS
    )
    out = tmp_path / "out" / "binance.jsonl.gz"
    written: Counter[RecordKind] = Counter()
    done = asyncio.Event()
    depth_frames = sum(1 for frame in spot_session.frames if "@depth" in frame.stream)

    def on_record(kind: RecordKind, url: str) -> None:
        written[kind] += 1
        if written[RecordKind.HTTP] == 1 + len(SYMBOLS) and written[RecordKind.WS] == depth_frames:
            done.set()

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_recorder(
            settings,
            venue=Venue.BINANCE,
            symbols=SYMBOLS,
            out_path=out,
            stop=stop,
            on_record=on_record,
        )
    )
    await asyncio.wait_for(done.wait(), timeout=20.0)
    await stop_daemon(task, stop)

    records = list(iter_recording(out))
    assert Counter(r.kind for r in records) == {RecordKind.WS: depth_frames, RecordKind.HTTP: 5}
    assert {r.venue for r in records} == {"binance"}
    assert records[0].url == f"{spot_sim.rest_url(SPOT_VENUE)}/api/v3/exchangeInfo"
    assert all(
        json.loads(r.data)["stream"].endswith("@depth@100ms") for r in records if r.kind == "ws"
    )
    sent = [frame.envelope for frame in spot_session.frames if "@depth" in frame.stream]
    assert [r.data for r in records if r.kind == RecordKind.WS] == sent  # byte-exact

    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)  # instruments come from the recording
    await areplay([out], pipeline)
    books = {b["symbol"]: b for b in pipeline.book_summaries(depth=1)}
    assert {symbol for symbol, book in books.items() if book["valid"]} == set(SYMBOLS)
    assert all(book["gaps"] == 0 for book in books.values())
    assert pipeline.registry.get(Venue.BINANCE, "NKNUSDT") is not None
