"""Cross-venue analytics and the liquidity-vacuum score against hand-checked values.

Samples are built by hand (tests/monitor/analytics_helpers.py) and run through the real
analytics stage; every expected number below is worked out in the comment beside it.
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.analytics import kernels as ak
from monitor.analytics.fx import FxQuote, LiveFx
from monitor.analytics.stage import AnalyticsStage
from monitor.sample import (
    COMPONENTS,
    SCORE_CRITICAL,
    SCORE_DATA,
    SCORE_NORMAL,
    SCORE_STATES,
    SCORE_WARNING,
    SCORE_WATCH,
    TickSample,
)
from monitor.settings import AnalyticsSettings, PegPair
from tests.conftest import OKX_RECORDING, USDM_RECORDING
from tests.monitor.analytics_helpers import Book, make_sample

T0 = 1_760_000_000.0  # a recording's clock


def btc(venue: str, mid: float, **kw: object) -> Book:
    quote = "USD" if venue in ("coinbase", "kraken") else "USDT"
    return Book(venue, f"BTC{quote}", "BTC", quote, mid, **kw)  # type: ignore[arg-type]


def run(stage: AnalyticsStage, ts_s: float, books: list[Book]) -> TickSample:
    return stage.process(make_sample(ts_s, books))


def row(sample: TickSample, venue: str, symbol: str | None = None) -> int:
    return next(
        i
        for i, b in enumerate(sample.books)
        if b.venue == venue and (symbol is None or b.symbol == symbol)
    )


class TestConsensus:
    def test_median_with_outliers_clipped_and_the_outlier_named(self) -> None:
        stage = AnalyticsStage()
        out = run(stage, T0, [btc("binance", 100.0), btc("okx", 101.0), btc("bybit", 130.0)])
        assets = out.assets
        assert assets is not None and out.analytics is not None
        a = assets.row("BTC")
        # median 101, MAD 1 -> scale 1.4826, band 101 +- 4.4478: 130 is clipped off
        expected = (100.0 + 101.0) / 2
        assert assets.consensus_usd[a] == pytest.approx(expected, rel=1e-12)
        b = row(out, "bybit")
        assert out.analytics.dislocation_bps[b] == pytest.approx((130 / expected - 1) * 1e4)
        assert int(assets.outlier_row[a]) == b
        record = out.asset_record(a)
        assert record["outlier"]["venue"] == "bybit"
        assert record["outlier"]["dislocation_bps"] == pytest.approx(
            round((130 / expected - 1) * 1e4, 2)
        )

    def test_a_stale_venue_leaves_the_consensus_and_is_reported_unhealthy(self) -> None:
        stage = AnalyticsStage()
        books = [btc("binance", 100.0), btc("okx", 101.0), btc("bybit", 130.0, stale=True)]
        out = run(stage, T0, books)
        assert out.assets is not None and out.analytics is not None
        a = out.assets.row("BTC")
        assert out.assets.consensus_usd[a] == pytest.approx(100.5)  # (100 + 101) / 2
        assert out.assets.outlier_row[a] == -1  # 100 and 101 are 50 bps from 100.5: not >
        b = row(out, "bybit")
        assert not out.analytics.healthy[b]
        assert out.score_state[b] == SCORE_DATA and math.isnan(out.lvs[b])
        venues = {v["venue"]: v for v in out.asset_record(a)["venues"]}
        assert venues["bybit"]["healthy"] is False and venues["bybit"]["mid_usd"] is None
        assert out.assets.healthy_books[a] == 2 and out.assets.books[a] == 3
        book = out.book_record(b)
        assert book["state"] == "data" and book["book_state"] == "stale" and book["lvs"] is None

    def test_quotes_are_converted_with_the_rows_fx(self) -> None:
        stage = AnalyticsStage()
        out = run(
            stage,
            T0,
            [btc("coinbase", 100.0), btc("binance", 100.0, fx=1.002), btc("okx", 100.0)],
        )
        assert out.analytics is not None
        # USD mids 100, 100.2, 100: median 100, MAD 0 -> the 5 bps floor (0.05), band
        # +-0.15: the 100.2 is clipped off, consensus 100, the USDT book +20 bps
        assert out.analytics.dislocation_bps[row(out, "binance")] == pytest.approx(20.0)

    def test_lowest_print_vs_second_lowest_venue_ranking(self) -> None:
        stage = AnalyticsStage()
        xrp = [
            Book("binance", "XRPUSDT", "XRP", "USDT", 1.40),
            Book("binance", "XRPUSDC", "XRP", "USDC", 1.45),
            Book("coinbase", "XRP-USD", "XRP", "USD", 1.70),
        ]
        sol = [
            Book("binance", "SOLUSDT", "SOL", "USDT", 180.0),
            Book("okx", "SOL-USDT", "SOL", "USDT", 181.0),
        ]
        out = run(stage, T0, xrp + sol)
        assert out.assets is not None
        ranking = out.assets.lowest_ranking()
        # XRP: 1.40 on binance vs the lowest other venue, coinbase 1.70: -1764.7 bps
        assert ranking[0][0] == "XRP"
        assert ranking[0][3] == pytest.approx((1.40 / 1.70 - 1) * 1e4)
        assert out.books[ranking[0][1]].symbol == "XRPUSDT"
        assert out.books[ranking[0][2]].venue == "coinbase"
        assert ranking[1][0] == "SOL" and ranking[1][3] == pytest.approx((180 / 181 - 1) * 1e4)


class TestPerpsAndPegs:
    def test_basis_mark_index_and_annualised_funding(self) -> None:
        settings = AnalyticsSettings(funding_interval_h={"hyperliquid": 1.0})  # type: ignore[dict-item]
        stage = AnalyticsStage(settings)
        books = [
            btc("binance", 100.0),
            btc("coinbase", 100.0),
            Book(
                "binance_futures", "BTCUSDT", "BTC", "USDT", 101.0, kind="perp",
                mark=100.5, index=100.2, funding=0.0001,
            ),
            Book(
                "hyperliquid", "BTC", "BTC", "USDC", 99.0, kind="perp",
                mark=99.0, index=100.0, funding=0.00001,
            ),
        ]  # fmt: skip
        out = run(stage, T0, books)
        assert out.analytics is not None and out.assets is not None
        f, h = row(out, "binance_futures"), row(out, "hyperliquid")
        ba = out.analytics
        assert ba.basis_bps[f] == pytest.approx(100.0)  # 101 vs spot 100
        assert ba.basis_bps[h] == pytest.approx(-100.0)
        assert math.isnan(ba.basis_bps[row(out, "binance")])
        assert ba.mark_basis_bps[f] == pytest.approx((101 - 100.5) / 100.5 * 1e4)
        assert ba.index_deviation_bps[f] == pytest.approx(20.0)  # 100.2 vs 100
        assert ba.funding_annual[f] == pytest.approx(0.0001 * 3 * 365)  # 8 h funding
        assert ba.funding_annual[h] == pytest.approx(0.00001 * 24 * 365)  # hourly
        # perps: dislocation against the perp consensus (median of 101 and 99 = 100)
        assert ba.dislocation_bps[f] == pytest.approx(100.0)
        a = out.assets.row("BTC")
        assert out.assets.basis_bps[a] == pytest.approx(0.0)  # median of +100, -100
        assert out.assets.index_deviation_bps[a] == pytest.approx(20.0)
        venues = {v["venue"]: v for v in out.asset_record(a)["venues"]}
        assert venues["binance_futures"]["type"] == "perp"
        assert venues["binance_futures"]["basis_bps"] == pytest.approx(100.0)
        assert venues["binance"]["basis_bps"] is None

    def test_mark_sensitivity_is_zero_for_a_steady_basis_and_grows_when_it_jumps(self) -> None:
        stage = AnalyticsStage()
        spot = [btc("binance", 100.0), btc("okx", 100.0)]

        def perp(mid: float) -> Book:
            return Book(
                "binance_futures", "BTCUSDT", "BTC", "USDT", mid, kind="perp",
                mark=100.0, index=100.0, funding=0.0,
            )  # fmt: skip

        for k in range(300):
            out = run(stage, T0 + k, [*spot, perp(100.1)])
        assert out.analytics is not None
        f = row(out, "binance_futures")
        assert out.analytics.mark_sensitivity_bps[f] == pytest.approx(0.0, abs=1e-9)
        out = run(stage, T0 + 300, [*spot, perp(102.0)])  # the perp book gaps up
        assert out.analytics is not None
        # marks = median(100 (no funding), 100 + averaged basis, 102): the 1-min average
        # (tau 30 s) moves 0.1 + 1.9 (1 - e^-1/30), the 2.5-min one (tau 75 s) less
        ma60 = 0.1 + 1.9 * (1 - math.exp(-1 / 30))
        ma150 = 0.1 + 1.9 * (1 - math.exp(-1 / 75))
        expected = ((100 + ma60) / (100 + ma150) - 1) * 1e4
        assert out.analytics.mark_sensitivity_bps[f] == pytest.approx(expected)
        assert expected > 2.0

    def test_peg_deviation_against_a_configured_and_a_derived_fair_rate(self) -> None:
        settings = AnalyticsSettings(
            pegs=(
                PegPair(asset="USDE", against="USDT", fair=1.0),
                PegPair(asset="WBETH", against="ETH"),
            )
        )
        stage = AnalyticsStage(settings)
        books = [
            Book("binance", "USDEUSDT", "USDE", "USDT", 0.98),
            Book("bybit", "USDEUSDT", "USDE", "USDT", 0.999),
            Book("binance", "WBETHETH", "WBETH", "ETH", 0.5, fx=4000.0),
            Book("okx", "WBETH-ETH", "WBETH", "ETH", 1.07, fx=4000.0),
            Book("bybit", "WBETHETH", "WBETH", "ETH", 1.07, fx=4000.0),
            Book("binance", "ETHUSDT", "ETH", "USDT", 4000.0),
        ]
        out = run(stage, T0, books)
        assert out.analytics is not None and out.assets is not None
        peg = out.analytics.peg_bps
        assert peg[0] == pytest.approx(-200.0)  # 0.98 / 1 - 1
        assert peg[1] == pytest.approx(-10.0)
        # fair for binance's WBETH: the other venues' median (1.07); never its own price
        assert peg[2] == pytest.approx((0.5 / 1.07 - 1) * 1e4)
        assert peg[3] == pytest.approx((1.07 / statistics_median([0.5, 1.07]) - 1) * 1e4)
        assert out.assets.peg_bps[out.assets.row("USDE")] == pytest.approx(-200.0)
        assert math.isnan(peg[5])


def statistics_median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


class TestAssetDepth:
    def test_venue_sum_and_consolidated_depth_around_the_consensus(self) -> None:
        stage = AnalyticsStage()
        books = [
            btc("binance", 100.0, depth_1pct_usd=1e6),
            btc("okx", 100.0, depth_1pct_usd=2e6),
            btc("coinbase", 100.0, depth_1pct_usd=3e6),
            btc("bybit", 80.0, depth_1pct_usd=4e6),  # wicked 20% away
        ]
        out = run(stage, T0, books)
        assert out.assets is not None
        a = out.assets.row("BTC")
        # each venue's own +-1%, both sides: 2 x (1 + 2 + 3 + 4) M
        assert out.assets.depth_venue_sum_usd[a] == pytest.approx(20e6)
        # consensus 100: the three venues at 100 count in full (2 x 6 M); bybit at 80 has no
        # bid within 1% of 100, and its asks from 80 to 101 lie beyond its 2% band: those
        # between 99 and 101 are not known from the bands, so they add the 2% figure minus
        # itself (0): the consolidated depth is the three venues'
        assert out.assets.depth_consolidated_usd[a] == pytest.approx(12e6)

    def test_consolidated_depth_interpolates_a_venue_off_the_consensus(self) -> None:
        stage = AnalyticsStage()
        books = [btc("binance", 100.0), btc("okx", 100.0), btc("coinbase", 100.5)]
        out = run(stage, T0, books)
        assert out.assets is not None
        a = out.assets.row("BTC")
        r = float(out.assets.consensus_usd[a])
        assert r == pytest.approx(100.0)  # median 100, band +-0.15: 100.5 clipped off
        m = 100.5
        # coinbase bids from 100.5 down to 99: offset 1.5/100.5 = 1.4925%, between the 1%
        # (1.0 M) and 2% (1.46 M) bands; asks from 100.5 up to 101: 0.4975% (0.28..0.68 M)
        bid_off, ask_off = (m - 0.99 * r) / m, (1.01 * r - m) / m
        bid = 1e6 * (1.0 + (1.46 - 1.0) * (bid_off - 0.01) / 0.01)
        ask = 1e6 * (0.28 + (0.68 - 0.28) * (ask_off - 0.001) / 0.004)
        assert out.assets.depth_consolidated_usd[a] == pytest.approx(4e6 + bid + ask)


class TestLiveFx:
    def test_usd_venue_books_measure_the_stablecoins_triangulating_where_needed(self) -> None:
        fx = LiveFx(("USDT", "USDC"))
        quotes = [
            FxQuote(0, "kraken", "USDC", "USD"),
            FxQuote(1, "coinbase", "USDT", "USDC"),
        ]
        fx.observe(
            10**9,
            quotes,
            np.array([True, True]),
            np.array([1.0005, 0.999]),
            np.array([0.1, 0.1]),
            frozenset(),
            {},
        )
        usd, assumed = fx.rates(["USDC", "USDT", "USD"], lambda *_: None)
        assert usd.tolist() == pytest.approx([1.0005, 0.999 * 1.0005, 1.0])
        assert not assumed.any()

    def test_the_fallback_flag_is_raised_after_the_carry_and_a_stale_source_is_not_used(
        self,
    ) -> None:
        fx = LiveFx(("USDT",), source_stale_s=5.0, carry_s=60.0)
        quote = [FxQuote(0, "kraken", "USDT", "USD")]
        healthy, mid = np.array([True]), np.array([1.003])
        fx.observe(0, quote, healthy, mid, np.array([1.0]), frozenset(), {})
        fx.at(30 * 10**9)
        usd, assumed = fx.rates(["USDT"], lambda *_: None)
        assert usd[0] == 1.003 and not assumed[0] and fx.age_s("USDT") == 30.0  # carried
        # the source book has not updated for 6 s: stale at 5 s, not a measurement
        fx.observe(50 * 10**9, quote, healthy, np.array([1.01]), np.array([6.0]), frozenset(), {})
        fx.at(61 * 10**9)
        usd, assumed = fx.rates(["USDT"], lambda *_: None)
        assert usd[0] == 1.0 and assumed[0]  # 61 s since the last good value: 1.0, assumed
        assert fx.age_s("USDT") == 61.0

    def test_a_stressed_venue_never_prices_a_currency(self) -> None:
        fx = LiveFx(("USDT",))
        quote = [FxQuote(0, "kraken", "USDT", "USD")]
        fx.observe(
            0, quote, np.array([True]), np.array([0.95]), np.array([0.1]), frozenset({"kraken"}), {}
        )
        usd, assumed = fx.rates(["USDT"], lambda *_: None)
        assert usd[0] == 1.0 and assumed[0]

    def test_small_moves_are_not_republished(self) -> None:
        fx = LiveFx(("USDT",), min_move_bps=0.5)
        quote = [FxQuote(0, "kraken", "USDT", "USD")]
        for t, m in enumerate((1.0002, 1.00023, 1.0003)):
            fx.observe(
                t * 10**9, quote, np.array([True]), np.array([m]), np.array([0.1]), frozenset(), {}
            )
            if t == 1:
                assert fx.rates(["USDT"], lambda *_: None)[0][0] == 1.0002  # 0.3 bp: kept
        assert fx.rates(["USDT"], lambda *_: None)[0][0] == 1.0003  # 1 bp: republished

    def test_the_stage_reports_each_rate_and_its_age(self) -> None:
        stage = AnalyticsStage()
        books = [
            Book("kraken", "USDT/USD", "USDT", "USD", 1.0004),
            btc("binance", 100.0, fx=1.0, fx_assumed=True),
            btc("kraken", 100.0),
        ]
        out = run(stage, T0, books)
        assert out.fx is not None
        rows = {r["currency"]: r for r in out.fx_records()}
        assert rows["USDT"] == {
            "ts": T0, "kind": "fx", "currency": "USDT", "usd": 1.0, "assumed": True, "age_s": None,
        }  # fmt: skip
        # the next tick's rate is the measured one (the pipeline asks the stage's LiveFx)
        stage.prepare(round((T0 + 1) * 1e9))
        usd, assumed = stage.fx.rates(["USDT"], lambda *_: None)
        assert usd[0] == 1.0004 and not assumed[0]
        assert stage.fx.age_s("USDT") == pytest.approx(1.0)


def states_for(values: list[tuple[float, float]], **kw: float) -> list[int]:
    """Run one entity through (time, score) ticks; its state after each."""
    s = AnalyticsSettings(**kw)  # type: ignore[arg-type]
    state = np.array([SCORE_NORMAL], dtype=np.int8)
    timers = np.full((1, 5), np.nan)
    timers[0, 0] = 0.0
    out = []
    for t, v in values:
        ak.step_states(
            t,
            np.array([v]),
            state,
            timers,
            np.array(s.enter_points),
            np.array(s.enter_s),
            np.array(s.exit_points),
            np.array(s.exit_s),
            s.min_dwell_s,
        )
        out.append(int(state[0]))
    return out


def steady(value: float, start: float, end: float) -> list[tuple[float, float]]:
    return [(float(t), value) for t in range(int(start), int(end))]


class TestStateMachine:
    def test_watch_is_entered_after_30_s_at_40_not_before(self) -> None:
        got = states_for(steady(45.0, 1000, 1031))
        assert got[29] == SCORE_NORMAL  # 29 s at >= 40
        assert got[30] == SCORE_WATCH  # 30 s

    def test_a_dip_restarts_the_enter_clock(self) -> None:
        ticks = [*steady(45.0, 1000, 1020), (1020.0, 39.0), *steady(45.0, 1021, 1060)]
        got = states_for(ticks)
        assert SCORE_WATCH not in got[:50]  # 1021 + 30 = 1051 is the first WATCH tick
        assert got[51] == SCORE_WATCH

    def test_escalation_is_immediate_to_the_highest_level_held(self) -> None:
        got = states_for(steady(85.0, 1000, 1010))
        assert got[4] == SCORE_NORMAL and got[5] == SCORE_CRITICAL  # 5 s at >= 80

    def test_warning_needs_20_s_at_60(self) -> None:
        got = states_for(steady(65.0, 1000, 1025))
        assert got[19] == SCORE_NORMAL and got[20] == SCORE_WARNING

    def test_de_escalation_is_one_level_at_a_time_with_exit_time_and_dwell(self) -> None:
        ticks = steady(90.0, 0, 10) + steady(10.0, 10, 2000)
        got = states_for(ticks)
        changes = [
            (t, s) for t, (prev, s) in enumerate(zip([0, *got], got, strict=False)) if prev != s
        ]
        # CRITICAL at 5 s; below 65 from 10 s: 300 s -> WARNING at 310; then 300 s below 45
        # -> WATCH at 610; then 180 s below 30 -> NORMAL at 790
        assert changes == [
            (5, SCORE_CRITICAL),
            (310, SCORE_WARNING),
            (610, SCORE_WATCH),
            (790, SCORE_NORMAL),
        ]

    def test_hysteresis_a_score_between_exit_and_enter_holds_the_level(self) -> None:
        got = states_for(steady(45.0, 0, 40) + steady(35.0, 40, 2000))
        assert got[30] == SCORE_WATCH and set(got[30:]) == {SCORE_WATCH}  # 35 >= exit 30

    def test_minimum_dwell_holds_a_short_lived_level(self) -> None:
        got = states_for(steady(45.0, 0, 31) + steady(0.0, 31, 400), exit_s=(10.0, 10.0, 10.0))
        # WATCH at 30; below 30 for 10 s by 41, but the 120 s dwell holds it until 150
        assert got[149] == SCORE_WATCH and got[150] == SCORE_NORMAL

    def test_no_score_is_data_but_warning_and_critical_are_held(self) -> None:
        assert states_for([(0.0, 10.0), (1.0, math.nan)]) == [SCORE_NORMAL, SCORE_DATA]
        held = states_for(steady(70.0, 0, 21) + steady(math.nan, 21, 2000))
        assert held[20] == SCORE_WARNING and set(held[21:]) == {SCORE_WARNING}
        back = states_for([(0.0, math.nan), (1.0, 10.0)])
        assert back == [SCORE_DATA, SCORE_NORMAL]


class TestScore:
    def calm(self, venue: str, **kw: object) -> Book:
        return btc(venue, 100.0, **kw)

    def stressed(self, venue: str) -> Book:
        # 1% depth -95%, asks only -50% (bid-side vacuum), spread x20, the 100k sale
        # exhausts the book
        return btc(
            venue,
            100.0,
            depth_1pct_usd=5e4,
            ask_depth_factor=10.0,
            spread_bps=20.0,
            slippage_bps=(30.0, 200.0, 400.0),
            exhausted=(False, True, True),
        )

    def test_a_venue_in_warning_stops_pricing_its_currency_until_back_to_normal(
        self,
    ) -> None:
        """The stressed venues follow the states tick by tick: into WARNING, out of the FX
        sources; back to NORMAL, a source again (the set is kept while no state moves)."""
        stage = AnalyticsStage()
        venues = ["binance", "okx", "bybit", "kraken"]
        usdt = Book("kraken", "USDT/USD", "USDT", "USD", 1.0004)
        t = T0

        def tick(stressed: str | None) -> TickSample:
            nonlocal t
            books = [self.stressed(v) if v == stressed else self.calm(v) for v in venues]
            t += 1
            return run(stage, t, [usdt, *books])

        for _ in range(300):
            out = tick(None)
        assert stage.fx.sources == {"USDT": 1}
        for _ in range(30):
            out = tick("kraken")
        assert out.score_state[row(out, "kraken", "BTCUSD")] >= SCORE_WARNING
        assert stage.fx.sources == {}  # kraken's USDT/USD book is no source now
        for _ in range(2000):
            out = tick(None)
            if out.score_state[row(out, "kraken", "BTCUSD")] == SCORE_NORMAL:
                break
        assert out.score_state[row(out, "kraken", "BTCUSD")] == SCORE_NORMAL
        assert stage.fx.sources == {"USDT": 1}
        out = tick(None)  # no state moves: the same sources
        assert stage.fx.sources == {"USDT": 1}

    def test_a_vacuum_scores_with_its_components_and_walks_the_states_back(self) -> None:
        stage = AnalyticsStage()
        venues = ["binance", "okx", "bybit", "coinbase"]
        t = T0
        for _ in range(300):  # calm: the baselines form (warm-up 60 s)
            out = run(stage, t, [self.calm(v) for v in venues])
            t += 1
        assert np.all(out.lvs == 0.0) and np.all(out.score_state == SCORE_NORMAL)
        assert out.events == ()  # a first score is not a change
        events = []
        for _ in range(30):  # binance's book empties
            out = run(stage, t, [self.stressed("binance"), *(self.calm(v) for v in venues[1:])])
            events += out.events
            t += 1
        b = row(out, "binance")
        points = dict(zip(COMPONENTS, out.components[b], strict=True))
        # depth: all four bands far below 0.6 x baseline: s_D = 1 -> 30 points; spread
        # ln 20 vs ln 1 = 3.0 > 6 sigma_min: 15; impact exhausted: 15; asymmetry
        # (0.05-0.5)/(0.55) = -0.82 vs 0: 10; withdrawal on the drop: 20
        assert points["depth"] == pytest.approx(30.0)
        assert points["spread"] == pytest.approx(15.0)
        assert points["impact"] == pytest.approx(15.0)
        assert points["asymmetry"] == pytest.approx(10.0)
        assert out.lvs[b] == pytest.approx(sum(points.values()))
        assert out.lvs[b] >= 80.0
        assert out.score_state[b] == SCORE_CRITICAL
        assert all(out.score_state[row(out, v)] == SCORE_NORMAL for v in venues[1:])
        first = next(e for e in events if e.venue == "binance")
        record = first.record()
        assert record["kind"] == "score" and record["state"] == "critical"
        assert record["scope"] == {"venue": "binance", "symbol": "BTCUSDT", "asset": "BTC"}
        assert record["severity"] == 3 and record["value"] >= 80.0
        assert set(record["components"]) == set(COMPONENTS)
        # recovery: back one level at a time, baselines untouched by the episode
        seen = []
        for _ in range(1000):
            out = run(stage, t, [self.calm(v) for v in venues])
            seen += [SCORE_STATES[e.state] for e in out.events if e.venue == "binance"]
            t += 1
        assert seen == ["warning", "watch", "normal"]
        assert out.lvs[b] == 0.0

    def test_stale_books_are_data_with_an_event_and_no_score(self) -> None:
        stage = AnalyticsStage()
        books = [self.calm(v) for v in ("binance", "okx")]
        run(stage, T0, books)
        out = run(stage, T0 + 1, [self.calm("binance", stale=True), self.calm("okx")])
        b = row(out, "binance")
        assert out.score_state[b] == SCORE_DATA and math.isnan(out.lvs[b])
        (event,) = [e for e in out.events if e.venue == "binance"]
        assert event.record()["state"] == "data" and event.record()["value"] is None
        assert out.changed[b]


def test_replay_alerts_out_and_metrics_out_kinds(tmp_path: Path) -> None:
    metrics, alerts = tmp_path / "m.jsonl", tmp_path / "a.jsonl"
    proc = subprocess.run(
        [
            sys.executable, "-m", "monitor", "replay", str(OKX_RECORDING), str(USDM_RECORDING),
            "--metrics-out", str(metrics), "--alerts-out", str(alerts),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    by_kind: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        by_kind.setdefault(str(line["kind"]), []).append(line)
    assert set(by_kind) == {"book", "asset", "fx"}
    book = by_kind["book"][0]
    assert {"stale", "lvs", "state", "components", "book_state"} <= book.keys()
    asset = by_kind["asset"][0]
    assert list(asset)[:11] == [
        "ts", "kind", "asset", "consensus_usd", "venues", "outlier", "depth_1pct_usd",
        "lvs", "state", "components", "lowest",
    ]  # fmt: skip
    assert set(asset["venues"][0]) >= {  # type: ignore[index]
        "venue", "symbol", "type", "mid_usd", "dislocation_bps", "basis_bps", "healthy",
    }  # fmt: skip
    assert set(by_kind["fx"][0]) == {"ts", "kind", "currency", "usd", "assumed", "age_s"}
    # the recordings are of different days: the first one's books go stale in the
    # silence before the second, each a DATA event in recorded time
    events = [json.loads(x) for x in alerts.read_text().splitlines()]
    events = [e for e in events if e["kind"] == "score"]  # rule events: tests/alerts
    assert events
    first_ts = min(float(line["ts"]) for line in lines)  # type: ignore[arg-type]
    for e in events:
        assert set(e) == {
            "ts", "kind", "state", "severity", "scope", "value", "components",
        }  # fmt: skip
        assert e["kind"] == "score" and e["state"] in SCORE_STATES
        assert set(e["scope"]) == {"venue", "symbol", "asset"}
        assert e["ts"] >= first_ts
    assert with_gzip_ts(USDM_RECORDING) <= events[0]["ts"]
    assert {e["state"] for e in events} <= {"data", "normal"}  # stale, then back


def with_gzip_ts(path: Path) -> float:
    with gzip.open(path, "rt") as f:
        return float(json.loads(f.readline())["ts"])


def test_severity_order_is_the_state_order() -> None:
    assert [
        SCORE_STATES[s] for s in (SCORE_NORMAL, SCORE_WATCH, SCORE_WARNING, SCORE_CRITICAL)
    ] == [
        "normal",
        "watch",
        "warning",
        "critical",
    ]


def test_enter_points_are_raised_around_funding_times() -> None:
    stage = AnalyticsStage()
    midnight = 1_760_054_400.0  # 2025-10-10 00:00:00 UTC
    assert list(stage.enter_points_at(midnight + 120)) == [50.0, 70.0, 90.0]  # 00:02
    assert list(stage.enter_points_at(midnight + 8 * 3600 - 300)) == [50.0, 70.0, 90.0]  # 07:55
    assert list(stage.enter_points_at(midnight + 600)) == [40.0, 60.0, 80.0]  # 00:10


def test_the_display_score_is_an_ewma_of_the_score() -> None:
    stage = AnalyticsStage()
    books = [btc(v, 100.0) for v in ("binance", "okx")]
    out = run(stage, T0, books)
    assert out.analytics is not None
    assert out.analytics.lvs_smoothed.tolist() == [0.0, 0.0]


def test_breadth_multiplies_a_local_score_by_the_stress_of_the_other_books() -> None:
    # four BTC books on four venues, equal weight (beta 1); three are stressed (depth and
    # withdrawal full: 30 + 20 = 50 points), one calm but for its asymmetry (10 points)
    n = 4
    s = np.zeros((n, ak.N_LOCAL))
    s[:3, ak.K_DEPTH] = 1.0
    s[:3, ak.K_WITHDRAWAL] = 1.0
    s[3, ak.K_ASYMMETRY] = 1.0
    weights = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
    aux = np.zeros((n, 5))
    aux[:, 0] = [50.0, 50.0, 50.0, 10.0]
    aux[:, 2] = [1.0, 1.0, 1.0, 0.0]  # stressed: s_D >= 0.5 or L >= 40
    aux[:, 3] = 1.0
    book_lvs, book_points = np.empty(n), np.empty((n, ak.N_POINTS))
    asset_lvs, asset_points, breadth = np.empty(1), np.empty((1, ak.N_POINTS)), np.empty(1)
    market = np.empty(ak.N_POINTS + 2)
    ak.combine_scores(
        np.ones(n, dtype=np.bool_), np.zeros(n, dtype=np.int64), 1, np.arange(n, dtype=np.int64),
        n, s, aux, weights, 3, book_lvs, book_points, asset_lvs, asset_points, breadth, market,
    )  # fmt: skip
    # book 0: 2 of the 3 others stressed, B = 0.67 >= 0.5 -> x1.5: 75, breadth 25 points
    # book 3: the 3 others stressed -> 10 x 1.5 = 15; a venue alone has no breadth
    assert book_lvs.tolist() == pytest.approx([75.0, 75.0, 75.0, 15.0])
    assert book_points[0].tolist() == pytest.approx([30, 20, 0, 0, 0, 0, 25])
    # the asset: mean points 22.5 + 15 + 2.5 + 20 (breadth) = 60; its own breadth 3/4 ->
    # x1.5 = 90, the extra 30 in breadth
    assert asset_lvs[0] == pytest.approx(90.0) and breadth[0] == pytest.approx(0.75)
    assert asset_points[0].tolist() == pytest.approx([22.5, 15, 0, 0, 2.5, 0, 50])
    assert market[0] == pytest.approx(90.0)


def test_the_depth_and_spread_override_lifts_a_score_to_80() -> None:
    s = np.zeros((1, ak.N_LOCAL))
    s[0, ak.K_DEPTH] = 0.9
    s[0, ak.K_SPREAD] = 0.5
    aux = np.array([[100 * (0.3 * 0.9 + 0.15 * 0.5), 0.9, 1.0, 1.0, -1.0]])  # L = 34.5
    out = np.empty(1)
    points = np.empty((1, ak.N_POINTS))
    ak.combine_scores(
        np.ones(1, dtype=np.bool_), np.zeros(1, dtype=np.int64), 1, np.zeros(1, dtype=np.int64),
        1, s, aux, np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10]), 3, out, points,
        np.empty(1), np.empty((1, ak.N_POINTS)), np.empty(1), np.empty(ak.N_POINTS + 2),
    )  # fmt: skip
    assert out[0] == 80.0 and points[0, ak.K_BREADTH] == pytest.approx(80.0 - 34.5)


def test_a_valid_book_without_a_usd_rate_is_scored_but_stays_out_of_the_consensus() -> None:
    stage = AnalyticsStage()
    books = [btc("binance", 100.0), btc("okx", 101.0), btc("bybit", 90.0, fx=math.nan)]
    out = run(stage, T0, books)
    assert out.assets is not None and out.analytics is not None
    b = row(out, "bybit")
    assert out.assets.consensus_usd[out.assets.row("BTC")] == pytest.approx(100.5)
    assert not out.analytics.healthy[b] and math.isnan(out.analytics.mid_usd[b])
    assert out.score_state[b] == SCORE_NORMAL and out.lvs[b] == 0.0


def test_the_extended_sample_is_a_plain_value_that_pickles() -> None:
    stage = AnalyticsStage()
    out = run(stage, T0, [btc("binance", 100.0), btc("okx", 100.0)])
    again = pickle.loads(pickle.dumps(out))
    assert again.assets is not None and again.assets.assets == ("BTC",)
    assert again.lvs.tolist() == out.lvs.tolist()
    assert again.book_record(0) == out.book_record(0)
    assert again.asset_records() == out.asset_records()
