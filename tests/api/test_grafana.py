"""Grafana, checked without a Docker engine: the optional compose service, its provisioned
datasource, and the liquidity dashboard's SQL against the schema - every table and column it
names exists in the migrations, and every query plans on a freshly migrated PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from monitor.settings import TimescaleMode
from monitor.store.migrate import migrate
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "liquidity.json"
MIGRATIONS = ROOT / "monitor" / "store" / "migrations"


def _schema() -> dict[str, set[str]]:
    """Tables and their columns, from the CREATE TABLE statements of the migrations."""
    tables: dict[str, set[str]] = {}
    for path in sorted(MIGRATIONS.glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*?)\n\);", text, re.S):
            columns = {
                line.split()[0]
                for line in m.group(2).splitlines()
                if line.strip() and not line.strip().upper().startswith(("UNIQUE", "PRIMARY"))
            }
            tables[m.group(1)] = columns
    return tables


def _queries(dashboard: dict[str, Any]) -> list[str]:
    out = [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", [])]
    out += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return out


def _expand(sql: str) -> str:
    """Grafana's macros and variables, as Grafana would expand them."""
    sql = re.sub(
        r"\$__timeGroupAlias\((\w+(?:\.\w+)?), \$__interval\)",
        r"date_bin('1 minute', \1, timestamptz 'epoch') AS time",
        sql,
    )
    sql = re.sub(
        r"\$__timeFilter\((\w+(?:\.\w+)?)\)",
        r"\1 BETWEEN now() - interval '6 hours' AND now()",
        sql,
    )
    return sql.replace("$asset", "BTC")


def test_dashboard_sql_names_only_tables_and_columns_of_the_schema() -> None:
    schema = _schema()
    assert {"book_metrics", "asset_metrics", "score_samples", "venue_health"} <= set(schema)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) >= 8
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("depth", "dislocation", "basis", "score", "components", "venue health"):
        assert topic in titles, topic
    for sql in queries:
        tables = re.findall(r"\bFROM\s+(\w+)", sql) + re.findall(r",\s*(\w+)\s+\w+\s*,", sql)
        tables = [t for t in tables if t in schema or not t.startswith("jsonb")]
        assert tables and all(t in schema for t in tables), (tables, sql)
        columns = set().union(*(schema[t] for t in tables))
        # every bare or alias-qualified name before an operator/comma that is a column
        # candidate: identifiers compared with the schema (SQL words and functions aside)
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "''", _expand(sql))  # literals and quoted names out
        words = set(re.findall(r"(?<![$\w.])([a-z_][a-z0-9_]*)(?![\w(])", bare))
        aliases = set(re.findall(r"\bAS\s+(\w+)", sql)) | set(
            re.findall(r"\b(\w+)\s*,\s*jsonb", sql)
        )
        aliases |= set(re.findall(r"\)\s+AS\s+(\w+)", sql)) | {"a", "s", "v", "c", "time", "epoch"}
        sql_words = {
            "select", "from", "where", "and", "or", "not", "as", "group", "by", "order", "desc",
            "limit", "distinct", "is", "null", "between", "now", "interval", "timestamptz",
            "float8", "int", "key", "value", "on", "in",
        }  # fmt: skip
        unknown = {w for w in words if w not in columns | aliases | sql_words | set(tables)}
        assert not unknown, (unknown, sql)


@pytest.mark.integration
async def test_dashboard_sql_plans_on_the_migrated_schema(db_dsn: str) -> None:  # noqa: F811
    conn = await asyncpg.connect(db_dsn)
    try:
        await migrate(conn, timescale=TimescaleMode.OFF)
        for sql in _queries(json.loads(DASHBOARD.read_text())):
            await conn.execute(f"EXPLAIN {_expand(sql)}")  # raises on a missing table/column
    finally:
        await conn.close()


def test_compose_runs_grafana_as_an_optional_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert grafana["profiles"] == ["grafana"]  # optional: only with --profile grafana
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", grafana["image"])  # pinned
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert grafana["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    assert (ROOT / mounts["/var/lib/grafana/dashboards"]).resolve() == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/" + DASHBOARD.name
    # the datasource points at the compose database with the compose credentials
    db = compose["services"]["timescaledb"]
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/liqmon.yml").read_text())
    (ds,) = source["datasources"]
    assert ds["url"] == "timescaledb:5432" and ds["user"] == db["environment"]["POSTGRES_USER"]
    assert ds["jsonData"]["database"] == db["environment"]["POSTGRES_DB"]
    assert ds["secureJsonData"]["password"] == "$LIQMON_DB_PASSWORD"
    assert "LIQMON_DB_PASSWORD" in grafana["environment"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {ds["uid"]}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/liqmon.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    # the API's port is published for the page, on loopback only
    assert "127.0.0.1:8080:8080" in compose["services"]["liqmon"]["ports"]
