"""The compact status ``liqmon run`` prints every few seconds: the market at a glance.

:class:`StatusSink` is a sink: it keeps the latest tick sample and, per book, a slow average
of its ±1% depth (its own recent level). :meth:`StatusSink.render` turns that and the
daemon's per-venue health counters into a few lines of text::

    21:14:05  64 books: 61 live, 1 stale, 2 resyncing
    venue            books  msg/s  gaps  resyncs  reconnects
    binance          10/10  412.0     0        0           0
    kraken            5/6    38.5     1        1           0   kraken: 1 book resyncing
    thinnest ±1% depth against its own recent level:
      binance    DOGEUSDT      $412k   31% of recent  spread 3.1 bp
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from monitor.sample import TickSample

RECENT_HALF_LIFE_S = 600.0  # the "recent level" of a book's depth: 10-minute EWMA


def _usd(x: float) -> str:
    if x != x:
        return "—"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"${x / scale:.1f}{unit}" if abs(x) < 10 * scale else f"${x / scale:.0f}{unit}"
    return f"${x:.0f}"


class StatusSink:
    """Keeps what the status needs from each tick (cheap: a few vector operations)."""

    name = "status"

    def __init__(self, band_pct: float = 1.0, worst: int = 5) -> None:
        self.band_pct = band_pct
        self.worst = worst
        self.sample: TickSample | None = None
        self.recent: np.ndarray = np.zeros(0)  # per row: EWMA of total ±band depth (USD)
        self._last_ts_ns = 0
        self._last_updates: dict[str, int] = {}
        self._last_render_ns = 0

    async def write(self, sample: TickSample) -> None:
        self.observe(sample)

    async def close(self) -> None:
        return None

    def observe(self, sample: TickSample) -> None:
        try:
            band = sample.band_index(self.band_pct)
        except KeyError:
            band = 0
        depth = sample.depth_usd[:, band, :].sum(axis=1)
        n = len(sample)
        if self.recent.shape[0] < n:
            grown = np.full(n, np.nan)
            grown[: self.recent.shape[0]] = self.recent
            self.recent = grown
        dt_s = (sample.ts_ns - self._last_ts_ns) / 1e9 if self._last_ts_ns else 0.0
        alpha = 1.0 - math.exp(-math.log(2) * max(dt_s, 0.0) / RECENT_HALF_LIFE_S)
        ok = sample.valid & np.isfinite(depth)
        fresh = ok & ~np.isfinite(self.recent[:n])
        self.recent[:n][fresh] = depth[fresh]
        blend = ok & ~fresh
        self.recent[:n][blend] += alpha * (depth[blend] - self.recent[:n][blend])
        self._last_ts_ns = sample.ts_ns
        self.sample = sample

    def render(self, health: Mapping[str, Mapping[str, Any]], now_ns: int | None = None) -> str:
        """The status text (no trailing newline)."""
        now_ns = now_ns if now_ns is not None else time.time_ns()
        sample = self.sample
        elapsed_s = (now_ns - self._last_render_ns) / 1e9 if self._last_render_ns else 0.0
        self._last_render_ns = now_ns
        clock = time.strftime("%H:%M:%S", time.localtime(now_ns / 1e9))
        lines: list[str] = []
        if sample is None:
            lines.append(f"{clock}  waiting for the first tick")
        else:
            n = len(sample)
            stale = int(sample.stale.sum())
            live = int(sample.valid.sum())
            lines.append(
                f"{clock}  {n} books: {live} live, {stale} stale, {n - live - stale} not synced"
            )
        lines.append(
            f"{'venue':<16} {'books':>7} {'msg/s':>8} {'gaps':>5} {'resyncs':>8} {'reconnects':>11}"
        )
        updates: dict[str, int] = {}
        valid_by_venue: dict[str, tuple[int, int]] = {}
        if sample is not None:
            for i, ident in enumerate(sample.books):
                updates[ident.venue] = updates.get(ident.venue, 0) + int(sample.updates[i])
                ok, total = valid_by_venue.get(ident.venue, (0, 0))
                valid_by_venue[ident.venue] = (ok + int(sample.valid[i]), total + 1)
        for venue, state in health.items():
            ok, total = valid_by_venue.get(venue, (0, int(state.get("books", 0))))
            count = updates.get(venue, 0)
            previous = self._last_updates.get(venue)
            rate = (count - previous) / elapsed_s if previous is not None and elapsed_s > 0 else 0.0
            self._last_updates[venue] = count
            reconnects = max(
                0, int(state.get("connects", 0)) - int(state.get("open_connections", 0))
            )
            line = (
                f"{venue:<16} {f'{ok}/{total}':>7} {rate:>8.1f} {int(state.get('gaps', 0)):>5} "
                f"{int(state.get('resyncs', 0)):>8} {reconnects:>11}"
            )
            error = state.get("last_error")
            if ok < total and error:
                line += f"   {error}"
            lines.append(line)
        if sample is not None and len(sample):
            lines.extend(self._thinnest(sample))
        return "\n".join(lines)

    def _thinnest(self, sample: TickSample) -> list[str]:
        try:
            band = sample.band_index(self.band_pct)
        except KeyError:
            band = 0
        n = len(sample)
        depth = sample.depth_usd[:, band, :].sum(axis=1)
        recent = self.recent[:n]
        ok = sample.valid & np.isfinite(depth) & np.isfinite(recent) & (recent > 0)
        rows = np.flatnonzero(ok)
        if not rows.size:
            return []
        ratio = depth[rows] / recent[rows]
        order = rows[np.argsort(ratio, kind="stable")][: self.worst]
        out = [f"thinnest ±{sample.bands_pct[band]:g}% depth against its own recent level:"]
        for i in order:
            ident = sample.books[i]
            pct = depth[i] / recent[i] * 100
            out.append(
                f"  {ident.venue:<16} {ident.symbol:<16} {_usd(float(depth[i])):>8} "
                f"{pct:>5.0f}% of recent  spread {float(sample.spread_bps[i]):.1f} bp"
            )
        return out
