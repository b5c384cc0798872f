"""REST GETs to venues (depth snapshots, instrument lists), polite under rate limits.

One :class:`RestClient` per venue over a shared ``aiohttp.ClientSession``. It spends request
weight from a sliding one-minute :class:`WeightBudget` before each request, so a mass
resync is spread out instead of approaching the ban line; honours ``429 Retry-After`` for
every request of the venue (retrying the one that got it, a bounded number of times);
turns ``418`` (an IP ban) into :class:`VenueBanned`, refusing all requests until it
expires; and retries ``5xx``, timeouts and connection errors with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

import aiohttp
import structlog

from feeds.net_errors import describe_error
from monitor.domain import Venue
from monitor.errors import FeedError, FeedTimeout

# logger_name: rendered as `logger` by monitor.log (feeds do not import it)
_log = structlog.get_logger(logger_name=__name__)

Sleep = Callable[[float], Awaitable[None]]

DEFAULT_RETRY_AFTER_S = 60.0
"""Wait assumed when a 429/418 carries no usable Retry-After."""


class RestError(FeedError):
    """A REST request failed. ``status`` is None when no response arrived."""

    def __init__(self, venue: str, url: str, status: int | None, problem: str) -> None:
        super().__init__(f"{venue}: GET {url}: {problem}")
        self.venue = venue
        self.url = url
        self.status = status
        self.problem = problem


class RestTimeout(RestError, FeedTimeout):
    """No complete response within the request timeout."""


class RateLimited(RestError):
    """Still 429 after the allowed retries."""


class VenueBanned(RestError):
    """The venue banned this IP (HTTP 418): no request to it before ``retry_after_s``."""

    def __init__(self, venue: str, url: str, retry_after_s: float) -> None:
        super().__init__(venue, url, 418, f"banned for {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None, *, now_epoch_s: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now_epoch_s is None else now_epoch_s
    return max(0.0, when.timestamp() - now)


WINDOW_MARGIN_S = 1.0
"""Added to the venue's one-minute window: the venue counts a request when it arrives, we
when we send it, so two requests sent exactly 60 s apart may arrive less than 60 s apart."""

MIN_WAIT_S = 0.001
USABLE_FRACTION = 0.9
"""Share of the venue's per-minute weight limit this process spends. The rest is the safety
margin: weight spent by others on the same IP before the venue's used-weight header tells us,
and rounding in the venue's count."""


