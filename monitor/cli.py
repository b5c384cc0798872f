"""Command line: ``liqmon run | replay | record | sim | query | scenario | demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.metadata
import math
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, cast

import msgspec

from monitor.errors import ConfigError, StorageError
from monitor.log import LogFormat, configure_logging, get_logger
from monitor.settings import Settings, load_settings

log = get_logger("monitor.cli")

# Exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # nothing to replay, a port in use, an OS error that ends a command
EXIT_USAGE = 2  # bad arguments or configuration, a missing or unreadable input, a bad output path
EXIT_BAD_DATA = 3  # replay --strict met a line that is not a record
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """argparse type: a finite number greater than 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


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


def _listen(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return text


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=_listen,
        metavar="HOST:PORT",
        help="where the API and the page listen (default: api.listen, 127.0.0.1:8080)",
    )


def _with_listen(settings: Settings, listen: str | None) -> Settings:
    if listen is None:
        return settings
    return msgspec.structs.replace(
        settings, api=msgspec.structs.replace(settings.api, listen=listen)
    )


def _api_os_error(settings: Settings) -> Callable[[OSError], str]:
    def describe(exc: OSError) -> str:
        where = settings.api.listen
        if exc.errno == errno.EADDRINUSE:
            return (
                f"api: cannot listen on {where}: the port is already in use "
                "(another liqmon?); choose another with --listen or api.listen"
            )
        return f"api: cannot listen on {where}: {exc.strerror or exc}"

    return describe


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

    run = sub.add_parser(
        "run",
        help="connect to the live venues and monitor their books (API and page at api.listen)",
    )
    _add_config(run)
    # -- history (monitor.store): run stores by default, replay with --store, query --
    from monitor.store.command import add_data_dir, add_query_parser  # noqa: PLC0415

    add_data_dir(run)
    run.add_argument("--no-store", action="store_true", help="keep no history (no database)")
    _add_listen(run)

    serve = sub.add_parser(
        "serve",
        help="serve the API and the page from the database only, without feeds",
    )
    _add_config(serve)
    add_data_dir(serve)
    _add_listen(serve)

    replay = sub.add_parser(
        "replay", help="replay recordings through the monitor, deterministically"
    )
    replay.add_argument(
        "files", nargs="+", metavar="FILE", help="recordings (JSON lines, plain or .gz)"
    )
    _add_config(replay)
    replay.add_argument(
        "--tick-ms",
        type=_positive(int),
        default=None,
        help="metric tick in recorded time, > 0 (default: config)",
    )
    replay.add_argument(
        "--metrics-out", metavar="M.jsonl", help="write one JSON object per book per tick"
    )
    replay.add_argument(
        "--books-out", metavar="B.jsonl", help="write the final books, top 50 levels"
    )
    replay.add_argument(
        "--alerts-out",
        metavar="A.jsonl",
        help="write one JSON object per score state change and alert rule event (no delivery)",
    )
    replay.add_argument(
        "--speed",
        type=_positive(float),
        default=None,
        help="pace at N x recorded speed, N > 0 (default: as fast as possible)",
    )
    replay.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first line that is not a record (exit code 3) instead of skipping it",
    )
    replay.add_argument(
        "--store", action="store_true", help="write what the daemon would store to the database"
    )
    add_data_dir(replay)

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
    add_query_parser(sub, _add_config)
    # -- alerts (monitor.alerting): liqmon subscriptions list|add|remove --
    from monitor.alerting import add_subscriptions_parser  # noqa: PLC0415

    add_subscriptions_parser(sub, _add_config, add_data_dir)
    from monitor.alerting import add_rules_parser  # noqa: PLC0415

    add_rules_parser(sub, _add_config, add_data_dir)
    from monitor.api.tokens import add_token_parser  # noqa: PLC0415

    add_token_parser(sub, _add_config)
    scenario = sub.add_parser(
        "scenario",
        help="write a deterministic scenario (the 10/11 collapse, or a calm day) as a "
        "recording with labels.json, for liqmon replay",
    )
    _add_config(scenario)
    scenario.add_argument("--out", required=True, metavar="DIR", help="output directory")
    scenario.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    scenario.add_argument("--kind", choices=["collapse", "calm"], default="collapse")
    scenario.add_argument(
        "--hours",
        type=float,
        default=None,
        help="length (collapse: ends at T0 + 100 min, default 3; calm: default 24)",
    )
    scenario.add_argument(
        "--step-ms", type=int, default=None, help="diff interval (default 500; calm 1000)"
    )
    scenario.add_argument("--day", type=int, default=0, help="calm day of the week, 0-6")

    demo = sub.add_parser(
        "demo",
        help="watch the 10/11 collapse, time-compressed: the local exchange plays it and "
        "the monitor watches it on 127.0.0.1",
    )
    _add_config(demo)
    demo.add_argument(
        "--speed", type=float, default=60.0, help="scenario seconds per second (default 60)"
    )
    demo.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    demo.add_argument(
        "--hours", type=float, default=2.0, help="market hours played, ending T0 + 100 min"
    )
    demo.add_argument(
        "--assets",
        default="",
        help="a lighter demo: these assets only, e.g. BTC,ALT1 (default: BTC, ETH, SOL, XRP, "
        "ALT1 and the pegged books)",
    )
    return parser


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"liqmon: {message}\n")
    return code


