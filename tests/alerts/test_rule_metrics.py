"""The metric names the API and `liqmon rules add` accept are the ones the rules can watch:
every series :func:`monitor.alerting.observe` produces on real recordings is accepted, and
so is every metric of the shipped rules; a name it never produces is refused."""

from __future__ import annotations

from pathlib import Path

from alerts.rules import load_rules
from feeds.venues import ADAPTERS
from monitor.alerting import metric_problem, observe
from monitor.instruments import InstrumentRegistry
from monitor.pipeline import BookPipeline
from monitor.replay import replay
from monitor.sample import TickSample
from monitor.settings import shipped_config_dir
from monitor.sinks import CallbackSink
from tests.conftest import OKX_RECORDING, USDM_RECORDING


def test_every_observed_series_and_every_shipped_rule_metric_is_accepted() -> None:
    seen: set[str] = set()

    def collect(sample: TickSample) -> None:
        seen.update(observe(sample).series)

    pipeline = BookPipeline(InstrumentRegistry(), ADAPTERS)
    replay([OKX_RECORDING, USDM_RECORDING], pipeline, tick_ms=1000, sinks=[CallbackSink(collect)])
    # books, health, venues, assets, the market (the analytics ran)
    assert {"spread_bps", "depth_usd.1.total", "book.valid", "venue.stale_fraction"} <= seen
    assert {"asset.level", "market.level", "score.level"} <= seen
    assert {m for m in seen if metric_problem(m)} == set()
    shipped = load_rules(sorted(Path(shipped_config_dir()).glob("rules*.toml")))
    assert shipped and {r.metric for r in shipped if metric_problem(r.metric)} == set()


def test_names_no_series_has_are_refused() -> None:
    for metric in ("depth", "depth_usd.1", "depth_usd.one.total", "spread", "asset.nope", ""):
        assert metric_problem(metric) is not None, metric
    assert metric_problem("slippage_bps.250000.buy") is None
    assert metric_problem("depth_usd.0.25.min") is None
