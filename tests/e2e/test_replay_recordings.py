"""Real Binance recordings replayed through the live path, checked against a reference."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import math
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import monitor.replay as replay_module
from feeds.recording import RecordingError, RecordingReader
from feeds.venues import ADAPTERS
from monitor.book.layout import S_LAST_ID
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.metrics.reference import reference_metrics
from monitor.pipeline import BookPipeline
from monitor.replay import replay
from monitor.sample import TickSample, notional_label
from monitor.sinks import CallbackSink, JsonLinesSink
from tests.conftest import OKX_RECORDING, SPOT_RECORDING, USDM_RECORDING
from tests.e2e.reference_replay import RefBook, reference_books

RECORDINGS = [SPOT_RECORDING, USDM_RECORDING]
BANDS = [0.1, 0.5, 1.0, 2.0]
NOTIONALS = [10_000.0, 100_000.0, 1_000_000.0]


def load(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def write(records: list[dict[str, Any]], path: Path) -> Path:
    with gzip.open(path, "wt") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return path


def new_pipeline() -> BookPipeline:
    return BookPipeline(
        InstrumentRegistry(), ADAPTERS, capacity=2048, bands_pct=BANDS, notionals_usd=NOTIONALS
    )


def run(
    paths: list[Path], tick_ms: int = 1000
) -> tuple[BookPipeline, list[tuple[int, list[dict[str, Any]]]]]:
    pipeline = new_pipeline()
    ticks: list[tuple[int, list[dict[str, Any]]]] = []
    replay(
        paths,
        pipeline,
        tick_ms=tick_ms,
        sinks=[CallbackSink(lambda sample: ticks.append((sample.ts_ns, sample.records())))],
    )
    return pipeline, ticks


def depth_limits(
    records: list[dict[str, Any]],
) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    """The last snapshot per book with its requested limit."""
    out = {}
    for rec in records:
        if rec["kind"] == "http" and urlsplit(rec["url"]).path.endswith("/depth"):
            q = parse_qs(urlsplit(rec["url"]).query)
            out[(rec["venue"], q["symbol"][0])] = (int(q["limit"][0]), json.loads(rec["data"]))
    return out


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
class TestRealRecordings:
    def test_every_book_syncs_with_no_gap_and_matches_the_reference_level_for_level(
        self, path: Path
    ) -> None:
        records = load(path)
        pipeline, _ = run([path])
        reference = reference_books(records)
        summaries = pipeline.book_summaries(depth=100_000)
        assert {(s["venue"], s["symbol"]) for s in summaries} == set(reference)
        assert len(summaries) == 4
        for s in summaries:
            ref = reference[(s["venue"], s["symbol"])]
            assert ref.gaps == 0 and ref.live
            assert s["valid"] and s["state"] == "live"
            assert (s["gaps"], s["resyncs"], s["rejected"], s["pending"]) == (0, 0, 0, 0)
            bids, asks = ref.top(100_000)
            # strings exactly as the venue wrote them, every level
            assert s["bids"] == bids
            assert s["asks"] == asks

    def test_final_metrics_equal_the_reference_kernel_on_the_reference_book(
        self, path: Path
    ) -> None:
        records = load(path)
        pipeline, ticks = run([path])
        reference = reference_books(records)
        limits = depth_limits(records)
        rows = pipeline.tick(ticks[-1][0]).records()
        assert rows
        for row in rows:
            key = (row["venue"], row["symbol"])
            ref: RefBook = reference[key]
            bids = [(float(Decimal(p)), float(q)) for p, q in ref.top(100_000)[0]]
            asks = [(float(Decimal(p)), float(q)) for p, q in ref.top(100_000)[1]]
            limit, snap = limits[key]
            complete_bid = (
                float(Decimal(snap["bids"][-1][0])) if len(snap["bids"]) >= limit else -math.inf
            )
            complete_ask = (
                float(Decimal(snap["asks"][-1][0])) if len(snap["asks"]) >= limit else math.inf
            )
            fx = row["fx_usd"] if row["fx_usd"] is not None else math.nan
            expected = reference_metrics(
                bids,
                asks,
                fx=fx,
                bands=[b / 100 for b in BANDS],
                notionals=NOTIONALS,
                complete_bid=complete_bid,
                complete_ask=complete_ask,
            )
            assert expected is not None
            assert (row["bid"], row["ask"], row["mid"]) == (
                expected.bid,
                expected.ask,
                expected.mid,
            )
            assert row["spread_bps"] == expected.spread_bps
            for k, band in enumerate(BANDS):
                label = f"{band:g}"
                assert row["depth_quote"][label] == list(expected.depth_quote[k])
                assert row["depth_covered"][label] == list(expected.covered[k])
                if fx == fx:
                    assert row["depth"][label] == list(expected.depth_usd[k])
            for q, notional in enumerate(NOTIONALS):
                got = row["slippage"][notional_label(notional)]
                sell, sell_ex = expected.sell[q]
                buy, buy_ex = expected.buy[q]
                if fx == fx:
                    assert got["sell_bps"] == pytest.approx(sell, rel=1e-9)
                    assert got["buy_bps"] == pytest.approx(buy, rel=1e-9)
                    assert (got["sell_exhausted"], got["buy_exhausted"]) == (sell_ex, buy_ex)

    def test_replay_is_deterministic(self, path: Path, tmp_path: Path) -> None:
        outputs = []
        for i in range(2):
            out = tmp_path / f"m{i}.jsonl"
            with out.open("wb") as f:
                replay([path], new_pipeline(), tick_ms=250, sinks=[JsonLinesSink(f)])
            outputs.append(out.read_bytes())
        assert outputs[0] == outputs[1]
        assert outputs[0].count(b"\n") > 100

    def test_ticks_follow_recorded_time_not_the_wall_clock(self, path: Path) -> None:
        records = load(path)
        _, ticks = run([path], tick_ms=500)
        first, last = records[0]["ts"], records[-1]["ts"]
        stamps = [ts for ts, _ in ticks]
        assert all(b - a == 500_000_000 for a, b in itertools.pairwise(stamps))
        assert first * 1e9 < stamps[0] <= first * 1e9 + 500_000_000
        assert last * 1e9 < stamps[-1] <= last * 1e9 + 500_000_000


def _forge_gap(
    records: list[dict[str, Any]], venue: str, symbol: str
) -> tuple[list[dict[str, Any]], int, int]:
    """Drop one mid-session delta of ``symbol``, and insert a snapshot built from the true
    book twenty deltas later (as a REST snapshot fetched then would be)."""
    deltas = [
        i
        for i, r in enumerate(records)
        if r["kind"] == "ws" and f'"s":"{symbol}"' in r["data"] and '"depthUpdate"' in r["data"]
    ]
    drop_at = deltas[len(deltas) // 3]
    snap_after = deltas[len(deltas) // 3 + 20]
    truth = reference_books(records[: snap_after + 1])[(venue, symbol)]
    bids, asks = truth.top(100_000)
    snapshot = {
        "ts": records[snap_after]["ts"],
        "venue": venue,
        "kind": "http",
        "url": (
            f"https://api.binance.com/api/v3/depth?symbol={symbol}&limit=5000"
            if venue == "binance"
            else f"https://fapi.binance.com/fapi/v1/depth?symbol={symbol}&limit=1000"
        ),
        "data": json.dumps({"lastUpdateId": truth.last_id, "bids": bids, "asks": asks}),
    }
    forged = (
        records[:drop_at]
        + records[drop_at + 1 : snap_after + 1]
        + [snapshot]
        + records[snap_after + 1 :]
    )
    return forged, drop_at, snap_after


@pytest.mark.parametrize(
    ("path", "venue", "symbol"),
    [(SPOT_RECORDING, "binance", "NKNUSDT"), (USDM_RECORDING, "binance_futures", "SUSHIUSDT")],
)
def test_forged_gap_invalidates_only_that_book_until_a_snapshot_restores_it(
    path: Path, venue: str, symbol: str, tmp_path: Path
) -> None:
    records = load(path)
    forged, drop_at, snap_after = _forge_gap(records, venue, symbol)
    forged_path = write(forged, tmp_path / "forged.jsonl.gz")
    pipeline, ticks = run([forged_path], tick_ms=100)

    summaries = {(s["venue"], s["symbol"]): s for s in pipeline.book_summaries(depth=100_000)}
    hit = summaries[(venue, symbol)]
    assert hit["gaps"] == 1 and hit["resyncs"] == 1
    assert hit["valid"]  # recovered after the snapshot
    # recovered to exactly the true book of the unforged recording
    truth = reference_books(records)[(venue, symbol)]
    assert [hit["bids"], hit["asks"]] == list(truth.top(100_000))
    for key, other in summaries.items():
        if key != (venue, symbol):
            assert other["gaps"] == 0 and other["resyncs"] == 0 and other["valid"]

    # invalid from the tick after the gap to the tick after the snapshot, valid otherwise
    gap_ts = forged[drop_at]["ts"] * 1e9  # the delta after the dropped one
    snap_ts = forged[snap_after]["ts"] * 1e9
    states = [(ts, row["valid"]) for ts, rows in ticks for row in rows if row["symbol"] == symbol]
    invalid = [ts for ts, valid in states if not valid and ts > gap_ts]
    assert invalid, "the book was never reported invalid after the gap"
    assert all(gap_ts < ts <= snap_ts + 100_000_000 for ts in invalid)
    assert any(valid for ts, valid in states if ts > snap_ts + 100_000_000)


def test_cli_replay_writes_metrics_and_books_files(tmp_path: Path) -> None:
    metrics, books = tmp_path / "m.jsonl", tmp_path / "b.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "replay",
            str(SPOT_RECORDING),
            str(USDM_RECORDING),
            "--tick-ms",
            "1000",
            "--metrics-out",
            str(metrics),
            "--books-out",
            str(books),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert {r["kind"] for r in lines} == {"book", "asset", "fx"}
    rows = [r for r in lines if r["kind"] == "book"]
    assert {r["venue"] for r in rows} == {"binance", "binance_futures"}
    valid = [r for r in rows if r["valid"]]
    assert valid
    for r in valid:
        assert {
            "ts",
            "venue",
            "symbol",
            "instrument",
            "valid",
            "bid",
            "ask",
            "mid",
            "spread_bps",
            "depth",
        } <= r.keys()
        assert set(r["depth"]) == {"0.1", "0.5", "1", "2"}
        assert all(len(v) == 2 for v in r["depth"].values())
        assert r["bid"] < r["ask"]
    assert {r["instrument"] for r in rows} >= {"NKN-USDT-SPOT", "SUSHI-USDT-PERP"}
    out = [json.loads(line) for line in books.read_text().splitlines()]
    assert len(out) == 8
    for b in out:
        assert {
            "venue",
            "symbol",
            "bids",
            "asks",
            "valid",
            "gaps",
            "resyncs",
            "checksum_ok",
            "checksum_failed",
            "messages",
        } <= b.keys()
        assert len(b["bids"]) <= 50 and len(b["asks"]) <= 50
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in b["bids"] + b["asks"])
    truth = reference_books(load(USDM_RECORDING))[("binance_futures", "SUSHIUSDT")]
    sushi = next(b for b in out if b["symbol"] == "SUSHIUSDT")
    assert [sushi["bids"], sushi["asks"]] == list(truth.top(50))


def test_cli_replay_of_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "replay", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "nope.jsonl" in proc.stderr


# --- OKX (2022 era: CRC32 checksums on every books frame, no seqId) ---------------------------


def okx_reference_books() -> tuple[dict[str, tuple[dict[Decimal, str], dict[Decimal, str]]], int]:
    """The recording's books rebuilt from the frames with Decimal keys and the venue's own
    strings (independent of liqmon's parser and kernel), and the number of book frames."""
    books: dict[str, tuple[dict[Decimal, str], dict[Decimal, str]]] = {}
    frames = 0
    for record in load(OKX_RECORDING):
        if record["kind"] != "ws":
            continue
        message = json.loads(record["data"])
        if message.get("arg", {}).get("channel") != "books" or "action" not in message:
            continue
        inst = message["arg"]["instId"]
        for data in message["data"]:
            frames += 1
            if message["action"] == "snapshot":
                books[inst] = ({}, {})
            bids, asks = books[inst]
            for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
                for px, qty, *_ in levels:
                    if Decimal(qty) == 0:
                        side.pop(Decimal(px), None)
                    else:
                        side[Decimal(px)] = qty
    return books, frames


def test_okx_recording_replays_with_every_checksum_verified_and_exact_books() -> None:
    pipeline, ticks = run([OKX_RECORDING])
    reference, frames = okx_reference_books()
    summaries = {b["symbol"]: b for b in pipeline.book_summaries(depth=25)}
    assert set(summaries) == set(reference) == {"BTC-USDT", "BTC-USD-220527", "UNI-USD-SWAP"}
    assert sum(b["checksum_ok"] for b in summaries.values()) == frames  # every frame checked
    for symbol, book in summaries.items():
        assert book["valid"], symbol
        assert book["checksum_failed"] == 0 and book["gaps"] == 0 and book["resyncs"] == 0
        ref_bids, ref_asks = reference[symbol]
        inst = pipeline.registry.get(Venue.OKX, symbol)
        assert inst is not None
        levels = pipeline.store.levels(pipeline.books[(Venue.OKX, symbol)].book, 25)
        want_bids = sorted(ref_bids.items(), reverse=True)[:25]
        want_asks = sorted(ref_asks.items())[:25]
        for got_px, got_qty, (px, qty) in (
            *zip(levels.bid_px, levels.bid_qty, want_bids, strict=True),
            *zip(levels.ask_px, levels.ask_qty, want_asks, strict=True),
        ):
            assert Decimal(int(got_px)) / 10**inst.price_decimals == px
            # sizes in base units: contracts x contract size, / price for inverse contracts
            base = Decimal(qty) * Decimal(str(inst.contract_size))
            if inst.inverse:
                base /= px
            assert math.isclose(float(got_qty), float(base), rel_tol=1e-12)
    last = {row["symbol"]: row for row in ticks[-1][1]}
    assert all(last[s]["valid"] and last[s]["depth"] is not None for s in reference)


def test_okx_recording_with_one_corrupted_checksum_resyncs_that_book_only(tmp_path: Path) -> None:
    records = load(OKX_RECORDING)
    target = None
    for record in records:
        if (
            record["kind"] == "ws"
            and '"action":"update"' in record["data"]
            and "BTC-USDT" in record["data"]
            and '"instId":"BTC-USDT"' in record["data"]
        ):
            message = json.loads(record["data"])
            message["data"][0]["checksum"] ^= 1
            record["data"] = json.dumps(message, separators=(",", ":"))
            target = record
            break
    assert target is not None
    pipeline, _ = run([write(records, tmp_path / "okx.jsonl")])
    summaries = {b["symbol"]: b for b in pipeline.book_summaries(depth=0)}
    assert summaries["BTC-USDT"]["checksum_failed"] == 1
    # OKX books come in-band: the broken book waits for a resubscribe (none in a recording)
    assert not summaries["BTC-USDT"]["valid"]
    assert pipeline.take_snapshot_requests() == [(Venue.OKX, "BTC-USDT")]
    for other in ("BTC-USD-220527", "UNI-USD-SWAP"):
        assert summaries[other]["valid"] and summaries[other]["checksum_failed"] == 0


@pytest.mark.parametrize("path", [*RECORDINGS, OKX_RECORDING], ids=lambda p: p.name)
def test_replay_reads_ahead_in_blocks_of_any_size_with_the_same_output(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replay scans each venue's frames a block of records ahead: the block size (which
    cuts runs anywhere, between ticks, inside a tick, next to REST answers) and the paced
    path (no read-ahead) change nothing in the metrics or the books."""
    outputs = []
    # one file as fast as possible: blocks of so many bytes of text (read by a thread);
    # several files, or paced: blocks of so many records, merged one by one
    for block_bytes, block, speed in (
        (1 << 23, 16_384, None),
        (700, 16_384, None),
        (64, 16_384, None),
        (1 << 23, 16_384, 1e9),
        (1 << 23, 7, 1e9),
    ):
        monkeypatch.setattr(replay_module, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(replay_module, "BLOCK", block)
        out = tmp_path / f"m{block_bytes}-{block}-{speed}.jsonl"
        pipeline = new_pipeline()
        with out.open("wb") as f:
            replay([path], pipeline, tick_ms=250, sinks=[JsonLinesSink(f)], speed=speed)
        books = json.dumps(pipeline.book_summaries(depth=1000), sort_keys=True)
        outputs.append((out.read_bytes(), books))
    assert outputs[0][0].count(b"\n") > 100
    assert all(o == outputs[0] for o in outputs[1:])


def test_a_frame_the_scanner_hands_over_is_fed_in_its_place() -> None:
    """A delta the batch scanner does not vouch for (an escaped symbol) goes through the
    adapter's decode between its neighbours, not after them: no gap."""
    pipeline = new_pipeline()
    venue = Venue.BINANCE
    snapshot = '{"lastUpdateId":100,"bids":[["1.00","5"]],"asks":[["1.10","5"]]}'
    url = "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=5000"

    def delta(first: int, last: int, symbol: str = "NKNUSDT") -> str:
        return (
            f'{{"e":"depthUpdate","E":{last},"s":"{symbol}","U":{first},"u":{last},'
            f'"b":[["1.0{last % 10}","{last}"]],"a":[]}}'
        )

    for rec in load(SPOT_RECORDING):  # the instruments, from the recorded exchangeInfo
        if rec["kind"] == "http" and "exchangeInfo" in rec["url"]:
            pipeline.feed(venue, "http", rec["url"], rec["data"], 0)
    pipeline.feed_frames(venue, [delta(99, 101)], [1])  # creates the book, asks a snapshot
    pipeline.feed(venue, "http", url, snapshot, 2)
    frames = [delta(102 + k, 102 + k) for k in range(40)]
    frames[20] = delta(122, 122, symbol="NKN\\u0055SDT")  # decode reads NKNUSDT
    pre = pipeline.prescan(venue, frames, list(range(3, 43)))
    assert pre is not None and pre.others == [20]
    pipeline.feed_prescanned(pre, 40)
    info = pipeline._venue_books[venue]["NKNUSDT"]
    assert pipeline.is_valid(info)
    assert pipeline.counters.messages["binance.gap"] == 0
    assert int(pipeline.store.istate[info.book, S_LAST_ID]) == 141


def test_read_ahead_ticks_like_the_paced_path_through_disorder_and_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records out of time order (a late record does not close a tick) and a hole longer
    than the idle limit (skipped) tick alike with read-ahead blocks and record by record."""
    records = load(SPOT_RECORDING)
    shifted = []
    for k, original in enumerate(records):
        rec = dict(original)
        if rec["kind"] == "ws" and k % 7 == 3:
            rec["ts"] -= 1.7  # arrives late: earlier than the records before it
        if k > len(records) // 2:
            rec["ts"] += 600.0  # a 10-minute hole
        shifted.append(rec)
    path = write(shifted, tmp_path / "disorder.jsonl.gz")
    outputs = []
    for block_bytes, speed in ((1 << 23, None), (500, None), (1 << 23, 1e12)):
        monkeypatch.setattr(replay_module, "BLOCK_BYTES", block_bytes)
        ticks: list[tuple[int, list[dict[str, Any]]]] = []

        def keep(sample: TickSample, ticks: list[Any] = ticks) -> None:
            ticks.append((sample.ts_ns, sample.records()))

        result = replay(
            [path], new_pipeline(), tick_ms=250, speed=speed, sinks=[CallbackSink(keep)]
        )
        outputs.append((result.ticks, result.records, ticks))
    assert outputs[0][0] > 100
    assert all(o == outputs[0] for o in outputs[1:])
    stamps = [ts for ts, _ in outputs[0][2]]
    assert max(b - a for a, b in itertools.pairwise(stamps)) > 500e9  # the hole was skipped


def test_a_paced_replay_does_not_wait_through_a_skipped_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files of different days replayed at a pace: the hole between them is skipped in the
    ticks and in the waiting too (it was waited out at the pace: ten days at 1000x are
    14 minutes of nothing)."""
    records = load(SPOT_RECORDING)
    half = len(records) // 2
    hole_s = 10 * 86_400.0
    shifted = [
        {**rec, "ts": rec["ts"] + hole_s} if k > half else rec for k, rec in enumerate(records)
    ]
    path = write(shifted, tmp_path / "two-days.jsonl.gz")
    span_s = records[-1]["ts"] - records[0]["ts"]  # the recording without the hole
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> Any:
        if delay > 0:
            asked.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    speed = 1000.0
    ticks: list[int] = []
    result = replay(
        [path], new_pipeline(), tick_ms=250, speed=speed,
        sinks=[CallbackSink(lambda sample: ticks.append(sample.ts_ns))],
    )  # fmt: skip
    assert result.records == len(records)
    assert max(b - a for a, b in itertools.pairwise(ticks)) > hole_s * 1e9 / 2  # skipped
    # the wait is the recording's own time (and the idle ticks into the hole, up to
    # max_idle_s = 60 s), at the pace
    assert asked and max(asked) <= (span_s + 60.0 + 1.0) / speed


@pytest.mark.parametrize("error", [RuntimeError("sink down"), KeyboardInterrupt()])
def test_a_replay_stopped_early_ends_its_reader_thread(error: BaseException) -> None:
    """One file is read by a thread a few blocks ahead: when the replay stops early (a
    sink raises, or Ctrl-C arrives in the replay's thread), the error comes out of replay()
    and the reader thread is gone."""
    calls = []

    def fail(sample: TickSample) -> None:
        calls.append(sample.ts_ns)
        if len(calls) == 3:
            raise error

    with pytest.raises(type(error)):
        replay([USDM_RECORDING], new_pipeline(), tick_ms=50, sinks=[CallbackSink(fail)])
    assert len(calls) == 3
    assert not [t for t in threading.enumerate() if t.name == "replay-reader"]


def test_a_strict_replay_feeds_the_records_before_a_bad_line_then_raises_its_error(
    tmp_path: Path,
) -> None:
    records = load(SPOT_RECORDING)
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in records]
    lines.insert(200, '{"ts": 1, "venue": "binance"}')
    path.write_text("\n".join(lines) + "\n")
    pipeline = new_pipeline()
    with pytest.raises(RecordingError) as error:
        replay([path], pipeline, reader=RecordingReader(strict=True))
    assert error.value.line == 201
    fed = sum(v for k, v in pipeline.counters.messages.items() if k.startswith("binance."))
    assert fed > 0
    assert not [t for t in threading.enumerate() if t.name == "replay-reader"]
