"""Table tests of the rule state machine, grouping, inhibition, silences and acknowledgement.

Each case is a rule, a list of (seconds, value) observations (None: no data), and the
expected state changes and notifications. Times are the engine's clock, as in a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from alerts.engine import AlertState, Engine, GroupingPolicy, Notification, Silence
from alerts.rules import Condition, Frame, InhibitSpec, RuleSpec, Scope, ScopeMatch

S = 1_000_000_000
BTC_BINANCE = Scope("binance", "BTCUSDT", "BTC", "BTC-USDT", "spot")
BTC_OKX = Scope("okx", "BTC-USDT", "BTC", "BTC-USDT", "spot")
ETH_BINANCE = Scope("binance", "ETHUSDT", "ETH", "ETH-USDT", "spot")
NOW_GROUPING = GroupingPolicy(group_wait_s=0, group_interval_s=0, repeat_interval_s=1e9)


def rule(**kw: object) -> RuleSpec:
    base: dict[str, object] = {
        "name": "spread",
        "metric": "spread_bps",
        "condition": Condition.ABOVE,
        "threshold": 10.0,
    }
    base.update(kw)
    return RuleSpec(**base)  # type: ignore[arg-type]


def frame(t_s: float, *points: tuple[str, Scope, float | None]) -> Frame:
    f = Frame(int(t_s * S))
    for metric, scope, value in points:
        f.add(metric, scope, value)
    return f


@dataclass
class Run:
    states: list[tuple[float, str]] = field(default_factory=list)  # (t, state) changes
    sent: list[tuple[float, str]] = field(default_factory=list)  # (t, state) notified
    notes: list[Notification] = field(default_factory=list)


def run(
    engine: Engine,
    series: Sequence[tuple[float, float | None]],
    scope: Scope = BTC_BINANCE,
    metric: str = "spread_bps",
) -> Run:
    out = Run()
    for t, value in series:
        f = frame(t, (metric, scope, value))
        for ev in engine.evaluate(f):
            out.states.append((t, ev.state.value))
        for n in engine.notifications(f.ts_ns):
            out.sent.append((t, n.event.state.value))
            out.notes.append(n)
    return out


STATE_CASES = [
    pytest.param(
        rule(),
        [(0, 5), (1, 11), (2, 12), (3, 9)],
        [(1, "pending"), (1, "firing"), (3, "resolved")],
        id="no for: fires on the first crossing, resolves below the threshold",
    ),
    pytest.param(
        rule(for_s=2),
        [(0, 11), (1, 12), (2, 12), (3, 5)],
        [(0, "pending"), (2, "firing"), (3, "resolved")],
        id="for: pending until the condition held for_s",
    ),
    pytest.param(
        rule(for_s=5),
        [(0, 11), (1, 12), (2, 5), (3, 11), (9, 11)],
        [(0, "pending"), (3, "pending"), (9, "firing")],
        id="pending that clears goes back to inactive silently; the clock restarts",
    ),
    pytest.param(
        rule(clear=6),
        [(0, 11), (1, 9), (2, 7), (3, 5.9)],
        [(0, "pending"), (0, "firing"), (3, "resolved")],
        id="hysteresis: resolves only below the clear level",
    ),
    pytest.param(
        rule(keep_firing_for_s=3),
        [(0, 11), (1, 5), (2, 11), (3, 5), (5, 5), (6, 5)],
        [(0, "pending"), (0, "firing"), (6, "resolved")],
        id="keep_firing_for: a flap back above restarts the keep window",
    ),
    pytest.param(
        rule(),
        [(0, 11), (1, None), (2, None), (100, None), (101, 12)],
        [(0, "pending"), (0, "firing")],
        id="no data holds the firing alert: never resolved",
    ),
    pytest.param(
        rule(),
        [(0, 11), (1, None), (2, 5)],
        [(0, "pending"), (0, "firing"), (2, "resolved")],
        id="data back below resolves",
    ),
    pytest.param(
        rule(condition=Condition.BELOW, threshold=100_000, clear=150_000, metric="depth"),
        [(0, 200_000), (1, 90_000), (2, 120_000), (3, 160_000)],
        [(1, "pending"), (1, "firing"), (3, "resolved")],
        id="below with a clear level above the threshold",
    ),
]


@pytest.mark.parametrize(("spec", "series", "expected"), STATE_CASES)
def test_state_machine(
    spec: RuleSpec, series: list[tuple[float, float | None]], expected: list[tuple[float, str]]
) -> None:
    engine = Engine([spec], NOW_GROUPING)
    assert run(engine, series, metric=spec.metric).states == expected


def test_no_data_marks_the_alert_stale_and_missing_series_too() -> None:
    engine = Engine([rule()], NOW_GROUPING)
    run(engine, [(0, 11)])
    (alert,) = engine.firing()
    assert not alert.stale
    run(engine, [(1, None)])
    assert alert.stale and alert.state is AlertState.FIRING
    engine.evaluate(frame(2, ("spread_bps", BTC_OKX, 1.0)))  # our series absent
    assert alert.stale and alert.state is AlertState.FIRING
    run(engine, [(3, 12)])
    assert not alert.stale


def test_change_rule_against_a_frozen_baseline() -> None:
    spec = rule(
        name="depth_collapse",
        metric="depth",
        condition=Condition.DROP_PCT,
        threshold=50,
        clear=20,
        baseline_window_s=100,
        baseline_min_s=10,
    )
    engine = Engine([spec], NOW_GROUPING)
    calm = [(float(t), 1000.0) for t in range(0, 20)]
    # collapse over time: the baseline must not follow it down while pending/firing
    fall = [(20.0, 600.0), (21.0, 400.0), (22.0, 100.0)]
    for t in range(23, 60):
        fall.append((float(t), 100.0))
    out = run(engine, calm + fall, metric="depth")
    assert out.states == [(21.0, "pending"), (21.0, "firing")]
    (alert,) = engine.firing()
    # the mean of the calm and the first (not yet alerting) fall, then frozen
    assert alert.baseline is not None and abs(alert.baseline - (20 * 1000 + 600) / 21) < 1e-9
    # recovery to 85% of the baseline: a drop of 15% < clear 20%
    out = run(engine, [(61.0, 850.0)], metric="depth")
    assert out.states == [(61.0, "resolved")]


def test_change_rule_waits_for_enough_history() -> None:
    spec = rule(metric="depth", condition=Condition.DROP_PCT, threshold=50, baseline_min_s=10)
    engine = Engine([spec], NOW_GROUPING)
    out = run(engine, [(0, 1000.0), (1, 10.0), (2, 10.0)], metric="depth")
    assert out.states == []


def test_scope_patterns_select_series() -> None:
    spec = rule(scope=ScopeMatch(venue="bin*", asset="BTC"))
    engine = Engine([spec], NOW_GROUPING)
    for scope in (BTC_BINANCE, BTC_OKX, ETH_BINANCE):
        engine.evaluate(frame(0, ("spread_bps", scope, 50.0)))
    assert [a.scope for a in engine.firing()] == [BTC_BINANCE]


# -- grouping -----------------------------------------------------------------------------


def test_group_wait_batches_alerts_of_one_asset() -> None:
    engine = Engine([rule()], GroupingPolicy(group_wait_s=5, group_interval_s=30))
    sent: list[tuple[int, str]] = []
    for t, scope in [(0, BTC_BINANCE), (2, BTC_OKX), (4, None), (5, None), (6, None)]:
        f = frame(t, ("spread_bps", scope, 20.0)) if scope else Frame(t * S)
        engine.evaluate(f)
        sent += [(t, n.event.scope.venue) for n in engine.notifications(t * S)]
    assert sent == [(5, "binance"), (5, "okx")]


def test_group_interval_spaces_later_changes() -> None:
    engine = Engine([rule()], GroupingPolicy(group_wait_s=0, group_interval_s=10))
    sent: list[tuple[int, str, str]] = []
    timeline = {0: (BTC_BINANCE, 20.0), 3: (BTC_OKX, 20.0), 4: (BTC_BINANCE, 1.0)}
    for t in range(0, 12):
        f = frame(t, ("spread_bps", *timeline[t])) if t in timeline else Frame(t * S)
        engine.evaluate(f)
        sent += [(t, n.event.scope.venue, n.event.state) for n in engine.notifications(t * S)]
    assert sent == [(0, "binance", "firing"), (10, "binance", "resolved"), (10, "okx", "firing")]


def test_other_groups_are_independent() -> None:
    engine = Engine([rule()], GroupingPolicy(group_wait_s=0, group_interval_s=60))
    sent = []
    for t, scope in [(0, BTC_BINANCE), (1, ETH_BINANCE)]:
        engine.evaluate(frame(t, ("spread_bps", scope, 20.0)))
        sent += [(t, n.event.scope.asset) for n in engine.notifications(t * S)]
    assert sent == [(0, "BTC"), (1, "ETH")]


def test_repeat_interval_resends_firing_until_acknowledged() -> None:
    engine = Engine(
        [rule()], GroupingPolicy(group_wait_s=0, group_interval_s=1, repeat_interval_s=10)
    )
    out = run(engine, [(float(t), 20.0) for t in range(0, 25)])
    assert out.sent == [(0, "firing"), (10, "firing"), (20, "firing")]
    assert [n.repeat for n in out.notes] == [0, 1, 2]
    assert len({n.id for n in out.notes}) == 3
    (alert,) = engine.firing()
    assert engine.acknowledge(alert.id, "alice", 25 * S) is alert
    out = run(engine, [(float(t), 20.0) for t in range(25, 45)] + [(45.0, 1.0)])
    assert out.sent == [(45, "resolved")]  # no repeats once acknowledged; resolved still sent


def test_resolved_is_sent_once_and_only_after_firing_was_sent() -> None:
    engine = Engine([rule()], GroupingPolicy(group_wait_s=10, group_interval_s=10))
    out = run(engine, [(0, 20.0), (1, 1.0), (20, 1.0), (30, 1.0)])
    assert out.states == [(0, "pending"), (0, "firing"), (1, "resolved")]
    assert out.sent == []  # fired and resolved inside the group wait: nothing to say
    out = run(engine, [(40, 20.0), (50, 20.0), (51, 1.0), (61, 1.0), (80, 1.0)])
    assert out.sent == [(50, "firing"), (61, "resolved")]


# -- inhibition ---------------------------------------------------------------------------


def test_venue_outage_mutes_that_venues_depth_alerts() -> None:
    depth = rule(
        name="depth_low", metric="depth", condition=Condition.BELOW, threshold=100, category="depth"
    )
    outage = rule(
        name="venue_down",
        metric="venue.invalid_fraction",
        condition=Condition.ABOVE,
        threshold=0.5,
        severity="critical",
        category="venue_health",
    )
    engine = Engine([depth, outage], NOW_GROUPING)
    venue_binance = Scope(venue="binance")
    f = frame(
        0,
        ("depth", BTC_BINANCE, 10.0),
        ("depth", BTC_OKX, 10.0),
        ("venue.invalid_fraction", venue_binance, 0.9),
    )
    engine.evaluate(f)
    sent = {(n.event.rule, n.event.scope.venue) for n in engine.notifications(f.ts_ns)}
    assert sent == {("venue_down", "binance"), ("depth_low", "okx")}
    muted = [a for a in engine.firing() if a.scope == BTC_BINANCE]
    assert engine.inhibited_by(muted[0]) is not None


def test_critical_mutes_warning_of_the_same_scope() -> None:
    warn = rule(name="spread_warn", threshold=10, severity="warning", category="spread")
    crit = rule(name="spread_crit", threshold=50, severity="critical", category="spread")
    engine = Engine([warn, crit], NOW_GROUPING)
    f = frame(0, ("spread_bps", BTC_BINANCE, 80.0), ("spread_bps", BTC_OKX, 20.0))
    engine.evaluate(f)
    sent = sorted((n.event.rule, n.event.scope.venue) for n in engine.notifications(f.ts_ns))
    assert sent == [("spread_crit", "binance"), ("spread_warn", "okx")]
    # the critical clears, the warning (still firing) is then sent
    f = frame(1, ("spread_bps", BTC_BINANCE, 20.0), ("spread_bps", BTC_OKX, 20.0))
    engine.evaluate(f)
    sent = sorted((n.event.rule, n.event.state.value) for n in engine.notifications(f.ts_ns))
    assert sent == [("spread_crit", "resolved"), ("spread_warn", "firing")]


def test_custom_inhibition_rule() -> None:
    spec = InhibitSpec(source={"rule": "a"}, target={"rule": "b"}, equal=("asset",))
    a = rule(name="a", metric="m1")
    b = rule(name="b", metric="m2")
    engine = Engine([a, b], NOW_GROUPING, inhibitions=[spec])
    f = frame(0, ("m1", BTC_OKX, 20.0), ("m2", BTC_BINANCE, 20.0), ("m2", ETH_BINANCE, 20.0))
    engine.evaluate(f)
    sent = sorted((n.event.rule, n.event.scope.asset) for n in engine.notifications(f.ts_ns))
    assert sent == [("a", "BTC"), ("b", "ETH")]


# -- silences and acknowledgement ---------------------------------------------------------


def test_silence_mutes_until_it_expires_then_the_alert_goes_out() -> None:
    engine = Engine([rule()], NOW_GROUPING)
    engine.add_silence(Silence("s1", {"venue": "binance", "rule": "spr*"}, 0, 10 * S, "bob"))
    out = run(engine, [(float(t), 20.0) for t in range(0, 12)])
    assert out.sent == [(10, "firing")]
    assert engine.expire_silences(12 * S) == ["s1"]


def test_silence_matching_other_scope_does_not_mute() -> None:
    engine = Engine([rule()], NOW_GROUPING)
    engine.add_silence(Silence("s1", {"asset": "ETH"}, 0, 100 * S))
    assert run(engine, [(0, 20.0)]).sent == [(0, "firing")]


def test_removed_silence_stops_muting() -> None:
    engine = Engine([rule()], NOW_GROUPING)
    engine.add_silence(Silence("s1", {"asset": "BTC"}, 0, 100 * S))
    assert run(engine, [(0, 20.0), (1, 20.0)]).sent == []
    assert engine.remove_silence("s1")
    assert run(engine, [(2, 20.0)]).sent == [(2, "firing")]


def test_acknowledge_only_firing_alerts() -> None:
    engine = Engine([rule(for_s=10)], NOW_GROUPING)
    run(engine, [(0, 20.0)])
    (pending,) = engine.pending()
    assert engine.acknowledge(pending.id, "alice", 1) is None
    assert engine.acknowledge("nope", "alice", 1) is None


def test_ids_are_deterministic_and_new_per_episode() -> None:
    def ids() -> list[str]:
        engine = Engine([rule()], NOW_GROUPING)
        out = run(engine, [(0, 20.0), (1, 1.0), (2, 20.0), (3, 1.0)])
        return [n.id for n in out.notes]

    first = ids()
    assert first == ids()
    assert len(set(first)) == 4


def test_alerts_out_record_shape() -> None:
    engine = Engine([rule()], NOW_GROUPING)
    (_pending, firing) = engine.evaluate(frame(1.5, ("spread_bps", BTC_BINANCE, 20.0)))
    rec = firing.record()
    assert rec["kind"] == "rule" and rec["state"] == "firing" and rec["ts"] == 1.5
    assert rec["scope"] == {"venue": "binance", "symbol": "BTCUSDT", "asset": "BTC"}
    assert rec["value"] == 20.0 and rec["severity"] == "warning" and rec["rule"] == "spread"
    assert set(rec) >= {"ts", "kind", "state", "severity", "scope", "value", "components"}


def test_a_restart_takes_over_firing_alerts_without_firing_them_again() -> None:
    from alerts.engine import RestoredAlert  # noqa: PLC0415

    first = Engine([rule()], NOW_GROUPING)
    sent = run(first, [(0, 20.0)])
    (alert,) = first.firing()
    # a new process: the alert is read back from the database
    second = Engine([rule()], NOW_GROUPING)
    second.restore([RestoredAlert(alert.id, "spread", "binance", "BTCUSDT", "BTC", 0, True)])
    again = run(second, [(5, 20.0), (6, 25.0)])
    assert again.states == [] and again.sent == []  # still firing: nothing new
    (held,) = second.firing()
    assert held.id == alert.id
    done = run(second, [(7, 1.0)])
    assert done.states == [(7, "resolved")] and done.sent == [(7, "resolved")]
    assert done.notes[0].event.alert_id == sent.notes[0].event.alert_id


def test_a_restored_alert_never_notified_is_notified_once() -> None:
    from alerts.engine import RestoredAlert  # noqa: PLC0415

    engine = Engine([rule()], NOW_GROUPING)
    engine.restore([RestoredAlert("a1", "spread", "binance", "BTCUSDT", "BTC", 0, False)])
    out = run(engine, [(1, 20.0), (2, 20.0)])
    assert out.states == [] and out.sent == [(1, "firing")]
    assert out.notes[0].event.alert_id == "a1"
