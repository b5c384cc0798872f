"""A ~200k-message benchmark corpus built from the real Binance recordings.

Source: tests/recordings/binance-spot-2021-10-12.jsonl.gz (4 spot books, 177 depth diffs)
and binance-usdm-2021-07-22.jsonl.gz (4 USD-M books, 764 depth diffs), each with one
``/depth?limit=1000`` REST snapshot per symbol. Only the depth diffs and the depth
snapshots are taken; other channels (bookTicker, kline, aggTrade) and exchangeInfo are
left out.

Replication:

- *replicas*: every one of the 8 recorded books is copied ``replicas`` times; copy ``k`` of
  ``NKNUSDT`` is the symbol ``NKNUSDT_{k:03d}`` (``NKNUSDT_007``; stream name lower-cased),
  registered in the corpus' own :class:`InstrumentRegistry` as a clone of the
  original instrument (tick, lot, price precision taken from the recording's own
  ``exchangeInfo``). All its update ids (U/u/pu and the snapshot's lastUpdateId) are
  shifted by ``k * REPLICA_ID_STRIDE``.
- *repeats*: the session (about 31 s of recorded time) is played ``repeats`` times in a
  row. Repetition 0 is the recording as it was (diffs that predate the snapshot, the
  snapshot, the rest); later repetitions carry only the diffs, re-numbered so the chain
  carries on: spot ``U = previous u + 1``, USD-M ``pu = previous u``, each diff keeping
  its own ``u - U`` span. Diffs are absolute quantities, so replaying an old diff over a
  newer book can leave it crossed (a stale ask below the current bid); such diffs are
  left out of the repetition (counted in ``Corpus.dropped_crossing``), decided once per
  recorded symbol by simulating the book, so every replica stays valid and LIVE.

Frames keep Binance's raw text byte for byte except the symbol (``"s"``, the stream
name, the snapshot URL) and the ids. Frames are ``(venue, kind, url, data: bytes,
recv_ns)`` tuples, in receive order: repetition, then recorded time, then replica.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from feeds.binance import ADAPTERS, InstrumentsUpdate  # noqa: E402
from feeds.recording import iter_recording  # noqa: E402
from monitor.domain import RawBook, SeqRule, Venue  # noqa: E402
from monitor.instruments import InstrumentRegistry  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "recordings"
RECORDINGS = (DATA / "binance-spot-2021-10-12.jsonl.gz", DATA / "binance-usdm-2021-07-22.jsonl.gz")
REPLICA_ID_STRIDE = 10_000_000_000  # per-replica id offset (ids stay far below 2**63)
BASE_NS = 1_700_000_000 * 1_000_000_000  # receive clock of the corpus (arbitrary origin)

Frame = tuple[Venue, str, str, bytes, int]

_HEAD_FIELD = re.compile(
    rb'"stream":"([a-z0-9_]+)@|"s":"([A-Z0-9_]+)"|"U":(\d+)|"u":(\d+)|"pu":(\d+)'
)


@dataclass
class _Delta:
    rel_s: float
    parts: list[bytes | str]  # literal bytes, or one of "lsym", "sym", "U", "u", "pu"
    levels: bytes  # the frame from ',"b":' to its end, untouched
    first: int
    last: int
    prev: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


@dataclass
class _Snapshot:
    rel_s: float
    url: str
    head_end: int  # lastUpdateId digits end here
    data: bytes
    last: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


@dataclass
class _Symbol:
    venue: Venue
    symbol: str
    rule: SeqRule
    deltas: list[_Delta]
    snapshot: _Snapshot | None = None


@dataclass
class Corpus:
    frames: list[Frame]
    registry: InstrumentRegistry
    books: list[tuple[Venue, str]]  # every book of the corpus
    originals: dict[tuple[Venue, str], str]  # replica symbol -> recorded symbol
    replicas: int
    repeats: int
    n_deltas: int
    n_snapshots: int
    dropped_crossing: int  # diffs left out of repetitions >= 1 (would cross the book), per book
    source_deltas: int  # diffs in the recordings (per replica, one repetition)
    build_s: float

    def snapshot_frames(self) -> list[Frame]:
        return [f for f in self.frames if f[1] == "http"]

    def describe(self) -> str:
        spot = sum(1 for v, *_ in self.frames if v is Venue.BINANCE)
        return (
            f"{len(self.frames)} frames ({self.n_deltas} depth diffs, {self.n_snapshots} REST snapshots), "
            f"{len(self.books)} books = 8 recorded x {self.replicas} replicas, {self.repeats} repetitions; "
            f"spot:usdm frames {spot}:{len(self.frames) - spot}; "
            f"{self.dropped_crossing} of {self.source_deltas * (self.repeats - 1)} recorded diffs left out of repetitions 1+ as crossing (per replica); built in {self.build_s:.2f}s"
        )


def _split_head(text: bytes) -> tuple[list[bytes | str], bytes]:
    cut = text.index(b',"b":')
    head, levels = text[:cut], text[cut:]
    parts: list[bytes | str] = []
    pos = 0
    for m in _HEAD_FIELD.finditer(head):
        for group, name, prefix in (
            (1, "lsym", b'"stream":"'),
            (2, "sym", b'"s":"'),
            (3, "U", b'"U":'),
            (4, "u", b'"u":'),
            (5, "pu", b'"pu":'),
        ):
            if m.group(group) is not None:
                parts.append(head[pos : m.start()] + prefix)
                parts.append(name)
                pos = m.start(group) + len(m.group(group))
                break
    parts.append(head[pos:])
    return parts, levels


_levels = msgspec.json.Decoder(list[tuple[float, float]], strict=False)


def _load_sessions(paths: Sequence[Path]) -> tuple[list[_Symbol], InstrumentRegistry, float]:
    symbols: dict[tuple[Venue, str], _Symbol] = {}
    registry = InstrumentRegistry()
    span = 0.0
    venues = {"binance": Venue.BINANCE, "binance_futures": Venue.BINANCE_FUTURES}
    for path in paths:
        t0: float | None = None
        for rec in iter_recording(path):
            venue = venues[rec.venue]
            adapter = ADAPTERS[venue]
            t0 = rec.ts if t0 is None else t0
            rel = rec.ts - t0
            span = max(span, rel)
            data = rec.data.encode()
            if rec.kind == "http":
                dec = adapter.decode_http(rec.url, data, 0)
                if type(dec) is InstrumentsUpdate:
                    registry = registry.merge(
                        InstrumentRegistry(adapter.parse_instruments(rec.url, data))
                    )
                    continue
                if not isinstance(dec, RawBook):
                    continue
                sym = symbols.setdefault(
                    (venue, dec.symbol), _Symbol(venue, dec.symbol, adapter.sequencing, [])
                )
                assert sym.snapshot is None, "one snapshot per symbol expected"
                m = re.match(rb'\{"lastUpdateId":(\d+)', data)
                assert m and int(m.group(1)) == dec.last_seq
                sym.snapshot = _Snapshot(
                    rel,
                    rec.url,
                    m.end(1),
                    data,
                    dec.last_seq,
                    _levels.decode(bytes(dec.bids)),
                    _levels.decode(bytes(dec.asks)),
                )
                continue
            dec = adapter.decode(data, 0)
            if not isinstance(dec, RawBook):
                continue
            parts, levels = _split_head(data)
            names = [p for p in parts if isinstance(p, str)]
            assert names.count("U") == 1 and names.count("u") == 1 and names.count("sym") == 1, (
                data[:200]
            )
            sym = symbols.setdefault(
                (venue, dec.symbol), _Symbol(venue, dec.symbol, adapter.sequencing, [])
            )
            sym.deltas.append(
                _Delta(
                    rel,
                    parts,
                    levels,
                    dec.first_seq,
                    dec.last_seq,
                    dec.prev_seq,
                    _levels.decode(bytes(dec.bids)),
                    _levels.decode(bytes(dec.asks)),
                )
            )
    for sym in symbols.values():
        assert sym.snapshot is not None, f"{sym.symbol}: no snapshot"
        for a, b in zip(sym.deltas, sym.deltas[1:], strict=False):
            if sym.rule == SeqRule.CONTIGUOUS:
                assert b.first == a.last + 1, f"{sym.symbol}: recorded spot chain broken"
            else:
                assert b.prev == a.last, f"{sym.symbol}: recorded USD-M chain broken"
    return list(symbols.values()), registry, span


def _apply(
    book: tuple[dict[float, float], dict[float, float]], d: _Delta
) -> list[tuple[int, float, float | None]]:
    """Apply a diff to a dict book; returns an undo log."""
    undo = []
    for side, levels in ((0, d.bids), (1, d.asks)):
        s = book[side]
        for px, qty in levels:
            undo.append((side, px, s.get(px)))
            if qty > 0.0:
                s[px] = qty
            else:
                s.pop(px, None)
    return undo


def _crossed(book: tuple[dict[float, float], dict[float, float]]) -> bool:
    return bool(book[0]) and bool(book[1]) and max(book[0]) >= min(book[1])


def _plan(sym: _Symbol, repeats: int) -> list[list[int]]:
    """Indices of the diffs played in each repetition (all of them in repetition 0)."""
    snap = sym.snapshot
    assert snap is not None
    book = ({p: q for p, q in snap.bids if q > 0}, {p: q for p, q in snap.asks if q > 0})
    last = snap.last
    synced = False
    for d in sym.deltas:  # repetition 0: the recorded sync, as the pipeline does it
        if sym.rule == SeqRule.CONTIGUOUS:
            if d.last <= last:
                continue
            assert (d.first <= last + 1) if not synced else (d.first == last + 1)
        else:
            if (d.last < last) if not synced else (d.last <= last):
                continue
            assert (d.first <= last <= d.last) if not synced else (d.prev == last)
        _apply(book, d)
        assert not _crossed(book), f"{sym.symbol}: the recording itself crosses"
        last, synced = d.last, True
    plan = [list(range(len(sym.deltas)))]
    for _ in range(1, repeats):
        keep = []
        for i, d in enumerate(sym.deltas):
            undo = _apply(book, d)
            if _crossed(book):
                for side, px, old in reversed(undo):
                    if old is None:
                        book[side].pop(px, None)
                    else:
                        book[side][px] = old
                continue
            keep.append(i)
        plan.append(keep)
    return plan


def replica_symbol(symbol: str, k: int) -> str:
    return f"{symbol}_{k:03d}"


def build_corpus(
    replicas: int = 54,
    repeats: int = 4,
    paths: Sequence[Path] = RECORDINGS,
    *,
    snapshots_only: bool = False,
) -> Corpus:
    """~198k frames with the defaults (432 books, 4 x 31 s of recorded traffic).

    ``snapshots_only``: leave every diff out (the books' REST snapshots alone).
    """
    started = time.perf_counter()
    symbols, source_registry, span = _load_sessions(paths)
    span += 0.5
    registry = InstrumentRegistry()
    books: list[tuple[Venue, str]] = []
    originals: dict[tuple[Venue, str], str] = {}
    names: dict[tuple[int, int], tuple[str, bytes, bytes]] = {}
    for si, sym in enumerate(symbols):
        inst = source_registry.get(sym.venue, sym.symbol)
        assert inst is not None, f"{sym.symbol} not in the recording's exchangeInfo"
        for k in range(replicas):
            name = replica_symbol(sym.symbol, k)
            registry.add(dataclasses.replace(inst, symbol=name))
            books.append((sym.venue, name))
            originals[(sym.venue, name)] = sym.symbol
            names[(si, k)] = (name, name.encode(), name.lower().encode())
    plans = [_plan(sym, repeats) for sym in symbols]
    dropped = sum(
        len(s.deltas) * (repeats - 1) - sum(len(p) for p in plan[1:])
        for s, plan in zip(symbols, plans, strict=True)
    )

    # one session timeline: (rel time, symbol index, diff index or -1 for the snapshot)
    timeline: list[tuple[float, int, int]] = []
    for si, sym in enumerate(symbols):
        assert sym.snapshot is not None
        timeline.append((sym.snapshot.rel_s, si, -1))
        timeline.extend((d.rel_s, si, i) for i, d in enumerate(sym.deltas))
    timeline.sort()

    frames: list[Frame] = []
    # per (symbol, replica): the id shift of each played diff, per repetition
    shifts: list[list[dict[int, int]]] = []
    for si, sym in enumerate(symbols):
        per_rep: list[dict[int, int]] = [{i: 0 for i in plans[si][0]}]
        last = sym.deltas[-1].last
        for rep in range(1, repeats):
            cur: dict[int, int] = {}
            for i in plans[si][rep]:
                d = sym.deltas[i]
                shift = (last + 1 - d.first) if sym.rule == SeqRule.CONTIGUOUS else (last - d.prev)
                assert shift > 0
                cur[i] = shift
                last = d.last + shift
            per_rep.append(cur)
        shifts.append(per_rep)
    n_deltas = n_snaps = 0
    for rep in range(repeats):
        rep_ns = BASE_NS + round(rep * span * 1e9)
        for rel, si, di in timeline:
            sym = symbols[si]
            venue = sym.venue
            recv_ns = rep_ns + round(rel * 1e9)
            if di < 0:
                if rep:
                    continue
                snap = sym.snapshot
                assert snap is not None
                tail = snap.data[snap.head_end :]
                for k in range(replicas):
                    name, _, _ = names[(si, k)]
                    off = k * REPLICA_ID_STRIDE
                    data = b'{"lastUpdateId":' + str(snap.last + off).encode() + tail
                    url = snap.url.replace(f"symbol={sym.symbol}&", f"symbol={name}&")
                    frames.append((venue, "http", url, data, recv_ns))
                    n_snaps += 1
                continue
            shift = shifts[si][rep].get(di)
            if shift is None or snapshots_only:
                continue
            d = sym.deltas[di]
            for k in range(replicas):
                _, sym_b, lsym_b = names[(si, k)]
                total = shift + k * REPLICA_ID_STRIDE
                values = {
                    "sym": sym_b,
                    "lsym": lsym_b,
                    "U": str(d.first + total).encode(),
                    "u": str(d.last + total).encode(),
                    "pu": str(d.prev + total).encode(),
                }
                data = (
                    b"".join(p if isinstance(p, bytes) else values[p] for p in d.parts) + d.levels
                )
                frames.append((venue, "ws", "", data, recv_ns))
                n_deltas += 1
    return Corpus(
        frames=frames,
        registry=registry,
        books=books,
        originals=originals,
        replicas=replicas,
        repeats=repeats,
        n_deltas=n_deltas,
        n_snapshots=n_snaps,
        dropped_crossing=dropped,
        source_deltas=sum(len(s.deltas) for s in symbols),
        build_s=time.perf_counter() - started,
    )


def main() -> None:
    from monitor.log import configure_logging  # noqa: PLC0415
    from monitor.pipeline import BookPipeline  # noqa: PLC0415

    configure_logging("warning", "console")
    corpus = build_corpus()
    print(corpus.describe())
    print(
        "example spot diff:",
        next(f for f in corpus.frames if f[0] is Venue.BINANCE and f[1] == "ws")[3][:200],
    )
    print(
        "example usdm diff:",
        next(f for f in corpus.frames if f[0] is Venue.BINANCE_FUTURES and f[1] == "ws")[3][:200],
    )
    pipeline = BookPipeline(corpus.registry, ADAPTERS, max_books=len(corpus.books))
    for venue, kind, url, data, recv_ns in corpus.frames:
        pipeline.feed(venue, kind, url, data, recv_ns)
    pipeline.flush()
    summaries = pipeline.book_summaries(depth=1)
    bad = [
        s["symbol"]
        for s in summaries
        if not s["valid"] or s["gaps"] or s["resyncs"] or s["crossed"]
    ]
    print("pipeline counters:", dict(pipeline.counters.messages))
    print("books valid:", sum(s["valid"] for s in summaries), "/", len(summaries), "bad:", bad[:5])
    print(
        "messages applied:",
        sum(s["messages"] for s in summaries),
        "stale:",
        sum(s["stale_deltas"] for s in summaries),
    )


if __name__ == "__main__":
    main()
