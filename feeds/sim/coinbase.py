"""Coinbase Advanced Trade market data inside :class:`~feeds.sim.base.ExchangeSim`
(``ws://127.0.0.1:<port>/coinbase/``).

Speaks the market data socket as the Coinbase docs describe it:

- ``{"type":"subscribe"|"unsubscribe","product_ids":[..],"channel":..}``, one channel per
  message (``level2`` or ``heartbeats``; ``heartbeats`` needs no products). Every
  (un)subscribe is answered with a ``subscriptions`` message listing what the connection
  now holds; a new ``level2`` product then gets its full book as an ``l2_data`` event of
  type ``snapshot``. Errors are ``{"type":"error","message":..}``: an unknown product, an
  unknown channel, a malformed request, or more than ``max_l2_products`` (16) level2
  products on one connection ("too many L2 streams requested in a single session").
- A connection that has not subscribed within ``subscribe_deadline_s`` (5 s) is closed.
- Every message carries the connection's ``sequence_num`` (0, 1, 2, ... per connection,
  across all channels): :meth:`~feeds.sim.base.ExchangeSim.lose_next` therefore shows up
  as a jump, which the monitor's per-connection check turns into a reconnect.
- ``l2_data`` updates: one event of type ``update`` per book change, ``updates`` of
  ``{"side":"bid"|"offer","event_time","price_level","new_quantity"}`` with absolute sizes
  (``"0"`` deletes). Prices and sizes are written shortest (``"21921.3"``, ``"0.02"``).
- ``heartbeats``: one message a second (the sim's ``heartbeat_s``) per subscribed
  connection, ``{"current_time":..,"heartbeat_counter":..}`` counting up.
- REST ``GET /api/v3/brokerage/market/products`` (``product_type`` optional) from the
  sim's books.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Instrument, Venue

LEVEL2 = "level2"
HEARTBEATS = "heartbeats"
CHANNELS = frozenset({LEVEL2, HEARTBEATS})
TOO_MANY = "too many L2 streams requested in a single session"
SNAPSHOT_EVENT_TIME = "1970-01-01T00:00:00Z"  # what the docs' snapshot example carries


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def rfc3339(ns: int) -> str:
    """``2023-02-09T20:32:50.714964855Z`` from nanoseconds since the epoch."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


