"""Binance spot and USD-M inside the shared local exchange (:class:`~feeds.sim.base.ExchangeSim`).

Synthetic books by default; or, with a :class:`BinanceRecording`, a recorded session played
back: every connection replays the recording's ``ws`` records of the streams it subscribed
to, and REST is answered from its ``http`` records (depth cut to the requested ``limit``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from feeds.binance import SPOT, USDM
from feeds.recording import RecordKind, iter_recording
from feeds.sim.base import Change, ExchangeSim, ProtocolBase, RestRequest, SimBook, SimConnection
from monitor.domain import Venue

DEFAULT_PING_INTERVAL_S = 20.0  # Binance spot pings every 20 s


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One recorded frame: its stream, the combined envelope, and the raw payload."""

    stream: str
    envelope: str
    payload: str
    ts: float = 0.0

    @classmethod
    def from_envelope(cls, text: str, ts: float = 0.0) -> RecordedFrame:
        message = json.loads(text)
        stream = message["stream"]
        prefix = f'{{"stream":"{stream}","data":'
        if text.startswith(prefix) and text.endswith("}"):
            payload = text[len(prefix) : -1]  # keeps the payload byte-exact
        else:
            payload = _compact(message["data"])
        return cls(stream=stream, envelope=text, payload=payload, ts=ts)


