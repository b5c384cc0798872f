"""``liqmon sim`` and ``liqmon run --config <sim config>`` as a user runs them: two processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from feeds.sim.exchange import settings_toml
from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.settings import load_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SIM_CONFIG = ROOT / "config" / "sim.toml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_config_sim_toml_points_every_venue_at_the_local_exchange() -> None:
    settings = load_settings([SIM_CONFIG], env={})
    assert set(settings.enabled_venues()) == set(Venue)
    for table in settings.venues.values():
        assert table.ws_url.startswith("ws://127.0.0.1:8765/")
        assert table.rest_url.startswith("http://127.0.0.1:8765/")
    # it is exactly what feeds.sim.exchange writes for the default symbols the cache knows
    defaults = load_settings([], env={})
    registry = InstrumentRegistry.load_cached(list(defaults.venues))
    symbols = {
        v: [s for s in t.symbols if registry.get(v, s) is not None]
        for v, t in defaults.venues.items()
    }
    assert SIM_CONFIG.read_text() == settings_toml(
        symbols, extra='[monitor]\nlog_format = "console"\n'
    )


def test_liqmon_run_against_liqmon_sim_gets_every_book_valid(tmp_path: Path) -> None:
    port = free_port()
    text = SIM_CONFIG.read_text().replace(":8765/", f":{port}/")
    text = text.replace('log_format = "console"', 'log_format = "json"\ntick_ms = 250')
    text += f'\n[api]\nlisten = "127.0.0.1:{free_port()}"\n'  # never a port in use
    config = tmp_path / "sim.toml"
    config.write_text(text)
    expected = {
        (v.value, s)
        for v, t in load_settings([config], env={}).enabled_venues().items()
        for s in t.symbols
    }
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    sim = subprocess.Popen(
        [sys.executable, "-m", "monitor", "sim", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = None
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the exchange listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert sim.poll() is None, sim.stderr.read() if sim.stderr else ""
                assert time.monotonic() < deadline, "liqmon sim did not start"
                time.sleep(0.2)
        errors = (tmp_path / "run.err").open("w")
        run = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config), "--no-store"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        # the status liqmon run prints every few seconds: "<n> books: <n> live, ..." and a
        # line per venue with its valid/total books
        want = f"{len(expected)} books: {len(expected)} live"
        per_venue = Counter(venue for venue, _ in expected)
        assert run.stdout is not None
        deadline = time.monotonic() + 90
        block: list[str] = []
        seen_all = False
        for line in run.stdout:
            if time.monotonic() > deadline:
                break
            if line.strip():
                block.append(line.rstrip())
                continue
            if block and want in block[0]:
                rows = {r.split()[0]: r.split()[1] for r in block[2:] if not r.startswith(" ")}
                assert all(rows.get(v) == f"{n}/{n}" for v, n in per_venue.items()), block
                seen_all = True
                break
            block = []
        errors.flush()
        assert seen_all, (block, (tmp_path / "run.err").read_text()[-2000:])
    finally:
        for process in (run, sim):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert run is not None and run.returncode == 0
    assert sim.returncode == 0
    # the default event loop is uvloop (a dependency); the batch window is off by default,
    # the read coalescer on (Linux)
    start = next(
        json.loads(line)
        for line in (tmp_path / "run.err").read_text().splitlines()
        if '"daemon.start"' in line
    )
    assert start["event_loop"] == "uvloop"
    assert start["batch_window_ms"] == 0.0
    assert start["coalesce_bytes"] == (65536 if sys.platform.startswith("linux") else 0)
    assert start["coalesce_ms"] == 250.0
