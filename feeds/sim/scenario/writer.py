"""A scenario written as a liqmon recording (``liqmon replay`` runs it) plus ``labels.json``.

The recording is what ``liqmon record`` would have written watching the four venues live:
each venue's instrument metadata (REST), Binance spot and USD-M REST depth snapshots, and the
websocket frames exactly as each venue writes them (Binance ``depthUpdate`` with ``U``/``u``
(USD-M also ``pu``) and ``markPriceUpdate``, Coinbase ``l2_data`` with the connection's
``sequence_num``, OKX ``books`` with ``seqId``/``prevSeqId``). ``ts`` is the receive time
on the scenario's clock (integer ns, never the wall clock), so the same seed gives a
byte-identical file (gzip header without name or mtime).

Feed faults appear as a recorder would see them: latency delays receive times (frames of
one connection stay in order), a dropped diff leaves a hole in the venue's ids, REST
snapshots that answered 503 are absent (the next successful one is there), a frozen or
disconnected venue sends nothing, and its books come back with fresh snapshots.

Diffs are one per book per step: 500 ms by default instead of the venues' 100 ms, which
keeps a 3-hour, 25-book scenario at ~10^5-10^6 frames (generation and replay in seconds).
"""

from __future__ import annotations

import gzip
import heapq
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from feeds.recording import Record, RecordKind
from feeds.sim.scenario import spec
from feeds.sim.scenario.core import Scenario
from feeds.sim.scenario.labels import build_labels
from feeds.sim.scenario.model import rng_for
from feeds.sim.scenario.spec import MINUTE_NS, SECOND_NS
from monitor.domain import InstrumentKind, Venue, significant_decimals

BASE = "http://127.0.0.1:8765"
WS_URL = {
    Venue.BINANCE: "ws://127.0.0.1:8765/binance/stream",
    Venue.BINANCE_FUTURES: "ws://127.0.0.1:8765/binance_futures/public/stream",
    Venue.COINBASE: "ws://127.0.0.1:8765/coinbase/",
    Venue.OKX: "ws://127.0.0.1:8765/okx/ws/v5/public",
}
SNAPSHOT_LIMIT = 1000
REST_SNAPSHOTS = frozenset({Venue.BINANCE, Venue.BINANCE_FUTURES})
_encode = msgspec.json.Encoder().encode


def _fmt(units: int, decimals: int, fixed: bool) -> str:
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**decimals)
    text = f"{sign}{whole}.{frac:0{decimals}d}"
    if not fixed:
        text = text.rstrip("0").rstrip(".")
    return text


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


@dataclass
class _Book:
    index: int
    venue: Venue
    symbol: str
    pd: int  # price decimals
    qd: int  # qty decimals
    fixed: bool  # Binance writes fixed decimals; Coinbase and OKX the shortest form
    seq: int
    stream: str
    perp: bool


