"""Ablations at an equal false-alarm rate: a WARNING-threshold sweep (a script, not a test).

    python bench/eval_data.py --out /tmp/liqmon-eval           # the recordings (once)
    python bench/eval_sweep.py --data /tmp/liqmon-eval [--jobs 2] [--captured-only]
    python bench/eval_sweep.py confirm /tmp/liqmon-eval/collapse-1 spread-only 45

``bench/eval_score.py --ablations`` compares the full score with spread-only and
depth-only at the same thresholds, which says little: each variant has its own scale and
its own false-alarm rate. Here every variant is compared at the same calm-day false-alarm
rate instead:

Variants (eval_score.ABLATIONS): the full score, spread-only and depth-only (the weights
set to one component), and no-spread (the full score without its spread component, the
others' weights scaled to sum to 1). The depth+spread override (a 1% depth collapse with
a wide spread scores at least 80) reads the components themselves, whatever their
weights, so depth-only and no-spread still see the spread there.

1. **Capture** (once per recording and variant, cached beside the recording as
   ``series-<variant>.npz``): the recording is replayed in-process exactly as
   ``liqmon replay --config <its liqmon.toml> --config <variant overlay>`` does (same
   settings, registry, pipeline, tick), and a sink keeps every tick's raw score of every
   book, asset and the market, and the states the daemon's state machine gave them.
2. **Check**: the state machine (:func:`monitor.analytics.kernels.step_states`, the numba
   kernel whose plain-Python twin :func:`monitor.analytics.reference.step_states` is
   property-tested against it; the twin is run too on one calm day) is run offline over
   the captured scores with the configured thresholds; it must give the captured states
   tick for tick.
3. **Sweep**: the same offline state machine with the WARNING enter point theta from 20 to
   100 (exit point 0.75 theta, as 45/60; CRITICAL at max(80, theta), so CRITICAL never
   comes before WARNING; WATCH stays at 40/30, or at theta / 0.75 theta below 40). The calm days give the false WARNING rate
   per book-day for each theta (entries outside the "vacuum without a crash" window, as in
   eval_score.py); for each variant the lowest theta (from 40: exact) at or under a
   target rate is kept,
   and the collapse seeds and the generalisation run are scored at that theta (leads before
   the trough, as in eval_score.py).

Exactness: the baselines freeze while a book is in WATCH or above, and WATCH is not swept,
so the captured scores hold for every theta, except (a) a book that leaves WARNING takes 5
more minutes to leave WATCH than one that was only in WATCH, which shifts when its
baselines thaw, and (b) a venue in WARNING does not price a quote currency. Both only act
after a first WARNING, so a run's first WARNINGs (the leads) are exact, and later
re-entries may be off (``confirm`` replays a run with a theta in its config and compares). Below theta = 40, WATCH is lowered with it, so the baselines
would freeze earlier than in the captured replay: those rows are approximate (marked ~).

Writes bench/results/eval_sweep.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import eval_score  # noqa: E402  (bench/eval_score.py: the scoring of leads and false alarms)

from monitor.analytics import kernels as ak  # noqa: E402

VARIANTS = ("full", "spread-only", "depth-only", "no-spread")
THETAS = tuple(float(t) for t in range(20, 101))
EXACT_FROM = 40.0  # below, WATCH moves with theta: see the module doc
TARGET_PER_BOOK_DAY = 0.05  # the reference protocol: WARNING <= 0.05 per book-day
STATE_LEVEL = {0: 0, 1: 1, 2: 2, 3: 3, 4: -1}  # SCORE_* -> eval_score.LEVEL


# --- 1. capture ----------------------------------------------------------------------------
def capture(run: Path, variant: str, overlay_extra: str = "", tag: str = "") -> Path:
    """Replay ``run``'s recording with ``variant``'s weights; save every tick's scores."""
    from feeds.venues import ADAPTERS  # noqa: PLC0415
    from monitor.instruments import InstrumentRegistry  # noqa: PLC0415
    from monitor.log import configure_logging  # noqa: PLC0415
    from monitor.pipeline import BookPipeline  # noqa: PLC0415
    from monitor.replay import replay  # noqa: PLC0415
    from monitor.sample import TickSample  # noqa: PLC0415
    from monitor.settings import load_settings  # noqa: PLC0415
    from monitor.sinks import CallbackSink  # noqa: PLC0415
    from monitor.warmup import warm_up  # noqa: PLC0415

    out = run / f"series-{variant}{tag}.npz"
    overlay = run / f"overlay-{variant}{tag}.toml"
    overlay.write_text(eval_score.QUIET + eval_score.ABLATIONS[variant] + overlay_extra)
    settings = load_settings([run / "liqmon.toml", overlay])
    configure_logging("error", "json")
    warm_up(ADAPTERS.values())
    registry = InstrumentRegistry.load_cached(settings.venues.keys())
    pipeline = BookPipeline.from_settings(registry, ADAPTERS, settings)
    ts: list[int] = []
    values: list[np.ndarray] = []
    states: list[np.ndarray] = []
    books: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    counts: list[tuple[int, int]] = []

    def keep(sample: TickSample) -> None:
        nonlocal books, assets
        a = sample.assets
        if sample.analytics is None or a is None:
            return
        if len(sample.books) != len(books):
            books = tuple(f"{b.venue}:{b.symbol}" for b in sample.books)
        if len(a.assets) != len(assets):
            assets = a.assets
        ts.append(sample.ts_ns)
        counts.append((len(sample.books), len(a.assets)))
        values.append(np.concatenate((sample.lvs, a.lvs, [a.market_lvs])))
        states.append(np.concatenate((sample.score_state, a.state, [a.market_state])))

    started = time.process_time()
    replay([run / "scenario.jsonl.gz"], pipeline, tick_ms=settings.monitor.tick_ms,
           sinks=[CallbackSink(keep)])  # fmt: skip
    nb, na = len(books), len(assets)
    n = nb + na + 1
    v = np.full((len(ts), n), np.nan)
    s = np.full((len(ts), n), 4, dtype=np.int8)  # DATA before a book exists
    for t, ((b, k), row, st) in enumerate(zip(counts, values, states, strict=True)):
        cols = [*range(b), *range(nb, nb + k), n - 1]
        v[t, cols] = row
        s[t, cols] = st
    np.savez_compressed(
        out.with_suffix(".part.npz"),
        ts_ns=np.array(ts, dtype=np.int64),
        values=v,
        states=s,
        names=np.array([*books, *(f"asset:{x}" for x in assets), "market"]),
        cpu_s=np.array(time.process_time() - started),
    )
    out.with_suffix(".part.npz").rename(out)
    return out


