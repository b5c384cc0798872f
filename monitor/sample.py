"""The typed per-tick sample: what every consumer downstream of the books reads.

Once per tick the pipeline measures its books (one kernel call for the books that changed)
and publishes one :class:`TickSample`: numpy columns, one row per tracked book, plus the
books' identities. It is a plain value: the arrays are copies the pipeline never touches
again, so a sink may keep it, queue it, or send it to another process.

Validity and staleness are explicit per row:

- ``valid``: the book is synced (snapshot and deltas chained, both sides present) *and* not
  stale; only valid rows carry prices, depth and slippage (the others are NaN);
- ``stale``: the book was synced but has had no update for longer than its venue's
  ``stale_after_s``; it is never reported valid or live;
- ``changed``: the book received an update since the previous tick, or its validity or
  staleness flipped. Row-per-book outputs (metrics-out, storage) write these rows only.

:meth:`TickSample.book_record` turns one row into the JSON object of ``--metrics-out``
(``"kind": "book"``); dicts are only made where a sink serialises.

The analytics stage (``monitor.analytics``) extends every sample with the cross-venue and
score results: per-book columns (:class:`BookAnalytics`: USD mid, dislocation, basis,
the liquidity-vacuum score, its state and its components), one row per asset
(:class:`AssetTable`), one row per quote currency (:class:`FxTable`) and the score state
changes of the tick (:class:`ScoreEvent`). :meth:`TickSample.asset_records`,
:meth:`TickSample.fx_records` and :meth:`ScoreEvent.record` give their JSON objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.domain import BookState, FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]

# book_state column: the store's BookState, plus STALE (a synced book gone silent)
STATE_STALE = 3
STATE_NAMES = {
    int(BookState.EMPTY): "empty",
    int(BookState.SYNCING): "syncing",
    int(BookState.LIVE): "live",
    STATE_STALE: "stale",
}


# the liquidity-vacuum score's components, in the order of the components columns; the
# last one ("breadth") holds what breadth (and the depth+spread override) adds to the sum
COMPONENTS = ("depth", "withdrawal", "spread", "impact", "asymmetry", "dislocation", "breadth")
N_COMPONENTS = len(COMPONENTS)

# score states (score_state columns and ScoreEvent.state)
SCORE_NORMAL = 0
SCORE_WATCH = 1
SCORE_WARNING = 2
SCORE_CRITICAL = 3
SCORE_DATA = 4  # no score: the book is stale or not synced (the asset: no healthy book)
SCORE_STATES = ("normal", "watch", "warning", "critical", "data")
# severity written with each score event: the state's level, DATA counted as 1 (a data
# gap deserves attention, not alarm)
SCORE_SEVERITY = (0, 1, 2, 3, 1)


@dataclass(frozen=True, slots=True)
class BookIdentity:
    """Who a sample row is: venue, the venue's symbol, liqmon's canonical name, currencies."""

    venue: str
    symbol: str
    instrument: str  # canonical, e.g. BTC-USDT-PERP
    base: str
    quote: str
    kind: str  # spot | perp | future


def _num(x: float) -> float | None:
    return None if x != x else float(x)


def _round(x: float, digits: int = 2) -> float | None:
    return None if x != x else round(float(x), digits)


def notional_label(notional: float) -> str:
    """``1000000.0`` -> ``"1000000"``: slippage keys are written as integer notionals."""
    return str(int(notional)) if float(notional).is_integer() else repr(float(notional))


def band_label(pct: float) -> str:
    """``1.0`` -> ``"1"``, ``0.5`` -> ``"0.5"``."""
    return f"{pct:g}"


def _points(row: FloatArray) -> dict[str, float]:
    return {name: round(float(row[c]), 2) for c, name in enumerate(COMPONENTS)}


@dataclass(frozen=True, slots=True, eq=False)
class BookAnalytics:
    """Per-book cross-venue and score columns, row-aligned with :attr:`TickSample.books`.

    USD figures use the row's ``fx_usd``. NaN where a figure does not apply (a stale book,
    a spot book's basis, a book without mark/index/funding).
    """

    asset_row: IntArray  # row of the book's asset in TickSample.assets
    healthy: BoolArray  # valid, with a USD rate: used by consensus, FX and breadth
    mid_usd: FloatArray
    dislocation_bps: FloatArray  # spot vs the spot consensus, perp vs the perp consensus
    basis_bps: FloatArray  # perps: vs the consensus spot
    mark_basis_bps: FloatArray  # perps: (mid - mark) / mark
    index_deviation_bps: FloatArray  # perps: the venue's index vs the consensus spot
    funding_annual: FloatArray  # perps: funding rate x periods per year
    mark_sensitivity_bps: FloatArray  # perps: mark(1 min basis window) vs mark(2.5 min)
    peg_bps: FloatArray  # configured peg pairs: (price / fair - 1) x 1e4
    lvs: FloatArray  # 0-100, NaN for DATA
    lvs_smoothed: FloatArray  # EWMA of lvs (half-life 15 s), for display
    score_state: npt.NDArray[np.int8]  # SCORE_* value
    components: FloatArray  # [row, component] in points (sum = lvs)

    @classmethod
    def empty(cls, n: int) -> BookAnalytics:
        """No analytics: every figure NaN, every state DATA."""
        nan = np.full(n, np.nan)
        return cls(
            asset_row=np.full(n, -1, dtype=np.int64),
            healthy=np.zeros(n, dtype=np.bool_),
            mid_usd=nan,
            dislocation_bps=nan,
            basis_bps=nan,
            mark_basis_bps=nan,
            index_deviation_bps=nan,
            funding_annual=nan,
            mark_sensitivity_bps=nan,
            peg_bps=nan,
            lvs=nan,
            lvs_smoothed=nan,
            score_state=np.full(n, SCORE_DATA, dtype=np.int8),
            components=np.full((n, N_COMPONENTS), np.nan),
        )


@dataclass(frozen=True, slots=True, eq=False)
class AssetTable:
    """Cross-venue results, one row per asset (an instrument base currency).

    Row-per-book references (``outlier_row``, ``lowest_row``, ``second_row``) are rows of
    the sample's books, -1 when none.
    """

    assets: tuple[str, ...]
    consensus_usd: FloatArray  # robust median of the healthy spot books (else perps)
    perp_consensus_usd: FloatArray
    healthy_books: IntArray
    books: IntArray
    outlier_row: IntArray
    outlier_bps: FloatArray
    lowest_row: IntArray  # the healthy book with the lowest USD mid
    second_row: IntArray  # the lowest book on another venue
    low_gap_bps: FloatArray  # lowest vs second-lowest venue (negative: the lowest is below)
    basis_bps: FloatArray  # median perp basis vs the consensus spot
    index_deviation_bps: FloatArray  # largest |index deviation| of the asset's perps (signed)
    peg_bps: FloatArray  # largest |peg deviation| among the asset's books (signed)
    depth_venue_sum_usd: FloatArray  # sum of each healthy book's own +-1% depth
    depth_consolidated_usd: FloatArray  # depth within +-1% of the consensus
    breadth: FloatArray  # share of the asset's books (beta-weighted) under stress
    lvs: FloatArray
    lvs_smoothed: FloatArray  # EWMA of lvs for display
    state: npt.NDArray[np.int8]
    components: FloatArray  # [asset, component] points
    market_lvs: float = math.nan
    market_state: int = SCORE_DATA
    market_components: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.assets)

    def row(self, asset: str) -> int:
        """Row of ``asset`` (KeyError when no book of it is tracked)."""
        try:
            return self.assets.index(asset)
        except ValueError:
            raise KeyError(asset) from None

    def lowest_ranking(self) -> list[tuple[str, int, int, float]]:
        """Assets ordered by how far their lowest print sits below the second-lowest
        venue: ``(asset, lowest book row, second book row, gap bps)``, widest gap first."""
        rows = [a for a in range(len(self.assets)) if self.low_gap_bps[a] == self.low_gap_bps[a]]
        rows.sort(key=lambda a: float(self.low_gap_bps[a]))
        return [
            (
                self.assets[a],
                int(self.lowest_row[a]),
                int(self.second_row[a]),
                float(self.low_gap_bps[a]),
            )
            for a in rows
        ]


@dataclass(frozen=True, slots=True, eq=False)
class FxTable:
    """The quote -> USD rate of each quote currency used this tick."""

    currencies: tuple[str, ...]
    usd: FloatArray  # NaN: no rate
    assumed: BoolArray  # a fallback (1.0 for stablecoins), not measured
    age_s: FloatArray  # since the rate was last measured (NaN: never)
    sources: IntArray  # books that measured it this tick

    def __len__(self) -> int:
        return len(self.currencies)


@dataclass(frozen=True, slots=True)
class ScoreEvent:
    """A score state change of one book (venue, symbol and asset set), one asset (only
    ``asset`` set) or the market as a whole (none set)."""

    ts_ns: int
    state: int  # SCORE_* value
    previous: int
    value: float  # the score at the change (NaN for DATA)
    components: tuple[float, ...]  # points, in COMPONENTS order
    asset: str | None = None
    venue: str | None = None
    symbol: str | None = None

    def record(self) -> dict[str, Any]:
        """The ``--alerts-out`` JSON object (issue 9's contract, exactly: the previous
        state is not written; it is the state of the scope's event before)."""
        return {
            "ts": self.ts_ns / 1e9,
            "kind": "score",
            "state": SCORE_STATES[self.state],
            "severity": SCORE_SEVERITY[self.state],
            "scope": {"venue": self.venue, "symbol": self.symbol, "asset": self.asset},
            "value": _num(round(self.value, 2)) if self.value == self.value else None,
            "components": (
                None
                if self.value != self.value
                else {n: round(p, 2) for n, p in zip(COMPONENTS, self.components, strict=True)}
            ),
        }


@dataclass(frozen=True, slots=True, eq=False)
class TickSample:
    """Every tracked book's metrics at one tick (row ``i`` is ``books[i]``).

    Depth arrays are ``[row, band, side]`` with side 0 = bid, 1 = ask; slippage arrays are
    ``[row, notional, side]`` with side 0 = selling into the bids, 1 = buying the asks.
    """

    ts_ns: int
    books: tuple[BookIdentity, ...]
    bands_pct: tuple[float, ...]
    notionals_usd: tuple[float, ...]
    book_id: IntArray  # the store's book id (stable for the process' life)
    valid: BoolArray
    stale: BoolArray
    changed: BoolArray
    book_state: npt.NDArray[np.int8]  # BookState value, or STATE_STALE
    bid: FloatArray
    ask: FloatArray
    mid: FloatArray
    spread_bps: FloatArray
    depth_usd: FloatArray  # [row, band, side]
    depth_quote: FloatArray  # [row, band, side]
    depth_covered: BoolArray  # [row, band, side]: the held book reaches the band edge
    slippage_bps: FloatArray  # [row, notional, side]
    slippage_exhausted: BoolArray  # [row, notional, side]
    levels: IntArray  # [row, side]
    truncated: BoolArray
    fx_usd: FloatArray  # quote -> USD rate used for the row (NaN: none known)
    fx_assumed: BoolArray
    book_age_s: FloatArray  # since the last update received (NaN: never updated)
    updates: IntArray  # messages applied to the book so far
    mark_price: FloatArray  # perps where the venue streams them, else NaN
    index_price: FloatArray
    funding_rate: FloatArray
    # the analytics stage's results (monitor.analytics); None before it has run
    analytics: BookAnalytics | None = None
    assets: AssetTable | None = None
    fx: FxTable | None = None
    events: tuple[ScoreEvent, ...] = ()

    def extended(
        self,
        *,
        changed: BoolArray,
        analytics: BookAnalytics,
        assets: AssetTable,
        fx: FxTable,
        events: tuple[ScoreEvent, ...],
    ) -> TickSample:
        """This sample with the analytics stage's results (``dataclasses.replace``, spelt
        out: it runs every tick)."""
        return TickSample(
            ts_ns=self.ts_ns,
            books=self.books,
            bands_pct=self.bands_pct,
            notionals_usd=self.notionals_usd,
            book_id=self.book_id,
            valid=self.valid,
            stale=self.stale,
            changed=changed,
            book_state=self.book_state,
            bid=self.bid,
            ask=self.ask,
            mid=self.mid,
            spread_bps=self.spread_bps,
            depth_usd=self.depth_usd,
            depth_quote=self.depth_quote,
            depth_covered=self.depth_covered,
            slippage_bps=self.slippage_bps,
            slippage_exhausted=self.slippage_exhausted,
            levels=self.levels,
            truncated=self.truncated,
            fx_usd=self.fx_usd,
            fx_assumed=self.fx_assumed,
            book_age_s=self.book_age_s,
            updates=self.updates,
            mark_price=self.mark_price,
            index_price=self.index_price,
            funding_rate=self.funding_rate,
            analytics=analytics,
            assets=assets,
            fx=fx,
            events=events,
        )

    @property
    def lvs(self) -> FloatArray:
        """Liquidity-vacuum score per book (NaN: DATA or no analytics)."""
        return (self.analytics or BookAnalytics.empty(len(self.books))).lvs

    @property
    def score_state(self) -> npt.NDArray[np.int8]:
        """Score state per book (SCORE_* values)."""
        return (self.analytics or BookAnalytics.empty(len(self.books))).score_state

    @property
    def components(self) -> FloatArray:
        """Score components per book in points, ``[row, component]`` (COMPONENTS order)."""
        return (self.analytics or BookAnalytics.empty(len(self.books))).components

    def __len__(self) -> int:
        return len(self.books)

    def band_index(self, pct: float) -> int:
        """Column of the ``pct``% band in the depth arrays (KeyError if not measured)."""
        for k, b in enumerate(self.bands_pct):
            if abs(b - pct) < 1e-12:
                return k
        raise KeyError(f"no {pct}% depth band (measured: {self.bands_pct})")

    def rows(self, *, changed_only: bool = False) -> Iterator[int]:
        """Row indexes, all or only the changed ones."""
        if changed_only:
            return iter(np.flatnonzero(self.changed).tolist())
        return iter(range(len(self.books)))

    def records(self, *, changed_only: bool = False) -> list[dict[str, Any]]:
        """Every row (or the changed ones) as :meth:`book_record` dicts."""
        return [self.book_record(i) for i in self.rows(changed_only=changed_only)]

    def book_record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the ``--metrics-out`` JSON object (``"kind": "book"``)."""
        ident = self.books[i]
        valid = bool(self.valid[i])
        record: dict[str, Any] = {
            "ts": self.ts_ns / 1e9,
            "kind": "book",
            "venue": ident.venue,
            "symbol": ident.symbol,
            "instrument": ident.instrument,
            "valid": valid,
            "stale": bool(self.stale[i]),
            # "state" is the score state (issue 9's contract); the sync state moved to
            # "book_state" (empty | syncing | live | stale)
            "state": SCORE_STATES[int(self.score_state[i])],
            "book_state": STATE_NAMES[int(self.book_state[i])],
            "lvs": _num(round(float(self.lvs[i]), 2)),
            "components": (None if self.lvs[i] != self.lvs[i] else _points(self.components[i])),
        }
        if valid:
            depth: dict[str, list[float | None]] = {}
            depth_quote: dict[str, list[float | None]] = {}
            covered: dict[str, list[bool]] = {}
            imbalance: dict[str, float | None] = {}
            for k, pct in enumerate(self.bands_pct):
                label = band_label(pct)
                d = self.depth_usd[i, k]
                q = self.depth_quote[i, k]
                depth[label] = [_num(d[0]), _num(d[1])]
                depth_quote[label] = [_num(q[0]), _num(q[1])]
                covered[label] = [
                    bool(self.depth_covered[i, k, 0]),
                    bool(self.depth_covered[i, k, 1]),
                ]
                total = q[0] + q[1]
                imbalance[label] = _num((q[0] - q[1]) / total) if total > 0 else None
            slippage = {}
            for n, notional in enumerate(self.notionals_usd):
                s = self.slippage_bps[i, n]
                x = self.slippage_exhausted[i, n]
                slippage[notional_label(notional)] = {
                    "sell_bps": _num(s[0]),
                    "sell_exhausted": bool(x[0]),
                    "buy_bps": _num(s[1]),
                    "buy_exhausted": bool(x[1]),
                }
            record.update(
                bid=_num(self.bid[i]),
                ask=_num(self.ask[i]),
                mid=_num(self.mid[i]),
                spread_bps=_num(self.spread_bps[i]),
                depth=depth,
                depth_quote=depth_quote,
                depth_covered=covered,
                imbalance=imbalance,
                slippage=slippage,
            )
        else:
            record.update(
                bid=None,
                ask=None,
                mid=None,
                spread_bps=None,
                depth=None,
                depth_quote=None,
                depth_covered=None,
                imbalance=None,
                slippage=None,
            )
        record.update(
            levels=[int(self.levels[i, 0]), int(self.levels[i, 1])],
            truncated=bool(self.truncated[i]),
            fx_usd=_num(self.fx_usd[i]),
            fx_assumed=bool(self.fx_assumed[i]),
            book_age_s=_num(self.book_age_s[i]),
            updates=int(self.updates[i]),
        )
        if self.mark_price[i] == self.mark_price[i] or self.funding_rate[i] == self.funding_rate[i]:
            record.update(
                mark_price=_num(self.mark_price[i]),
                index_price=_num(self.index_price[i]),
                funding_rate=_num(self.funding_rate[i]),
            )
        return record

    def asset_rows(self, *, changed_only: bool = False) -> Iterator[int]:
        """Asset rows, all or those with a changed book or a score event this tick."""
        assets = self.assets
        if assets is None or self.analytics is None:
            return iter(())
        if not changed_only:
            return iter(range(len(assets)))
        rows = self.analytics.asset_row
        touched = np.zeros(len(assets), dtype=np.bool_)
        touched[rows[self.changed & (rows >= 0)]] = True
        for event in self.events:
            if event.venue is None and event.asset in assets.assets:
                touched[assets.assets.index(event.asset)] = True
        return iter(np.flatnonzero(touched).tolist())

    def asset_record(self, a: int) -> dict[str, Any]:
        """Asset row ``a`` as the ``--metrics-out`` JSON object (``"kind": "asset"``).

        The keys of issue 9's contract come first; ``lowest``, ``index_deviation_bps``,
        ``peg_bps`` and the per-venue ``mark_basis_bps``, ``index_deviation_bps``,
        ``funding_annual``, ``mark_sensitivity_bps``, ``peg_bps`` are additions (readers
        ignore keys they do not know).
        """
        assets = self.assets
        book = self.analytics
        assert assets is not None and book is not None
        venues = []
        for i in np.flatnonzero(book.asset_row == a).tolist():
            ident = self.books[i]
            perp = ident.kind != "spot"
            entry: dict[str, Any] = {
                "venue": ident.venue,
                "symbol": ident.symbol,
                "type": ident.kind,
                "mid_usd": _num(float(book.mid_usd[i])),
                "dislocation_bps": _round(book.dislocation_bps[i]),
                "basis_bps": _round(book.basis_bps[i]) if perp else None,
                "healthy": bool(book.healthy[i]),
            }
            if perp:
                entry.update(
                    mark_basis_bps=_round(book.mark_basis_bps[i]),
                    index_deviation_bps=_round(book.index_deviation_bps[i]),
                    funding_annual=_num(float(book.funding_annual[i])),
                    mark_sensitivity_bps=_round(book.mark_sensitivity_bps[i]),
                )
            if book.peg_bps[i] == book.peg_bps[i]:
                entry["peg_bps"] = _round(book.peg_bps[i])
            venues.append(entry)
        outlier = None
        o = int(assets.outlier_row[a])
        if o >= 0:
            outlier = {
                "venue": self.books[o].venue,
                "symbol": self.books[o].symbol,
                "dislocation_bps": _round(assets.outlier_bps[a]),
            }
        lowest = None
        lo, second = int(assets.lowest_row[a]), int(assets.second_row[a])
        if lo >= 0 and second >= 0:
            lowest = {
                "venue": self.books[lo].venue,
                "symbol": self.books[lo].symbol,
                "second_venue": self.books[second].venue,
                "gap_bps": _round(assets.low_gap_bps[a]),
            }
        lvs = float(assets.lvs[a])
        return {
            "ts": self.ts_ns / 1e9,
            "kind": "asset",
            "asset": assets.assets[a],
            "consensus_usd": _num(float(assets.consensus_usd[a])),
            "venues": venues,
            "outlier": outlier,
            "depth_1pct_usd": {
                "venue_sum": _num(float(assets.depth_venue_sum_usd[a])),
                "consolidated": _num(float(assets.depth_consolidated_usd[a])),
            },
            "lvs": _num(round(lvs, 2)),
            "state": SCORE_STATES[int(assets.state[a])],
            "components": None if lvs != lvs else _points(assets.components[a]),
            "lowest": lowest,
            "index_deviation_bps": _round(assets.index_deviation_bps[a]),
            "peg_bps": _round(assets.peg_bps[a]),
        }

    def asset_records(self, *, changed_only: bool = False) -> list[dict[str, Any]]:
        return [self.asset_record(a) for a in self.asset_rows(changed_only=changed_only)]

    def fx_record(self, c: int) -> dict[str, Any]:
        """FX row ``c`` as the ``--metrics-out`` JSON object (``"kind": "fx"``)."""
        fx = self.fx
        assert fx is not None
        return {
            "ts": self.ts_ns / 1e9,
            "kind": "fx",
            "currency": fx.currencies[c],
            "usd": _num(float(fx.usd[c])),
            "assumed": bool(fx.assumed[c]),
            "age_s": _num(round(float(fx.age_s[c]), 3)),
        }

    def fx_records(self) -> list[dict[str, Any]]:
        return [self.fx_record(c) for c in range(len(self.fx or ()))]
