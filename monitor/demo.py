"""``liqmon demo``: watch the 10/11 collapse happen, time-compressed, on loopback.

Two processes: the local exchange plays the collapse scenario at ``speed`` x scenario time
(``python -m feeds.sim.scenario.live``: four venues speaking their real protocols), and this
process runs the daemon (:func:`~monitor.app.run_daemon`) against it with a config
pointing at 127.0.0.1, plus a view of every tick.

Clocks: the exchange runs scenario time compressed; the daemon ticks on wall time. The demo
config therefore ticks every ``max(50 ms, 1 s / speed)`` and divides the score's time
constants (baselines, warm-up, dwell, entry and exit times, the withdrawal and mark-price
windows, the funding-time masks) by ``speed`` and shortens the features' rolling median
to the same ~10 s of scenario time, so the score behaves in scenario time; the view maps
every sample's wall time back onto the scenario's clock
(``start + (wall - wall_start) x speed``) and reports lead times in scenario minutes.
A user ``--config`` is merged over the demo's, so its settings (alert subscriptions...) hold.

On a terminal the view redraws a table per asset and venue (1 % depth and its ratio to
calm, spread, dislocation, basis, score and state, the worst score's components) and lists
score changes as they happen; without one (stdout not a TTY) it prints the state changes
and the summary as plain lines. Either way it ends with the lead times of WATCH, WARNING
and CRITICAL before the trough, and exits 0.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np

from feeds.sim.exchange import settings_toml
from feeds.sim.scenario import spec
from feeds.sim.scenario.model import build_paths
from monitor.alerting import alert_delivery
from monitor.log import get_logger
from monitor.sample import TickSample
from monitor.settings import Settings, load_settings
from monitor.sinks import CallbackSink

log = get_logger("monitor.demo")

HKT = timedelta(hours=8)
STATE_NAMES = ("normal", "watch", "warning", "critical", "data")
COMPONENT_NAMES = ("depth", "withdrawal", "spread", "impact", "asymmetry", "dislocation", "breadth")
# the score's time constants (seconds of the clock the samples carry): divided by the speed
_TIME_KEYS = (
    "baseline_half_life_s",
    "scale_half_life_s",
    "rebaseline_after_s",
    "warmup_s",
    "resync_quiet_s",
    "baseline_fast_s",
    "min_dwell_s",
    "display_half_life_s",
    "withdrawal_window_s",
    # funding-time masks: scaled together, the masked share of scenario time is kept
    # (their phase is the wall clock's, not the scenario's; unscaled, 5 wall minutes
    # around a UTC funding hour would raise the enter points for hours of scenario)
    "scheduled_mask_s",
    "scheduled_every_h",
)
_TIME_LISTS = ("enter_s", "exit_s", "mark_windows_s")
SMOOTH_SCENARIO_S = 10.0  # the features' rolling median: 10 ticks of 1 s in a replay


def hkt(ns: int) -> str:
    return (datetime.fromtimestamp(ns / 1e9, tz=UTC) + HKT).strftime("%H:%M:%S")


def demo_config(symbols: dict[Any, list[str]], port: int, speed: float) -> str:
    """The daemon's settings for the demo (see the module doc for the clock scaling)."""
    tick_ms = max(50, round(1000.0 / speed))
    extra = [
        f'[monitor]\ntick_ms = {tick_ms}\nlog_level = "warning"\n',
        f"[alerts]\ntime_scale = {float(speed)!r}\n",
    ]
    analytics = getattr(Settings, "__struct_fields__", ())
    if "analytics" in analytics:
        from monitor.settings import AnalyticsSettings  # noqa: PLC0415

        base = AnalyticsSettings()
        lines = ["[analytics]"]
        for key in _TIME_KEYS:
            if hasattr(base, key):
                lines.append(f"{key} = {getattr(base, key) / speed!r}")
        for key in _TIME_LISTS:
            if hasattr(base, key):
                values = ", ".join(repr(v / speed) for v in getattr(base, key))
                lines.append(f"{key} = [{values}]")
        # smooth_samples is a count of ticks: keep it ~10 s of scenario time
        scenario_tick_s = tick_ms * speed / 1000.0
        lines.append(f"smooth_samples = {max(1, round(SMOOTH_SCENARIO_S / scenario_tick_s))}")
        if hasattr(base, "fx_source_stale_s"):  # a rate source is a live book: wall seconds
            lines.append("fx_source_stale_s = 5.0")
        extra.append("\n".join(lines) + "\n")
    return settings_toml(symbols, port=port, extra="\n".join(extra))


