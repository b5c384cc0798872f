"""OKX v5 inside :class:`~feeds.sim.base.ExchangeSim` (``ws://127.0.0.1:<port>/okx/ws/v5/public``).

Speaks the public socket as the OKX v5 docs ("WebSocket / Public channel") describe it:

- ``{"op":"subscribe"|"unsubscribe","args":[{"channel":..,"instId":..},..]}`` is answered
  per arg with ``{"event":"subscribe","arg":{..},"connId":".."}`` (the request's ``id`` is
  echoed when given), or ``{"event":"error","code":"60018","msg":"Wrong URL or channel:..,
  instId:.. doesn't exist..."}`` for an instrument or channel the sim does not have. More
  than ``ops_per_hour`` (480) subscribe/unsubscribe ops on one connection get ``60014``.
- The text ``ping`` is answered with ``pong``; a client that sends nothing for
  ``client_idle_timeout_s`` (30 s) is disconnected, as OKX drops silent connections.
- ``books``: a snapshot of at most ``depth`` (400) levels a side, ``"action":"snapshot"``,
  ``seqId`` = the book's id and ``prevSeqId`` -1; then one ``update`` per book change with
  ``seqId``/``prevSeqId``. Levels are ``[px, sz, "0", orders]`` written the OKX way
  (shortest decimal). The connection's window of ``depth`` levels is kept exact: a level
  pushed out of it is deleted (size ``"0"``), one moving into it is sent. A book unchanged
  for ``book_heartbeat_s`` (60 s) gets an empty update with ``seqId == prevSeqId``.
  ``books5`` subscribers get a 5-level snapshot (no ``action``) per change.
- ``checksum``: 0 in every frame (today's feed, the default) or, with ``checksum=True``,
  the real CRC32 of the top 25 levels (feeds.okx.checksum) so the kernel's verification
  runs live. ``sim.corrupt_checksum(Venue.OKX, symbol)`` writes a wrong non-zero checksum
  into the next update in both modes. ``seq_ids=False`` sends the 2022 era's frames
  (no ``seqId``/``prevSeqId``; pair it with ``checksum=True``).
- ``mark-price``, ``funding-rate`` (perpetual swaps) and ``index-tickers`` (under the index
  id, e.g. ``BTC-USDT``) for derivative books, every ``mark_s`` of the sim.
- :meth:`OkxProtocol.notice` sends ``{"event":"notice","code":"64008"}`` (disconnect for a
  service upgrade ahead) to every OKX connection, and closes them later if asked.
- REST ``GET /api/v5/public/instruments?instType=SPOT|SWAP|FUTURES`` from the sim's books:
  ``book.extra`` may carry ``ct_type`` (linear|inverse; default inverse for ``-USD-`` books),
  ``ct_val`` (contract value; default 1), ``base``/``quote``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from feeds.okx import checksum as okx_checksum
from feeds.okx import index_id
from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Venue

UPGRADE_NOTICE = "The connection will soon be closed for a service upgrade. Please reconnect."
FUNDING_INTERVAL_MS = 8 * 3600 * 1000
BOOK_CHANNELS = frozenset({"books", "books5"})
MARK_CHANNELS = frozenset({"mark-price", "funding-rate", "index-tickers"})
INSTRUMENT_TYPES = frozenset({"SPOT", "SWAP", "FUTURES"})


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _inst_type(symbol: str) -> str:
    parts = symbol.split("-")
    if len(parts) == 2:
        return "SPOT"
    return "SWAP" if parts[-1] == "SWAP" else "FUTURES"


class OkxProtocol(ProtocolBase):
    """The OKX v5 public socket and instruments endpoint (see the module doc)."""

    venue = Venue.OKX
    server_ping_s: float | None = None  # OKX does not ping: the client sends "ping"

    def __init__(
        self,
        *,
        checksum: bool = False,
        seq_ids: bool = True,
        depth: int = 400,
        book_heartbeat_s: float = 60.0,
        client_idle_timeout_s: float | None = 30.0,
        ops_per_hour: int = 480,
    ) -> None:
        self.checksum = checksum
        self.seq_ids = seq_ids
        self.depth = depth
        self.book_heartbeat_s = book_heartbeat_s
        self.client_idle_timeout_s = client_idle_timeout_s
        self.ops_per_hour = ops_per_hour

    # --- websocket: requests -----------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["sim"] = sim
        conn.state["conn_id"] = f"{conn.id:08x}"
        conn.state["books"] = {}  # symbol -> "books" | "books5"
        conn.state["window"] = {}  # symbol -> (bids, asks) the client holds: {px: qty}
        conn.state["last_push"] = {}  # symbol -> monotonic time of the last book frame
        conn.state["marks"] = set()  # (channel, instId)
        conn.state["ops"] = []  # monotonic times of subscribe/unsubscribe ops

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        if text == "ping":
            conn.send("pong")
            return
        try:
            request = json.loads(text)
            op = request["op"]
            args = request.get("args") or []
            if not isinstance(args, list) or not all(isinstance(a, dict) for a in args):
                raise TypeError("args")
        except (ValueError, KeyError, TypeError, AttributeError):
            self._error(conn, "60012", f"Invalid request: {text[:200]}")
            return
        request_id = request.get("id")
        if op not in {"subscribe", "unsubscribe"}:
            self._error(conn, "60019", f"Invalid op: {op}", request_id)
            return
        if not self._take_op(sim, conn):
            self._error(conn, "60014", "Requests too frequent.", request_id)
            return
        for arg in args:
            if op == "subscribe":
                self._subscribe(sim, conn, arg, request_id)
            else:
                self._unsubscribe(sim, conn, arg, request_id)

    def _take_op(self, sim: ExchangeSim, conn: SimConnection) -> bool:
        now = time.monotonic()
        ops = [t for t in conn.state["ops"] if now - t < 3600.0]
        conn.state["ops"] = ops
        if len(ops) >= self.ops_per_hour:
            return False
        ops.append(now)
        return True

    def _subscribe(
        self, sim: ExchangeSim, conn: SimConnection, arg: dict[str, Any], request_id: Any
    ) -> None:
        channel, inst_id = str(arg.get("channel", "")), str(arg.get("instId", ""))
        book = self._book_for(sim, channel, inst_id)
        if book is None:
            self._error(
                conn,
                "60018",
                f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the "
                "correct URL, channel and parameters referring to API document.",
                request_id,
            )
            return
        self._ack(conn, "subscribe", channel, inst_id, request_id)
        if channel in BOOK_CHANNELS:
            conn.state["books"][book.symbol] = channel
            conn.state["window"].pop(book.symbol, None)
            conn.subscriptions.discard(book.symbol)
            sim.subscribe(conn, book.symbol)  # sends snapshot_frames
        else:
            conn.state["marks"].add((channel, inst_id))
            conn.subscriptions.add(book.symbol)  # mark frames only: no snapshot

    def _unsubscribe(
        self, sim: ExchangeSim, conn: SimConnection, arg: dict[str, Any], request_id: Any
    ) -> None:
        channel, inst_id = str(arg.get("channel", "")), str(arg.get("instId", ""))
        self._ack(conn, "unsubscribe", channel, inst_id, request_id)
        if channel in BOOK_CHANNELS:
            conn.state["books"].pop(inst_id, None)
            conn.state["window"].pop(inst_id, None)
        else:
            conn.state["marks"].discard((channel, inst_id))
        for symbol in list(conn.subscriptions):
            if not self._wanted(conn, symbol):
                sim.unsubscribe(conn, symbol)

    def _wanted(self, conn: SimConnection, symbol: str) -> bool:
        if symbol in conn.state["books"]:
            return True
        index = index_id(symbol)
        return any(
            inst == symbol or (channel == "index-tickers" and inst == index)
            for channel, inst in conn.state["marks"]
        )

    def _book_for(self, sim: ExchangeSim, channel: str, inst_id: str) -> SimBook | None:
        if channel in BOOK_CHANNELS:
            return sim.books.get((self.venue, inst_id))
        if channel not in MARK_CHANNELS:
            return None
        if channel == "index-tickers":
            candidates = [
                b for (v, s), b in sorted(sim.books.items()) if v == self.venue and b.derivative
            ]
            return next((b for b in candidates if index_id(b.symbol) == inst_id), None)
        book = sim.books.get((self.venue, inst_id))
        if book is None or not book.derivative:
            return None
        if channel == "funding-rate" and _inst_type(inst_id) != "SWAP":
            return None
        return book

    def _ack(
        self, conn: SimConnection, event: str, channel: str, inst_id: str, request_id: Any
    ) -> None:
        reply: dict[str, Any] = {}
        if request_id is not None:
            reply["id"] = request_id
        reply |= {
            "event": event,
            "arg": {"channel": channel, "instId": inst_id},
            "connId": conn.state["conn_id"],
        }
        conn.send(_compact(reply))

    def _error(self, conn: SimConnection, code: str, msg: str, request_id: Any = None) -> None:
        reply: dict[str, Any] = {}
        if request_id is not None:
            reply["id"] = request_id
        reply |= {"event": "error", "msg": msg, "code": code, "connId": conn.state["conn_id"]}
        conn.send(_compact(reply))

    def notice(self, sim: ExchangeSim, *, close_after_s: float | None = None) -> int:
        """Send the 64008 upgrade notice to every open OKX connection; returns how many.

        close_after_s: then close those still open after this long (OKX: about 30 s), with
        1012 (service restart), as the upgrade does; None leaves them open."""
        connections = sim.open_connections(self.venue)
        for conn in connections:
            message = {
                "event": "notice",
                "code": "64008",
                "msg": UPGRADE_NOTICE,
                "connId": conn.state.get("conn_id", ""),
            }
            conn.send(_compact(message))
        if close_after_s is not None:
            sim.close_later(connections, close_after_s, code=1012, reason="service upgrade")
        return len(connections)

    # --- websocket: book frames ----------------------------------------------------------
    def _levels(self, book: SimBook, levels: list[tuple[int, int]]) -> list[list[str]]:
        # the order count is made up: 1 to 5, stable for a given level
        return [
            [book.px(px), book.qty(qty), "0", str(1 + (px + qty) % 5) if qty else "0"]
            for px, qty in levels
        ]

    def _checksum(self, book: SimBook, corrupt: bool = False) -> int:
        if not self.checksum and not corrupt:
            return 0
        bids = [(book.px(p), book.qty(q)) for p, q in book.top_bids(25)]
        asks = [(book.px(p), book.qty(q)) for p, q in book.top_asks(25)]
        value = okx_checksum(bids, asks)
        if corrupt:
            value = value ^ 0x5A5A5A5A or 1  # wrong, and never 0 (0 means "no checksum")
        return value

    def _push(
        self,
        conn: SimConnection,
        book: SimBook,
        channel: str,
        action: str | None,
        bids: list[list[str]],
        asks: list[list[str]],
        seq: int,
        prev: int,
        checksum: int | None,
    ) -> str:
        data: dict[str, Any] = {"asks": asks, "bids": bids}
        if channel == "books5":
            data["instId"] = book.symbol
        data["ts"] = str(book.ts_ms)
        if checksum is not None:
            data["checksum"] = checksum
        if self.seq_ids:
            if channel != "books5":
                data["prevSeqId"] = prev
            data["seqId"] = seq
        frame: dict[str, Any] = {"arg": {"channel": channel, "instId": book.symbol}}
        if action is not None:
            frame["action"] = action
        frame["data"] = [data]
        conn.state["last_push"][book.symbol] = time.monotonic()
        return _compact(frame)

    def snapshot_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        channel = conn.state["books"].get(book.symbol)
        if channel is None:
            return []
        if channel == "books5":
            return [self._books5(conn, book)]
        bids = book.top_bids(self.depth)
        asks = book.top_asks(self.depth)
        conn.state["window"][book.symbol] = (dict(bids), dict(asks))
        return [
            self._push(
                conn,
                book,
                "books",
                "snapshot",
                self._levels(book, bids),
                self._levels(book, asks),
                book.seq,
                -1,
                self._checksum(book),
            )
        ]

    def _books5(self, conn: SimConnection, book: SimBook) -> str:
        bids = self._levels(book, book.top_bids(5))
        asks = self._levels(book, book.top_asks(5))
        return self._push(conn, book, "books5", None, bids, asks, book.seq, -1, None)

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        channel = conn.state["books"].get(book.symbol)
        if channel is None:
            return []
        if channel == "books5":
            return [self._books5(conn, book)]
        held_bids, held_asks = conn.state["window"][book.symbol]
        sides = []
        for held, top in (
            (held_bids, book.top_bids(self.depth)),
            (held_asks, book.top_asks(self.depth)),
        ):
            now = dict(top)
            diff = {px: 0 for px in held if px not in now}
            diff |= {px: qty for px, qty in now.items() if held.get(px) != qty}
            held.clear()
            held.update(now)
            sides.append(diff)
        bid_diff, ask_diff = sides
        bids = self._levels(book, sorted(bid_diff.items(), reverse=True))
        asks = self._levels(book, sorted(ask_diff.items()))
        checksum = self._checksum(book, corrupt=book.corrupt_checksum)
        return [
            self._push(conn, book, "books", "update", bids, asks, book.seq, book.prev_seq, checksum)
        ]

    def heartbeat_frames(self, conn: SimConnection) -> list[str]:
        """The empty update OKX sends for a book unchanged for a while (seqId == prevSeqId)."""
        sim: ExchangeSim | None = conn.state.get("sim")
        if sim is None:
            return []
        now = time.monotonic()
        frames = []
        for symbol, channel in sorted(conn.state["books"].items()):
            book = sim.books.get((self.venue, symbol))
            last = conn.state["last_push"].get(symbol, now)
            if channel != "books" or book is None or now - last < self.book_heartbeat_s:
                continue
            frames.append(
                self._push(
                    conn, book, "books", "update", [], [], book.seq, book.seq, self._checksum(book)
                )
            )
        return frames

    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        marks: set[tuple[str, str]] = conn.state["marks"]
        ts = book.ts_ms
        inst_type = _inst_type(book.symbol)
        mark = book.px(book.mark_px)
        frames = []
        if ("mark-price", book.symbol) in marks:
            data = {"instId": book.symbol, "instType": inst_type, "markPx": mark, "ts": str(ts)}
            frames.append(self._mark_frame("mark-price", book.symbol, data))
        if ("funding-rate", book.symbol) in marks:
            settle = (ts // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
            data = {
                "fundingRate": repr(book.funding_rate),
                "fundingTime": str(settle),
                "instId": book.symbol,
                "instType": inst_type,
                "method": "current_period",
                "nextFundingRate": "",
                "nextFundingTime": str(settle + FUNDING_INTERVAL_MS),
                "ts": str(ts),
            }
            frames.append(self._mark_frame("funding-rate", book.symbol, data))
        index = index_id(book.symbol)
        sim: ExchangeSim | None = conn.state.get("sim")
        if index is not None and ("index-tickers", index) in marks and sim is not None:
            # one index frame per index: from the first derivative book priced against it
            source = self._book_for(sim, "index-tickers", index)
            if source is book:
                data = {"instId": index, "idxPx": mark, "ts": str(ts)}
                frames.append(self._mark_frame("index-tickers", index, data))
        return frames

    def _mark_frame(self, channel: str, inst_id: str, data: dict[str, str]) -> str:
        return _compact({"arg": {"channel": channel, "instId": inst_id}, "data": [data]})

    # --- REST ----------------------------------------------------------------------------
    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if request.path != "/api/v5/public/instruments":
            return None
        inst_type = request.query.get("instType", "")
        if not inst_type:
            answer = {"code": "50014", "msg": "Parameter instType can not be empty.", "data": []}
            return 400, _compact(answer)
        if inst_type not in INSTRUMENT_TYPES:
            return 200, _compact({"code": "0", "msg": "", "data": []})
        rows = [
            self._instrument(book)
            for (venue, symbol), book in sorted(sim.books.items())
            if venue == self.venue and _inst_type(symbol) == inst_type
        ]
        return 200, _compact({"code": "0", "msg": "", "data": rows})

    def _instrument(self, book: SimBook) -> dict[str, Any]:
        inst_type = _inst_type(book.symbol)
        parts = book.symbol.split("-")
        base = str(book.extra.get("base", parts[0]))
        quote = str(book.extra.get("quote", parts[1]))
        row: dict[str, Any] = {
            "instType": inst_type,
            "instId": book.symbol,
            "tickSz": book.px(book.tick_units),
            "lotSz": book.qty(1),
            "minSz": book.qty(1),
            "state": "live",
        }
        if inst_type == "SPOT":
            row |= {"baseCcy": base, "quoteCcy": quote, "instFamily": "", "uly": "", "ctType": ""}
            return row
        ct_type = str(book.extra.get("ct_type", "inverse" if quote == "USD" else "linear"))
        row |= {
            "baseCcy": "",
            "quoteCcy": "",
            "instFamily": f"{base}-{quote}",
            "uly": f"{base}-{quote}",
            "ctType": ct_type,
            "ctVal": str(book.extra.get("ct_val", "1")),
            "ctMult": "1",
            "ctValCcy": quote if ct_type == "inverse" else base,
            "settleCcy": base if ct_type == "inverse" else quote,
        }
        return row


__all__ = ["OkxProtocol"]
