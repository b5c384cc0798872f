"""The error tree. Broad exceptions are caught only at task boundaries."""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error liqmon raises on purpose."""


class ConfigError(MonitorError):
    """A configuration file or environment override is invalid.

    The message names the file, the key and what was expected.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class FeedError(MonitorError):
    """Something is wrong with what a venue sent or how it sent it."""


class ParseError(FeedError):
    """A message could not be parsed. Carries the venue and an excerpt of the raw text."""

    def __init__(self, venue: str, excerpt: str | bytes, reason: str) -> None:
        if isinstance(excerpt, bytes):
            excerpt = excerpt[:200].decode("utf-8", "replace")
        else:
            excerpt = excerpt[:200]
        super().__init__(f"{venue}: {reason}: {excerpt!r}")
        self.venue = venue
        self.excerpt = excerpt
        self.reason = reason


class UnknownInstrument(FeedError):
    """A message names a symbol the instrument registry does not hold."""

    def __init__(self, venue: str, symbol: str) -> None:
        super().__init__(f"{venue}: unknown symbol {symbol!r}")
        self.venue = venue
        self.symbol = symbol


class SequenceGap(FeedError):
    """A delta does not chain onto the book: the book is thrown away and resynced."""


class FeedTimeout(FeedError, TimeoutError):
    """A connection or request timed out."""


class StorageError(MonitorError):
    """The database refused or lost a write."""


class AlertDeliveryError(MonitorError):
    """A channel could not deliver a notification.

    ``retryable``: a later attempt may succeed (network error, 429, 5xx); ``retry_after_s``:
    the wait the receiver asked for (Telegram's ``parameters.retry_after``); ``status``: the
    HTTP status, if one came back.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