@dataclass
class Row:
    asset: str
    venue: str
    symbol: str
    kind: str
    calm_depth: list[float] = field(default_factory=list)
    depth: float = math.nan
    spread: float = math.nan
    dislocation: float = math.nan
    basis: float = math.nan
    lvs: float = math.nan
    state: int = 4
    components: tuple[float, ...] = ()
    valid: bool = False


@dataclass
class FirstTimes:
    """First time a scope reached each state, and when it was back to NORMAL from its last
    WATCH/WARNING/CRITICAL episode after the trough (a return from DATA is not one)."""

    first: dict[int, int] = field(default_factory=dict)
    normal_after: int | None = None
    state: int = 0


class DemoView:
    """Receives every tick sample; shows the table (TTY) or state-change lines."""

    def __init__(
        self, out: IO[str], tty: bool, speed: float, scenario_start_ns: int, trough_ns: int
    ) -> None:
        self.out = out
        self.tty = tty
        self.speed = speed
        self.scenario_start_ns = scenario_start_ns
        self.trough_ns = trough_ns
        self.wall_start: float | None = None
        self.rows: dict[tuple[str, str], Row] = {}
        self.events: list[str] = []
        self.scopes: dict[str, FirstTimes] = {}
        self.last_draw = 0.0
        self.now_ns = scenario_start_ns
        self.phase = ""
        self.ticks = 0
        self.has_score = False
        self.note = ""  # where the page is served (the API), shown under the title
        self.marks_t: list[int] = []
        self.clock_ns = scenario_start_ns
        self.marks_w: list[float] = []

    def progress(self, scenario_ns: int, wall: float) -> None:
        """The exchange reached ``scenario_ns`` at wall time ``wall`` (epoch seconds)."""
        self.marks_t.append(scenario_ns)
        self.marks_w.append(wall)

    def scenario_ns(self, wall_ns: int) -> int:
        """A sample's wall time on the scenario clock: the exchange's last reported
        position before it, plus the nominal speed for the time since (never past the next
        report)."""
        if self.wall_start is None:
            return self.scenario_start_ns
        wall = wall_ns / 1e9
        k = bisect.bisect_right(self.marks_w, wall) - 1
        if k < 0:
            return int(self.scenario_start_ns + (wall - self.wall_start) * self.speed * 1e9)
        # at most 0.25 s of extrapolation, and never backwards (the reports may be read
        # after the samples they precede)
        ahead = min(wall - self.marks_w[k], 0.25)
        guess = int(self.marks_t[k] + ahead * self.speed * 1e9)
        if k + 1 < len(self.marks_t):
            guess = min(guess, self.marks_t[k + 1])
        self.clock_ns = max(self.clock_ns, guess)
        return self.clock_ns

    def on_sample(self, sample: TickSample) -> None:
        if self.wall_start is None:
            return  # the scenario clock has not started yet
        self.ticks += 1
        now = self.scenario_ns(sample.ts_ns)
        self.now_ns = now
        self._phase(now)
        analytics = getattr(sample, "analytics", None)
        self.has_score = self.has_score or analytics is not None
        band = _band_index(sample)
        for i, ident in enumerate(sample.books):
            key = (ident.venue, ident.symbol)
            row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = Row(ident.base, ident.venue, ident.symbol, ident.kind)
            row.valid = bool(sample.valid[i]) and not bool(sample.stale[i])
            depth = float(np.nansum(sample.depth_usd[i, band, :])) if band is not None else math.nan
            row.depth = depth
            if row.valid and now < spec.T0_NS and depth == depth:
                row.calm_depth.append(depth)
            row.spread = float(sample.spread_bps[i])
            if analytics is not None:
                row.dislocation = float(analytics.dislocation_bps[i])
                row.basis = float(analytics.basis_bps[i])
                row.lvs = float(analytics.lvs[i])
                row.state = int(analytics.score_state[i])
                row.components = tuple(float(x) for x in analytics.components[i])
        for event in getattr(sample, "events", ()):
            self._event(event, now)
        if self.tty and time.monotonic() - self.last_draw > 0.5:
            self.last_draw = time.monotonic()
            self.draw()

    def _phase(self, now: int) -> None:
        minute = (now - spec.T0_NS) / spec.MINUTE_NS
        name = ""
        for phase, s, e in spec.PHASES:
            if s <= minute < e:
                name = phase
        if name and name != self.phase:
            self.phase = name
            line = f"{hkt(now)} HKT  == phase: {name.replace('_', ' ')}"
            self.events.append(line)
            if not self.tty:
                self.out.write(line + "\n")
                self.out.flush()

    def _event(self, event: Any, now: int) -> None:
        state = int(event.state)
        if event.venue is not None:
            scope = f"{event.venue}:{event.symbol}"
        elif event.asset is not None:
            scope = f"asset:{event.asset}"
        else:
            scope = "market"
        times = self.scopes.setdefault(scope, FirstTimes())
        times.first.setdefault(state, now)
        if 1 <= state <= 3:  # an episode: the return to NORMAL that counts comes after it
            times.normal_after = None
        elif state == 0 and 1 <= times.state <= 3 and now > self.trough_ns:
            times.normal_after = times.normal_after or now
        times.state = state
        value = "" if event.value != event.value else f"LVS {event.value:5.1f}"
        parts = sorted(zip(COMPONENT_NAMES, event.components, strict=False), key=lambda c: -c[1])
        comps = ", ".join(f"{n} {p:.0f}" for n, p in parts if p >= 1.0)
        minutes = (now - self.trough_ns) / spec.MINUTE_NS
        line = (
            f"{hkt(now)} HKT ({minutes:+6.1f} min)  {STATE_NAMES[state].upper():8s} "
            f"{scope:28s} {value}  {comps}"
        )
        self.events.append(line)
        if not self.tty:
            self.out.write(line + "\n")
            self.out.flush()

    def draw(self) -> None:
        out = ["\x1b[H\x1b[2J"]
        minutes = (self.now_ns - self.trough_ns) / spec.MINUTE_NS
        out.append(
            f"liqmon demo: the 10/11 collapse at {self.speed:g}x   scenario time "
            f"{hkt(self.now_ns)} HKT ({minutes:+.1f} min from the trough)   "
            f"phase: {self.phase.replace('_', ' ')}"
        )
        if self.note:
            out.append(self.note)
        out.append("")
        out.append(
            f"{'asset':6s} {'venue':16s} {'symbol':10s} {'1% depth':>10s} {'vs calm':>8s} "
            f"{'spread':>8s} {'disloc':>8s} {'basis':>8s} {'LVS':>5s} {'state':9s}"
        )
        worst: Row | None = None
        for key in sorted(self.rows, key=lambda k: (self.rows[k].asset, k)):
            r = self.rows[key]
            calm = float(np.median(r.calm_depth)) if r.calm_depth else math.nan
            ratio = r.depth / calm if calm and calm == calm else math.nan
            state = STATE_NAMES[r.state] if r.valid else "data"
            out.append(
                f"{r.asset:6s} {r.venue:16s} {r.symbol:10s} {_usd(r.depth):>10s} "
                f"{_pct(ratio):>8s} {_num(r.spread):>8s} {_num(r.dislocation):>8s} "
                f"{_num(r.basis):>8s} {_num(r.lvs, 0):>5s} {state:9s}"
            )
            if r.lvs == r.lvs and (worst is None or not worst.lvs >= r.lvs):
                worst = r
        out.append("")
        if worst is not None:
            comps = ", ".join(
                f"{n} {p:.0f}"
                for n, p in sorted(
                    zip(COMPONENT_NAMES, worst.components, strict=False), key=lambda c: -c[1]
                )
                if p >= 0.5
            )
            out.append(f"worst: {worst.venue} {worst.symbol} LVS {worst.lvs:.0f} = {comps}")
        elif not self.has_score:
            out.append("(no score in this build: depth and spread only)")
        out.append("")
        out.append("score changes:")
        out.extend(self.events[-12:])
        self.out.write("\n".join(out) + "\n")
        self.out.flush()

    def summary(self) -> list[str]:
        lines = [
            f"summary: trough at {hkt(self.trough_ns)} HKT (scenario clock); "
            f"{self.ticks} ticks seen"
        ]
        if not self.scopes:
            lines.append("summary: no score state changes (no score in this build?)")
            return lines
        order = ["market", *sorted(s for s in self.scopes if s.startswith("asset:"))]
        for scope in order:
            if scope not in self.scopes:
                continue
            lines.append("summary: " + self._lead_line(scope, self.scopes[scope]))
        books = [s for s in self.scopes if s not in order]
        early = [s for s in books if self._before_trough(self.scopes[s], 2)]
        lines.append(f"summary: books in WARNING before the trough: {len(early)}/{len(self.rows)}")
        return lines

    def _before_trough(self, times: FirstTimes, state: int) -> bool:
        first = min((t for s, t in times.first.items() if state <= s <= 3), default=None)
        return first is not None and first <= self.trough_ns

    def _lead_line(self, scope: str, times: FirstTimes) -> str:
        parts = [f"{scope:14s}"]
        for state in (1, 2, 3):
            first = min((t for s, t in times.first.items() if state <= s <= 3), default=None)
            if first is None:
                parts.append(f"{STATE_NAMES[state].upper()} never")
            else:
                lead = (self.trough_ns - first) / spec.MINUTE_NS
                parts.append(f"{STATE_NAMES[state].upper()} {hkt(first)} (lead {lead:+.1f} min)")
        if times.normal_after is not None:
            after = (times.normal_after - self.trough_ns) / spec.MINUTE_NS
            parts.append(f"NORMAL again {hkt(times.normal_after)} (+{after:.1f} min)")
        return "  ".join(parts)


