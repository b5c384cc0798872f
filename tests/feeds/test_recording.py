"""RecordingWriter and iter_recording: round trips, gzip, appends, truncation, shared data."""

from __future__ import annotations

import gzip
import json
import random
import string
from collections import Counter
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from feeds.recording import (
    Record,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    RecordKind,
    iter_recording,
)
from tests.conftest import RECORDINGS

DATA = RECORDINGS  # copies of the shared real recordings, shipped with the tests
SPOT = DATA / "binance-spot-2021-10-12.jsonl.gz"
USDM = DATA / "binance-usdm-2021-07-22.jsonl.gz"

FRAMES: list[tuple[str, RecordKind, str, str | bytes, int]] = [
    (
        "binance",
        RecordKind.HTTP,
        "https://api.binance.com/api/v3/exchangeInfo",
        '{"symbols":[]}',
        1_633_998_511_132_921_000,
    ),
    (
        "binance",
        RecordKind.WS,
        "wss://stream.binance.com:9443/stream?streams=a",
        '{"stream":"a","data":{"u":1}}',
        1_633_998_512_063_356_900,
    ),
    (
        "binance_futures",
        RecordKind.WS,
        "wss://fstream.binance.com/stream",
        '  spaced \t"quoted"\n é ✓ ',
        1_626_992_741_062_170_000,
    ),
    ("binance", RecordKind.WS, "wss://x/ws", b'{"binary":true}', 1_626_992_741_081_672_000),
]


def write_frames(path: Path) -> list[Record]:
    with RecordingWriter(path) as writer:
        for venue, kind, url, data, recv_ns in FRAMES:
            writer.write(venue, kind, url, data, recv_ns)
        assert writer.records_written == len(FRAMES)
    return [
        Record(
            ts=recv_ns / 1e9,
            venue=venue,
            kind=kind,
            url=url,
            data=data.decode() if isinstance(data, bytes) else data,
        )
        for venue, kind, url, data, recv_ns in FRAMES
    ]


