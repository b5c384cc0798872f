"""Logging: rendered lines on stderr, level filtering, context, and redaction of secrets."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from monitor.log import (
    REDACTED,
    LogFormat,
    configure_logging,
    get_logger,
    redact_secrets,
    resolve_format,
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


class TestRedaction:
    def test_secret_keys_are_redacted_in_rendered_output(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("info", "json")

        get_logger("alerts.telegram").info(
            "alert.sent",
            bot_token="123:abc",
            api_key="k",
            apiKey="k2",
            Authorization="Bearer xyz",
            db_password="hunter2",
            client_secret="s",
            chat_id=42,
        )

        (line,) = json_lines(capsys.readouterr().err)
        for key in (
            "bot_token",
            "api_key",
            "apiKey",
            "Authorization",
            "db_password",
            "client_secret",
        ):
            assert line[key] == REDACTED
        assert line["chat_id"] == 42
        assert "hunter2" not in json.dumps(line)

    def test_secrets_in_nested_mappings_and_bound_context_are_redacted(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("info", "json")
        structlog.contextvars.bind_contextvars(webhook_secret="shh", venue="binance")
        headers = {"X-Api-Key": "k", "Accept": "application/json"}

        get_logger("alerts.webhook").info("webhook.post", headers=headers)

        (line,) = json_lines(capsys.readouterr().err)
        assert line["webhook_secret"] == REDACTED
        assert line["venue"] == "binance"
        assert line["headers"] == {"X-Api-Key": REDACTED, "Accept": "application/json"}
        assert headers["X-Api-Key"] == "k", "the caller's mapping is left alone"

    def test_any_key_containing_a_secret_word_is_redacted_others_kept(self) -> None:
        event = {"event": "feed.reconnect", "token_count": 3, "venue": "okx"}

        assert redact_secrets(None, "info", event) == {
            "event": "feed.reconnect",
            "token_count": REDACTED,
            "venue": "okx",
        }

    def test_console_output_is_redacted_too(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("info", "console")

        get_logger("monitor").info("startup", password="hunter2", venue="binance")

        err = capsys.readouterr().err
        assert "startup" in err
        assert "binance" in err
        assert "hunter2" not in err


class TestLevels:
    def test_events_below_the_configured_level_are_dropped(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("warning", "json")
        log = get_logger("monitor")

        log.debug("tick.debug")
        log.info("tick.info")
        log.warning("feed.stale")
        log.error("storage.down")

        lines = json_lines(capsys.readouterr().err)
        assert [(line["event"], line["level"]) for line in lines] == [
            ("feed.stale", "warning"),
            ("storage.down", "error"),
        ]

    def test_debug_level_lets_everything_through(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("debug", "json")

        get_logger("monitor").debug("tick.debug")

        assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["tick.debug"]

    @pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
    def test_unknown_level_or_format_is_rejected(self, level: str, fmt: str) -> None:
        with pytest.raises(ValueError, match="is not a valid"):
            configure_logging(level, fmt)


class TestOutput:
    def test_json_line_carries_iso_timestamp_level_logger_and_context(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("info", "json")
        structlog.contextvars.bind_contextvars(venue="binance", instrument="BTCUSDT", conn_id=7)

        get_logger("feeds.connection").info("feed.reconnect", attempt=2)

        (line,) = json_lines(capsys.readouterr().err)
        assert line["event"] == "feed.reconnect"
        assert line["level"] == "info"
        assert line["logger"] == "feeds.connection"
        assert (line["venue"], line["instrument"], line["conn_id"]) == ("binance", "BTCUSDT", 7)
        assert line["attempt"] == 2
        assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None

    def test_exception_is_rendered_as_text_in_json(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("info", "json")

        try:
            raise RuntimeError("boom")
        except RuntimeError:
            get_logger("monitor").exception("task.crashed")

        (line,) = json_lines(capsys.readouterr().err)
        assert "RuntimeError: boom" in line["exception"]

    def test_stdlib_logging_is_rendered_the_same_way(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("info", "json")

        logging.getLogger("websockets.client").warning("closed %s", "abnormally", extra={})
        logging.getLogger("websockets.client").debug("not shown")

        (line,) = json_lines(capsys.readouterr().err)
        assert line["event"] == "closed abnormally"
        assert line["logger"] == "websockets.client"
        assert line["level"] == "warning"

    def test_reconfiguring_replaces_the_previous_handler(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging("info", "json")
        configure_logging("info", "json")

        logging.getLogger("asyncio").error("Task exception was never retrieved")

        assert len(json_lines(capsys.readouterr().err)) == 1


ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(\w+)\s*\] (\S+)\s+(.*)$")


class TestFormats:
    def test_auto_writes_json_when_stderr_is_not_a_terminal(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert configure_logging("info", "auto") is LogFormat.JSON

        get_logger("monitor").info("daemon.start", books=3)

        (line,) = json_lines(capsys.readouterr().err)
        assert (line["event"], line["books"]) == ("daemon.start", 3)

    def test_auto_means_console_on_a_terminal_and_json_on_a_pipe(self) -> None:
        controller, terminal = os.openpty()
        read_end, write_end = os.pipe()
        with (
            os.fdopen(terminal, "w") as tty,
            os.fdopen(write_end, "w") as pipe,
            os.fdopen(controller, "rb"),
            os.fdopen(read_end, "rb"),
        ):
            assert resolve_format("auto", tty) is LogFormat.CONSOLE
            assert resolve_format("auto", pipe) is LogFormat.JSON
            # explicit formats are kept whatever the stream
            assert resolve_format("json", tty) is LogFormat.JSON
            assert resolve_format("console", pipe) is LogFormat.CONSOLE

    def test_console_line_reads_time_level_event_then_key_values_without_colours(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert configure_logging("info", "console") is LogFormat.CONSOLE
        structlog.contextvars.bind_contextvars(venue="binance")

        get_logger("feeds.session").warning(
            "feed.connect_failed", error="cannot resolve api.binance.com", attempt=2
        )

        (line,) = capsys.readouterr().err.splitlines()
        assert "\x1b[" not in line, "no colour codes when stderr is not a terminal"
        match = ISO_LINE.match(line)
        assert match is not None, line
        level, event, rest = match.groups()
        assert (level, event) == ("warning", "feed.connect_failed")
        assert "error='cannot resolve api.binance.com'" in rest
        assert "venue=binance" in rest and "attempt=2" in rest

    def test_cli_log_format_option_overrides_the_config(self) -> None:
        recording = Path(__file__).parents[1] / "recordings" / "okx-2022-05-13.jsonl.gz"

        def last_line(*options: str) -> str:
            proc = subprocess.run(
                [sys.executable, "-m", "monitor", "replay", str(recording), *options],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            return proc.stderr.splitlines()[-1]

        # stderr is a pipe here: auto (the default) writes JSON, the option forces console
        assert json.loads(last_line())["event"] == "replay.book"
        match = ISO_LINE.match(last_line("--log-format", "console"))
        assert match is not None
        assert match.group(2) == "replay.book"
