"""The rule engine: alert states, grouping, inhibition, silences, acknowledgement.

Deterministic: every call takes the time it runs at (the tick's ``ts_ns``, the recording's
clock in a replay), never the wall clock. Two steps per tick:

1. :meth:`Engine.evaluate` applies a :class:`~alerts.rules.Frame` to every rule and returns
   the state changes (:class:`AlertEvent`: pending, firing, resolved). A series without
   data (invalid or stale book, missing from the frame) holds its alert where it is and
   marks it stale: no data is never "resolved".
2. :meth:`Engine.notifications` returns what is due to be sent (:class:`Notification`),
   Alertmanager style: alerts are grouped (by asset by default); a new group waits
   ``group_wait_s``, later changes of a group go out at most every ``group_interval_s``,
   and a group still firing is re-sent every ``repeat_interval_s`` (not once acknowledged).
   Silenced or inhibited alerts are not sent; a "resolved" goes out only for an alert whose
   "firing" went out, and only once.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from alerts.rules import (
    DEFAULT_INHIBITIONS,
    Baseline,
    Frame,
    InhibitSpec,
    RuleSpec,
    Scope,
    Severity,
    change_pct,
)


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class GroupingPolicy:
    """How alerts are batched into notifications (seconds of the engine's clock)."""

    group_by: tuple[str, ...] = ("asset",)
    group_wait_s: float = 0.0
    group_interval_s: float = 10.0
    repeat_interval_s: float = 4 * 3600.0


@dataclass(slots=True)
class Alert:
    """One rule on one scope, from pending to resolved."""

    id: str
    rule: RuleSpec
    scope: Scope
    state: AlertState
    pending_since_ns: int
    firing_since_ns: int | None = None
    resolved_at_ns: int | None = None
    value: float | None = None  # the metric's last value with data
    compared: float | None = None  # what the threshold was compared with (change: percent)
    baseline: float | None = None
    stale: bool = False
    cleared_since_ns: int | None = None
    acknowledged_by: str | None = None
    acknowledged_at_ns: int | None = None
    components: dict[str, float] = field(default_factory=dict)
    notified_firing: bool = False
    notified_resolved: bool = False
    repeats: int = 0
    reason: str = ""  # why it ended other than by its condition: rule_removed, ...

    @property
    def severity(self) -> Severity:
        return self.rule.level

    def field_value(self, name: str) -> str:
        """The value of a matcher field: scope fields, rule, severity, category, labels."""
        if name in ("venue", "symbol", "asset", "instrument", "kind"):
            return str(getattr(self.scope, name))
        if name == "rule":
            return self.rule.name
        if name == "severity":
            return self.rule.severity
        if name == "category":
            return self.rule.category
        if name == "alert_id":
            return self.id
        return self.rule.labels.get(name, "")

    def event(self, ts_ns: int) -> AlertEvent:
        comps = dict(self.components)
        if self.baseline is not None:
            comps["baseline"] = self.baseline
        if self.rule.is_change and self.compared is not None:
            comps[self.rule.condition.value] = self.compared
        return AlertEvent(
            ts_ns=ts_ns,
            alert_id=self.id,
            rule=self.rule.name,
            state=self.state,
            severity=self.rule.severity,
            category=self.rule.category,
            scope=self.scope,
            value=self.value,
            threshold=self.rule.threshold,
            components=comps,
            stale=self.stale,
            summary=self.rule.render_summary(self.scope, self.value)
            + (f" ({END_REASONS.get(self.reason, self.reason)})" if self.reason else ""),
            starts_at_ns=self.firing_since_ns or self.pending_since_ns,
            ends_at_ns=self.resolved_at_ns,
            metric=self.rule.metric,
            labels=dict(self.rule.labels),
            reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A state change of an alert (or, inside a :class:`Notification`, what is sent)."""

    ts_ns: int
    alert_id: str
    rule: str
    state: AlertState
    severity: str
    category: str
    scope: Scope
    value: float | None
    threshold: float
    components: dict[str, float]
    stale: bool
    summary: str
    starts_at_ns: int
    ends_at_ns: int | None
    metric: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # a resolved that is not the condition clearing: see END_REASONS

    def record(self) -> dict[str, Any]:
        """The ``--alerts-out`` line (``"kind": "rule"``)."""
        extra = {"reason": self.reason} if self.reason else {}
        return extra | {
            "ts": self.ts_ns / 1e9,
            "kind": "rule",
            "state": self.state.value,
            "severity": self.severity,
            "scope": self.scope.as_dict(),
            "value": self.value,
            "components": self.components,
            "rule": self.rule,
            "id": self.alert_id,
            "metric": self.metric,
            "stale": self.stale,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert event due for delivery; ``id`` is unique per event (repeats get their own)."""

    id: str
    event: AlertEvent
    group: tuple[str, ...]
    repeat: int = 0


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes every alert whose fields match all ``matchers`` (glob) while active."""

    id: str
    matchers: dict[str, str]
    starts_at_ns: int
    ends_at_ns: int
    created_by: str = ""
    comment: str = ""

    def active(self, ts_ns: int) -> bool:
        return self.starts_at_ns <= ts_ns < self.ends_at_ns

    def matches(self, alert: Alert) -> bool:
        return all(fnmatch.fnmatchcase(alert.field_value(k), v) for k, v in self.matchers.items())


@dataclass(frozen=True, slots=True)
class RestoredAlert:
    """A firing alert of a previous run (from the outbox's database), adopted by the first
    matching series so that a restart neither fires it again nor loses its resolved."""

    alert_id: str
    rule: str
    venue: str
    symbol: str
    asset: str
    firing_since_ns: int
    notified: bool  # its firing notification was stored for delivery


@dataclass(slots=True)
class _Group:
    key: tuple[str, ...]
    alerts: dict[str, Alert] = field(default_factory=dict)  # by alert id
    changed_since_ns: int | None = None
    last_flush_ns: int | None = None


# Why an alert is resolved without its condition clearing: its rule was removed (or
# disabled), or replaced by one that does not carry it over (see Engine.set_rule).
END_REASONS = {
    "rule_removed": "rule removed",
    "rule_disabled": "rule disabled",
    "rule_replaced": "rule replaced",
}


def carries_over(old: RuleSpec, new: RuleSpec) -> bool:
    """A replaced rule keeps its alerts when it still watches the same thing the same way
    at the same severity; its new levels, timing and scope apply from the next tick."""
    return (
        old.metric == new.metric
        and old.condition == new.condition
        and old.severity == new.severity
        and old.category == new.category
        and (not new.is_change or old.baseline_window_s == new.baseline_window_s)
    )


def alert_id(rule: str, scope: Scope, since_ns: int) -> str:
    """Deterministic: the same recording gives the same ids."""
    digest = hashlib.blake2b(f"{rule}|{scope.key()}|{since_ns}".encode(), digest_size=10)
    return digest.hexdigest()


class Engine:
    """Rules over frames, alerts over time. Not thread-safe; one owner (the alert sink)."""

    def __init__(
        self,
        rules: Sequence[RuleSpec],
        grouping: GroupingPolicy | None = None,
        inhibitions: Sequence[InhibitSpec] = DEFAULT_INHIBITIONS,
        history: int = 1000,
    ) -> None:
        self.rules = tuple(r for r in rules if r.enabled)
        self.grouping = grouping or GroupingPolicy()
        self.inhibitions = tuple(inhibitions)
        self.active: dict[tuple[str, Scope], Alert] = {}
        self.resolved: list[Alert] = []  # most recent last, at most ``history``
        self.silences: dict[str, Silence] = {}
        self._history = history
        self._baselines: dict[tuple[str, Scope], Baseline] = {}
        self._matches: dict[tuple[str, Scope], bool] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._restored: dict[tuple[str, str, str, str], RestoredAlert] = {}
        self._restored_acks: dict[str, tuple[str, int]] = {}  # alert id -> (by, at ns)
        self.now_ns = 0

    def restore(self, alerts: Sequence[RestoredAlert]) -> None:
        """Firing alerts of a previous run: each is taken over (same id, still firing, not
        notified again) by the first series of its rule and scope that has data."""
        for a in alerts:
            self._restored[(a.rule, a.venue, a.symbol, a.asset)] = a

    def restore_acks(self, acks: Mapping[str, tuple[str, int]]) -> None:
        """Acknowledgements of a previous run (alert id -> (by, at ns)), applied to the
        firing alerts taken over with :meth:`restore` when they are adopted."""
        for alert_id_, (by, at_ns) in acks.items():
            if self.acknowledge(alert_id_, by, at_ns) is None:
                self._restored_acks[alert_id_] = (by, at_ns)

    # -- rules added, replaced and removed while running ---------------------------------

    def rule(self, name: str) -> RuleSpec | None:
        return next((r for r in self.rules if r.name == name), None)

    def set_rule(self, rule: RuleSpec, ts_ns: int) -> list[AlertEvent]:
        """Add a rule, or replace the rule of that name, between ticks; returns the events
        of the alerts this ends (resolved, with a reason).

        A replacement that :func:`carries_over` keeps each alert whose scope the new rule
        still matches: same id, same state, not notified again; the new threshold, clear
        level, timing and summary judge it from the next tick (so it resolves, or not, by
        the new rule). Every other alert of the old rule ends: a pending one silently, a
        firing one as "resolved" with ``reason`` ``rule_replaced`` (sent only if its firing
        was). A change rule's baselines are kept when its window is unchanged. A disabled
        rule is removed (``rule_disabled``)."""
        if not rule.enabled:
            return self.remove_rule(rule.name, ts_ns, "rule_disabled")
        old = self.rule(rule.name)
        if old is None:
            self.rules = (*self.rules, rule)
            return []
        self.rules = tuple(rule if r.name == rule.name else r for r in self.rules)
        self._forget_matches(rule.name)
        keep = carries_over(old, rule)
        if not keep:
            self._forget_baselines(rule.name)
        events: list[AlertEvent] = []
        for key, alert in list(self.active.items()):
            if key[0] != rule.name:
                continue
            if keep and rule.scope.matches(alert.scope):
                alert.rule = rule
            else:
                self._end(alert, ts_ns, "rule_replaced", events)
        if not keep:
            self._end_restored(old, ts_ns, "rule_replaced", events)
        return events

    def remove_rule(self, name: str, ts_ns: int, reason: str = "rule_removed") -> list[AlertEvent]:
        """Remove a rule between ticks: its pending alerts are dropped, its firing ones
        resolved with ``reason`` (the resolved is sent only where the firing was)."""
        old = self.rule(name)
        if old is None:
            return []
        self.rules = tuple(r for r in self.rules if r.name != name)
        self._forget_matches(name)
        self._forget_baselines(name)
        events: list[AlertEvent] = []
        for key, alert in list(self.active.items()):
            if key[0] == name:
                self._end(alert, ts_ns, reason, events)
        self._end_restored(old, ts_ns, reason, events)
        return events

    def _end(self, alert: Alert, ts: int, reason: str, events: list[AlertEvent]) -> None:
        if alert.state is AlertState.PENDING:
            del self.active[(alert.rule.name, alert.scope)]  # never fired: nothing to tell
            return
        alert.reason = reason
        self._resolve(alert, ts, events)

    def _end_restored(self, rule: RuleSpec, ts: int, reason: str, events: list[AlertEvent]) -> None:
        """Firing alerts of a previous run not yet taken over: ended as well."""
        for key, old in list(self._restored.items()):
            if key[0] != rule.name:
                continue
            del self._restored[key]
            alert = Alert(
                id=old.alert_id,
                rule=rule,
                scope=Scope(old.venue, old.symbol, old.asset),
                state=AlertState.FIRING,
                pending_since_ns=old.firing_since_ns,
                firing_since_ns=old.firing_since_ns,
                notified_firing=old.notified,
            )
            self.active[(rule.name, alert.scope)] = alert
            self._group_of(alert).alerts[alert.id] = alert
            self._end(alert, ts, reason, events)

    def _forget_matches(self, name: str) -> None:
        for key in [k for k in self._matches if k[0] == name]:
            del self._matches[key]

    def _forget_baselines(self, name: str) -> None:
        for key in [k for k in self._baselines if k[0] == name]:
            del self._baselines[key]

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(self, frame: Frame) -> list[AlertEvent]:
        """Apply one tick's observations; returns the state changes, in rule order."""
        ts = frame.ts_ns
        self.now_ns = ts
        events: list[AlertEvent] = []
        for rule in self.rules:
            seen: set[Scope] = set()
            for scope, value in frame.series.get(rule.metric, ()):
                key = (rule.name, scope)
                matched = self._matches.get(key)
                if matched is None:
                    matched = self._matches[key] = rule.scope.matches(scope)
                if not matched:
                    continue
                seen.add(scope)
                comps = frame.components.get((rule.metric, scope))
                self._step(rule, scope, value, ts, events, comps)
            for (name, scope), alert in self.active.items():
                if name == rule.name and scope not in seen and not alert.stale:
                    alert.stale = True  # the series left the frame: no data, held
        return events

    def _step(
        self,
        rule: RuleSpec,
        scope: Scope,
        value: float | None,
        ts: int,
        events: list[AlertEvent],
        components: dict[str, float] | None,
    ) -> None:
        key = (rule.name, scope)
        alert = self.active.get(key)
        if alert is None and self._restored:
            alert = self._adopt(rule, scope)
        compared = value
        baseline_mean: float | None = None
        if rule.is_change and value is not None:
            baseline = self._baselines.get(key)
            if baseline is None:
                baseline = self._baselines[key] = Baseline(rule.baseline_window_s)
            baseline_mean = baseline.mean()
            ready = baseline.span_s() >= rule.baseline_min_s
            if alert is None:  # frozen while pending or firing
                baseline.add(ts, value)
            compared = (
                change_pct(rule, value, baseline_mean)
                if ready and baseline_mean is not None
                else None
            )
            if compared is None and alert is None:
                return
        if value is None or compared is None:
            if alert is not None:
                alert.stale = True
            return
        if alert is None:
            if not rule.active(compared):
                return
            alert = Alert(
                id=alert_id(rule.name, scope, ts),
                rule=rule,
                scope=scope,
                state=AlertState.PENDING,
                pending_since_ns=ts,
            )
            self.active[key] = alert
            self._update(alert, value, compared, baseline_mean, components)
            events.append(alert.event(ts))
            if rule.for_s <= 0:
                self._fire(alert, ts, events)
            return
        self._update(alert, value, compared, baseline_mean, components)
        if alert.state is AlertState.PENDING:
            if not rule.active(compared):
                del self.active[key]  # never fired: back to inactive, nothing to tell
            elif ts - alert.pending_since_ns >= rule.for_s * 1e9:
                self._fire(alert, ts, events)
            return
        if rule.still_active(compared):
            alert.cleared_since_ns = None
            return
        if alert.cleared_since_ns is None:
            alert.cleared_since_ns = ts
        if ts - alert.cleared_since_ns >= rule.keep_firing_for_s * 1e9:
            self._resolve(alert, ts, events)

    def _adopt(self, rule: RuleSpec, scope: Scope) -> Alert | None:
        old = self._restored.pop((rule.name, scope.venue, scope.symbol, scope.asset), None)
        if old is None or rule.is_change:
            # a change rule's baseline is not kept across runs: its alert starts afresh
            # rather than be judged against a baseline learnt from the collapse itself
            return None
        alert = Alert(
            id=old.alert_id,
            rule=rule,
            scope=scope,
            state=AlertState.FIRING,
            pending_since_ns=old.firing_since_ns,
            firing_since_ns=old.firing_since_ns,
            notified_firing=old.notified,
        )
        ack = self._restored_acks.pop(alert.id, None)
        if ack is not None:
            alert.acknowledged_by, alert.acknowledged_at_ns = ack
        self.active[(rule.name, scope)] = alert
        self._group_of(alert).alerts[alert.id] = alert
        return alert

    @staticmethod
    def _update(
        alert: Alert,
        value: float,
        compared: float,
        baseline: float | None,
        components: dict[str, float] | None,
    ) -> None:
        alert.value = value
        alert.compared = compared
        alert.stale = False
        if baseline is not None and alert.state is AlertState.PENDING:
            alert.baseline = baseline
        if components is not None:
            alert.components = dict(components)

    def _fire(self, alert: Alert, ts: int, events: list[AlertEvent]) -> None:
        alert.state = AlertState.FIRING
        alert.firing_since_ns = ts
        events.append(alert.event(ts))
        group = self._group_of(alert)
        group.alerts[alert.id] = alert

    def _resolve(self, alert: Alert, ts: int, events: list[AlertEvent]) -> None:
        alert.state = AlertState.RESOLVED
        alert.resolved_at_ns = ts
        events.append(alert.event(ts))
        del self.active[(alert.rule.name, alert.scope)]
        self.resolved.append(alert)
        if len(self.resolved) > self._history:
            del self.resolved[: len(self.resolved) - self._history]

    def _group_of(self, alert: Alert) -> _Group:
        key = tuple(alert.field_value(f) for f in self.grouping.group_by)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
        return group

    # -- muting -------------------------------------------------------------------------

    def silenced_by(self, alert: Alert, ts_ns: int) -> Silence | None:
        for silence in self.silences.values():
            if silence.active(ts_ns) and silence.matches(alert):
                return silence
        return None

    def inhibited_by(self, alert: Alert) -> Alert | None:
        for spec in self.inhibitions:
            if not _fields_match(alert, spec.target):
                continue
            for source in self.active.values():
                if (
                    source is not alert
                    and source.state is AlertState.FIRING
                    and _fields_match(source, spec.source)
                    and all(source.field_value(f) == alert.field_value(f) for f in spec.equal)
                ):
                    return source
        return None

    def muted(self, alert: Alert, ts_ns: int) -> bool:
        return self.silenced_by(alert, ts_ns) is not None or self.inhibited_by(alert) is not None

    def add_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence

    def remove_silence(self, silence_id: str) -> bool:
        return self.silences.pop(silence_id, None) is not None

    def expire_silences(self, ts_ns: int) -> list[str]:
        gone = [s.id for s in self.silences.values() if s.ends_at_ns <= ts_ns]
        for sid in gone:
            del self.silences[sid]
        return gone

    # -- acknowledgement ----------------------------------------------------------------

    def find(self, alert_id_: str) -> Alert | None:
        for alert in self.active.values():
            if alert.id == alert_id_:
                return alert
        for alert in reversed(self.resolved):
            if alert.id == alert_id_:
                return alert
        return None

    def acknowledge(self, alert_id_: str, by: str, ts_ns: int) -> Alert | None:
        """Mark a firing alert acknowledged: no more repeats (resolved still goes out)."""
        alert = self.find(alert_id_)
        if alert is None or alert.state is not AlertState.FIRING:
            return None
        alert.acknowledged_by = by
        alert.acknowledged_at_ns = ts_ns
        return alert

    # -- notifications ------------------------------------------------------------------

    def notifications(self, ts_ns: int) -> list[Notification]:
        """What is due at ``ts_ns`` under the grouping policy (and not muted)."""
        policy = self.grouping
        out: list[Notification] = []
        for gkey in list(self._groups):
            group = self._groups[gkey]
            changes: list[Alert] = []
            for akey, alert in list(group.alerts.items()):
                if alert.state is AlertState.FIRING:
                    if not alert.notified_firing and not self.muted(alert, ts_ns):
                        changes.append(alert)
                elif alert.notified_firing and not alert.notified_resolved:
                    changes.append(alert)
                else:
                    del group.alerts[akey]  # resolved without having been told: nothing to say
            if not changes:
                group.changed_since_ns = None
            if changes:
                if group.changed_since_ns is None:
                    group.changed_since_ns = ts_ns
                # integer ns: epoch ns as a float loses the last ~8 bits
                due = (
                    group.changed_since_ns + int(policy.group_wait_s * 1e9)
                    if group.last_flush_ns is None
                    else group.last_flush_ns + int(policy.group_interval_s * 1e9)
                )
                if ts_ns >= due:
                    for alert in changes:
                        out.append(self._notify(alert, ts_ns, gkey))
                    group.last_flush_ns = ts_ns
                    group.changed_since_ns = None
            elif group.last_flush_ns is not None and ts_ns - group.last_flush_ns >= int(
                policy.repeat_interval_s * 1e9
            ):
                repeat = [
                    a
                    for a in group.alerts.values()
                    if a.state is AlertState.FIRING
                    and a.notified_firing
                    and a.acknowledged_by is None
                    and not self.muted(a, ts_ns)
                ]
                for alert in repeat:
                    alert.repeats += 1
                    event = alert.event(ts_ns)
                    out.append(
                        Notification(
                            f"{alert.id}:firing:{alert.repeats}", event, gkey, alert.repeats
                        )
                    )
                group.last_flush_ns = ts_ns
            if not group.alerts and group.changed_since_ns is None:
                del self._groups[gkey]
        return out

    @staticmethod
    def _notify(alert: Alert, ts_ns: int, gkey: tuple[str, ...]) -> Notification:
        if alert.state is AlertState.FIRING:
            alert.notified_firing = True
        else:
            alert.notified_resolved = True
        return Notification(f"{alert.id}:{alert.state.value}", alert.event(ts_ns), gkey)

    def firing(self) -> list[Alert]:
        return [a for a in self.active.values() if a.state is AlertState.FIRING]

    def pending(self) -> list[Alert]:
        return [a for a in self.active.values() if a.state is AlertState.PENDING]


def _fields_match(alert: Alert, matchers: dict[str, str]) -> bool:
    return all(fnmatch.fnmatchcase(alert.field_value(k), v) for k, v in matchers.items())


def events_of(notifications: Iterable[Notification]) -> list[AlertEvent]:
    return [n.event for n in notifications]
