"""Property tests: every kernel of ``monitor.analytics.kernels`` against its plain-Python
twin in ``monitor.analytics.reference``. No expected value is written by hand: the twin
is the oracle. Stateful kernels are run for several ticks on both sides from the same
state and compared after every tick (state arrays included).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor.analytics import kernels as ak
from monitor.analytics import reference as ref

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# values with NaN, negatives and ties now and then
PRICES = st.one_of(
    st.floats(0.5, 2.0),
    st.sampled_from([1.0, 1.0, 1.5, math.nan, -1.0, 0.0]),
    st.floats(1e-6, 1e6),
)


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(0, 30),
    n_groups=st.integers(1, 6),
    clip=st.floats(0.5, 5.0),
    min_scale=st.floats(0.0, 50.0),
)
def test_group_consensus_matches_twin(
    data: st.DataObject, n: int, n_groups: int, clip: float, min_scale: float
) -> None:
    group = np.array(data.draw(st.lists(st.integers(-1, n_groups), min_size=n, max_size=n)))
    value = np.array(data.draw(st.lists(PRICES, min_size=n, max_size=n)), dtype=np.float64)
    use = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=np.bool_)
    group = group.astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    outs = [
        (np.empty(n_groups), np.empty(n_groups), np.zeros(n_groups, dtype=np.int64))
        for _ in range(2)
    ]
    ak.group_consensus(group, n_groups, value, use, clip, min_scale, *outs[0])
    ref.group_consensus(group, n_groups, value, use, clip, min_scale, *outs[1])
    for a, b in zip(outs[0], outs[1], strict=True):
        assert_same(a, b)


@SETTINGS
@given(data=st.data(), n=st.integers(0, 25), n_assets=st.integers(1, 5))
def test_asset_rollup_matches_twin(data: st.DataObject, n: int, n_assets: int) -> None:
    def floats(lo: float, hi: float, nan: bool = True) -> np.ndarray:
        element = st.one_of(st.floats(lo, hi), st.just(math.nan)) if nan else st.floats(lo, hi)
        return np.array(data.draw(st.lists(element, min_size=n, max_size=n)), dtype=np.float64)

    asset = np.array(data.draw(st.lists(st.integers(-1, n_assets - 1), min_size=n, max_size=n)))
    asset = asset.astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    venue = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    venue = venue.astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    healthy = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    is_perp = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    mid = floats(0.8, 1.25)
    disl = floats(-500, 500)
    basis = floats(-100, 100)
    index_dev = floats(-100, 100)
    peg = floats(-1000, 1000)
    bands = np.array([0.001, 0.005, 0.01, 0.02])
    cum = data.draw(
        hnp.arrays(np.float64, (n, 4, 2), elements=st.floats(0.0, 1e6)).map(
            lambda x: np.cumsum(x, axis=1)
        )
    )
    depth_bid = np.ascontiguousarray(cum[:, :, 0])
    depth_ask = np.ascontiguousarray(cum[:, :, 1])
    consensus = np.array(
        data.draw(
            st.lists(
                st.one_of(st.floats(0.8, 1.25), st.just(math.nan)),
                min_size=n_assets,
                max_size=n_assets,
            )
        )
    )
    outlier = data.draw(st.floats(0.0, 300.0))
    outs = [(np.empty((n_assets, 5), dtype=np.int64), np.empty((n_assets, 7))) for _ in range(2)]
    args = (
        asset, n_assets, venue, healthy, is_perp, mid, disl, basis, index_dev, peg,
        depth_bid, depth_ask, bands, 2, consensus, outlier,
    )  # fmt: skip
    ak.asset_rollup(*args, *outs[0])
    ref.asset_rollup(*args, *outs[1])
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-9, atol=1e-6, equal_nan=True)


def _component_state(n: int, n_feat: int, smooth: int) -> list[np.ndarray]:
    return [
        np.full((n, n_feat, smooth), np.nan),  # ring
        np.zeros(n, dtype=np.int64),  # ring_n
        np.full((n, n_feat, smooth), np.nan),  # window
        np.full((n, n_feat, smooth), -1, dtype=np.int64),  # window_slot
        np.zeros((n, n_feat), dtype=np.int64),  # window_n
        np.full((n, n_feat), np.nan),  # mu
        np.zeros((n, n_feat)),  # mad
        np.zeros(n, dtype=np.int64),  # nobs
        np.full((n, 3), np.nan),  # clock
        np.full((n, 3), np.nan),  # flow
    ]


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(1, 6),
    ticks=st.integers(1, 12),
    smooth=st.integers(1, 5),
    warmup=st.sampled_from([0.0, 2.0, 60.0]),
    quiet=st.sampled_from([0.0, 3.0]),
)
def test_book_components_match_twin_over_ticks(
    data: st.DataObject, n: int, ticks: int, smooth: int, warmup: float, quiet: float
) -> None:
    n_bands, n_notional = 4, 3
    layout = ak.feature_layout(n_bands, n_notional)
    n_feat = layout[6]
    state_k = _component_state(n, n_feat, smooth)
    state_r = [a.copy() for a in state_k]
    band_weights = np.array([0.2, 0.3, 0.3, 0.2])
    sigma_min = np.array([0.2] * 4 + [0.25, 1.0, 1.0, 1.0, 1.0, 1.0, 0.05, 0.25])
    params = np.array(
        [
            data.draw(st.sampled_from([30.0, 14_400.0])),
            data.draw(st.sampled_from([60.0, 86_400.0])),
            data.draw(st.sampled_from([5.0, 21_600.0])),
            warmup,
            quiet,
            60.0,
            0.30,
            0.20,
            0.15,
            0.15,
            0.10,
            0.10,
            data.draw(st.sampled_from([0.0, 3.0, 600.0])),
        ]
    )
    log_notionals = np.log(np.array([1e4, 1e5, 1e6]))
    now = 1_700_000_000.0
    for _ in range(ticks):
        dt = data.draw(st.sampled_from([0.0, 1.0, 1.0, 5.0, 0.5]))
        now += dt
        healthy = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        # depth collapses and recoveries, spreads jumping: every ramp gets exercised
        depth = data.draw(
            hnp.arrays(
                np.float64,
                (n, n_bands),
                elements=st.one_of(st.floats(0.0, 16.0), st.just(math.nan)),
            )
        )
        raw = np.full((n, n_feat), np.nan)
        raw[:, :n_bands] = depth
        raw[:, n_bands] = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 6.0)))
        raw[:, n_bands + 1] = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-1, 1)))
        raw[:, n_bands + 2] = data.draw(
            hnp.arrays(np.float64, n, elements=st.one_of(st.floats(-500, 500), st.just(math.nan)))
        )
        raw[:, n_bands + 3 : n_bands + 6] = data.draw(
            hnp.arrays(np.float64, (n, 3), elements=st.floats(-2.3, 8.0))
        )
        d1 = np.exp(np.nan_to_num(depth[:, 2], nan=5.0)) * 2
        exhausted = data.draw(hnp.arrays(np.bool_, (n, 3)))
        prev_state = np.array(
            data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.int8
        )
        outs = [(np.empty((n, ak.N_LOCAL)), np.empty((n, 5))) for _ in range(2)]
        common = (now, dt, healthy, raw, d1, exhausted, log_notionals, band_weights, 2)
        ak.book_components(*common, sigma_min, prev_state, params, *state_k, *outs[0])
        ref.book_components(*common, sigma_min, prev_state, params, *state_r, *outs[1])
        for a, b in zip(outs[0], outs[1], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
        for a, b in zip(state_k, state_r, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)


@SETTINGS
@given(
    data=st.data(), n=st.integers(0, 20), n_assets=st.integers(1, 4), min_books=st.integers(1, 4)
)
def test_combine_scores_matches_twin(
    data: st.DataObject, n: int, n_assets: int, min_books: int
) -> None:
    healthy = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    asset = np.array(
        data.draw(st.lists(st.integers(-1, n_assets - 1), min_size=n, max_size=n)), dtype=np.int64
    )
    venue = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    s = data.draw(
        hnp.arrays(
            np.float64, (n, ak.N_LOCAL), elements=st.sampled_from([0.0, 0.3, 0.5, 0.95, 1.0])
        )
    )
    weights = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
    aux = np.zeros((n, 5))
    aux[:, 0] = 100.0 * s @ weights
    aux[:, 1] = data.draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 0.9, 1.0])))
    aux[:, 2] = ((s[:, 0] >= 0.5) | (aux[:, 0] >= 40.0)).astype(np.float64)
    aux[:, 3] = data.draw(
        hnp.arrays(np.float64, n, elements=st.one_of(st.just(0.0), st.floats(1.0, 5000.0)))
    )
    outs = [
        (
            np.empty(n),
            np.empty((n, ak.N_POINTS)),
            np.empty(n_assets),
            np.empty((n_assets, ak.N_POINTS)),
            np.empty(n_assets),
            np.empty(ak.N_POINTS + 2),
        )
        for _ in range(2)
    ]
    args = (healthy, asset, n_assets, venue, 3, s, aux, weights, min_books)
    ak.combine_scores(*args, *outs[0])
    ref.combine_scores(*args, *outs[1])
    for a, b in zip(outs[0], outs[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
    # the points always add up to the score, which stays in 0-100
    lvs, points = outs[0][0], outs[0][1]
    ok = np.isfinite(lvs)
    assert np.all((lvs[ok] >= 0) & (lvs[ok] <= 100))
    np.testing.assert_allclose(points[ok].sum(axis=1), lvs[ok], atol=1e-9)


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(1, 8),
    ticks=st.integers(1, 40),
    enter_s=st.sampled_from([(30.0, 20.0, 5.0), (0.0, 0.0, 0.0), (3.0, 2.0, 1.0)]),
    exit_s=st.sampled_from([(180.0, 300.0, 300.0), (0.0, 0.0, 0.0), (4.0, 6.0, 2.0)]),
    dwell=st.sampled_from([0.0, 3.0, 120.0]),
)
def test_step_states_matches_twin_over_ticks(
    data: st.DataObject,
    n: int,
    ticks: int,
    enter_s: tuple[float, float, float],
    exit_s: tuple[float, float, float],
    dwell: float,
) -> None:
    enter = np.array([40.0, 60.0, 80.0])
    exit_ = np.array([30.0, 45.0, 65.0])
    state_k = np.array(
        data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.int8
    )
    state_r = state_k.copy()
    timers_k = np.full((n, 5), np.nan)
    timers_k[:, 0] = 0.0
    timers_r = timers_k.copy()
    now = 0.0
    for _ in range(ticks):
        now += data.draw(st.sampled_from([1.0, 1.0, 2.0, 60.0]))
        value = np.array(
            data.draw(
                st.lists(
                    st.one_of(st.sampled_from([0.0, 29.0, 35.0, 50.0, 70.0, 90.0, math.nan])),
                    min_size=n,
                    max_size=n,
                )
            )
        )
        args = (np.array(enter_s), exit_, np.array(exit_s), dwell)
        changed_k = ak.step_states(now, value, state_k, timers_k, enter, *args)
        changed_r = ref.step_states(now, value, state_r, timers_r, enter, *args)
        assert changed_k == changed_r
        np.testing.assert_array_equal(state_k, state_r)
        np.testing.assert_array_equal(timers_k, timers_r)


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(0, 10),
    n_assets=st.integers(1, 4),
    ticks=st.integers(1, 12),
    alpha=st.sampled_from([1.0, 0.5, 0.045]),
    dwell=st.sampled_from([0.0, 3.0]),
)
def test_score_tick_matches_twin_over_ticks(
    data: st.DataObject, n: int, n_assets: int, ticks: int, alpha: float, dwell: float
) -> None:
    """The fused score kernel (combine, display EWMA, states, first-score bookkeeping)
    against the twins called one after the other, state carried over ticks."""
    entities = n + n_assets + 1
    asset = np.array(
        data.draw(st.lists(st.integers(-1, n_assets - 1), min_size=n, max_size=n)), dtype=np.int64
    )
    venue = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    weights = np.array([0.30, 0.20, 0.15, 0.15, 0.10, 0.10])
    enter, enter_s = np.array([40.0, 60.0, 80.0]), np.array([3.0, 2.0, 1.0])
    exit_, exit_s = np.array([30.0, 45.0, 65.0]), np.array([4.0, 6.0, 2.0])
    state = np.array(
        data.draw(st.lists(st.integers(0, 4), min_size=entities, max_size=entities)), dtype=np.int8
    )
    timers = np.full((entities, 5), np.nan)
    timers[:, 0] = 0.0
    display = np.full(entities, np.nan)
    scored = np.array(
        data.draw(st.lists(st.booleans(), min_size=entities, max_size=entities)), dtype=np.bool_
    )
    sides = [[state, timers, display, scored], [state.copy(), timers.copy(), display.copy()]]
    sides[1].append(scored.copy())
    now = 0.0
    for _ in range(ticks):
        now += data.draw(st.sampled_from([1.0, 1.0, 2.0]))
        healthy = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        s = data.draw(
            hnp.arrays(
                np.float64, (n, ak.N_LOCAL), elements=st.sampled_from([0.0, 0.3, 0.5, 0.95, 1.0])
            )
        )
        aux = np.zeros((n, 5))
        aux[:, 0] = 100.0 * s @ weights
        aux[:, 1] = data.draw(
            hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
        )
        aux[:, 2] = ((s[:, 0] >= 0.5) | (aux[:, 0] >= 40.0)).astype(np.float64)
        aux[:, 3] = data.draw(
            hnp.arrays(np.float64, n, elements=st.one_of(st.just(0.0), st.floats(1.0, 5000.0)))
        )
        outs = [
            (
                np.empty((n, ak.N_POINTS)),
                np.empty((n_assets, ak.N_POINTS)),
                np.empty(n_assets),
                np.empty(ak.N_POINTS + 2),
                np.empty(entities),
                np.empty(entities),
                np.empty(entities, dtype=np.int8),
            )
            for _ in range(2)
        ]
        args = (now, healthy, asset, n_assets, venue, 3, s, aux, weights, 3, alpha)
        limits = (enter, enter_s, exit_, exit_s, dwell)
        moved_k = ak.score_tick(*args, *limits, *sides[0], *outs[0])
        moved_r = ref.score_tick(*args, *limits, *sides[1], *outs[1])
        assert moved_k == moved_r
        for a, b in zip((*sides[0], *outs[0]), (*sides[1], *outs[1]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
        # what the stage does after the kernel when states moved
        for side in sides:
            side[3] |= np.isfinite(outs[0][4])


@given(x=st.one_of(st.floats(allow_nan=True), st.just(math.nan)), a=st.floats(-10, 10))
def test_ramp_matches_twin(x: float, a: float) -> None:
    assert ak.ramp(x, a, a + 1.5) == ref.ramp(x, a, a + 1.5)


def _views(a: np.ndarray) -> np.ndarray:
    """The same values as a strided view, as the pipeline's tick sample hands them over."""
    wide = np.full((*a.shape[:-1], a.shape[-1] * 2), np.nan)
    wide[..., ::2] = a
    return wide[..., ::2]


