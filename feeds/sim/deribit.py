"""Deribit inside :class:`~feeds.sim.base.ExchangeSim` (``/deribit/ws/api/v2``, REST ``/api/v2``).

Speaks JSON-RPC 2.0 as the Deribit API docs describe it:

- ``public/subscribe`` / ``public/unsubscribe`` with ``params.channels``: the answer
  ``{"jsonrpc":"2.0","id":N,"result":[channels],..}`` lists the channels taken (unknown
  instruments and channels are left out, as Deribit does; ``raw`` books need an authorised
  connection and are left out too). Then, per ``book.<instrument>.<interval>``, the book's
  ``snapshot`` notification (``change_id`` = the book's id), and one ``change`` per update
  with ``change_id``/``prev_change_id`` and entries ``["new"|"change"|"delete", price,
  amount]`` (JSON numbers; a delete carries 0). ``sim.lose_next`` drops a change: the
  client sees the chain break.
- ``ticker.<instrument>.<interval>`` for derivative books every ``mark_s`` of the sim:
  ``mark_price``, ``index_price``, ``current_funding`` (perpetuals), ``funding_8h``, best
  bid/ask.
- ``public/set_heartbeat`` ``{"interval": >= 10}``: from then on, every interval (times
  ``interval_scale``, so tests can run it fast) the server sends ``{"method":"heartbeat",
  "params":{"type":"heartbeat"}}`` and ``{"method":"heartbeat","params":{"type":
  "test_request"}}``; a test request not answered with ``public/test`` by the next interval
  closes the connection (code 1000, "heartbeat timeout"), as Deribit does.
- Malformed JSON gets error -32700, an unknown method -32601, bad params -32602.
- REST ``GET /api/v2/public/get_instruments?currency=BTC|ETH|USDC&kind=future``: the sim's
  derivative books (inverse ones under their base coin, linear ones under USDC), from
  ``book.extra["instrument"]`` when present.
"""

from __future__ import annotations

import json
import time
from typing import Any

from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Venue, format_units

PUBLIC_INTERVALS = ("100ms", "agg2")  # "raw" needs an authorised connection
MIN_HEARTBEAT_S = 10
FAR_EXPIRY_MS = 32503708800000  # what Deribit writes as a perpetual's expiration


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _now_us() -> int:
    return time.time_ns() // 1000


def _inverse(book: SimBook) -> bool:
    instrument = book.extra.get("instrument")
    return instrument.inverse if instrument is not None else "_" not in book.symbol


