"""Plain-Python twins of the book kernels: obviously right, slow, used by property tests.

A side is a dict price-units -> qty. The sync decision and the capacity rule follow the
kernels' documented semantics, written the straightforward way. The level parser's twin
is ``monitor.domain.parse_levels`` (the feeds' tools use it too). A depth-window book
(``window``: Bybit, Kraken, OKX) does what the venue does: it applies the whole message,
then truncates each side to its best ``capacity`` levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.domain import BookState, LevelError, SeqRule, parse_levels


@dataclass
class ReferenceBook:
    """One book, kept as two dicts, with the store's sync and capacity rules."""

    rule: SeqRule
    price_decimals: int
    capacity: int
    contract_size: float = 1.0
    window: bool = False  # the venue keeps a top-``capacity`` window (BookStore window=True)
    state: BookState = BookState.EMPTY
    last_id: int = 0
    bids: dict[int, float] = field(default_factory=dict)
    asks: dict[int, float] = field(default_factory=dict)
    truncated: bool = False
    gaps: int = 0
    # prices known complete: bids at or above complete_bid, asks at or below complete_ask
    complete_bid: int | None = None
    complete_ask: int | None = None

    def _clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.state = BookState.EMPTY
        self.complete_bid = None
        self.complete_ask = None

    def _bound(self, is_bid: bool, px: int) -> None:
        """Nothing at or beyond ``px`` on this side is known any more."""
        if is_bid:
            self.complete_bid = max(
                px + 1, self.complete_bid if self.complete_bid is not None else px + 1
            )
        else:
            self.complete_ask = min(
                px - 1, self.complete_ask if self.complete_ask is not None else px - 1
            )

    def top_unknown(self) -> bool:
        if self.complete_bid is not None and (not self.bids or max(self.bids) < self.complete_bid):
            return True
        return self.complete_ask is not None and (
            not self.asks or min(self.asks) > self.complete_ask
        )

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
            self._bound(is_bid, px)
            return
        del side[deepest]
        self._bound(is_bid, deepest)
        side[px] = qty

    def _apply_levels(self, bids: bytes | str, asks: bytes | str) -> bool:
        try:
            b = parse_levels(
                bids, price_decimals=self.price_decimals, contract_size=self.contract_size
            )
            a = parse_levels(
                asks, price_decimals=self.price_decimals, contract_size=self.contract_size
            )
        except LevelError:
            return False
        if self.window:
            for side, levels, is_bid in ((self.bids, b, True), (self.asks, a, False)):
                for px, qty in levels:
                    if qty <= 0:
                        side.pop(px, None)
                    else:
                        side[px] = qty
                if len(side) > self.capacity:
                    self.truncated = True
                    for px in sorted(side, reverse=is_bid)[self.capacity :]:
                        del side[px]
            # what the venue sends keeps the window whole: the book is known down to its
            # deepest held level, wherever the price has walked
            self.complete_bid = min(self.bids) if self.bids else None
            self.complete_ask = max(self.asks) if self.asks else None
            return True
        for px, qty in b:
            self._set(self.bids, px, qty, True)
        for px, qty in a:
            self._set(self.asks, px, qty, False)
        return True

    def snapshot(self, last_id: int, bids: bytes | str, asks: bytes | str, limit: int = 0) -> str:
        """``limit``: levels per side the snapshot was asked for (0: the whole book)."""
        self._clear()
        self.truncated = False
        if not self._apply_levels(bids, asks):
            self._clear()
            return "parse_error"
        n_bid = len(parse_levels(bids, price_decimals=self.price_decimals))
        n_ask = len(parse_levels(asks, price_decimals=self.price_decimals))
        # a snapshot cut at its requested depth says nothing beyond its deepest level (a
        # window book's levels beyond it are sent as they enter the window)
        if limit and not self.window and n_bid >= limit and self.bids:
            self.complete_bid = max(
                min(self.bids),
                self.complete_bid if self.complete_bid is not None else min(self.bids),
            )
        if limit and not self.window and n_ask >= limit and self.asks:
            self.complete_ask = min(
                max(self.asks),
                self.complete_ask if self.complete_ask is not None else max(self.asks),
            )
        if self.crossed():
            self._clear()
            return "crossed"
        if self.top_unknown():
            self._clear()
            return "top_unknown"
        self.last_id = last_id
        self.state = BookState.SYNCING
        return "snapshot"

    def delta(self, first: int, last: int, prev: int, bids: bytes | str, asks: bytes | str) -> str:
        if self.state == BookState.EMPTY:
            return "buffer"
        syncing = self.state == BookState.SYNCING
        if self.rule == SeqRule.NONE:
            ok = True
        elif self.rule == SeqRule.CHAIN:
            ok = (prev == -1 and last == -1) or prev == self.last_id
        elif self.rule == SeqRule.CONTIGUOUS:
            if last <= self.last_id:
                return "stale"
            ok = first <= self.last_id + 1 if syncing else first == self.last_id + 1
        else:
            if (last < self.last_id) if syncing else (last <= self.last_id):
                return "stale"
            ok = (
                (first <= self.last_id or prev == self.last_id) if syncing else prev == self.last_id
            )
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
        if self.top_unknown():
            self.gaps += 1
            self._clear()
            return "top_unknown"
        self.last_id = last
        self.state = BookState.LIVE
        return "applied"

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)

    def top(
        self, depth: int | None = None
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks
