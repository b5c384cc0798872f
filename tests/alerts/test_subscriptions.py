"""Subscriptions: the config form exactly as the issue writes it, URL validation, quiet
hours, matching; `liqmon subscriptions list|add|remove` against the embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.subscriptions import Channel, SubscriptionSpec, url_problem
from monitor.errors import ConfigError
from monitor.settings import load_settings
from tests.store.conftest import open_tmp_dir

ISSUE_FORM = """\
[alerts]
allow_private_urls = true          # loopback/private webhook targets (demo, tests)

[[subscriptions]]
name = "ops"
channel = "webhook"                # or "telegram" with chat_id = "..."
url = "http://127.0.0.1:9000/hook"
secret_env = "LIQMON_HOOK_SECRET"  # HMAC key, read from this environment variable
min_severity = "warning"
"""


def test_the_issue_config_form_loads(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(ISSUE_FORM)
    settings = load_settings([path])
    assert settings.alerts.allow_private_urls
    (sub,) = settings.subscriptions
    assert (sub.name, sub.channel, sub.url, sub.secret_env, sub.min_severity) == (
        "ops", Channel.WEBHOOK, "http://127.0.0.1:9000/hook", "LIQMON_HOOK_SECRET", "warning",
    )  # fmt: skip


def test_loopback_refused_without_allow_private_urls_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(ISSUE_FORM.replace("allow_private_urls = true ", "allow_private_urls = false"))
    with pytest.raises(ConfigError) as info:
        load_settings([path])
    assert "subscriptions[0].url" in str(info.value) and "loopback" in str(info.value)


@pytest.mark.parametrize(
    ("url", "allowed", "refused"),
    [
        ("https://hooks.example.com/x", True, True),
        ("http://8.8.8.8/hook", True, True),
        ("ftp://example.com/x", False, False),
        ("file:///etc/passwd", False, False),
        ("http://127.0.0.1:9000/hook", True, False),
        ("http://[::1]/hook", True, False),
        ("http://10.1.2.3/hook", True, False),
        ("http://192.168.1.1/hook", True, False),
        ("http://169.254.169.254/latest", True, False),  # cloud metadata
        ("http://localhost:8080/x", True, False),
        ("http://[::ffff:127.0.0.1]/x", True, False),
        ("http://user:pw@example.com/x", False, False),
        ("https:///nohost", False, False),
    ],
)
def test_webhook_url_validation(url: str, allowed: bool, refused: bool) -> None:
    assert (url_problem(url, allow_private_urls=True) is None) == allowed
    assert (url_problem(url, allow_private_urls=False) is None) == refused


def test_quiet_hours_delay_non_critical_over_midnight() -> None:
    sub = SubscriptionSpec(
        name="n", channel=Channel.TELEGRAM, chat_id="1", quiet_hours="22:00-07:00"
    )

    def at(h: int, m: int) -> int:
        return int(datetime(2026, 1, 5, h, m, tzinfo=UTC).timestamp() * 1e9)

    assert sub.quiet_until_ns(at(23, 30), "warning") == at(7, 0) + 86400 * 10**9
    assert sub.quiet_until_ns(at(3, 0), "warning") == at(7, 0)
    assert sub.quiet_until_ns(at(12, 0), "warning") is None
    assert sub.quiet_until_ns(at(23, 30), "critical") is None


def liqmon(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "subscriptions", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip


@pytest.mark.integration
def test_cli_add_list_remove(tmp_path: Path) -> None:
    data_dir = open_tmp_dir("liqmon-test-subs-")
    added = liqmon("add", "desk", "--webhook", "https://hooks.example.com/x", "--secret-env", "K",
                   "--asset", "SOL*", data_dir=data_dir)  # fmt: skip
    assert added.returncode == 0, added.stderr
    refused = liqmon("add", "lan", "--webhook", "http://10.0.0.1/x", data_dir=data_dir)
    assert refused.returncode == 2 and "private" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = liqmon("list", data_dir=data_dir)
    assert listed.returncode == 0
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("desk")]
    assert "https://hooks.example.com/x" in row and row.endswith("stored")
    assert liqmon("remove", "desk", data_dir=data_dir).returncode == 0
    gone = liqmon("remove", "desk", data_dir=data_dir)
    assert gone.returncode == 2 and "no stored subscription" in gone.stderr
