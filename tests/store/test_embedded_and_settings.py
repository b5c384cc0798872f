"""The embedded server's root rule, and the [database] settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.errors import ConfigError, StorageError
from monitor.settings import TimescaleMode, load_settings
from monitor.store.embedded import EmbeddedPostgres, closed_parent

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def closed_dir() -> Iterator[Path]:
    """/tmp/liqmon-closed-XXXX (mode 0700, as mkdtemp makes it) / data."""
    top = Path(tempfile.mkdtemp(prefix="liqmon-closed-", dir="/tmp"))
    yield top / "data"
    shutil.rmtree(top, ignore_errors=True)


def test_closed_parent_names_the_first_directory_others_cannot_enter(closed_dir: Path) -> None:
    assert closed_parent(closed_dir / "postgres") == closed_dir.parent
    assert closed_parent(Path("/tmp/x/postgres")) is None  # /tmp is open


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule is about running as root")
def test_as_root_a_data_dir_under_a_closed_directory_is_refused_not_opened(
    closed_dir: Path,
) -> None:
    mode = closed_dir.parent.stat().st_mode
    with pytest.raises(StorageError, match=str(closed_dir.parent)):
        EmbeddedPostgres(closed_dir / "postgres").start()
    assert closed_dir.parent.stat().st_mode == mode  # nothing was chmod-ed
    env = os.environ | {"LIQMON_DATABASE__DSN": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "query", "ranking", "--at", "0", "--data-dir", str(closed_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "open_parent_dirs" in proc.stderr and "Traceback" not in proc.stderr


def test_database_settings_from_the_environment_and_their_checks() -> None:
    settings = load_settings(
        env={
            "LIQMON_DATABASE__DSN": "postgresql://u:p@db/liqmon",
            "LIQMON_DATABASE__TIMESCALE": "off",
        }
    )
    assert settings.database.dsn == "postgresql://u:p@db/liqmon"
    assert settings.database.timescale is TimescaleMode.OFF and settings.database.enabled
    assert not load_settings(env={"LIQMON_DATABASE__EMBEDDED": "false"}).database.enabled
    with pytest.raises(ConfigError, match=r"database\.timescale"):
        load_settings(env={"LIQMON_DATABASE__TIMESCALE": "maybe"})
    with pytest.raises(ConfigError, match=r"database\.memory_rows"):
        load_settings(
            env={"LIQMON_DATABASE__MEMORY_ROWS": "10", "LIQMON_DATABASE__BATCH_ROWS": "100"}
        )
    with pytest.raises(ConfigError, match=r"database\.batch_rows"):
        load_settings(env={"LIQMON_DATABASE__BATCH_ROWS": "0"})
