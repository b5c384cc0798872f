"""The tick sample and its sinks: explicit validity and staleness, changed rows, bounded queues."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import io
import json
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.fx import ParFx
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.sample import STATE_STALE, TickSample, notional_label
from monitor.sinks import CallbackSink, JsonLinesSink, SinkQueue, drive
from monitor.status import StatusSink
from tests.conftest import SPOT_RECORDING


def records() -> list[dict[str, Any]]:
    with gzip.open(SPOT_RECORDING, "rt") as f:
        return [json.loads(line) for line in f]


def synced_pipeline(stale_after_s: float = 30.0) -> tuple[BookPipeline, int]:
    """A pipeline fed the whole spot recording; returns it and the last receive time."""
    pipeline = BookPipeline(
        InstrumentRegistry(), ADAPTERS, stale_after_s={Venue.BINANCE: stale_after_s}
    )
    last = 0
    for rec in records():
        last = int(rec["ts"] * 1e9)
        pipeline.on_message(Venue(rec["venue"]), rec["kind"], rec["url"], rec["data"], last)
    return pipeline, last


def metrics_out_line(sample: TickSample, row: int) -> bytes:
    """Row ``row`` of the sample as ``--metrics-out`` writes it."""
    out = io.BytesIO()
    asyncio.run(JsonLinesSink(out, changed_only=False).write(sample))
    return out.getvalue().splitlines()[row]


def row_of(sample: TickSample, symbol: str) -> int:
    return next(i for i, b in enumerate(sample.books) if b.symbol == symbol)


class TestTickSample:
    def test_every_book_is_a_row_with_its_identity_and_valid_rows_carry_metrics(self) -> None:
        pipeline, last = synced_pipeline()
        sample = pipeline.tick(last)
        assert len(sample) == 4
        assert {b.symbol for b in sample.books} == {"NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"}
        i = row_of(sample, "NKNUSDT")
        ident = sample.books[i]
        assert (ident.venue, ident.instrument, ident.base, ident.quote, ident.kind) == (
            "binance",
            "NKN-USDT-SPOT",
            "NKN",
            "USDT",
            "spot",
        )
        assert sample.valid[i] and not sample.stale[i]
        assert sample.bid[i] < sample.mid[i] < sample.ask[i]
        one = sample.band_index(1.0)
        assert sample.depth_usd[i, one, 0] > 0 and sample.depth_usd[i, one, 1] > 0
        assert sample.depth_usd.shape == (4, len(sample.bands_pct), 2)
        assert sample.slippage_bps.shape == (4, len(sample.notionals_usd), 2)
        # the record and the columns say the same thing
        rec = sample.book_record(i)
        assert rec["kind"] == "book" and rec["stale"] is False and rec["book_state"] == "live"
        assert rec["state"] == "normal"  # the score state (a fresh book: no stress yet)
        assert rec["depth"]["1"] == [sample.depth_usd[i, one, 0], sample.depth_usd[i, one, 1]]

    def test_the_record_writes_each_figure_of_the_columns_nan_as_none(self) -> None:
        """The record's depth pairs, coverage and imbalance, value by value from the
        columns, in a row with a NaN depth and a band with no depth on either side (an
        imbalance of None) beside rows without."""
        pipeline, last = synced_pipeline()
        sample = pipeline.tick(last)
        i = row_of(sample, "NKNUSDT")
        sample.depth_usd[i, 0, 1] = np.nan
        sample.depth_quote[i, 0, :] = 0.0
        sample.depth_quote[i, 1, 0] = np.nan
        labels = [f"{b:g}" for b in sample.bands_pct]

        def none(x: float) -> float | None:
            return None if x != x else float(x)

        for row in range(len(sample)):
            rec = sample.records()[row]
            if not sample.valid[row]:
                assert rec["depth"] is None and rec["imbalance"] is None
                continue
            for k, label in enumerate(labels):
                usd, quote = sample.depth_usd[row, k], sample.depth_quote[row, k]
                assert rec["depth"][label] == [none(usd[0]), none(usd[1])]
                assert rec["depth_quote"][label] == [none(quote[0]), none(quote[1])]
                assert rec["depth_covered"][label] == sample.depth_covered[row, k].tolist()
                total = float(quote[0]) + float(quote[1])
                want = (float(quote[0]) - float(quote[1])) / total if total > 0 else None
                assert rec["imbalance"][label] == want
        rec = sample.book_record(i)
        assert rec["depth"][labels[0]][1] is None and rec["imbalance"][labels[0]] is None
        assert rec["imbalance"][labels[1]] is None
        assert json.loads(metrics_out_line(sample, i)) == rec

    def test_the_extended_sample_is_the_sample_with_only_the_analytics_fields_replaced(
        self,
    ) -> None:
        pipeline, last = synced_pipeline()
        sample = pipeline.tick(last)
        changed = ~sample.changed
        analytics, assets, fx = sample.analytics, sample.assets, sample.fx
        assert analytics is not None and assets is not None and fx is not None
        fast = sample.extended(
            changed=changed, analytics=analytics, assets=assets, fx=fx, events=()
        )
        slow = dataclasses.replace(
            sample, changed=changed, analytics=analytics, assets=assets, fx=fx, events=()
        )
        for f in dataclasses.fields(TickSample):
            assert getattr(fast, f.name) is getattr(slow, f.name), f.name

    def test_complete_sets_the_analytics_fields_of_the_sample_itself_and_nothing_else(
        self,
    ) -> None:
        pipeline, last = synced_pipeline()
        sample = pipeline.tick(last)
        before = {f.name: getattr(sample, f.name) for f in dataclasses.fields(TickSample)}
        analytics, assets, fx = sample.analytics, sample.assets, sample.fx
        assert analytics is not None and assets is not None and fx is not None
        changed = ~sample.changed
        done = sample.complete(
            changed=changed, analytics=analytics, assets=assets, fx=fx, events=()
        )
        new = {"changed": changed, "analytics": analytics, "assets": assets, "fx": fx}
        new["events"] = ()
        assert done is sample
        for name, value in before.items():
            assert getattr(done, name) is new.get(name, value), name

    def test_slippage_keys_are_integer_notionals(self) -> None:
        pipeline, last = synced_pipeline()
        rec = pipeline.tick(last).records()[0]
        assert set(rec["slippage"]) == {"10000", "100000", "1000000"}
        assert notional_label(1e6) == "1000000" and notional_label(2500.5) == "2500.5"

    def test_a_silent_book_goes_stale_and_is_never_valid(
        self,
    ) -> None:
        pipeline, last = synced_pipeline(stale_after_s=20.0)
        first = pipeline.tick(last)
        i = row_of(first, "NKNUSDT")
        assert first.valid[i]
        with capture_logs() as logs:
            later = pipeline.tick(last + 60 * 10**9)
        assert later.stale.all() and not later.valid.any()
        assert (later.book_state == STATE_STALE).all()
        assert later.changed.all()  # going stale is a change worth writing
        assert np.isnan(later.mid).all() and np.isnan(later.depth_usd).all()
        rec = later.book_record(i)
        assert rec["valid"] is False and rec["stale"] is True and rec["book_state"] == "stale"
        assert rec["state"] == "data" and rec["lvs"] is None
        assert rec["mid"] is None and rec["depth"] is None
        assert sum(e["event"] == "book.stale" for e in logs) == 4
        assert pipeline.counters.messages["binance.stale"] == 4
        # still stale on the next tick: not a change, not logged again
        with capture_logs() as logs:
            again = pipeline.tick(last + 61 * 10**9)
        assert not again.changed.any() and again.stale.all()
        assert not any(e["event"] == "book.stale" for e in logs)

    def test_only_changed_books_are_marked_changed(self) -> None:
        pipeline, last = synced_pipeline()
        pipeline.tick(last)
        quiet = pipeline.tick(last + 10**9)
        assert not quiet.changed.any()
        assert quiet.valid.all()  # unchanged books keep their figures
        assert np.isfinite(quiet.mid).all()

    def test_the_sample_owns_its_arrays(self) -> None:
        pipeline, last = synced_pipeline()
        sample = pipeline.tick(last)
        mids = sample.mid.copy()
        pipeline.tick(last + 3600 * 10**9)  # everything goes stale in the pipeline
        assert np.array_equal(sample.mid, mids, equal_nan=True)
        assert sample.valid.all()

    def test_fx_comes_from_the_fx_source(self) -> None:
        class Doubling(ParFx):
            def rates(self, currencies, mids):  # type: ignore[no-untyped-def]
                usd, assumed = super().rates(currencies, mids)
                return usd * 2, assumed

        pipeline, last = synced_pipeline()
        plain = pipeline.tick(last)
        pipeline.fx = Doubling(pipeline.usd_stables)
        doubled = pipeline.tick(last)  # rates moved: the USD figures are recomputed
        i = row_of(plain, "NKNUSDT")
        assert doubled.fx_usd[i] == 2 * plain.fx_usd[i]
        assert doubled.depth_usd[i, 2, 0] == pytest.approx(2 * plain.depth_usd[i, 2, 0])
        assert doubled.fx_assumed[i]  # USDT at par is an assumption


class TestSinks:
    async def test_json_lines_sink_writes_only_changed_rows(self) -> None:
        pipeline, last = synced_pipeline()
        out = io.BytesIO()
        sink = JsonLinesSink(out)
        await drive([sink], pipeline.tick(last))
        await drive([sink], pipeline.tick(last + 10**9))  # nothing changed
        await sink.close()
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        kinds = [r["kind"] for r in rows]
        # the first tick: 4 books, their 4 assets, the 4 quote currencies; then nothing
        assert kinds.count("book") == 4 and kinds.count("asset") == 4 and kinds.count("fx") == 4
        assert sink.rows == len(rows) == 12
        assert {r["currency"] for r in rows if r["kind"] == "fx"} == {"USDT", "ETH", "BTC", "EUR"}

    async def test_a_slow_sink_never_blocks_the_tick_and_its_overflow_is_counted(self) -> None:
        pipeline, last = synced_pipeline()
        release = asyncio.Event()
        seen: list[int] = []

        class Slow:
            name = "slow"

            async def write(self, sample: TickSample) -> None:
                await release.wait()
                seen.append(sample.ts_ns)

            async def close(self) -> None:
                return None

        queue = SinkQueue(Slow(), maxsize=4)
        queue.start()
        for k in range(20):  # the tick keeps going while the sink is stuck
            queue.put(pipeline.tick(last + k * 10**9))
        await asyncio.sleep(0)
        assert queue.depth <= 4
        assert queue.overflow >= 15
        release.set()
        await queue.stop()
        # the newest samples were kept, in order
        assert seen == sorted(seen) and seen[-1] == last + 19 * 10**9
        assert queue.written == len(seen) and queue.overflow + len(seen) == 20

    async def test_a_failing_sink_is_counted_and_keeps_receiving(self) -> None:
        pipeline, last = synced_pipeline()
        calls: list[int] = []

        def boom(sample: TickSample) -> None:
            calls.append(sample.ts_ns)
            if len(calls) == 1:
                raise RuntimeError("disk full")

        queue = SinkQueue(CallbackSink(boom))
        queue.start()
        queue.put(pipeline.tick(last))
        queue.put(pipeline.tick(last + 10**9))
        await queue.stop()
        assert queue.failures == 1 and len(calls) == 2


class TestStatus:
    def test_status_names_venues_counts_and_the_thinnest_books(self) -> None:
        pipeline, last = synced_pipeline()
        status = StatusSink()
        status.observe(pipeline.tick(last))
        health = {
            "binance": {"books": 4, "gaps": 0, "resyncs": 1, "connects": 2, "open_connections": 1}
        }
        text = status.render(health, now_ns=last)
        lines = text.splitlines()
        assert "4 books: 4 live, 0 stale, 0 not synced" in lines[0]
        venue_line = next(line for line in lines if line.startswith("binance"))
        assert venue_line.split()[1:6] == ["4/4", "0.0", "0", "1", "1"]
        assert "thinnest" in text and "100% of recent" in text
        stale = pipeline.tick(last + 3600 * 10**9)
        status.observe(stale)
        assert "0 live, 4 stale" in status.render(health, now_ns=last + 3600 * 10**9)
