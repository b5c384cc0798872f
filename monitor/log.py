"""Structured logging: one line per event on stderr, JSON or console, secrets redacted.

The format is ``auto`` by default: readable console lines when stderr is a terminal
(``2026-12-04 20:21:05.123 [warning  ] feed.connect_failed  error='cannot resolve
api.binance.com' venue=binance``), one JSON object per line when it is a pipe or a file
(log collectors). ``json`` and ``console`` force one of them (``--log-format`` on the CLI).

Call `configure_logging` once at start-up (the CLI does, from `Settings.monitor`), then log
through `get_logger(__name__)`. Per-task context (`venue`, `instrument`, `conn_id`) is bound
with `structlog.contextvars.bind_contextvars` and merged into every event of that task.
Records from stdlib `logging` (asyncio, aiohttp, websockets) go through the same
processors and renderer, so stderr never mixes formats.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger


class LogLevel(StrEnum):
    """Lowest level that is written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(StrEnum):
    """`json` for machines (one object per line), `console` for people at a terminal,
    `auto`: console when stderr is a terminal, else JSON."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def resolve_format(fmt: str, stream: TextIO | None = None) -> LogFormat:
    """The format actually written: ``auto`` becomes console on a terminal, else JSON.

    stream: where the lines go (default ``sys.stderr``). Unknown names raise ValueError.
    """
    log_format = LogFormat(fmt.lower())
    if log_format is not LogFormat.AUTO:
        return log_format
    return LogFormat.CONSOLE if _is_terminal(stream or sys.stderr) else LogFormat.JSON


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


REDACTED: Final = "***"
# A key is secret when its lower-cased name (with "-" read as "_") contains one of these.
_SECRET_MARKERS: Final = ("token", "secret", "password", "api_key", "apikey", "authorization")
_STDLIB_LEVELS: Final = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


def _is_secret(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return any(marker in name for marker in _SECRET_MARKERS)


def _redacted(value: Mapping[Any, Any]) -> dict[Any, Any]:
    # A copy: the caller's mapping (e.g. request headers) must not be altered by logging it.
    return {
        key: REDACTED if _is_secret(key) else _redacted(item) if isinstance(item, Mapping) else item
        for key, item in value.items()
    }


def redact_secrets(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: replace the value of every key that names a secret with ``***``.

    Secret names contain token, secret, password, api_key, apikey or authorization (any
    case, ``-`` counts as ``_``); nested mappings such as HTTP headers are redacted too.
    """
    for key, value in event_dict.items():
        if _is_secret(key):
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping):
            event_dict[key] = _redacted(value)
    return event_dict


class _StderrHandler(logging.StreamHandler[TextIO]):
    """The root handler this module installs; a distinct class so reconfiguring replaces it."""


def configure_logging(level: str = "info", fmt: str = "auto") -> LogFormat:
    """Send structlog and stdlib logging to stderr with one shared processor chain.

    level: debug|info|warning|error. fmt: auto|json|console (auto: console on a terminal,
    else JSON). Other values raise ValueError. Returns the format in force. Calling it
    again replaces the previous configuration.
    """
    log_level = LogLevel(level.lower())
    log_format = resolve_format(fmt)
    level_number = _STDLIB_LEVELS[log_level]
    json_lines = log_format is LogFormat.JSON

    shared: list[Processor] = [
        _name_logger,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True) if json_lines else _console_time,
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]
    renderer: Processor
    if json_lines:
        # JSON needs the traceback as a string; ConsoleRenderer formats exc_info itself.
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # time, level, event, then key=value sorted by key; colours only on a terminal
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(sys.stderr))

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Not cached: loggers created at import time follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )

    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number)
    return log_format


def get_logger(name: str, **initial_values: Any) -> FilteringBoundLogger:
    """Return a logger whose events carry ``logger=name`` (pass ``__name__``).

    The logger stays lazy: one created at import time uses the configuration in force
    when it first logs (binding it here would freeze structlog's defaults into it).
    """
    # `logger` itself cannot be an initial value (structlog's own parameter name), so it
    # travels as `logger_name` and `_name_logger` renames it.
    return cast(FilteringBoundLogger, structlog.get_logger(logger_name=name, **initial_values))


def _console_time(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    # UTC to the millisecond, without the ISO "T" and offset noise of the JSON stamp
    now = datetime.now(UTC)
    event_dict["timestamp"] = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}"
    return event_dict


def _name_logger(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    name = event_dict.pop("logger_name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict
