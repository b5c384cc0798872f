"""The collapse's liquidation engine and the venue wicks' Hawkes bursts (generator paths;
no recording is written here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.sim.scenario import spec
from feeds.sim.scenario.model import BookPath, Paths, build_paths, hawkes_fills, rng_for, walk_bps
from monitor.domain import InstrumentKind


@pytest.fixture(scope="module")
def paths() -> Paths:
    return build_paths("collapse", 4, spec.books_for(("BTC", "SOL", "ALT1")), hours=2.0)


def _book(paths: Paths, venue: str, symbol: str) -> BookPath:
    return next(b for b in paths.books if b.spec.venue.value == venue and b.spec.symbol == symbol)


def _with_and_without(table: dict[Any, Any], seed: int, books: list[Any]) -> tuple[Paths, Paths]:
    """The collapse paths of one seed as specified, and with one spec table emptied."""
    full = build_paths("collapse", seed, books, hours=2.0)
    saved = dict(table)
    try:
        table.clear()
        return full, build_paths("collapse", seed, books, hours=2.0)
    finally:
        table.update(saved)


def test_hawkes_clusters_have_the_branching_ratios_size_and_stay_in_the_horizon() -> None:
    rng = rng_for(1, "test", "hawkes")
    fills = hawkes_fills(rng, np.zeros(20_000), branching=0.7, decay_s=2.0)
    # a cluster holds 1 / (1 - 0.7) = 3.33 fills on average
    assert fills.size / 20_000 == pytest.approx(1.0 / 0.3, rel=0.05)
    assert np.all(np.diff(fills) >= 0.0)
    # descendants come after their parents, with mean delay 2 s: the first generation's mean
    # time is 2 s, later generations later still
    assert 2.0 < fills[fills > 0].mean() < 8.0
    capped = hawkes_fills(rng_for(1, "test", "capped"), np.linspace(0, 10, 50), horizon_s=12.0)
    assert capped.max() <= 12.0 and capped.size >= 50
    again = hawkes_fills(rng_for(1, "test", "capped"), np.linspace(0, 10, 50), horizon_s=12.0)
    assert np.array_equal(capped, again)  # one seed, one stream: the same fills


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1.0, 1e9),
    st.floats(1e3, 1e8),
    st.sampled_from([0.55, 0.8]),
)
def test_the_walk_inverts_the_book_shape(notional: float, c1: float, gamma: float) -> None:
    """Selling C(d) walks exactly d down a side of cumulative depth C (both regimes)."""
    d = walk_bps(notional, c1, gamma)
    c2 = c1 * 2.0**gamma
    back = c1 * (d / 100.0) ** gamma if d <= 200.0 else c2 * (d / 200.0) ** 0.4
    assert back == pytest.approx(notional, rel=1e-9)
    assert walk_bps(notional * 2.0, c1, gamma) > d  # more sold, further walked
    assert walk_bps(0.0, c1, gamma) == 0.0


def test_buckets_trigger_only_once_their_price_is_crossed(paths: Paths) -> None:
    """V2 buckets go when the mark crosses them, V1's when V1's own local price does; every
    bucket once; what is sold is the ladder's share for that venue."""
    assert paths.liquidations
    t = paths.t_ns
    by_book: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in paths.liquidations:
        by_book.setdefault((str(e["venue"]), str(e["symbol"])), []).append(e)
    assert {v for v, _ in by_book} == {"binance", "binance_futures"}
    for (venue, symbol), events in by_book.items():
        bp = _book(paths, venue, symbol)
        role = spec.V2 if venue == "binance_futures" else spec.V1
        assert (bp.spec.kind == InstrumentKind.PERP) == (role == spec.V2)
        prices = [float(e["bucket_price_usd"]) for e in events]
        assert len(set(prices)) == len(prices)  # each bucket once
        share = spec.LIQ_OI_USD[bp.spec.base] * spec.LIQ_VENUE_SHARE[role]
        assert sum(float(e["notional_usd"]) for e in events) <= share + 0.005 * len(
            events
        )  # cents rounded
        for e in events:
            k = int(np.searchsorted(t, int(e["triggered_ns"])))
            assert e["trigger"] == ("mark" if role == spec.V2 else "local_price")
            assert int(e["fills"]) >= 1
            assert int(e["last_fill_ns"]) >= int(e["triggered_ns"])
            # the trigger price crossed the bucket at that step, and not one step before
            bp_trigger = bp.mark if bp.mark is not None else bp.mid
            assert k > int(np.searchsorted(paths.minutes, 0.0))
            bucket = float(e["bucket_price_usd"])
            usd = bp.quote_usd
            if role == spec.V2:
                assert float(bp_trigger[k - 1] * usd[k - 1]) > bucket * 0.98
            assert float(e["bucket_price_usd"]) >= spec.ASSETS[bp.spec.base].price_usd * 0.84
    # the crash (BTC -13 %, SOL -19 %, ALT1 -35 %) goes through most of the 3-15 % ladder
    sol = by_book[("binance_futures", "SOLUSDT")]
    assert len(sol) >= spec.LIQ_BUCKETS - 1
    # nothing fires before the fair-value crash starts
    first = min(int(e["triggered_ns"]) for e in paths.liquidations)
    assert first >= spec.T0_NS + int(spec.CRASH_START_MIN * spec.MINUTE_NS) - spec.MINUTE_NS


