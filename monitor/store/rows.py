"""Tick samples as table rows, and table rows back as metrics-out records.

:func:`book_metric_rows` turns the changed rows of a :class:`~monitor.sample.TickSample`
into ``book_metrics`` tuples column by column (numpy slices, one ``tolist`` per column);
:func:`book_record_from_row` rebuilds the ``--metrics-out`` object of a stored row with the
same arithmetic as :meth:`TickSample.book_record`, so a stored replay reads back exactly as
its metrics-out lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
import numpy as np

from monitor.sample import (
    COMPONENTS,
    NO_BOOK_FIELDS,
    SCORE_STATES,
    STATE_NAMES,
    TickSample,
    band_label,
    notional_label,
)

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

BOOK_METRICS_COLUMNS: Final = (
    "ts",
    "venue",
    "symbol",
    "instrument",
    "base",
    "quote",
    "kind",
    "valid",
    "stale",
    "state",
    "bid",
    "ask",
    "mid",
    "spread_bps",
    "layout",
    "depth_usd",
    "depth_quote",
    "covered_mask",
    "slippage_bps",
    "exhausted_mask",
    "depth_1pct_bid_usd",
    "depth_1pct_ask_usd",
    "levels_bid",
    "levels_ask",
    "truncated",
    "fx_usd",
    "fx_assumed",
    "book_age_s",
    "updates",
    "mark_price",
    "index_price",
    "funding_rate",
    "score_state",
    "lvs",
    "components",
)
BOOK_SNAPSHOT_COLUMNS: Final = (
    "ts",
    "venue",
    "symbol",
    "instrument",
    "reason",
    "valid",
    "state",
    "bids",
    "asks",
)
_encode_json = msgspec.json.Encoder().encode


def timestamp(ts_ns: int) -> dt.datetime:
    """Nanoseconds since the epoch as an exact UTC datetime (microseconds, truncated)."""
    return EPOCH + dt.timedelta(microseconds=ts_ns // 1000)


def _nullable(values: np.ndarray, keep: np.ndarray | None = None) -> list[Any]:
    """A float column as a list with NaN (and rows outside ``keep``) as None."""
    out = values.astype(object)
    missing = np.isnan(values)
    if keep is not None:
        missing |= ~keep
    out[missing] = None
    return out.tolist()  # type: ignore[no-any-return]


def _masked(values: np.ndarray, keep: np.ndarray) -> list[Any]:
    """Rows of an array column as lists, None where ``keep`` is false."""
    rows: list[Any] = values.tolist()
    if not keep.all():
        for i in np.flatnonzero(~keep).tolist():
            rows[i] = None
    return rows


def layout_text(bands_pct: Sequence[float], notionals_usd: Sequence[float]) -> str:
    """``"0.1,0.5,1.0,2.0|10000.0,100000.0,1000000.0"``: a row's bands and notionals."""
    return (
        ",".join(map(repr, map(float, bands_pct)))
        + "|"
        + ",".join(map(repr, map(float, notionals_usd)))
    )


def parse_layout(text: str) -> tuple[list[float], list[float]]:
    bands, notionals = text.split("|")
    return [float(b) for b in bands.split(",")], [float(n) for n in notionals.split(",")]


def _bits(flags: np.ndarray) -> np.ndarray:
    """``[row, k, side]`` booleans as one integer per row: bit ``2k + side``."""
    flat = flags.reshape(len(flags), -1).astype(np.int64)
    return flat @ (np.int64(1) << np.arange(flat.shape[1], dtype=np.int64))


