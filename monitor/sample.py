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
"""

from __future__ import annotations

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


def notional_label(notional: float) -> str:
    """``1000000.0`` -> ``"1000000"``: slippage keys are written as integer notionals."""
    return str(int(notional)) if float(notional).is_integer() else repr(float(notional))


def band_label(pct: float) -> str:
    """``1.0`` -> ``"1"``, ``0.5`` -> ``"0.5"``."""
    return f"{pct:g}"


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
            "state": STATE_NAMES[int(self.book_state[i])],
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