def _band_index(sample: TickSample) -> int | None:
    for k, pct in enumerate(sample.bands_pct):
        if abs(pct - 1.0) < 1e-9:
            return k
    return None


def _usd(x: float) -> str:
    if x != x:
        return "-"
    if x >= 1e6:
        return f"${x / 1e6:.2f}M"
    return f"${x / 1e3:.0f}k"


def _pct(x: float) -> str:
    return "-" if x != x else f"{x * 100:.0f}%"


def _num(x: float, digits: int = 1) -> str:
    return "-" if x != x else f"{x:.{digits}f}"


def market_trough_ns(seed: int, hours: float, step_ms: int) -> int:
    """The scenario's market trough: median over assets of the fair value's low."""
    books = spec.books_for()
    paths = build_paths("collapse", seed, books, hours=hours, step_ms=step_ms)
    t = paths.t_ns
    lo = int(np.searchsorted(t, spec.T0_NS + 25 * spec.MINUTE_NS))
    hi = int(np.searchsorted(t, spec.T0_NS + 60 * spec.MINUTE_NS))
    lo = min(lo, len(t) - 1)
    hi = max(hi, lo + 1)
    troughs = [int(t[lo + int(np.argmin(f[lo:hi]))]) for f in paths.fair_usd.values()]
    return int(np.median(troughs))


