"""``liqmon replay`` of an 8-hour multi-venue recording: records per second of CPU, with
every 1 s tick, the analytics and the score, and where the CPU goes.

The recording is ``liqmon scenario --kind calm --hours 8`` (seed 1: 25 books on Binance
spot, Binance USD-M, OKX and Coinbase in their own protocols, ~862k records), generated
once into ``--cache`` and reused. The replay is the one ``liqmon replay`` runs:
``BookPipeline.from_settings`` with the scenario's config, ``monitor.replay.replay`` at
the configured 1 s tick, no sinks (``--metrics-out`` and ``--alerts-out`` add their own
JSON encoding and rules; see the README).

The passes, in this process:

1. reading only, CPU (``time.process_time``): the recording record by record
   (``RecordingReader.read``) and in blocks (``read_blocks``, what the replay reads);
2. the replay as ``liqmon replay`` runs it: wall time (the headline: records per second
   of the clock), with the CPU of the replay's thread and of the process (a second thread
   inflates and scans the recording a few blocks ahead, beside the replay);
3. the peer, in the same run: the same replay in one thread (``READ_AHEAD = 0``), CPU;
4. the one-thread replay again with each phase's entry point wrapped in a CPU timer: the
   breakdown (feeding frames through the venue adapters, applying them to the books, the
   tick's metrics and columns, the analytics and score; the rest is reading and the
   replay loop). The timers add a little; the phases are shown as shares of this pass.

The replay's pass fails if a numba kernel gained a signature during it (compiled, or
loaded from the cache, inside the replay: ``warm_up`` missed it, and the wall time would
include seconds of compiling).

Wall time is a measure only on a quiet machine: run it alone (the CPU figures hold on a
shared one).

With ``--metrics-out`` a fourth pass writes the metrics-out rows (``JsonLinesSink``) to
/dev/null, as ``liqmon replay --metrics-out /dev/null`` does.

Run alone: ``.venv/bin/python bench/bench_replay.py [--hours 8] [--cache DIR] [--metrics-out]
[--json PATH]``.
Not part of ``run.py`` (it needs a minute and ~170 MB of disk for the recording).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from numba.core.dispatcher import Dispatcher

import monitor.replay as replay_module
from feeds.recording import RecordingReader
from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import ReplayResult, replay
from monitor.settings import Settings, load_settings
from monitor.sinks import JsonLinesSink
from monitor.warmup import warm_up

TARGET_RECORDS_PER_S = 100_000
VENUES = tuple(v.value for v in Venue)


def recording(cache: Path, hours: float) -> tuple[Path, Path]:
    """The cached scenario recording and its config (generated on the first run)."""
    rec, config = cache / "scenario.jsonl.gz", cache / "liqmon.toml"
    if not (rec.exists() and config.exists()):
        print(f"generating the {hours:g} h calm scenario into {cache} (once) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "monitor", "scenario", "--kind", "calm", "--hours", str(hours),
             "--out", str(cache), "--log-format", "json"],
            check=True, cwd=_common.ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return rec, config


def signatures() -> dict[str, int]:
    """Compiled signatures of every numba kernel loaded so far, by name."""
    found: dict[str, int] = {}
    for module in list(sys.modules.values()):
        for value in list(vars(module).values()) if module is not None else ():
            if isinstance(value, Dispatcher):
                name = f"{value.py_func.__module__}.{value.py_func.__qualname__}"
                found[name] = len(value.signatures)
    return found


def new_pipeline(settings: Settings) -> BookPipeline:
    registry = InstrumentRegistry.load_cached(settings.venues.keys())
    return BookPipeline.from_settings(registry, ADAPTERS, settings)


def instrumented(settings: Settings, rec: Path) -> tuple[dict[str, float], float, ReplayResult]:
    """The replay with its phases timed (CPU seconds per phase, total CPU, result)."""
    pipeline = new_pipeline(settings)
    raw = dict.fromkeys(("feed", "tick", "analytics", "apply_in_feed", "apply_in_tick"), 0.0)
    inside = ["feed"]  # whose call the book kernel runs in: a full batch or a snapshot
    # (feed), or the flush before the tick measures (tick)
    feeding = [0]  # depth of feed calls (feed_frames calls prescan and feed_prescanned)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "feed":
                if feeding[0]:
                    return fn(*args, **kwargs)
                feeding[0] += 1
            key = f"apply_in_{inside[0]}" if name == "apply" else name
            if name == "tick":
                inside[0] = "tick"
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                raw[key] += time.process_time() - t0
                if name == "tick":
                    inside[0] = "feed"
                elif name == "feed":
                    feeding[0] -= 1

        return wrapper

    pipeline.feed_frames = timed("feed", pipeline.feed_frames)  # type: ignore[method-assign]
    pipeline.feed = timed("feed", pipeline.feed)  # type: ignore[method-assign]
    # replay scans each venue's frames a block ahead, then feeds them tick by tick
    pipeline.prescan = timed("feed", pipeline.prescan)  # type: ignore[method-assign]
    pipeline.feed_prescanned = timed("feed", pipeline.feed_prescanned)  # type: ignore[method-assign]
    pipeline.store.apply_sealed = timed("apply", pipeline.store.apply_sealed)  # type: ignore[method-assign]
    pipeline.tick = timed("tick", pipeline.tick)  # type: ignore[method-assign]
    stage = pipeline.analytics
    stage.process = timed("analytics", stage.process)  # type: ignore[method-assign]
    t0 = time.process_time()
    result = replay([rec], pipeline, tick_ms=settings.monitor.tick_ms)
    total = time.process_time() - t0
    apply_s = raw["apply_in_feed"] + raw["apply_in_tick"]
    phases = {
        "feed frames (scan or decode, batching)": raw["feed"] - raw["apply_in_feed"],
        "book kernel (apply the batched deltas)": apply_s,
        "tick: metrics kernel and sample columns": raw["tick"]
        - raw["analytics"]
        - raw["apply_in_tick"],
        "tick: analytics and score": raw["analytics"],
        "reading the recording, the replay loop": total - raw["feed"] - raw["tick"],
    }
    return phases, total, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/liqmon-bench-replay-8h"))
    parser.add_argument("--json", default=str(_common.RESULTS / "bench_replay.json"))
    parser.add_argument(
        "--metrics-out",
        action="store_true",
        help="also time the replay with --metrics-out to /dev/null (its JSON rows per tick)",
    )
    args = parser.parse_args()
    _common.quiet_logs()
    rec, config = recording(args.cache, args.hours)
    settings = load_settings([config])
    warm_up(ADAPTERS.values(), replay=True)
    warmed = signatures()

    t0 = time.process_time()
    records = sum(1 for _ in RecordingReader().read(rec))
    read_s = time.process_time() - t0

    t0 = time.process_time()
    block_records = sum(len(b) for b in RecordingReader().read_blocks(rec, VENUES))
    read_blocks_s = time.process_time() - t0
    assert block_records == records

    # the replay as `liqmon replay` runs it: the recording read by a thread beside it
    pipeline = new_pipeline(settings)
    t0, w0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
    result = replay([rec], pipeline, tick_ms=settings.monitor.tick_ms)
    cpu_s, wall_s = time.process_time() - t0, time.perf_counter() - w0
    main_s = time.thread_time() - m0
    # a kernel compiled (or loaded from the cache) inside the replay is a stall of
    # seconds that warm_up should have taken: the figure would not be the replay's
    compiled = sorted(k for k, n in signatures().items() if n != warmed.get(k))
    assert not compiled, f"kernels compiled during the replay (warm_up misses them): {compiled}"
    # the peer in the same run: the same replay in one thread (reading included)
    replay_module.READ_AHEAD = 0
    t0, w0 = time.process_time(), time.perf_counter()
    single = replay([rec], new_pipeline(settings), tick_ms=settings.monitor.tick_ms)
    one_thread_s, one_thread_wall_s = time.process_time() - t0, time.perf_counter() - w0
    assert (single.records, single.ticks, single.metric_rows) == (
        result.records,
        result.ticks,
        result.metric_rows,
    ), "the one-thread replay differs"
    rate = result.records / wall_s

    metrics_out_s = None
    if args.metrics_out:
        with open(os.devnull, "wb") as null:
            t0 = time.process_time()
            sink = JsonLinesSink(null)
            replay([rec], new_pipeline(settings), tick_ms=settings.monitor.tick_ms, sinks=[sink])
            metrics_out_s = time.process_time() - t0

    phases, instrumented_s, check = instrumented(settings, rec)
    assert (check.records, check.ticks, check.metric_rows) == (
        result.records,
        result.ticks,
        result.metric_rows,
    ), "the instrumented replay differs"

    books = len(pipeline.books)
    rows: list[dict[str, Any]] = [
        {"name": "records", "value": result.records, "unit": ""},
        {"name": "books / ticks", "value": books, "unit": f"/ {result.ticks}"},
        {
            "name": "replay, wall (reader thread beside it)",
            "value": wall_s,
            "unit": "s",
            "note": f"CPU: replay thread {main_s:.2f} s, process {cpu_s:.2f} s",
        },
        {
            "name": "records per second",
            "value": rate,
            "unit": "rec/s",
            "ratio": rate / TARGET_RECORDS_PER_S,
            "note": f"goal {TARGET_RECORDS_PER_S:,}",
        },
        {
            "name": "the same in one thread, CPU",
            "value": one_thread_s,
            "unit": "s",
            "ratio": one_thread_s / wall_s,
            "note": f"{result.records / one_thread_s:,.0f} rec/s; wall {one_thread_wall_s:.1f} s",
        },
        {
            "name": "per tick, all in (one thread)",
            "value": one_thread_s / result.ticks * 1e6,
            "unit": "us",
        },
        {
            "name": "reading only, record by record (read)",
            "value": read_s,
            "unit": "s",
            "note": f"{records / read_s:,.0f} rec/s",
        },
        {
            "name": "reading only, in blocks (read_blocks)",
            "value": read_blocks_s,
            "unit": "s",
            "ratio": read_s / read_blocks_s,
            "note": f"{records / read_blocks_s:,.0f} rec/s",
        },
    ]
    if metrics_out_s is not None:
        rows.append(
            {
                "name": "with --metrics-out /dev/null, CPU",
                "value": metrics_out_s,
                "unit": "s",
                "note": f"{result.records / metrics_out_s:,.0f} rec/s",
            }
        )
    _common.print_rows(f"replay of {rec}", rows)
    breakdown = [
        {
            "name": name,
            "value": seconds / instrumented_s * 100,
            "unit": "%",
            "note": f"{seconds:.2f} s, {seconds / result.ticks * 1e6:.0f} us/tick",
        }
        for name, seconds in phases.items()
    ]
    _common.print_rows(f"where the CPU goes (instrumented pass: {instrumented_s:.1f} s)", breakdown)
    _common.write_json(
        args.json,
        {
            "machine": _common.machine(),
            "recording": str(rec),
            "records": result.records,
            "books": books,
            "ticks": result.ticks,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "replay_thread_cpu_s": main_s,
            "records_per_s": rate,
            "one_thread_cpu_s": one_thread_s,
            "one_thread_wall_s": one_thread_wall_s,
            "records_per_cpu_s_one_thread": result.records / one_thread_s,
            "read_only_cpu_s": read_s,
            "read_blocks_cpu_s": read_blocks_s,
            "phases_cpu_s": phases,
            "instrumented_cpu_s": instrumented_s,
            "metrics_out_cpu_s": metrics_out_s,
        },
    )


if __name__ == "__main__":
    main()