def _open_output(flag: str, path: str, mode: str = "wb") -> IO[bytes]:
    """Open an output file before the command runs, so a bad path fails at once."""
    target = Path(path)
    if target.is_dir():
        raise _UsageError(f"{flag} {path}: is a directory; expected a file to write")
    blocking = next((d for d in target.parents if d.exists() and not d.is_dir()), None)
    if blocking is not None:
        raise _UsageError(f"{flag} {path}: cannot create: {blocking} is a file, not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return cast(IO[bytes], open(target, mode))  # closed by the caller
    except OSError as exc:
        raise _UsageError(f"{flag} {path}: cannot create: {exc.strerror or exc}") from None


class _UsageError(Exception):
    """A command-line problem found after parsing: one line, exit code EXIT_USAGE."""


def _cmd_scenario(args: argparse.Namespace) -> int:
    from feeds.sim.scenario.core import Scenario  # noqa: PLC0415
    from feeds.sim.scenario.writer import write_scenario  # noqa: PLC0415

    hours = args.hours if args.hours is not None else (3.0 if args.kind == "collapse" else 24.0)
    step_ms = (
        args.step_ms if args.step_ms is not None else (500 if args.kind == "collapse" else 1000)
    )
    if hours <= 0 or step_ms <= 0 or not 0 <= args.day <= 6:
        sys.stderr.write("liqmon: --hours and --step-ms must be positive, --day 0-6\n")
        return 2
    scenario = Scenario(args.kind, args.seed, hours=hours, step_ms=step_ms, day=args.day)
    try:
        result = write_scenario(args.out, scenario)
    except OSError as exc:
        sys.stderr.write(f"liqmon: --out {args.out}: cannot write: {exc.strerror or exc}\n")
        return 2
    log.info(
        "scenario.written",
        recording=str(result.recording),
        labels=str(result.labels),
        config=str(result.config),
        records=result.records,
        seconds=round(result.seconds, 1),
    )
    sys.stdout.write(
        f"wrote {result.recording} ({result.records} records), {result.labels}, "
        f"{result.config}\nreplay: liqmon replay {result.recording} --config {result.config}\n"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo  # noqa: PLC0415

    if args.speed <= 0 or args.hours <= 0:
        sys.stderr.write("liqmon: --speed and --hours must be positive\n")
        return 2
    configure_logging("warning" if not sys.stdout.isatty() else "error", args.log_format or "auto")
    code = 0

    async def main(stop: asyncio.Event) -> None:
        nonlocal code
        code = await run_demo(
            speed=args.speed,
            seed=args.seed,
            hours=args.hours,
            configs=[Path(p) for p in (args.config or [])],
            out=sys.stdout,
            tty=sys.stdout.isatty(),
            stop=stop,
            assets=[a.strip().upper() for a in args.assets.split(",") if a.strip()],
        )

    rc = _run_async(main)
    return rc or code


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.recording import RecordingError, RecordingReader, check_readable  # noqa: PLC0415
    from feeds.venues import ADAPTERS  # noqa: PLC0415 (keeps `liqmon --help` fast)
    from monitor.instruments import InstrumentRegistry  # noqa: PLC0415
    from monitor.pipeline import BookPipeline  # noqa: PLC0415
    from monitor.replay import replay, write_books  # noqa: PLC0415
    from monitor.sinks import AlertsSink, JsonLinesSink, Sink  # noqa: PLC0415
    from monitor.warmup import warm_up  # noqa: PLC0415

    try:
        for f in args.files:
            check_readable(f)
    except RecordingError as exc:
        return _fail(EXIT_USAGE, str(exc))
    empty = [f for f in args.files if Path(f).stat().st_size == 0]
    if len(empty) == len(args.files):
        files = ", ".join(empty)
        return _fail(EXIT_FAILED, f"{files}: empty file{'s' * (len(empty) > 1)}, nothing to replay")
    for f in empty:
        sys.stderr.write(f"liqmon: {f}: empty file, skipped\n")
    with contextlib.ExitStack() as outputs:
        try:
            metrics_out = books_out = alerts_out = None
            if args.metrics_out:
                metrics_out = outputs.enter_context(_open_output("--metrics-out", args.metrics_out))
            if args.books_out:
                books_out = outputs.enter_context(_open_output("--books-out", args.books_out))
            if args.alerts_out:
                alerts_out = outputs.enter_context(_open_output("--alerts-out", args.alerts_out))
        except _UsageError as exc:
            return _fail(EXIT_USAGE, str(exc))
        warm_up(ADAPTERS.values(), replay=True)  # compiles on the first run, and says so
        registry = InstrumentRegistry.load_cached(settings.venues.keys())
        pipeline = BookPipeline.from_settings(registry, ADAPTERS, settings)
        reader = RecordingReader(strict=args.strict)
        interrupted = False
        sinks: list[Sink] = [JsonLinesSink(metrics_out)] if metrics_out is not None else []
        if alerts_out is not None:
            from monitor.alerting import RuleRunner  # noqa: PLC0415

            try:
                rules = RuleRunner.from_settings(settings) if settings.alerts.enabled else None
            except ConfigError as exc:
                return _fail(EXIT_USAGE, f"invalid alert rules: {exc}")
            sinks.append(AlertsSink(alerts_out, rules))
        tick_ms = args.tick_ms or settings.monitor.tick_ms
        unwritten = 0
        try:
            if args.store:  # history: the same samples, into the database
                from monitor.store.command import data_dir, replay_to_store  # noqa: PLC0415

                where = data_dir(settings, args.data_dir)
                result, unwritten = replay_to_store(
                    args.files, pipeline, settings, where, tick_ms=tick_ms, sinks=sinks,
                    speed=args.speed, reader=reader,
                )  # fmt: skip
            else:
                result = replay(
                    args.files, pipeline, tick_ms=tick_ms, sinks=sinks, speed=args.speed,
                    reader=reader,
                )  # fmt: skip
        except StorageError as exc:
            return _fail(EXIT_FAILED, str(exc))
        except RecordingError as exc:
            return _fail(EXIT_BAD_DATA, f"{exc} (--strict: stopped at the first bad line)")
        except KeyboardInterrupt:
            interrupted = True
        for out in (metrics_out, alerts_out):
            if out is not None:
                out.flush()
        if books_out is not None:
            write_books(pipeline, books_out)
    reader.log_summary()
    if interrupted:
        at = "" if reader.last_ts is None else f", recorded time {_utc(reader.last_ts)}"
        return _fail(
            EXIT_INTERRUPTED,
            f"interrupted: stopped after {reader.records} records{at}; outputs written and closed",
        )
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
    if reader.skipped:
        faults = ", ".join(f"{fault}: {n}" for fault, n in reader.skipped.items())
        first = next(iter(reader.first_skipped.values()))
        n = sum(reader.skipped.values())
        lines = "1 line that is not a record" if n == 1 else f"{n} lines that are not records"
        sys.stderr.write(
            f"liqmon: skipped {lines} ({faults}); first at {first}; --strict stops at the first\n"
        )
    if not result.records:
        return _fail(EXIT_FAILED, "nothing replayed: no record of a known venue was read")
    if unwritten:
        return _fail(EXIT_FAILED, f"{unwritten} rows not stored yet (kept in the spill file)")
    return EXIT_OK


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


_T = TypeVar("_T")


class LoopRunner(Protocol):
    """``asyncio.run``'s signature: run a coroutine on a new event loop, return its result."""

    def __call__(self, main: Coroutine[Any, Any, _T], /) -> _T: ...


def loop_runner(kind: str = "auto") -> LoopRunner:
    """``uvloop.run`` or ``asyncio.run``, as ``[monitor] event_loop`` asks ("auto": uvloop
    where it is installed). A ConfigError when "uvloop" is asked for and not installed."""
    if kind != "asyncio":
        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            if kind == "uvloop":
                problem = 'uvloop is not installed: pip install uvloop, or "auto"'
                raise ConfigError("configuration", "monitor.event_loop", problem) from None
        else:
            return uvloop.run
    return asyncio.run


def _run_async(
    coro_factory: Callable[[asyncio.Event], Awaitable[None]],
    os_error: Callable[[OSError], str] = str,
    event_loop: str = "auto",
) -> int:
    """Run a daemon coroutine until it ends or SIGINT/SIGTERM asks it to stop, on the
    event loop ``event_loop`` names (:func:`loop_runner`).

    An OSError that ends it (a port in use, an unwritable file) is one line, exit code 1.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    try:
        loop_runner(event_loop)(main())
    except ConfigError as exc:
        log.error("config.invalid", error=str(exc))
        return _fail(EXIT_USAGE, str(exc))
    except StorageError as exc:
        log.error("store.unavailable", error=str(exc))
        return _fail(EXIT_FAILED, str(exc))
    except OSError as exc:
        log.debug("command.os_error", exc_info=True)
        return _fail(EXIT_FAILED, os_error(exc))
    return EXIT_OK


def _sim_os_error(port: int) -> Callable[[OSError], str]:
    def describe(exc: OSError) -> str:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"sim: cannot listen on 127.0.0.1:{port}: the port is already in use "
                "(another liqmon sim?); choose another with --port"
            )
        return f"sim: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"

    return describe


def main(argv: Sequence[str] | None = None) -> int:
    """``liqmon``: returns the exit code (see EXIT_* and the README's "Exit codes")."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (e.g. while compiling)
        return _fail(EXIT_INTERRUPTED, "interrupted")


def _main(argv: Sequence[str] | None) -> int:
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
    if args.command == "scenario":
        return _cmd_scenario(args)
    if args.command == "demo":
        return _cmd_demo(args)
    if args.command == "run":
        from monitor.app import run_monitor  # noqa: PLC0415

        if not settings.enabled_venues():
            sys.stderr.write("liqmon: no venue is enabled in the configuration\n")
            return 2
        settings = _with_listen(settings, args.listen)
        store_dir = None
        if settings.database.enabled and not args.no_store:
            from monitor.store.command import data_dir  # noqa: PLC0415

            store_dir = data_dir(settings, args.data_dir)
        return _run_async(
            lambda stop: run_monitor(
                settings, stop=stop, status_out=sys.stdout, data_dir=store_dir
            ),
            _api_os_error(settings),
            settings.monitor.event_loop,
        )
    if args.command == "serve":
        from monitor.api.serve import serve as serve_api  # noqa: PLC0415
        from monitor.store.command import data_dir  # noqa: PLC0415

        settings = _with_listen(settings, args.listen)
        where = data_dir(settings, args.data_dir)
        return _run_async(
            lambda stop: serve_api(settings, where, stop=stop),
            _api_os_error(settings),
            settings.monitor.event_loop,
        )
    if args.command == "record":
        from monitor.app import run_recorder  # noqa: PLC0415
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
        try:  # the recorder appends: check the path now, keep what the file holds
            _open_output("--out", args.out, "ab").close()
        except _UsageError as exc:
            return _fail(EXIT_USAGE, str(exc))
        return _run_async(
            lambda stop: run_recorder(
                settings, venue=venue, symbols=symbols, out_path=Path(args.out), stop=stop
            ),
            event_loop=settings.monitor.event_loop,
        )
    if args.command == "subscriptions":
        from monitor.alerting import run_subscriptions  # noqa: PLC0415

        return run_subscriptions(args, settings)
    if args.command == "rules":
        from monitor.alerting import run_rules  # noqa: PLC0415

        return run_rules(args, settings)
    if args.command == "token":
        from monitor.api.tokens import run_token  # noqa: PLC0415
        from monitor.store.command import data_dir  # noqa: PLC0415

        return run_token(args, settings, data_dir(settings, args.data_dir))
    if args.command == "query":
        from monitor.store.command import run_query  # noqa: PLC0415

        return run_query(args, settings)
    if args.command == "sim":
        from feeds.sim.exchange import serve  # noqa: PLC0415

        if not 0 < args.port < 65536 or args.rate <= 0:
            sys.stderr.write("liqmon: --port must be 1-65535 and --rate positive\n")
            return 2
        return _run_async(
            lambda stop: serve(settings, port=args.port, updates_per_s=args.rate, stop=stop),
            _sim_os_error(args.port),
            settings.monitor.event_loop,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