async def _read_json_line(stream: asyncio.StreamReader, timeout_s: float) -> dict[str, Any]:
    while True:
        line = await asyncio.wait_for(stream.readline(), timeout_s)
        if not line:
            raise RuntimeError("the local exchange ended before it was ready")
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict):
                return message


async def _follow(stream: asyncio.StreamReader, view: DemoView) -> None:
    """Read the exchange's progress lines until it says it is done."""
    while True:
        message = await _read_json_line(stream, 1e9)
        if message.get("done"):
            return
        if "t" in message and "w" in message:
            view.progress(int(message["t"]), float(message["w"]))


async def run_demo(
    *,
    speed: float,
    seed: int,
    hours: float,
    configs: Sequence[Path],
    out: IO[str],
    tty: bool,
    stop: asyncio.Event | None = None,
    assets: Sequence[str] = (),
) -> int:
    """Start the exchange process, the daemon and the view; returns the exit code."""
    from monitor.app import run_monitor  # noqa: PLC0415

    unknown = [a for a in assets if a not in spec.ASSETS]
    if unknown:
        known = ", ".join(spec.ASSETS)
        sys.stderr.write(f"liqmon: unknown demo asset {unknown[0]!r} (one of {known})\n")
        return 2

    # the exchange merges steps into at most 4 updates a second per book: at high speed
    # a coarser scenario step gives the same updates for less work
    step_ms = 500 if speed < 40 else (1000 if speed < 120 else 2000)
    trough = market_trough_ns(seed, hours, step_ms)
    env = dict(os.environ)
    cmd = [
        sys.executable,
        "-m",
        "feeds.sim.scenario.live",
        "--port",
        "0",
        "--speed",
        repr(speed),
        "--seed",
        str(seed),
        "--hours",
        repr(hours),
        "--step-ms",
        str(step_ms),
        "--assets",
        ",".join(assets),
        "--lead-s",
        "4",
        "--linger-s",
        "30",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, env=env, cwd=os.getcwd()
    )
    assert proc.stdout is not None
    stop = stop or asyncio.Event()
    daemon_task: asyncio.Task[None] | None = None
    outputs = contextlib.AsyncExitStack()
    try:
        try:
            ready = await _read_json_line(proc.stdout, 120.0)
        except (RuntimeError, TimeoutError) as exc:
            sys.stderr.write(f"liqmon: the local exchange did not start: {exc}\n")
            return 1
        port = int(ready["port"])
        symbols: dict[Any, list[str]] = {}
        chosen = spec.books_for(tuple(assets), pegged=False) if assets else spec.books_for()
        for b in chosen:
            symbols.setdefault(b.venue, []).append(b.symbol)
        with tempfile.TemporaryDirectory(prefix="liqmon-demo-") as tmp:
            demo_path = Path(tmp) / "demo.toml"
            demo_path.write_text(demo_config(symbols, port, speed))
            settings = load_settings([demo_path, *configs])
        view = DemoView(out, tty, speed, int(ready["scenario_start_ns"]), trough)
        if not tty:
            out.write(
                f"liqmon demo: 10/11 collapse, seed {seed}, {hours:g} h of market at "
                f"{speed:g}x on 127.0.0.1:{port}; trough {hkt(trough)} HKT\n"
            )
            out.flush()
        sink = CallbackSink(view.on_sample, name="demo")

        def announce(text: str) -> None:
            # the API and the page at api.listen: watch the collapse in a browser
            if not tty:
                out.write(f"liqmon demo: {text}\n")
                out.flush()
            else:
                view.note = text

        # alert rules and the configured subscriptions (webhooks, Telegram), in memory
        alerting = await outputs.enter_async_context(alert_delivery(settings))
        daemon_task = asyncio.ensure_future(
            run_monitor(
                settings,
                stop=stop,
                sinks=[sink],
                alerts=alerting,
                announce=announce,
                api_optional=True,
            )
        )
        started = await _read_json_line(proc.stdout, 60.0)
        view.wall_start = float(started.get("wall_start", time.time()))
        done_wait = asyncio.ensure_future(_follow(proc.stdout, view))
        stop_wait = asyncio.ensure_future(stop.wait())
        await asyncio.wait({done_wait, stop_wait, daemon_task}, return_when=asyncio.FIRST_COMPLETED)
        for task in (done_wait, stop_wait):
            task.cancel()
        stop.set()
        await daemon_task
    finally:
        stop.set()
        await outputs.aclose()  # the alerts still due go out (bounded), then delivery stops
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10.0)
        if proc.returncode is None:
            proc.kill()
    if tty:
        view.draw()
    for line in view.summary():
        out.write(line + "\n")
    out.flush()
    return 0
