"""``liqmon demo`` end to end without a terminal: plain lines, a summary, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def test_demo_runs_non_tty_and_summarises(tmp_path: Path) -> None:
    # a user config is honoured (merged over the demo's): here a log level
    user = tmp_path / "mine.toml"
    user.write_text('[monitor]\nlog_level = "error"\n')
    started = time.monotonic()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "monitor", "demo", "--speed", "200", "--hours", "2"),
            *("--assets", "BTC,ALT1", "--config", str(user)),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=170,
        cwd=os.getcwd(),
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("liqmon demo: 10/11 collapse")
    phases = [line.split("phase: ")[1] for line in lines if "== phase:" in line]
    # the phases as the monitor's ticks saw them go by, in order
    assert phases[-4:] == ["mm withdrawal", "cascade", "recovery", "wrapped depeg"], phases
    summary = [line for line in lines if line.startswith("summary:")]
    assert summary and "trough at" in summary[0]
    assert "Traceback" not in done.stderr
    assert elapsed < 150, elapsed
