"""An installed liqmon (a built wheel, not the checkout) works from any directory.

The package is built and installed into a fresh venv without the network: no build
isolation (the running environment's setuptools builds it, hence ``setuptools`` in the
``test`` extra), no dependencies fetched (the venv sees the running environment's
packages through a ``.pth`` line, after its own site-packages so the installed liqmon
wins over a checkout or editable install).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import OKX_RECORDING

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "pyproject.toml",
    "setup.py",
    "README.md",
    "LICENSE",
    "monitor",
    "feeds",
    "alerts",
    "config",
)

pytestmark = pytest.mark.slow


def _run(
    args: list[str | Path], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"  # never the network
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a venv holding liqmon installed from a copy of this checkout."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    venv = tmp / "venv"
    # no pip (nor the setuptools it bundles) of its own: the running environment's pip and
    # setuptools install into it
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    assert made.returncode == 0, made.stderr
    inner = _run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        cwd=tmp,
    )
    # the running environment's packages (numpy, numba, setuptools...) after the venv's own
    Path(inner.stdout.strip(), "zz_parent_env.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    pip = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            src,
        ],
        cwd=tmp,
    )
    assert pip.returncode == 0, (
        f"pip install failed (needs setuptools>=77: pip install -e '.[test]'):\n{pip.stdout}\n{pip.stderr}"
    )
    # a newcomer's install says nothing alarming about liqmon's own packaging
    assert "Package would be ignored" not in pip.stdout + pip.stderr
    return venv / "bin"


def test_version_from_another_directory(installed: Path, tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = _run([installed / "liqmon", "--version"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"liqmon {version}"


def test_replay_from_another_directory_uses_the_installed_config(
    installed: Path, tmp_path: Path
) -> None:
    metrics = tmp_path / "m.jsonl"
    proc = _run(
        [installed / "liqmon", "replay", OKX_RECORDING, "--metrics-out", metrics], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows = [row for row in lines if row["kind"] == "book"]
    assert rows and {row["venue"] for row in rows} == {"okx"}
    assert any(row["valid"] for row in rows)
    # the installed copy has never compiled its kernels: the user is told why it waits
    assert "compiling kernels (first run only" in proc.stderr
    again = _run([installed / "liqmon", "replay", OKX_RECORDING], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "compiling kernels" not in again.stderr  # once: the cache is warm now


def test_shipped_configs_resolve_from_another_directory(installed: Path, tmp_path: Path) -> None:
    code = (
        "from pathlib import Path; import monitor.settings as s; "
        "print(s.DEFAULT_CONFIG); print(s.resolve_config_path(Path('config/sim.toml'))); "
        "print(len(s.load_settings([Path('config/sim.toml')], env={}).enabled_venues()))"
    )
    proc = _run([installed / "python", "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    default, sim, enabled = proc.stdout.split()
    assert "site-packages" in default and default.endswith("monitor/config/default.toml")
    assert "site-packages" in sim and sim.endswith("monitor/config/sim.toml")
    assert int(enabled) > 0


def test_the_page_is_installed(installed: Path, tmp_path: Path) -> None:
    """The page and its vendored chart library ship with the package (`liqmon run` serves
    them from the installed copy)."""
    code = (
        "from monitor.api.app import static_dir; d = static_dir(); "
        "print(d); print(*sorted(p.name for p in d.rglob('*') if p.is_file()))"
    )
    proc = _run([installed / "python", "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    where, files = proc.stdout.splitlines()
    assert "site-packages" in where
    for name in ("index.html", "app.js", "style.css", "uPlot.iife.min.js", "uPlot.LICENSE"):
        assert name in files.split(), files
