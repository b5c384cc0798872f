"""docker-compose.yml, checked without a Docker engine: services, ports, environment,
healthchecks, and every setting it gives the daemon against the settings schema."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from monitor.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
_DEFAULTED = re.compile(r"\$\{(?P<name>\w+):-(?P<default>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _interpolate(text: str) -> str:
    """Compose's ${VAR:-default}, with the variable unset (every use must have a default)."""
    assert "$" not in _DEFAULTED.sub("", text), f"a variable without a default: {text}"
    return _DEFAULTED.sub(lambda m: m["default"], text)


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: _interpolate(str(v)) for k, v in service.get("environment", {}).items()}


def _script(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    script: str = command[2]
    assert script.startswith("pip install --quiet /src && ")  # liqmon from the checkout
    return script


def _exec_args(service: dict[str, Any]) -> list[str]:
    """The arguments of the command the service ends with (``exec ...``)."""
    return shlex.split(_script(service).split(" && exec ", 1)[1])


def _liqmon_args(service: dict[str, Any]) -> list[str]:
    args = _exec_args(service)
    assert args[0] == "liqmon"
    return args[1:]


def _generated_configs(service: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    """Config files the service writes before it starts (``python -c "..."``), written
    here by running the same code with the path moved under ``tmp_path``."""
    out: dict[str, Path] = {}
    for code in re.findall(r'python -c "([^"]*)"', _script(service)):
        for target in re.findall(r"open\('([^']+)', 'w'\)", code):
            local = tmp_path / Path(target).name
            done = subprocess.run(
                [sys.executable, "-c", code.replace(target, str(local))],
                cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                env=os.environ | {"PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            out[target] = local
    return out


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path (or volume name)."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = host
    return out


def test_services_profiles_and_the_timescaledb_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # grafana: the optional dashboards (tests/api/test_grafana.py)
    assert set(services) == {"timescaledb", "liqmon", "exchange", "liqmon-demo", "grafana"}
    assert "profiles" not in services["timescaledb"]
    assert services["liqmon"]["profiles"] == ["live"]
    assert services["exchange"]["profiles"] == ["demo"] == services["liqmon-demo"]["profiles"]
    db = services["timescaledb"]
    assert db["image"].startswith("timescale/timescaledb:") and "-pg" in db["image"]
    assert _mounts(db)["/var/lib/postgresql/data"] == "timescaledb-data"
    assert "timescaledb-data" in compose["volumes"] and "liqmon-data" in compose["volumes"]
    assert db["ports"] == ["127.0.0.1:5432:5432"]  # never on every interface
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1].startswith("pg_isready")
    env = _env(db)
    assert f"-U {env['POSTGRES_USER']}" in test[1] and f"-d {env['POSTGRES_DB']}" in test[1]
    for key in ("interval", "timeout", "retries"):
        assert key in db["healthcheck"]


@pytest.mark.parametrize("name", ["liqmon", "liqmon-demo"])
def test_each_daemon_reaches_the_database_with_settings_the_schema_accepts(
    compose: dict[str, Any], name: str, tmp_path: Path
) -> None:
    services = compose["services"]
    daemon, db = services[name], services["timescaledb"]
    assert daemon["depends_on"]["timescaledb"] == {"condition": "service_healthy"}
    env = _env(daemon)
    db_env = _env(db)
    dsn = urlsplit(env["LIQMON_DATABASE__DSN"])
    assert dsn.scheme == "postgresql" and dsn.hostname == "timescaledb" and dsn.port == 5432
    assert dsn.username == db_env["POSTGRES_USER"] and dsn.password == db_env["POSTGRES_PASSWORD"]
    assert dsn.path == f"/{db_env['POSTGRES_DB']}"

    args = _liqmon_args(daemon)
    assert args[0] == "run"
    mounts = _mounts(daemon)
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    assert configs and configs[-1] == "/etc/liqmon/liqmon.toml"
    host_files = []
    generated = _generated_configs(daemon, tmp_path)
    for path in configs:
        if path in generated:  # written by the service before it starts
            host_files.append(generated[path])
        elif path in mounts:  # a file mounted from the checkout
            host_files.append(ROOT / mounts[path])
        else:  # relative to /src, the checkout
            assert mounts["/src"] == "./"
            host_files.append(ROOT / path)
    assert all(f.is_file() for f in host_files)
    # every LIQMON_* variable and every key of the mounted files must be a real setting
    settings = load_settings(host_files, env=env)
    assert settings.database.dsn == env["LIQMON_DATABASE__DSN"]
    assert not settings.database.embedded  # the compose database, never an embedded one
    assert (
        settings.monitor.data_dir in mounts and mounts[settings.monitor.data_dir] == "liqmon-data"
    )
    if name == "liqmon-demo":
        assert all(
            v.ws_url.startswith("ws://127.0.0.1:8765/") for v in settings.enabled_venues().values()
        )
    else:
        assert all(v.ws_url.startswith("wss://") for v in settings.enabled_venues().values())


def test_the_demo_daemon_runs_on_the_local_exchange(compose: dict[str, Any]) -> None:
    services = compose["services"]
    exchange, demo = services["exchange"], services["liqmon-demo"]
    args = _exec_args(exchange)
    # the collapse scenario on the local exchange, on the port the demo config names
    assert args[:3] == ["python", "-m", "feeds.sim.scenario.live"]
    assert args[args.index("--kind") + 1] == "collapse"
    assert args[args.index("--port") + 1] == "8765"
    assert "8765" in " ".join(exchange["healthcheck"]["test"])
    usage = subprocess.run(
        [sys.executable, "-m", "feeds.sim.scenario.live", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert all(flag in usage for flag in args[3:] if flag.startswith("--"))
    assert demo["network_mode"] == "service:exchange"  # the exchange listens on 127.0.0.1
    assert demo["depends_on"]["exchange"] == {"condition": "service_healthy"}
