"""The batch reader (``RecordingReader.read_blocks``) reads exactly what the line-by-line
reader reads: the same records, counts, warnings and errors, from any file; and the
frames it lays out in a block's buffer are the records' data, byte for byte."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from feeds.recording import (
    Record,
    RecordBlock,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    RecordKind,
)
from monitor.domain import Venue
from tests.conftest import RECORDINGS

VENUES = tuple(v.value for v in Venue)


def blocks(path: Path, reader: RecordingReader, block_bytes: int = 1 << 20) -> list[RecordBlock]:
    return list(reader.read_blocks(path, VENUES, block_bytes=block_bytes))


def read_both(path: Path, block_bytes: int) -> tuple[list[Record], list[Record]]:
    """(line by line, batch): records, and the two readers' counts compared."""
    line_reader, block_reader = RecordingReader(), RecordingReader()
    with capture_logs() as line_logs:
        by_line = list(line_reader.read(path))
    with capture_logs() as block_logs:
        by_block = [r for b in blocks(path, block_reader, block_bytes) for r in b]
    assert block_reader.records == line_reader.records
    assert block_reader.skipped == line_reader.skipped
    assert block_reader.first_skipped == line_reader.first_skipped
    assert block_reader.last_ts == line_reader.last_ts
    assert block_reader.empty_files == line_reader.empty_files
    assert [e["event"] for e in block_logs] == [e["event"] for e in line_logs]
    return by_line, by_block


# --- what a line can be ---------------------------------------------------------------------
_ts = st.one_of(
    st.integers(0, 10**11),
    st.floats(0, 1e11, allow_nan=False),
    st.integers(-5, -1),  # out of range: a bad line
    st.just(1e12),
)
_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
)  # quotes, backslashes, control characters, any script
_frame = st.one_of(
    _text,
    st.builds(
        lambda s, u, p: json.dumps({"stream": s, "data": {"U": u, "b": [[p, "1.5"]]}}),
        _text,
        st.integers(0, 2**40),
        st.decimals(0, 10**6, places=4).map(str),
    ),
)
_record = st.fixed_dictionaries(
    {
        "ts": _ts,
        "venue": st.sampled_from([*VENUES[:4], "nowhere", "BINANCE"]),
        "kind": st.sampled_from(["ws", "ws", "ws", "http", "grpc"]),
        "url": st.one_of(st.just("wss://h/ws"), _text),
        "data": _frame,
    }
)
_encode = msgspec.json.Encoder().encode


@st.composite
def _line(draw: st.DrawFn) -> str:
    """One line as some writer might have written it: liqmon's own (compact, msgspec),
    json.dumps with spaces, keys in another order, ASCII escapes, a long receive time,
    blank, or not a record at all."""
    style = draw(st.integers(0, 9))
    if style == 0:
        return draw(st.sampled_from(["", "   ", "\t", "\x0c", "garbage", "[1, 2]", '{"ts": 1']))
    record = draw(_record)
    if style == 1:  # keys shuffled, spaces, non-ASCII escaped
        keys = draw(st.permutations(list(record)))
        return json.dumps({k: record[k] for k in keys})
    if style == 2:  # a receive time with more digits than a float64 holds exactly
        digits = draw(st.text("0123456789", min_size=1, max_size=9))
        text = _encode(record).decode()
        return text.replace(
            f'"ts":{_encode(record["ts"]).decode()}', f'"ts":1759535998.{digits}', 1
        )
    if style == 3:  # a field missing or one more
        record = dict(record)
        if draw(st.booleans()):
            record.pop(draw(st.sampled_from(list(record))))
        else:
            record["extra"] = 1
        return _encode(record).decode()
    if style == 4:  # whitespace around it, CRLF
        return " " + _encode(record).decode() + draw(st.sampled_from(["", " ", "\r"]))
    return _encode(record).decode()  # liqmon's recorder


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(_line(), max_size=40),
    gz=st.booleans(),
    block_bytes=st.sampled_from([64, 300, 4096, 1 << 20]),
    newline_at_end=st.booleans(),
)
def test_any_file_reads_as_the_line_by_line_reader_reads_it(
    tmp_path: Path, lines: list[str], gz: bool, block_bytes: int, newline_at_end: bool
) -> None:
    content = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    path = tmp_path / ("r.jsonl.gz" if gz else "r.jsonl")
    raw = content.encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    by_line, by_block = read_both(path, block_bytes)
    assert by_block == by_line