def capture_cmd(run: Path, variant: str) -> Path:
    """Capture in a subprocess (one recording per process; cached)."""
    out = run / f"series-{variant}.npz"
    if not out.exists():
        subprocess.run(
            [sys.executable, str(Path(__file__)), "capture", str(run), variant],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return out


# --- 2./3. the state machine offline --------------------------------------------------------
def thresholds(theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Enter and exit points for a WARNING enter point ``theta`` (60: the configured ones)."""
    crit = max(80.0, theta)
    enter = np.array([min(40.0, theta), theta, crit])
    exit_ = np.array([min(30.0, 0.75 * theta), 0.75 * theta, crit * 65.0 / 80.0])
    return enter, exit_


class Series:
    """One capture: scores [tick, entity], the states the replay gave, the funding mask."""

    def __init__(self, path: Path, settings: Any) -> None:
        from monitor.analytics.stage import AnalyticsStage  # noqa: PLC0415

        z = np.load(path)
        self.ts_ns = z["ts_ns"]
        self.values = z["values"]
        self.states = z["states"]
        self.names = [str(x) for x in z["names"]]
        self.cpu_s = float(z["cpu_s"])
        self.settings = settings
        stage = AnalyticsStage(settings)
        base = settings.enter_points[0]
        # the ticks where the daemon raised the enter points (funding times)
        self.mask = np.array(
            [stage.enter_points_at(t / 1e9)[0] != base for t in self.ts_ns.tolist()]
        )

    def run(self, enter: np.ndarray, exit_: np.ndarray, twin: bool = False) -> np.ndarray:
        """States [tick, entity] from the offline state machine (the kernel, or its twin)."""
        from monitor.analytics import reference as ref  # noqa: PLC0415

        s = self.settings
        args = (
            self.ts_ns / 1e9,
            self.values,
            self.mask,
            np.asarray(enter, dtype=np.float64),
            np.asarray(enter, dtype=np.float64) + s.scheduled_mask_points,
            np.array(s.enter_s, dtype=np.float64),
            np.asarray(exit_, dtype=np.float64),
            np.array(s.exit_s, dtype=np.float64),
            float(s.min_dwell_s),
        )
        if not twin:
            return _run_kernel(*args)
        now_s, values, mask, enter_, raised, enter_s, exit_a, exit_s, dwell = args
        n = values.shape[1]
        state = np.full(n, 4, dtype=np.int8)
        timers = np.full((n, 5), np.nan)
        out = np.empty(values.shape, dtype=np.int8)
        for t in range(len(now_s)):
            ref.step_states(
                float(now_s[t]), values[t], state, timers, raised if mask[t] else enter_,
                enter_s, exit_a, exit_s, dwell,
            )  # fmt: skip
            out[t] = state
        return out

    def changes(self, states: np.ndarray) -> dict[str, list[tuple[int, int, int]]]:
        """eval_score's form: per scope, (ts ns, level, previous level) of every change."""
        out: dict[str, list[tuple[int, int, int]]] = {}
        prev = np.vstack((np.full((1, states.shape[1]), 4, dtype=np.int8), states[:-1]))
        for t, j in zip(*np.nonzero(states != prev), strict=True):
            out.setdefault(self.names[j], []).append(
                (int(self.ts_ns[t]), STATE_LEVEL[int(states[t, j])], STATE_LEVEL[int(prev[t, j])])
            )
        for ch in out.values():
            ch.sort()
        return out


@numba.njit(cache=True)
def _run_kernel(
    now_s: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray,
    enter: np.ndarray,
    raised: np.ndarray,
    enter_s: np.ndarray,
    exit_: np.ndarray,
    exit_s: np.ndarray,
    min_dwell_s: float,
) -> np.ndarray:
    """The daemon's state-machine kernel, tick after tick over a captured series."""
    n = values.shape[1]
    state = np.full(n, 4, dtype=np.int8)
    timers = np.full((n, 5), np.nan)
    out = np.empty(values.shape, dtype=np.int8)
    for t in range(now_s.shape[0]):
        ak.step_states(
            now_s[t], values[t], state, timers, raised if mask[t] else enter, enter_s, exit_,
            exit_s, min_dwell_s,
        )  # fmt: skip
        out[t] = state
    return out


def kind_of(run: Path) -> str:
    if run.name.startswith("calm"):
        return "calm"
    return "general" if run.name.startswith("general") else "collapse"


def confirm(run: Path, variant: str, theta: float) -> None:
    """Replay ``run`` with theta in its config; compare with the offline sweep's states."""
    from monitor.settings import load_settings  # noqa: PLC0415

    enter, exit_ = thresholds(theta)
    extra = (
        f"[analytics]\nenter_points = {[float(x) for x in enter]}\n"
        f"exit_points = {[float(x) for x in exit_]}\n"
    )
    tag = f"-theta{theta:g}"
    path = run / f"series-{variant}{tag}.npz"
    if not path.exists():
        capture(run, variant, extra, tag)
    settings = load_settings([run / "liqmon.toml", run / f"overlay-{variant}{tag}.toml"])
    replayed = Series(path, settings.analytics)
    base = load_settings([run / "liqmon.toml", run / f"overlay-{variant}.toml"]).analytics
    offline = Series(run / f"series-{variant}.npz", base)
    states = offline.run(enter, exit_)
    ticks = int((states != replayed.states).any(axis=1).sum())
    print(f"{run.name} {variant} theta {theta:g}: {ticks} of {len(states)} ticks differ")
    score = eval_score.calm_result if kind_of(run) == "calm" else eval_score.collapse_result
    for name, ser, st in (("offline", offline, states), ("replayed", replayed, replayed.states)):
        r = score(run, variant, changes=ser.changes(st))
        print(name, {k: r[k] for k in ("market", "books", "false") if k in r})


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "capture":
        capture(Path(sys.argv[2]), sys.argv[3])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "confirm":
        confirm(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--captured-only",
        action="store_true",
        help="no replays: use the runs captured for every variant so far",
    )
    args = parser.parse_args()
    from monitor.settings import load_settings  # noqa: PLC0415

    runs = sorted(d for d in args.data.iterdir() if (d / "labels.json").exists())
    if args.captured_only:
        runs = [d for d in runs if all((d / f"series-{v}.npz").exists() for v in VARIANTS)]
    jobs = [(d, v) for v in VARIANTS for d in runs]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(capture_cmd, d, v): (d, v) for d, v in jobs}
        for f in concurrent.futures.as_completed(futures):
            f.result()
            d, v = futures[f]
            print(f"captured {d.name} ({v})", file=sys.stderr)
    results: dict[str, Any] = {
        "runs": [d.name for d in runs],
        "thresholds": "enter [40, theta, max(80, theta)], exit [30, 0.75 theta, 65/80 crit]",
        "check": [],
        "sweep": {},
        "chosen": {},
        "leads": [],
    }
    series: dict[tuple[str, str], Series] = {}
    for d, v in jobs:
        settings = load_settings([d / "liqmon.toml", d / f"overlay-{v}.toml"]).analytics
        ser = Series(d / f"series-{v}.npz", settings)
        series[(d.name, v)] = ser
        enter, exit_ = np.array(settings.enter_points), np.array(settings.exit_points)
        offline = ser.run(enter, exit_)
        bad = int((offline != ser.states).sum())
        results["check"].append(
            {"run": d.name, "variant": v, "ticks": len(ser.ts_ns), "mismatched": bad,
             "replay_cpu_s": round(ser.cpu_s, 1)}
        )  # fmt: skip
        print(f"check {d.name} {v}: {bad} mismatched of {ser.states.size}", file=sys.stderr)
    calm_runs = [d for d in runs if kind_of(d) == "calm"]
    if calm_runs:  # the twin once: the same states as the kernel
        ser = series[(calm_runs[0].name, "full")]
        e, x = np.array(ser.settings.enter_points), np.array(ser.settings.exit_points)
        same = bool((ser.run(e, x, twin=True) == ser.run(e, x)).all())
        results["twin_agrees"] = same
        print(f"twin agrees on {calm_runs[0].name}: {same}", file=sys.stderr)
    book_days = sum(eval_score.calm_result(d, "full", changes={})["book_days"] for d in calm_runs)
    results["calm_book_days"] = book_days
    for v in VARIANTS:
        rows = []
        for theta in THETAS:
            enter, exit_ = thresholds(theta)
            false = {"WATCH": 0, "WARNING": 0, "CRITICAL": 0}
            vacuum = {"WATCH": 0, "WARNING": 0, "CRITICAL": 0}
            market = 0
            for d in calm_runs:
                ser = series[(d.name, v)]
                r = eval_score.calm_result(d, v, changes=ser.changes(ser.run(enter, exit_)))
                for k in false:
                    false[k] += r["false"][k]
                    vacuum[k] += r["vacuum_window_alarms"][k]
                market += r["market_warnings"]
            rows.append(
                {"theta": theta, "false": false, "per_book_day": false["WARNING"] / book_days,
                 "market_warnings": market, "vacuum_window_alarms": vacuum}
            )  # fmt: skip
            print(f"sweep {v} {theta:g}: {false} market {market}", file=sys.stderr)
        results["sweep"][v] = rows
    full60 = next(r for r in results["sweep"]["full"] if r["theta"] == 60.0)["per_book_day"]
    targets = {"0.05/book-day": TARGET_PER_BOOK_DAY, "full score's rate": full60}
    for name, target in targets.items():
        for v in VARIANTS:
            ok = [
                r
                for r in results["sweep"][v]
                if r["per_book_day"] <= target + 1e-12 and r["theta"] >= EXACT_FROM
            ]
            theta = min(r["theta"] for r in ok) if ok else None
            results["chosen"][f"{v} @ {name}"] = theta
            if theta is None:
                continue
            enter, exit_ = thresholds(theta)
            for d in runs:
                if kind_of(d) == "calm":
                    continue
                ser = series[(d.name, v)]
                r = eval_score.collapse_result(d, v, changes=ser.changes(ser.run(enter, exit_)))
                r.update(target=name, theta=theta, run=d.name)
                results["leads"].append(r)
    results["summary"] = summary(results)
    # the full score at its configured thresholds (what `liqmon replay` gives: checked above)
    default: dict[str, Any] = {"collapse": [], "calm": [], "general": [], "real": []}
    for d in runs:
        ser = series[(d.name, "full")]
        e, x = np.array(ser.settings.enter_points), np.array(ser.settings.exit_points)
        kind = kind_of(d)
        score = eval_score.calm_result if kind == "calm" else eval_score.collapse_result
        default[kind].append(score(d, "full", changes=ser.changes(ser.run(e, x))))
    real_dir = args.data / "real"
    for rec in sorted((ROOT / "tests" / "recordings").glob("*.jsonl.gz")):
        sub = real_dir / rec.name.split(".")[0]
        sub.mkdir(parents=True, exist_ok=True)
        default["real"].append(eval_score.real_result(rec, sub))
    results["default"] = default
    print(eval_score.markdown(default))
    print()
    print(markdown(results))
    out = HERE / "results" / "eval_sweep.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target and variant: theta, calm false alarms, and the leads over the runs."""
    rows = []
    sweep = results["sweep"]
    for key, theta in results["chosen"].items():
        v, target = key.split(" @ ")
        row: dict[str, Any] = {"target": target, "variant": v, "theta": theta}
        if theta is not None:
            r = next(x for x in sweep[v] if x["theta"] == theta)
            row.update(
                false=r["false"],
                per_book_day=r["per_book_day"],
                market_false=r["market_warnings"],
                vacuum=r["vacuum_window_alarms"],
            )
            for kind in ("collapse", "general"):
                leads = [x for x in results["leads"] if x["target"] == target and x["variant"] == v
                         and kind_of(Path(x["run"])) == kind]  # fmt: skip
                mk = [x.get("market", {}).get("WARNING") for x in leads]
                got = [m for m in mk if m is not None]
                row[kind] = {
                    "runs": len(leads),
                    "market_warning_lead_min": mk,
                    "market_missed": len(mk) - len(got),
                    "books": sum(x["books"]["n"] for x in leads),
                    "books_recall_2min": sum(
                        round(x["books"]["warning_recall_2min"] * x["books"]["n"]) for x in leads
                    ),
                    "books_missed": sum(x["books"]["missed"] for x in leads),
                    "book_lead_median_min": [x["books"]["warning_lead_median_min"] for x in leads],
                }
        rows.append(row)
    return rows


def _range(xs: list[float | None]) -> str:
    got = [x for x in xs if x is not None]
    if not got:
        return "-"
    lo, hi = min(got), max(got)
    return f"{lo:.1f}" if lo == hi else f"{lo:.1f}-{hi:.1f}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"runs: {', '.join(results['runs'])}; calm book-days: {results['calm_book_days']:.1f}",
        "",
        "| false-alarm target | variant | WARNING at | calm false WATCH / WARNING / CRITICAL "
        "(per book-day) | market WARNING lead, collapse seeds (min) | books warned >= 2 min "
        "before their trough | books missed | median book lead (min) | generalisation: market "
        "lead / books >= 2 min / missed | vacuum without a crash: book entries WATCH / "
        "WARNING / CRITICAL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary(results):
        if r["theta"] is None:
            lines.append(f"| {r['target']} | {r['variant']} | none in 40-100 | | | | | | | |")
            continue
        f, c, vac = r["false"], r["collapse"], r["vacuum"]
        g = r.get("general", {"runs": 0})
        gen = "-"
        if g["runs"]:
            gen = (
                f"{_range(g['market_warning_lead_min'])} / {g['books_recall_2min']} of "
                f"{g['books']} / {g['books_missed']}"
            )
        missed = f" ({c['market_missed']} missed)" if c["market_missed"] else ""
        lines.append(
            f"| {r['target']} | {r['variant']} | {'~' if r['theta'] < EXACT_FROM else ''}"
            f"{r['theta']:g} | {f['WATCH']} / {f['WARNING']} / "
            f"{f['CRITICAL']} ({r['per_book_day']:.3f}) | {_range(c['market_warning_lead_min'])}"
            f"{missed} | {c['books_recall_2min']} of {c['books']} | {c['books_missed']} | "
            f"{_range(c['book_lead_median_min'])} | {gen} | {vac['WATCH']} / {vac['WARNING']} / "
            f"{vac['CRITICAL']} |"
        )
    lines += [
        "",
        "| WARNING at | "
        + " | ".join(f"{v}: false WARNING (market)" for v in results["sweep"])
        + " |",
        "|---|" + "---|" * len(results["sweep"]),
    ]
    thetas = [r["theta"] for r in next(iter(results["sweep"].values()))]
    for i, theta in enumerate(thetas):
        if theta % 5:
            continue
        cells = [
            f"{rows[i]['false']['WARNING']} ({rows[i]['market_warnings']})"
            for rows in results["sweep"].values()
        ]
        mark = "~" if theta < EXACT_FROM else ""
        lines.append(f"| {mark}{theta:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
