"""Ground truth of a written scenario (``labels.json``), measured on the books it wrote.

Per book: the 1 % depth baseline (median over the calm part), crash onset ``t0`` (the mid in
USD falls >= 5 % (majors) or >= 10 % (alts) below its 10-minute high), vacuum onset ``t_v``
(1 % depth below 20 % of baseline for >= 30 s), trough time and price, depth at the trough
relative to calm, and when depth regained 90 % of baseline. Market: phase bounds, the fair
value's trough per asset, depeg and feed-fault windows, the expected state bands, and for
calm days the nuisance events. A 10-s series of mid, fair value and 1 % depth per book lets a
reader plot what happened. Times are integer ns on the recording's clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feeds.sim.scenario import spec
from feeds.sim.scenario.core import Scenario
from feeds.sim.scenario.spec import MINUTE_NS, SECOND_NS


def _first_run(mask: np.ndarray, length: int) -> int | None:
    """First index starting a run of ``length`` True values."""
    if length <= 1:
        hits = np.flatnonzero(mask)
        return int(hits[0]) if hits.size else None
    m = mask.astype(np.int64)
    c = np.concatenate([[0], np.cumsum(m)])
    full = (c[length:] - c[:-length]) == length
    hits = np.flatnonzero(full)
    return int(hits[0]) if hits.size else None


def _rolling_max(x: np.ndarray, window: int) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view  # noqa: PLC0415

    padded = np.concatenate([np.full(window - 1, x[0]), x])
    return np.asarray(sliding_window_view(padded, window).max(axis=1), dtype=np.float64)


def build_labels(
    sc: Scenario, depth_bid: np.ndarray, depth_ask: np.ndarray, windows: list[dict[str, Any]]
) -> dict[str, Any]:
    p = sc.paths
    minute = MINUTE_NS * sc.paths.timeline  # the collapse clock (stretched timelines)
    step_s = p.step_ns / 1e9
    t = p.t_ns
    calm_end = spec.T0_NS if sc.kind == "collapse" else int(t[-1]) + 1
    calm = t < calm_end
    calm[: int(60 / step_s)] = False  # the first minute: books still filling in
    every = max(1, round(10.0 / step_s))
    books = []
    for i, (b, bp) in enumerate(zip(sc.books, p.books, strict=True)):
        total = depth_bid[i] + depth_ask[i]
        base = float(np.median(total[calm])) if calm.any() else float(np.median(total))
        mid_usd = bp.mid * bp.quote_usd
        entry: dict[str, Any] = {
            "venue": b.venue.value,
            "venue_label": spec.VENUE_LABEL.get(b.venue, b.venue.value),
            "symbol": b.symbol,
            "asset": b.base,
            "quote": b.quote,
            "type": b.kind.value,
            "band_pct": 0.5 if b.peg is not None else 1.0,
            "depth_baseline_usd": round(base, 2),
        }
        threshold = 0.05 if (b.base in spec.ASSETS and spec.ASSETS[b.base].major) else 0.10
        win = int(10 * 60 / step_s)
        high = _rolling_max(mid_usd, win)
        k0 = _first_run(mid_usd <= high * (1.0 - threshold), 1) if b.peg is None else None
        entry["t0_ns"] = int(t[k0]) if k0 is not None else None
        kv = _first_run(total < 0.2 * base, int(30 / step_s))
        entry["t_v_ns"] = int(t[kv]) if kv is not None else None
        if sc.kind == "collapse":
            lo = int(np.searchsorted(t, spec.T0_NS + int(25 * minute)))
            hi = int(
                np.searchsorted(t, spec.T0_NS + int((100 if b.peg is not None else 60) * minute))
            )
        else:
            lo, hi = 0, len(t)
        lo = min(lo, len(t) - 1)
        hi = max(hi, lo + 1)
        kt = lo + int(np.argmin(bp.mid[lo:hi]))
        entry["trough_ns"] = int(t[kt])
        entry["trough_price"] = float(bp.mid[kt])
        kd = lo + int(np.argmin(total[lo:hi]))
        entry["depth_min_ns"] = int(t[kd])
        entry["depth_at_trough_ratio"] = round(float(total[kt]) / base, 5) if base else None
        entry["depth_min_ratio"] = round(float(total[kd]) / base, 5) if base else None
        back = np.flatnonzero(total[kd:] >= 0.9 * base)
        entry["depth_recovered_90_ns"] = int(t[kd + back[0]]) if back.size else None
        entry["series"] = {
            "every_s": every * step_s,
            "mid": [float(f"{x:.6g}") for x in bp.mid[::every]],
            "fair_usd": [float(f"{x:.6g}") for x in bp.mid_usd_true[::every]],
            "depth_usd": [round(float(x), 0) for x in total[::every]],
        }
        books.append(entry)
    labels: dict[str, Any] = {
        "kind": sc.kind,
        "seed": sc.seed,
        "day": sc.day,
        "start_ns": int(t[0]),
        "end_ns": int(t[-1]),
        "step_ms": sc.step_ms,
        "books": books,
        "faults": windows,
        "events": p.events,
    }
    if sc.kind == "collapse":
        labels["t0_hkt"] = "2025-10-11T04:40:00+08:00"
        labels["T0_ns"] = spec.T0_NS
        labels["phases"] = [
            {
                "name": name,
                "start_ns": max(int(t[0]), spec.T0_NS + int(s * minute)),
                "end_ns": spec.T0_NS + int(e * minute),
            }
            for name, s, e in spec.PHASES
        ]
        troughs = {}
        for name, f in p.fair_usd.items():
            lo = int(np.searchsorted(t, spec.T0_NS + int(25 * minute)))
            hi = max(int(np.searchsorted(t, spec.T0_NS + int(60 * minute))), lo + 1)
            lo = min(lo, len(t) - 1)
            troughs[name] = int(t[lo + int(np.argmin(f[lo:hi]))])
        labels["fair_trough_ns"] = troughs
        labels["market_trough_ns"] = int(np.median(list(troughs.values())))
        # the liquidation engine's buckets and the wicks' Hawkes bursts (see model.py)
        labels["liquidations"] = p.liquidations
        labels["wick_bursts"] = p.wicks
        labels["depeg_windows"] = [
            {
                "venue": v.value,
                "asset": a,
                "trough": tr,
                "trough_ns": spec.T0_NS + int(spec.DEPEG_TROUGH_MIN[a] * minute),
                "start_ns": spec.T0_NS + int(56 * minute),
                "end_ns": spec.T0_NS + int(96 * minute),
            }
            for (v, a), tr in spec.DEPEG_TROUGH.items()
        ]
        labels["expected_states"] = {
            k: spec.T0_NS + int(v * minute) for k, v in spec.EXPECTED_STATES.items()
        }
    labels["second_ns"] = SECOND_NS
    return labels