def book_metric_rows(sample: TickSample, *, changed_only: bool = True) -> list[tuple[Any, ...]]:
    """``book_metrics`` rows (in :data:`BOOK_METRICS_COLUMNS` order) of a sample."""
    idx = np.flatnonzero(sample.changed) if changed_only else np.arange(len(sample))
    n = len(idx)
    if n == 0:
        return []
    books = [sample.books[i] for i in idx.tolist()]
    valid = sample.valid[idx]
    layout = layout_text(sample.bands_pct, sample.notionals_usd)
    try:
        one = sample.band_index(1.0)
    except KeyError:
        one = -1
    depth = sample.depth_usd[idx]
    quote = sample.depth_quote[idx]
    covered = sample.depth_covered[idx]
    slip = sample.slippage_bps[idx]
    exhausted = sample.slippage_exhausted[idx]
    levels = sample.levels[idx]
    nothing = np.zeros(n, dtype=bool)
    columns: list[list[Any]] = [
        [timestamp(sample.ts_ns)] * n,
        [b.venue for b in books],
        [b.symbol for b in books],
        [b.instrument for b in books],
        [b.base for b in books],
        [b.quote for b in books],
        [b.kind for b in books],
        valid.tolist(),
        sample.stale[idx].tolist(),
        [STATE_NAMES[s] for s in sample.book_state[idx].tolist()],
        _nullable(sample.bid[idx], valid),
        _nullable(sample.ask[idx], valid),
        _nullable(sample.mid[idx], valid),
        _nullable(sample.spread_bps[idx], valid),
        [layout if v else None for v in valid.tolist()],
        _masked(depth, valid),
        _masked(quote, valid),
        _masked(_bits(covered), valid),
        _masked(slip, valid),
        _masked(_bits(exhausted), valid),
        _nullable(depth[:, one, 0], valid if one >= 0 else nothing),
        _nullable(depth[:, one, 1], valid if one >= 0 else nothing),
        levels[:, 0].tolist(),
        levels[:, 1].tolist(),
        sample.truncated[idx].tolist(),
        _nullable(sample.fx_usd[idx]),
        sample.fx_assumed[idx].tolist(),
        _nullable(sample.book_age_s[idx]),
        sample.updates[idx].tolist(),
        _nullable(sample.mark_price[idx]),
        _nullable(sample.index_price[idx]),
        _nullable(sample.funding_rate[idx]),
        [SCORE_STATES[s] for s in sample.score_state[idx].tolist()],
        [None if x is None else round(x, 2) for x in _nullable(sample.lvs[idx])],
        _components_column(sample, idx),
    ]
    return list(zip(*columns, strict=True))


def _components_column(sample: TickSample, idx: np.ndarray) -> list[str | None]:
    """The score's components as metrics-out writes them (points rounded to 0.01), JSON."""
    if sample.analytics is None:
        return [None] * len(idx)
    lvs = sample.lvs[idx].tolist()
    points = sample.components[idx].tolist()
    # Python's round, as metrics-out (numpy's differs in the last place now and then)
    return [
        None
        if v != v
        else _encode_json({n: round(x, 2) for n, x in zip(COMPONENTS, p, strict=True)}).decode()
        for v, p in zip(lvs, points, strict=True)
    ]


def book_snapshot_rows(
    ts_ns: int, summaries: Sequence[Mapping[str, Any]], reason: str
) -> list[tuple[Any, ...]]:
    """``book_snapshots`` rows from ``BookPipeline.book_summaries(depth)``."""
    when = timestamp(ts_ns)
    return [
        (
            when,
            s["venue"],
            s["symbol"],
            s["instrument"],
            reason,
            bool(s["valid"]),
            s["state"],
            _encode_json(s["bids"]).decode(),
            _encode_json(s["asks"]).decode(),
        )
        for s in summaries
    ]


def _num(x: float | None) -> float | None:
    return None if x is None or x != x else float(x)


