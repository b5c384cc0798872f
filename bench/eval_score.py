"""Evaluate the liquidity-vacuum score on generated scenarios (a script, not a test).

    python bench/eval_data.py --out /tmp/liqmon-eval          # the recordings (once)
    python bench/eval_score.py --data /tmp/liqmon-eval [--jobs 2] [--ablations]

Every recording goes through ``liqmon replay --config <its liqmon.toml> --alerts-out``
(the daemon's code path, the recording's clock); the score state changes are compared with
the scenario's ``labels.json``:

- collapse seeds: first WATCH / WARNING / CRITICAL of the market, of ALT1 and of every
  book in the hour before the trough (lead = trough - first time), and when the market is
  back to NORMAL after depth regained 90 % of calm; the wrapped-asset depegs' WARNING vs
  their trough;
- calm nuisance days: entries into WATCH / WARNING / CRITICAL per book-day (the day's
  "vacuum without a crash" window is scored apart: an alarm there is a true vacuum);
- the real recordings in tests/recordings: entries per book;
- ablations (``--ablations``): the same score with the spread or the depth component only
  (weights 1), on the same data, at the same thresholds (bench/eval_sweep.py compares them
  at the same false-alarm rate instead);
- generalisation: ``general-*`` (ETH/XRP/SOL, timeline x1.5, V4 hit hardest).

Writes bench/results/eval_score.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LEVEL = {"normal": 0, "watch": 1, "warning": 2, "critical": 3, "data": -1}
NAMES = {1: "WATCH", 2: "WARNING", 3: "CRITICAL"}
MIN = 60e9
QUIET = '[monitor]\nlog_level = "error"\n'
ABLATIONS = {
    "full": "",
    "spread-only": (
        "[analytics.weights]\ndepth = 0.0\nwithdrawal = 0.0\nspread = 1.0\nimpact = 0.0\n"
        "asymmetry = 0.0\ndislocation = 0.0\n"
    ),
    "depth-only": (
        "[analytics.weights]\ndepth = 1.0\nwithdrawal = 0.0\nspread = 0.0\nimpact = 0.0\n"
        "asymmetry = 0.0\ndislocation = 0.0\n"
    ),
    # the full score without its spread component (the others' weights x 1 / 0.85)
    "no-spread": (
        f"[analytics.weights]\ndepth = {6 / 17!r}\nwithdrawal = {4 / 17!r}\nspread = 0.0\n"
        f"impact = {3 / 17!r}\nasymmetry = {2 / 17!r}\ndislocation = {2 / 17!r}\n"
    ),
}


def replay_alerts(recording: Path, config: Path | None, variant: str, out_dir: Path) -> Path:
    """``liqmon replay --alerts-out`` once per (recording, variant); cached."""
    out = out_dir / f"alerts-{variant}.jsonl"
    if out.exists() and out.stat().st_size > 0:
        return out
    overlay = out_dir / f"overlay-{variant}.toml"
    overlay.write_text(QUIET + ABLATIONS[variant])
    cmd = [sys.executable, "-m", "monitor", "replay", str(recording)]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += ["--config", str(overlay), "--alerts-out", str(out) + ".part", "--log-format", "json"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    Path(str(out) + ".part").rename(out)
    return out


def load_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scope_key(event: dict[str, Any]) -> str:
    s = event["scope"]
    if s["venue"]:
        return f"{s['venue']}:{s['symbol']}"
    return f"asset:{s['asset']}" if s["asset"] else "market"


def entries(events: list[dict[str, Any]]) -> dict[str, list[tuple[int, int, int]]]:
    """Per scope: (ts ns, level, previous level) of every state change.

    alerts-out events carry the new state only: the previous level is the scope's last
    event's (normal before the first), so a step down (CRITICAL -> WARNING) is not
    counted as an entry into WARNING."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for e in events:
        if e.get("kind") != "score":  # alert rule events share the file
            continue
        changes = out.setdefault(scope_key(e), [])
        prev = changes[-1][1] if changes else 0
        changes.append((round(e["ts"] * 1e9), LEVEL[e["state"]], prev))
    return out


def first_at_least(changes: list[tuple[int, int, int]], level: int, lo: int, hi: int) -> int | None:
    for ts, state, _ in changes:
        if lo <= ts <= hi and state >= level:
            return ts
    return None


