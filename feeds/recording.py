"""Recordings: every raw message received, one JSON object per line (plain or gzip).

Format (docs/architecture.md, "Recordings"): ``{"ts": <receive time, epoch seconds float>,
"venue": "<venue id>", "kind": "ws"|"http", "url": "<where it came from>", "data": "<the raw
text as received>"}``.
The writer appends, so a restarted recorder never truncates what it already wrote; a gzip
file then holds several members, which every gzip reader concatenates. The reader sniffs
the gzip magic rather than trusting the file name, and stops quietly at the truncated tail
a killed recorder leaves behind (everything flushed before the kill is still read).

A line that is not a record (not JSON, not an object, a field missing or of the wrong type,
an unknown ``kind``) is skipped and counted by :class:`RecordingReader`, which logs each
kind of fault once with its ``file:line``; ``strict`` readers raise :class:`RecordingError`
at the first one instead. A file that cannot be read is always a :class:`RecordingError`.
"""

from __future__ import annotations

import functools
import gzip
import io
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO, Final, cast, overload

import msgspec
import numpy as np
import structlog
from isal import isal_zlib

from feeds.record_scan import LINE_BLANK, LINE_SLOW, ROW_FAST, ROW_TS_TEXT, scan_records
from monitor.errors import MonitorError

_log = structlog.get_logger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
RECORD_SHAPE: Final = (
    '{"ts": <epoch seconds>, "venue": "<venue id>", "kind": "ws"|"http", "url": "<url>", '
    '"data": "<raw text>"}'
)


class RecordingError(MonitorError):
    """A recording cannot be read (``line`` 0), or, for a strict reader, a line of it is not
    a record. The message reads ``<file>:<line>: <problem>``."""

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


class RecordKind(StrEnum):
    WS = "ws"
    HTTP = "http"


class Record(msgspec.Struct, frozen=True, gc=False):
    """One message as received: receive time (epoch seconds), venue id, kind, URL, raw text.

    Not tracked by the garbage collector (``gc=False``): a record holds only strings and a
    number, so it can be in no reference cycle, and a replay makes one per message (each
    tracked record made the collector's young-generation passes scan it; 5% of a replay)."""

    ts: Annotated[float, msgspec.Meta(ge=0, le=1e11)]  # up to year 5138: a finite receive time
    venue: str
    kind: RecordKind
    url: str
    data: str

    @property
    def recv_ns(self) -> int:
        return round(self.ts * 1e9)