@dataclass(slots=True)
class BinanceRecording:
    """What a recorded Binance session sent: websocket frames, and REST answers by (path,
    symbol) (``symbol`` None: any). ``speed`` None replays as fast as the client reads;
    1.0 at the recorded pace."""

    frames: list[RecordedFrame] = field(default_factory=list)
    answers: dict[tuple[str, str | None], str] = field(default_factory=dict)
    speed: float | None = None

    @classmethod
    def load(
        cls, paths: str | Path | Iterable[str | Path], *, speed: float | None = None
    ) -> BinanceRecording:
        """The ``ws`` and ``http`` records of recording files (``liqmon record``)."""
        recording = cls(speed=speed)
        for record in iter_recording(paths):
            if record.kind == RecordKind.WS:
                recording.frames.append(RecordedFrame.from_envelope(record.data, record.ts))
            else:
                recording.answers[_rest_key_of_url(record.url)] = record.data
        return recording

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, str] | None:
        text = self.answers.get((path, query.get("symbol"))) or self.answers.get((path, None))
        if text is None:
            if path.endswith(("/depth", "/exchangeInfo")):
                return 400, '{"code":-1121,"msg":"Invalid symbol."}'
            return None
        if path.endswith("/depth") and "limit" in query:
            text = _cut_depth(text, int(query["limit"]))
        return 200, text


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _rest_key_of_url(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    symbol = None
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name == "symbol":
            symbol = value
    return parts.path, symbol


def _cut_depth(text: str, limit: int) -> str:
    """The snapshot cut to ``limit`` levels per side (unchanged text when it already fits)."""
    snapshot = json.loads(text)
    if len(snapshot.get("bids", ())) <= limit and len(snapshot.get("asks", ())) <= limit:
        return text
    snapshot["bids"] = snapshot["bids"][:limit]
    snapshot["asks"] = snapshot["asks"][:limit]
    return _compact(snapshot)


# --- the Binance protocol of the shared local exchange (feeds.sim.base) ----------------------


class BinanceProtocol(ProtocolBase):
    """Binance spot (``/api/v3``) or USD-M (``/fapi/v1``) inside :class:`ExchangeSim`.

    Streams come in the URL (``.../stream?streams=btcusdt@depth@100ms/...``, combined
    envelopes, under any prefix such as USD-M's ``/public`` and ``/market``) or by
    ``SUBSCRIBE``. Snapshots are REST only (``lastUpdateId`` = the book's last update id);
    each update is one ``depthUpdate`` with ``U = u = `` its id (USD-M adds ``pu``).

    REST weight as Binance counts it: every synthetic answer weighs what Binance's docs say
    (depth by its limit, exchangeInfo, 1 otherwise); ``exchangeInfo.rateLimits`` states
    ``weight_limit`` per ``weight_interval_s`` (default the venue's documented 6000 or 2400
    a minute), and a request that would take the weight of the last ``weight_interval_s``
    over it is refused with 429, as Binance refuses it.
    """

    server_ping_s: float | None = DEFAULT_PING_INTERVAL_S

    def __init__(
        self,
        venue: Venue = Venue.BINANCE,
        *,
        recording: BinanceRecording | None = None,
        server_ping_s: float | None = DEFAULT_PING_INTERVAL_S,
        weight_limit: int | None = None,
        weight_interval_s: float = 60.0,
    ) -> None:
        self.venue = venue
        self.futures = venue == Venue.BINANCE_FUTURES  # the protocol object is per market
        self.api = "/fapi/v1" if self.futures else "/api/v3"
        self.recording = recording
        self.server_ping_s = server_ping_s
        self.adapter = USDM if self.futures else SPOT
        self.weight_limit = weight_limit or self.adapter.weight_limit_per_minute
        self.weight_interval_s = weight_interval_s
        self.weighed: deque[tuple[float, int]] = deque()  # (arrival, weight) in the interval
        self.refused = 0

    # websocket -------------------------------------------------------------------------
    def on_open(self, sim: ExchangeSim, conn: SimConnection) -> None:
        conn.state["combined"] = conn.path.endswith("/stream")
        conn.state["depth"] = set()
        conn.state["mark"] = set()
        conn.state["streams"] = set()  # every stream name subscribed (the recording's filter)
        streams = conn.query.get("streams", "")
        if "/ws/" in conn.path:
            streams = conn.path.split("/ws/", 1)[1]
        self._subscribe(sim, conn, [s for s in streams.split("/") if s])
        if self.recording is not None and self.recording.frames:
            sim.spawn(self._replay(sim, conn, self.recording))

    async def _replay(
        self, sim: ExchangeSim, conn: SimConnection, recording: BinanceRecording
    ) -> None:
        """The recording's frames of the streams ``conn`` subscribed to, in order."""
        streams: set[str] = conn.state["streams"]
        await sim.wait_for(lambda: conn.closed or bool(streams), timeout_s=3600.0)
        combined = conn.state["combined"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_ts = recording.frames[0].ts
        for index, frame in enumerate(recording.frames):
            if conn.closed:
                return
            if recording.speed is not None:
                due = started + (frame.ts - first_ts) / recording.speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            elif index % 64 == 0:
                await asyncio.sleep(0)  # let the connection's writer and the client run
            if frame.stream in streams:
                conn.send(frame.envelope if combined else frame.payload)
        conn.state["replay_done"] = True

    def _subscribe(self, sim: ExchangeSim, conn: SimConnection, streams: list[str]) -> None:
        conn.state["streams"].update(streams)
        for stream in streams:
            symbol, _, channel = stream.partition("@")
            symbol = symbol.upper()
            if (self.venue, symbol) not in sim.books:
                continue  # Binance accepts unknown streams and sends nothing
            if channel.startswith("depth"):
                conn.state["depth"].add(symbol)
            elif channel.startswith("markPrice") and self.futures:
                conn.state["mark"].add(symbol)
            sim.subscribe(conn, symbol)

    def on_text(self, sim: ExchangeSim, conn: SimConnection, text: str) -> None:
        try:
            message = json.loads(text)
            method = message["method"]
            params = list(message.get("params") or [])
            request_id = message.get("id")
        except (ValueError, KeyError, TypeError, AttributeError):
            conn.send('{"error":{"code":3,"msg":"Invalid JSON"},"id":null}')
            return
        if method == "SUBSCRIBE":
            self._subscribe(sim, conn, params)
            conn.send(_compact({"result": None, "id": request_id}))
        elif method == "UNSUBSCRIBE":
            conn.state["streams"].difference_update(params)
            for stream in params:
                symbol = stream.partition("@")[0].upper()
                conn.state["depth"].discard(symbol)
                conn.state["mark"].discard(symbol)
                if symbol not in conn.state["depth"] | conn.state["mark"]:
                    sim.unsubscribe(conn, symbol)
            conn.send(_compact({"result": None, "id": request_id}))
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: {method}"}, "id": request_id}
            conn.send(_compact(reply))

    def _wrap(self, conn: SimConnection, stream: str, payload: str) -> str:
        if conn.state.get("combined"):
            return f'{{"stream":"{stream}","data":{payload}}}'
        return payload

    def delta_frames(self, conn: SimConnection, book: SimBook, changes: list[Change]) -> list[str]:
        if book.symbol not in conn.state.get("depth", ()):
            return []
        bids = [
            [book.px(c.px, fixed=True), book.qty(c.qty, fixed=True)]
            for c in changes
            if c.side == "bid"
        ]
        asks = [
            [book.px(c.px, fixed=True), book.qty(c.qty, fixed=True)]
            for c in changes
            if c.side == "ask"
        ]
        ts = book.ts_ms
        payload: dict[str, Any] = {"e": "depthUpdate", "E": ts}
        if self.futures:
            payload["T"] = ts
        payload |= {"s": book.symbol, "U": book.prev_seq + 1, "u": book.seq}
        if self.futures:
            payload["pu"] = book.prev_seq
        payload |= {"b": bids, "a": asks}
        stream = f"{book.symbol.lower()}@depth@100ms"
        return [self._wrap(conn, stream, _compact(payload))]

    def mark_frames(self, conn: SimConnection, book: SimBook) -> list[str]:
        if book.symbol not in conn.state.get("mark", ()):
            return []
        ts = book.ts_ms
        mark = book.px(book.mark_px, fixed=True)
        payload = {
            "e": "markPriceUpdate",
            "E": ts,
            "s": book.symbol,
            "p": mark,
            "i": mark,
            "P": mark,
            "r": f"{book.funding_rate:.8f}",
            "T": (ts // 28_800_000 + 1) * 28_800_000,
        }
        return [self._wrap(conn, f"{book.symbol.lower()}@markPrice@1s", _compact(payload))]

    # REST ------------------------------------------------------------------------------
    def weight(self, path: str, query: dict[str, str]) -> int:
        """The weight Binance counts for one request."""
        if path == f"{self.api}/depth":
            try:
                return self.adapter.snapshot_weight(int(query.get("limit", "100") or 100))
            except ValueError:
                return 1
        if path == f"{self.api}/exchangeInfo":
            return self.adapter.instruments_weight
        return 1

    def _over_limit(self, request: RestRequest) -> tuple[int, str] | None:
        """Count the request's weight; a 429 answer if it takes the interval over the limit."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # answered outside a loop: the scenario generator's metadata
            now = time.monotonic()  # the clock the default loop's time() reads
        while self.weighed and self.weighed[0][0] <= now - self.weight_interval_s:
            self.weighed.popleft()
        weight = self.weight(request.path, request.query)
        used = sum(w for _, w in self.weighed)
        if used + weight > self.weight_limit:
            self.refused += 1
            return 429, '{"code":-1003,"msg":"Too much request weight used."}'
        self.weighed.append((now, weight))
        return None

    def rest(self, sim: ExchangeSim, request: RestRequest) -> tuple[int, str] | None:
        if self.recording is not None:
            return self.recording.answer(request.path, request.query)
        refused = self._over_limit(request)
        if refused is not None:
            return refused
        if request.path == f"{self.api}/depth":
            book = sim.books.get((self.venue, request.query.get("symbol", "")))
            if book is None:
                return 400, '{"code":-1121,"msg":"Invalid symbol."}'
            limit = int(request.query.get("limit", "100") or 100)
            answer: dict[str, Any] = {"lastUpdateId": book.seq}
            if self.futures:
                answer |= {"E": book.ts_ms, "T": book.ts_ms}
            answer["bids"] = [
                [book.px(p, fixed=True), book.qty(q, fixed=True)] for p, q in book.top_bids(limit)
            ]
            answer["asks"] = [
                [book.px(p, fixed=True), book.qty(q, fixed=True)] for p, q in book.top_asks(limit)
            ]
            return 200, _compact(answer)
        if request.path == f"{self.api}/exchangeInfo":
            interval, count = (
                ("SECOND", round(self.weight_interval_s))
                if self.weight_interval_s < 60.0
                else ("MINUTE", round(self.weight_interval_s / 60.0))
            )
            rate_limits = [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": count,
                    "limit": self.weight_limit,
                }
            ]
            return 200, _compact(
                {
                    "rateLimits": rate_limits,
                    "symbols": [self._symbol_info(b) for b in self._books(sim)],
                }
            )
        return None

    def _books(self, sim: ExchangeSim) -> list[SimBook]:
        return [b for (v, _), b in sim.books.items() if v == self.venue]

    def _symbol_info(self, book: SimBook) -> dict[str, Any]:
        instrument = book.extra.get("instrument")
        if instrument is not None:
            base, quote = instrument.base, instrument.quote
        else:  # a book made without metadata: guess a 4-letter quote (USDT, FDUSD aside)
            base, quote = book.symbol[:-4], book.symbol[-4:]
        info: dict[str, Any] = {
            "symbol": book.symbol,
            "status": "TRADING",
            "baseAsset": base,
            "quoteAsset": quote,
            "quoteAssetPrecision": book.price_decimals,
            "pricePrecision": book.price_decimals,
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": book.px(book.tick_units, fixed=True)},
                {"filterType": "LOT_SIZE", "stepSize": book.qty(1, fixed=True)},
            ],
        }
        if self.futures:
            info["contractType"] = "PERPETUAL"
        return info
