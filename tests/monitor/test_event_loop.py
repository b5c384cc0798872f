"""The live event loop (``[monitor] event_loop``) and the batch window's settings."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from monitor.cli import loop_runner, main
from monitor.errors import ConfigError
from monitor.settings import load_settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures logging onto the captured stderr, which pytest closes after the
    test: later tests that log would write to a closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_runs_on_uvloop_where_it_is_installed() -> None:
    assert loop_runner("auto")(_loop_module()) == "uvloop"
    assert loop_runner("uvloop")(_loop_module()) == "uvloop"


def test_asyncio_runs_on_the_standard_loop() -> None:
    assert loop_runner("asyncio")(_loop_module()) == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_runner("auto")(_loop_module()) == "asyncio"
    with pytest.raises(ConfigError, match=r"monitor\.event_loop: uvloop is not installed"):
        loop_runner("uvloop")


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(env={})
    assert settings.monitor.event_loop == "auto"
    assert settings.connection.batch_window_ms == 0.0
    assert settings.connection.batch_min_frames == 32
    assert settings.connection.coalesce_bytes == 65536
    assert settings.connection.coalesce_ms == 250.0


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[monitor]\nevent_loop = "trio"\n', "monitor.event_loop"),
        ("[connection]\nbatch_window_ms = -1\n", "connection.batch_window_ms"),
        ("[connection]\nbatch_window_ms = 250\n", "connection.batch_window_ms"),
        ("[connection]\nbatch_min_frames = 0\n", "connection.batch_min_frames"),
        ("[connection]\ncoalesce_bytes = -1\n", "connection.coalesce_bytes"),
        ("[connection]\ncoalesce_bytes = 4194304\n", "connection.coalesce_bytes"),
        ("[connection]\ncoalesce_ms = 5000\n", "connection.coalesce_ms"),
        ('[connection]\ncoalesce_ms = "fast"\n', "connection.coalesce_ms"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=where):
        load_settings([path], env={})


def test_run_with_uvloop_missing_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    path = tmp_path / "loop.toml"
    path.write_text('[monitor]\nevent_loop = "uvloop"\n')
    code = main(["run", "--config", str(path), "--no-store"])
    err = capsys.readouterr().err
    assert code == 2
    assert "monitor.event_loop: uvloop is not installed" in err
    assert "Traceback" not in err