@SETTINGS
@given(data=st.data(), n=st.integers(0, 12), n_assets=st.integers(1, 4), ticks=st.integers(1, 6))
def test_cross_venue_matches_twin_over_ticks(
    data: st.DataObject, n: int, n_assets: int, ticks: int
) -> None:
    n_bands, n_notional = 4, 3
    n_feat = ak.feature_layout(n_bands, n_notional)[6]

    def floats(shape: int | tuple[int, ...], lo: float, hi: float) -> np.ndarray:
        element = st.one_of(st.floats(lo, hi), st.sampled_from([math.nan, 0.0, -1.0, math.inf]))
        return data.draw(hnp.arrays(np.float64, shape, elements=element))

    asset = np.array(data.draw(st.lists(st.integers(0, n_assets - 1), min_size=n, max_size=n)))
    asset = asset.astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    is_perp = data.draw(hnp.arrays(np.bool_, n))
    ppy = np.where(is_perp, data.draw(st.sampled_from([1095.0, 2190.0, math.nan])), math.nan)
    mark_ma = [np.full((n, 2), np.nan) for _ in range(2)]
    now = 1_700_000_000.0
    for _ in range(ticks):
        now += data.draw(st.sampled_from([1.0, 7.0, 3600.0]))
        valid = data.draw(hnp.arrays(np.bool_, n))
        mid = floats(n, 0.9, 1.1)
        fx = np.where(data.draw(hnp.arrays(np.bool_, n)), 1.0, floats(n, 0.5, 2.0))
        mark = floats(n, 0.9, 1.1)
        index = floats(n, 0.9, 1.1)
        funding = floats(n, -1e-3, 1e-3)
        depth_quote = floats((n, n_bands, 2), 0.0, 1e6)
        depth_usd = (
            depth_quote + np.where(data.draw(hnp.arrays(np.bool_, n)), math.nan, 0.0)[:, None, None]
        )
        spread = floats(n, 0.0, 50.0)
        slip = floats((n, n_notional, 2), 0.0, 500.0)
        alpha = np.array([data.draw(st.sampled_from([1.0, 0.03, 0.5])), 0.013])
        outs = [
            (
                np.empty((2, n), dtype=np.bool_),
                np.empty((ak.N_X, n)),
                np.empty((ak.N_G, n_assets)),
                np.zeros((2, n_assets), dtype=np.int64),
                np.empty((n, n_feat)),
            )
            for _ in range(2)
        ]
        common = (
            valid,
            mid,
            fx,
            mark,
            index,
            funding,
            _views(depth_usd),
            _views(depth_quote),
            spread,
            _views(slip),
            asset,
            n_assets,
            is_perp,
            ppy,
            3.0,
            5.0,
            2,
            alpha,
            (now / 3600.0) % 24.0,
        )
        ak.cross_venue(*common, mark_ma[0], *outs[0])
        ref.cross_venue(*common, mark_ma[1], *outs[1])
        np.testing.assert_array_equal(mark_ma[0], mark_ma[1])
        for a, b in zip(outs[0], outs[1], strict=True):
            np.testing.assert_array_equal(a, b)
