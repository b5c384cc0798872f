"""Live quote -> USD rates measured from the books themselves (an ``FxSource``).

Each rate is a monitored series:

- **measured** every tick from healthy books (valid, not stale, updated within
  ``fx_source_stale_s``) of *USD venues* (venues with a USD-quoted spot book, e.g.
  Coinbase, Kraken): direct ``C/USD`` books first (median of them), else triangulated
  through a currency measured directly (``USDT-USDC x USDC/USD``). Non-stable quote
  currencies (BTC, ETH, ...) take the asset's cross-venue consensus USD price;
- a venue whose books are in WARNING or CRITICAL is never a source: a stressed venue's
  own book never prices its own collateral (the 10/10 lesson);
- with no fresh source the last good value is **carried** for ``fx_carry_s`` (``age_s``
  grows), then a stablecoin falls back to **1.0 flagged assumed** (other currencies to a
  cross through any valid book, also assumed, else no rate);
- a measured rate is republished only when it moves by ``fx_min_move_bps`` or more, so
  that ordinary basis-point noise does not re-measure every USDT book on every tick.

The pipeline asks for rates at the start of a tick; the measurements come from the
previous tick's sample (:meth:`LiveFx.observe`, called by the analytics stage): rates lag
the books by one tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.domain import FloatArray
from monitor.fx import MidLookup, ParFx
from monitor.sample import BoolArray


def median(values: list[float]) -> float:
    """``statistics.median`` of a non-empty list, the same arithmetic without its
    dispatch (it runs on a few values several times a tick)."""
    data = sorted(values)
    n = len(data)
    h = n // 2
    if n % 2 == 1:
        return data[h]
    return (data[h - 1] + data[h]) / 2


@dataclass(frozen=True, slots=True)
class FxQuote:
    """One book that can measure a rate: ``base`` priced in ``quote``."""

    row: int
    venue: str
    base: str
    quote: str


class LiveFx:
    """The cross-venue layer's FX source (see the module docstring)."""

    def __init__(
        self,
        usd_stables: Iterable[str],
        *,
        source_stale_s: float = 5.0,
        carry_s: float = 60.0,
        min_move_bps: float = 0.5,
    ) -> None:
        self.usd_stables = frozenset(usd_stables)
        self.source_stale_s = source_stale_s
        self.carry_ns = int(carry_s * 1e9)
        self.min_move_bps = min_move_bps
        self.now_ns = 0
        self._published: dict[str, float] = {}
        self._good_ns: dict[str, int] = {}
        self.sources: dict[str, int] = {}  # books that measured each rate at the last observe
        self._fallback = ParFx(())

    def at(self, now_ns: int) -> None:
        """The tick's clock (carry and age are measured against it)."""
        self.now_ns = now_ns

    def rates(self, currencies: Sequence[str], mids: MidLookup) -> tuple[FloatArray, BoolArray]:
        # plain lists first, one array each at the end (a handful of currencies a tick)
        rate: list[float] = []
        flagged: list[bool] = []
        fallback: list[int] = []
        good_ns, now_ns, carry_ns = self._good_ns, self.now_ns, self.carry_ns
        for k, currency in enumerate(currencies):
            if currency == "USD":
                rate.append(1.0)
                flagged.append(False)
                continue
            good = good_ns.get(currency)
            if good is not None and now_ns - good <= carry_ns:
                rate.append(self._published[currency])
                flagged.append(False)
            elif currency in self.usd_stables:
                rate.append(1.0)
                flagged.append(True)
            else:
                rate.append(math.nan)
                flagged.append(True)
                fallback.append(k)
        usd = np.array(rate, dtype=np.float64)
        assumed = np.array(flagged, dtype=np.bool_)
        if fallback:
            # a cross through any valid book, against the rates known so far (assumed)
            known = tuple(c for k, c in enumerate(currencies) if usd[k] == usd[k])
            rates = {c: float(usd[k]) for k, c in enumerate(currencies) if c in known}
            for k in fallback:
                found = mids(currencies[k], (*known, "USD"))
                if found is not None:
                    mid, quote = found
                    usd[k] = mid * rates.get(quote, 1.0)
        return usd, assumed

    def age_s(self, currency: str) -> float:
        """Seconds since the rate was last measured (0 for USD, NaN: never)."""
        if currency == "USD":
            return 0.0
        good = self._good_ns.get(currency)
        return math.nan if good is None else (self.now_ns - good) / 1e9

    def observe(
        self,
        ts_ns: int,
        quotes: Sequence[FxQuote],
        healthy: BoolArray,
        mid: FloatArray,
        book_age_s: FloatArray,
        stressed_venues: frozenset[str],
        consensus_usd: Mapping[str, tuple[float, int]],
    ) -> None:
        """Measure the rates from this tick's books (used from the next tick on).

        ``quotes``: the candidate source books (USD venues' books between currencies);
        ``consensus_usd``: asset -> (consensus USD price, healthy books), for non-stable
        quote currencies.
        """
        self.now_ns = ts_ns
        if not quotes and not consensus_usd:
            self.sources = {}
            return
        # plain floats: the rows are read one by one
        ok, mids, ages = healthy.tolist(), mid.tolist(), book_age_s.tolist()
        fresh = [
            q
            for q in quotes
            if ok[q.row]
            and mids[q.row] == mids[q.row]
            and mids[q.row] > 0
            and ages[q.row] <= self.source_stale_s
            and q.venue not in stressed_venues
        ]
        direct: dict[str, list[float]] = {}
        for q in fresh:
            m = mids[q.row]
            if q.quote == "USD" and q.base != "USD":
                direct.setdefault(q.base, []).append(m)
            elif q.base == "USD" and q.quote != "USD":
                direct.setdefault(q.quote, []).append(1.0 / m)
        measured = {c: (median(v), len(v)) for c, v in direct.items()}
        crossed: dict[str, list[float]] = {}
        for q in fresh:
            m = mids[q.row]
            if q.quote in direct and q.base not in direct and q.base != "USD":
                crossed.setdefault(q.base, []).append(m * measured[q.quote][0])
            elif q.base in direct and q.quote not in direct and q.quote != "USD":
                crossed.setdefault(q.quote, []).append(measured[q.base][0] / m)
        for c, v in crossed.items():
            measured[c] = (median(v), len(v))
        for c, (price, count) in consensus_usd.items():
            if c not in self.usd_stables and c not in measured and price == price and count:
                measured[c] = (price, count)
        self.sources = {c: n for c, (_, n) in measured.items()}
        for c, (value, _) in measured.items():
            old = self._published.get(c)
            carried = c in self._good_ns and ts_ns - self._good_ns[c] <= self.carry_ns
            if old is None or not carried or abs(value / old - 1.0) * 1e4 >= self.min_move_bps:
                self._published[c] = value
            self._good_ns[c] = ts_ns
