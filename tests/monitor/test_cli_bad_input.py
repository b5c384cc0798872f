"""No traceback for any input: each bad input to the command line is one clear line and a
documented exit code (README, "Exit codes"). Run as a user runs it: ``python -m monitor``
from the repository root."""

from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OKX_RECORDING

EXIT_FAILED, EXIT_USAGE, EXIT_BAD_DATA, EXIT_INTERRUPTED = 1, 2, 3, 130
OKX_LINES = gzip.decompress(OKX_RECORDING.read_bytes()).decode().splitlines()
SHAPE = 'each line must be {"ts": <epoch seconds>'


def liqmon(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", *map(str, args), "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def plain_lines(stderr: str) -> list[str]:
    """What the user is told (the lines that are not JSON log events)."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]


def events(stderr: str, name: str) -> list[dict[str, Any]]:
    parsed = (json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return [e for e in parsed if e.get("event") == name]


BAD_LINES = {
    "garbage": ("garbage", "not JSON (invalid character (byte 0))"),
    "no kind": (
        '{"ts": 1652458996.3, "venue": "okx", "url": "u", "data": "x"}',
        "missing field `kind`",
    ),
    "null": ("null", "a JSON null, expected a record object"),
    "array": ("[1,2,3]", "a JSON array, expected a record object"),
    "half object": ('{"ts": 1652458996.3, "venue": "ok', "an unfinished JSON object"),
    "ts string": (
        '{"ts": "1652458996.3", "venue": "okx", "kind": "ws", "url": "u", "data": "x"}',
        "field `ts`: expected float, got str",
    ),
    "kind ftp": (
        '{"ts": 1652458996.3, "venue": "okx", "kind": "ftp", "url": "u", "data": "x"}',
        'field `kind`: \'ftp\' is not "ws" or "http"',
    ),
    "data 42": (
        '{"ts": 1652458996.3, "venue": "okx", "kind": "ws", "url": "u", "data": 42}',
        "field `data`: expected str, got int",
    ),
}


def test_bad_lines_are_skipped_each_kind_logged_once_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    bad = [line for line, _ in BAD_LINES.values()]
    # every bad line twice, between the real OKX records
    lines = OKX_LINES[:40] + bad + OKX_LINES[40:80] + bad + OKX_LINES[80:]
    path.write_text("\n".join(lines) + "\n")
    books = tmp_path / "books.jsonl"
    proc = liqmon("replay", path, "--books-out", books)
    assert proc.returncode == 0
    logged = events(proc.stderr, "recording.bad_line")
    # one event per kind of fault ("not an object" covers null and the array), at its first line
    assert [(e["at"], e["problem"]) for e in logged] == [
        (f"{path}:{41 + i}", problem)
        for i, (_, problem) in enumerate(BAD_LINES.values())
        if not problem.startswith("a JSON array")
    ]
    (summary,) = events(proc.stderr, "recording.skipped")
    assert summary["lines"] == 2 * len(BAD_LINES)
    assert plain_lines(proc.stderr) == [
        "liqmon: skipped 16 lines that are not records (not JSON: 2, missing field kind: 2, "
        "not an object: 4, unfinished JSON: 2, field ts: wrong type: 2, field kind: unknown "
        f"value: 2, field data: wrong type: 2); first at {path}:41; --strict stops at the first"
    ]
    # the skipped lines cost nothing: the books are those of the clean recording
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(OKX_LINES) + "\n")
    clean_books = tmp_path / "clean_books.jsonl"
    assert liqmon("replay", clean, "--books-out", clean_books).returncode == 0
    assert books.read_text() == clean_books.read_text()


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_strict_stops_at_the_first_bad_line(tmp_path: Path, name: str) -> None:
    line, problem = BAD_LINES[name]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([*OKX_LINES[:3], line, *OKX_LINES[3:6]]) + "\n")
    proc = liqmon("replay", path, "--strict")
    assert proc.returncode == EXIT_BAD_DATA
    assert plain_lines(proc.stderr) == [
        f'liqmon: {path}:4: {problem}; {SHAPE}, "venue": "<venue id>", "kind": "ws"|"http", '
        '"url": "<url>", "data": "<raw text>"} (--strict: stopped at the first bad line)'
    ]


def test_an_empty_recording_is_said_to_be_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    proc = liqmon("replay", path)
    assert proc.returncode == EXIT_FAILED
    assert plain_lines(proc.stderr) == [f"liqmon: {path}: empty file, nothing to replay"]


def test_a_directory_is_not_a_recording(tmp_path: Path) -> None:
    proc = liqmon("replay", tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert plain_lines(proc.stderr) == [f"liqmon: {tmp_path}: is a directory, not a recording file"]


def test_a_missing_recording_is_named(tmp_path: Path) -> None:
    proc = liqmon("replay", tmp_path / "nope.jsonl.gz")
    assert proc.returncode == EXIT_USAGE
    assert plain_lines(proc.stderr) == [f"liqmon: {tmp_path / 'nope.jsonl.gz'}: no such file"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--speed", "0"), "argument --speed: must be greater than 0, got 0"),
        (("--speed", "-1"), "argument --speed: must be greater than 0, got -1"),
        (("--speed", "nan"), "argument --speed: must be greater than 0, got nan"),
        (("--speed", "fast"), "argument --speed: expected a number, got 'fast'"),
        (("--tick-ms", "0"), "argument --tick-ms: must be greater than 0, got 0"),
        (("--tick-ms", "-100"), "argument --tick-ms: must be greater than 0, got -100"),
    ],
)
def test_bad_replay_options_are_refused_at_start(args: tuple[str, ...], message: str) -> None:
    proc = liqmon("replay", OKX_RECORDING, *args)
    assert proc.returncode == EXIT_USAGE
    assert plain_lines(proc.stderr)[-1] == f"liqmon replay: error: {message}"


def test_an_output_that_is_a_directory_fails_before_the_replay(tmp_path: Path) -> None:
    proc = liqmon("replay", OKX_RECORDING, "--metrics-out", tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert plain_lines(proc.stderr) == [
        f"liqmon: --metrics-out {tmp_path}: is a directory; expected a file to write"
    ]
    assert not events(proc.stderr, "replay.done")


def test_an_uncreatable_output_fails_before_the_replay(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    metrics = tmp_path / "m.jsonl"
    proc = liqmon(
        "replay", OKX_RECORDING, "--metrics-out", metrics, "--books-out", blocker / "b.jsonl"
    )
    assert proc.returncode == EXIT_USAGE
    assert plain_lines(proc.stderr) == [
        f"liqmon: --books-out {blocker / 'b.jsonl'}: cannot create: {blocker} is a file, not a directory"
    ]
    assert not events(proc.stderr, "replay.done")
    assert metrics.read_text() == ""  # opened, nothing replayed


def interrupt_replay(*args: str | Path, metrics: Path) -> tuple[int | None, str]:
    """``liqmon replay ARGS --metrics-out METRICS``, Ctrl-C once its first metrics reach
    the file (the replay is under way): (exit code, stderr)."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "monitor", "replay", *map(str, args)),
            *("--metrics-out", str(metrics), "--log-format", "json"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert proc.poll() is None and time.monotonic() < deadline, "replay never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in stderr
    return proc.returncode, stderr


def test_ctrl_c_stops_a_paced_replay_cleanly(tmp_path: Path) -> None:
    # the OKX session squeezed to 50 ms between records: ~22 s at --speed 1
    records = [json.loads(line) for line in OKX_LINES]
    for i, record in enumerate(records):
        record["ts"] = 1652458996.0 + i * 0.05
    path = tmp_path / "okx-dense.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    metrics, books = tmp_path / "m.jsonl", tmp_path / "b.jsonl"
    code, stderr = interrupt_replay(
        path, "--speed", "1", "--tick-ms", "50", "--books-out", books, metrics=metrics
    )
    assert code == EXIT_INTERRUPTED
    (message,) = plain_lines(stderr)
    assert message.startswith("liqmon: interrupted: stopped after ")
    assert message.endswith("; outputs written and closed")
    assert not events(stderr, "replay.done")  # it did stop early
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]  # whole lines only
    assert rows and {row["venue"] for row in rows if row["kind"] == "book"} == {"okx"}
    assert {b["symbol"] for b in map(json.loads, books.read_text().splitlines())}


def test_ctrl_c_stops_a_replay_as_fast_as_possible_within_a_block(tmp_path: Path) -> None:
    """Not paced: the replay gives the event loop a turn once a block (~8 MB of text), so
    Ctrl-C stops it there, with the same one line, not after the last record."""
    records = [json.loads(line) for line in OKX_LINES]
    frames = [
        (r["ts"], line[line.index(', "venue"') :])
        for r, line in zip(records, OKX_LINES, strict=True)
        if r["kind"] == "ws"
    ]
    path = tmp_path / "okx-long.jsonl.gz"
    with gzip.open(path, "wt", compresslevel=1) as f:
        f.write("\n".join(OKX_LINES) + "\n")  # the instruments and snapshots, and frames
        for copy in range(1, 600):  # the frames again 10 minutes later, ~190k in all
            f.writelines(f'{{"ts": {ts + copy * 600.0!r}{rest}\n' for ts, rest in frames)
    code, stderr = interrupt_replay(path, "--tick-ms", "1000", metrics=tmp_path / "m.jsonl")
    assert code == EXIT_INTERRUPTED
    (message,) = plain_lines(stderr)
    stopped_after = int(message.removeprefix("liqmon: interrupted: stopped after ").split()[0])
    assert 0 < stopped_after < len(records) + 599 * len(frames)
    assert not events(stderr, "replay.done")


def test_sim_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = liqmon("sim", "--port", str(port))
    assert proc.returncode == EXIT_FAILED
    assert plain_lines(proc.stderr) == [
        f"liqmon: sim: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another liqmon sim?); choose another with --port"
    ]


def test_version_is_the_package_version() -> None:
    proc = liqmon("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("liqmon ")


def test_record_to_a_directory_is_refused_before_connecting(tmp_path: Path) -> None:
    proc = liqmon("record", "--venue", "binance", "--symbols", "BTCUSDT", "--out", tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert plain_lines(proc.stderr) == [
        f"liqmon: --out {tmp_path}: is a directory; expected a file to write"
    ]
