"""Every symbol the shipped configs watch is in the shipped instrument cache.

The cache (config/instruments/) is what the daemon falls back to offline and what the local
exchange builds its books from: a configured symbol missing there is a book that never
gets metadata (logged as ``instruments.unknown_symbol``) and never shows up in ``liqmon sim``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.domain import Venue
from monitor.instruments import InstrumentRegistry
from monitor.settings import DEFAULT_CONFIG, load_settings

SIM_CONFIG = Path(DEFAULT_CONFIG).parent / "sim.toml"


@pytest.mark.parametrize("config", [None, SIM_CONFIG], ids=["default.toml", "sim.toml"])
@pytest.mark.parametrize("venue", list(Venue), ids=[v.value for v in Venue])
def test_every_configured_symbol_is_in_the_cached_instruments(
    venue: Venue, config: Path | None
) -> None:
    settings = load_settings([config] if config is not None else [], env={})
    cached = InstrumentRegistry.load_cached([venue])

    missing = [s for s in settings.venues[venue].symbols if cached.get(venue, s) is None]

    assert missing == [], f"{venue.value}: not in config/instruments/{venue.value}.json.gz"
