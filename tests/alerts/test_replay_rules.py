"""`liqmon replay --alerts-out`: the rule engine on a recording, without delivery, in the
recording's clock, deterministic; rule events beside the score events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import OKX_RECORDING, USDM_RECORDING

RULES = """
[[rules]]
name = "wide_spread"
metric = "spread_bps"
condition = "above"
threshold = 0.5
clear = 0.3
for_s = 2.0
severity = "warning"
category = "spread"

[[rules]]
name = "book_invalid"
metric = "book.valid"
condition = "below"
threshold = 0.5
severity = "critical"
category = "venue_health"
"""


def replay(tmp_path: Path, name: str) -> list[dict[str, object]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = tmp_path / "alerts.toml"
    config.write_text(f'[alerts]\nrules_files = ["{rules}"]\n')
    out = tmp_path / f"{name}.jsonl"
    proc = subprocess.run(
        [
            sys.executable, "-m", "monitor", "replay", str(OKX_RECORDING), str(USDM_RECORDING),
            "--config", str(config), "--alerts-out", str(out),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_replay_writes_rule_events_deterministically(tmp_path: Path) -> None:
    first = replay(tmp_path, "a")
    rules = [e for e in first if e["kind"] == "rule"]
    assert rules, "the rules fired on the recordings"
    for e in rules:
        assert {"ts", "kind", "state", "severity", "scope", "value", "components"} <= set(e)
        assert e["state"] in ("pending", "firing", "resolved")
        scope = e["scope"]
        assert isinstance(scope, dict) and set(scope) == {"venue", "symbol", "asset"}
    by_id: dict[str, list[str]] = {}
    for e in rules:
        by_id.setdefault(str(e["id"]), []).append(str(e["state"]))
    for states in by_id.values():  # each episode: pending, then maybe firing, then resolved
        assert states[0] == "pending"
        assert states[1:] in ([], ["firing"], ["firing", "resolved"])
    # the first recording's books go stale in the silence before the second: they are
    # no data, so the spread alerts of those books are held, never resolved by it
    stale_books = {
        (e["scope"]["venue"], e["scope"]["symbol"])  # type: ignore[index]
        for e in first
        if e["kind"] == "score" and e["state"] == "data"
    }
    assert stale_books
    assert replay(tmp_path, "b") == first  # same recording, same events, same ids