class TestRoundTrip:
    @pytest.mark.parametrize("name", ["session.jsonl", "session.jsonl.gz"])
    def test_the_reader_returns_exactly_what_the_writer_wrote(
        self, tmp_path: Path, name: str
    ) -> None:
        path = tmp_path / name
        expected = write_frames(path)
        assert list(iter_recording(path)) == expected
        assert list(iter_recording([str(path)])) == expected

    def test_gz_name_writes_gzip_and_plain_name_writes_json_lines(self, tmp_path: Path) -> None:
        write_frames(tmp_path / "a.jsonl.gz")
        write_frames(tmp_path / "a.jsonl")
        assert (tmp_path / "a.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"
        lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
        first = json.loads(lines[0])
        assert list(first) == ["ts", "venue", "kind", "url", "data"]
        assert first["kind"] == "http"
        assert first["ts"] == 1633998511.132921

    def test_a_restarted_writer_appends(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl.gz"
        expected = write_frames(path) + write_frames(path)
        assert list(iter_recording(path)) == expected

    def test_several_files_are_read_in_order(self, tmp_path: Path) -> None:
        first = write_frames(tmp_path / "1.jsonl")
        second = write_frames(tmp_path / "2.jsonl.gz")
        assert (
            list(iter_recording([tmp_path / "1.jsonl", tmp_path / "2.jsonl.gz"])) == first + second
        )

    def test_recv_ns_comes_back_from_ts(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        write_frames(path)
        assert [r.recv_ns for r in iter_recording(path)] == [
            pytest.approx(recv_ns, abs=1000) for *_, recv_ns in FRAMES
        ]


class TestDamagedFiles:
    def test_flushed_records_survive_a_writer_that_never_closed(self, tmp_path: Path) -> None:
        path = tmp_path / "killed.jsonl.gz"
        writer = RecordingWriter(path)
        for venue, kind, url, data, recv_ns in FRAMES[:2]:
            writer.write(venue, kind, url, data, recv_ns)
        writer.flush()
        snapshot = path.read_bytes()  # what a killed process leaves on disk
        writer.close()
        copy = tmp_path / "copy.jsonl.gz"
        copy.write_bytes(snapshot)
        with capture_logs() as logs:
            records = list(iter_recording(copy))
        assert [r.data for r in records] == [FRAMES[0][3], FRAMES[1][3]]
        assert [entry["event"] for entry in logs] == ["recording.truncated"]

    def test_members_zero_padding_and_a_cut_tail_read_as_the_gzip_module_reads_them(
        self, tmp_path: Path
    ) -> None:
        # the reader inflates with ISA-L: what it yields must be what gzip itself yields
        path = tmp_path / "restarted.jsonl.gz"
        first = write_frames(path)
        second = write_frames(path)  # a restarted recorder appends a second member
        tail = tmp_path / "tail.jsonl.gz"
        write_frames(tail)
        cut = tail.read_bytes()
        with path.open("ab") as stream:
            stream.write(b"\0" * 64 + cut[: len(cut) - 30])  # padding, then a cut member
        expected = []
        with gzip.open(path, "rb") as stream, pytest.raises(EOFError):
            for line in stream:
                expected.append(json.loads(line))
        with capture_logs() as logs:
            records = list(iter_recording(path))
        assert [r.data for r in records] == [e["data"] for e in expected]
        assert [r.data for r in records][: 2 * len(FRAMES)] == [r.data for r in first + second]
        assert [entry["event"] for entry in logs] == ["recording.truncated"]

    def test_an_unfinished_last_line_ends_the_file_with_a_warning(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        write_frames(path)
        with path.open("ab") as stream:
            stream.write(b'{"ts": 1.0, "venue": "bin')
        with capture_logs() as logs:
            records = list(iter_recording(path))
        assert len(records) == len(FRAMES)
        assert logs[0]["event"] == "recording.truncated"

    def test_a_corrupt_line_in_the_middle_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text(
            '{"ts": 1.0}\n{"ts": 2.0, "venue": "b", "kind": "ws", "url": "u", "data": ""}\n'
        )
        with pytest.raises(RecordingError, match=r"a\.jsonl:1: missing field `venue`") as caught:
            list(iter_recording(path))
        assert caught.value.line == 1

    def test_an_unknown_kind_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text(
            '{"ts": 2.0, "venue": "b", "kind": "carrier-pigeon", "url": "u", "data": ""}\n'
        )
        with pytest.raises(RecordingError, match='\'carrier-pigeon\' is not "ws" or "http"'):
            list(iter_recording(path))


GOOD = '{"ts": 1.0, "venue": "okx", "kind": "ws", "url": "u", "data": "{}"}'
# (bad line, kind of fault it is counted under, words of the problem logged)
BAD_LINES = [
    ("garbage", "not JSON", "not JSON"),
    (
        '{"ts": 1.0, "venue": "okx", "url": "u", "data": "x"}',
        "missing field kind",
        "missing field `kind`",
    ),
    ("null", "not an object", "a JSON null, expected a record object"),
    ("[1,2,3]", "not an object", "a JSON array, expected a record object"),
    ('{"ts": 1.0, "venue": "ok', "unfinished JSON", "unfinished JSON object"),
    (
        '{"ts": "1", "venue": "okx", "kind": "ws", "url": "u", "data": "x"}',
        "field ts: wrong type",
        "field `ts`: expected float, got str",
    ),
    (
        '{"ts": 1.0, "venue": "okx", "kind": "ftp", "url": "u", "data": "x"}',
        "field kind: unknown value",
        'field `kind`: \'ftp\' is not "ws" or "http"',
    ),
    (
        '{"ts": 1.0, "venue": "okx", "kind": "ws", "url": "u", "data": 42}',
        "field data: wrong type",
        "field `data`: expected str, got int",
    ),
    (
        '{"ts": -5, "venue": "okx", "kind": "ws", "url": "u", "data": "x"}',
        "field ts: out of range",
        "epoch seconds",
    ),
    (
        '{"ts": 1e999, "venue": "okx", "kind": "ws", "url": "u", "data": "x"}',
        "field ts: out of range",
        "epoch seconds",
    ),
    ("\udcff\udcfe", "not JSON", "not JSON"),
]


class TestBadLines:
    @pytest.mark.parametrize(("line", "fault", "problem"), BAD_LINES)
    def test_a_bad_line_is_skipped_counted_and_logged_with_its_place(
        self, tmp_path: Path, line: str, fault: str, problem: str
    ) -> None:
        path = tmp_path / "r.jsonl"
        path.write_bytes(f"{GOOD}\n{line}\n{GOOD}\n".encode("utf-8", "surrogateescape"))
        reader = RecordingReader()
        with capture_logs() as logs:
            records = list(reader.read(path))
        assert len(records) == 2 and reader.records == 2
        assert reader.skipped == {fault: 1}
        (bad,) = [e for e in logs if e["event"] == "recording.bad_line"]
        assert bad["at"] == f"{path}:2"
        assert problem in bad["problem"]

    @pytest.mark.parametrize(("line", "fault", "problem"), BAD_LINES)
    def test_a_strict_reader_stops_at_the_bad_line(
        self, tmp_path: Path, line: str, fault: str, problem: str
    ) -> None:
        path = tmp_path / "r.jsonl"
        path.write_bytes(f"{GOOD}\n{line}\n{GOOD}\n".encode("utf-8", "surrogateescape"))
        reader = RecordingReader(strict=True)
        read: list[Record] = []
        with pytest.raises(RecordingError) as caught:
            read.extend(reader.read(path))
        assert len(read) == 1
        assert (caught.value.path, caught.value.line) == (str(path), 2)
        assert problem in caught.value.problem

    def test_each_kind_of_fault_is_logged_once_and_summarised(self, tmp_path: Path) -> None:
        path = tmp_path / "r.jsonl"
        path.write_text("\n".join([GOOD, "garbage", "null", "more garbage", GOOD, "[]", ""]))
        reader = RecordingReader()
        with capture_logs() as logs:
            assert len(list(reader.read(path))) == 2
            reader.log_summary()
        assert [e["at"] for e in logs if e["event"] == "recording.bad_line"] == [
            f"{path}:2",
            f"{path}:3",
        ]
        (summary,) = [e for e in logs if e["event"] == "recording.skipped"]
        assert summary["lines"] == 4
        assert summary["by_fault"] == {"not JSON": 2, "not an object": 2}

    def test_an_empty_file_is_reported(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.jsonl"
        path.write_text("\n\n")
        reader = RecordingReader()
        with capture_logs() as logs:
            assert list(reader.read(path)) == []
        assert reader.empty_files == [str(path)]
        assert [e["event"] for e in logs] == ["recording.empty"]

    def test_a_directory_or_missing_file_is_an_error_naming_it(self, tmp_path: Path) -> None:
        with pytest.raises(RecordingError, match="is a directory"):
            list(RecordingReader().read(tmp_path))
        with pytest.raises(RecordingError, match="no such file"):
            list(RecordingReader().read(tmp_path / "nope.jsonl"))


class TestSharedRecordings:
    def test_binance_spot_recording(self) -> None:
        records = list(iter_recording(SPOT))
        assert Counter(r.kind for r in records) == {RecordKind.WS: 265, RecordKind.HTTP: 5}
        assert {r.venue for r in records} == {"binance"}
        assert records[0].url == "https://api.binance.com/api/v3/exchangeInfo"
        depth = [r for r in records if r.kind == RecordKind.HTTP and "/api/v3/depth" in r.url]
        assert len(depth) == 4
        assert all(r.ts >= records[0].ts for r in records)

    def test_binance_usdm_recording(self) -> None:
        records = list(iter_recording(USDM))
        assert Counter(r.kind for r in records) == {RecordKind.WS: 1535, RecordKind.HTTP: 5}
        assert {r.venue for r in records} == {"binance_futures"}
        streams = Counter(json.loads(r.data)["stream"] for r in records if r.kind == RecordKind.WS)
        assert streams["sushiusdt@depth@100ms"] == 255

    def test_data_is_the_raw_text_as_received(self) -> None:
        with gzip.open(SPOT, "rt", encoding="utf-8") as stream:
            raw = [json.loads(line)["data"] for line in stream]
        assert [r.data for r in iter_recording(SPOT)] == raw

    def test_a_rewritten_recording_reads_back_identically(self, tmp_path: Path) -> None:
        original = list(iter_recording(USDM))
        path = tmp_path / "copy.jsonl.gz"
        with RecordingWriter(path) as writer:
            for record in original:
                writer.write_record(record)
        assert list(iter_recording(path)) == original


class TestChunks:
    @pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.gz"])
    def test_lines_across_chunks_long_lines_and_blanks_read_as_line_by_line(
        self, tmp_path: Path, name: str
    ) -> None:
        """Whole chunks of records are decoded at once (newlines read as commas); a
        chunk with a blank line, CRLF or a bad line falls back to line by line, and the
        records, counts and the bad line's place come out the same. A gzip file's chunks
        are what each 16 KiB of it inflates to, of every size (the data is random, so
        that its 300 KB take many blocks, one line longer than a block)."""
        rng = random.Random(7)
        letters = string.ascii_letters + string.digits

        def text(size: int) -> str:
            return "".join(rng.choices(letters, k=size))

        lines = []
        for k in range(3000):
            data = text(k % 97) if k != 1500 else text(200_000)  # one line beyond a chunk
            lines.append(
                json.dumps({"ts": k, "venue": "okx", "kind": "ws", "url": "u", "data": data})
            )
        lines[700] = ""
        lines[701] = "   "
        lines[2000] += "\r"
        lines[2500] = "garbage"
        path = tmp_path / name
        content = ("\n".join(lines) + "\n").encode()
        path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
        reader = RecordingReader()
        with capture_logs() as logs:
            records = list(reader.read(path))
        want = [json.loads(line) for line in lines if line.strip() and line != "garbage"]
        assert [(r.ts, r.data) for r in records] == [(w["ts"], w["data"]) for w in want]
        assert reader.records == len(want) == 3000 - 3
        (bad,) = [e for e in logs if e["event"] == "recording.bad_line"]
        assert bad["at"] == f"{path}:2501"