class RecordBlock:
    """Consecutive records of one file as columns (:meth:`RecordingReader.read_blocks`).

    Row k is the k-th record. ``codes[k] >= 0``: a websocket frame of venue
    ``venues[codes[k]]``, its text (UTF-8, unescaped) in ``buf[starts[k]:ends[k]]``, the
    frames of the block back to back (what the venues' batch scanners read); ``-1``: any
    other record (an HTTP answer, an unknown venue), as a :class:`Record` in
    ``records[k]``. ``ts``: every row's receive time. :meth:`record` gives any row as the
    :class:`Record` the line-by-line reader gives."""

    __slots__ = ("buf", "codes", "ends", "records", "starts", "text", "ts", "urls", "venues")

    def __init__(
        self,
        venues: tuple[str, ...],
        text: bytes,
        buf: np.ndarray,
        ts: np.ndarray,
        codes: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        urls: np.ndarray,
        records: dict[int, Record],
    ) -> None:
        self.venues = venues
        self.text = text  # the lines (a frame row's URL is urls[k] in it)
        self.buf = buf
        self.ts = ts
        self.codes = codes
        self.starts = starts
        self.ends = ends
        self.urls = urls
        self.records = records  # the rows read by msgspec (every row whose code is -1)

    def __len__(self) -> int:
        return len(self.ts)

    def frame(self, k: int) -> str:
        """Row k's websocket frame (``codes[k] >= 0``) as text."""
        return self.buf[self.starts[k] : self.ends[k]].tobytes().decode()

    def record(self, k: int) -> Record:
        rec = self.records.get(k)
        if rec is not None:
            return rec
        url = self.text[self.urls[k, 0] : self.urls[k, 1]].decode("ascii")
        venue = self.venues[self.codes[k]]
        return Record(float(self.ts[k]), venue, RecordKind.WS, url, self.frame(k))

    def __iter__(self) -> Iterator[Record]:
        return (self.record(k) for k in range(len(self)))

    @classmethod
    def from_records(cls, records: Sequence[Record], venues: Sequence[str]) -> RecordBlock:
        """A block of records read one by one (every row's record kept as it is)."""
        names = tuple(venues)
        code_of = {v: k for k, v in enumerate(names)}
        n = len(records)
        codes = np.fromiter(
            (code_of.get(r.venue, -1) if r.kind is RecordKind.WS else -1 for r in records),
            dtype=np.int64,
            count=n,
        )
        frames = [records[k].data.encode() for k in np.flatnonzero(codes >= 0).tolist()]
        sizes = np.zeros(n, dtype=np.int64)
        sizes[codes >= 0] = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        ends = np.cumsum(sizes)
        return cls(
            names,
            b"",
            np.frombuffer(b"".join(frames), dtype=np.uint8),
            np.fromiter((r.ts for r in records), dtype=np.float64, count=n),
            codes,
            ends - sizes,
            ends,
            np.zeros((n, 2), dtype=np.int64),
            dict(enumerate(records)),
        )

    def split(self, at: int) -> tuple[RecordBlock, RecordBlock]:
        """Rows before ``at`` and from ``at`` on, as two blocks (views of this one's)."""

        def part(lo: int, hi: int) -> RecordBlock:
            records = {k - lo: r for k, r in self.records.items() if lo <= k < hi}
            return RecordBlock(
                self.venues,
                self.text,
                self.buf,
                self.ts[lo:hi],
                self.codes[lo:hi],
                self.starts[lo:hi],
                self.ends[lo:hi],
                self.urls[lo:hi],
                records,
            )

        return part(0, at), part(at, len(self))


class Frames(Sequence[str]):
    """Rows ``rows`` of a block's frames, as text when asked for (for the frames a
    scanner leaves to the adapter's ``decode``)."""

    __slots__ = ("_block", "_rows")

    def __init__(self, block: RecordBlock, rows: list[int]) -> None:
        self._block = block
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> list[str]: ...
    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self._block.frame(r) for r in self._rows[k]]
        return self._block.frame(self._rows[k])


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


class _Gunzip:
    """A gzip file's content through ISA-L's inflate (~3x zlib's: inflating is a tenth of
    a replay's CPU), member after member as gzip reads them (zero padding between members
    skipped). Everything inflated before a cut-off tail is returned first; then EOFError,
    as ``gzip`` raises it for a stream without its end (a killed recorder's file).

    :meth:`read1` inflates 16 KiB of the file at a time, whole, rather than up to a size:
    with an output limit the inflater hands back the input it did not consume, a copy of
    the unconsumed tail on every call (128 KiB in, 64 KiB out: 0.81 s of CPU for the
    8-hour bench recording, 0.77 s this way). A call then returns what those 16 KiB hold
    (~96 KiB of a recording, at most 16 KiB x 1032, deflate's ratio limit)."""

    def __init__(self, path: Path, input_bytes: int | None = None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._input_bytes = input_bytes or _INFLATE_INPUT_BYTES
        self._inflate = isal_zlib.decompressobj(31)  # wbits 31: a gzip member
        self._pending = b""  # compressed bytes after a member's end, not inflated yet
        self._in_member = False

    def read1(self) -> bytes:
        """The content inflated from the next input block (b"" at the end)."""
        while True:
            data, self._pending = self._pending, b""
            if not data:
                data = self._file.read(self._input_bytes)
                if not data:
                    if self._in_member:
                        raise EOFError("compressed file ended before the end of its stream")
                    return b""
            if not self._in_member:
                data = data.lstrip(b"\x00")
                if not data:
                    continue
                self._in_member = True
            out = self._inflate.decompress(data)
            if self._inflate.eof:
                self._pending = self._inflate.unused_data
                self._inflate = isal_zlib.decompressobj(31)
                self._in_member = False
            if out:
                return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _Gunzip:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_INFLATE_INPUT_BYTES = 1 << 14
# corrupt deflate data (isal's stub declares the class as an instance)
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)


