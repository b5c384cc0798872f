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
    Ignored,
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
    instruments: Mapping[str, tuple[int, float]],
) -> list[FeedEvent]:
    """What a decoded frame says, with its level arrays converted (tools and tests; the
    live path leaves them to the book kernel). ``instruments`` maps the venue symbol to
    (price decimals, contract size). Pure; raises ParseError or UnknownInstrument."""
    out: list[FeedEvent] = []
    for item in decoded if type(decoded) is list else (decoded,):
        if isinstance(item, MarkPriceEvent | Ignored):
            out.append(item)
            continue
        if not isinstance(item, RawBook):
            out.append(Ignored(type(item).__name__))
            continue
        meta = instruments.get(item.symbol)
        if meta is None:
            raise UnknownInstrument(adapter.venue.value, item.symbol)
        decimals, contract_size = meta
        try:
            bids, asks = (
                parse_levels(
                    bytes(side),
                    px_index=adapter.px_index,
                    qty_index=adapter.qty_index,
                    price_decimals=decimals,
                    contract_size=contract_size,
                )
                for side in (item.bids, item.asks)
            )
        except LevelError as exc:
            raise ParseError(adapter.venue.value, raw, str(exc)) from exc
        out.append(
            BookEvent(
                venue=adapter.venue,
                symbol=item.symbol,
                kind=item.kind,
                bid_px=np.array([p for p, _ in bids], dtype=np.int64),
                bid_qty=np.array([q for _, q in bids], dtype=np.float64),
                ask_px=np.array([p for p, _ in asks], dtype=np.int64),
                ask_qty=np.array([q for _, q in asks], dtype=np.float64),
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