class _Writer:
    """Formats frames per venue and keeps the connections' counters."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.books: list[_Book] = []
        for i, inst in enumerate(scenario.instruments):
            venue = inst.venue
            fixed = venue in (Venue.BINANCE, Venue.BINANCE_FUTURES)
            self.books.append(
                _Book(
                    i,
                    venue,
                    inst.symbol,
                    inst.price_decimals,
                    significant_decimals(inst.lot),
                    fixed,
                    1_000_000 * (i + 1),
                    f"{inst.symbol.lower()}@depth@100ms",
                    inst.kind == InstrumentKind.PERP,
                )
            )
        self.coinbase_seq = 0
        self.px_cache: list[dict[int, str]] = [{} for _ in self.books]

    def px(self, b: _Book, units: int) -> str:
        cache = self.px_cache[b.index]
        text = cache.get(units)
        if text is None:
            text = _fmt(units, b.pd, b.fixed)
            cache[units] = text
        return text

    def qtys(self, b: _Book, qty: np.ndarray) -> list[str]:
        """Sizes as the venue writes them (exact: sizes stay far below 2**52 units)."""
        if b.qd == 0:
            return [str(q) for q in qty.tolist()]
        scale = 10.0**b.qd
        spec_ = f".{b.qd}f"
        texts = [format(q / scale, spec_) for q in qty.tolist()]
        if not b.fixed:
            texts = [x.rstrip("0").rstrip(".") for x in texts]
        return texts

    def levels(self, b: _Book, px: np.ndarray, qty: np.ndarray, okx: bool = False) -> str:
        cache = self.px_cache[b.index]
        pxs = [cache.get(p) or self.px(b, p) for p in px.tolist()]
        qs = self.qtys(b, qty)
        if okx:
            orders = [
                str(1 + (p + q) % 5) if q else "0"
                for p, q in zip(px.tolist(), qty.tolist(), strict=True)
            ]
            parts = [f'["{p}","{q}","0","{o}"]' for p, q, o in zip(pxs, qs, orders, strict=True)]
        else:
            parts = [f'["{p}","{q}"]' for p, q in zip(pxs, qs, strict=True)]
        return "[" + ",".join(parts) + "]"

    def delta(
        self,
        b: _Book,
        ts_ns: int,
        bids: tuple[np.ndarray, np.ndarray],
        asks: tuple[np.ndarray, np.ndarray],
    ) -> str:
        ms = ts_ns // 1_000_000
        prev = b.seq
        b.seq += 1
        if b.venue == Venue.BINANCE:
            data = (
                f'{{"e":"depthUpdate","E":{ms},"s":"{b.symbol}","U":{b.seq},"u":{b.seq},'
                f'"b":{self.levels(b, *bids)},"a":{self.levels(b, *asks)}}}'
            )
            return f'{{"stream":"{b.stream}","data":{data}}}'
        if b.venue == Venue.BINANCE_FUTURES:
            data = (
                f'{{"e":"depthUpdate","E":{ms},"T":{ms},"s":"{b.symbol}","U":{b.seq},'
                f'"u":{b.seq},"pu":{prev},"b":{self.levels(b, *bids)},'
                f'"a":{self.levels(b, *asks)}}}'
            )
            return f'{{"stream":"{b.stream}","data":{data}}}'
        if b.venue == Venue.OKX:
            return (
                f'{{"arg":{{"channel":"books","instId":"{b.symbol}"}},"action":"update",'
                f'"data":[{{"asks":{self.levels(b, *asks, okx=True)},'
                f'"bids":{self.levels(b, *bids, okx=True)},"ts":"{ms}","checksum":0,'
                f'"prevSeqId":{prev},"seqId":{b.seq}}}]}}'
            )
        return self._coinbase(b, ts_ns, "update", bids, asks)

    def _coinbase(
        self,
        b: _Book,
        ts_ns: int,
        kind: str,
        bids: tuple[np.ndarray, np.ndarray],
        asks: tuple[np.ndarray, np.ndarray],
    ) -> str:
        stamp = _rfc3339(ts_ns)
        event_time = stamp if kind == "update" else "1970-01-01T00:00:00Z"
        ups = []
        for side, (px, qty) in (("bid", bids), ("offer", asks)):
            head = f'{{"side":"{side}","event_time":"{event_time}","price_level":"'
            cache = self.px_cache[b.index]
            for p, q in zip(px.tolist(), self.qtys(b, qty), strict=True):
                ups.append(f'{head}{cache.get(p) or self.px(b, p)}","new_quantity":"{q}"}}')
        number = self.coinbase_seq
        self.coinbase_seq += 1
        return (
            f'{{"channel":"l2_data","client_id":"","timestamp":"{stamp}",'
            f'"sequence_num":{number},"events":[{{"type":"{kind}","product_id":"{b.symbol}",'
            f'"updates":[{",".join(ups)}]}}]}}'
        )

    def snapshot(self, b: _Book, ts_ns: int, snap: tuple[np.ndarray, ...]) -> tuple[str, str, str]:
        """(kind, url, text) of a book's snapshot: REST for Binance, in-band otherwise."""
        bp, bq, ap, aq = snap
        ms = ts_ns // 1_000_000
        if b.venue == Venue.BINANCE:
            text = (
                f'{{"lastUpdateId":{b.seq},"bids":{self.levels(b, bp, bq)},'
                f'"asks":{self.levels(b, ap, aq)}}}'
            )
            return (
                "http",
                f"{BASE}/binance/api/v3/depth?symbol={b.symbol}&limit={SNAPSHOT_LIMIT}",
                text,
            )
        if b.venue == Venue.BINANCE_FUTURES:
            text = (
                f'{{"lastUpdateId":{b.seq},"E":{ms},"T":{ms},"bids":{self.levels(b, bp, bq)},'
                f'"asks":{self.levels(b, ap, aq)}}}'
            )
            url = f"{BASE}/binance_futures/fapi/v1/depth?symbol={b.symbol}&limit={SNAPSHOT_LIMIT}"
            return "http", url, text
        if b.venue == Venue.OKX:
            text = (
                f'{{"arg":{{"channel":"books","instId":"{b.symbol}"}},"action":"snapshot",'
                f'"data":[{{"asks":{self.levels(b, ap, aq, okx=True)},'
                f'"bids":{self.levels(b, bp, bq, okx=True)},"ts":"{ms}","checksum":0,'
                f'"prevSeqId":-1,"seqId":{b.seq}}}]}}'
            )
            return "ws", WS_URL[b.venue], text
        return "ws", WS_URL[b.venue], self._coinbase(b, ts_ns, "snapshot", (bp, bq), (ap, aq))

    def mark(self, b: _Book, ts_ns: int, k: int) -> str:
        p = self.sc.paths.books[b.index]
        assert p.mark is not None and p.index is not None and p.funding is not None
        scale = 10**b.pd
        mark = _fmt(round(float(p.mark[k]) * scale), b.pd, True)
        index = _fmt(round(float(p.index[k]) * scale), b.pd, True)
        ms = ts_ns // 1_000_000
        nxt = (ms // 28_800_000 + 1) * 28_800_000
        data = (
            f'{{"e":"markPriceUpdate","E":{ms},"s":"{b.symbol}","p":"{mark}","i":"{index}",'
            f'"P":"{mark}","r":"{float(p.funding[k]):.8f}","T":{nxt}}}'
        )
        return f'{{"stream":"{b.symbol.lower()}@markPrice@1s","data":{data}}}'


@dataclass
class FaultPlan:
    """What the venues do wrong, decided before the books are generated."""

    silent: dict[Venue, list[tuple[int, int]]]  # steps a venue sends nothing (frozen/outage)
    dropped: set[tuple[int, int]]  # (book, step) diffs numbered but never sent
    latency_ns: dict[Venue, np.ndarray]  # extra receive delay per step (0 outside faults)
    snapshots: dict[int, dict[int, int]]  # book -> {step: receive ns} resync snapshots
    windows: list[dict[str, Any]]  # for labels.json


def plan_faults(sc: Scenario) -> FaultPlan:
    n = sc.n_steps
    step_ns = sc.paths.step_ns
    minute = MINUTE_NS * sc.paths.timeline  # the collapse clock (stretched timelines)
    t = sc.step_ns(np.arange(n))
    silent: dict[Venue, list[tuple[int, int]]] = {}
    dropped: set[tuple[int, int]] = set()
    latency: dict[Venue, np.ndarray] = {}
    snaps: dict[int, dict[int, int]] = {i: {} for i in range(len(sc.books))}
    windows: list[dict[str, Any]] = []

    def step_at(ns: int) -> int:
        return int(min(n - 1, max(0, (ns - sc.paths.start_ns + step_ns - 1) // step_ns)))

    def resync(venue: Venue, resume_step: int, delay_ns: int) -> None:
        if resume_step >= n:
            return
        for i, b in enumerate(sc.books):
            if b.venue == venue:
                at = int(t[resume_step]) + delay_ns
                k = (
                    step_at(at - 50_000_000)
                    if venue in (Venue.BINANCE, Venue.BINANCE_FUTURES)
                    else resume_step
                )
                snaps[i][k] = max(at, int(t[k]) + 1)

    if sc.kind == "collapse":
        v1 = spec.V1
        lo, hi = spec.V1_LATENCY
        a = step_at(spec.T0_NS + int(lo * minute))
        b_ = step_at(spec.T0_NS + int(hi * minute))
        rng = rng_for(sc.seed, v1.value, "connection", "latency")
        lat = np.zeros(n)
        sigma = np.log(8.0 / 1.5) / 2.326
        lat[a:b_] = 1.5 * np.exp(sigma * rng.standard_normal(b_ - a)) * SECOND_NS
        recv = np.maximum.accumulate(t + lat)
        latency[v1] = (recv - t).astype(np.int64)
        rest_ok = int(t[a]) + int(spec.V1_REST_503_S * SECOND_NS)
        drop_rng = rng_for(sc.seed, v1.value, "connection", "drops")
        for i, bk in enumerate(sc.books):
            if bk.venue != v1:
                continue
            for k in np.flatnonzero(drop_rng.random(b_ - a) < 0.02) + a:
                dropped.add((i, int(k)))
                if k + 1 >= n:
                    continue
                detect = int(recv[k + 1]) + 50_000_000
                at = max(detect, rest_ok + 50_000_000)
                ks = step_at(at - 50_000_000)
                snaps[i][ks] = max(at + 100_000_000, int(recv[ks]) + 1)
        windows.append(
            {
                "kind": "latency",
                "venue": v1.value,
                "start_ns": int(t[a]),
                "end_ns": int(t[b_]),
                "median_s": 1.5,
                "p99_s": 8.0,
                "dropped_diffs": len(dropped),
            }
        )
        windows.append(
            {"kind": "rest_503", "venue": v1.value, "start_ns": int(t[a]), "end_ns": rest_ok}
        )
        for kind, venue, (s, e) in (
            ("frozen", v1, spec.V1_FROZEN),
            ("disconnect", spec.V4, spec.V4_DISCONNECT),
        ):
            ks, ke = (
                step_at(spec.T0_NS + int(s * minute)),
                step_at(spec.T0_NS + int(e * minute)),
            )
            silent.setdefault(venue, []).append((ks, ke))
            resync(venue, ke, 300_000_000)
            windows.append(
                {"kind": kind, "venue": venue.value, "start_ns": int(t[ks]), "end_ns": int(t[ke])}
            )
    else:
        for ev in sc.paths.events:
            if ev["kind"] == "outage":
                venue = Venue(ev["venue"])
                ks, ke = step_at(ev["start_ns"]), step_at(ev["end_ns"])
                silent.setdefault(venue, []).append((ks, ke))
                resync(venue, ke, 300_000_000)
                windows.append(
                    {
                        "kind": "outage",
                        "venue": venue.value,
                        "start_ns": int(t[ks]),
                        "end_ns": int(t[ke]),
                    }
                )
    return FaultPlan(silent, dropped, latency, snaps, windows)


@dataclass
class WriteResult:
    recording: Path
    labels: Path
    config: Path
    records: int
    frames: int
    seconds: float


def write_scenario(
    out_dir: str | Path,
    sc: Scenario,
    *,
    name: str = "scenario",
    progress: Callable[[str], None] | None = None,
) -> WriteResult:
    """Write ``<name>.jsonl.gz``, ``labels.json`` and ``liqmon.toml`` into ``out_dir``."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / f"{name}.jsonl.gz"
    w = _Writer(sc)
    plan = plan_faults(sc)
    t_all = sc.step_ns(np.arange(sc.n_steps))
    silent_mask = {v: np.zeros(sc.n_steps, dtype=np.bool_) for v in plan.silent}
    for v, spans in plan.silent.items():
        for s, e in spans:
            silent_mask[v][s:e] = True
    snapshot_steps = {i: set(d) for i, d in plan.snapshots.items()}
    for i in range(len(sc.books)):  # every book starts from a snapshot at step 0
        snapshot_steps[i].add(0)
    venue_order = {
        v: n for n, v in enumerate(sorted({b.venue for b in sc.books}, key=lambda v: v.value))
    }
    heap: list[tuple[int, int, int, int, str, str, str]] = []
    records = frames = 0
    n_books = len(sc.books)
    depth_bid = np.zeros((n_books, sc.n_steps))
    depth_ask = np.zeros((n_books, sc.n_steps))
    serial = 0
    raw = open(rec_path, "wb")  # noqa: SIM115 - closed below
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0)

    def emit(ts: int, venue: Venue, book: int, kind: str, url: str, text: str) -> None:
        nonlocal serial
        serial += 1
        heapq.heappush(heap, (ts, venue_order[venue], book, serial, kind, url, text))

    def flush(until_ns: int | None) -> None:
        nonlocal records
        lines = []
        while heap and (until_ns is None or heap[0][0] < until_ns):
            ts, _, _, _, kind, url, text = heapq.heappop(heap)
            lines.append(
                _encode(
                    Record(
                        ts=ts / 1e9, venue=_venue_of(url), kind=RecordKind(kind), url=url, data=text
                    )
                )
            )
        if lines:
            gz.write(b"\n".join(lines) + b"\n")
            records += len(lines)

    # metadata first, as the daemon fetches it before subscribing
    t0 = int(t_all[0])
    for venue, (path, text) in sorted(sc.metadata.items(), key=lambda kv: kv[0].value):
        emit(t0 - 2 * SECOND_NS, venue, -1, "http", f"{BASE}/{venue.value}{path}", text)
    mark_every = max(1, 1000 // sc.step_ms)
    for _k0, k1, per_book in sc.chunks(snapshot_steps):
        for i, chunks in enumerate(per_book):
            bk = w.books[i]
            lat = plan.latency_ns.get(bk.venue)
            silent = silent_mask.get(bk.venue)
            snap_due = plan.snapshots[i]
            for ch in chunks:
                depth_bid[i, ch.k0 : ch.k1] = ch.depth_bid
                depth_ask[i, ch.k0 : ch.k1] = ch.depth_ask
                bounds = np.searchsorted(ch.step, np.arange(ch.k0, ch.k1 + 1))
                for k in range(ch.k0, ch.k1):
                    ts = int(t_all[k])
                    recv = ts + (int(lat[k]) if lat is not None else 0)
                    if k == 0:
                        kind, url, text = w.snapshot(bk, ts, ch.snapshots[0])
                        emit(ts + 200_000_000, bk.venue, i, kind, url, text)
                        continue
                    a, b_ = bounds[k - ch.k0], bounds[k - ch.k0 + 1]
                    resub = bk.venue not in REST_SNAPSHOTS and k in snap_due
                    if b_ > a:
                        side = ch.side[a:b_]
                        bm = side == 0
                        text = w.delta(
                            bk,
                            ts,
                            (ch.price[a:b_][bm], ch.qty[a:b_][bm]),
                            (ch.price[a:b_][~bm], ch.qty[a:b_][~bm]),
                        )
                        quiet = silent is not None and silent[k]
                        # a resubscribed stream venue's snapshot replaces this step's update
                        if not quiet and not resub and (i, k) not in plan.dropped:
                            emit(recv, bk.venue, i, "ws", WS_URL[bk.venue], text)
                            frames += 1
                    if bk.perp and k % mark_every == 0 and not (silent is not None and silent[k]):
                        emit(recv, bk.venue, i, "ws", WS_URL[bk.venue], w.mark(bk, ts, k))
                    if k in snap_due and k in ch.snapshots:
                        kind, url, text = w.snapshot(bk, ts, ch.snapshots[k])
                        at = snap_due[k] if kind == "http" else ts + 1
                        emit(at, bk.venue, i, kind, url, text)
        flush(int(t_all[k1 - 1]) - 30 * SECOND_NS if k1 < sc.n_steps else None)
        if progress is not None:
            progress(f"{k1}/{sc.n_steps} steps")
    flush(None)
    gz.close()
    raw.close()
    labels = build_labels(sc, depth_bid, depth_ask, plan.windows)
    labels_path = out / "labels.json"
    labels_path.write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    config_path = out / "liqmon.toml"
    config_path.write_text(scenario_config(sc))
    return WriteResult(
        rec_path, labels_path, config_path, records, frames, time.perf_counter() - started
    )


def _venue_of(url: str) -> str:
    return url.split("/", 4)[3]


def scenario_config(sc: Scenario, *, port: int = 8765, extra: str = "") -> str:
    """A liqmon settings file naming the scenario's books on the local exchange."""
    from feeds.sim.exchange import settings_toml  # noqa: PLC0415

    symbols: dict[Venue, list[str]] = {}
    for b in sc.books:
        symbols.setdefault(b.venue, []).append(b.symbol)
    return settings_toml(symbols, port=port, extra=extra)