def _open(path: Path, input_bytes: int | None = None) -> io.BufferedReader | _Gunzip:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return _Gunzip(path, input_bytes)
    return open(path, "rb")


def check_readable(path: str | Path) -> None:
    """Raise :class:`RecordingError` unless ``path`` is a file this process can read."""
    path = Path(path)
    if path.is_dir():
        raise RecordingError(path, 0, "is a directory, not a recording file")
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise RecordingError(path, 0, "no such file") from None
    except OSError as exc:
        raise RecordingError(path, 0, f"cannot read: {exc.strerror or exc}") from None


_AT_FIELD = re.compile(r"^(?P<problem>.*?) - at `\$\.(?P<field>[^`]+)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_TS_RANGE: Final = "field `ts`: expected a receive time in epoch seconds, 0 to 1e11"
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`(?P<rest>.*?)(, got `(?P<got>[^`]+)`)?$")


def _describe(error: msgspec.DecodeError | msgspec.ValidationError) -> tuple[str, str]:
    """(kind of fault, what is wrong) for a line the decoder refused."""
    message = str(error)
    if not isinstance(error, msgspec.ValidationError):  # (a ValidationError is a DecodeError)
        if "truncated" in message:
            return "unfinished JSON", "an unfinished JSON object"
        return "not JSON", f"not JSON ({message.removeprefix('JSON is malformed: ')})"
    if message.startswith("Expected `object`, got"):
        got = message.removeprefix("Expected `object`, got").strip(" `")
        return "not an object", f"a JSON {got}, expected a record object"
    missing = _MISSING.match(message)
    if missing is not None:
        return f"missing field {missing['field']}", f"missing field `{missing['field']}`"
    at = _AT_FIELD.match(message)
    if at is None:
        return message, message
    field, problem = at["field"], at["problem"]
    if problem.startswith("Invalid enum value"):
        value = problem.removeprefix("Invalid enum value").strip()
        return f"field {field}: unknown value", f'field `{field}`: {value} is not "ws" or "http"'
    if field == "ts" and ("range" in problem or ">=" in problem or "<=" in problem):
        return "field ts: out of range", _TS_RANGE
    expected = _EXPECTED.match(problem)
    if expected is not None and expected["got"]:
        return (
            f"field {field}: wrong type",
            f"field `{field}`: expected {expected['want']}, got {expected['got']}",
        )
    if expected is not None:  # a constraint: "Expected `float` >= 0.0"
        return (
            f"field {field}: out of range",
            f"field `{field}`: expected {expected['want']}{expected['rest']}",
        )
    return f"field {field}: {problem}", f"field `{field}`: {problem}"


def _refine(line: bytes, error: msgspec.DecodeError) -> msgspec.DecodeError:
    try:
        _decoder.decode(line.rstrip())
    except msgspec.ValidationError:
        return error
    except msgspec.DecodeError as stripped:
        return stripped
    return error


class RecordingReader:
    """Reads recording files, skipping lines that are not records (or, ``strict``, raising
    :class:`RecordingError` at the first one). Counts what it read and skipped."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.records = 0
        self.skipped: Counter[str] = Counter()  # kind of fault -> lines skipped
        self.first_skipped: dict[str, str] = {}  # kind of fault -> its first file:line
        self.empty_files: list[str] = []
        self.last_ts: float | None = None

    def read(self, paths: str | Path | Iterable[str | Path]) -> Iterator[Record]:
        """Records of one or more files, in file order (see the module doc for bad lines)."""
        if isinstance(paths, str | Path):
            paths = [paths]
        for path in paths:
            yield from self._read_file(Path(path))

    def log_summary(self) -> None:
        """One ``recording.skipped`` warning with the lines skipped per kind of fault."""
        if self.skipped:
            _log.warning(
                "recording.skipped",
                lines=sum(self.skipped.values()),
                by_fault=dict(self.skipped),
                first_at=self.first_skipped,
            )

    def _bad_line(self, path: Path, line_number: int, error: Exception) -> None:
        assert isinstance(error, msgspec.DecodeError | msgspec.ValidationError)
        fault, problem = _describe(error)
        if self.strict:
            raise RecordingError(path, line_number, f"{problem}; each line must be {RECORD_SHAPE}")
        self.skipped[fault] += 1
        if fault not in self.first_skipped:
            where = f"{path}:{line_number}"
            self.first_skipped[fault] = where
            _log.warning("recording.bad_line", at=where, problem=problem, action="skipped")

    def _read_file(self, path: Path) -> Iterator[Record]:
        check_readable(path)
        line_number = 0
        seen = 0
        with _open(path) as stream:
            try:
                rest = b""
                read = (
                    stream.read1
                    if isinstance(stream, _Gunzip)
                    else functools.partial(stream.read1, _CHUNK_BYTES)
                )
                while chunk := read():
                    records = _decode_chunk(rest, chunk)
                    if records is not None:  # every line a record: the fastest path
                        seen += len(records)
                        line_number += len(records)
                        for record in records:
                            self.records += 1
                            self.last_ts = record.ts
                            yield record
                        rest = chunk[chunk.rfind(b"\n") + 1 :]
                        continue
                    lines = chunk.split(b"\n")
                    if rest:
                        lines[0] = rest + lines[0]
                    rest = lines.pop()  # the line the next chunk finishes
                    records = _decode_lines(lines)
                    if records is not None:  # every line a record, or blank: the fast path
                        seen += len(records)
                        line_number += len(lines)
                        for record in records:
                            self.records += 1
                            self.last_ts = record.ts
                            yield record
                        continue
                    for line in lines:
                        line_number += 1
                        if line and not line.isspace():
                            seen += 1
                            decoded = self._decode_line(path, line_number, line + b"\n")
                            if decoded is not None:
                                yield decoded
                if rest:  # the last line, without its newline
                    line_number += 1
                    if not rest.isspace():
                        seen += 1
                        decoded = self._decode_line(path, line_number, rest)
                        if decoded is not None:
                            yield decoded
            except (EOFError, gzip.BadGzipFile, zlib.error, _INFLATE_ERROR) as error:
                _log.warning(
                    "recording.truncated", path=str(path), line=line_number, error=repr(error)
                )
            except OSError as error:  # e.g. EISDIR on a platform where open() took a directory
                raise RecordingError(path, line_number, f"cannot read: {error}") from None
        if seen == 0:
            self.empty_files.append(str(path))
            _log.warning("recording.empty", path=str(path))

    def read_blocks(
        self, path: str | Path, venues: Sequence[str], *, block_bytes: int = 1 << 23
    ) -> Iterator[RecordBlock]:
        """The records of one file as :class:`RecordBlock` columns, ~``block_bytes`` of
        text each: the same records, counts, warnings and errors as :meth:`read`, without a
        Python object per websocket frame of a venue in ``venues`` (``feeds.record_scan``
        reads those lines; msgspec the others, as :meth:`read` does). Releases the GIL for
        the inflating and the scanning: made to run in a thread beside the consumer."""
        path = Path(path)
        check_readable(path)
        names = tuple(venues)
        encoded = [v.encode() for v in names]
        name_bytes = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
        name_starts = np.cumsum([0, *map(len, encoded)]).astype(np.int64)
        code_of = {v: k for k, v in enumerate(names)}
        line_number = 0
        seen = 0
        # compressed input per inflate call: a whole block's text in one GIL-free call
        with _open(path, max(block_bytes // 8, 1 << 14)) as stream:
            read = (
                stream.read1
                if isinstance(stream, _Gunzip)
                else functools.partial(stream.read1, block_bytes)
            )
            rest = b""
            try:
                while chunk := read():
                    text = rest + chunk if rest else chunk
                    cut = text.rfind(b"\n") + 1
                    rest = text[cut:]
                    if not cut:
                        continue
                    block, lines, rows, error = self._scan_block(
                        path, line_number, text, cut, names, name_bytes, name_starts, code_of
                    )
                    line_number += lines
                    seen += rows
                    if len(block):
                        yield block
                    if error is not None:
                        raise error
            except (EOFError, gzip.BadGzipFile, zlib.error, _INFLATE_ERROR) as error:
                _log.warning(
                    "recording.truncated", path=str(path), line=line_number, error=repr(error)
                )
                rest = b""
            except OSError as error:
                raise RecordingError(path, line_number, f"cannot read: {error}") from None
            if rest:  # the last line, without its newline
                line_number += 1
                if not rest.isspace():
                    seen += 1
                    decoded = self._decode_line(path, line_number, rest)
                    if decoded is not None:
                        yield RecordBlock.from_records([decoded], names)
        if seen == 0:
            self.empty_files.append(str(path))
            _log.warning("recording.empty", path=str(path))

    def _scan_block(
        self,
        path: Path,
        first_line: int,
        text: bytes,
        cut: int,
        names: tuple[str, ...],
        name_bytes: np.ndarray,
        name_starts: np.ndarray,
        code_of: dict[str, int],
    ) -> tuple[RecordBlock, int, int, RecordingError | None]:
        """The whole lines of ``text[:cut]`` as a block: (block, lines, non-blank lines,
        the error a strict reader stopped at, after the rows before it)."""
        data = np.frombuffer(text, dtype=np.uint8)
        out = np.empty(cut, dtype=np.uint8)
        parts: list[tuple[np.ndarray, ...]] = []
        i = used = 0
        while i < cut:
            room = (cut - i) // 64 + 256
            status = np.empty(room, dtype=np.int8)
            ts = np.empty(room, dtype=np.float64)
            code = np.empty(room, dtype=np.int64)
            spans = np.empty((room, 7), dtype=np.int64)
            n, o, i = scan_records(
                data, i, cut, name_bytes, name_starts, out[used:], status, ts, code, spans
            )
            spans[:n, 0:2] += used
            used += o
            parts.append((status[:n], ts[:n], code[:n], spans[:n]))
        if len(parts) == 1:
            status, ts, code, spans = parts[0]
        else:
            status, ts, code, spans = (np.concatenate(c) for c in zip(*parts, strict=True))
        n = len(status)
        buf = out[:used]
        records: dict[int, Record] = {}
        keep = (status == ROW_FAST) | (status == ROW_TS_TEXT)
        error: RecordingError | None = None
        if (status != ROW_FAST).any():
            for k in np.flatnonzero(status == ROW_TS_TEXT).tolist():
                ts[k] = float(text[spans[k, 5] : spans[k, 6]])
            extra: list[bytes] = []
            at = used
            ends = np.append(spans[1:, 4], cut)
            for k in np.flatnonzero(status == LINE_SLOW).tolist():
                line = text[spans[k, 4] : ends[k]]
                if line.isspace():  # blank but for a form feed or vertical tab
                    status[k] = LINE_BLANK
                    continue
                try:
                    rec = self._decode_line(path, first_line + k + 1, line)
                except RecordingError as exc:
                    error = exc
                    keep[k:] = False
                    n = k
                    break
                if rec is None:
                    continue
                keep[k] = True
                ts[k] = rec.ts
                venue = code_of.get(rec.venue, -1) if rec.kind is RecordKind.WS else -1
                code[k] = venue
                if venue >= 0:
                    frame = rec.data.encode()
                    extra.append(frame)
                    spans[k, 0] = at
                    at += len(frame)
                    spans[k, 1] = at
                records[k] = rec
            if extra:
                buf = np.concatenate((buf, np.frombuffer(b"".join(extra), dtype=np.uint8)))
            if not keep.all():
                rows = np.flatnonzero(keep)
                records = {int(r): records[k] for r, k in enumerate(rows.tolist()) if k in records}
                ts, code, spans = ts[rows], code[rows], spans[rows]
        # read-only, as frames joined from bytes are: the kernels that read it (the
        # scanners, the book kernel) are compiled for that one array type
        buf.flags.writeable = False
        fast = len(ts) - len(records)
        self.records += fast
        if len(ts):
            self.last_ts = float(ts[-1])
        blanks = int(np.count_nonzero(status[:n] == LINE_BLANK))
        block = RecordBlock(
            names, text, buf, ts, code, spans[:, 0], spans[:, 1], spans[:, 2:4], records
        )
        lines = n + (1 if error is not None else 0)
        return block, lines, lines - blanks, error

    def _decode_line(self, path: Path, line_number: int, line: bytes) -> Record | None:
        """One line the batch decode refused: the record, or None (skipped, or the
        unfinished last line)."""
        try:
            record = _decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            if not line.endswith(b"\n") and not isinstance(error, msgspec.ValidationError):
                # the last line, unfinished: the writer died in the middle of it
                _log.warning(
                    "recording.truncated", path=str(path), line=line_number, error=repr(error)
                )
                return None
            if not isinstance(error, msgspec.ValidationError):
                # without its newline, a half object reads as unfinished
                # rather than as a raw control character in a string
                error = _refine(line, error)
            self._bad_line(path, line_number, error)
            return None
        self.records += 1
        self.last_ts = record.ts
        return record


_CHUNK_BYTES = 1 << 16  # bytes of a plain file read at a time (gzip: see _Gunzip)
_batch_decoder = msgspec.json.Decoder(list[Record])
_NEWLINE = ord("\n")


def _decode_chunk(rest: bytes, chunk: bytes) -> list[Record] | None:
    """The records of the whole lines of ``rest + chunk`` in one decode, their newlines
    read as commas (no list of lines, no join: 5% of reading a recording), or None when
    that does not give exactly one record per line (a blank line, a line that is not one
    record, or no whole line): the caller then splits the lines."""
    cut = chunk.rfind(b"\n")
    if cut < 0:
        return None
    body = memoryview(chunk.replace(b"\n", b","))[:cut]  # the last newline is the end
    try:
        records = _batch_decoder.decode(b"".join((b"[", rest, body, b"]")))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    # numpy counts the newlines: bytes.count's one-character loop took 0.31 s of CPU over
    # the 8-hour bench recording's 974 MB, numpy's comparison 0.12 s
    lines = int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE))
    return records if len(records) == lines else None


def _decode_lines(lines: list[bytes]) -> list[Record] | None:
    """The records of whole lines in one decode, or None when a line is not exactly one
    record or blank (the caller then goes line by line, for the error and its line)."""
    body = [line for line in lines if line and not line.isspace()]
    if not body:
        return []
    try:
        records = _batch_decoder.decode(b"[" + b",".join(body) + b"]")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return records if len(records) == len(body) else None


def iter_recording(paths: str | Path | Iterable[str | Path]) -> Iterator[Record]:
    """Yield the records of one or more recording files, in file order, plain or gzip.

    Strict: a line that is not a record raises :class:`RecordingError` naming the file,
    the line and the problem (a corrupt recording is not silently shortened); use
    :class:`RecordingReader` to skip and count such lines instead. A truncated tail (an
    unfinished last line, or a gzip stream without its end) ends that file with a
    ``recording.truncated`` warning.
    """
    return RecordingReader(strict=True).read(paths)
