"""The alert rules on the tick sample: what rules can watch, and the sink that runs them.

:func:`observe` turns a :class:`~monitor.sample.TickSample` into the rule engine's
:class:`~alerts.rules.Frame`. Metric names rules may use (scope in brackets):

- books [venue, symbol, asset, instrument, kind], no data when the book is invalid or
  stale: ``spread_bps``, ``mid``, ``depth_usd.<band>.bid|ask|min|total`` (band as in
  metrics-out: ``0.1``, ``1``...), ``slippage_bps.<notional>.sell|buy``, ``mark_price``,
  ``funding_rate``, and from the analytics ``dislocation_bps``, ``basis_bps``,
  ``mark_basis_bps``, ``index_deviation_bps``, ``funding_annual``, ``peg_bps`` (and the
  magnitudes ``dislocation_abs_bps``, ``basis_abs_bps``, ``peg_abs_bps``),
  ``score.lvs``, ``score.level`` (0 normal, 1 watch, 2 warning, 3 critical; DATA is no
  data);
- book health, always data: ``book.valid`` (1/0), ``book_age_s``;
- venues [venue]: ``venue.invalid_fraction``, ``venue.stale_fraction`` (share of its books);
- assets [asset]: ``asset.lvs``, ``asset.level``, ``asset.outlier_bps`` (the outlier venue's
  dislocation, signed; the venue is in the components), ``asset.outlier_abs_bps``,
  ``asset.low_gap_bps``, ``asset.basis_bps``, ``asset.peg_bps``, ``asset.index_deviation_bps``,
  ``asset.depth_venue_sum_usd``, ``asset.depth_consolidated_usd``, ``asset.breadth``;
- quote currencies [asset = the currency]: ``fx.usd``, ``fx.deviation_bps`` (from 1 USD;
  no data when the rate is assumed, not measured), ``fx.deviation_abs_bps``;
- the market []: ``market.lvs``, ``market.level``.

:class:`RuleRunner` owns the engine: ``step(sample)`` evaluates and returns the rule events
(replay's ``--alerts-out``); :class:`AlertEngineSink` adds delivery in the daemon: it routes
due notifications to subscriptions, stores events and deliveries in the outbox first
(keeping them in order in memory while the database is away), then wakes the dispatcher.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np

from alerts.channels.base import Delivery, Sender
from alerts.channels.telegram import TelegramSender
from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher, DispatchPolicy
from alerts.engine import Alert, AlertEvent, Engine, GroupingPolicy, RestoredAlert, Silence
from alerts.outbox import MemoryOutbox, Outbox, deliveries_for
from alerts.pg_outbox import PgOutbox
from alerts.pg_rules import PgRules
from alerts.pg_state import PgAlertState
from alerts.rules import Frame, RuleSpec, Scope, load_rules
from alerts.subscriptions import AlertsSettings, Channel, SubscriptionSpec
from monitor.errors import StorageError
from monitor.log import get_logger
from monitor.sample import (
    COMPONENTS,
    SCORE_DATA,
    BookIdentity,
    TickSample,
    band_label,
    notional_label,
)
from monitor.settings import Settings, shipped_config_dir

log = get_logger("monitor.alerting")

_BOOK_ANALYTICS = (
    "dislocation_bps",
    "basis_bps",
    "mark_basis_bps",
    "index_deviation_bps",
    "funding_annual",
    "peg_bps",
)
# signed deviations also watched as magnitudes: <name>_abs_bps
_SIGNED = frozenset({"dislocation_bps", "basis_bps", "peg_bps"})
_ASSET_FIELDS = (
    "low_gap_bps",
    "basis_bps",
    "peg_bps",
    "index_deviation_bps",
    "breadth",
)


_METRICS: Final = frozenset(
    {
        "book.valid",
        "book_age_s",
        "spread_bps",
        "mid",
        "mark_price",
        "funding_rate",
        *_BOOK_ANALYTICS,
        *(f"{name[:-4]}_abs_bps" for name in _SIGNED),
        "score.lvs",
        "score.level",
        "venue.invalid_fraction",
        "venue.stale_fraction",
        "asset.lvs",
        "asset.level",
        "asset.outlier_bps",
        "asset.outlier_abs_bps",
        *(f"asset.{name}" for name in _ASSET_FIELDS),
        "asset.depth_venue_sum_usd",
        "asset.depth_consolidated_usd",
        "fx.usd",
        "fx.deviation_bps",
        "fx.deviation_abs_bps",
        "market.lvs",
        "market.level",
    }
)
_METRIC_PATTERNS: Final = (
    re.compile(r"depth_usd\.\d+(\.\d+)?\.(bid|ask|min|total)"),
    re.compile(r"slippage_bps\.\d+(\.\d+)?\.(sell|buy)"),
)


def metric_problem(metric: str) -> str | None:
    """Why ``metric`` is not one :func:`observe` produces (a rule on it never fires)."""
    if metric in _METRICS or any(p.fullmatch(metric) for p in _METRIC_PATTERNS):
        return None
    return (
        f"unknown metric {metric!r} (e.g. spread_bps, depth_usd.1.total, "
        "slippage_bps.100000.sell, score.level, asset.level; the list: docs/alerts.md)"
    )


def _value(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


class _Scopes:
    """Scope objects per book identity, made once (a sample row's scope never changes)."""

    def __init__(self) -> None:
        self._books: dict[BookIdentity, Scope] = {}

    def book(self, ident: BookIdentity) -> Scope:
        scope = self._books.get(ident)
        if scope is None:
            scope = self._books[ident] = Scope(
                ident.venue, ident.symbol, ident.base, ident.instrument, ident.kind
            )
        return scope


def observe(sample: TickSample, scopes: _Scopes | None = None) -> Frame:
    """Every metric rules may watch, for every book, venue, asset and currency."""
    scopes = scopes or _Scopes()
    frame = Frame(sample.ts_ns)
    add = frame.add
    analytics = sample.analytics
    bands = [band_label(b) for b in sample.bands_pct]
    notionals = [notional_label(n) for n in sample.notionals_usd]
    venue_books: dict[str, list[int]] = {}
    for i, ident in enumerate(sample.books):
        scope = scopes.book(ident)
        venue_books.setdefault(ident.venue, []).append(i)
        valid = bool(sample.valid[i])
        add("book.valid", scope, 1.0 if valid else 0.0)
        age = sample.book_age_s[i]
        add("book_age_s", scope, None if math.isnan(age) else float(age))
        if not valid:
            for name in ("spread_bps", "mid", "score.lvs", "score.level"):
                add(name, scope, None)
            for k, band in enumerate(bands):
                del k
                for side in ("bid", "ask", "min", "total"):
                    add(f"depth_usd.{band}.{side}", scope, None)
            continue
        add("spread_bps", scope, _value(sample.spread_bps[i]))
        add("mid", scope, _value(sample.mid[i]))
        for k, band in enumerate(bands):
            bid = float(sample.depth_usd[i, k, 0])
            ask = float(sample.depth_usd[i, k, 1])
            add(f"depth_usd.{band}.bid", scope, bid)
            add(f"depth_usd.{band}.ask", scope, ask)
            add(f"depth_usd.{band}.min", scope, min(bid, ask))
            add(f"depth_usd.{band}.total", scope, bid + ask)
        for n, notional in enumerate(notionals):
            add(f"slippage_bps.{notional}.sell", scope, _value(sample.slippage_bps[i, n, 0]))
            add(f"slippage_bps.{notional}.buy", scope, _value(sample.slippage_bps[i, n, 1]))
        if not math.isnan(sample.mark_price[i]):
            add("mark_price", scope, float(sample.mark_price[i]))
        if not math.isnan(sample.funding_rate[i]):
            add("funding_rate", scope, float(sample.funding_rate[i]))
        if analytics is not None:
            for name in _BOOK_ANALYTICS:
                v = float(getattr(analytics, name)[i])
                if not math.isnan(v):
                    add(name, scope, v)
                    if name in _SIGNED:
                        add(f"{name[:-4]}_abs_bps", scope, abs(v))
            state = int(analytics.score_state[i])
            comps = {
                c: round(float(p), 2)
                for c, p in zip(COMPONENTS, analytics.components[i], strict=True)
            }
            add("score.lvs", scope, _value(analytics.lvs[i]))
            add("score.level", scope, None if state == SCORE_DATA else float(state))
            frame.components[("score.lvs", scope)] = comps
            frame.components[("score.level", scope)] = comps
    for venue, rows in venue_books.items():
        scope = Scope(venue=venue)
        idx = np.asarray(rows)
        add("venue.invalid_fraction", scope, float(np.mean(~sample.valid[idx])))
        add("venue.stale_fraction", scope, float(np.mean(sample.stale[idx])))
    assets = sample.assets
    if assets is not None:
        for a, asset in enumerate(assets.assets):
            scope = Scope(asset=asset)
            state = int(assets.state[a])
            comps = {
                c: round(float(p), 2) for c, p in zip(COMPONENTS, assets.components[a], strict=True)
            }
            add("asset.lvs", scope, _value(assets.lvs[a]))
            add("asset.level", scope, None if state == SCORE_DATA else float(state))
            frame.components[("asset.lvs", scope)] = comps
            frame.components[("asset.level", scope)] = comps
            for name in _ASSET_FIELDS:
                add(f"asset.{name}", scope, _value(getattr(assets, name)[a]))
            add("asset.depth_venue_sum_usd", scope, _value(assets.depth_venue_sum_usd[a]))
            add("asset.depth_consolidated_usd", scope, _value(assets.depth_consolidated_usd[a]))
            row = int(assets.outlier_row[a])
            if row >= 0:
                outlier_bps = _value(assets.outlier_bps[a])
                add("asset.outlier_bps", scope, outlier_bps)
                add(
                    "asset.outlier_abs_bps",
                    scope,
                    None if outlier_bps is None else abs(outlier_bps),
                )
                outlier = sample.books[row]
                frame.components[("asset.outlier_bps", scope)] = {f"venue:{outlier.venue}": 1.0}
            else:
                none = 0.0 if assets.healthy_books[a] > 1 else None
                add("asset.outlier_bps", scope, none)
                add("asset.outlier_abs_bps", scope, none)
        market = Scope()
        add("market.lvs", market, _value(assets.market_lvs))
        add(
            "market.level",
            market,
            None if assets.market_state == SCORE_DATA else float(assets.market_state),
        )
    fx = sample.fx
    if fx is not None:
        for c, currency in enumerate(fx.currencies):
            scope = Scope(asset=currency)
            usd = float(fx.usd[c])
            measured = not bool(fx.assumed[c]) and not math.isnan(usd)
            add("fx.usd", scope, usd if measured else None)
            add("fx.deviation_bps", scope, (usd - 1.0) * 1e4 if measured else None)
            add("fx.deviation_abs_bps", scope, abs(usd - 1.0) * 1e4 if measured else None)
    return frame


def rule_files(alerts: AlertsSettings) -> list[Path]:
    """The rule files of the settings: absolute, or relative to the shipped config/."""
    base = shipped_config_dir()
    return [Path(p) if Path(p).is_absolute() else base / p for p in alerts.rules_files]


def grouping(alerts: AlertsSettings) -> GroupingPolicy:
    k = alerts.time_scale
    return GroupingPolicy(
        group_by=alerts.group_by,
        group_wait_s=alerts.group_wait_s / k,
        group_interval_s=alerts.group_interval_s / k,
        repeat_interval_s=alerts.repeat_interval_s / k,
    )


def scaled(rules: Sequence[RuleSpec], time_scale: float) -> list[RuleSpec]:
    """Rules with their durations divided by ``time_scale`` (market s per engine s)."""
    if time_scale == 1.0:
        return list(rules)
    return [
        msgspec.structs.replace(
            r,
            for_s=r.for_s / time_scale,
            keep_firing_for_s=r.keep_firing_for_s / time_scale,
            baseline_window_s=r.baseline_window_s / time_scale,
            baseline_min_s=r.baseline_min_s / time_scale,
        )
        for r in rules
    ]


@contextlib.asynccontextmanager
async def alert_delivery(
    settings: Settings, outbox: Outbox | None = None, *, drain_s: float = 5.0
) -> AsyncIterator[AlertEngineSink]:
    """The alert sink with its dispatcher running (webhook and Telegram channels) for the
    settings' subscriptions; ``outbox`` None keeps it in memory (no database). On exit,
    deliveries already due get up to ``drain_s`` to go out, then the dispatcher stops."""
    alerts = settings.alerts
    box: Outbox = outbox if outbox is not None else MemoryOutbox()
    subscriptions = list(settings.subscriptions)
    if isinstance(box, PgOutbox) and box.pool is not None:
        # subscriptions added through the API or the CLI (a configured name wins)
        from alerts import pg_subscriptions  # noqa: PLC0415

        try:
            async with box.pool.acquire() as conn:
                stored = await pg_subscriptions.load(conn)
        except Exception as exc:  # the database is away: the configured ones still work
            log.warning("alerts.subscriptions_unavailable", error=str(exc)[:200])
            stored = []
        names = {s.name for s in subscriptions}
        for sub in stored:
            if sub.name in names:
                continue
            problem = sub.problem(alerts.allow_private_urls)
            if problem:
                log.warning("alerts.subscription_refused", name=sub.name, problem=problem[1])
                continue
            subscriptions.append(sub)
    senders: dict[Channel, Sender] = {
        Channel.WEBHOOK: WebhookSender(
            allow_private_urls=alerts.allow_private_urls, timeout_s=alerts.request_timeout_s
        ),
        Channel.TELEGRAM: TelegramSender(
            api_url=alerts.telegram_api_url,
            token_env=alerts.telegram_token_env,
            timeout_s=alerts.request_timeout_s,
        ),
    }
    dispatcher = Dispatcher(box, senders, DispatchPolicy.from_settings(alerts))
    sink = AlertEngineSink(
        RuleRunner.from_settings(settings),
        subscriptions,
        box,
        base_url=alerts.base_url,
        wake=dispatcher.wake,
    )
    sink.dispatcher = dispatcher
    if isinstance(box, PgOutbox):
        # a restart takes over the alerts still firing: not fired (nor sent) again, and
        # keeps the silences and acknowledgements (written through from now on)
        sink.state = PgAlertState(box.open_pool)
        sink.rule_store = PgRules(box.open_pool)
        try:
            await sink.load_rules()
        except Exception as exc:  # the database is away: the config rules still work
            log.warning("alerts.stored_rules_unavailable", error=str(exc)[:200])
        try:
            firing = await box.firing_alerts()
            sink.engine.restore(firing)
            await sink.load_state(firing)
        except Exception as exc:
            log.warning("alerts.restore_unavailable", error=str(exc)[:200])
    task = asyncio.create_task(dispatcher.run(), name="alerts:dispatcher")
    syncing = (
        asyncio.create_task(_sync_rules(sink, RULES_SYNC_S), name="alerts:rules")
        if sink.rule_store is not None
        else None
    )
    try:
        yield sink
    finally:
        if syncing is not None:
            syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncing
        await sink.flush()
        dispatcher.wake()
        deadline = time.monotonic() + drain_s
        with contextlib.suppress(Exception):
            while time.monotonic() < deadline:
                due, _ = await box.due_subscriptions(time.time_ns())
                if not due and dispatcher.idle.is_set():
                    break
                await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for sender in senders.values():
            await sender.close()


RULES_SYNC_S: Final = 5.0  # stored rules re-read this often (`liqmon rules` changes)


async def _sync_rules(sink: AlertEngineSink, every_s: float) -> None:
    """Rules changed in the database by someone else, applied while running."""
    failures = 0
    while True:
        await asyncio.sleep(every_s)
        try:
            changed = await sink.sync_rules()
            failures = 0
        except Exception as exc:  # the database is away: the rules in memory still work
            failures += 1
            if failures == 1:
                log.warning("alerts.rules_sync_failed", error=str(exc)[:200])
            continue
        if changed:
            log.info("alerts.rules_synced", changed=changed)


class RuleRunner:
    """The engine on tick samples: ``step(sample)`` returns the rule events of the tick.

    ``config_rules`` are the rules as written (before ``time_scale``); the engine holds
    the scaled ones, and :meth:`scale` scales a rule added later the same way."""

    def __init__(
        self,
        rules: Sequence[RuleSpec],
        policy: GroupingPolicy | None = None,
        *,
        time_scale: float = 1.0,
        config_rules: Sequence[RuleSpec] | None = None,
    ) -> None:
        self.engine = Engine(rules, policy)
        self.time_scale = time_scale
        self.config_rules = tuple(rules if config_rules is None else config_rules)
        self._scopes = _Scopes()

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleRunner:
        rules = load_rules(rule_files(settings.alerts))
        k = settings.alerts.time_scale
        return cls(scaled(rules, k), grouping(settings.alerts), time_scale=k, config_rules=rules)

    def scale(self, rule: RuleSpec) -> RuleSpec:
        return scaled([rule], self.time_scale)[0]

    def frame(self, sample: TickSample) -> Frame:
        return observe(sample, self._scopes)

    def step(self, sample: TickSample) -> list[AlertEvent]:
        return self.engine.evaluate(self.frame(sample))


class RuleConflictError(Exception):
    """A rule change the API refuses with 409: a config rule, or a name already used."""


class AlertEngineSink:
    """The daemon's alert sink: evaluate, route, store first, wake the dispatcher.

    ``outbox`` None: evaluation only (events still go to ``listeners``: the API's live
    push, evidence capture). Store failures keep the batch in memory, in order, and the
    next tick tries again: alerts that fire while the database is away are delivered
    when it returns.
    """

    name = "alert-rules"

    def __init__(
        self,
        runner: RuleRunner,
        subscriptions: Sequence[SubscriptionSpec] = (),
        outbox: Outbox | None = None,
        *,
        base_url: str = "",
        wake: Callable[[], None] | None = None,
        max_buffered: int = 100_000,
    ) -> None:
        self.runner = runner
        self.subscriptions = list(subscriptions)
        self.outbox = outbox
        self.base_url = base_url
        self.listeners: list[Callable[[list[AlertEvent]], None]] = []
        self._wake = wake
        self._buffer: list[tuple[list[AlertEvent], list[Delivery]]] = []
        self.max_buffered = max_buffered
        self.store_failures = 0
        self.dropped = 0
        self.dispatcher: Dispatcher | None = None
        self.last_deliveries: list[Delivery] = []  # routed by the last tick
        # silences and acknowledgements stored here first (None: in memory only)
        self.state: PgAlertState | None = None
        # rules added through the API (as written, not scaled), stored here first
        self.rule_store: PgRules | None = None
        self.api_rules: dict[str, RuleSpec] = {}
        self._rule_changes: list[tuple[str, RuleSpec | None]] = []
        self._rules_lock = asyncio.Lock()  # one change (store, then memory) at a time

    @property
    def engine(self) -> Engine:
        return self.runner.engine

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def write(self, sample: TickSample) -> None:
        await self.process(self.runner.frame(sample))

    async def process(self, frame: Frame) -> list[AlertEvent]:
        """One tick: evaluate, route what is due, store first (or keep), wake delivery.
        Rules changed through the API since the last tick apply first."""
        events = self._apply_rule_changes(frame.ts_ns)
        events += self.engine.evaluate(frame)
        notes = self.engine.notifications(frame.ts_ns)
        for listener in self.listeners:
            if events:
                listener(events)
        if self.outbox is None:
            return events
        deliveries = deliveries_for(notes, self.subscriptions, base_url=self.base_url)
        self.last_deliveries = deliveries
        if events or deliveries:
            if len(self._buffer) >= self.max_buffered:
                self.dropped += 1
                log.error("alerts.buffer_full", buffered=len(self._buffer))
            else:
                self._buffer.append((events, deliveries))
        await self.flush()
        return events

    async def flush(self) -> bool:
        """Store what is buffered, oldest first; False if the outbox is unreachable."""
        if self.outbox is None:
            return True
        stored = False
        while self._buffer:
            events, deliveries = self._buffer[0]
            try:
                await self.outbox.store(events, deliveries)
            except Exception as exc:  # the database is away: keep it, try next tick
                self.store_failures += 1
                if self.store_failures == 1 or self.store_failures % 100 == 0:
                    log.warning(
                        "alerts.store_failed", error=str(exc)[:200], buffered=len(self._buffer)
                    )
                break
            self._buffer.pop(0)
            stored = True
        if stored and self._wake is not None:
            self._wake()
        return not self._buffer

    async def close(self) -> None:
        await self.flush()

    # -- rules through the API: the database first (when there is one) -----------------

    def rules(self) -> list[tuple[RuleSpec, str]]:
        """Every rule with its source, ``config`` (read-only here) or ``api``."""
        return [(r, "config") for r in self.runner.config_rules] + [
            (r, "api") for r in self.api_rules.values()
        ]

    def find_rule(self, name: str) -> tuple[RuleSpec, str] | None:
        return next(((r, src) for r, src in self.rules() if r.name == name), None)

    def _config_rule(self, name: str) -> None:
        if any(r.name == name for r in self.runner.config_rules):
            raise RuleConflictError(
                f"{name!r} is a config rule (alerts.rules_files): config rules are read-only "
                "through the API; change the rules file, or create a rule of another name"
            )

    async def create_rule(self, rule: RuleSpec) -> None:
        """Add a rule (stored first); it is evaluated from the next tick."""
        self._config_rule(rule.name)
        exists = RuleConflictError(f"a rule named {rule.name!r} exists (PUT replaces it)")
        async with self._rules_lock:
            if rule.name in self.api_rules:
                raise exists
            if self.rule_store is not None and not await self.rule_store.add(rule):
                raise exists
            self._set_api_rule(rule.name, rule)

    async def replace_rule(self, rule: RuleSpec) -> bool:
        """Replace an API rule (stored first); False if there is none of that name. Its
        alerts carry over or end at the next tick (:meth:`alerts.engine.Engine.set_rule`)."""
        self._config_rule(rule.name)
        async with self._rules_lock:
            if rule.name not in self.api_rules:
                return False
            if self.rule_store is not None and not await self.rule_store.replace(rule):
                return False
            self._set_api_rule(rule.name, rule)
        return True

    async def delete_rule(self, name: str) -> bool:
        """Remove an API rule (from the store first); its firing alerts resolve at the next
        tick with the reason ``rule_removed``. False if there is none of that name."""
        self._config_rule(name)
        async with self._rules_lock:
            if name not in self.api_rules:
                return False
            if self.rule_store is not None:
                await self.rule_store.remove(name)
            self._set_api_rule(name, None)
        return True

    def _set_api_rule(self, name: str, rule: RuleSpec | None) -> None:
        if rule is None:
            self.api_rules.pop(name, None)
        else:
            self.api_rules[name] = rule
        self._rule_changes.append((name, rule))

    async def sync_rules(self) -> int:
        """Bring the API rules in line with the store (rules changed by ``liqmon rules``
        or another process); returns how many changed. A configured name wins."""
        if self.rule_store is None:
            return 0
        async with self._rules_lock:
            stored, _ = await self.rule_store.load()
            config = {r.name for r in self.runner.config_rules}
            wanted = {r.name: r for r in stored if r.name not in config}
            changed = 0
            for name in [n for n in self.api_rules if n not in wanted]:
                self._set_api_rule(name, None)
                changed += 1
            for name, rule in wanted.items():
                if self.api_rules.get(name) != rule:
                    self._set_api_rule(name, rule)
                    changed += 1
        return changed

    async def load_rules(self) -> None:
        """The stored rules, into the engine at once (before the first tick): a configured
        name wins over a stored one."""
        if self.rule_store is None:
            return
        stored, broken = await self.rule_store.load()
        for name, problem in broken:
            log.warning("alerts.stored_rule_unusable", rule=name, problem=problem[:200])
        config = {r.name for r in self.runner.config_rules}
        for rule in stored:
            if rule.name in config:
                log.warning("alerts.stored_rule_shadowed", rule=rule.name)
                continue
            self.api_rules[rule.name] = rule
            self.engine.set_rule(self.runner.scale(rule), 0)

    def _apply_rule_changes(self, ts_ns: int) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        changes, self._rule_changes = self._rule_changes, []
        for name, rule in changes:
            if rule is None:
                ended = self.engine.remove_rule(name, ts_ns)
            else:
                ended = self.engine.set_rule(self.runner.scale(rule), ts_ns)
            log.info("alerts.rule_changed", rule=name, removed=rule is None, ended=len(ended))
            events += ended
        return events

    # -- silences and acknowledgements: the database first (when there is one) ----------

    async def load_state(self, restored: Sequence[RestoredAlert] = ()) -> None:
        """The stored silences not yet ended, and the acknowledgements of ``restored``."""
        if self.state is None:
            return
        for silence in await self.state.silences():
            self.engine.add_silence(silence)
        self.engine.restore_acks(await self.state.acks([a.alert_id for a in restored]))

    async def add_silence(
        self,
        matchers: dict[str, str],
        starts_at_ns: int,
        ends_at_ns: int,
        created_by: str = "",
        comment: str = "",
    ) -> Silence:
        """A new silence (stored first; the database's errors propagate, nothing changed)."""
        if self.state is None:
            silence_id = secrets.token_hex(8)
        else:
            silence_id = await self.state.add_silence(
                matchers, starts_at_ns, ends_at_ns, created_by, comment
            )
        silence = Silence(silence_id, matchers, starts_at_ns, ends_at_ns, created_by, comment)
        self.engine.add_silence(silence)
        return silence

    async def remove_silence(self, silence_id: str) -> bool:
        stored = self.state is not None and await self.state.remove_silence(silence_id)
        return self.engine.remove_silence(silence_id) or stored

    async def acknowledge(self, alert_id: str, by: str, ts_ns: int) -> Alert | None:
        """Acknowledge a firing alert (stored first); None if it is not firing."""
        found = self.engine.find(alert_id)
        if found is None or found.state.value != "firing":
            return None
        if self.state is not None:
            await self.state.acknowledge(alert_id, by, ts_ns)
        return self.engine.acknowledge(alert_id, by, ts_ns)


# -- liqmon subscriptions list|add|remove -------------------------------------------------


def add_subscriptions_parser(
    sub: Any,
    add_config: Callable[[argparse.ArgumentParser], None],
    add_data_dir: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``liqmon subscriptions list|add|remove`` (stored ones live in the database)."""
    verbs = _verb_parsers(
        sub,
        "subscriptions",
        "list, add or remove alert subscriptions",
        {
            "list": "configured ([[subscriptions]]) and stored subscriptions",
            "add": "store a subscription (webhook URL or Telegram chat)",
            "remove": "remove a stored subscription",
        },
        add_config,
        add_data_dir,
    )
    p = verbs["add"]
    p.add_argument("name")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--webhook", metavar="URL", help="http(s) URL to POST to")
    target.add_argument("--telegram-chat", metavar="CHAT_ID", help="Telegram chat id")
    p.add_argument("--secret-env", help="environment variable holding the HMAC key")
    p.add_argument("--min-severity", default="warning", choices=["info", "warning", "critical"])
    p.add_argument("--rules", default="*", help="comma-separated rule name patterns")
    p.add_argument("--asset", default="*", help="asset pattern, e.g. BTC or SOL*")
    p.add_argument("--venue", default="*", help="venue pattern, e.g. binance*")
    verbs["remove"].add_argument("name")


def _verb_parsers(
    sub: Any,
    command: str,
    text: str,
    verbs: dict[str, str],
    add_config: Callable[[argparse.ArgumentParser], None],
    add_data_dir: Callable[[argparse.ArgumentParser], None],
) -> dict[str, argparse.ArgumentParser]:
    """``liqmon COMMAND VERB``: one parser per verb, each taking --config and --data-dir."""
    parser = sub.add_parser(command, help=text)
    subparsers = parser.add_subparsers(dest="verb", required=True)
    out = {}
    for verb, help_text in verbs.items():
        p = subparsers.add_parser(verb, help=help_text)
        add_config(p)
        add_data_dir(p)
        out[verb] = p
    return out


def run_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    def fail(message: str) -> int:
        sys.stderr.write(f"liqmon: {message}\n")
        return 2

    spec: SubscriptionSpec | None = None
    if args.verb == "add":
        try:
            spec = msgspec.convert(
                {
                    "name": args.name,
                    "channel": "webhook" if args.webhook else "telegram",
                    "url": args.webhook,
                    "chat_id": args.telegram_chat,
                    "secret_env": args.secret_env,
                    "min_severity": args.min_severity,
                    "rules": [r.strip() for r in args.rules.split(",") if r.strip()] or ["*"],
                    "scope": {"asset": args.asset, "venue": args.venue},
                },
                SubscriptionSpec,
            )
        except msgspec.ValidationError as exc:
            return fail(f"invalid subscription: {exc}")
        problem = spec.problem(settings.alerts.allow_private_urls)
        if problem:
            return fail(f"invalid subscription: {problem[0]}: {problem[1]}")
        if any(s.name == spec.name for s in settings.subscriptions):
            return fail(f"{spec.name!r} is a configured subscription ([[subscriptions]])")
    try:
        return asyncio.run(_subscriptions(args, settings, spec))
    except (StorageError, OSError) as exc:
        return fail(f"database unavailable: {exc}")


async def _subscriptions(
    args: argparse.Namespace, settings: Settings, spec: SubscriptionSpec | None
) -> int:
    from alerts import pg_subscriptions  # noqa: PLC0415
    from monitor.store.command import data_dir  # noqa: PLC0415
    from monitor.store.service import Store  # noqa: PLC0415

    store = await Store(settings.database, data_dir(settings, args.data_dir)).open()
    try:
        conn = await store.connect()
        try:
            if args.verb == "list":
                stored = await pg_subscriptions.load(conn)
                rows = [(s, "config") for s in settings.subscriptions]
                rows += [(s, "stored") for s in stored]
                sys.stdout.write(
                    f"{'name':16} {'channel':9} {'target':40} {'min':9} {'rules':16} source\n"
                )
                for s, source in rows:
                    target = s.url or s.chat_id or ""
                    sys.stdout.write(
                        f"{s.name:16} {s.channel.value:9} {target:40} {s.min_severity:9} "
                        f"{','.join(s.rules):16} {source}\n"
                    )
                return 0
            if args.verb == "add":
                assert spec is not None
                if not await pg_subscriptions.add(conn, spec):
                    sys.stderr.write(f"liqmon: a subscription named {spec.name!r} exists\n")
                    return 2
                sys.stdout.write(f"added {spec.name} ({spec.channel.value})\n")
                return 0
            if not await pg_subscriptions.remove(conn, args.name):
                sys.stderr.write(f"liqmon: no stored subscription named {args.name!r}\n")
                return 2
            sys.stdout.write(f"removed {args.name}\n")
            return 0
        finally:
            await conn.close()
    finally:
        await store.close()


# -- liqmon rules list|add|remove ---------------------------------------------------------


def add_rules_parser(
    sub: Any,
    add_config: Callable[[argparse.ArgumentParser], None],
    add_data_dir: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``liqmon rules list|add|remove``: stored rules live in the database, as the API's
    (a running ``liqmon run`` on that database applies a change within a few seconds)."""
    verbs = _verb_parsers(
        sub,
        "rules",
        "list, add or remove alert rules",
        {
            "list": "config rules (the rules files) and stored rules (the API's)",
            "add": "store the [[rules]] of a TOML file (or one rule as a JSON object)",
            "remove": "remove a stored rule",
        },
        add_config,
        add_data_dir,
    )
    verbs["add"].add_argument("file", help="a TOML file of [[rules]] tables, or a .json rule")
    verbs["add"].add_argument(
        "--replace", action="store_true", help="replace stored rules of the same name"
    )
    verbs["remove"].add_argument("name")


def _rules_to_add(path: Path, config_names: set[str]) -> list[RuleSpec]:
    """The rules of a file, checked as the API checks them (ValueError: one sentence)."""
    from alerts.rules import RuleInvalidError, check_rule, parse_rules, rule_from_json  # noqa: PLC0415
    from monitor.errors import ConfigError  # noqa: PLC0415

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            rules = [rule_from_json(raw)]
        else:
            rules = list(parse_rules(raw.decode("utf-8", "replace"), str(path)))
            for rule in rules:
                check_rule(rule)
    except RuleInvalidError as exc:
        raise ValueError(f"{path}: invalid rule: {exc}") from None
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if not rules:
        raise ValueError(f"{path}: no [[rules]] table")
    for rule in rules:
        problem = metric_problem(rule.metric)
        if problem:
            raise ValueError(f"{path}: rule {rule.name!r}: metric: {problem}")
        if rule.name in config_names:
            raise ValueError(
                f"{rule.name!r} is a config rule (alerts.rules_files); choose another name"
            )
    return rules


def run_rules(args: argparse.Namespace, settings: Settings) -> int:
    def fail(message: str) -> int:
        sys.stderr.write(f"liqmon: {message}\n")
        return 2

    try:
        config = load_rules(rule_files(settings.alerts))
    except Exception as exc:  # ConfigError: the file and key
        return fail(str(exc))
    rules: list[RuleSpec] = []
    if args.verb == "add":
        try:
            rules = _rules_to_add(Path(args.file), {r.name for r in config})
        except ValueError as exc:
            return fail(str(exc))
    elif args.verb == "remove" and any(r.name == args.name for r in config):
        return fail(f"{args.name!r} is a config rule: change its rules file to remove it")
    try:
        return asyncio.run(_rules(args, settings, config, rules))
    except (StorageError, OSError) as exc:
        return fail(f"database unavailable: {exc}")


async def _rules(
    args: argparse.Namespace, settings: Settings, config: Sequence[RuleSpec], rules: list[RuleSpec]
) -> int:
    from monitor.store.command import data_dir  # noqa: PLC0415
    from monitor.store.service import Store  # noqa: PLC0415

    store = await Store(settings.database, data_dir(settings, args.data_dir)).open()
    try:
        conn = await store.connect()

        async def connection() -> Any:
            return conn

        stored_rules = PgRules(connection)
        try:
            if args.verb == "list":
                stored, broken = await stored_rules.load()
                out = sys.stdout.write
                out(f"{'name':32} {'metric':28} {'condition':9} {'threshold':>12} "
                    f"{'severity':8} source\n")  # fmt: skip
                for rule, source in [(r, "config") for r in config] + [
                    (r, "stored") for r in stored
                ]:
                    off = "" if rule.enabled else " (disabled)"
                    out(f"{rule.name:32} {rule.metric:28} {rule.condition.value:9} "
                        f"{rule.threshold:>12g} {rule.severity:8} {source}{off}\n")  # fmt: skip
                for name, problem in broken:
                    out(f"{name:32} (stored, unusable: {problem[:80]})\n")
                return 0
            if args.verb == "add":
                for rule in rules:
                    if await stored_rules.add(rule):
                        sys.stdout.write(f"added {rule.name}\n")
                    elif args.replace and await stored_rules.replace(rule):
                        sys.stdout.write(f"replaced {rule.name}\n")
                    else:
                        sys.stderr.write(
                            f"liqmon: a rule named {rule.name!r} is stored (--replace)\n"
                        )
                        return 2
                return 0
            if not await stored_rules.remove(args.name):
                sys.stderr.write(f"liqmon: no stored rule named {args.name!r}\n")
                return 2
            sys.stdout.write(f"removed {args.name}\n")
            return 0
        finally:
            await conn.close()
    finally:
        await store.close()
