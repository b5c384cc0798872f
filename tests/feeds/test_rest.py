"""RestClient and WeightBudget against the local exchange's Binance: 429, 418, 5xx, timeouts,
budget (REST answered from a recorded answer)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from feeds.binance import SPOT, USDM
from feeds.rest import (
    RateLimited,
    RestClient,
    RestError,
    RestTimeout,
    VenueBanned,
    WeightBudget,
    parse_retry_after,
)
from feeds.sim import BinanceProtocol, BinanceRecording, ExchangeSim
from monitor.domain import Venue

pytestmark = pytest.mark.integration

VENUE = Venue.BINANCE
DEPTH_PATH = "/api/v3/depth"
SNAPSHOT = json.dumps({"lastUpdateId": 7, "bids": [["1.0", "2.0"]], "asks": [["1.1", "3.0"]]})


class FakeTime:
    """A monotonic clock that only the injected sleep moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay_s: float) -> None:
        self.sleeps.append(delay_s)
        self.now += delay_s
        await asyncio.sleep(0)


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSim]:
    recording = BinanceRecording(answers={(DEPTH_PATH, "BTCUSDT"): SNAPSHOT})
    async with ExchangeSim([BinanceProtocol(VENUE, recording=recording)]) as server:
        yield server


def set_answer(sim: ExchangeSim, symbol: str, text: str) -> None:
    """Answer the depth of ``symbol`` with ``text`` from now on."""
    protocol = sim.protocols[VENUE]
    assert isinstance(protocol, BinanceProtocol) and protocol.recording is not None
    protocol.recording.answers[(DEPTH_PATH, symbol)] = text


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def make_client(http: aiohttp.ClientSession, fake: FakeTime, **options: object) -> RestClient:
    return RestClient(
        http,
        venue="binance",
        sleep=fake.sleep,
        clock=fake.clock,
        **options,  # type: ignore[arg-type]
    )


def depth_url(sim: ExchangeSim, symbol: str = "BTCUSDT", limit: int = 100) -> str:
    return f"{sim.rest_url(VENUE)}{DEPTH_PATH}?symbol={symbol}&limit={limit}"


def statuses(sim: ExchangeSim) -> list[int]:
    return [entry.status for entry in sim.requests]


