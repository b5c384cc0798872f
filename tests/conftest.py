"""Shared test helpers: where the real recordings and captured frames live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
RECORDINGS = TESTS / "recordings"
FIXTURES = TESTS / "fixtures"

SPOT_RECORDING = RECORDINGS / "binance-spot-2021-10-12.jsonl.gz"
USDM_RECORDING = RECORDINGS / "binance-usdm-2021-07-22.jsonl.gz"
OKX_RECORDING = RECORDINGS / "okx-2022-05-13.jsonl.gz"


def fixture_record(venue: str, name: str) -> dict[str, Any]:
    """A captured message in recording form ({ts, venue, kind, url, data})."""
    record: dict[str, Any] = json.loads((FIXTURES / venue / f"{name}.json").read_text())
    return record


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """numba compiles on first use (seconds on a clean clone): once, before any test, so
    that no timed part of a test (a daemon's receive timeout) pays for it."""
    from feeds.venues import ADAPTERS  # noqa: PLC0415
    from monitor.warmup import warm_up  # noqa: PLC0415

    warm_up(ADAPTERS.values())


@pytest.fixture
def spot_recording() -> Path:
    return SPOT_RECORDING


@pytest.fixture
def usdm_recording() -> Path:
    return USDM_RECORDING
