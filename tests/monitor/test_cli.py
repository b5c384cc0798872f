"""The command line refuses bad configuration and bad arguments with clear messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def liqmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_invalid_config_file_stops_run_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[monitor]\ntick_ms = 'fast'\n")
    proc = liqmon("run", "--config", str(bad))
    assert proc.returncode == 2
    assert "bad.toml" in proc.stderr and "monitor.tick_ms" in proc.stderr


def test_invalid_environment_override_stops_run(tmp_path: Path) -> None:
    env = dict(os.environ, LIQMON_MONITOR__BOOK_CAPACITY="lots")
    proc = liqmon("run", env=env)
    assert proc.returncode == 2
    assert "LIQMON_MONITOR__BOOK_CAPACITY" in proc.stderr


def test_record_rejects_an_unknown_venue() -> None:
    proc = liqmon("record", "--venue", "nowhere", "--symbols", "BTCUSDT", "--out", "/tmp/x.jsonl")
    assert proc.returncode == 2
    assert "unknown venue" in proc.stderr


def test_help_lists_the_three_commands() -> None:
    proc = liqmon("--help")
    assert proc.returncode == 0
    assert all(cmd in proc.stdout for cmd in ("run", "replay", "record"))