class TestRateLimits:
    async def test_429_waits_the_advertised_retry_after_then_retries_once(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        sim.fail_next(VENUE, 429, retry_after_s=3)
        text = await make_client(http, fake).get_text(depth_url(sim))
        assert text == SNAPSHOT
        assert fake.sleeps == [3.0]
        assert statuses(sim) == [429, 200]

    async def test_429_pauses_every_request_to_the_venue(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        client = make_client(http, fake)
        sim.fail_next(VENUE, 429, retry_after_s=5)
        set_answer(sim, "ETHUSDT", SNAPSHOT)
        await client.get_text(depth_url(sim))
        client.paused_until = fake.now + 4.0  # as if another 429 just came in
        await client.get_text(depth_url(sim, "ETHUSDT"))
        assert fake.sleeps == [5.0, 4.0]

    async def test_429_beyond_the_retries_raises_rate_limited(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        sim.fail_next(VENUE, 429, retry_after_s=1, count=10)
        with pytest.raises(RateLimited) as caught:
            await make_client(http, fake, max_retries=2).get_text(depth_url(sim))
        assert caught.value.status == 429
        assert statuses(sim) == [429, 429, 429]

    async def test_418_raises_a_ban_and_refuses_requests_until_it_expires(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        client = make_client(http, fake)
        sim.fail_next(VENUE, 418, retry_after_s=120)
        with pytest.raises(VenueBanned) as caught:
            await client.get_text(depth_url(sim))
        assert caught.value.retry_after_s == 120.0
        with pytest.raises(VenueBanned) as again:
            await client.get_text(depth_url(sim))
        assert again.value.retry_after_s == pytest.approx(120.0)
        assert statuses(sim) == [418]  # the second call never reached the venue
        fake.now += 120.0
        assert await client.get_text(depth_url(sim)) == SNAPSHOT
        assert statuses(sim) == [418, 200]

    def test_retry_after_reads_seconds_and_http_dates(self) -> None:
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now_epoch_s=1445412500) == 10.0
        assert parse_retry_after("soon") is None
        assert parse_retry_after(None) is None


class TestRetries:
    async def test_503_is_retried_with_backoff_then_succeeds(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        sim.fail_next(VENUE, 503)
        client = make_client(http, fake, backoff_initial_s=0.5, backoff_max_s=4.0)
        assert await client.get_text(depth_url(sim)) == SNAPSHOT
        assert statuses(sim) == [503, 200]
        assert len(fake.sleeps) == 1
        assert 0.0 <= fake.sleeps[0] <= 0.5

    async def test_persistent_5xx_raises_after_the_bounded_retries(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        sim.fail_next(VENUE, 503, count=10)
        with pytest.raises(RestError) as caught:
            await make_client(http, fake, max_retries=3, backoff_max_s=2.0).get_text(depth_url(sim))
        assert caught.value.status == 503
        assert statuses(sim) == [503] * 4
        assert len(fake.sleeps) == 3
        assert all(0.0 <= delay <= 2.0 for delay in fake.sleeps)

    async def test_a_client_error_is_not_retried(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        with pytest.raises(RestError) as caught:
            await make_client(http, fake).get_text(depth_url(sim, "NOSUCHPAIR"))
        assert caught.value.status == 400
        assert "-1121" in caught.value.problem
        assert statuses(sim) == [400]
        assert fake.sleeps == []

    async def test_a_slow_answer_times_out(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        sim.fail_next(VENUE, 200, delay_s=0.3)
        client = make_client(http, fake, timeout_s=0.05, max_retries=0)
        with pytest.raises(RestTimeout) as caught:
            await client.get_text(depth_url(sim))
        assert isinstance(caught.value, TimeoutError)

    async def test_a_timeout_is_retried(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        sim.fail_next(VENUE, 200, delay_s=0.3)
        client = make_client(http, fake, timeout_s=0.05, max_retries=1)
        assert await client.get_text(depth_url(sim)) == SNAPSHOT
        assert len(fake.sleeps) == 1

    async def test_an_unreachable_venue_raises_without_a_status(
        self, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        client = make_client(http, fake, max_retries=1)
        with pytest.raises(RestError) as caught:
            await client.get_text(f"http://127.0.0.1:{port}{DEPTH_PATH}?symbol=BTCUSDT")
        assert caught.value.status is None
        assert client.requests == 2


class TestWeightBudget:
    async def test_a_mass_resync_is_spread_over_minutes(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        """30 snapshots of weight 250 against 6000/min: 21 at once (90% of the limit is 5400),
        the rest once the first burst leaves the window (the minute plus its 1 s margin)."""
        budget = WeightBudget(6000, clock=fake.clock, sleep=fake.sleep)
        client = make_client(http, fake, budget=budget)
        weight = SPOT.snapshot_weight(5000)
        sent_at: list[float] = []
        for _ in range(30):
            await client.get_text(depth_url(sim, limit=5000), weight=weight)
            sent_at.append(fake.now)
        assert len(sim.requests) == 30
        assert fake.sleeps == [61.0]
        assert sent_at == [1000.0] * 21 + [1061.0] * 9
        assert budget.used() == 9 * weight

    async def test_concurrent_requests_queue_on_the_budget(
        self, sim: ExchangeSim, http: aiohttp.ClientSession, fake: FakeTime
    ) -> None:
        budget = WeightBudget(2400, clock=fake.clock, sleep=fake.sleep)
        client = make_client(http, fake, budget=budget)
        weight = USDM.snapshot_weight(1000)  # 20: 108 per window fit in 2160
        await asyncio.gather(
            *(client.get_text(depth_url(sim, limit=1000), weight=weight) for _ in range(250))
        )
        assert len(sim.requests) == 250
        assert fake.sleeps == [61.0, 61.0]

    async def test_spending_never_exceeds_the_usable_budget_in_any_window(
        self, fake: FakeTime
    ) -> None:
        budget = WeightBudget(2400, clock=fake.clock, sleep=fake.sleep)
        spends: list[tuple[float, int]] = []
        for index in range(600):
            weight = USDM.snapshot_weight((5, 100, 500, 1000)[index % 4])
            await budget.spend(weight)
            spends.append((fake.now, weight))
            fake.now += 0.1
        for start, _ in spends:
            in_window = sum(w for t, w in spends if start <= t < start + 61.0)
            assert in_window <= 2160
        assert fake.sleeps  # it did have to wait

    async def test_weight_reported_by_the_venue_counts_against_the_budget(
        self, fake: FakeTime
    ) -> None:
        budget = WeightBudget(6000, clock=fake.clock, sleep=fake.sleep)
        await budget.spend(100)
        budget.observe_used(5350)  # another process on this IP spent weight too
        assert budget.used() == 5350
        await budget.spend(100)
        assert fake.sleeps == [61.0]

    async def test_a_weight_above_the_budget_passes_on_an_empty_window(
        self, fake: FakeTime
    ) -> None:
        budget = WeightBudget(100, clock=fake.clock, sleep=fake.sleep)
        await budget.spend(250)
        assert fake.sleeps == []

    async def test_a_spend_that_keeps_room_goes_behind_and_leaves_the_room(
        self, fake: FakeTime
    ) -> None:
        """A deeper snapshot (keep > 0) leaves ``keep`` free for the snapshots of books that
        are not valid, and never delays one of them."""
        budget = WeightBudget(1000, clock=fake.clock, sleep=fake.sleep)  # capacity 900
        await budget.spend(50, keep=100)
        await budget.spend(700)
        assert budget.used() == 750 and fake.sleeps == []
        low = asyncio.ensure_future(budget.spend(50, keep=200))  # 750 + 50 + 200 > 900
        await asyncio.sleep(0)
        await budget.spend(140)  # the FIFO spend fits in the room the low one left
        assert fake.sleeps == [61.0] and budget.used() == 140
        await low
        assert budget.used() == 190  # after the window emptied

    def test_depth_weights_follow_the_venue_tables(self) -> None:
        assert [SPOT.snapshot_weight(n) for n in (5, 100, 101, 500, 1000, 5000)] == [
            5,
            5,
            25,
            25,
            50,
            250,
        ]
        assert [USDM.snapshot_weight(n) for n in (5, 50, 100, 500, 1000)] == [
            2,
            2,
            5,
            10,
            20,
        ]

    async def test_for_venue_uses_the_venue_limit(self, http: aiohttp.ClientSession) -> None:
        spot = RestClient.for_venue(
            http, Venue.BINANCE, weight_limit_per_minute=SPOT.weight_limit_per_minute
        )
        futures = RestClient.for_venue(
            http, Venue.BINANCE_FUTURES, weight_limit_per_minute=USDM.weight_limit_per_minute
        )
        assert spot.budget is not None and spot.budget.capacity == 5400
        assert futures.budget is not None and futures.budget.capacity == 2160
        spot.budget.set_limit(1200)  # the limit exchangeInfo states at run time
        assert spot.budget.capacity == 1080
