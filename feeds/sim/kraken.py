"""Kraken spot websocket v2 inside :class:`~feeds.sim.base.ExchangeSim` (``/kraken/v2``).

Speaks the public v2 socket as Kraken's "Book (Level 2)" page describes it:

- On connect, a ``status`` message (``system: online``). ``{"method":"ping","req_id":N}`` is
  answered ``{"method":"pong","req_id":N,"time_in":..,"time_out":..}``.
- ``{"method":"subscribe","params":{"channel":"book","symbol":[..],"depth":N,
  "snapshot":true},"req_id":N}``: one ack per symbol (``{"method":"subscribe","result":
  {"channel":"book","depth":N,"snapshot":true,"symbol":..},"success":true,..}``), then the
  snapshot of ``depth`` levels a side. Refusals: a depth other than 10/25/100/500/1000, an
  unknown symbol (``"Currency pair not supported <symbol>"``), another channel. After the
  first subscription the ``heartbeat`` channel ticks every ``heartbeat_s`` of the sim.
  ``unsubscribe`` is acked the same way.
- Updates keep each connection's window of ``depth`` levels exact the way Kraken does: a
  level that changes inside the window is sent, a level deleted inside it is sent with
  ``qty`` 0 *together with* the level that enters the window in its place, and a level
  pushed out of the window by a better one gets no message (the client truncates).
  Changes outside the window send nothing.
- Prices and sizes are JSON numbers written shortest (``45283.5``, ``0.1``); every snapshot
  and update carries the CRC32 ``checksum`` of the top 10 levels, computed here from the
  book's integer units at the pair's precision (independently of ``feeds.kraken``).
  ``sim.corrupt_checksum(Venue.KRAKEN, symbol)`` writes a wrong one into the next update;
  ``sim.lose_next`` drops an update, so the client's checksum stops matching.
- REST ``GET /0/public/AssetPairs``: the sim's books, keyed and named the v1 way
  (``XBT/USD`` as ``wsname``), with ``pair_decimals``/``lot_decimals``/``tick_size`` from
  ``book.extra["instrument"]`` when present, else from the book's own decimals.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from typing import Any

from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Venue, format_units

DEPTHS = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH = 10  # Kraken's default when a subscribe names none
CHECKSUM_LEVELS = 10
V1_ASSET_NAMES = {"BTC": "XBT", "DOGE": "XDG"}  # websocket v2 name -> AssetPairs wsname


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _precisions(book: SimBook) -> tuple[int, int]:
    """(price decimals, size decimals) the checksum writes, as the pair's metadata says."""
    instrument = book.extra.get("instrument")
    if instrument is None:
        return book.price_decimals, book.qty_decimals
    return (
        max(instrument.price_precision, book.price_decimals),
        max(instrument.qty_precision, book.qty_decimals),
    )


def _digits(units: int, decimals: int, precision: int) -> str:
    """Units of 10**-decimals written at ``precision`` decimals, no dot, no leading zeros."""
    return str(units * 10 ** (precision - decimals))


def book_checksum(book: SimBook) -> int:
    """Kraken's CRC32 of the book's top 10 asks (low to high) then bids (high to low)."""
    price_precision, qty_precision = _precisions(book)
    text = "".join(
        _digits(px, book.price_decimals, price_precision)
        + _digits(qty, book.qty_decimals, qty_precision)
        for px, qty in book.top_asks(CHECKSUM_LEVELS) + book.top_bids(CHECKSUM_LEVELS)
    )
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


