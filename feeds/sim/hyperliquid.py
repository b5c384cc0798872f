"""Hyperliquid inside :class:`~feeds.sim.base.ExchangeSim` (``/hyperliquid/ws``, ``/info``).

Speaks the websocket as Hyperliquid's "Websocket" docs describe it:

- ``{"method":"subscribe"|"unsubscribe","subscription":{"type":"l2Book"|"activeAssetCtx",
  "coin":..}}``, one per frame, answered ``{"channel":"subscriptionResponse","data":
  {"method":..,"subscription":{..}}}``. An unknown coin or type, or a frame that is not a
  request, gets ``{"channel":"error","data":"<text>"}``.
- ``l2Book``: a full book of at most 20 levels a side on subscribe and after every change
  that alters those 20 levels: ``{"channel":"l2Book","data":{"coin","time":ms,"levels":
  [[bids],[asks]]}}`` with levels ``{"px":"..","sz":"..","n":orders}`` (strings, shortest).
  ``time`` never repeats or goes back for a coin on a connection (a block's time), so it
  can serve as the message id.
- ``activeAssetCtx`` for derivative books every ``mark_s`` of the sim: ``markPx`` (the
  book's mark), ``oraclePx``, ``midPx``, ``funding``, ``openInterest``.
- ``{"method":"ping"}`` -> ``{"channel":"pong"}``. A client that sends nothing for
  ``client_idle_timeout_s`` (60 s, as Hyperliquid) is disconnected.
- REST ``POST /info``: ``{"type":"meta"}`` (perps: the sim's derivative books),
  ``{"type":"spotMeta"}`` (spot books, ``@<index>`` or ``PURR/USDC`` names), and
  ``{"type":"l2Book","coin":..}`` (the same 20-level book). ``szDecimals`` is the book's
  size decimals.
"""

from __future__ import annotations

import json
from typing import Any

from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Venue

BOOK_LEVELS = 20
SUBSCRIPTION_TYPES = ("l2Book", "activeAssetCtx")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _orders(px: int, qty: int) -> int:
    return 1 + (px + qty) % 7  # a made-up but stable order count