class DeribitProtocol(ProtocolBase):
    """Deribit's JSON-RPC websocket and get_instruments endpoint (see the module doc)."""

    venue = Venue.DERIBIT
    server_ping_s: float | None = None
    client_idle_timeout_s: float | None = None

    def __init__(self, *, interval_scale: float = 1.0) -> None:
        self.interval_scale = interval_scale

    # --- websocket: requests -----------------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["sim"] = sim
        conn.state["books"] = {}  # instrument -> channel name it was subscribed under
        conn.state["tickers"] = {}  # instrument -> channel name
        conn.state["heartbeat_s"] = None  # set by public/set_heartbeat (scaled)
        conn.state["next_beat"] = 0.0
        conn.state["test_pending"] = False

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        us_in = _now_us()
        try:
            request = json.loads(text)
            method = request["method"]
            params = request.get("params") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            self._error(conn, None, -32700, "Parse error", us_in)
            return
        request_id = request.get("id")
        if method == "public/test":
            conn.state["test_pending"] = False
            self._result(conn, request_id, {"version": "1.2.26"}, us_in)
        elif method == "public/set_heartbeat":
            interval = params.get("interval")
            if not isinstance(interval, int | float) or interval < MIN_HEARTBEAT_S:
                self._error(conn, request_id, -32602, "Invalid params", us_in)
                return
            conn.state["heartbeat_s"] = interval * self.interval_scale
            conn.state["next_beat"] = time.monotonic() + conn.state["heartbeat_s"]
            self._result(conn, request_id, "ok", us_in)
        elif method == "public/disable_heartbeat":
            conn.state["heartbeat_s"] = None
            self._result(conn, request_id, "ok", us_in)
        elif method in ("public/subscribe", "public/unsubscribe"):
            channels = params.get("channels")
            if not isinstance(channels, list):
                self._error(conn, request_id, -32602, "Invalid params", us_in)
                return
            if method == "public/subscribe":
                self._subscribe(sim, conn, request_id, [str(c) for c in channels], us_in)
            else:
                self._unsubscribe(sim, conn, request_id, [str(c) for c in channels], us_in)
        else:
            self._error(conn, request_id, -32601, "Method not found", us_in)

    def _parse_channel(self, sim: ExchangeSim, channel: str) -> tuple[str, SimBook] | None:
        name, _, rest = channel.partition(".")
        instrument, _, interval = rest.rpartition(".")
        book = sim.books.get((self.venue, instrument))
        if name not in ("book", "ticker") or interval not in PUBLIC_INTERVALS or book is None:
            return None
        if name == "ticker" and not book.derivative:
            return None
        return name, book

    def _subscribe(
        self,
        sim: ExchangeSim,
        conn: SimConnection,
        request_id: Any,
        channels: list[str],
        us_in: int,
    ) -> None:
        taken = [(c, parsed) for c in channels if (parsed := self._parse_channel(sim, c))]
        self._result(conn, request_id, [c for c, _ in taken], us_in)
        for channel, (name, book) in taken:
            if name == "book":
                conn.state["books"][book.symbol] = channel
                conn.subscriptions.discard(book.symbol)
                sim.subscribe(conn, book.symbol)  # sends snapshot_frames
            else:
                conn.state["tickers"][book.symbol] = channel
                conn.subscriptions.add(book.symbol)

    def _unsubscribe(
        self,
        sim: ExchangeSim,
        conn: SimConnection,
        request_id: Any,
        channels: list[str],
        us_in: int,
    ) -> None:
        removed = []
        for channel in channels:
            for key in ("books", "tickers"):
                held: dict[str, str] = conn.state[key]
                for symbol, name in list(held.items()):
                    if name == channel:
                        del held[symbol]
                        removed.append(channel)
        self._result(conn, request_id, removed, us_in)
        for symbol in list(conn.subscriptions):
            if symbol not in conn.state["books"] and symbol not in conn.state["tickers"]:
                sim.unsubscribe(conn, symbol)

    def _result(self, conn: SimConnection, request_id: Any, result: Any, us_in: int) -> None:
        conn.send(_compact(self._envelope(request_id, us_in) | {"result": result}))

    def _error(
        self, conn: SimConnection, request_id: Any, code: int, message: str, us_in: int
    ) -> None:
        error = {"message": message, "code": code}
        conn.send(_compact(self._envelope(request_id, us_in) | {"error": error}))

    def _envelope(self, request_id: Any, us_in: int) -> dict[str, Any]:
        us_out = _now_us()
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "usIn": us_in,
            "usOut": us_out,
            "usDiff": us_out - us_in,
            "testnet": False,
        }

    # --- websocket: notifications ------------------------------------------------------------
    def _notification(self, channel: str, data: str) -> str:
        return (
            f'{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{channel}",'
            f'"data":{data}}}}}'
        )

    def _entries(self, book: SimBook, levels: list[tuple[str, int, int]]) -> str:
        # JSON numbers, written as the book formats them
        return ",".join(f'["{a}",{book.px(px)},{book.qty(qty)}]' for a, px, qty in levels)

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        channel = conn.state["books"].get(book.symbol)
        if channel is None:
            return []
        bids = [("new", px, qty) for px, qty in book.top_bids()]
        asks = [("new", px, qty) for px, qty in book.top_asks()]
        data = (
            f'{{"type":"snapshot","timestamp":{book.ts_ms},"instrument_name":"{book.symbol}",'
            f'"change_id":{book.seq},"bids":[{self._entries(book, bids)}],'
            f'"asks":[{self._entries(book, asks)}]}}'
        )
        book.extra["deribit_shadow"] = (book.seq, dict(book.bids), dict(book.asks))
        return [self._notification(channel, data)]

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        channel = conn.state["books"].get(book.symbol)
        if channel is None:
            return []
        actions = self._actions(book, changes)
        sides: dict[str, list[tuple[str, int, int]]] = {"bid": [], "ask": []}
        for (side, px), action in actions.items():
            current = (book.bids if side == "bid" else book.asks).get(px, 0)
            sides[side].append((action, px, current))
        data = (
            f'{{"type":"change","timestamp":{book.ts_ms},"instrument_name":"{book.symbol}",'
            f'"change_id":{book.seq},"prev_change_id":{book.prev_seq},'
            f'"bids":[{self._entries(book, sides["bid"])}],'
            f'"asks":[{self._entries(book, sides["ask"])}]}}'
        )
        return [self._notification(channel, data)]

    def _actions(self, book: SimBook, changes: list[Change]) -> dict[tuple[str, int], str]:
        """One action per changed level (its state after the update), worked out once per
        update for every connection: ``new`` for a level the book did not hold before."""
        memo = book.extra.get("deribit_actions")
        if memo is not None and memo[0] == book.seq:
            return memo[1]  # type: ignore[no-any-return]
        shadow = book.extra.get("deribit_shadow")
        before: tuple[dict[int, int], dict[int, int]] | None = None  # the state before it
        if shadow is not None and shadow[0] == book.prev_seq:
            before = (shadow[1], shadow[2])
        actions: dict[tuple[str, int], str] = {}
        for change in changes:
            is_bid = change.side == "bid"
            if change.px not in (book.bids if is_bid else book.asks):
                action = "delete"
            elif before is not None and change.px not in before[0 if is_bid else 1]:
                action = "new"
            else:
                action = "change"
            actions[(change.side, change.px)] = action
        book.extra["deribit_shadow"] = (book.seq, dict(book.bids), dict(book.asks))
        book.extra["deribit_actions"] = (book.seq, actions)
        return actions

    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        channel = conn.state["tickers"].get(book.symbol)
        if channel is None:
            return []
        best_bid, best_ask = book.top_bids(1), book.top_asks(1)
        perpetual = book.symbol.endswith("PERPETUAL")
        fields = [
            f'"timestamp":{book.ts_ms}',
            '"state":"open"',
            f'"instrument_name":"{book.symbol}"',
            f'"mark_price":{book.px(book.mark_px)}',
            f'"index_price":{book.px(max(book.mark_px - book.tick_units, 0))}',
            f'"last_price":{book.px(book.mark_px)}',
            '"open_interest":502097590',
        ]
        if perpetual:
            fields.append(f'"current_funding":{book.funding_rate!r}')
            fields.append(f'"funding_8h":{book.funding_rate * 8!r}')
        if best_bid:
            fields.append(f'"best_bid_price":{book.px(best_bid[0][0])}')
            fields.append(f'"best_bid_amount":{book.qty(best_bid[0][1])}')
        if best_ask:
            fields.append(f'"best_ask_price":{book.px(best_ask[0][0])}')
            fields.append(f'"best_ask_amount":{book.qty(best_ask[0][1])}')
        return [self._notification(channel, "{" + ",".join(fields) + "}")]

    def heartbeat_frames(self, conn: SimConnection) -> list[str]:
        interval = conn.state.get("heartbeat_s")
        if not interval:
            return []
        now = time.monotonic()
        if now < conn.state["next_beat"]:
            return []
        conn.state["next_beat"] = now + interval
        if conn.state["test_pending"]:
            self._close(conn, "heartbeat timeout")
            return []
        conn.state["test_pending"] = True
        return [
            '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}',
            '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}',
        ]

    def _close(self, conn: SimConnection, reason: str) -> None:
        sim: ExchangeSim = conn.state["sim"]
        sim.close_connection(conn, 1000, reason)
        conn.state["heartbeat_s"] = None

    # --- REST ---------------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path != "/api/v2/public/get_instruments":
            return None
        us_in = _now_us()
        currency = request.query.get("currency", "")
        kind = request.query.get("kind", "future")
        result = []
        if kind in ("future", "any"):
            for (venue, _), book in sorted(sim.books.items()):
                if venue != self.venue or not book.derivative:
                    continue
                description = self._describe(book)
                settlement = description["settlement_currency"]
                if currency in ("any", settlement):
                    result.append(description)
        return 200, _compact(self._envelope(None, us_in) | {"result": result})

    def _describe(self, book: SimBook) -> dict[str, Any]:
        instrument = book.extra.get("instrument")
        inverse = _inverse(book)
        if instrument is not None:
            base, quote, lot = instrument.base, instrument.quote, instrument.lot
        elif inverse:
            base, quote, lot = book.symbol.split("-")[0], "USD", "10"
        else:
            base, quote, lot = book.symbol.split("_")[0], "USDC", "0.001"
        perpetual = book.symbol.endswith("PERPETUAL")
        tick = format_units(book.tick_units, book.price_decimals)
        return {
            "tick_size": float(tick),
            "tick_size_steps": [],
            "settlement_period": "perpetual" if perpetual else "month",
            "settlement_currency": base if inverse else quote,
            "quote_currency": quote,
            "counter_currency": quote,
            "base_currency": base,
            "min_trade_amount": float(lot),
            "contract_size": float(lot),
            "kind": "future",
            "is_active": True,
            "instrument_name": book.symbol,
            "instrument_type": "reversed" if inverse else "linear",
            "future_type": "reversed" if inverse else "linear",
            "expiration_timestamp": FAR_EXPIRY_MS if perpetual else 1774598400000,
            "max_leverage": 50,
        }
