"""docker-compose.yml, checked without a Docker engine: services, ports, environment,
healthchecks, and every setting it gives the daemon against the settings schema."""

from __future__ import annotations

import re
import shlex
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


def _liqmon_args(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    script = command[2]
    assert script.startswith("pip install --quiet /src && exec liqmon ")
    return shlex.split(script.split("exec liqmon ", 1)[1])


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
    compose: dict[str, Any], name: str
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
    for path in configs:
        if path in mounts:  # a file mounted from the checkout
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
    args = _liqmon_args(exchange)
    assert args[0] == "sim" and args[args.index("--port") + 1] == "8765"
    assert "8765" in " ".join(exchange["healthcheck"]["test"])
    assert demo["network_mode"] == "service:exchange"  # the exchange listens on 127.0.0.1
    assert demo["depends_on"]["exchange"] == {"condition": "service_healthy"}
    load_settings([ROOT / args[args.index("--config") + 1]], env=_env(exchange))
