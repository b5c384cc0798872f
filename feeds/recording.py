"""Recordings: every raw message received, one JSON object per line (plain or gzip).

Format (docs/architecture.md, "Recordings"): ``{"ts": <receive time, epoch seconds float>,
"venue": "<venue id>", "kind": "ws"|"http", "url": "<where it came from>", "data": "<the raw
text as received>"}``.
The writer appends, so a restarted recorder never truncates what it already wrote; a gzip
file then holds several members, which every gzip reader concatenates. The reader sniffs
the gzip magic rather than trusting the file name, and stops quietly at the truncated tail
a killed recorder leaves behind (everything flushed before the kill is still read).
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import msgspec
import structlog

_log = structlog.get_logger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


class RecordKind(StrEnum):
    WS = "ws"
    HTTP = "http"


class Record(msgspec.Struct, frozen=True):
    """One message as received: receive time (epoch seconds), venue id, kind, URL, raw text."""

    ts: float
    venue: str
    kind: RecordKind
    url: str
    data: str

    @property
    def recv_ns(self) -> int:
        return round(self.ts * 1e9)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


class RecordingWriter:
    """Appends records to ``path`` (gzip when the name ends with ``.gz``).

    Writes are buffered; the file is flushed at most ``flush_interval_s`` after a write
    (checked on each write) and on :meth:`flush`/:meth:`close`. A gzip flush is a zlib
    sync flush, so everything flushed is readable even if the process dies afterwards.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | gzip.GzipFile
        if self.path.name.endswith(".gz"):
            self._file = gzip.open(self.path, "ab")  # noqa: SIM115 - closed in close()
        else:
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._last_flush = clock()
        self.records_written = 0

    def write(
        self, venue: str, kind: RecordKind | str, url: str, data: str | bytes, recv_ns: int
    ) -> None:
        """Append one message. Binary frames are stored as their UTF-8 text."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        self.write_record(
            Record(ts=recv_ns / 1e9, venue=str(venue), kind=RecordKind(kind), url=url, data=data)
        )

    def write_record(self, record: Record) -> None:
        self._file.write(_encoder.encode(record) + b"\n")
        self.records_written += 1
        if self._clock() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if self._file.closed:
            return
        if isinstance(self._file, gzip.GzipFile):
            self._file.flush(zlib.Z_SYNC_FLUSH)
        else:
            self._file.flush()
        self._last_flush = self._clock()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _open(path: Path) -> BinaryIO | gzip.GzipFile:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_recording(paths: str | Path | Iterable[str | Path]) -> Iterator[Record]:
    """Yield the records of one or more recording files, in file order, plain or gzip.

    A blank line is skipped; a line that is not a record raises ``msgspec.ValidationError``
    or ``msgspec.DecodeError`` naming the problem (a corrupt recording is not silently
    shortened). A truncated tail (an unfinished last line, or a gzip stream without its
    end) ends that file with a ``recording.truncated`` warning.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    for path in paths:
        yield from _iter_file(Path(path))


def _iter_file(path: Path) -> Iterator[Record]:
    line_number = 0
    with _open(path) as stream:
        try:
            for line in stream:
                line_number += 1
                if not line.strip():
                    continue
                if line.endswith(b"\n"):
                    yield _decoder.decode(line)
                    continue
                # the last line has no newline: the writer may have died in the middle of it
                try:
                    record = _decoder.decode(line)
                except msgspec.DecodeError as error:
                    _log.warning(
                        "recording.truncated", path=str(path), line=line_number, error=repr(error)
                    )
                    return
                yield record
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            _log.warning("recording.truncated", path=str(path), line=line_number, error=repr(error))