def back_to_normal(changes: list[tuple[int, int, int]], after: int) -> int | None:
    """The last return to NORMAL after ``after`` (the state stays NORMAL to the end)."""
    last = None
    for ts, state, _ in changes:
        if ts >= after:
            last = ts if state == 0 else None
    return last


@functools.cache
def read_labels(data: Path) -> dict[str, Any]:
    labels: dict[str, Any] = json.loads((data / "labels.json").read_text())
    return labels


def collapse_result(
    data: Path, variant: str, changes: dict[str, list[tuple[int, int, int]]] | None = None
) -> dict[str, Any]:
    """Leads on a collapse run; ``changes`` (see :func:`entries`) default to the run's
    alerts-out file for ``variant``."""
    labels = read_labels(data)
    if changes is None:
        changes = entries(load_events(data / f"alerts-{variant}.jsonl"))
    trough = labels["market_trough_ns"]
    res: dict[str, Any] = {"seed": labels["seed"], "variant": variant}
    for scope in ("market", "asset:ALT1", "asset:ETH", "asset:XRP"):
        ch = changes.get(scope, [])
        if scope != "market" and not ch:
            continue
        res[scope] = {
            NAMES[lv]: _lead(trough, first_at_least(ch, lv, trough - 60 * MIN, trough))
            for lv in (1, 2, 3)
        }
        recovered = sorted(
            b["depth_recovered_90_ns"]
            for b in labels["books"]
            if b["depth_recovered_90_ns"] and b["asset"] not in ("USDE", "WBETH", "BNSOL", "USDT")
        )
        if recovered:
            rec = recovered[len(recovered) // 2]
            back = back_to_normal(ch, trough)
            res[scope]["normal_after_recovery_min"] = (
                None if back is None else round((back - rec) / MIN, 1)
            )
    leads = []
    books = 0
    for b in labels["books"]:
        if b["asset"] in ("USDE", "WBETH", "BNSOL", "USDT"):
            continue
        books += 1
        ts = first_at_least(
            changes.get(f"{b['venue']}:{b['symbol']}", []),
            2,
            b["trough_ns"] - 60 * MIN,
            b["trough_ns"],
        )
        leads.append(None if ts is None else (b["trough_ns"] - ts) / MIN)
    got = sorted(x for x in leads if x is not None)
    res["books"] = {
        "n": books,
        "warning_recall_2min": round(sum(1 for x in got if x >= 2) / books, 3) if books else None,
        "warning_lead_median_min": round(statistics.median(got), 1) if got else None,
        "warning_lead_p10_min": round(got[max(0, int(0.1 * len(got)) - 0)], 1) if got else None,
        "missed": books - len(got),  # no WARNING in the hour before the book's trough
    }
    depegs = {}
    for w in labels.get("depeg_windows", []):
        ch = changes.get(f"asset:{w['asset']}", [])
        ts = first_at_least(ch, 2, w["start_ns"] - 10 * MIN, w["trough_ns"])
        depegs[f"{w['venue']}:{w['asset']}"] = _lead(w["trough_ns"], ts)
    res["depeg_warning_lead_min"] = depegs
    return res


def _lead(trough: int, ts: int | None) -> float | None:
    return None if ts is None else round((trough - ts) / MIN, 1)


def calm_result(
    data: Path, variant: str, changes: dict[str, list[tuple[int, int, int]]] | None = None
) -> dict[str, Any]:
    """False alarms on a calm day; ``changes`` as in :func:`collapse_result`."""
    labels = read_labels(data)
    if changes is None:
        changes = entries(load_events(data / f"alerts-{variant}.jsonl"))
    days = (labels["end_ns"] - labels["start_ns"]) / (86400e9)
    vac = [e for e in labels["events"] if e["kind"] == "vacuum_no_crash"]
    assets = {f"{b['venue']}:{b['symbol']}": b["asset"] for b in labels["books"]}
    counts = {1: 0, 2: 0, 3: 0}
    in_vacuum = {1: 0, 2: 0, 3: 0}
    for scope, ch in changes.items():
        if scope not in assets:
            continue
        for ts, state, prev in ch:
            for lv in (1, 2, 3):
                if state >= lv > max(prev, 0):
                    hit = any(
                        e["asset"] == assets[scope] and e["start_ns"] <= ts <= e["end_ns"] + 5 * MIN
                        for e in vac
                    )
                    (in_vacuum if hit else counts)[lv] += 1
    market = sum(1 for ts, state, prev in changes.get("market", []) if state >= 2 > max(prev, 0))
    return {
        "day": labels["day"],
        "variant": variant,
        "book_days": round(len(assets) * days, 2),
        "false": {NAMES[k]: v for k, v in counts.items()},
        "vacuum_window_alarms": {NAMES[k]: v for k, v in in_vacuum.items()},
        "has_vacuum": bool(vac),
        "market_warnings": market,
    }


def real_result(path: Path, out_dir: Path) -> dict[str, Any]:
    alerts = replay_alerts(path, None, "full", out_dir)
    changes = entries(load_events(alerts))
    counts = {1: 0, 2: 0, 3: 0}
    books = 0
    for scope, ch in changes.items():
        if scope.startswith(("asset:", "market")):
            continue
        books += 1
        for _, state, prev in ch:
            for lv in (1, 2, 3):
                if state >= lv > max(prev, 0):
                    counts[lv] += 1
    return {
        "recording": path.name,
        "books": books,
        "entries": {NAMES[k]: v for k, v in counts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--ablations", action="store_true")
    args = parser.parse_args()
    data: Path = args.data
    variants = list(ABLATIONS) if args.ablations else ["full"]
    dirs = sorted(d for d in data.iterdir() if (d / "labels.json").exists())
    jobs = [(d, v) for v in variants for d in dirs]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            pool.submit(replay_alerts, d / "scenario.jsonl.gz", d / "liqmon.toml", v, d): (d, v)
            for d, v in jobs
        }
        for f in concurrent.futures.as_completed(futures):
            d, v = futures[f]
            f.result()
            print(f"replayed {d.name} ({v})", file=sys.stderr)
    results: dict[str, Any] = {"collapse": [], "calm": [], "general": [], "real": []}
    for d, v in jobs:
        kind = (
            "calm"
            if d.name.startswith("calm")
            else ("general" if d.name.startswith("general") else "collapse")
        )
        results[kind].append((calm_result if kind == "calm" else collapse_result)(d, v))
    real_dir = data / "real"
    real_dir.mkdir(exist_ok=True)
    for rec in sorted((ROOT / "tests" / "recordings").glob("*.jsonl.gz")):
        sub = real_dir / rec.name.split(".")[0]
        sub.mkdir(exist_ok=True)
        results["real"].append(real_result(rec, sub))
    print(markdown(results))
    out = HERE / "results" / "eval_score.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


def _m(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}"


def markdown(results: dict[str, Any]) -> str:
    """The README tables: leads (minutes before the trough; negative = after), false alarms."""
    lines = ["| run | variant | market WATCH / WARNING / CRITICAL | ALT1 WARNING | books WARNING >= 2 min "
             "before their trough | median / p10 lead | market NORMAL after 90 % depth |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results["collapse"] + results["general"]:
        m = r.get("market", {})
        alt = r.get("asset:ALT1", r.get("asset:XRP", {}))
        b = r["books"]
        lines.append(
            f"| seed {r['seed']} | {r['variant']} | {_m(m.get('WATCH'))} / {_m(m.get('WARNING'))} / "
            f"{_m(m.get('CRITICAL'))} | {_m(alt.get('WARNING'))} | {b['warning_recall_2min']} of "
            f"{b['n']} | {_m(b['warning_lead_median_min'])} / {_m(b['warning_lead_p10_min'])} | "
            f"{_m(m.get('normal_after_recovery_min'))} |"
        )
    lines += ["", "| calm day | variant | book-days | false WATCH / WARNING / CRITICAL | "
              "alarms in the vacuum-without-crash window | market WARNINGs |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results["calm"]:
        f, v = r["false"], r["vacuum_window_alarms"]
        lines.append(
            f"| {r['day']} | {r['variant']} | {r['book_days']} | {f['WATCH']} / {f['WARNING']} / "
            f"{f['CRITICAL']} | {v['WATCH']} / {v['WARNING']} / {v['CRITICAL']} | "
            f"{r['market_warnings']} |"
        )
    lines += [
        "",
        "| real recording | books | WATCH / WARNING / CRITICAL entries |",
        "|---|---|---|",
    ]
    for r in results["real"]:
        e = r["entries"]
        lines.append(
            f"| {r['recording']} | {r['books']} | {e['WATCH']} / {e['WARNING']} / {e['CRITICAL']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