def test_liquidations_push_v1_and_v2_below_the_unliquidated_path() -> None:
    """The same seed without the ladder: the liquidated books' mids sit lower while the
    buckets are sold, the other venues do not move."""
    books = spec.books_for(("BTC", "SOL"), pegged=False)
    with_liq, without = _with_and_without(spec.LIQ_OI_USD, 2, books)
    assert not without.liquidations
    for a, b in zip(with_liq.books, without.books, strict=True):
        lower = float(np.min(a.mid / b.mid))
        if a.spec.venue in (spec.V1, spec.V2):
            assert lower < 0.999, a.spec.symbol  # at least 10 bp of extra drop somewhere
            assert np.all(a.depth_bid <= b.depth_bid + 1e-12)  # sold depth is consumed
        else:
            assert lower == pytest.approx(1.0)


def test_wicks_walk_to_their_target_through_a_hawkes_burst(paths: Paths) -> None:
    wicks = {(w["venue"], w["symbol"]): w for w in paths.wicks}
    assert set(wicks) == {
        ("binance", "ALT1USDT"),
        ("binance_futures", "ALT1USDT"),
        ("binance_futures", "SOLUSDT"),
    }
    k = int(np.argmin(np.abs(paths.minutes - spec.CRASH_TROUGH_MIN)))
    step_s = paths.step_ns / 1e9
    for (venue, symbol), w in wicks.items():
        bp = _book(paths, str(venue), str(symbol))
        # the trough prints the target exactly
        assert bp.mid[k] == pytest.approx(float(w["target_price"]), rel=1e-9)
        assert int(w["fills"]) > 40  # 40 immigrants and their descendants
        # the burst: nothing before its 60 s, then the mid steps down fill by fill
        burst = round(spec.WICK_BURST_S / step_s)
        before = bp.mid[k - burst - 20 : k - burst]
        during = bp.mid[k - burst : k + 1]
        assert float(during.min()) >= 0.99 * float(w["target_price"])  # noise aside
        assert float(during[: burst // 4].mean()) > float(during[-burst // 4 :].mean())
        assert float(before.min()) > 1.5 * float(w["target_price"]) or symbol == "SOLUSDT"
    # the SOL perp holds near 140 for at least a minute
    sol = _book(paths, "binance_futures", "SOLUSDT")
    near = np.abs(sol.mid / 140.0 - 1.0) < 0.02
    assert near.sum() * step_s >= 60.0


def test_the_wick_is_the_burst_alone_monotone_down_to_the_trough() -> None:
    """Against the same seed without wick targets: the ratio of the two mids is 1 before the
    burst, falls fill by fill (never rises) over the 60 s, and is the target at the trough."""
    books = spec.books_for(("ALT1",), pegged=False)
    saved = dict(spec.WICK_TARGET)
    wicked, plain = _with_and_without(spec.WICK_TARGET, 3, books)
    k = int(np.argmin(np.abs(wicked.minutes - spec.CRASH_TROUGH_MIN)))
    burst = round(spec.WICK_BURST_S / (wicked.step_ns / 1e9))
    for a, b in zip(wicked.books, plain.books, strict=True):
        ratio = a.mid / b.mid
        if (a.spec.venue, "ALT1") not in saved:
            assert np.allclose(ratio, 1.0)
            continue
        assert np.allclose(ratio[: k - burst], 1.0)
        steps = np.diff(ratio[k - burst : k + 1])
        assert np.all(steps <= 1e-12)  # cumulative fills only ever walk further down
        assert (steps == 0.0).sum() > 5  # steps without a fill: a point process, not a ramp
        target = saved[(a.spec.venue, "ALT1")] * spec.ASSETS["ALT1"].price_usd
        assert a.mid[k] == pytest.approx(target, rel=1e-9)
        assert b.mid[k] > 1.5 * target  # without the burst, no wick
