"""Quote currency -> USD rates for the metric tick, behind one small protocol.

The pipeline asks an :class:`FxSource` for the rate of every quote currency it holds books
in, once per tick, and converts quote depth and slippage notionals with it. Rates are
cross-venue knowledge, so the source is replaceable: :class:`ParFx` is the start-up default
(USD 1, configured stablecoins at par and flagged ``assumed``, other currencies through a
valid book of that currency against USD or a stablecoin); the cross-venue layer provides
rates measured from USD venues' books.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from monitor.domain import FloatArray
from monitor.sample import BoolArray

# (base, quotes) -> mid of a valid book of ``base`` quoted in one of ``quotes``, and that quote
MidLookup = Callable[[str, Sequence[str]], tuple[float, str] | None]


class FxSource(Protocol):
    """Quote -> USD rate per currency, and whether it is assumed rather than measured."""

    def rates(self, currencies: Sequence[str], mids: MidLookup) -> tuple[FloatArray, BoolArray]:
        """``(usd, assumed)`` arrays aligned with ``currencies`` (NaN: no rate known)."""
        ...


class ParFx:
    """USD is 1; stablecoins at par (assumed); other quotes cross through a valid book."""

    def __init__(self, usd_stables: Iterable[str]) -> None:
        self.usd_stables = frozenset(usd_stables)

    def rates(self, currencies: Sequence[str], mids: MidLookup) -> tuple[FloatArray, BoolArray]:
        known: dict[str, tuple[float, bool]] = {"USD": (1.0, False)}
        for stable in self.usd_stables:
            known[stable] = (1.0, True)
        usd = np.full(len(currencies), np.nan)
        assumed = np.ones(len(currencies), dtype=np.bool_)
        for i, currency in enumerate(currencies):
            if currency not in known:
                found = mids(currency, tuple(known))
                if found is None:
                    known[currency] = (math.nan, True)
                else:
                    mid, quote = found
                    rate, flag = known[quote]
                    known[currency] = (mid * rate, flag)
            usd[i], assumed[i] = known[currency]
        return usd, assumed
