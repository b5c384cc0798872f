"""Building blocks shared by the venue modules: frame text, level arrays, the tools' parse.

The contract itself (what an adapter provides) is :mod:`feeds.contract`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from feeds.contract import DecodeResult, VenueAdapter
from monitor.domain import (
    BookEvent,
    FeedEvent,
    FloatArray,
    Ignored,
    Instrument,
    IntArray,
    LevelError,
    MarkPriceEvent,
    RawBook,
    parse_levels,
)
from monitor.errors import ParseError, UnknownInstrument


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut into lists of at most ``size``."""
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def encode(value: Any) -> str:
    """Compact JSON text of a frame to send."""
    return msgspec.json.encode(value).decode()


def levels_json(levels: Sequence[tuple[str, str]]) -> bytes:
    """Raw level array bytes ``[["px","qty"],...]`` from decimal strings the adapter read
    (venues whose levels are objects, e.g. Coinbase and Hyperliquid)."""
    return msgspec.json.encode([[px, qty] for px, qty in levels])


def book_events(
    adapter: VenueAdapter,
    decoded: DecodeResult,
    raw: bytes | str,
    recv_ns: int,
    instruments: Mapping[str, Instrument | tuple[int, float]],
) -> list[FeedEvent]:
    """What a decoded frame says, with its level arrays converted (tools and tests; the
    live path leaves them to the book kernel). Pure; raises ParseError or UnknownInstrument.

    ``instruments`` maps the venue symbol to its Instrument, or to (price decimals,
    contract size) for a linear one. Sizes become base units as the Instrument says:
    ``size x contract_size``, divided by the price for inverse contracts (Deribit
    BTC-PERPETUAL and OKX BTC-USD-SWAP count USD), as the book kernel does.
    """
    out: list[FeedEvent] = []
    for item in decoded if isinstance(decoded, list) else (decoded,):
        if isinstance(item, MarkPriceEvent | Ignored):
            out.append(item)
            continue
        if not isinstance(item, RawBook):
            out.append(Ignored(type(item).__name__))
            continue
        meta = instruments.get(item.symbol)
        if meta is None:
            raise UnknownInstrument(adapter.venue.value, item.symbol)
        if isinstance(meta, Instrument):
            decimals, contract_size, inverse = meta.price_decimals, meta.contract_size, meta.inverse
        else:
            (decimals, contract_size), inverse = meta, False
        sides: list[tuple[IntArray, FloatArray]] = []
        try:
            for side in (item.bids, item.asks):
                levels = parse_levels(
                    bytes(side),
                    px_index=adapter.px_index,
                    qty_index=adapter.qty_index,
                    price_decimals=decimals,
                    contract_size=contract_size,
                )
                px = np.array([p for p, _ in levels], dtype=np.int64)
                qty = np.array([q for _, q in levels], dtype=np.float64)
                if inverse and px.size:
                    qty = qty / (px / 10.0**decimals)  # quote amounts -> base units
                sides.append((px, qty))
        except LevelError as exc:
            raise ParseError(adapter.venue.value, raw, str(exc)) from exc
        (bid_px, bid_qty), (ask_px, ask_qty) = sides
        out.append(
            BookEvent(
                venue=adapter.venue,
                symbol=item.symbol,
                kind=item.kind,
                bid_px=bid_px,
                bid_qty=bid_qty,
                ask_px=ask_px,
                ask_qty=ask_qty,
                ts_event_ns=item.ts_event_ns,
                ts_recv_ns=recv_ns,
                first_seq=item.first_seq,
                last_seq=item.last_seq,
                prev_seq=item.prev_seq,
                depth_limit=item.limit,
            )
        )
    return out


__all__ = ["book_events", "chunks", "encode", "levels_json"]
