"""A straightforward reference implementation of Binance book sync, for the replay tests.

Written from Binance's "how to manage a local order book" steps, independently of the
pipeline: books are dicts keyed by Decimal price holding the quantity strings exactly as
received; deltas that arrive before the snapshot are buffered; gaps throw the book away.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class RefBook:
    futures: bool
    bids: dict[Decimal, tuple[str, str]] = field(default_factory=dict)
    asks: dict[Decimal, tuple[str, str]] = field(default_factory=dict)
    last_id: int | None = None  # None: no snapshot
    live: bool = False
    buffered: list[dict[str, Any]] = field(default_factory=list)
    gaps: int = 0

    def _apply(self, event: dict[str, Any]) -> None:
        for side, key in ((self.bids, "b"), (self.asks, "a")):
            for px, qty in event[key]:
                if Decimal(qty) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, qty)

    def snapshot(self, snap: dict[str, Any]) -> None:
        if self.buffered and snap["lastUpdateId"] < self.buffered[0]["U"]:
            return  # too old: Binance says fetch again
        self.bids = {Decimal(p): (p, q) for p, q in snap["bids"]}
        self.asks = {Decimal(p): (p, q) for p, q in snap["asks"]}
        self.last_id = snap["lastUpdateId"]
        self.live = False
        pending, self.buffered = self.buffered, []
        for event in pending:
            self.delta(event)

    def delta(self, event: dict[str, Any]) -> None:
        if self.last_id is None:
            self.buffered.append(event)
            return
        first, last = event["U"], event["u"]
        if not self.live:
            if self.futures:
                if last < self.last_id:
                    return
                ok = first <= self.last_id <= last
            else:
                if last <= self.last_id:
                    return
                ok = first <= self.last_id + 1 <= last
        else:
            if last <= self.last_id:
                return
            ok = event["pu"] == self.last_id if self.futures else first == self.last_id + 1
        if not ok:
            self.gaps += 1
            self.bids.clear()
            self.asks.clear()
            self.last_id = None
            self.live = False
            self.buffered = [event]
            return
        self._apply(event)
        self.last_id = last
        self.live = True

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bids = [list(self.bids[p]) for p in sorted(self.bids, reverse=True)[:depth]]
        asks = [list(self.asks[p]) for p in sorted(self.asks)[:depth]]
        return bids, asks


def reference_books(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], RefBook]:
    books: dict[tuple[str, str], RefBook] = {}
    for rec in records:
        venue = rec["venue"]
        futures = venue == "binance_futures"
        if rec["kind"] == "http":
            parts = urlsplit(rec["url"])
            if not parts.path.endswith("/depth"):
                continue
            symbol = parse_qs(parts.query)["symbol"][0]
            book = books.setdefault((venue, symbol), RefBook(futures))
            book.snapshot(json.loads(rec["data"]))
            continue
        msg = json.loads(rec["data"])
        data = msg.get("data", msg)
        if data.get("e") != "depthUpdate":
            continue
        book = books.setdefault((venue, data["s"]), RefBook(futures))
        book.delta(data)
    return books
