"""Query parameters: times, intervals, limits, cursors, formats; and the API's errors.

Every parse failure is an :class:`ApiError` naming the parameter, answered as
``400 {"error": {"status": 400, "parameter": "from", "message": "..."}}``: bad input is
never a 500.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

INTERVALS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL_RE: Final = re.compile(r"^(\d{1,6})([smhd])$")
_EPOCH_RE: Final = re.compile(r"^-?\d{1,16}(\.\d+)?$")
MIN_MS: Final = 0  # 1970-01-01
MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class ApiError(Exception):
    """An answer other than 200, as JSON: status, the parameter at fault, a sentence."""

    def __init__(self, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.parameter is not None:
            error["parameter"] = self.parameter
        return {"error": error}


def bad(parameter: str, message: str) -> ApiError:
    return ApiError(400, f"{parameter}: {message}", parameter)


def parse_time(text: str, parameter: str) -> int:
    """RFC 3339 (``2025-10-10T21:15:00Z``, offsets allowed) or epoch milliseconds -> ms."""
    if _EPOCH_RE.match(text):
        ms = int(float(text))
    else:
        try:
            t = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise bad(
                parameter, f"expected RFC 3339 (2025-10-10T21:15:00Z) or epoch ms, got {text!r}"
            ) from None
        if t.tzinfo is None:
            raise bad(parameter, f"RFC 3339 time needs a zone (Z or +hh:mm), got {text!r}")
        try:
            ms = int(t.timestamp() * 1000)
        except (OverflowError, ValueError):
            raise bad(parameter, f"out of range (1970 to 9999), got {text!r}") from None
    if not MIN_MS <= ms <= MAX_MS:
        raise bad(parameter, f"out of range (1970 to 9999), got {text!r}")
    return ms


def rfc3339(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_interval(text: str, parameter: str = "interval") -> int:
    """``30s``, ``1m``, ``5m``, ``1h``, ``1d`` -> milliseconds."""
    m = _INTERVAL_RE.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise bad(parameter, f"expected a duration such as 10s, 1m, 5m, 1h or 1d, got {text!r}")
    return int(m.group(1)) * INTERVALS[m.group(2)] * 1000


class Query:
    """Typed access to a request's query string; every getter names its parameter."""

    def __init__(self, request: web.Request, allowed: set[str] | frozenset[str]) -> None:
        self.q = request.query
        for name in self.q:
            if name not in allowed:
                expected = ", ".join(sorted(allowed)) or "none"
                raise bad(name, f"unknown parameter (expected: {expected})")
        for name in set(self.q):
            if len(self.q.getall(name)) > 1:
                raise bad(name, "given more than once")

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.q.get(name)
        if value is None:
            return default
        if not value:
            raise bad(name, "empty")
        if "\x00" in value:
            raise bad(name, "contains a NUL character")
        return value

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise bad(name, "required")
        return value

    def time(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        return default if value is None else parse_time(value, name)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            n = int(value)
        except ValueError:
            raise bad(name, f"expected a whole number, got {value!r}") from None
        if not low <= n <= high:
            raise bad(name, f"expected {low} to {high}, got {n}")
        return n

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, default)
        assert value is not None
        if value not in choices:
            raise bad(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def names(self, name: str) -> list[str]:
        value = self.get(name)
        if value is None:
            return []
        return [v for v in value.split(",") if v]


# --- cursors: short strings, opaque to clients ---------------------------------------------
# o<offset>: position in a list held in memory; k<ts_ms>_<n>: history keyset (first bucket
# time of the next page, and how many rows of that time the previous page already gave)
_CURSOR_RE: Final = re.compile(r"^([a-z])([0-9]{1,15})(?:_([0-9]{1,9}))?$")


def decode_cursor(text: str, kind: str, parameter: str = "cursor") -> tuple[int, int]:
    m = _CURSOR_RE.match(text)
    if not m or m.group(1) != kind:
        raise bad(parameter, "not a cursor this endpoint returned (use next_cursor as given)")
    return int(m.group(2)), int(m.group(3) or 0)


def offset_page(
    items: list[Any], query: Query, default_limit: int, max_limit: int
) -> tuple[list[Any], str | None, int]:
    """A page of an in-memory list: ``(page, next_cursor, limit)`` (cursor = an offset)."""
    limit = query.integer("limit", default_limit, 1, max_limit)
    cursor = query.get("cursor")
    offset = 0 if cursor is None else decode_cursor(cursor, "o")[0]
    page = items[offset : offset + limit]
    following = f"o{offset + limit}" if offset + limit < len(items) else None
    return page, following, limit
