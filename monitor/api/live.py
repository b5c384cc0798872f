"""The API's live state: a sink that keeps the latest tick and pushes it to WebSocket clients.

:class:`LiveState` receives every :class:`~monitor.sample.TickSample` (the daemon drives it
through its own bounded :class:`~monitor.sinks.SinkQueue`, like any sink). Per tick it:

- turns the sample into one row per book (venue, asset, 1% depth, spread, dislocation from
  the asset's consensus, basis of a perp against the spot consensus, validity, state);
- notices book state changes (live -> stale -> syncing ...) and keeps the latest of them
  as events (a ring), to be shown as a timeline;
- hands the rows and events to the :class:`PushHub`, whose clients each have a bounded
  queue: publishing never awaits a client, and a client whose queue is full is dropped.

Dislocation, basis, the score, its state and components come from the analytics stage
(``sample.analytics``/``sample.assets``); a sample without them (analytics off) falls back to
the median of the valid spot books' USD mids per asset as the consensus, and no score.
Score state changes (``sample.events``) are pushed as ``score`` events.

The daemon itself (books for ``/books``, per-venue health, sink queue depths) is reached
through :class:`DaemonView`, attached once the daemon exists; ``liqmon serve`` has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np
from aiohttp import web

from monitor.log import get_logger
from monitor.sample import COMPONENTS, SCORE_SEVERITY, SCORE_STATES, STATE_NAMES, TickSample
from monitor.sinks import SinkQueue

log = get_logger("monitor.api.live")

EVENT_RING = 2000  # state changes and alerts kept in memory for /events and new clients
PUSH_KINDS = ("tick", "event")


class PipelineView(Protocol):
    def book_summaries(self, depth: int = ...) -> list[dict[str, Any]]: ...


class DaemonView(Protocol):
    """What the API reads from a running daemon (``monitor.daemon.Daemon`` has it)."""

    sink_queues: list[SinkQueue]

    @property
    def pipeline(self) -> PipelineView | None: ...

    def health_state(self) -> dict[str, dict[str, Any]]: ...


def _num(x: float) -> float | None:
    return None if x != x or math.isinf(x) else float(x)


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _points(values: Any) -> dict[str, float] | None:
    if values is None or not len(values) or values[0] != values[0]:
        return None
    return {n: round(float(p), 1) for n, p in zip(COMPONENTS, values, strict=False)}


def asset_rows(sample: TickSample, band_pct: float = 1.0) -> list[dict[str, Any]]:
    """One row per book: what the live table shows (JSON-ready, ``None`` for unknown)."""
    rows = _fallback_rows(sample, band_pct)
    book = sample.analytics
    if book is not None:
        for i, row in enumerate(rows):
            valid = row["valid"]
            perp = row["kind"] != "spot"
            lvs = float(book.lvs_smoothed[i])
            row["mid_usd"] = _num(float(book.mid_usd[i])) if valid else None
            row["dislocation_bps"] = _round(_num(float(book.dislocation_bps[i])), 3)
            row["basis_bps"] = _round(_num(float(book.basis_bps[i])), 3) if perp else None
            row["score"] = _round(_num(lvs), 1)
            row["score_state"] = SCORE_STATES[int(book.score_state[i])]
            row["components"] = _points(book.components[i])
    return rows


def asset_summaries(sample: TickSample) -> list[dict[str, Any]]:
    """One row per asset (analytics on): consensus, depth, score, state, components."""
    assets = sample.assets
    if assets is None:
        return []
    out = []
    for a, name in enumerate(assets.assets):
        lvs = float(assets.lvs_smoothed[a])
        lo, second = int(assets.lowest_row[a]), int(assets.second_row[a])
        out.append(
            {
                "asset": name,
                "consensus_usd": _num(float(assets.consensus_usd[a])),
                "depth_venue_sum_usd": _round(_num(float(assets.depth_venue_sum_usd[a])), 2),
                "depth_consolidated_usd": _round(_num(float(assets.depth_consolidated_usd[a])), 2),
                "basis_bps": _round(_num(float(assets.basis_bps[a])), 3),
                "score": _round(_num(lvs), 1),
                "state": SCORE_STATES[int(assets.state[a])],
                "components": _points(assets.components[a]),
                "lowest": None
                if lo < 0 or second < 0
                else {
                    "venue": sample.books[lo].venue,
                    "second_venue": sample.books[second].venue,
                    "gap_bps": _round(_num(float(assets.low_gap_bps[a])), 3),
                },
            }
        )
    return out


def _fallback_rows(sample: TickSample, band_pct: float) -> list[dict[str, Any]]:
    try:
        band = sample.band_index(band_pct)
    except KeyError:
        band = min(range(len(sample.bands_pct)), key=lambda k: abs(sample.bands_pct[k] - band_pct))
    mid_usd = sample.mid * np.where(np.isfinite(sample.fx_usd), sample.fx_usd, np.nan)
    consensus: dict[str, float] = {}
    spot_mids: dict[str, list[float]] = {}
    for i, ident in enumerate(sample.books):
        if ident.kind == "spot" and sample.valid[i] and mid_usd[i] == mid_usd[i]:
            spot_mids.setdefault(ident.base, []).append(float(mid_usd[i]))
    for asset, mids in spot_mids.items():
        consensus[asset] = statistics.median(mids)
    all_mids: dict[str, list[float]] = {}
    for i, ident in enumerate(sample.books):
        if sample.valid[i] and mid_usd[i] == mid_usd[i]:
            all_mids.setdefault(ident.base, []).append(float(mid_usd[i]))
    rows = []
    for i, ident in enumerate(sample.books):
        valid = bool(sample.valid[i])
        bid_d, ask_d = (float(x) for x in sample.depth_usd[i, band])
        m = float(mid_usd[i])
        ref = consensus.get(ident.base)
        if ref is None and all_mids.get(ident.base):
            ref = statistics.median(all_mids[ident.base])
        dislocation = (m / ref - 1.0) * 1e4 if valid and ref and m == m else None
        spot_ref = consensus.get(ident.base)
        basis = (
            (m / spot_ref - 1.0) * 1e4
            if valid and ident.kind != "spot" and spot_ref and m == m
            else None
        )
        rows.append(
            {
                "venue": ident.venue,
                "symbol": ident.symbol,
                "instrument": ident.instrument,
                "asset": ident.base,
                "quote": ident.quote,
                "kind": ident.kind,
                "valid": valid,
                "stale": bool(sample.stale[i]),
                "state": STATE_NAMES[int(sample.book_state[i])],
                "mid": _num(float(sample.mid[i])) if valid else None,
                "mid_usd": _num(m) if valid else None,
                "spread_bps": _round(_num(float(sample.spread_bps[i])), 3) if valid else None,
                "depth_1pct_usd": _round(_num(bid_d + ask_d), 2) if valid else None,
                "depth_1pct_bid_usd": _round(_num(bid_d), 2) if valid else None,
                "depth_1pct_ask_usd": _round(_num(ask_d), 2) if valid else None,
                "dislocation_bps": _round(dislocation, 3),
                "basis_bps": _round(basis, 3),
                "score": None,
                "score_state": None,
                "components": None,
                "book_age_s": _round(_num(float(sample.book_age_s[i])), 3),
                "updates": int(sample.updates[i]),
            }
        )
    return rows


@dataclass(frozen=True, slots=True)
class Filters:
    """What one push client asked for (empty set: everything)."""

    assets: frozenset[str] = frozenset()
    venues: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset(PUSH_KINDS)

    def row_ok(self, row: dict[str, Any]) -> bool:
        return (not self.assets or row.get("asset") in self.assets) and (
            not self.venues or row.get("venue") in self.venues
        )

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "assets": sorted(self.assets),
            "venues": sorted(self.venues),
            "kinds": sorted(self.kinds),
        }


class FilterError(ValueError):
    """A bad filter: the message names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def _names(value: Any, parameter: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise FilterError(parameter, "expected a comma-separated string or a list of strings")
    return frozenset(v for v in items if v)


def parse_filters(values: dict[str, Any]) -> Filters:
    """Filters from query parameters or a client's ``{"subscribe": {...}}`` message."""
    unknown = set(values) - {"assets", "venues", "kinds"}
    if unknown:
        name = sorted(unknown)[0]
        raise FilterError(name, "unknown filter (expected assets, venues or kinds)")
    assets = frozenset(a.upper() for a in _names(values.get("assets"), "assets"))
    venues = _names(values.get("venues"), "venues")
    kinds = _names(values.get("kinds"), "kinds") or frozenset(PUSH_KINDS)
    bad = kinds - set(PUSH_KINDS)
    if bad:
        raise FilterError("kinds", f"unknown kind {sorted(bad)[0]!r} (expected tick or event)")
    return Filters(assets, venues, kinds)


@dataclass(eq=False)
class PushClient:
    """One WebSocket client: its filters and its bounded queue of encoded messages."""

    ws: web.WebSocketResponse
    filters: Filters
    queue: asyncio.Queue[bytes]
    peer: str
    transport: asyncio.BaseTransport | None
    sent: int = 0
    dropped: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PushHub:
    """Fans live messages out to WebSocket clients without ever waiting for one.

    ``publish_*`` put an encoded message on each interested client's queue (``put_nowait``);
    a client whose queue is full (``queue_size`` messages behind) is dropped: its socket is
    closed with 1013 ("try again later") and it is counted. One task per client sends.
    """

    def __init__(self, queue_size: int = 256, max_clients: int = 1000) -> None:
        self.queue_size = queue_size
        self.max_clients = max_clients
        self.clients: set[PushClient] = set()
        self.dropped_total = 0
        self.messages_total = 0
        self._encode = msgspec.json.Encoder().encode

    def add(
        self,
        ws: web.WebSocketResponse,
        filters: Filters,
        peer: str,
        transport: asyncio.BaseTransport | None = None,
    ) -> PushClient:
        client = PushClient(ws, filters, asyncio.Queue(self.queue_size), peer, transport)
        self.clients.add(client)
        return client

    def remove(self, client: PushClient) -> None:
        self.clients.discard(client)
        client.done.set()

    def max_queue_depth(self) -> int:
        return max((c.queue.qsize() for c in self.clients), default=0)

    def _offer(self, client: PushClient, message: bytes) -> None:
        if client.dropped:
            return
        try:
            client.queue.put_nowait(message)
            self.messages_total += 1
        except asyncio.QueueFull:
            self.drop(client, f"too slow: {client.queue.qsize()} messages queued")

    def drop(self, client: PushClient, reason: str) -> None:
        """Stop sending to a client that fell behind (never awaited by the publisher)."""
        client.dropped = True
        self.dropped_total += 1
        self.clients.discard(client)
        log.warning("api.ws_client_dropped", peer=client.peer, reason=reason)
        # a close handshake would queue behind the stuck send: the connection is cut
        # instead, and the sender task ends on the error
        if client.transport is not None and not client.transport.is_closing():
            client.transport.abort()  # type: ignore[attr-defined]
        client.done.set()

    def publish_tick(
        self,
        ts_ms: int,
        rows: Sequence[dict[str, Any]],
        assets: Sequence[dict[str, Any]] = (),
    ) -> None:
        """The tick's rows, each client getting the rows (and assets) its filters select."""
        cache: dict[tuple[frozenset[str], frozenset[str]], bytes] = {}
        for client in list(self.clients):
            f = client.filters
            if "tick" not in f.kinds:
                continue
            key = (f.assets, f.venues)
            message = cache.get(key)
            if message is None:
                selected = [r for r in rows if f.row_ok(r)]
                chosen = [a for a in assets if not f.assets or a["asset"] in f.assets]
                message = self._encode(
                    {"type": "tick", "ts": ts_ms, "rows": selected, "assets": chosen}
                )
                cache[key] = message
            self._offer(client, message)

    def publish_events(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            message: bytes | None = None
            for client in list(self.clients):
                f = client.filters
                if "event" not in f.kinds or not f.row_ok(event):
                    continue
                if message is None:
                    message = self._encode({"type": "event", "event": event})
                self._offer(client, message)

    async def send_loop(self, client: PushClient) -> None:
        """The client's sender: one message at a time, in order, until dropped or closed."""
        while not client.dropped:
            message = await client.queue.get()
            await client.ws.send_str(message.decode())
            client.sent += 1

    async def close_all(self) -> None:
        for client in list(self.clients):
            self.remove(client)
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"server shutting down")


class LiveState:
    """The sink behind the live endpoints, the live push and the page."""

    name = "api-live"

    def __init__(self, hub: PushHub | None = None, band_pct: float = 1.0) -> None:
        self.hub = hub or PushHub()
        self.band_pct = band_pct
        self.sample: TickSample | None = None
        self.rows: list[dict[str, Any]] = []
        self.assets: list[dict[str, Any]] = []
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_RING)
        self.event_seq = 0
        self.ticks = 0
        self.daemon: DaemonView | None = None
        self.started_ns = time.time_ns()
        self._states: dict[tuple[str, str], str] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def attach(self, daemon: DaemonView) -> None:
        """The running daemon (books, health, sink queues) for the live endpoints."""
        self.daemon = daemon

    async def write(self, sample: TickSample) -> None:
        self.observe(sample)

    async def close(self) -> None:
        return None

    def observe(self, sample: TickSample) -> None:
        rows = asset_rows(sample, self.band_pct)
        assets = asset_summaries(sample)
        ts_ms = sample.ts_ns // 1_000_000
        events: list[dict[str, Any]] = []
        for row in rows:
            key = (row["venue"], row["symbol"])
            before = self._states.get(key)
            if before is not None and before != row["state"]:
                events.append(
                    {
                        "ts": ts_ms,
                        "kind": "book_state",
                        "venue": row["venue"],
                        "symbol": row["symbol"],
                        "asset": row["asset"],
                        "from": before,
                        "to": row["state"],
                    }
                )
            self._states[key] = row["state"]
        for change in sample.events:
            value = change.value
            events.append(
                {
                    "ts": change.ts_ns // 1_000_000,
                    "kind": "score",
                    "asset": change.asset,
                    "venue": change.venue,
                    "symbol": change.symbol,
                    "from": SCORE_STATES[change.previous],
                    "to": SCORE_STATES[change.state],
                    "state": SCORE_STATES[change.state],
                    "severity": SCORE_SEVERITY[change.state],
                    "value": None if value != value else round(value, 2),
                    "components": None if value != value else _points(change.components),
                }
            )
        self.sample = sample
        self.rows = rows
        self.assets = assets
        self.ticks += 1
        self.hub.publish_tick(ts_ms, rows, assets)
        if events:
            self.add_events(events)

    def add_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Record events (state changes, alerts) and push them to clients."""
        stamped = []
        for event in events:
            self.event_seq += 1
            stamped.append({"id": self.event_seq, **event})
        self.events.extend(stamped)
        self.hub.publish_events(stamped)