def _components(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    points = msgspec.json.decode(text)
    return {name: points[name] for name in COMPONENTS}  # jsonb does not keep key order


def book_record_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``book_metrics`` row as its ``--metrics-out`` object (``"kind": "book"``).

    ``row`` carries ``ts_us`` (integer microseconds) instead of ``ts``.
    """
    record: dict[str, Any] = {
        "ts": row["ts_us"] * 1000 / 1e9,
        "kind": "book",
        "venue": row["venue"],
        "symbol": row["symbol"],
        "instrument": row["instrument"],
        "valid": row["valid"],
        "stale": row["stale"],
        # metrics-out's "state" is the score state and "book_state" the sync state
        "state": row["score_state"] or "data",
        "book_state": row["state"],
        "lvs": row["lvs"],
        "components": _components(row["components"]),
    }
    if row["valid"]:
        bands, notionals = parse_layout(row["layout"])
        depth_rows, quote_rows, slip_rows = (
            row["depth_usd"],
            row["depth_quote"],
            row["slippage_bps"],
        )
        covered_bits, exhausted_bits = row["covered_mask"], row["exhausted_mask"]
        depth: dict[str, list[float | None]] = {}
        depth_quote: dict[str, list[float | None]] = {}
        covered: dict[str, list[bool]] = {}
        imbalance: dict[str, float | None] = {}
        for k, pct in enumerate(bands):
            label = band_label(pct)
            depth[label] = [_num(depth_rows[k][0]), _num(depth_rows[k][1])]
            q0, q1 = quote_rows[k]
            depth_quote[label] = [_num(q0), _num(q1)]
            covered[label] = [bool(covered_bits >> 2 * k & 1), bool(covered_bits >> 2 * k + 1 & 1)]
            total = q0 + q1
            imbalance[label] = _num((q0 - q1) / total) if total > 0 else None
        slippage = {}
        for n, notional in enumerate(notionals):
            slippage[notional_label(notional)] = {
                "sell_bps": _num(slip_rows[n][0]),
                "sell_exhausted": bool(exhausted_bits >> 2 * n & 1),
                "buy_bps": _num(slip_rows[n][1]),
                "buy_exhausted": bool(exhausted_bits >> 2 * n + 1 & 1),
            }
        record.update(
            bid=row["bid"],
            ask=row["ask"],
            mid=row["mid"],
            spread_bps=row["spread_bps"],
            depth=depth,
            depth_quote=depth_quote,
            depth_covered=covered,
            imbalance=imbalance,
            slippage=slippage,
        )
    else:
        record.update(NO_BOOK_FIELDS)
    record.update(
        levels=[row["levels_bid"], row["levels_ask"]],
        truncated=row["truncated"],
        fx_usd=row["fx_usd"],
        fx_assumed=row["fx_assumed"],
        book_age_s=row["book_age_s"],
        updates=row["updates"],
    )
    if row["mark_price"] is not None or row["funding_rate"] is not None:
        record.update(
            mark_price=row["mark_price"],
            index_price=row["index_price"],
            funding_rate=row["funding_rate"],
        )
    return record


ASSET_METRICS_COLUMNS: Final = (
    "ts",
    "asset",
    "consensus_usd",
    "venues",
    "outlier",
    "depth_1pct_venue_sum",
    "depth_1pct_consolidated",
    "lvs",
    "state",
    "components",
    "lowest",
    "index_deviation_bps",
    "peg_bps",
)
FX_RATES_COLUMNS: Final = ("ts", "currency", "usd", "assumed", "age_s")
SCORE_SAMPLES_COLUMNS: Final = (
    "ts",
    "scope",
    "venue",
    "symbol",
    "asset",
    "value",
    "state",
    "components",
)
ALERT_EVENTS_COLUMNS: Final = (
    "ts",
    "kind",
    "rule",
    "state",
    "previous",
    "severity",
    "venue",
    "symbol",
    "asset",
    "value",
    "components",
    "fingerprint",
)


def _json(value: Any) -> str | None:
    return None if value is None else _encode_json(value).decode()


def asset_metric_rows(sample: TickSample) -> list[tuple[Any, ...]]:
    """``asset_metrics`` rows: the assets metrics-out writes this tick (a changed book or a
    score event)."""
    when = timestamp(sample.ts_ns)
    rows = []
    for r in sample.asset_records(changed_only=True):
        depth = r["depth_1pct_usd"]
        rows.append(
            (
                when,
                r["asset"],
                r["consensus_usd"],
                _json(r["venues"]),
                _json(r["outlier"]),
                depth["venue_sum"],
                depth["consolidated"],
                r["lvs"],
                r["state"],
                _json(r["components"]),
                _json(r.get("lowest")),
                r.get("index_deviation_bps"),
                r.get("peg_bps"),
            )
        )
    return rows


def fx_rate_rows(sample: TickSample) -> list[tuple[Any, ...]]:
    """``fx_rates`` rows: every quote currency's rate this tick."""
    when = timestamp(sample.ts_ns)
    return [(when, r["currency"], r["usd"], r["assumed"], r["age_s"]) for r in sample.fx_records()]


def score_sample_rows(sample: TickSample) -> list[tuple[Any, ...]]:
    """``score_samples`` rows: the market's score every tick, and each asset metrics-out
    writes (per-book scores are columns of ``book_metrics``)."""
    assets = sample.assets
    if assets is None:
        return []
    when = timestamp(sample.ts_ns)
    rows: list[tuple[Any, ...]] = []
    market = assets.market_lvs
    rows.append(
        (
            when,
            "market",
            "",
            "",
            "",
            None if market != market else round(float(market), 2),
            SCORE_STATES[int(assets.market_state)],
            None
            if market != market or not assets.market_components
            else _json(
                {
                    n: round(float(p), 2)
                    for n, p in zip(COMPONENTS, assets.market_components, strict=True)
                }
            ),
        )
    )
    for a in sample.asset_rows(changed_only=True):
        lvs = float(assets.lvs[a])
        rows.append(
            (
                when,
                "asset",
                "",
                "",
                assets.assets[a],
                None if lvs != lvs else round(lvs, 2),
                SCORE_STATES[int(assets.state[a])],
                None
                if lvs != lvs
                else _json(
                    {
                        n: round(float(p), 2)
                        for n, p in zip(COMPONENTS, assets.components[a], strict=True)
                    }
                ),
            )
        )
    return rows


def alert_event_rows(sample: TickSample) -> list[tuple[Any, ...]]:
    """``alert_events`` rows: the score state changes of the tick (alerts-out's lines)."""
    rows = []
    for event in sample.events:
        r = event.record()
        scope = r["scope"]
        venue, symbol, asset = scope["venue"] or "", scope["symbol"] or "", scope["asset"] or ""
        rows.append(
            (
                timestamp(event.ts_ns),
                r["kind"],
                "",
                r["state"],
                SCORE_STATES[event.previous],  # not an alerts-out field: from the event
                str(r["severity"]),
                venue,
                symbol,
                asset,
                r["value"],
                _json(r["components"]),
                f"score|{venue}|{symbol}|{asset}",
            )
        )
    return rows


VENUE_HEALTH_COLUMNS: Final = ("ts", "venue", "event", "symbol", "detail")


def book_state_events(
    sample: TickSample, previous: dict[tuple[str, str], str]
) -> list[tuple[Any, ...]]:
    """``venue_health`` rows for books whose state changed since ``previous`` (updated in
    place): ``book_stale``, ``book_syncing``, ``book_empty`` (thrown away after a gap),
    ``book_live`` (back), with ``{"from", "to"}``. A book's first state is recorded, not
    reported."""
    rows: list[tuple[Any, ...]] = []
    when: dt.datetime | None = None
    states = sample.book_state
    for i in np.flatnonzero(sample.changed).tolist():
        ident = sample.books[i]
        key = (ident.venue, ident.symbol)
        state = STATE_NAMES[int(states[i])]
        before = previous.get(key)
        previous[key] = state
        if before is None or before == state:
            continue
        when = when or timestamp(sample.ts_ns)
        detail = _encode_json({"from": before, "to": state}).decode()
        rows.append((when, ident.venue, f"book_{state}", ident.symbol, detail))
    return rows
