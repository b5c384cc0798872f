"""``liqmon demo --config FILE`` with the issue's webhook subscription form: a receiver on
loopback gets signed alerts for the collapsing assets before the trough, and resolved
events after recovery."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.alerts.receivers import WebhookReceiver

pytestmark = pytest.mark.integration

CONFIG = """\
[alerts]
allow_private_urls = true          # loopback/private webhook targets (demo, tests)

[[subscriptions]]
name = "ops"
channel = "webhook"                # or "telegram" with chat_id = "..."
url = "http://127.0.0.1:{port}/hook"
secret_env = "LIQMON_HOOK_SECRET"  # HMAC key, read from this environment variable
min_severity = "warning"
"""
COLLAPSING = {"BTC", "ETH", "SOL", "XRP", "ALT1"}


async def test_demo_delivers_signed_alerts_before_the_trough_and_resolved_after(
    tmp_path: Path,
) -> None:
    receiver = WebhookReceiver(b"demo-secret")
    await receiver.start()
    config = tmp_path / "alerts.toml"
    config.write_text(CONFIG.format(port=receiver.port))
    env = {**os.environ, "LIQMON_HOOK_SECRET": "demo-secret", "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "monitor", "demo", "--config", str(config)),
        *("--speed", "60", "--hours", "2"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    before_cascade: list[dict[str, object]] | None = None
    lines: list[str] = []
    try:
        async with asyncio.timeout(400):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line)
                if "== phase: cascade" in line and before_cascade is None:
                    before_cascade = list(receiver.bodies)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await receiver.stop()
    assert receiver.bad_signatures == 0 and receiver.duplicates == 0
    assert before_cascade is not None, "".join(lines[-20:])
    # the cascade (05:10 HKT) is 5 min of market before the trough (05:15): a WARNING or
    # CRITICAL for a collapsing asset (vacuum score, 1% depth collapse, dislocation...)
    # was already received by then
    early = [
        b
        for b in before_cascade
        if b["state"] == "firing"
        and b["severity"] in ("warning", "critical")
        and b["scope"]["asset"] in COLLAPSING  # type: ignore[index]
    ]
    assert early, [b["rule"] for b in before_cascade] + lines[-12:]
    sys.stderr.write(
        "received before the cascade: "
        + ", ".join(sorted({f"{b['rule']}:{b['scope']['asset']}" for b in early}))  # type: ignore[index]
        + "\n"
    )
    resolved = {b["id"] for b in receiver.bodies if b["state"] == "resolved"}
    fired = {b["id"] for b in receiver.bodies if b["state"] == "firing"}
    assert resolved and resolved <= fired  # recovery: resolved, only for what fired
    for body in receiver.bodies:
        assert set(body) >= {"id", "rule", "state", "severity", "scope", "value", "starts_at"}
