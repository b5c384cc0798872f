"""RecordingWriter and iter_recording: round trips, gzip, appends, truncation, shared data."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from feeds.recording import Record, RecordingWriter, RecordKind, iter_recording
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
        with pytest.raises(msgspec.ValidationError):
            list(iter_recording(path))

    def test_an_unknown_kind_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text(
            '{"ts": 2.0, "venue": "b", "kind": "carrier-pigeon", "url": "u", "data": ""}\n'
        )
        with pytest.raises(msgspec.ValidationError):
            list(iter_recording(path))


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
