"""The black box's ring of recent raw frames: bounded by age, count and bytes; keeps the
batch's frames when the daemon reuses its lists; the capture window, its symbol filter and
its size bound (the newest kept)."""

from __future__ import annotations

from feeds.recording import RecordKind
from monitor.framering import FrameRing, RingLimits

S = 1_000_000_000
URL = "wss://ws.example/stream"


def frame(symbol: str, i: int) -> bytes:
    return b'{"s":"%s","u":%d,"b":[["1.0","2.0"]]}' % (symbol.encode(), i)


def test_the_callers_lists_are_reused_without_changing_what_the_ring_keeps() -> None:
    ring = FrameRing("binance", URL)
    frames: list[bytes | str] = [frame("BTCUSDT", 1), frame("BTCUSDT", 2)]
    stamps = [10 * S, 11 * S]
    ring.add(frames, stamps)
    frames.clear()
    stamps.clear()  # as Daemon._flush_pending does after handing a batch over
    got = ring.window(0, 20 * S)
    assert [r.data for r in got.records] == [
        frame("BTCUSDT", 1).decode(),
        frame("BTCUSDT", 2).decode(),
    ]
    assert [r.recv_ns for r in got.records] == [10 * S, 11 * S]
    assert all(
        r.kind is RecordKind.WS and r.url == URL and r.venue == "binance" for r in got.records
    )


def test_bounded_by_age_count_and_bytes_oldest_first() -> None:
    ring = FrameRing("binance", URL, RingLimits(max_age_s=5.0, max_frames=1_000, max_bytes=10**9))
    for t in range(20):
        ring.add([frame("BTCUSDT", t)], [t * S])
    assert ring.oldest_ns == 14 * S and ring.frames == 6 and ring.evicted == 0  # 5 s kept
    by_count = FrameRing("binance", URL, RingLimits(max_age_s=1e6, max_frames=10, max_bytes=10**9))
    for t in range(20):
        by_count.add([frame("BTCUSDT", t), frame("BTCUSDT", t)], [t * S, t * S])
    assert by_count.frames == 10 and by_count.oldest_ns == 15 * S and by_count.evicted == 30
    size = len(frame("BTCUSDT", 10))
    by_bytes = FrameRing(
        "binance", URL, RingLimits(max_age_s=1e6, max_frames=10**6, max_bytes=size * 4)
    )
    for t in range(10, 30):
        by_bytes.add([frame("BTCUSDT", t)], [t * S])
    assert by_bytes.nbytes <= size * 4 and by_bytes.frames == 4 and by_bytes.oldest_ns == 26 * S


def test_the_window_keeps_the_frames_naming_the_symbol_and_its_snapshot() -> None:
    ring = FrameRing("binance", URL)
    for t in range(10):
        ring.add([frame("BTCUSDT", t), frame("ETHUSDT", t), b'{"ping":1}'], [t * S] * 3)
        if t == 3:  # REST snapshots, in arrival order with the frames
            for symbol in ("BTCUSDT", "ETHUSDT"):
                url = f"https://api.example/depth?symbol={symbol}&limit=100"
                ring.add_http(url, '{"lastUpdateId":1}', t * S)
    got = ring.window(2 * S, 6 * S, symbols=["BTCUSDT"])
    assert not got.truncated
    assert [r.recv_ns for r in got.records] == [2 * S, 3 * S, 3 * S, 4 * S, 5 * S, 6 * S]
    http = [r for r in got.records if r.kind is RecordKind.HTTP]
    assert [r.url for r in http] == ["https://api.example/depth?symbol=BTCUSDT&limit=100"]
    assert all("BTCUSDT" in r.data for r in got.records if r.kind is RecordKind.WS)
    # a JSON string equal to the symbol, in any case: not a longer symbol containing it
    okx = FrameRing("okx", URL)
    okx.add(
        [
            b'{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[]}',
            b'{"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"data":[]}',
            b'{"arg":{"channel":"books","instId":"btc-usdt"},"data":[]}',
        ],
        [S, S, S],
    )
    assert [r.data[-31:] for r in okx.window(0, 2 * S, symbols=["BTC-USDT"]).records] == [
        '"instId":"BTC-USDT"},"data":[]}',
        '"instId":"btc-usdt"},"data":[]}',
    ]
    # a protocol whose frames never name the symbol: everything is kept
    assert len(ring.window(2 * S, 6 * S, symbols=["XRPUSDT"]).records) == 5 * 3 + 2


def test_the_window_is_bounded_the_newest_kept() -> None:
    ring = FrameRing("binance", URL)
    for t in range(100):
        ring.add([frame("BTCUSDT", t)], [t * S])
    size = len(frame("BTCUSDT", 50))
    got = ring.window(0, 99 * S, max_bytes=size * 10 + 3)
    assert got.truncated and len(got.records) == 10 and got.nbytes == size * 10
    assert [r.recv_ns for r in got.records] == [t * S for t in range(90, 100)]
