"""Command line: ``liqmon run | replay | record``."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from monitor.errors import ConfigError
from monitor.log import LogFormat, configure_logging, get_logger
from monitor.settings import Settings, load_settings

log = get_logger("monitor.cli")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings([Path(p) for p in (args.config or [])])


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="TOML merged over config/default.toml (repeatable; LIQMON_* env vars override both)",
    )
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        help="auto (console on a terminal, else JSON), json or console (default: config)",
    )


def _version() -> str:
    try:
        return importlib.metadata.version("liqmon")
    except importlib.metadata.PackageNotFoundError:  # a checkout run without installing
        return "unknown (not installed)"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liqmon", description="Always-on liquidity monitor for crypto markets."
    )
    parser.add_argument("--version", action="version", version=f"liqmon {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="connect to the live venues and monitor their books")
    _add_config(run)

    replay = sub.add_parser(
        "replay", help="replay recordings through the monitor, deterministically"
    )
    replay.add_argument(
        "files", nargs="+", metavar="FILE", help="recordings (JSON lines, plain or .gz)"
    )
    _add_config(replay)
    replay.add_argument(
        "--tick-ms", type=int, default=None, help="metric tick in recorded time (default: config)"
    )
    replay.add_argument(
        "--metrics-out", metavar="M.jsonl", help="write one JSON object per book per tick"
    )
    replay.add_argument(
        "--books-out", metavar="B.jsonl", help="write the final books, top 50 levels"
    )
    replay.add_argument(
        "--speed",
        type=float,
        default=None,
        help="pace at N x recorded speed (default: as fast as possible)",
    )

    record = sub.add_parser("record", help="record a venue's raw messages to a file")
    _add_config(record)
    record.add_argument("--venue", required=True, help="venue id, e.g. binance or binance_futures")
    record.add_argument(
        "--symbols", required=True, help="comma-separated venue symbols, e.g. BTCUSDT,ETHUSDT"
    )
    record.add_argument(
        "--out", required=True, metavar="FILE", help="recording file (.gz to compress)"
    )

    sim = sub.add_parser(
        "sim",
        help="serve a local exchange speaking every venue's protocol on 127.0.0.1 "
        "(then: liqmon run --config config/sim.toml)",
    )
    _add_config(sim)
    sim.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    sim.add_argument(
        "--rate", type=float, default=50.0, help="book updates per second over all books"
    )
    return parser


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.venues import ADAPTERS  # noqa: PLC0415 (keeps `liqmon --help` fast)
    from monitor.instruments import InstrumentRegistry  # noqa: PLC0415
    from monitor.pipeline import BookPipeline  # noqa: PLC0415
    from monitor.replay import replay, write_books  # noqa: PLC0415
    from monitor.sinks import JsonLinesSink  # noqa: PLC0415
    from monitor.warmup import warm_up  # noqa: PLC0415

    for f in args.files:
        if not Path(f).is_file():
            log.error("replay.missing_file", path=f)
            return 2
    warm_up(ADAPTERS.values())  # compiles on the first run, and says so
    registry = InstrumentRegistry.load_cached(settings.venues.keys())
    pipeline = BookPipeline.from_settings(registry, ADAPTERS, settings)
    tick_ms = args.tick_ms or settings.monitor.tick_ms
    if tick_ms <= 0:
        log.error("replay.bad_tick", tick_ms=tick_ms)
        return 2
    for out_path in (args.metrics_out, args.books_out):
        if out_path:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    metrics_out = open(args.metrics_out, "wb") if args.metrics_out else None  # noqa: SIM115
    sinks = [JsonLinesSink(metrics_out)] if metrics_out is not None else []
    try:
        result = replay(args.files, pipeline, tick_ms=tick_ms, sinks=sinks, speed=args.speed)
    finally:
        if metrics_out is not None:
            metrics_out.close()
    if args.books_out:
        with open(args.books_out, "wb") as out:
            write_books(pipeline, out)
    for book in pipeline.book_summaries(depth=1):
        log.info(
            "replay.book",
            venue=book["venue"],
            symbol=book["symbol"],
            valid=book["valid"],
            gaps=book["gaps"],
            resyncs=book["resyncs"],
            messages=book["messages"],
            best_bid=book["bids"][0][0] if book["bids"] else None,
            best_ask=book["asks"][0][0] if book["asks"] else None,
        )
    return 0 if result.records else 1


def _run_async(coro_factory: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run a daemon coroutine until it ends or SIGINT/SIGTERM asks it to stop."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    try:
        asyncio.run(main())
    except ConfigError as exc:
        log.error("config.invalid", error=str(exc))
        sys.stderr.write(f"liqmon: {exc}\n")
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        configure_logging("info", "console")
        log.error("config.invalid", error=str(exc))
        sys.stderr.write(f"liqmon: invalid configuration: {exc}\n")
        return 2
    configure_logging(settings.monitor.log_level, args.log_format or settings.monitor.log_format)
    if args.command == "replay":
        return _cmd_replay(args, settings)
    if args.command == "run":
        from monitor.daemon import run_daemon  # noqa: PLC0415

        if not settings.enabled_venues():
            sys.stderr.write("liqmon: no venue is enabled in the configuration\n")
            return 2
        return _run_async(lambda stop: run_daemon(settings, stop=stop, status_out=sys.stdout))
    if args.command == "record":
        from monitor.daemon import run_recorder  # noqa: PLC0415
        from monitor.domain import Venue  # noqa: PLC0415

        try:
            venue = Venue(args.venue)
        except ValueError:
            known = ", ".join(v.value for v in Venue)
            sys.stderr.write(f"liqmon: unknown venue {args.venue!r} (one of {known})\n")
            return 2
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            sys.stderr.write("liqmon: --symbols is empty\n")
            return 2
        return _run_async(
            lambda stop: run_recorder(
                settings, venue=venue, symbols=symbols, out_path=Path(args.out), stop=stop
            )
        )
    if args.command == "sim":
        from feeds.sim.exchange import serve  # noqa: PLC0415

        if not 0 < args.port < 65536 or args.rate <= 0:
            sys.stderr.write("liqmon: --port must be 1-65535 and --rate positive\n")
            return 2
        return _run_async(
            lambda stop: serve(settings, port=args.port, updates_per_s=args.rate, stop=stop)
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
