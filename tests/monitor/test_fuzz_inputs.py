"""Fuzz: mutated recording lines and mutated venue frames never raise out of the reader,
an adapter's decode, the pipeline or a replay; garbage about one book leaves the others as
they would have been.

Mutations start from real inputs (the captured fixtures of every venue, the OKX
recording): cut short, bytes deleted, inserted or replaced, or a JSON value somewhere in
the message replaced by another value of any type or removed. Bounded: a few hundred
examples in all, no deadline (the first examples compile nothing: the kernels are warm).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.recording import RecordingReader
from feeds.venues import ADAPTERS
from monitor.domain import Venue
from monitor.errors import ParseError
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import replay
from tests.conftest import FIXTURES, OKX_RECORDING

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every captured message, by the venue that sent it (fixture files are recording records).
CAPTURED: dict[Venue, list[dict[str, Any]]] = {venue: [] for venue in ADAPTERS}
for _path in sorted(FIXTURES.glob("*/*.json")):
    _record = json.loads(_path.read_text())
    if isinstance(_record, dict) and _record.get("venue") in CAPTURED:
        CAPTURED[Venue(_record["venue"])].append(_record)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "-1", "1e999", "NaN", "nan", "1.", ".5", "١٢"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
SPECIAL = st.sampled_from(
    ['"', "[", "]", "{", "}", ",", ":", "-", "\\", "null", "1e999", "\x00", "\u2028"]
)


@st.composite
def mutated_json(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one node somewhere replaced by any JSON value, or removed."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if draw(st.integers(0, 4)) == 0:
            del out[key]
        else:
            out[key] = draw(mutated_json(value[key]))
        return out
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(value) - 1))
        out_list = list(value)
        if draw(st.integers(0, 4)) == 0:
            del out_list[index]
        else:
            out_list[index] = draw(mutated_json(value[index]))
        return out_list
    return draw(json_values)


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> str:
    how = draw(st.sampled_from(["truncate", "delete", "insert", "replace", "json", "json"]))
    if how == "json":
        try:
            parsed = json.loads(text)
        except ValueError:
            how = "insert"
        else:
            return json.dumps(draw(mutated_json(parsed)), allow_nan=True)
    at = draw(st.integers(0, len(text)))
    if how == "truncate":
        return text[:at]
    if how == "delete":
        return text[:at] + text[at + draw(st.integers(1, 40)) :]
    if how == "insert":
        return text[:at] + draw(SPECIAL | st.text(max_size=8)) + text[at:]
    return text[:at] + draw(SPECIAL | st.characters()) + text[at + 1 :]


@pytest.mark.parametrize("venue", list(ADAPTERS), ids=str)
@FUZZ
@given(data=st.data())
def test_an_adapter_decode_raises_nothing_but_parse_error(
    venue: Venue, data: st.DataObject
) -> None:
    adapter = ADAPTERS[venue]
    record = data.draw(st.sampled_from(CAPTURED[venue]))
    text = data.draw(mutated_text(record["data"]))
    try:
        if record["kind"] == "ws":
            adapter.decode(text, 1)
        else:
            adapter.decode_http(record["url"], text, 1)
    except ParseError:
        pass


@pytest.fixture(scope="module")
def pipelines() -> dict[Venue, BookPipeline]:
    """One pipeline per venue, its captured messages fed (books exist, some synced)."""
    registry = InstrumentRegistry.load_cached(ADAPTERS)
    out = {}
    for venue, captured in CAPTURED.items():
        pipeline = BookPipeline(registry, ADAPTERS)
        for record in captured:
            pipeline.on_message(venue, record["kind"], record["url"], record["data"], 1)
        out[venue] = pipeline
    return out


@pytest.mark.parametrize("venue", list(ADAPTERS), ids=str)
@FUZZ
@given(data=st.data())
def test_the_pipeline_takes_any_mutated_frame(
    pipelines: dict[Venue, BookPipeline], venue: Venue, data: st.DataObject
) -> None:
    pipeline = pipelines[venue]
    records = data.draw(st.lists(st.sampled_from(CAPTURED[venue]), min_size=1, max_size=4))
    frames = [data.draw(mutated_text(r["data"])) for r in records]
    for record, frame in zip(records, frames, strict=True):
        pipeline.on_message(venue, record["kind"], record["url"], frame, 2)
    # the batched hot path too (a run of frames in one call), then a tick over every book
    pipeline.feed_frames(venue, frames, [3] * len(frames))
    pipeline.flush()
    pipeline.tick(4_000_000_000)
    pipeline.book_summaries(depth=5)


OKX_LINES = gzip.decompress(OKX_RECORDING.read_bytes()).decode().splitlines()
VICTIM = "UNI-USD-SWAP"  # the book garbage is about; the others must not notice
VICTIM_LINES = [i for i, line in enumerate(OKX_LINES) if f'\\"instId\\":\\"{VICTIM}\\"' in line]


def _final_books(path: Path, strict: bool = False) -> dict[str, dict[str, Any]]:
    registry = InstrumentRegistry.load_cached([Venue.OKX])
    pipeline = BookPipeline(registry, ADAPTERS)
    replay([path], pipeline, tick_ms=1000, reader=RecordingReader(strict=strict))
    return {s["symbol"]: s for s in pipeline.book_summaries(depth=50)}


@pytest.fixture(scope="module")
def clean_books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("clean") / "okx.jsonl"
    path.write_text("\n".join(OKX_LINES) + "\n")
    books = _final_books(path, strict=True)
    assert VICTIM in books and len(books) > 1
    return books


@FUZZ
@given(data=st.data())
def test_garbage_in_a_recording_about_one_book_leaves_the_others_unchanged(
    tmp_path: Path, clean_books: dict[str, dict[str, Any]], data: st.DataObject
) -> None:
    lines = list(OKX_LINES)
    inserted: list[tuple[int, str]] = []
    for _ in range(data.draw(st.integers(1, 6))):
        victim = OKX_LINES[data.draw(st.sampled_from(VICTIM_LINES))]
        record = json.loads(victim)
        if data.draw(st.booleans()):  # the victim's frame mangled inside a valid record
            record["data"] = data.draw(mutated_text(record["data"]))
            garbage = json.dumps(record)
        else:  # the record line itself mangled (often no longer a record at all)
            garbage = data.draw(mutated_text(victim))
            if '"okx"' in garbage and "BTC" in garbage and VICTIM not in garbage:
                continue  # a mangled line could in principle turn into another book's data
        garbage = garbage.replace("\n", " ")
        inserted.append((data.draw(st.integers(0, len(lines))), garbage))
    for at, garbage in sorted(inserted, reverse=True):
        lines.insert(at, garbage)
    path = tmp_path / "okx-garbage.jsonl"
    path.write_text("\n".join(lines) + "\n")
    books = _final_books(path)
    for symbol, clean in clean_books.items():
        if symbol != VICTIM:
            assert books[symbol] == clean, symbol


# Found by the fuzz above: numbers beyond int64, and absurd metadata.


def test_a_checksum_beyond_int64_throws_away_only_its_book(
    tmp_path: Path, clean_books: dict[str, dict[str, Any]]
) -> None:
    at = VICTIM_LINES[len(VICTIM_LINES) // 2]
    record = json.loads(OKX_LINES[at])
    frame = json.loads(record["data"])
    assert "checksum" in frame["data"][0]
    frame["data"][0]["checksum"] = 2**63 + 5
    record["data"] = json.dumps(frame)
    lines = [*OKX_LINES[:at], json.dumps(record), *OKX_LINES[at + 1 :]]
    path = tmp_path / "okx-big-checksum.jsonl"
    path.write_text("\n".join(lines) + "\n")
    books = _final_books(path)
    assert books[VICTIM]["rejected"] == clean_books[VICTIM]["rejected"] + 1
    for symbol, clean in clean_books.items():
        if symbol != VICTIM:
            assert books[symbol] == clean, symbol


def test_absurd_size_decimals_are_a_parse_error() -> None:
    record = next(
        r for r in CAPTURED[Venue.HYPERLIQUID] if r["kind"] == "http" and "universe" in r["data"]
    )
    meta = json.loads(record["data"])
    meta["universe"][0]["szDecimals"] = 10**30
    with pytest.raises(ParseError, match="szDecimals"):
        ADAPTERS[Venue.HYPERLIQUID].parse_instruments(record["url"], json.dumps(meta))
