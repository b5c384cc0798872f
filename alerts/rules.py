"""Alert rules: what is watched, where, and when it counts. Pure: no I/O, no clock.

A rule names one metric of the observation frame (see :class:`Frame`), a scope (glob
patterns on venue, symbol, asset, instrument and kind), a condition and its timing:

- ``above`` / ``below`` a ``threshold``; ``clear`` is the hysteresis level (a firing
  ``above`` alert resolves only once the value is below ``clear``; default: the threshold);
- ``drop_pct`` / ``rise_pct``: the change in percent against a baseline, the mean of the
  series over ``baseline_window_s`` (frozen while the alert is pending or firing, so a slow
  collapse does not drag its own baseline down);
- ``for_s``: how long the condition must hold before the alert fires (pending until then);
- ``keep_firing_for_s``: how long a firing alert keeps firing after the condition cleared.

Rules are frozen msgspec structs, loaded from TOML (``[[rules]]`` tables, see
config/rules.toml) with errors that name the file and the key.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

from monitor.errors import ConfigError

RuleName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class Severity(IntEnum):
    """Ordered: a subscription's ``min_severity`` takes this and everything above."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (info, warning or critical)") from None


class Condition(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    DROP_PCT = "drop_pct"  # (baseline - value) / baseline * 100 >= threshold
    RISE_PCT = "rise_pct"  # (value - baseline) / baseline * 100 >= threshold


class ScopeMatch(Struct, frozen=True, forbid_unknown_fields=True):
    """Glob patterns (``*``, ``?``, ``[..]``) on a series' scope; ``*`` matches anything,
    including the empty field of an asset-level or venue-level series."""

    venue: str = "*"
    symbol: str = "*"
    asset: str = "*"
    instrument: str = "*"
    kind: str = "*"

    def matches(self, scope: Scope) -> bool:
        return (
            _glob(self.venue, scope.venue)
            and _glob(self.symbol, scope.symbol)
            and _glob(self.asset, scope.asset)
            and _glob(self.instrument, scope.instrument)
            and _glob(self.kind, scope.kind)
        )


def _crosses(condition: Condition, value: float, level: float) -> bool:
    if condition is Condition.ABOVE:
        return value > level
    if condition is Condition.BELOW:
        return value < level
    return value >= level


def _glob(pattern: str, value: str) -> bool:
    return pattern == "*" or fnmatch.fnmatchcase(value, pattern)


class RuleSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """One ``[[rules]]`` table."""

    name: RuleName
    metric: Annotated[str, Meta(min_length=1)]
    condition: Condition
    threshold: float
    severity: Annotated[str, Meta(pattern=r"^(info|warning|critical)$")] = "warning"
    scope: ScopeMatch = ScopeMatch()
    clear: float | None = None
    for_s: NonNegativeFloat = 0.0
    keep_firing_for_s: NonNegativeFloat = 0.0
    baseline_window_s: PositiveFloat = 1800.0
    baseline_min_s: NonNegativeFloat = 300.0  # no baseline (no alert) before this much history
    category: str = ""  # inhibition groups: "depth", "venue_health", "score", ...
    labels: dict[str, str] = {}
    summary: str = "{rule} {value}"
    enabled: bool = True

    @property
    def level(self) -> Severity:
        return Severity.parse(self.severity)

    @property
    def is_change(self) -> bool:
        return self.condition in (Condition.DROP_PCT, Condition.RISE_PCT)

    def clear_level(self) -> float:
        return self.threshold if self.clear is None else self.clear

    def active(self, value: float) -> bool:
        """The condition holds (for an alert not yet firing). Change rules get the change."""
        return _crosses(self.condition, value, self.threshold)

    def still_active(self, value: float) -> bool:
        """For a firing alert: the value has not crossed back over the clear level."""
        return _crosses(self.condition, value, self.clear_level())

    def render_summary(self, scope: Scope, value: float | None) -> str:
        fields = {
            "rule": self.name,
            "metric": self.metric,
            "value": "n/a" if value is None else f"{value:.4g}",
            "threshold": f"{self.threshold:g}",
            "venue": scope.venue,
            "symbol": scope.symbol,
            "asset": scope.asset,
            "instrument": scope.instrument,
            "severity": self.severity,
        }
        try:
            return self.summary.format_map(fields)
        except (KeyError, ValueError, IndexError):
            return f"{self.name} {fields['value']}"


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a series lives. Book series fill every field; an asset-level series only
    ``asset``; a venue-level series only ``venue``."""

    venue: str = ""
    symbol: str = ""
    asset: str = ""
    instrument: str = ""
    kind: str = ""

    def as_dict(self) -> dict[str, str | None]:
        """The ``scope`` object of alert events and webhook bodies."""
        return {
            "venue": self.venue or None,
            "symbol": self.symbol or None,
            "asset": self.asset or None,
        }

    def key(self) -> str:
        return "/".join((self.venue, self.symbol, self.asset, self.instrument))


@dataclass(slots=True)
class Frame:
    """The observations of one tick: ``metric -> [(scope, value or None)]``.

    ``None`` means no data (an invalid or stale book, a missing rate): an alert watching
    it holds its state and is marked stale; it is never taken as "resolved".
    ``components`` carries per-scope explanations (score components), shown with alerts.
    """

    ts_ns: int
    series: dict[str, list[tuple[Scope, float | None]]] = field(default_factory=dict)
    components: dict[tuple[str, Scope], dict[str, float]] = field(default_factory=dict)

    def add(self, metric: str, scope: Scope, value: float | None) -> None:
        if value is not None and math.isnan(value):
            value = None
        self.series.setdefault(metric, []).append((scope, value))


class Baseline:
    """Mean of a series over a window, from samples thinned to at most one per ``step``."""

    __slots__ = ("_samples", "_step_ns", "_sum", "window_ns")

    def __init__(self, window_s: float) -> None:
        self.window_ns = int(window_s * 1e9)
        self._step_ns = max(1, self.window_ns // 120)
        self._samples: deque[tuple[int, float]] = deque()
        self._sum = 0.0

    def add(self, ts_ns: int, value: float) -> None:
        samples = self._samples
        if samples and ts_ns - samples[-1][0] < self._step_ns:
            return
        samples.append((ts_ns, value))
        self._sum += value
        while samples and ts_ns - samples[0][0] > self.window_ns:
            self._sum -= samples.popleft()[1]

    def span_s(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        return (self._samples[-1][0] - self._samples[0][0]) / 1e9

    def mean(self) -> float | None:
        return self._sum / len(self._samples) if self._samples else None


def change_pct(rule: RuleSpec, value: float, baseline: float) -> float | None:
    """The value a change rule compares with its threshold: drop or rise in percent."""
    if baseline == 0 or baseline != baseline:
        return None
    if rule.condition is Condition.DROP_PCT:
        return (baseline - value) / abs(baseline) * 100.0
    return (value - baseline) / abs(baseline) * 100.0


class InhibitSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """A firing alert matching ``source`` mutes the alerts matching ``target`` that have
    equal values of every field in ``equal`` (scope fields, ``category`` or a label)."""

    source: dict[str, str]
    target: dict[str, str]
    equal: tuple[str, ...] = ()


DEFAULT_INHIBITIONS: Final = (
    # a venue outage mutes that venue's depth alerts
    InhibitSpec(
        source={"category": "venue_health", "severity": "critical"},
        target={"category": "depth"},
        equal=("venue",),
    ),
    # CRITICAL mutes WARNING of the same scope (and the same category)
    InhibitSpec(
        source={"severity": "critical"},
        target={"severity": "warning"},
        equal=("venue", "symbol", "asset", "instrument", "category"),
    ),
)


class _RulesFile(Struct, frozen=True, forbid_unknown_fields=True):
    rules: tuple[RuleSpec, ...] = ()


def parse_rules(text: str, source: str) -> tuple[RuleSpec, ...]:
    """Rules from TOML text (``[[rules]]`` tables); ConfigError names the source and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(file)", f"not valid TOML: {exc}") from None
    return rules_from_tables(data.get("rules", []), source, extra=set(data) - {"rules"})


def rules_from_tables(
    tables: Sequence[Mapping[str, Any]] | Any, source: str, extra: set[str] | None = None
) -> tuple[RuleSpec, ...]:
    if extra:
        raise ConfigError(source, sorted(extra)[0], "unknown key (only [[rules]] tables)")
    if not isinstance(tables, list):
        raise ConfigError(source, "rules", "expected an array of tables ([[rules]])")
    rules: list[RuleSpec] = []
    for i, table in enumerate(tables):
        try:
            rule = msgspec.convert(table, RuleSpec)
        except msgspec.ValidationError as exc:
            raise ConfigError(source, f"rules[{i}]", str(exc)) from None
        if rule.is_change and rule.threshold <= 0:
            raise ConfigError(source, f"rules[{i}].threshold", "a change rule needs a percent > 0")
        rules.append(rule)
    names = [r.name for r in rules]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(source, "rules", f"rule name {name!r} is used twice")
    return tuple(rules)


class RuleInvalidError(ValueError):
    """A rule that cannot be used; ``field`` names the offending key (dotted)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


_AT_PATH = re.compile(r"^(?P<message>.*?) - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"field `(?P<name>[^`]+)`")
_SUMMARY_FIELDS: Final = {
    "rule": "r",
    "metric": "m",
    "value": "1",
    "threshold": "1",
    "venue": "v",
    "symbol": "s",
    "asset": "a",
    "instrument": "i",
    "severity": "warning",
}


def rule_from_json(raw: bytes) -> RuleSpec:
    """A rule from a JSON object with the ``[[rules]]`` table's keys (the API's body).

    Stricter than a rules file where a file would only misbehave later: every number
    finite, no NUL character, a summary template whose placeholders exist. Raises
    :class:`RuleInvalidError` naming the field."""
    try:
        rule = msgspec.json.decode(raw, type=RuleSpec)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT_PATH.match(text)
        if match is not None and match["path"]:
            raise RuleInvalidError(match["path"], match["message"]) from None
        message = match["message"] if match is not None else text
        named = _NAMED.search(message)
        raise RuleInvalidError(named["name"] if named else "body", message) from None
    except msgspec.DecodeError as exc:
        raise RuleInvalidError("body", f"expected a JSON object ({exc})") from None
    check_rule(rule)
    return rule


def check_rule(rule: RuleSpec) -> None:
    """What a decoded rule must also satisfy (see :func:`rule_from_json`)."""
    for name in ("threshold", "clear", "for_s", "keep_firing_for_s", "baseline_window_s",
                 "baseline_min_s"):  # fmt: skip
        value = getattr(rule, name)
        if value is not None and not math.isfinite(value):
            raise RuleInvalidError(name, f"expected a finite number, got {value}")
    if rule.is_change and rule.threshold <= 0:
        raise RuleInvalidError(
            "threshold", "a change rule (drop_pct, rise_pct) needs a percent > 0"
        )
    strings = [("metric", rule.metric), ("category", rule.category), ("summary", rule.summary)]
    strings += [(f"scope.{k}", v) for k, v in msgspec.structs.asdict(rule.scope).items()]
    strings += [(f"labels.{k}", f"{k}{v}") for k, v in rule.labels.items()]
    for name, text in strings:
        if "\x00" in text:
            raise RuleInvalidError(name, "contains a NUL character")
    try:
        rule.summary.format_map(_SUMMARY_FIELDS)
    except (KeyError, ValueError, IndexError, AttributeError, TypeError) as exc:
        fields = ", ".join("{" + k + "}" for k in _SUMMARY_FIELDS)
        raise RuleInvalidError(
            "summary", f"not a usable template ({type(exc).__name__}: {exc}); fields: {fields}"
        ) from None


def load_rules(paths: Sequence[Path]) -> tuple[RuleSpec, ...]:
    """Rules of several files, later files replacing rules of the same name."""
    by_name: dict[str, RuleSpec] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from None
        for rule in parse_rules(text, str(path)):
            by_name[rule.name] = rule
    return tuple(by_name.values())