class WeightBudget:
    """The venue's per-minute request-weight limit, spent the way the venue counts it.

    A sliding window of ``window_s`` (the venue's minute plus :data:`WINDOW_MARGIN_S`): a
    request may go as soon as the weight sent in the last ``window_s`` plus its own fits in
    ``capacity`` (``usable_fraction`` of the limit). Requests are not spaced evenly: a burst
    may spend the whole capacity at once, and the next request then waits until the
    oldest weight leaves the window. Any sliding minute the venue looks at (and any fixed
    minute, as Binance counts) therefore holds at most ``capacity``.

    :meth:`spend` waits (FIFO) until the weight fits. ``keep`` leaves that much of the
    capacity free for the FIFO spends (a deeper snapshot of a book that is already valid
    must never delay the snapshot of a book that is not). A weight larger than the whole
    usable budget is let through on an empty window rather than waiting forever.
    """

    def __init__(
        self,
        limit: int,
        *,
        usable_fraction: float = USABLE_FRACTION,
        window_s: float = 60.0 + WINDOW_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.capacity = max(1, int(limit * usable_fraction))
        self.usable_fraction = usable_fraction
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._spent: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    def set_limit(self, limit: int, interval_s: float | None = None) -> None:
        """The venue's limit as it states it at run time (Binance exchangeInfo.rateLimits):
        ``limit`` weight per ``interval_s`` (None: the interval stays)."""
        if limit > 0:
            self.limit = limit
            self.capacity = max(1, int(limit * self.usable_fraction))
        if interval_s is not None and interval_s > 0:
            self.window_s = interval_s + WINDOW_MARGIN_S

    def used(self) -> int:
        self._expire(self._clock())
        return sum(weight for _, weight in self._spent)

    def room(self) -> int:
        """Weight that may be spent now without waiting."""
        return self.capacity - self.used()

    @property
    def waiting(self) -> bool:
        """A FIFO spend is waiting for room."""
        return self._lock.locked()

    def observe_used(self, used: int) -> None:
        """Account for weight the venue reports as used that this process did not spend."""
        missing = used - self.used()
        if missing > 0:
            self._spent.append((self._clock(), missing))

    async def spend(self, weight: int, *, keep: int = 0) -> None:
        if keep:
            await self._spend_low(weight, keep)
            return
        async with self._lock:
            while True:
                now = self._clock()
                self._expire(now)
                used = sum(w for _, w in self._spent)
                if used + weight <= self.capacity or not self._spent:
                    self._spent.append((now, weight))
                    return
                wait_s = self._wait_for(weight, used, now)
                _log.debug("rest.budget_wait", used=used, weight=weight, wait_s=wait_s)
                await self._sleep(wait_s)

    async def _spend_low(self, weight: int, keep: int) -> None:
        """Spend leaving ``keep`` free, behind every FIFO spend (those never wait on this)."""
        await self.wait_room(weight, keep)
        self._spent.append((self._clock(), weight))

    async def wait_room(self, weight: int, keep: int = 0) -> None:
        """Wait until ``weight`` fits leaving ``keep`` free and no FIFO spend is waiting (a
        spend of it right after, with no await between, goes at once)."""
        while True:
            now = self._clock()
            self._expire(now)
            used = sum(w for _, w in self._spent)
            locked = self._lock.locked()
            if not locked and (used + weight + keep <= self.capacity or not self._spent):
                return
            wait_s = self._wait_for(weight + keep, used, now) if self._spent else MIN_WAIT_S
            # behind a waiting FIFO spend: look again soon after it went
            await self._sleep(max(wait_s, 0.05) if locked else wait_s)

    def _wait_for(self, weight: int, used: int, now: float) -> float:
        # time until enough of the oldest spends leave the window (at least 1 ms: a wait
        # that rounds to nothing in float arithmetic would spin without the clock moving)
        for stamp, spent in self._spent:
            used -= spent
            if used + weight <= self.capacity:
                return max(MIN_WAIT_S, stamp + self.window_s - now)
        return max(MIN_WAIT_S, self._spent[-1][0] + self.window_s - now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._spent and self._spent[0][0] <= horizon:
            self._spent.popleft()


class RestClient:
    """GETs to one venue, with timeouts, retries, rate limits and a weight budget.

    ``sleep``, ``clock`` (monotonic seconds) and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        venue: str,
        timeout_s: float = 10.0,
        budget: WeightBudget | None = None,
        max_retries: int = 3,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        used_weight_header: str | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.venue = venue
        self.budget = budget
        self.banned_until = 0.0
        self.paused_until = 0.0
        self.requests = 0
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_retries = max_retries
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._used_weight_header = used_weight_header
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = _log.bind(venue=venue)

    @classmethod
    def for_venue(
        cls,
        session: aiohttp.ClientSession,
        venue: Venue,
        *,
        weight_limit_per_minute: int | None = None,
        used_weight_header: str | None = None,
        timeout_s: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> RestClient:
        """A client with a budget from the venue's weight limit per minute (None: no budget).

        ``used_weight_header``: the response header in which the venue reports the weight
        this IP has used (its own count corrects the budget's), if it has one.
        """
        limit = weight_limit_per_minute
        budget = None if limit is None else WeightBudget(limit, clock=clock, sleep=sleep)
        return cls(
            session,
            venue=venue.value,
            timeout_s=timeout_s,
            budget=budget,
            used_weight_header=used_weight_header,
            sleep=sleep,
            clock=clock,
        )

    def banned_for_s(self) -> float:
        return max(0.0, self.banned_until - self._clock())

    async def get_text(
        self,
        url: str,
        *,
        weight: int = 1,
        max_retries: int | None = None,
        body: str | None = None,
        keep: int = 0,
    ) -> str:
        """GET ``url`` (POST ``body`` as JSON when given) and return a 2xx answer's body.

        ``weight`` is spent from the budget before each attempt; ``max_retries`` overrides
        the client's bound for this call; ``keep`` (see :meth:`WeightBudget.spend`) marks a
        request that may wait behind every other (a deeper snapshot of a valid book).
        Raises :class:`VenueBanned` (418, or while a ban lasts), :class:`RateLimited` (429
        beyond the retries), :class:`RestTimeout` or :class:`RestError`.
        """
        retries = self._max_retries if max_retries is None else max_retries
        last_error: RestError | None = None
        for attempt in range(retries + 1):
            await self._wait_until_allowed(url)
            if self.budget is not None:
                await self.budget.spend(weight, keep=keep)
            try:
                status, retry_after_s, text = await self._get(url, body)
            except RestError as error:  # timeout or connection error: retryable
                last_error = error
                await self._retry_sleep(url, attempt, retries, error)
                continue
            if 200 <= status < 300:
                return text
            if status == 418:
                ban_s = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
                self.banned_until = max(self.banned_until, self._clock() + ban_s)
                self._log.error("rest.banned", url=url, status=status, retry_after_s=ban_s)
                raise VenueBanned(self.venue, url, ban_s)
            if status == 429:
                pause_s = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
                self.paused_until = max(self.paused_until, self._clock() + pause_s)
                self._log.warning(
                    "rest.rate_limited", url=url, attempt=attempt, retry_after_s=pause_s
                )
                last_error = RateLimited(self.venue, url, status, f"429 {text[:200]!r}")
                continue
            if status >= 500:
                last_error = RestError(self.venue, url, status, f"{status} {text[:200]!r}")
                await self._retry_sleep(url, attempt, retries, last_error)
                continue
            raise RestError(self.venue, url, status, f"{status} {text[:200]!r}")
        assert last_error is not None
        raise last_error

    async def _get(self, url: str, body: str | None = None) -> tuple[int, float | None, str]:
        self.requests += 1
        if body is None:
            request = self._session.get(url, timeout=self._timeout)
        else:
            json_body = {"Content-Type": "application/json"}
            request = self._session.post(url, data=body, headers=json_body, timeout=self._timeout)
        try:
            async with request as response:
                text = await response.text()
                headers = response.headers
                status = response.status
        except TimeoutError as error:
            problem = describe_error(error, url, timeout_s=self._timeout.total)
            raise RestTimeout(self.venue, url, None, problem) from error
        except aiohttp.ClientError as error:
            raise RestError(self.venue, url, None, describe_error(error, url)) from error
        self._observe_weight(headers.get(self._used_weight_header or ""))
        return status, parse_retry_after(headers.get("Retry-After")), text

    def _observe_weight(self, value: str | None) -> None:
        if self.budget is None or not value:
            return
        with contextlib.suppress(ValueError):  # a garbled header is not worth a failed request
            self.budget.observe_used(int(value))

    async def _wait_until_allowed(self, url: str) -> None:
        banned_s = self.banned_for_s()
        if banned_s > 0:
            raise VenueBanned(self.venue, url, banned_s)
        while (pause_s := self.paused_until - self._clock()) > 0:
            await self._sleep(pause_s)

    async def _retry_sleep(self, url: str, attempt: int, retries: int, error: RestError) -> None:
        if attempt >= retries:
            return
        cap_s = min(self._backoff_max_s, self._backoff_initial_s * 2.0**attempt)
        delay_s = self._rng.uniform(0.0, cap_s)
        self._log.warning(
            "rest.retry",
            url=url,
            status=error.status,
            attempt=attempt,
            delay_s=round(delay_s, 3),
            error=error.problem,
        )
        await self._sleep(delay_s)