class HyperliquidProtocol(ProtocolBase):
    """The Hyperliquid websocket and info endpoint (see the module doc)."""

    venue = Venue.HYPERLIQUID
    server_ping_s: float | None = None

    def __init__(self, *, client_idle_timeout_s: float | None = 60.0) -> None:
        self.client_idle_timeout_s = client_idle_timeout_s

    # --- websocket: requests ---------------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["l2Book"] = set()  # coins
        conn.state["activeAssetCtx"] = set()
        conn.state["last_book"] = {}  # coin -> the (bids, asks) last sent
        conn.state["last_time"] = {}  # coin -> the last l2Book time sent (ms)

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        try:
            request = json.loads(text)
            method = request["method"]
        except (ValueError, KeyError, TypeError):
            self._error(conn, f"Error parsing JSON into valid websocket request: {text[:100]}")
            return
        if method == "ping":
            conn.send('{"channel":"pong"}')
            return
        subscription = request.get("subscription")
        if method not in ("subscribe", "unsubscribe") or not isinstance(subscription, dict):
            self._error(conn, f"Invalid request: {text[:100]}")
            return
        kind, coin = subscription.get("type"), subscription.get("coin")
        book = sim.books.get((self.venue, str(coin)))
        if kind not in SUBSCRIPTION_TYPES or book is None:
            self._error(conn, f"Invalid subscription {_compact(subscription)}")
            return
        coins: set[str] = conn.state[kind]
        if method == "subscribe" and coin in coins:
            self._error(conn, f"Already subscribed: {_compact(subscription)}")
            return
        answer = {"method": method, "subscription": subscription}
        conn.send(_compact({"channel": "subscriptionResponse", "data": answer}))
        if method == "subscribe":
            coins.add(book.symbol)
            if kind == "l2Book":
                conn.subscriptions.discard(book.symbol)
                sim.subscribe(conn, book.symbol)  # sends snapshot_frames
            else:
                conn.subscriptions.add(book.symbol)
        else:
            coins.discard(book.symbol)
            conn.state["last_book"].pop(book.symbol, None)
            if not any(book.symbol in conn.state[k] for k in SUBSCRIPTION_TYPES):
                sim.unsubscribe(conn, book.symbol)

    def _error(self, conn: SimConnection, text: str) -> None:
        conn.send(_compact({"channel": "error", "data": text}))

    # --- websocket: books and contexts ------------------------------------------------------
    def _levels(self, book: SimBook, levels: list[tuple[int, int]]) -> list[dict[str, Any]]:
        return [{"px": book.px(p), "sz": book.qty(q), "n": _orders(p, q)} for p, q in levels]

    def _book_data(self, book: SimBook, time_ms: int) -> dict[str, Any]:
        bids, asks = book.top_bids(BOOK_LEVELS), book.top_asks(BOOK_LEVELS)
        levels = [self._levels(book, bids), self._levels(book, asks)]
        return {"coin": book.symbol, "time": time_ms, "levels": levels}

    def _book_frame(self, conn: SimConnection, book: SimBook) -> str:
        top = (book.top_bids(BOOK_LEVELS), book.top_asks(BOOK_LEVELS))
        conn.state["last_book"][book.symbol] = top
        # block times only move forward: a second book in the same ms gets the next ms
        time_ms = max(book.ts_ms, conn.state["last_time"].get(book.symbol, 0) + 1)
        conn.state["last_time"][book.symbol] = time_ms
        return _compact({"channel": "l2Book", "data": self._book_data(book, time_ms)})

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        return [self._book_frame(conn, book)]

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        if book.symbol not in conn.state["l2Book"]:
            return []
        top = (book.top_bids(BOOK_LEVELS), book.top_asks(BOOK_LEVELS))
        if conn.state["last_book"].get(book.symbol) == top:
            return []  # pushed only when the 20 levels changed
        return [self._book_frame(conn, book)]

    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        if book.symbol not in conn.state["activeAssetCtx"]:
            return []
        best_bid, best_ask = book.best_bid(), book.best_ask()
        mid = (best_bid + best_ask) // 2 if best_bid is not None and best_ask is not None else 0
        ctx = {
            "funding": repr(book.funding_rate),
            "openInterest": "31150.34",
            "prevDayPx": book.px(book.mark_px),
            "dayNtlVlm": "2895541842.32",
            "premium": "0.00021",
            "oraclePx": book.px(max(book.mark_px - book.tick_units, 0)),
            "markPx": book.px(book.mark_px),
            "midPx": book.px(mid),
            "impactPxs": [book.px(best_bid or 0), book.px(best_ask or 0)],
            "dayBaseVlm": "25493.77",
        }
        return [_compact({"channel": "activeAssetCtx", "data": {"coin": book.symbol, "ctx": ctx}})]

    # --- REST ---------------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path != "/info" or request.method != "POST":
            return None
        try:
            body = json.loads(request.body)
            kind = body["type"]
        except (ValueError, KeyError, TypeError):
            return 422, '"Failed to deserialize the JSON body into the target type"'
        books = [b for (v, _), b in sorted(sim.books.items()) if v == self.venue]
        if kind == "meta":
            universe = [
                {"name": b.symbol, "szDecimals": b.qty_decimals, "maxLeverage": 50}
                for b in books
                if b.derivative
            ]
            return 200, _compact({"universe": universe, "marginTables": []})
        if kind == "spotMeta":
            return 200, _compact(self._spot_meta([b for b in books if not b.derivative]))
        if kind == "l2Book":
            book = sim.books.get((self.venue, str(body.get("coin"))))
            if book is None:
                return 200, "null"
            return 200, _compact(self._book_data(book, book.ts_ms))
        return 422, '"Failed to deserialize the JSON body into the target type"'

    def _spot_meta(self, books: list[SimBook]) -> dict[str, Any]:
        tokens: dict[str, dict[str, Any]] = {
            "USDC": {"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0}
        }
        universe = []
        for index, book in enumerate(books):
            instrument = book.extra.get("instrument")
            base = instrument.base if instrument else book.symbol.split("/")[0].lstrip("@")
            token = tokens.setdefault(
                base,
                {
                    "name": base,
                    "szDecimals": book.qty_decimals,
                    "weiDecimals": 8,
                    "index": len(tokens),
                },
            )
            universe.append(
                {
                    "tokens": [token["index"], 0],
                    "name": book.symbol,
                    "index": index,
                    "isCanonical": False,
                }
            )
        return {"universe": universe, "tokens": list(tokens.values())}
