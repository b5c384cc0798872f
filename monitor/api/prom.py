"""``/metrics``: Prometheus text from the official client, read at scrape time.

Nothing is counted on the hot path for Prometheus: a custom collector reads the daemon's
own counters (pipeline message counters, per-venue connection health, sink queues), the
latest tick sample (books valid/invalid/stale, book age per venue), the push hub, and
whatever other parts register a stats callback (the storage writer's rows, lag and
spill; the alert deliveries).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.api.live import LiveState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> () -> {"counter name": value}; e.g. "writer" -> rows_written, lag_s, spilled...
StatsSource = Callable[[], Mapping[str, float]]


class LiqmonCollector(Collector):
    def __init__(self, live: LiveState | None, stats: dict[str, StatsSource]) -> None:
        self.live = live
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        live = self.live
        daemon = live.daemon if live is not None else None
        sample = live.sample if live is not None else None
        if sample is not None:
            yield from self._books(sample)
        if daemon is not None:
            health = daemon.health_state()
            yield from self._venues(health)
            queue_depth = GaugeMetricFamily(
                "liqmon_sink_queue_depth", "Samples waiting in a sink's queue", labels=["sink"]
            )
            overflow = CounterMetricFamily(
                "liqmon_sink_overflow",
                "Samples a sink lost because it fell behind",
                labels=["sink"],
            )
            written = CounterMetricFamily(
                "liqmon_sink_written", "Samples delivered to a sink", labels=["sink"]
            )
            for q in daemon.sink_queues:
                queue_depth.add_metric([q.sink.name], q.depth)
                overflow.add_metric([q.sink.name], q.overflow)
                written.add_metric([q.sink.name], q.written)
            yield queue_depth
            yield overflow
            yield written
        if live is not None:
            hub = live.hub
            yield GaugeMetricFamily(
                "liqmon_ws_clients", "Live push clients connected", value=len(hub.clients)
            )
            yield CounterMetricFamily(
                "liqmon_ws_clients_dropped",
                "Live push clients dropped for being too slow",
                value=hub.dropped_total,
            )
            yield CounterMetricFamily(
                "liqmon_ws_messages", "Live push messages queued", value=hub.messages_total
            )
            yield GaugeMetricFamily(
                "liqmon_ws_max_queue_depth",
                "Deepest live push client queue",
                value=hub.max_queue_depth(),
            )
        for source, fn in sorted(self.stats.items()):
            try:
                values = fn()
            except Exception:  # a scrape never fails because one part could not answer
                continue
            for key, value in sorted(values.items()):
                name = f"liqmon_{source}_{key}"
                kind = CounterMetricFamily if key.endswith("_total") else GaugeMetricFamily
                metric_name = name.removesuffix("_total")
                yield kind(metric_name, f"{source}: {key}", value=float(value))

    def _books(self, sample: Any) -> Iterator[Metric]:
        books = GaugeMetricFamily(
            "liqmon_books", "Books by venue and condition", labels=["venue", "condition"]
        )
        age = GaugeMetricFamily(
            "liqmon_book_age_seconds",
            "Seconds since a venue's books last updated (median, max)",
            labels=["venue", "stat"],
        )
        updates = CounterMetricFamily(
            "liqmon_book_updates", "Messages applied to a venue's books", labels=["venue"]
        )
        per: dict[str, list[int]] = {}
        for i, ident in enumerate(sample.books):
            per.setdefault(ident.venue, []).append(i)
        for venue, rows in sorted(per.items()):
            idx = np.array(rows)
            valid = int(sample.valid[idx].sum())
            stale = int(sample.stale[idx].sum())
            books.add_metric([venue, "valid"], valid)
            books.add_metric([venue, "stale"], stale)
            books.add_metric([venue, "invalid"], len(rows) - valid - stale)
            ages = sample.book_age_s[idx]
            ages = ages[np.isfinite(ages)]
            if ages.size:
                age.add_metric([venue, "median"], float(np.median(ages)))
                age.add_metric([venue, "max"], float(ages.max()))
            updates.add_metric([venue], int(sample.updates[idx].sum()))
        yield books
        yield age
        yield updates
        yield GaugeMetricFamily(
            "liqmon_tick_timestamp_seconds", "Time of the latest tick", value=sample.ts_ns / 1e9
        )

    def _venues(self, health: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "liqmon_venue_messages",
            "Pipeline events per venue and kind (parse errors, snapshots, ignored ...)",
            labels=["venue", "kind"],
        )
        frames = CounterMetricFamily("liqmon_venue_frames", "Frames received", labels=["venue"])
        errors = CounterMetricFamily(
            "liqmon_venue_errors",
            "Connection errors, failed connects and stale connections",
            labels=["venue", "kind"],
        )
        resyncs = CounterMetricFamily("liqmon_venue_resyncs", "Book resyncs", labels=["venue"])
        gaps = CounterMetricFamily("liqmon_venue_gaps", "Sequence gaps", labels=["venue"])
        connections = GaugeMetricFamily(
            "liqmon_venue_open_connections", "Open websocket connections", labels=["venue"]
        )
        silence = GaugeMetricFamily(
            "liqmon_venue_last_frame_age_seconds",
            "Seconds since the venue's last frame (feed latency as seen here)",
            labels=["venue"],
        )
        now_ns = time.time_ns()
        for venue, state in sorted(health.items()):
            for kind, n in sorted(state.get("counters", {}).items()):
                messages.add_metric([venue, kind], n)
            frames.add_metric([venue], state.get("frames", 0))
            for kind in ("errors", "connect_failures", "stale", "checksum_failed"):
                errors.add_metric([venue, kind], state.get(kind, 0))
            errors.add_metric([venue, "snapshots_failed"], state.get("snapshots_failed", 0))
            resyncs.add_metric([venue], state.get("resyncs", 0))
            gaps.add_metric([venue], state.get("gaps", 0))
            connections.add_metric([venue], state.get("open_connections", 0))
            last = state.get("last_frame_ns", 0)
            if last:
                silence.add_metric([venue], max(0.0, (now_ns - last) / 1e9))
            else:
                silence.add_metric([venue], math.nan)
        yield from (messages, frames, errors, resyncs, gaps, connections, silence)


class PromMetrics:
    """The registry behind ``/metrics``: the collector plus the API's own request timings."""

    def __init__(self, live: LiveState | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.stats: dict[str, StatsSource] = {}
        self.registry.register(LiqmonCollector(live, self.stats))
        self.requests = Histogram(
            "liqmon_api_request_seconds",
            "API request latency",
            ["route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    def add_stats(self, name: str, fn: StatsSource) -> None:
        """Expose ``fn()``'s numbers as ``liqmon_<name>_<key>`` (``*_total``: counters)."""
        self.stats[name] = fn

    def render(self) -> bytes:
        return generate_latest(self.registry)
