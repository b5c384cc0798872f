"""Bybit v5 public spot and linear inside :class:`~feeds.sim.base.ExchangeSim`
(``ws://127.0.0.1:<port>/bybit/v5/public/spot``, ``.../bybit_linear/v5/public/linear``).

Speaks the public sockets as the Bybit docs describe them; one
:class:`BybitProtocol` per market (``BybitProtocol(Venue.BYBIT)``, ``(Venue.BYBIT_LINEAR)``):

- ``{"req_id":..,"op":"subscribe"|"unsubscribe","args":[topic,..]}`` is answered with one
  response per request, ``{"success":true,"ret_msg":..,"conn_id":..,"req_id":..,"op":..}``
  (spot writes ``"ret_msg":"subscribe"``, linear ``""``), then the snapshot of every new
  book topic. Refusals have ``"success":false``: an unknown symbol (``Invalid symbol
  :[topic]``), an unknown topic or depth (``error:handler not found,topic:..``), a topic
  already subscribed, more than 10 args in one spot request (``args size >10``), or a
  connection's args over 21,000 characters. Valid args of a refused request still count.
- ``{"req_id":..,"op":"ping"}`` is answered with the pong of the market (spot without
  ``req_id``, linear echoing it). The server sends no websocket pings.
- ``orderbook.{1|50|200|1000}.{symbol}``: the snapshot of the top ``depth`` levels a side,
  then one ``delta`` per book change that touches that window (levels leaving the window
  are deleted with size ``"0"``, levels entering it are sent). ``u`` counts the messages of
  a topic (+1 each, the same for every subscriber), ``seq`` is the book's cross sequence.
  Level 1 is snapshot-only: every change of the top level is a new snapshot. Spot writes
  ``ts`` before ``type``, linear after; both end with ``cts``. Prices and sizes are written
  at fixed decimals, as Bybit does (``"16493.50"``, ``"0.100"``).
- :meth:`BybitProtocol.restart` re-sends every book topic of a symbol as a snapshot with
  ``u = 1`` (Bybit's service restart); its deltas go on from 2.
- ``tickers.{symbol}`` (linear books): a full snapshot on subscribe, then every ``mark_s``
  a ``delta`` carrying only the fields that changed (``markPrice``, ``indexPrice``,
  ``fundingRate``, ``nextFundingTime``); futures (symbols with ``-``) write funding as "".
- REST ``GET /v5/market/instruments-info?category=spot|linear`` from the sim's books (the
  instrument in ``book.extra["instrument"]`` where the book was made from one). Linear
  answers are paged: ``limit`` (default 500, at most 1000 or the protocol's ``max_page``),
  ``nextPageCursor`` (empty on the last page) and ``cursor`` to ask for the next page.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Instrument, InstrumentKind, Venue

DEPTHS = (1, 50, 200, 1000)
SPOT_ARGS_PER_REQUEST = 10
MAX_ARGS_CHARS = 21_000
FUNDING_INTERVAL_MS = 8 * 3600 * 1000
QUOTES = ("USDT", "USDC", "USDE", "EUR", "BTC", "ETH")  # for books made without metadata
PATHS = {Venue.BYBIT: "/v5/public/spot", Venue.BYBIT_LINEAR: "/v5/public/linear"}
CATEGORIES = {Venue.BYBIT: "spot", Venue.BYBIT_LINEAR: "linear"}
_U = "bybit.u"  # book.extra: depth -> u of the topic orderbook.{depth}.{symbol}
_WINDOW = "bybit.window"  # book.extra: depth -> (bids, asks) the topic's subscribers hold
_FRAME = "bybit.frame"  # book.extra: depth -> (book.seq, frame or None) for this update


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _split(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "USDT"


def _is_future(book: SimBook) -> bool:
    instrument = book.extra.get("instrument")
    if isinstance(instrument, Instrument):
        return instrument.kind == InstrumentKind.FUTURE
    return "-" in book.symbol


class BybitProtocol(ProtocolBase):
    """One Bybit v5 public market (spot or linear) and its instruments endpoint."""

    server_ping_s: float | None = None  # Bybit does not ping: the client sends op ping
    client_idle_timeout_s: float | None = None  # 10 min, and only without data: never here

    def __init__(self, venue: Venue, *, max_page: int = 1000) -> None:
        if venue not in PATHS:
            raise ValueError(f"not a Bybit market: {venue}")
        self.venue = venue
        self.max_page = max_page  # largest instruments page (Bybit: 1000); small in tests
        self.category = CATEGORIES[venue]
        self.spot = venue == Venue.BYBIT
        self.path = PATHS[venue]

    # --- websocket: requests -----------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["sim"] = sim
        conn.state["conn_id"] = str(uuid.UUID(int=conn.id + 1))
        conn.state["topics"] = set()  # every topic this connection holds
        conn.state["books"] = {}  # symbol -> set of depths
        conn.state["tickers"] = {}  # symbol -> {field: value} last sent
        conn.state["fresh"] = []  # (symbol, depth or 0 for tickers) awaiting a snapshot

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        try:
            request = json.loads(text)
            op = str(request.get("op", ""))
            args = request.get("args") or []
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise TypeError("args")
        except (ValueError, TypeError, AttributeError):
            self._reply(conn, False, "error:request not supported", "", None)
            return
        req_id = request.get("req_id")
        if op == "ping":
            self._pong(conn, req_id)
        elif op == "subscribe":
            self._subscribe(sim, conn, args, req_id)
        elif op == "unsubscribe":
            self._unsubscribe(conn, args, req_id)
        else:
            self._reply(conn, False, f"error:unsupported op {op}", op, req_id)

    def _subscribe(
        self, sim: ExchangeSim, conn: SimConnection, args: list[str], req_id: Any
    ) -> None:
        if self.spot and len(args) > SPOT_ARGS_PER_REQUEST:
            self._reply(conn, False, f"args size >{SPOT_ARGS_PER_REQUEST}", "subscribe", req_id)
            return
        topics: set[str] = conn.state["topics"]
        held = sum(len(t) for t in topics)
        if held + sum(len(a) for a in args) > MAX_ARGS_CHARS:
            self._reply(conn, False, "error:args length exceeds 21000", "subscribe", req_id)
            return
        error = ""
        fresh: list[tuple[str, int]] = []
        for topic in args:
            problem, symbol, depth = self._check(sim, topic)
            if not problem and topic in topics:
                problem = f"error:already subscribed,topic:{topic}"
            if problem:
                error = error or problem
                continue
            topics.add(topic)
            if depth:
                conn.state["books"].setdefault(symbol, set()).add(depth)
            else:
                conn.state["tickers"][symbol] = {}
            fresh.append((symbol, depth))
        self._reply(
            conn, not error, error or ("subscribe" if self.spot else ""), "subscribe", req_id
        )
        for symbol, depth in fresh:
            conn.state["fresh"].append((symbol, depth))
            sim.subscribe(conn, symbol)  # sends snapshot_frames: the fresh topics

    def _check(self, sim: ExchangeSim, topic: str) -> tuple[str, str, int]:
        """(problem, symbol, depth; 0 for tickers) of a topic."""
        parts = topic.split(".")
        if parts[0] == "orderbook" and len(parts) == 3 and parts[1].isdigit():
            depth, symbol = int(parts[1]), parts[2]
            if depth not in DEPTHS:
                return f"error:handler not found,topic:{topic}", symbol, depth
        elif parts[0] == "tickers" and len(parts) == 2:
            depth, symbol = 0, parts[1]
        else:
            return f"error:handler not found,topic:{topic}", "", 0
        book = sim.books.get((self.venue, symbol))
        if book is None or (depth == 0 and not book.derivative):
            return f"Invalid symbol :[{topic}]", symbol, depth
        return "", symbol, depth

    def _unsubscribe(self, conn: SimConnection, args: list[str], req_id: Any) -> None:
        topics: set[str] = conn.state["topics"]
        for topic in args:
            if topic not in topics:
                continue
            topics.discard(topic)
            parts = topic.split(".")
            symbol = parts[-1]
            if parts[0] == "orderbook":
                depths = conn.state["books"].get(symbol, set())
                depths.discard(int(parts[1]))
                if not depths:
                    conn.state["books"].pop(symbol, None)
            else:
                conn.state["tickers"].pop(symbol, None)
            if symbol not in conn.state["books"] and symbol not in conn.state["tickers"]:
                conn.subscriptions.discard(symbol)
        self._reply(conn, True, "unsubscribe" if self.spot else "", "unsubscribe", req_id)

    def _reply(self, conn: SimConnection, ok: bool, message: str, op: str, req_id: Any) -> None:
        reply: dict[str, Any] = {
            "success": ok,
            "ret_msg": message,
            "conn_id": conn.state["conn_id"],
        }
        if req_id is not None or not self.spot:
            reply["req_id"] = "" if req_id is None else req_id
        reply["op"] = op
        conn.send(_compact(reply))

    def _pong(self, conn: SimConnection, req_id: Any) -> None:
        reply: dict[str, Any] = {
            "success": True,
            "ret_msg": "pong",
            "conn_id": conn.state["conn_id"],
        }
        if not self.spot:
            reply["req_id"] = "" if req_id is None else req_id
        reply["op"] = "ping"
        conn.send(_compact(reply))

    # --- websocket: book frames ----------------------------------------------------------
    def _levels(self, book: SimBook, levels: list[tuple[int, int]]) -> list[list[str]]:
        return [[book.px(px, fixed=True), book.qty(qty, fixed=True)] for px, qty in levels]

    def _frame(
        self,
        book: SimBook,
        depth: int,
        kind: str,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        u: int,
    ) -> str:
        ts = book.ts_ms
        data = {
            "s": book.symbol,
            "b": self._levels(book, bids),
            "a": self._levels(book, asks),
            "u": u,
            "seq": book.seq,
        }
        topic = f"orderbook.{depth}.{book.symbol}"
        # spot (and linear level 1) writes ts before type; linear books after
        if self.spot or depth == 1:
            frame = {"topic": topic, "ts": ts, "type": kind, "data": data, "cts": ts - 1}
        else:
            frame = {"topic": topic, "type": kind, "ts": ts, "data": data, "cts": ts - 1}
        return _compact(frame)

    def _snapshot(self, book: SimBook, depth: int, *, restart: bool = False) -> str:
        us: dict[int, int] = book.extra.setdefault(_U, {})
        if restart:
            us[depth] = 1
        elif depth not in us:
            us[depth] = 1000 + 7 * depth  # any start: clients only check the +1 steps
        elif depth == 1:
            us[depth] += 1  # level 1 is snapshots only: each is a message of the topic
        bids, asks = book.top_bids(depth), book.top_asks(depth)
        book.extra.setdefault(_WINDOW, {})[depth] = (dict(bids), dict(asks))
        book.extra.setdefault(_FRAME, {}).pop(depth, None)
        return self._frame(book, depth, "snapshot", bids, asks, us[depth])

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        frames = []
        pending: list[tuple[str, int]] = conn.state["fresh"]
        for symbol, depth in [p for p in pending if p[0] == book.symbol]:
            pending.remove((symbol, depth))
            frames.append(self._snapshot(book, depth) if depth else self._ticker(conn, book))
        return frames

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        frames = []
        for depth in sorted(conn.state["books"].get(book.symbol, ())):
            text = self._topic_update(book, depth)
            if text is not None:
                frames.append(text)
        return frames

    def _topic_update(self, book: SimBook, depth: int) -> str | None:
        """The message of topic ``orderbook.{depth}`` for the book's current update, made
        once and shared by every subscriber (``u`` counts messages of the topic)."""
        cache: dict[int, tuple[int, str | None]] = book.extra.setdefault(_FRAME, {})
        made = cache.get(depth)
        if made is not None and made[0] == book.seq:
            return made[1]
        held_bids, held_asks = book.extra[_WINDOW][depth]
        top_bids, top_asks = book.top_bids(depth), book.top_asks(depth)
        diffs = []
        for held, top in ((held_bids, top_bids), (held_asks, top_asks)):
            now = dict(top)
            diff = {px: 0 for px in held if px not in now}
            diff |= {px: qty for px, qty in now.items() if held.get(px) != qty}
            held.clear()
            held.update(now)
            diffs.append(diff)
        text: str | None = None
        if diffs[0] or diffs[1]:
            us = book.extra[_U]
            us[depth] += 1
            if depth == 1:
                text = self._frame(book, 1, "snapshot", top_bids, top_asks, us[depth])
            else:
                bids = sorted(diffs[0].items(), reverse=True)
                asks = sorted(diffs[1].items())
                text = self._frame(book, depth, "delta", bids, asks, us[depth])
        cache[depth] = (book.seq, text)
        return text

    def restart(self, sim: ExchangeSim, symbol: str) -> int:
        """Bybit's service restart: every subscriber of a book topic of ``symbol`` gets a
        snapshot with ``u = 1``. Returns the frames sent."""
        book = sim.books[(self.venue, symbol)]
        texts: dict[int, str] = {}
        sent = 0
        for conn in sim.open_connections(self.venue):
            for depth in sorted(conn.state.get("books", {}).get(symbol, ())):
                if depth not in texts:
                    texts[depth] = self._snapshot(book, depth, restart=True)
                conn.send(texts[depth])
                sent += 1
        return sent

    # --- websocket: tickers --------------------------------------------------------------
    def _ticker_fields(self, book: SimBook) -> dict[str, str]:
        mark = book.mark_px
        fields = {
            "markPrice": book.px(mark, fixed=True),
            "indexPrice": book.px(max(book.tick_units, mark - book.tick_units), fixed=True),
        }
        if _is_future(book):
            fields |= {"fundingRate": "", "nextFundingTime": ""}
        else:
            settle = (book.ts_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
            fields |= {"fundingRate": f"{book.funding_rate:.6f}", "nextFundingTime": str(settle)}
        return fields

    def _ticker(self, conn: SimConnection, book: SimBook) -> str:
        fields = self._ticker_fields(book)
        conn.state["tickers"][book.symbol] = dict(fields)
        best_bid, best_ask = book.best_bid(), book.best_ask()
        data: dict[str, str] = {"symbol": book.symbol, "tickDirection": "ZeroPlusTick"}
        data["lastPrice"] = book.px(book.mark_px, fixed=True)
        data |= fields
        if best_bid is not None:
            data |= {"bid1Price": book.px(best_bid, fixed=True)}
            data |= {"bid1Size": book.qty(book.bids[best_bid], fixed=True)}
        if best_ask is not None:
            data |= {"ask1Price": book.px(best_ask, fixed=True)}
            data |= {"ask1Size": book.qty(book.asks[best_ask], fixed=True)}
        return _compact(
            {
                "topic": f"tickers.{book.symbol}",
                "type": "snapshot",
                "data": data,
                "cs": book.seq,
                "ts": book.ts_ms,
            }
        )

    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        """A partial delta of the ticker fields that changed since the last one sent."""
        last: dict[str, str] | None = conn.state["tickers"].get(book.symbol)
        if last is None:
            return []
        fields = self._ticker_fields(book)
        changed = {k: v for k, v in fields.items() if last.get(k) != v}
        if not changed:
            return []
        last.update(changed)
        data = {"symbol": book.symbol, **changed}
        return [
            _compact(
                {
                    "topic": f"tickers.{book.symbol}",
                    "type": "delta",
                    "data": data,
                    "cs": book.seq,
                    "ts": book.ts_ms,
                }
            )
        ]

    # --- REST ----------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path != "/v5/market/instruments-info":
            return None
        category = request.query.get("category", "")
        now_ms = time.time_ns() // 1_000_000
        if category not in ("spot", "linear", "inverse", "option"):
            answer = {
                "retCode": 10001,
                "retMsg": "params error: Category is invalid",
                "result": {},
                "retExtInfo": {},
                "time": now_ms,
            }
            return 200, _compact(answer)
        books: list[SimBook] = []
        if category == self.category:
            wanted = request.query.get("symbol")
            books = [
                book
                for (venue, symbol), book in sorted(sim.books.items(), key=lambda kv: kv[0][1])
                if venue == self.venue and (wanted is None or wanted == symbol)
            ]
        result: dict[str, Any] = {"category": category}
        if not self.spot:  # spot answers everything at once; linear pages
            books, result["nextPageCursor"] = self._page(books, request.query)
        result["list"] = [self._instrument(book) for book in books]
        answer = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms}
        return 200, _compact(answer)

    def _page(self, books: list[SimBook], query: dict[str, str]) -> tuple[list[SimBook], str]:
        # Bybit: limit 1-1000 (default 500); the cursor is opaque and comes percent-encoded
        # ("first%3DBTCUSDT%26last%3DETHUSDT"); a client sends it back as the same string
        try:
            limit = min(max(1, int(query.get("limit", "500"))), 1000, self.max_page)
        except ValueError:
            limit = min(500, self.max_page)
        cursor = query.get("cursor", "")
        start = 0
        if cursor.startswith("first%3D") and "%26last%3D" in cursor:
            last = cursor.partition("%26last%3D")[2]
            start = next((i + 1 for i, b in enumerate(books) if b.symbol == last), len(books))
        page = books[start : start + limit]
        more = page and start + limit < len(books)
        next_cursor = f"first%3D{page[0].symbol}%26last%3D{page[-1].symbol}" if more else ""
        return page, next_cursor

    def _instrument(self, book: SimBook) -> dict[str, Any]:
        instrument = book.extra.get("instrument")
        if isinstance(instrument, Instrument):
            base, quote = instrument.base, instrument.quote
        else:
            base, quote = _split(book.symbol.partition("-")[0])
        tick = book.px(book.tick_units)
        step = book.qty(1)
        row: dict[str, Any] = {"symbol": book.symbol}
        if self.spot:
            row |= {
                "baseCoin": base,
                "quoteCoin": quote,
                "innovation": "0",
                "status": "Trading",
                "marginTrading": "utaOnly",
                "lotSizeFilter": {
                    "basePrecision": step,
                    "quotePrecision": "0.0000001",
                    "minOrderQty": step,
                    "maxOrderQty": "100000",
                    "minOrderAmt": "5",
                    "maxOrderAmt": "8000000",
                },
                "priceFilter": {"tickSize": tick},
            }
            return row
        future = _is_future(book)
        row |= {
            "contractType": "LinearFutures" if future else "LinearPerpetual",
            "status": "Trading",
            "baseCoin": base,
            "quoteCoin": quote,
            "priceScale": str(book.price_decimals),
            "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
            "lotSizeFilter": {
                "maxOrderQty": "1000000",
                "minOrderQty": step,
                "qtyStep": step,
                "minNotionalValue": "5",
            },
            "fundingInterval": 0 if future else 480,
            "settleCoin": quote,
        }
        return row


__all__ = ["BybitProtocol"]