class CoinbaseProtocol(ProtocolBase):
    """The Coinbase Advanced Trade market data socket and public products endpoint."""

    venue = Venue.COINBASE
    server_ping_s: float | None = None
    client_idle_timeout_s: float | None = None

    def __init__(
        self, *, max_l2_products: int = 16, subscribe_deadline_s: float | None = 5.0
    ) -> None:
        self.max_l2_products = max_l2_products
        self.subscribe_deadline_s = subscribe_deadline_s

    # --- websocket: requests -----------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["sim"] = sim
        conn.state["level2"] = []  # products in subscription order
        conn.state["heartbeats"] = False
        conn.state["heartbeat_counter"] = 0
        conn.state["fresh"] = set()  # products whose snapshot is due
        conn.state["subscribed"] = False  # any subscribe seen (the 5 s rule)

    def _message(self, conn: SimConnection, channel: str, events: list[Any]) -> str:
        """One channel message, numbered with the connection's ``sequence_num``."""
        number = conn.seq
        conn.seq += 1
        return _compact(
            {
                "channel": channel,
                "client_id": "",
                "timestamp": rfc3339(time.time_ns()),
                "sequence_num": number,
                "events": events,
            }
        )

    def _error(self, conn: SimConnection, message: str) -> None:
        conn.send(_compact({"type": "error", "message": message}))

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        try:
            request = json.loads(text)
            action = request["type"]
            channel = request.get("channel", "")
            products = request.get("product_ids") or []
            if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
                raise TypeError("product_ids")
        except (ValueError, KeyError, TypeError, AttributeError):
            self._error(conn, "Failed to parse subscription request")
            return
        if action not in ("subscribe", "unsubscribe"):
            self._error(conn, f"unknown message type {action}")
            return
        if channel not in CHANNELS:
            self._error(conn, f"Failed to subscribe: unknown channel {channel}")
            return
        conn.state["subscribed"] = True
        if channel == HEARTBEATS:
            conn.state["heartbeats"] = action == "subscribe"
            conn.send(self._subscriptions(conn))
            return
        held: list[str] = conn.state["level2"]
        if action == "unsubscribe":
            for product in products or list(held):
                if product in held:
                    held.remove(product)
                    sim.unsubscribe(conn, product)
            conn.send(self._subscriptions(conn))
            return
        unknown = [p for p in products if (self.venue, p) not in sim.books]
        if unknown:
            self._error(conn, f"Failed to subscribe: unknown product {unknown[0]}")
            return
        new = [p for p in dict.fromkeys(products) if p not in held]
        if len(held) + len(new) > self.max_l2_products:
            self._error(conn, TOO_MANY)
            return
        held.extend(new)
        conn.send(self._subscriptions(conn))
        for product in new:
            conn.state["fresh"].add(product)
            sim.subscribe(conn, product)  # sends snapshot_frames

    def _subscriptions(self, conn: SimConnection) -> str:
        subscriptions: dict[str, list[str]] = {}
        if conn.state["level2"]:
            subscriptions[LEVEL2] = list(conn.state["level2"])
        if conn.state["heartbeats"]:
            subscriptions[HEARTBEATS] = [HEARTBEATS]
        return self._message(conn, "subscriptions", [{"subscriptions": subscriptions}])

    # --- websocket: book frames ----------------------------------------------------------
    def _updates(
        self, book: SimBook, side: str, levels: list[tuple[int, int]], event_time: str
    ) -> list[dict[str, str]]:
        return [
            {
                "side": side,
                "event_time": event_time,
                "price_level": book.px(px),
                "new_quantity": book.qty(qty),
            }
            for px, qty in levels
        ]

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        fresh: set[str] = conn.state["fresh"]
        if book.symbol not in fresh:
            return []
        fresh.discard(book.symbol)
        updates = self._updates(book, "bid", book.top_bids(), SNAPSHOT_EVENT_TIME)
        updates += self._updates(book, "offer", book.top_asks(), SNAPSHOT_EVENT_TIME)
        event = {"type": "snapshot", "product_id": book.symbol, "updates": updates}
        return [self._message(conn, "l2_data", [event])]

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        if book.symbol not in conn.state["level2"]:
            return []
        event_time = rfc3339(time.time_ns())
        latest: dict[tuple[str, int], int] = {}
        for change in changes:  # one entry per level: its final size in this update
            latest[(change.side, change.px)] = change.qty
        updates = [
            {
                "side": "bid" if side == "bid" else "offer",
                "event_time": event_time,
                "price_level": book.px(px),
                "new_quantity": book.qty(qty),
            }
            for (side, px), qty in latest.items()
        ]
        event = {"type": "update", "product_id": book.symbol, "updates": updates}
        return [self._message(conn, "l2_data", [event])]

    def heartbeat_frames(self, conn: SimConnection) -> list[str]:
        if not conn.state.get("subscribed") and self.subscribe_deadline_s is not None:
            sim: ExchangeSim | None = conn.state.get("sim")
            age = asyncio.get_running_loop().time() - conn.opened_at
            if sim is not None and age > self.subscribe_deadline_s and not conn.closed:
                conn.state["subscribed"] = True  # close once
                sim._spawn(conn.websocket.close(code=1000, message=b"no subscription"))
            return []
        if not conn.state.get("heartbeats"):
            return []
        counter = conn.state["heartbeat_counter"] + 1
        conn.state["heartbeat_counter"] = counter
        now = datetime.now(tz=UTC)
        event = {
            "current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC"),
            "heartbeat_counter": str(counter),
        }
        return [self._message(conn, "heartbeats", [event])]

    # --- REST ----------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path.rstrip("/") != "/api/v3/brokerage/market/products":
            return None
        product_type = request.query.get("product_type", "SPOT")
        if product_type not in ("SPOT", "FUTURE", "UNKNOWN_PRODUCT_TYPE"):
            answer = {
                "error": "INVALID_ARGUMENT",
                "error_details": f"invalid product_type {product_type}",
                "message": f"invalid product_type {product_type}",
            }
            return 400, _compact(answer)
        products = []
        if product_type != "FUTURE":
            products = [
                self._product(book)
                for (venue, _), book in sorted(sim.books.items(), key=lambda kv: kv[0][1])
                if venue == self.venue
            ]
        listing = {"products": products, "num_products": len(products), "pagination": None}
        return 200, _compact(listing)

    def _product(self, book: SimBook) -> dict[str, Any]:
        instrument = book.extra.get("instrument")
        if isinstance(instrument, Instrument):
            base, quote = instrument.base, instrument.quote
        else:
            base, _, quote = book.symbol.partition("-")
        increment = book.px(book.tick_units)
        mid = book.mark_px
        return {
            "product_id": book.symbol,
            "price": book.px(mid),
            "base_increment": book.qty(1),
            "quote_increment": increment,
            "quote_min_size": "1",
            "quote_max_size": "150000000",
            "base_min_size": book.qty(1),
            "base_max_size": "3400",
            "base_name": base,
            "quote_name": quote,
            "is_disabled": False,
            "status": "online",
            "trading_disabled": False,
            "product_type": "SPOT",
            "quote_currency_id": quote,
            "base_currency_id": base,
            "alias": "",
            "alias_to": [],
            "price_increment": increment,
            "display_name": book.symbol,
            "product_venue": "CBE",
        }


__all__ = ["CoinbaseProtocol", "rfc3339"]
