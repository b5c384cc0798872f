"""Alert rules through the API, against the real server, daemon and embedded PostgreSQL:
a rule created over HTTP fires on the next ticks and is delivered to a webhook receiver on
loopback; replaced, it carries its alert over (nothing sent again); it survives a restart
(loaded at start, its firing alert taken over, not sent twice); deleted, its alert
resolves once, with the reason. Config rules are read-only (409); bad requests are 400
naming the field, 401 without a token, 404 for an unknown name; never a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from alerts.subscriptions import Channel, SubscriptionSpec
from monitor.domain import Venue
from tests.alerts.receivers import WebhookReceiver
from tests.api.conftest import TOKEN, Stack, api_stack
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

GOOD = {"Authorization": f"Bearer {TOKEN}"}
BOOKS: dict[Venue, tuple[str, ...]] = {Venue.COINBASE: ("BTC-USD",), Venue.BINANCE: ("BTCUSDT",)}
CONFIG_RULES = (
    '[[rules]]\nname = "config_calm"\nmetric = "spread_bps"\ncondition = "above"\n'
    'threshold = 1e9\nseverity = "warning"\n'
)
RULE = {
    "name": "api_wide_spread",
    "metric": "spread_bps",
    "condition": "above",
    "threshold": 0.0,  # spreads are always > 0: fires on the next tick
    "severity": "warning",
    "scope": {"venue": "coinbase"},
    "summary": "{venue} {symbol}: spread {value} bp",
    "labels": {"team": "desk"},
}
FAST = {"group_interval_s": 0.0, "group_wait_s": 0.0}


async def call(stack: Stack, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with stack.http.request(method, stack.url + path, **kw) as r:
        assert r.content_type == "application/json", (r.status, await r.text())
        return r.status, await r.json()


async def until_state(stack: Stack, name: str, field: str, count: int) -> dict[str, Any]:
    async with asyncio.timeout(20.0):
        while True:
            status, rule = await call(stack, "GET", f"/api/v1/rules/{name}")
            if status == 200 and rule[field] == count:
                return rule  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)  # polled: the next ticks


async def test_a_rule_made_through_the_api_fires_is_delivered_survives_a_restart_and_is_removed(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    receiver: WebhookReceiver,
) -> None:
    sub = SubscriptionSpec(name="ops", channel=Channel.WEBHOOK, url=receiver.url, rules=("api_*",))

    def run(name: str) -> Any:
        (tmp_path / name).mkdir()
        return api_stack(
            tmp_path / name, books=BOOKS, dsn=db_dsn, subscriptions=(sub,),
            rules_toml=CONFIG_RULES, alerts=FAST,
        )  # fmt: skip

    async with run("first") as first:
        status, listed = await call(first, "GET", "/api/v1/rules")
        assert status == 200
        assert [(r["name"], r["source"]) for r in listed["rules"]] == [("config_calm", "config")]
        assert await call(first, "POST", "/api/v1/rules", json=RULE) == (
            401,
            {
                "error": {
                    "status": 401,
                    "message": "a valid bearer token is required (this endpoint changes state)",
                }
            },
        )
        status, made = await call(first, "POST", "/api/v1/rules", json=RULE, headers=GOOD)
        assert status == 201, made
        assert made["source"] == "api" and made["scope"]["venue"] == "coinbase"
        assert made["threshold"] == 0.0 and made["labels"] == {"team": "desk"}
        # the next ticks cross it: firing, stored, delivered to the receiver
        await receiver.wait_for(1, timeout_s=30.0)
        (fired,) = receiver.bodies
        assert fired["rule"] == "api_wide_spread" and fired["state"] == "firing"
        assert fired["scope"]["venue"] == "coinbase" and "spread" in fired["summary"]
        await until_state(first, "api_wide_spread", "firing", 1)
        status, alert = await call(first, "GET", f"/api/v1/alerts/{fired['id']}")
        assert status == 200 and alert["state"] == "firing"
        # the same name again, or a config rule's name: 409
        status, err = await call(first, "POST", "/api/v1/rules", json=RULE, headers=GOOD)
        assert status == 409 and err["error"]["parameter"] == "name", err
        taken = RULE | {"name": "config_calm"}
        status, err = await call(first, "POST", "/api/v1/rules", json=taken, headers=GOOD)
        assert status == 409 and "read-only" in err["error"]["message"]
        for method in ("PUT", "DELETE"):
            status, err = await call(
                first, method, "/api/v1/rules/config_calm", json=taken, headers=GOOD
            )
            assert status == 409 and "config rule" in err["error"]["message"], err
        # replaced: a new threshold still crossed, the alert carries over (not sent again)
        changed = RULE | {"threshold": -1.0, "summary": "wide {value}"}
        status, put = await call(
            first, "PUT", "/api/v1/rules/api_wide_spread", json=changed, headers=GOOD
        )
        assert status == 200 and put["threshold"] == -1.0 and put["summary"] == "wide {value}"
        await until_state(first, "api_wide_spread", "firing", 1)
        status, alert = await call(first, "GET", f"/api/v1/alerts/{fired['id']}")
        assert status == 200 and alert["state"] == "firing"
    assert len(receiver.bodies) == 1
    conn = await asyncpg.connect(db_dsn)
    try:
        stored = await conn.fetchval(
            "SELECT spec->>'threshold' FROM alert_rules WHERE name = 'api_wide_spread'"
        )
        assert float(stored) == -1.0
    finally:
        await conn.close()

    async with run("second") as second:
        # loaded at start, with its replacement; its firing alert taken over (same id)
        status, rule = await call(second, "GET", "/api/v1/rules/api_wide_spread")
        assert status == 200 and rule["source"] == "api" and rule["threshold"] == -1.0
        await until_state(second, "api_wide_spread", "firing", 1)
        status, alert = await call(second, "GET", f"/api/v1/alerts/{fired['id']}")
        assert status == 200 and alert["state"] == "firing"
        # removed: its alert resolves at the next tick, once, with the reason
        status, gone = await call(second, "DELETE", "/api/v1/rules/api_wide_spread", headers=GOOD)
        assert status == 200 and gone == {"deleted": "api_wide_spread", "firing_resolved": 1}
        await receiver.wait_for(2, timeout_s=30.0)
        resolved = receiver.bodies[1]
        assert resolved["id"] == fired["id"] and resolved["state"] == "resolved"
        assert resolved["reason"] == "rule_removed" and resolved["ends_at"] is not None
        status, _ = await call(second, "GET", "/api/v1/rules/api_wide_spread")
        assert status == 404
        status, listed = await call(second, "GET", "/api/v1/rules", params={"source": "api"})
        assert status == 200 and listed["rules"] == []
        status, alert = await call(second, "GET", f"/api/v1/alerts/{fired['id']}")
        assert status == 200 and alert["state"] == "resolved"
    # one firing, one resolved: nothing sent twice, no second firing after the restart
    assert [b["state"] for b in receiver.bodies] == ["firing", "resolved"]
    assert receiver.duplicates == 0
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM alert_rules") == 0
    finally:
        await conn.close()


BAD_BODIES = [
    pytest.param(RULE | {"threshold": "high"}, "threshold", "Expected `float`", id="type"),
    pytest.param(RULE | {"condition": "over"}, "condition", "Invalid enum value", id="enum"),
    pytest.param(RULE | {"metric": "depth"}, "metric", "unknown metric 'depth'", id="metric"),
    pytest.param(RULE | {"colour": "red"}, "colour", "unknown field `colour`", id="unknown"),
    pytest.param(
        {k: v for k, v in RULE.items() if k != "metric"}, "metric", "missing required field",
        id="missing",
    ),
    pytest.param(RULE | {"name": "Bad Name"}, "name", "matching regex", id="name"),
    pytest.param(RULE | {"severity": "page"}, "severity", "matching regex", id="severity"),
    pytest.param(RULE | {"for_s": -1}, "for_s", ">= 0", id="negative"),
    pytest.param(
        RULE | {"condition": "drop_pct", "threshold": 0}, "threshold", "percent > 0",
        id="change rule",
    ),
    pytest.param(RULE | {"summary": "{nope}"}, "summary", "not a usable template", id="summary"),
    pytest.param(RULE | {"scope": {"venu": "x"}}, "scope", "unknown field `venu`", id="scope"),
    pytest.param(RULE | {"category": "a\x00b"}, "category", "NUL", id="nul"),
    pytest.param([RULE], "body", "Expected `object`", id="not an object"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field", "text"), BAD_BODIES)
async def test_bad_rule_bodies_are_400_naming_the_field(
    stack: Stack, body: Any, field: str, text: str
) -> None:
    status, err = await call(stack, "POST", "/api/v1/rules", json=body, headers=GOOD)
    assert status == 400, err
    assert err["error"]["parameter"] == field and text in err["error"]["message"], err
    assert err["error"]["message"].startswith(f"invalid rule: {field}: "), err


async def test_unknown_names_bad_json_and_tokens(stack: Stack) -> None:
    for method in ("GET", "PUT", "DELETE"):
        kw: dict[str, Any] = {"headers": GOOD}
        if method == "PUT":
            kw["json"] = RULE | {"name": "nope"}
        status, err = await call(stack, method, "/api/v1/rules/nope", **kw)
        assert status == 404 and err["error"]["parameter"] == "name", (method, err)
    for method in ("PUT", "DELETE"):
        status, _ = await call(stack, method, "/api/v1/rules/nope", json=RULE)
        assert status == 401
    status, err = await call(
        stack, "POST", "/api/v1/rules", data=b"{not json", headers=GOOD | {"Content-Type": "x"}
    )
    assert status == 400 and err["error"]["parameter"] == "body"
    status, err = await call(stack, "PUT", "/api/v1/rules/other_name", json=RULE, headers=GOOD)
    assert status == 400 and "not the path's" in err["error"]["message"]
    status, err = await call(stack, "GET", "/api/v1/rules", params={"source": "toml"})
    assert status == 400 and err["error"]["parameter"] == "source"
    # without a database (this stack): kept in memory, still applied at the next tick
    status, _ = await call(stack, "POST", "/api/v1/rules", json=RULE, headers=GOOD)
    assert status == 201
    rule = await until_state(stack, "api_wide_spread", "firing", 2)  # BTC-USD, SOL-USD
    assert rule["pending"] == 0
    status, gone = await call(stack, "DELETE", "/api/v1/rules/api_wide_spread", headers=GOOD)
    assert status == 200 and gone["firing_resolved"] == 2


def liqmon_rules(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "rules", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": os.getcwd(), "LIQMON_DATABASE__DSN": dsn},
    )  # fmt: skip


SHIPPED = "vacuum_asset_watch"  # a rule of config/rules.toml
CLI_RULES = """\
[[rules]]
name = "cli_thin_book"
metric = "depth_usd.1.total"
condition = "below"
threshold = 1e12            # every book is thinner: fires on the next tick
severity = "warning"
scope = { venue = "coinbase" }
"""


async def test_liqmon_rules_add_list_remove_reach_a_running_daemon(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    receiver: WebhookReceiver,
) -> None:
    sub = SubscriptionSpec(name="ops", channel=Channel.WEBHOOK, url=receiver.url)
    rules = tmp_path / "mine.toml"
    rules.write_text(CLI_RULES)
    async with api_stack(
        tmp_path, books=BOOKS, dsn=db_dsn, subscriptions=(sub,), rules_toml=CONFIG_RULES,
        alerts=FAST,
    ) as stack:  # fmt: skip
        added = await asyncio.to_thread(liqmon_rules, "add", str(rules), dsn=db_dsn)
        assert added.returncode == 0 and added.stdout == "added cli_thin_book\n", added.stderr
        # the running daemon reads the stored rules every few seconds: it fires, delivered
        await receiver.wait_for(1, timeout_s=30.0)
        assert receiver.bodies[0]["rule"] == "cli_thin_book"
        status, rule = await call(stack, "GET", "/api/v1/rules/cli_thin_book")
        assert status == 200 and rule["source"] == "api"
        listed = await asyncio.to_thread(liqmon_rules, "list", dsn=db_dsn)
        assert listed.returncode == 0
        rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
        # the CLI reads the shipped config (this stack's config rule is its own)
        assert rows[SHIPPED].endswith("config") and rows["cli_thin_book"].endswith("stored")
        again = await asyncio.to_thread(liqmon_rules, "add", str(rules), dsn=db_dsn)
        assert again.returncode == 2 and "--replace" in again.stderr
        (tmp_path / "taken.toml").write_text(CLI_RULES.replace("cli_thin_book", SHIPPED))
        taken = await asyncio.to_thread(
            liqmon_rules, "add", str(tmp_path / "taken.toml"), dsn=db_dsn
        )
        assert taken.returncode == 2 and "is a config rule" in taken.stderr
        (tmp_path / "bad.toml").write_text(CLI_RULES.replace("depth_usd.1.total", "depth"))
        bad = await asyncio.to_thread(liqmon_rules, "add", str(tmp_path / "bad.toml"), dsn=db_dsn)
        assert bad.returncode == 2 and "unknown metric 'depth'" in bad.stderr
        for result in (again, taken, bad):
            assert "Traceback" not in result.stderr
            assert result.stderr.splitlines()[-1].startswith("liqmon: ")  # one line (and logs)
        removed = await asyncio.to_thread(liqmon_rules, "remove", "cli_thin_book", dsn=db_dsn)
        assert removed.returncode == 0 and removed.stdout == "removed cli_thin_book\n"
        await receiver.wait_for(2, timeout_s=30.0)
        assert receiver.bodies[1]["state"] == "resolved"
        assert receiver.bodies[1]["reason"] == "rule_removed"
        status, _ = await call(stack, "GET", "/api/v1/rules/cli_thin_book")
        assert status == 404
    gone = await asyncio.to_thread(liqmon_rules, "remove", "cli_thin_book", dsn=db_dsn)
    assert gone.returncode == 2 and "no stored rule" in gone.stderr
