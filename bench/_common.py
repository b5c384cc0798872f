"""Shared helpers of the benchmark scripts: timing, machine notes, result files."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def quiet_logs() -> None:
    """The pipeline logs one info line per snapshot: keep benchmark output clean."""
    from monitor.log import configure_logging  # noqa: PLC0415

    configure_logging("warning", "console")


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """``--loop`` and ``--batch-window-ms``: the live monitor's event loop and batch window
    (``[monitor] event_loop``, ``[connection] batch_window_ms``), for the live benches."""
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the event loop, as [monitor] event_loop (auto: uvloop if installed)",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=None,
        help="liqmon's [connection] batch_window_ms (default: config/default.toml)",
    )
    parser.add_argument(
        "--batch-min-frames",
        type=int,
        default=None,
        help="liqmon's [connection] batch_min_frames (default: config/default.toml)",
    )
    parser.add_argument(
        "--coalesce-bytes",
        type=int,
        default=None,
        help="liqmon's [connection] coalesce_bytes (0: off; default: config/default.toml)",
    )
    parser.add_argument(
        "--coalesce-ms",
        type=float,
        default=None,
        help="liqmon's [connection] coalesce_ms (default: config/default.toml)",
    )


def live_connection_toml(args: argparse.Namespace) -> str:
    """The ``[connection]`` lines the live benches' arguments set (none: the defaults)."""
    keys = ("batch_window_ms", "batch_min_frames", "coalesce_bytes", "coalesce_ms")
    return "".join(
        f"{key} = {getattr(args, key)}\n" for key in keys if getattr(args, key) is not None
    )


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Run ``fn`` ``repeat`` times (gc.collect() before each, gc left enabled inside).

    Returns the wall times (perf_counter) and the last run's return value.
    """
    times = []
    out = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def summary(times: list[float]) -> dict[str, float]:
    return {"best_s": min(times), "median_s": statistics.median(times), "runs": len(times)}


def machine() -> dict[str, Any]:
    import msgspec  # noqa: PLC0415
    import numba  # noqa: PLC0415
    import numpy  # noqa: PLC0415

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "msgspec": msgspec.__version__,
        "loadavg": load,
    }


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=1, default=float))


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    for r in rows:
        ratio = f"  x{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        note = f"  ({r['note']})" if r.get("note") else ""
        print(f"  {r['name']:<58} {r['value']:>14,.2f} {r['unit']:<10}{ratio}{note}")
