"""make refuses an interpreter older than Python 3.11 before creating anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("target", ["run", "test", "bench"])
def test_an_old_python_stops_make_with_a_message(tmp_path: Path, target: str) -> None:
    old = tmp_path / "python3.9"
    # an interpreter that says it is 3.9 and fails the version check, as a real 3.9 would
    old.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.9.18"; exit 0; fi\nexit 1\n'
    )
    old.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-C", str(ROOT), target, f"PYTHON={old}", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert f"liqmon needs Python >= 3.11, but '{old}' is Python 3.9.18." in proc.stderr
    assert f"make {target} PYTHON=python3.11" in proc.stderr
    assert not venv.exists()


def test_a_missing_python_stops_make_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "run", "PYTHON=no-such-python3", f"VENV={tmp_path / 'v'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "liqmon needs Python >= 3.11: 'no-such-python3' was not found." in proc.stderr
