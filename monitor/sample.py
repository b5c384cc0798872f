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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

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
# a metrics-out book record's market fields while the book is not valid
NO_BOOK_FIELDS: Final[dict[str, None]] = dict.fromkeys(
    (
        "bid",
        "ask",
        "mid",
        "spread_bps",
        "depth",
        "depth_quote",
        "depth_covered",
        "imbalance",
        "slippage",
    )
)
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


def _points(row: Sequence[float] | FloatArray) -> dict[str, float]:
    return {name: round(float(x), 2) for name, x in zip(COMPONENTS, row, strict=True)}


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

    def complete(
        self,
        *,
        changed: BoolArray,
        analytics: BookAnalytics,
        assets: AssetTable,
        fx: FxTable,
        events: tuple[ScoreEvent, ...],
    ) -> TickSample:
        """This very sample with the analytics stage's results set, for its maker only,
        before anyone else has seen it (the pipeline's tick: a second 31-field sample
        every tick cost ~6 us)."""
        setattr_ = object.__setattr__  # frozen: the maker's one write
        setattr_(self, "changed", changed)
        setattr_(self, "analytics", analytics)
        setattr_(self, "assets", assets)
        setattr_(self, "fx", fx)
        setattr_(self, "events", events)
        return self

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
        rows = list(self.rows(changed_only=changed_only))
        if not rows:
            return []
        columns = _BookColumns(self)
        return [self._book_record(i, columns) for i in rows]

    def book_record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the ``--metrics-out`` JSON object (``"kind": "book"``)."""
        return self._book_record(i, _BookColumns(self))

    def _book_record(self, i: int, c: _BookColumns) -> dict[str, Any]:
        ident = self.books[i]
        valid = c.valid[i]
        lvs = c.lvs[i]
        record: dict[str, Any] = {
            "ts": self.ts_ns / 1e9,
            "kind": "book",
            "venue": ident.venue,
            "symbol": ident.symbol,
            "instrument": ident.instrument,
            "valid": valid,
            "stale": c.stale[i],
            # "state" is the score state (issue 9's contract); the sync state moved to
            # "book_state" (empty | syncing | live | stale)
            "state": SCORE_STATES[c.score_state[i]],
            "book_state": STATE_NAMES[c.book_state[i]],
            "lvs": _num(round(lvs, 2)),
            "components": (None if lvs != lvs else _points(c.components[i])),
        }
        if valid:
            # comprehensions over plain floats, NaN checked inline (x != x): the hot loop
            # of --metrics-out, a few dozen values per record
            labels = c.band_labels
            row_quote = c.depth_quote[i]
            depth = {
                label: [None if u != u else u, None if v != v else v]
                for label, (u, v) in zip(labels, c.depth_usd[i], strict=True)
            }
            depth_quote = {
                label: [None if u != u else u, None if v != v else v]
                for label, (u, v) in zip(labels, row_quote, strict=True)
            }
            covered = {label: [u, v] for label, (u, v) in zip(labels, c.covered[i], strict=True)}
            imbalance = {
                label: _num((u - v) / (u + v)) if u + v > 0 else None
                for label, (u, v) in zip(labels, row_quote, strict=True)
            }
            slippage = {
                label: {
                    "sell_bps": None if sell != sell else sell,
                    "sell_exhausted": sell_x,
                    "buy_bps": None if buy != buy else buy,
                    "buy_exhausted": buy_x,
                }
                for label, (sell, buy), (sell_x, buy_x) in zip(
                    c.notional_labels, c.slippage[i], c.exhausted[i], strict=True
                )
            }
            record.update(
                bid=_num(c.bid[i]),
                ask=_num(c.ask[i]),
                mid=_num(c.mid[i]),
                spread_bps=_num(c.spread_bps[i]),
                depth=depth,
                depth_quote=depth_quote,
                depth_covered=covered,
                imbalance=imbalance,
                slippage=slippage,
            )
        else:
            record.update(NO_BOOK_FIELDS)
        record.update(
            levels=c.levels[i],
            truncated=c.truncated[i],
            fx_usd=_num(c.fx_usd[i]),
            fx_assumed=c.fx_assumed[i],
            book_age_s=_num(c.book_age_s[i]),
            updates=c.updates[i],
        )
        mark, funding = c.mark_price[i], c.funding_rate[i]
        if mark == mark or funding == funding:
            record.update(
                mark_price=_num(mark),
                index_price=_num(c.index_price[i]),
                funding_rate=_num(funding),
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
        return self._asset_record(a, _AssetColumns(self))

    def _asset_record(self, a: int, c: _AssetColumns) -> dict[str, Any]:
        venues = []
        for i in c.rows_of.get(a, ()):
            ident = self.books[i]
            perp = ident.kind != "spot"
            entry: dict[str, Any] = {
                "venue": ident.venue,
                "symbol": ident.symbol,
                "type": ident.kind,
                "mid_usd": _num(c.mid_usd[i]),
                "dislocation_bps": _round(c.dislocation_bps[i]),
                "basis_bps": _round(c.basis_bps[i]) if perp else None,
                "healthy": c.healthy[i],
            }
            if perp:
                entry.update(
                    mark_basis_bps=_round(c.mark_basis_bps[i]),
                    index_deviation_bps=_round(c.index_deviation_bps[i]),
                    funding_annual=_num(c.funding_annual[i]),
                    mark_sensitivity_bps=_round(c.mark_sensitivity_bps[i]),
                )
            peg = c.peg_bps[i]
            if peg == peg:
                entry["peg_bps"] = _round(peg)
            venues.append(entry)
        outlier = None
        o = c.outlier_row[a]
        if o >= 0:
            outlier = {
                "venue": self.books[o].venue,
                "symbol": self.books[o].symbol,
                "dislocation_bps": _round(c.outlier_bps[a]),
            }
        lowest = None
        lo, second = c.lowest_row[a], c.second_row[a]
        if lo >= 0 and second >= 0:
            lowest = {
                "venue": self.books[lo].venue,
                "symbol": self.books[lo].symbol,
                "second_venue": self.books[second].venue,
                "gap_bps": _round(c.low_gap_bps[a]),
            }
        lvs = c.lvs[a]
        return {
            "ts": self.ts_ns / 1e9,
            "kind": "asset",
            "asset": c.assets[a],
            "consensus_usd": _num(c.consensus_usd[a]),
            "venues": venues,
            "outlier": outlier,
            "depth_1pct_usd": {
                "venue_sum": _num(c.depth_venue_sum_usd[a]),
                "consolidated": _num(c.depth_consolidated_usd[a]),
            },
            "lvs": _num(round(lvs, 2)),
            "state": SCORE_STATES[c.state[a]],
            "components": None if lvs != lvs else _points(c.components[a]),
            "lowest": lowest,
            "index_deviation_bps": _round(c.asset_index_deviation_bps[a]),
            "peg_bps": _round(c.asset_peg_bps[a]),
        }

    def asset_records(self, *, changed_only: bool = False) -> list[dict[str, Any]]:
        rows = list(self.asset_rows(changed_only=changed_only))
        if not rows:
            return []
        columns = _AssetColumns(self)
        return [self._asset_record(a, columns) for a in rows]

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


class _BookColumns:
    """A sample's book columns as Python lists: converted once per call of
    :meth:`TickSample.records`, then every record is built from plain values."""

    def __init__(self, sample: TickSample) -> None:
        analytics = sample.analytics or BookAnalytics.empty(len(sample.books))
        self.band_labels = [band_label(pct) for pct in sample.bands_pct]
        self.notional_labels = [notional_label(x) for x in sample.notionals_usd]
        self.valid: list[bool] = sample.valid.tolist()
        self.stale: list[bool] = sample.stale.tolist()
        self.score_state: list[int] = analytics.score_state.tolist()
        self.book_state: list[int] = sample.book_state.tolist()
        self.lvs: list[float] = analytics.lvs.tolist()
        self.components: list[list[float]] = analytics.components.tolist()
        self.bid: list[float] = sample.bid.tolist()
        self.ask: list[float] = sample.ask.tolist()
        self.mid: list[float] = sample.mid.tolist()
        self.spread_bps: list[float] = sample.spread_bps.tolist()
        self.depth_usd: list[list[list[float]]] = sample.depth_usd.tolist()
        self.depth_quote: list[list[list[float]]] = sample.depth_quote.tolist()
        self.covered: list[list[list[bool]]] = sample.depth_covered.tolist()
        self.slippage: list[list[list[float]]] = sample.slippage_bps.tolist()
        self.exhausted: list[list[list[bool]]] = sample.slippage_exhausted.tolist()
        self.levels: list[list[int]] = sample.levels.tolist()
        self.truncated: list[bool] = sample.truncated.tolist()
        self.fx_usd: list[float] = sample.fx_usd.tolist()
        self.fx_assumed: list[bool] = sample.fx_assumed.tolist()
        self.book_age_s: list[float] = sample.book_age_s.tolist()
        self.updates: list[int] = sample.updates.tolist()
        self.mark_price: list[float] = sample.mark_price.tolist()
        self.index_price: list[float] = sample.index_price.tolist()
        self.funding_rate: list[float] = sample.funding_rate.tolist()


class _AssetColumns:
    """The analytics' book and asset columns as Python lists (see :class:`_BookColumns`)."""

    def __init__(self, sample: TickSample) -> None:
        book, assets = sample.analytics, sample.assets
        assert book is not None and assets is not None
        self.rows_of: dict[int, list[int]] = {}
        for i, a in enumerate(book.asset_row.tolist()):
            self.rows_of.setdefault(a, []).append(i)
        self.mid_usd: list[float] = book.mid_usd.tolist()
        self.dislocation_bps: list[float] = book.dislocation_bps.tolist()
        self.basis_bps: list[float] = book.basis_bps.tolist()
        self.healthy: list[bool] = book.healthy.tolist()
        self.mark_basis_bps: list[float] = book.mark_basis_bps.tolist()
        self.index_deviation_bps: list[float] = book.index_deviation_bps.tolist()
        self.funding_annual: list[float] = book.funding_annual.tolist()
        self.mark_sensitivity_bps: list[float] = book.mark_sensitivity_bps.tolist()
        self.peg_bps: list[float] = book.peg_bps.tolist()
        self.assets = assets.assets
        self.outlier_row: list[int] = assets.outlier_row.tolist()
        self.outlier_bps: list[float] = assets.outlier_bps.tolist()
        self.lowest_row: list[int] = assets.lowest_row.tolist()
        self.second_row: list[int] = assets.second_row.tolist()
        self.low_gap_bps: list[float] = assets.low_gap_bps.tolist()
        self.lvs: list[float] = assets.lvs.tolist()
        self.consensus_usd: list[float] = assets.consensus_usd.tolist()
        self.depth_venue_sum_usd: list[float] = assets.depth_venue_sum_usd.tolist()
        self.depth_consolidated_usd: list[float] = assets.depth_consolidated_usd.tolist()
        self.state: list[int] = assets.state.tolist()
        self.components: list[list[float]] = assets.components.tolist()
        self.asset_index_deviation_bps: list[float] = assets.index_deviation_bps.tolist()
        self.asset_peg_bps: list[float] = assets.peg_bps.tolist()
