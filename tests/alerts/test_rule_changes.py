"""Rules added, replaced and removed on a running engine, between ticks (the API's rules).

What is checked, per change: the state changes the engine reports, and the notifications
that go out. No duplicate "firing", and no "resolved" for an alert whose "firing" was
never sent. A replacement that watches the same metric the same way at the same severity
carries its alerts over (same id, judged by the new levels); any other replacement and a
removal end them with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from alerts.engine import AlertState, Engine, GroupingPolicy, RestoredAlert, Silence
from alerts.rules import Condition, RuleSpec, Scope, ScopeMatch
from tests.alerts.test_engine import BTC_BINANCE, BTC_OKX, S, frame, rule

NOW = GroupingPolicy(group_wait_s=0, group_interval_s=0, repeat_interval_s=1e9)

Step = tuple[float, float | None]


def tick(engine: Engine, t: float, value: float | None, scope: Scope = BTC_BINANCE) -> list[str]:
    """One tick: the state changes and the notifications, as 'state' / 'sent:state'."""
    f = frame(t, ("spread_bps", scope, value))
    out = [e.state.value for e in engine.evaluate(f)]
    out += [f"sent:{n.event.state.value}" for n in engine.notifications(f.ts_ns)]
    return out


def sent(engine: Engine, t: float) -> list[str]:
    return [f"sent:{n.event.state.value}" for n in engine.notifications(int(t * S))]


def firing_engine(spec: RuleSpec | None = None) -> Engine:
    engine = Engine([spec or rule()], NOW)
    assert tick(engine, 0, 12) == ["pending", "firing", "sent:firing"]
    return engine


def test_a_rule_added_between_ticks_is_evaluated_from_the_next_tick() -> None:
    engine = Engine([], NOW)
    assert tick(engine, 0, 12) == []
    assert engine.set_rule(rule(), 1 * S) == []
    assert tick(engine, 1, 12) == ["pending", "firing", "sent:firing"]


def test_removing_a_rule_resolves_its_firing_alert_once_with_the_reason() -> None:
    engine = firing_engine()
    (alert,) = engine.firing()
    events = engine.remove_rule("spread", 1 * S)
    assert [(e.state, e.reason, e.alert_id) for e in events] == [
        (AlertState.RESOLVED, "rule_removed", alert.id)
    ]
    assert events[0].summary.endswith("(rule removed)")
    assert events[0].record()["reason"] == "rule_removed"
    notes = engine.notifications(1 * S)
    assert [(n.event.state, n.event.reason) for n in notes] == [
        (AlertState.RESOLVED, "rule_removed")
    ]
    # the metric keeps crossing: nothing watches it any more, nothing more is said
    for t in (2, 3, 4):
        assert tick(engine, t, 50) == []
    assert engine.firing() == [] and engine.rules == ()
    assert engine.remove_rule("spread", 5 * S) == []  # unknown: nothing


def test_removing_a_rule_whose_firing_was_never_sent_sends_no_resolved() -> None:
    engine = Engine([rule()], NOW)
    engine.add_silence(Silence("s1", {"rule": "spread"}, 0, 100 * S))
    assert tick(engine, 0, 12) == ["pending", "firing"]  # silenced: not sent
    assert [e.state for e in engine.remove_rule("spread", 1 * S)] == [AlertState.RESOLVED]
    assert sent(engine, 1) == [] and sent(engine, 2) == []


def test_removing_a_rule_drops_its_pending_alert_silently() -> None:
    engine = Engine([rule(for_s=10)], NOW)
    assert tick(engine, 0, 12) == ["pending"]
    assert engine.remove_rule("spread", 1 * S) == []
    assert engine.pending() == [] and sent(engine, 1) == []


def test_disabling_a_rule_through_set_rule_removes_it() -> None:
    engine = firing_engine()
    events = engine.set_rule(rule(enabled=False), 1 * S)
    assert [(e.state, e.reason) for e in events] == [(AlertState.RESOLVED, "rule_disabled")]
    assert engine.rules == ()


CARRY_CASES = [
    pytest.param(
        rule(threshold=20.0),
        [(1, 15)],
        [["resolved", "sent:resolved"]],
        id="higher threshold: the value is now below it, resolved by the new rule",
    ),
    pytest.param(
        rule(threshold=5.0),
        [(1, 8), (2, 9), (3, 4)],
        [[], [], ["resolved", "sent:resolved"]],
        id="lower threshold: still firing, not sent again; resolves under the new level",
    ),
    pytest.param(
        rule(threshold=10.0, clear=6.0),
        [(1, 9), (2, 7), (3, 5)],
        [[], [], ["resolved", "sent:resolved"]],
        id="a clear level added: hysteresis from the next tick",
    ),
    pytest.param(
        rule(keep_firing_for_s=2.0),
        [(1, 5), (2, 5), (3, 5)],
        [[], [], ["resolved", "sent:resolved"]],
        id="keep_firing_for added: the cleared alert keeps firing that long",
    ),
    pytest.param(
        rule(summary="wide {value}", labels={"team": "desk"}),
        [(1, 12), (2, 3)],
        [[], ["resolved", "sent:resolved"]],
        id="summary and labels changed: carried over",
    ),
]


@pytest.mark.parametrize(("new", "steps", "expected"), CARRY_CASES)
def test_a_replacement_watching_the_same_thing_carries_its_alerts_over(
    new: RuleSpec, steps: Sequence[Step], expected: list[list[str]]
) -> None:
    engine = firing_engine()
    (alert,) = engine.firing()
    assert engine.set_rule(new, int(0.5 * S)) == []
    (carried,) = engine.firing()
    assert carried.id == alert.id and carried.rule is new and carried.notified_firing
    assert [tick(engine, t, v) for t, v in steps] == expected
    if expected[-1]:
        (resolved,) = engine.resolved
        assert resolved.id == alert.id and resolved.reason == ""


@pytest.mark.parametrize(
    "new",
    [
        pytest.param(rule(severity="critical"), id="severity"),
        pytest.param(rule(metric="mid"), id="metric"),
        pytest.param(rule(condition=Condition.BELOW, threshold=100.0), id="condition"),
        pytest.param(rule(category="depth"), id="category"),
        pytest.param(rule(scope=ScopeMatch(venue="okx")), id="scope no longer covers it"),
    ],
)
def test_a_replacement_that_watches_something_else_ends_the_alert_then_starts_afresh(
    new: RuleSpec,
) -> None:
    engine = firing_engine()
    (old,) = engine.firing()
    events = engine.set_rule(new, int(0.5 * S))
    assert [(e.state, e.reason, e.alert_id) for e in events] == [
        (AlertState.RESOLVED, "rule_replaced", old.id)
    ]
    assert sent(engine, 0.5) == ["sent:resolved"]
    assert engine.rule("spread") is new and len(engine.rules) == 1


def test_a_new_severity_fires_a_new_alert_after_the_old_one_resolved() -> None:
    engine = firing_engine()
    (old,) = engine.firing()
    engine.set_rule(rule(severity="critical"), int(0.5 * S))
    assert sent(engine, 0.5) == ["sent:resolved"]
    assert tick(engine, 1, 12) == ["pending", "firing", "sent:firing"]
    (new,) = engine.firing()
    assert new.id != old.id and new.rule.severity == "critical"


def test_a_pending_alert_carried_over_keeps_its_start_and_fires_by_the_new_for() -> None:
    engine = Engine([rule(for_s=10)], NOW)
    assert tick(engine, 0, 12) == ["pending"]
    engine.set_rule(rule(for_s=3), int(0.5 * S))
    assert tick(engine, 1, 12) == []
    assert tick(engine, 3, 12) == ["firing", "sent:firing"]
    (alert,) = engine.firing()
    assert alert.pending_since_ns == 0


def test_a_replacement_ending_a_pending_alert_says_nothing() -> None:
    engine = Engine([rule(for_s=10)], NOW)
    assert tick(engine, 0, 12) == ["pending"]
    assert engine.set_rule(rule(for_s=10, severity="critical"), 1 * S) == []
    assert engine.pending() == [] and sent(engine, 1) == []


def test_only_the_scopes_the_new_rule_still_covers_are_carried() -> None:
    engine = Engine([rule()], NOW)
    f = frame(0, ("spread_bps", BTC_BINANCE, 12.0), ("spread_bps", BTC_OKX, 12.0))
    engine.evaluate(f)
    assert len(engine.notifications(0)) == 2
    events = engine.set_rule(rule(scope=ScopeMatch(venue="okx"), threshold=11.0), 1 * S)
    assert [(e.scope.venue, e.reason) for e in events] == [("binance", "rule_replaced")]
    assert [a.scope.venue for a in engine.firing()] == ["okx"]


def test_a_change_rule_keeps_its_baseline_when_carried_over() -> None:
    drop = rule(
        name="depth_drop",
        metric="spread_bps",
        condition=Condition.DROP_PCT,
        threshold=50.0,
        baseline_window_s=100.0,
        baseline_min_s=10.0,
    )
    engine = Engine([drop], NOW)
    for t in range(0, 20):
        assert tick(engine, t, 100.0) == []
    assert tick(engine, 20, 40.0) == ["pending", "firing", "sent:firing"]
    engine.set_rule(msgspec.structs.replace(drop, threshold=70.0, clear=20.0), 21 * S)
    (alert,) = engine.firing()
    assert alert.baseline == 100.0
    assert tick(engine, 22, 40.0) == []  # a 60% drop is past the new clear level
    assert tick(engine, 23, 90.0) == ["resolved", "sent:resolved"]
    # a new window: the old baseline does not apply, the alert ends
    engine.set_rule(msgspec.structs.replace(drop, baseline_window_s=50.0), 24 * S)
    assert tick(engine, 25, 10.0) == []  # no baseline yet for the new window


def test_a_restored_alert_of_a_removed_rule_is_resolved_not_left_firing() -> None:
    engine = Engine([rule()], NOW)
    engine.restore([RestoredAlert("a" * 20, "spread", "binance", "BTCUSDT", "BTC", 0, True)])
    events = engine.remove_rule("spread", 1 * S)
    assert [(e.alert_id, e.state, e.reason) for e in events] == [
        ("a" * 20, AlertState.RESOLVED, "rule_removed")
    ]
    assert sent(engine, 1) == ["sent:resolved"]
    assert tick(engine, 2, 50.0) == []
