"""The project refers to nothing outside its repository: no notes, data or paths that a
fresh clone would not have."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "node_modules", "__pycache__", "artifacts"}
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".toml",
    ".txt",
    ".cfg",
    ".ini",
    ".sh",
    ".yml",
    ".yaml",
    ".json",
    ".sql",
    ".html",
    ".js",
}
# written split so that this file does not match itself
OUTSIDE = [
    "../" + "shared",
    "/work" + "/",
    "DESIGN" + ".md",
    "LIQUIDITY" + ".md",
    "venues" + ".md",
    "STYLE" + ".md",
]


def _project_files() -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and (d == ".ci" or not d.startswith("."))]
        for name in names:
            path = Path(folder, name)
            if path.suffix in TEXT_SUFFIXES or name in ("Makefile", "run", "Dockerfile"):
                files.append(path)
    return files


def test_no_file_refers_outside_the_repository() -> None:
    files = _project_files()
    assert len(files) > 50
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if any(marker in line for marker in OUTSIDE)
    ]
    assert not found, "\n".join(found)
