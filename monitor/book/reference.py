"""Plain-Python twins of the book kernels: obviously right, slow, used by property tests.

A side is a dict price-units -> qty. The sync decision and the capacity rule follow the
kernels' documented semantics, written the straightforward way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from monitor.domain import BookState, SeqRule


class LevelError(ValueError):
    """A level array that does not parse (``off_grid`` when a price is finer than the tick)."""

    def __init__(self, reason: str, off_grid: bool = False) -> None:
        super().__init__(reason)
        self.off_grid = off_grid


def parse_levels(
    raw: bytes | str, *, px_index: int = 0, qty_index: int = 1, price_decimals: int, contract_size: float = 1.0
) -> list[tuple[int, float]]:
    """Twin of ``kernels.parse_levels``: ``[["px","qty"],...]`` -> [(price units, qty)]."""
    try:
        levels = json.loads(raw)
    except ValueError as exc:
        raise LevelError(f"not JSON: {exc}") from exc
    if not isinstance(levels, list):
        raise LevelError("not an array")
    out: list[tuple[int, float]] = []
    scale = Decimal(10) ** price_decimals
    for level in levels:
        if not isinstance(level, list) or len(level) <= max(px_index, qty_index):
            raise LevelError(f"bad level {level!r}")
        try:
            px = Decimal(str(level[px_index]))
            qty = Decimal(str(level[qty_index]))
        except InvalidOperation as exc:
            raise LevelError(f"bad number in {level!r}") from exc
        if px < 0 or qty < 0:
            raise LevelError(f"negative number in {level!r}")
        units = px * scale
        if units != units.to_integral_value():
            raise LevelError(f"price {px} finer than 1e-{price_decimals}", off_grid=True)
        out.append((int(units), float(qty) * contract_size))
    return out


@dataclass
class ReferenceBook:
    """One book, kept as two dicts, with the store's sync and capacity rules."""

    rule: SeqRule
    price_decimals: int
    capacity: int
    contract_size: float = 1.0
    state: BookState = BookState.EMPTY
    last_id: int = 0
    bids: dict[int, float] = field(default_factory=dict)
    asks: dict[int, float] = field(default_factory=dict)
    truncated: bool = False
    gaps: int = 0

    def _clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.state = BookState.EMPTY

    def _set(self, side: dict[int, float], px: int, qty: float, is_bid: bool) -> None:
        if qty <= 0:
            side.pop(px, None)
            return
        if px in side or len(side) < self.capacity:
            side[px] = qty
            return
        self.truncated = True
        deepest = min(side) if is_bid else max(side)
        if (is_bid and px < deepest) or (not is_bid and px > deepest):
            return
        del side[deepest]
        side[px] = qty

    def _apply_levels(self, bids: bytes | str, asks: bytes | str) -> bool:
        try:
            b = parse_levels(bids, price_decimals=self.price_decimals, contract_size=self.contract_size)
            a = parse_levels(asks, price_decimals=self.price_decimals, contract_size=self.contract_size)
        except LevelError:
            return False
        for px, qty in b:
            self._set(self.bids, px, qty, True)
        for px, qty in a:
            self._set(self.asks, px, qty, False)
        return True

    def snapshot(self, last_id: int, bids: bytes | str, asks: bytes | str) -> str:
        self._clear()
        self.truncated = False
        if not self._apply_levels(bids, asks):
            self._clear()
            return "parse_error"
        if self.crossed():
            self._clear()
            return "crossed"
        self.last_id = last_id
        self.state = BookState.SYNCING
        return "snapshot"

    def delta(self, first: int, last: int, prev: int, bids: bytes | str, asks: bytes | str) -> str:
        if self.state == BookState.EMPTY:
            return "buffer"
        syncing = self.state == BookState.SYNCING
        if self.rule == SeqRule.CONTIGUOUS:
            if last <= self.last_id:
                return "stale"
            ok = first <= self.last_id + 1 if syncing else first == self.last_id + 1
        else:
            if (last < self.last_id) if syncing else (last <= self.last_id):
                return "stale"
            ok = first <= self.last_id if syncing else prev == self.last_id
        if not ok:
            self.gaps += 1
            self._clear()
            return "gap"
        if not self._apply_levels(bids, asks):
            self.gaps += 1
            self._clear()
            return "parse_error"
        if self.crossed():
            self.gaps += 1
            self._clear()
            return "crossed"
        self.last_id = last
        self.state = BookState.LIVE
        return "applied"

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)

    def top(self, depth: int | None = None) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks
