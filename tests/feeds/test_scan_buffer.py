"""Every venue's scanner reads frames where they lie (``scan_buffer``: a replay's block
holds every venue's frames interleaved in one buffer) exactly as it reads them joined
(``scan_frames``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from feeds.hyperliquid import PERP
from feeds.kraken import SPOT
from feeds.recording import iter_recording
from feeds.venues import ADAPTERS
from monitor.domain import Venue
from tests.conftest import RECORDINGS
from tests.feeds import test_coinbase_scan, test_okx_scan
from tests.feeds.scan_check import scanned
from tests.feeds.sim_stream import sim_frames


def _recorded(name: str) -> list[bytes]:
    path = RECORDINGS / f"{name}.jsonl.gz"
    return [r.data.encode() for r in iter_recording(path) if r.kind == "ws"]


STREAMS: dict[str, tuple[Venue, Callable[[], list[bytes]]]] = {
    "binance": (Venue.BINANCE, lambda: _recorded("binance-spot-2021-10-12")),
    "binance_futures": (Venue.BINANCE_FUTURES, lambda: _recorded("binance-usdm-2021-07-22")),
    "okx": (Venue.OKX, lambda: test_okx_scan.sim_frames(60)),
    "coinbase": (Venue.COINBASE, lambda: test_coinbase_scan.sim_frames(120)[0]),
    "kraken": (
        Venue.KRAKEN,
        lambda: sim_frames(Venue.KRAKEN, SPOT, ["BTC/USD", "ETH/USD"], ["book"], 400, path="/v2")[
            0
        ],
    ),
    "hyperliquid": (
        Venue.HYPERLIQUID,
        lambda: sim_frames(
            Venue.HYPERLIQUID,
            PERP,
            ["BTC", "ETH"],
            ["l2Book", "activeAssetCtx"],
            300,
            path="/ws",
            marks_every=3,
        )[0],
    ),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_frames_scanned_in_place_read_as_joined(name: str) -> None:
    venue, make = STREAMS[name]
    scanner = ADAPTERS[venue].scanner
    assert scanner is not None
    frames = make()
    assert len(frames) > 50
    joined = scanned(scanner.scan_frames(frames))
    assert any(row.is_book for row in joined)
    # the frames in reverse order in one buffer, other bytes between them
    parts, starts, ends, at = [], [], [], 0
    for k, frame in enumerate(reversed(frames)):
        filler = b'{"x":"' + b"\\" * (k % 5) + b'"}'
        parts += [filler, frame]
        starts.append(at + len(filler))
        at += len(filler) + len(frame)
        ends.append(at)
    buf = np.frombuffer(b"".join(parts), dtype=np.uint8)
    order = np.arange(len(frames))[::-1]
    in_place = scanned(
        scanner.scan_buffer(
            buf, np.array(starts, dtype=np.int64)[order], np.array(ends, dtype=np.int64)[order]
        )
    )
    assert in_place == joined
