"""The scenario generator: deterministic, in each venue's real protocol (the unmodified
adapters keep valid books and detect the injected gaps), labels that match the books."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feeds.sim.scenario import spec
from feeds.sim.scenario.core import Scenario
from feeds.sim.scenario.writer import write_scenario
from feeds.venues import ADAPTERS
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import replay
from monitor.sample import TickSample
from monitor.sinks import CallbackSink

SMALL = ("BTC", "ALT1")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replay(path: Path) -> tuple[BookPipeline, list[dict[str, Any]]]:
    """Replay a recording; per tick: time, and per book valid / stale / 1 % depth / mid."""
    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    ticks: list[dict[str, Any]] = []

    def seen(sample: TickSample) -> None:
        band = list(sample.bands_pct).index(1.0)
        ticks.append(
            {
                "ts": sample.ts_ns,
                "books": [f"{b.venue}:{b.symbol}" for b in sample.books],
                "valid": sample.valid.copy(),
                "stale": sample.stale.copy(),
                "depth": np.nansum(sample.depth_usd[:, band, :], axis=1),
                "mid": sample.mid.copy(),
            }
        )

    replay([path], pipeline, tick_ms=1000, sinks=[CallbackSink(seen)])
    return pipeline, ticks


@pytest.fixture(scope="module")
def collapse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """T0 - 5 min .. T0 + 100 min on BTC and ALT1 (every venue), with every feed fault."""
    out = tmp_path_factory.mktemp("collapse")
    books = spec.books_for(SMALL, pegged=False)
    write_scenario(out, Scenario("collapse", 3, hours=1.75, books=books))
    return out


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    books = spec.books_for(SMALL)
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        result = write_scenario(tmp_path / name, Scenario("collapse", seed, hours=0.2, books=books))
        runs.append((_digest(result.recording), _digest(result.labels)))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_calm_day_books_stay_valid_in_every_protocol(tmp_path: Path) -> None:
    """A calm stretch without outage: every book of the four venues is valid at every tick
    after the first seconds, with no gap and no resync."""
    sc = Scenario("calm", 2, hours=0.25, day=2, books=spec.books_for(SMALL))
    sc.paths.events = [e for e in sc.paths.events if e["kind"] != "outage"]
    result = write_scenario(tmp_path, sc)
    pipeline, ticks = _replay(result.recording)
    venues = {b.venue.value for b in sc.books}
    assert venues == {"binance", "binance_futures", "coinbase", "okx"}
    assert len(ticks[-1]["books"]) == len(sc.books)
    for tick in ticks[5:]:
        assert tick["valid"].all(), tick["books"]
        assert not tick["stale"].any()
    summaries = pipeline.book_summaries(depth=1)
    assert all(s["gaps"] == 0 and s["resyncs"] == 0 for s in summaries), summaries


def test_injected_gaps_are_detected_and_books_recover(collapse: Path) -> None:
    pipeline, ticks = _replay(collapse / "scenario.jsonl.gz")
    labels = json.loads((collapse / "labels.json").read_text())
    summaries = {f"{s['venue']}:{s['symbol']}": s for s in pipeline.book_summaries(depth=1)}
    dropped = next(w for w in labels["faults"] if w["kind"] == "latency")["dropped_diffs"]
    assert dropped > 0
    v1 = [k for k in summaries if k.startswith("binance:")]
    # V1: dropped diffs and the freeze are sequence gaps, each resynced from a REST snapshot
    assert all(summaries[k]["gaps"] >= 2 for k in v1), {k: summaries[k]["gaps"] for k in v1}
    assert all(summaries[k]["resyncs"] == summaries[k]["gaps"] for k in v1)
    # every other venue: no gap (V4's disconnect comes back with fresh snapshots)
    others = [k for k in summaries if not k.startswith("binance:")]
    assert all(summaries[k]["gaps"] == 0 for k in others)
    assert all(s["valid"] for s in summaries.values())
    # V4 went stale while disconnected, and V1 while frozen (after the 30 s stale limit)
    books = ticks[-1]["books"]
    for kind, prefix in (("disconnect", "okx:"), ("frozen", "binance:")):
        window = next(w for w in labels["faults"] if w["kind"] == kind)
        during = [t for t in ticks if window["start_ns"] + 35e9 < t["ts"] < window["end_ns"]]
        rows = [i for i, b in enumerate(books) if b.startswith(prefix)]
        assert during and all(t["stale"][rows].all() or not t["valid"][rows].any() for t in during)
        after = [t for t in ticks if t["ts"] > window["end_ns"] + 10e9]
        assert after and after[-1]["valid"][rows].all()


def test_labels_match_the_books(collapse: Path) -> None:
    """The labels' trough and vacuum are in the books the monitor rebuilt: ALT1's 1 % depth on
    V1 at the trough is under 5 % of calm, and the trough prints the wick targets."""
    _, ticks = _replay(collapse / "scenario.jsonl.gz")
    labels = json.loads((collapse / "labels.json").read_text())
    books = ticks[-1]["books"]
    by_key = {f"{b['venue']}:{b['symbol']}": b for b in labels["books"]}
    alt = by_key["binance:ALT1USDT"]
    row = books.index("binance:ALT1USDT")
    t = np.array([x["ts"] for x in ticks])
    depth = np.array([x["depth"][row] if len(x["depth"]) > row else np.nan for x in ticks])
    calm = np.nanmedian(depth[(t > t[0] + 60e9) & (t < spec.T0_NS)])
    near = np.abs(t - alt["trough_ns"]) <= 5e9
    assert np.nanmin(depth[near]) < 0.05 * calm
    assert alt["depth_at_trough_ratio"] < 0.05
    assert alt["trough_price"] == pytest.approx(0.20, rel=0.03)  # V1 wick: -80 %
    assert by_key["binance_futures:ALT1USDT"]["trough_price"] == pytest.approx(0.40, rel=0.03)
    # the monitor's lowest mid around the labelled trough is the labelled price (a tick
    # may find the book resyncing: the V1 feed faults run through the cascade)
    mid = np.array([x["mid"][row] if len(x["mid"]) > row else np.nan for x in ticks])
    around = np.abs(t - alt["trough_ns"]) <= 30e9
    assert np.isfinite(mid[around]).sum() >= 10
    assert np.nanmin(mid[around]) == pytest.approx(alt["trough_price"], rel=0.05)
    # vacuum before the crash, crash onset before the trough, recovery after it
    assert alt["t_v_ns"] < alt["t0_ns"] < alt["trough_ns"] < alt["depth_recovered_90_ns"]
    phases = {p["name"]: p for p in labels["phases"]}
    assert phases["cascade"]["start_ns"] <= alt["trough_ns"] <= phases["cascade"]["end_ns"]


def test_liqmon_scenario_writes_recording_labels_and_config(tmp_path: Path) -> None:
    from monitor.cli import main  # noqa: PLC0415

    out = tmp_path / "calm"
    assert main(["scenario", "--out", str(out), "--kind", "calm", "--hours", "0.05"]) == 0
    labels = json.loads((out / "labels.json").read_text())
    assert labels["kind"] == "calm" and len(labels["books"]) == 25
    assert "[venues.coinbase]" in (out / "liqmon.toml").read_text()
    _, ticks = _replay(out / "scenario.jsonl.gz")
    assert ticks[-1]["valid"].all()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["scenario", "--out", str(blocker), "--hours", "0.05"]) == 2
