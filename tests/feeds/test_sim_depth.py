"""The local exchange's books look like real ones in USD: about the configured depth within
±1% of mid on every book (inverse contracts and cheap coins alike), cumulative depth
growing like δ^0.55 with distance, and every size a whole number of the instrument's lots."""

from __future__ import annotations

import pytest

from feeds.sim.base import DepthProfile, ExchangeSim, SimBook
from feeds.sim.exchange import DEPTH_1PCT_USD, build, depth_profile, usd_price
from monitor.domain import Instrument, InstrumentKind, Venue, to_units
from monitor.settings import load_settings


def instrument_of(book: SimBook) -> Instrument:
    instrument = book.extra["instrument"]
    assert isinstance(instrument, Instrument)
    return instrument


def depth_usd(book: SimBook, within_pct: float) -> tuple[float, float]:
    """USD within ``within_pct`` of mid per side, converting sizes as the monitor does."""
    inst = instrument_of(book)
    quote_usd = float(usd_price(inst.quote))
    mid = book.mark_px
    edge = mid * within_pct / 100.0

    def usd(px: int, qty: int) -> float:
        price = px / float(10**book.price_decimals)
        size = qty / float(10**book.qty_decimals)
        base = size * inst.contract_size / (price if inst.inverse else 1.0)
        return base * price * quote_usd

    bids = sum(usd(p, q) for p, q in book.bids.items() if mid - p <= edge)
    asks = sum(usd(p, q) for p, q in book.asks.items() if p - mid <= edge)
    return bids, asks


@pytest.fixture(scope="module")
def books() -> list[SimBook]:
    sim = build(load_settings([], env={}))
    return list(sim.books.values())


def test_every_default_book_holds_about_its_target_within_one_percent(
    books: list[SimBook],
) -> None:
    assert len(books) > 50
    for book in books:
        target = depth_profile(instrument_of(book)).depth_1pct_usd
        for side in depth_usd(book, 1.0):
            assert 0.6 * target <= side <= 1.4 * target, (book.venue, book.symbol, side, target)


def test_inverse_contracts_and_cheap_coins_are_no_exception(books: list[SimBook]) -> None:
    by_key = {(b.venue, b.symbol): b for b in books}
    for key, target in (
        ((Venue.OKX, "BTC-USD-SWAP"), DEPTH_1PCT_USD["BTC"]),  # contracts of 100 USD
        ((Venue.DERIBIT, "BTC-PERPETUAL"), DEPTH_1PCT_USD["BTC"]),  # sizes in USD
        ((Venue.OKX, "DOGE-USDT-SWAP"), DEPTH_1PCT_USD["DOGE"]),  # contracts of 1000 DOGE
        ((Venue.BINANCE, "XRPUSDT"), DEPTH_1PCT_USD["XRP"]),
    ):
        assert min(depth_usd(by_key[key], 1.0)) >= 0.6 * target, key


def test_cumulative_depth_grows_like_distance_to_the_power_0_55(books: list[SimBook]) -> None:
    # books whose tick is fine enough to place many levels within 0.5%
    fine = [b for b in books if b.tick_units * 1000 < b.mark_px]
    assert len(fine) > 30
    half, one, two = (
        sum(sum(depth_usd(b, pct)) for b in fine) for pct in (0.5, 1.0, 2.0)
    )  # summed over many books: the per-level noise averages out
    assert half / one == pytest.approx(0.5**0.55, rel=0.15)
    assert two / one == pytest.approx(2**0.55, rel=0.15)


def test_the_moving_market_keeps_the_depth_and_whole_lots() -> None:
    sim = build(load_settings([], env={}))
    for _ in range(1000):  # 3,000 changes near the touch of every book
        sim.step()
    for book in sim.books.values():
        lot = to_units(instrument_of(book).lot, book.qty_decimals)
        sizes = [*book.bids.values(), *book.asks.values()]
        assert sizes and all(q > 0 and q % lot == 0 for q in sizes), book.symbol
        target = depth_profile(instrument_of(book)).depth_1pct_usd
        for side in depth_usd(book, 1.0):
            # churn sized per tick of the curve: coarse-tick books do not pile up at the top
            assert 0.4 * target <= side <= 1.6 * target, (book.venue, book.symbol, side)


def test_depth_is_configurable_per_symbol_and_the_profile_is_the_documented_curve() -> None:
    settings = load_settings([], env={})
    sim = build(settings, depth_1pct_usd={"BTCUSDT": 2_000_000.0})
    for venue in (Venue.BINANCE, Venue.BYBIT):
        for side in depth_usd(sim.book(venue, "BTCUSDT"), 1.0):
            assert 1_200_000 <= side <= 2_800_000
    profile = DepthProfile(depth_1pct_usd=1e6)
    assert profile.cumulative_usd(1.0) == pytest.approx(1e6)
    assert profile.cumulative_usd(0.25) == pytest.approx(1e6 * 0.25**0.55)
    knee = profile.cumulative_usd(2.0)
    assert profile.cumulative_usd(4.0) == pytest.approx(knee * 2**0.2)  # flatter beyond 2%


def test_a_coarse_tick_on_a_cheap_coin_never_makes_a_price_of_zero() -> None:
    sim = ExchangeSim([])
    coin = Instrument(Venue.BINANCE, "PEPEUSDT", "PEPE", "USDT", InstrumentKind.SPOT, "0.0001", "1")
    book = sim.add_instrument(coin, mid="0.0010", levels=50)
    for _ in range(500):
        sim.random_changes(book)
    assert book.bids and min(book.bids) > 0
    assert book.best_bid() is not None and book.best_ask() is not None
    assert book.best_bid() < book.best_ask()  # type: ignore[operator]