class KrakenProtocol(ProtocolBase):
    """The Kraken spot websocket v2 and AssetPairs endpoint (see the module doc)."""

    venue = Venue.KRAKEN
    server_ping_s: float | None = None
    client_idle_timeout_s: float | None = None

    # --- websocket: requests -------------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["depth"] = {}  # symbol -> subscribed depth
        conn.state["window"] = {}  # symbol -> (bids, asks) the client holds: {px: qty}
        conn.state["heartbeat"] = False
        status = {
            "api_version": "v2",
            "connection_id": 1000 + conn.id,
            "system": "online",
            "version": "2.0.10",
        }
        conn.send(_compact({"channel": "status", "data": [status], "type": "update"}))

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        time_in = _now_iso()
        try:
            request = json.loads(text)
            method = request["method"]
        except (ValueError, KeyError, TypeError):
            self._answer(conn, {"error": "Malformed request", "success": False}, None, time_in)
            return
        req_id = request.get("req_id")
        if method == "ping":
            self._answer(conn, {"method": "pong"}, req_id, time_in)
            return
        if method not in ("subscribe", "unsubscribe"):
            self._error(conn, method, f"Method not found {method}", req_id, time_in)
            return
        params = request.get("params") or {}
        channel = params.get("channel")
        symbols = params.get("symbol") or []
        depth = params.get("depth", DEFAULT_DEPTH)
        if channel != "book":
            self._error(conn, method, "Subscription channel not supported", req_id, time_in)
            return
        if depth not in DEPTHS:
            self._error(conn, method, "Invalid depth", req_id, time_in)
            return
        for symbol in symbols:
            if (self.venue, symbol) not in sim.books:
                message = f"Currency pair not supported {symbol}"
                self._error(conn, method, message, req_id, time_in, symbol)
                continue
            result: dict[str, Any] = {"channel": "book", "depth": depth, "symbol": symbol}
            if method == "subscribe":
                result["snapshot"] = bool(params.get("snapshot", True))
            self._answer(
                conn, {"method": method, "result": result, "success": True}, req_id, time_in
            )
            if method == "subscribe":
                conn.state["depth"][symbol] = depth
                conn.state["heartbeat"] = True
                conn.subscriptions.discard(symbol)
                sim.subscribe(conn, symbol)  # sends snapshot_frames
            else:
                conn.state["depth"].pop(symbol, None)
                conn.state["window"].pop(symbol, None)
                sim.unsubscribe(conn, symbol)

    def _answer(self, conn: SimConnection, body: dict[str, Any], req_id: Any, time_in: str) -> None:
        if req_id is not None:
            body["req_id"] = req_id
        body |= {"time_in": time_in, "time_out": _now_iso()}
        conn.send(_compact(body))

    def _error(
        self,
        conn: SimConnection,
        method: str,
        error: str,
        req_id: Any,
        time_in: str,
        symbol: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"error": error, "method": method, "success": False}
        if symbol is not None:
            body["symbol"] = symbol
        self._answer(conn, body, req_id, time_in)

    # --- websocket: book frames ------------------------------------------------------------
    def _levels(self, book: SimBook, levels: list[tuple[int, int]]) -> str:
        # JSON numbers written shortest, as the live feed writes them
        return ",".join(f'{{"price":{book.px(px)},"qty":{book.qty(qty)}}}' for px, qty in levels)

    def _frame(
        self,
        book: SimBook,
        kind: str,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        checksum: int,
    ) -> str:
        # written by hand: the numbers go out exactly as the book formats them
        return (
            f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{book.symbol}",'
            f'"bids":[{self._levels(book, bids)}],"asks":[{self._levels(book, asks)}],'
            f'"checksum":{checksum},"timestamp":"{_now_iso()}"}}]}}'
        )

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        depth = conn.state["depth"].get(book.symbol, DEFAULT_DEPTH)
        bids, asks = book.top_bids(depth), book.top_asks(depth)
        conn.state["window"][book.symbol] = (dict(bids), dict(asks))
        return [self._frame(book, "snapshot", bids, asks, book_checksum(book))]

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        depth = conn.state["depth"].get(book.symbol)
        window = conn.state["window"].get(book.symbol)
        if depth is None or window is None:
            return []
        held_bids, held_asks = window
        now_bids, now_asks = dict(book.top_bids(depth)), dict(book.top_asks(depth))
        sent = []
        for held, now, side in ((held_bids, now_bids, book.bids), (held_asks, now_asks, book.asks)):
            levels = [(px, qty) for px, qty in now.items() if held.get(px) != qty]
            # deleted from the book while in the window: qty 0 (pushed out: nothing)
            levels += [(px, 0) for px in held if px not in now and px not in side]
            sent.append(levels)
        conn.state["window"][book.symbol] = (now_bids, now_asks)
        if not sent[0] and not sent[1]:
            return []  # nothing changed inside the window
        checksum = book_checksum(book)
        if book.corrupt_checksum:
            checksum ^= 0x5A5A5A5A
        return [self._frame(book, "update", sent[0], sent[1], checksum)]

    def heartbeat_frames(self, conn: SimConnection) -> list[str]:
        return ['{"channel":"heartbeat"}'] if conn.state.get("heartbeat") else []

    # --- REST ---------------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path != "/0/public/AssetPairs":
            return None
        result = {}
        for (venue, symbol), book in sorted(sim.books.items()):
            if venue != self.venue:
                continue
            base, _, quote = symbol.partition("/")
            v1_base = V1_ASSET_NAMES.get(base, base)
            v1_quote = V1_ASSET_NAMES.get(quote, quote)
            price_precision, qty_precision = _precisions(book)
            instrument = book.extra.get("instrument")
            tick = (
                instrument.tick
                if instrument
                else format_units(book.tick_units, book.price_decimals)
            )
            result[f"{v1_base}{v1_quote}"] = {
                "altname": f"{v1_base}{v1_quote}",
                "wsname": f"{v1_base}/{v1_quote}",
                "aclass_base": "currency",
                "base": v1_base,
                "aclass_quote": "currency",
                "quote": v1_quote,
                "lot": "unit",
                "cost_decimals": 5,
                "pair_decimals": price_precision,
                "lot_decimals": qty_precision,
                "lot_multiplier": 1,
                "ordermin": instrument.lot if instrument else "0.0001",
                "tick_size": tick,
                "status": "online",
            }
        return 200, _compact({"error": [], "result": result})