def test_the_recorders_frames_are_read_by_the_kernel_into_one_buffer(tmp_path: Path) -> None:
    """liqmon's own recordings take the fast path: no record object per websocket frame,
    the frames back to back in the block's buffer, byte for byte the records' data."""
    path = tmp_path / "r.jsonl.gz"
    rng = random.Random(3)
    want = []
    with RecordingWriter(path) as writer:
        for k in range(5000):
            venue = VENUES[k % 5]
            data = json.dumps({"k": k, "x": 'a\\b"c/d' * (k % 3), "p": [rng.random()]})
            ts = 1759535998.0 + k * 0.001 + (0.000_000_3 if k % 7 == 0 else 0.0)
            record = Record(ts, venue, RecordKind.WS, f"wss://{venue}/ws", data)
            writer.write_record(record)
            want.append(record)
    reader = RecordingReader()
    got = blocks(path, reader, block_bytes=1 << 16)
    assert len(got) > 3
    assert sum(len(b.records) for b in got) == 0  # every line read by the kernel
    assert [r for b in got for r in b] == want
    for block in got:
        for k in range(len(block)):
            frame = block.buf[block.starts[k] : block.ends[k]].tobytes()
            assert frame == block.record(k).data.encode()
            assert VENUES[block.codes[k]] == block.record(k).venue


@pytest.mark.parametrize(
    "name", ["binance-spot-2021-10-12", "binance-usdm-2021-07-22", "okx-2022-05-13"]
)
def test_real_recordings_read_the_same(name: str) -> None:
    by_line, by_block = read_both(RECORDINGS / f"{name}.jsonl.gz", 1 << 16)
    assert by_block == by_line
    assert len(by_line) > 200


def test_a_strict_reader_gives_the_records_before_the_bad_line_then_its_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.jsonl"
    good = [
        _encode({"ts": k, "venue": "okx", "kind": "ws", "url": "u", "data": f"{k}"})
        for k in range(50)
    ]
    lines = [*good[:30], b'{"ts": 1, "venue": "okx"}', *good[30:]]
    path.write_bytes(b"\n".join(lines) + b"\n")
    got: list[Record] = []
    with pytest.raises(RecordingError) as line_error:
        for record in RecordingReader(strict=True).read(path):
            got.append(record)
    assert len(got) == 30
    got = []
    with pytest.raises(RecordingError) as block_error:
        for block in RecordingReader(strict=True).read_blocks(path, VENUES):
            got.extend(block)
    assert len(got) == 30
    assert [r.data for r in got] == [str(k) for k in range(30)]
    assert str(block_error.value) == str(line_error.value)
    assert block_error.value.line == 31


def test_a_cut_gzip_tail_ends_the_file_with_a_warning_as_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    lines = [
        _encode({"ts": k, "venue": "okx", "kind": "ws", "url": "u", "data": "x" * 90})
        for k in range(20_000)
    ]
    whole = gzip.compress(b"\n".join(lines) + b"\n")
    path.write_bytes(whole[: len(whole) * 2 // 3])
    by_line, by_block = read_both(path, 1 << 16)
    assert by_block == by_line
    assert 0 < len(by_line) < 20_000


def test_rows_of_a_block_split_and_from_records_keep_the_records() -> None:
    records = [
        Record(1.0, "okx", RecordKind.WS, "u", '{"a":1}'),
        Record(2.0, "okx", RecordKind.HTTP, "h", "{}"),
        Record(3.0, "nowhere", RecordKind.WS, "u", "x"),
        Record(4.0, "binance", RecordKind.WS, "u", "é"),
    ]
    block = RecordBlock.from_records(records, VENUES)
    assert list(block) == records
    assert block.codes.tolist() == [VENUES.index("okx"), -1, -1, VENUES.index("binance")]
    assert block.frame(3) == "é"
    head, tail = block.split(1)
    assert list(head) == records[:1]
    assert list(tail) == records[1:]
    assert np.array_equal(tail.ts, [2.0, 3.0, 4.0])
