"""The demo's clock: its config divides every time setting of the score by the speed;
and its summary.

The daemon in ``liqmon demo`` ticks on wall time while the exchange plays scenario time
``speed`` x faster. The same score on a clock ``speed`` x faster, with every time setting
divided by ``speed``, must give the same numbers tick for tick: the test compresses a
vacuum episode 16x (a power of two, so every time stays exact in binary) and compares the
scores, states, components and mark sensitivity with the uncompressed run.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from monitor.analytics.stage import AnalyticsStage
from monitor.demo import DemoView, demo_config
from monitor.sample import SCORE_NORMAL, SCORE_WARNING, ScoreEvent, TickSample
from monitor.settings import AnalyticsSettings, load_settings
from tests.monitor.analytics_helpers import Book, make_sample

# divisible by 16: the compressed clock stays exact; 1024 s before a funding time (08:00
# UTC), so the funding-time mask (enter points +10 within 5 min) covers the episode's onset
T0 = 1_759_996_800.0 - 1024.0
SYMBOLS = {"binance": ["BTCUSDT"], "okx": ["BTC-USDT"]}
TIME_KEYS = (
    "baseline_half_life_s",
    "scale_half_life_s",
    "rebaseline_after_s",
    "warmup_s",
    "resync_quiet_s",
    "baseline_fast_s",
    "min_dwell_s",
    "display_half_life_s",
    "withdrawal_window_s",
    "scheduled_mask_s",
    "scheduled_every_h",
)
TIME_LISTS = ("enter_s", "exit_s", "mark_windows_s")


def demo_analytics(tmp_path: Path, speed: float) -> AnalyticsSettings:
    path = tmp_path / f"demo-{speed:g}.toml"
    path.write_text(demo_config(SYMBOLS, 1, speed))
    return load_settings([path], env={}).analytics


def test_demo_config_divides_every_time_setting_by_the_speed(tmp_path: Path) -> None:
    base = AnalyticsSettings()
    for speed in (16.0, 120.0):
        scaled = demo_analytics(tmp_path, speed)
        for key in TIME_KEYS:
            assert getattr(scaled, key) == getattr(base, key) / speed, key
        for key in TIME_LISTS:
            assert getattr(scaled, key) == tuple(v / speed for v in getattr(base, key)), key
        # not times: kept
        assert scaled.enter_points == base.enter_points
        assert scaled.weights == base.weights
        assert scaled.fx_source_stale_s == 5.0  # a rate source is a live book: wall seconds
    assert base.withdrawal_window_s == 60.0 and base.mark_windows_s == (60.0, 150.0)
    # the features' rolling median keeps ~10 s of scenario time: at 16x the demo ticks
    # every 62 ms (~1 s of scenario), at 120x every 50 ms (6 s): 2 ticks
    assert demo_analytics(tmp_path, 16.0).smooth_samples == 10
    assert demo_analytics(tmp_path, 120.0).smooth_samples == 2
    # at 1x the demo's analytics are the shipped configuration's
    assert demo_analytics(tmp_path, 1.0) == load_settings([], env={}).analytics


def books_at(t: float) -> list[Book]:
    """Four BTC books and a perp; binance's book empties from t = 900 s to 1200 s, then
    refills. Small deterministic wiggles give the other books' baselines a scale;
    binance's calm depth is flat (its gross-decrease feature sits at its floor)."""
    wiggle = 1.0 + 0.05 * math.sin(t / 7.0)
    drop = 1.0
    spread = 1.0
    if t >= 900:
        drop = max(0.03, math.exp(-(t - 900) / 60.0)) if t < 1200 else 1.0
        spread = 1.0 + 9.0 * (1.0 - drop)
    calm = [
        Book(v, f"BTC{q}", "BTC", q, 100.0, depth_1pct_usd=1e6 * wiggle)
        for v, q in (("okx", "USDT"), ("bybit", "USDT"), ("coinbase", "USD"))
    ]
    perp_mid = 100.1 + (0.5 if 950 <= t < 1100 else 0.0)
    return [
        Book(
            "binance",
            "BTCUSDT",
            "BTC",
            "USDT",
            100.0,
            depth_1pct_usd=1e6 * drop,
            spread_bps=spread,
            slippage_bps=(0.5 / drop, 2.0 / drop, 20.0 / drop),
        ),
        *calm,
        Book(
            "binance_futures",
            "BTCUSDT",
            "BTC",
            "USDT",
            perp_mid,
            kind="perp",
            mark=100.0,
            index=100.0,
            funding=0.0,
        ),
    ]


def run_episode(settings: AnalyticsSettings, scale: float) -> list[TickSample]:
    stage = AnalyticsStage(settings)
    return [stage.process(make_sample((T0 + k) / scale, books_at(float(k)))) for k in range(2700)]


def test_a_compressed_clock_with_the_demo_settings_scores_as_the_scenario_clock(
    tmp_path: Path,
) -> None:
    plain = run_episode(load_settings([], env={}).analytics, 1.0)
    fast = run_episode(demo_analytics(tmp_path, 16.0), 16.0)
    states = [int(s.score_state[0]) for s in plain]
    assert max(states) >= SCORE_WARNING and states[-1] == SCORE_NORMAL  # the episode is real
    for a, b in zip(plain, fast, strict=True):
        assert a.analytics is not None and b.analytics is not None
        np.testing.assert_allclose(b.lvs, a.lvs, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(b.score_state, a.score_state)
        np.testing.assert_allclose(b.components, a.components, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            b.analytics.mark_sensitivity_bps, a.analytics.mark_sensitivity_bps, atol=1e-9
        )
        assert a.assets is not None and b.assets is not None
        np.testing.assert_array_equal(b.assets.state, a.assets.state)
        np.testing.assert_allclose(b.assets.lvs, a.assets.lvs, rtol=1e-9, atol=1e-9)
        assert b.assets.market_state == a.assets.market_state
        assert [e.record()["state"] for e in b.events] == [e.record()["state"] for e in a.events]


def test_the_demo_summary_counts_the_return_to_normal_after_an_episode_not_after_data() -> None:
    """A pegged asset's book goes DATA and back during the cascade's feed faults, after the
    trough, and warns later in its depeg: "NORMAL again" is the end of that episode."""
    start = 1_760_000_000_000_000_000
    minute = 60_000_000_000
    trough = start + 60 * minute
    view = DemoView(io.StringIO(), tty=False, speed=1.0, scenario_start_ns=start, trough_ns=trough)
    view.wall_start = start / 1e9  # speed 1: the scenario clock is the samples' clock
    books = [Book("binance", "WBETHETH", "WBETH", "ETH", 1.07)]

    def at(minutes: float, state: int) -> None:
        ts = start + round(minutes * minute)
        event = ScoreEvent(ts, state, 0, 0.0 if state != 4 else math.nan, (0.0,) * 7, "WBETH")
        view.on_sample(dataclasses.replace(make_sample(ts / 1e9, books), events=(event,)))

    at(62, 4)  # DATA (feed fault) after the trough
    at(64, 0)  # back from DATA: not a recovery
    at(80, 2)  # the depeg: WARNING
    at(85, 3)
    at(95, 2)
    at(100, 0)  # NORMAL again, 40 minutes after the trough
    (line,) = [x for x in view.summary() if "asset:WBETH" in x]
    assert "NORMAL again" in line and "(+40.0 min)" in line, line
