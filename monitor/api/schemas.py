"""The API's response types: the OpenAPI document's schemas are generated from these.

Handlers build plain dicts (cheap, and what msgspec encodes fastest); the schemathesis test
checks every answer against the schema generated from the types below, so code and
document cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field


class ErrorBody(Struct):
    status: int
    message: str
    parameter: str | None = None


class Error(Struct):
    """Every non-200 JSON answer: 400 names the parameter at fault."""

    error: ErrorBody


class VenueHealth(Struct):
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    errors: int = 0
    stale: int = 0
    open_connections: int = 0
    gaps: int = 0
    resyncs: int = 0
    checksum_failed: int = 0
    snapshots_failed: int = 0
    last_error: str | None = None
    last_frame_age_s: float | None = None


class Venue(Struct):
    venue: str
    enabled: bool
    books: int
    valid_books: int
    stale_books: int
    status: str  # ok | degraded | down | unknown
    health: VenueHealth | None


class VenueList(Struct):
    venues: list[Venue]
    next_cursor: str | None


class Instrument(Struct):
    venue: str
    symbol: str
    instrument: str
    asset: str
    quote: str
    kind: str
    valid: bool | None
    stale: bool | None
    state: str | None


class InstrumentList(Struct):
    instruments: list[Instrument]
    next_cursor: str | None


class LiveRow(Struct):
    venue: str
    symbol: str
    instrument: str
    asset: str
    quote: str
    kind: str
    valid: bool
    stale: bool
    state: str
    mid: float | None
    mid_usd: float | None
    spread_bps: float | None
    depth_1pct_usd: float | None
    depth_1pct_bid_usd: float | None
    depth_1pct_ask_usd: float | None
    dislocation_bps: float | None
    basis_bps: float | None
    score: float | None
    score_state: str | None
    components: dict[str, float] | None
    book_age_s: float | None
    updates: int


class LowestPrint(Struct):
    venue: str
    second_venue: str
    gap_bps: float | None


class LiveAsset(Struct):
    asset: str
    consensus_usd: float | None
    depth_venue_sum_usd: float | None
    depth_consolidated_usd: float | None
    basis_bps: float | None
    score: float | None
    state: str
    components: dict[str, float] | None
    lowest: LowestPrint | None


class LiveMetrics(Struct):
    ts: str
    ts_ms: int
    rows: list[LiveRow]
    assets: list[LiveAsset]
    next_cursor: str | None


class LiveBook(Struct):
    venue: str
    symbol: str
    instrument: str
    ts: str | None
    valid: bool
    state: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    resyncs: int
    gaps: int
    messages: int


class Event(Struct):
    """A timeline entry. kind book_state: from -> to; score/alert: state, value, components;
    note: text. Other kinds may add fields."""

    id: int
    ts: int  # epoch ms
    kind: str
    asset: str | None = None
    venue: str | None = None
    symbol: str | None = None
    from_: str | None = field(default=None, name="from")
    to: str | None = None
    state: str | None = None
    severity: int | str | None = None  # score: 0-3; alert: info|warning|critical
    value: float | None = None
    components: dict[str, float] | None = None
    text: str | None = None


class EventList(Struct):
    events: list[Event]
    next_cursor: str | None


class Agg(Struct):
    """A field over one bucket's valid samples; ``last`` is the latest non-null value."""

    min: float | None
    max: float | None
    avg: float | None
    last: float | None


class BookBucket(Struct):
    ts: str
    ts_ms: int
    venue: str
    symbol: str
    asset: str
    samples: int
    valid_samples: int
    mid: Agg | None = None
    spread_bps: Agg | None = None
    depth_1pct_usd: Agg | None = None
    depth_1pct_bid_usd: Agg | None = None
    depth_1pct_ask_usd: Agg | None = None
    score: Agg | None = None
    book_age_s: Agg | None = None


class BookHistory(Struct):
    interval_ms: int
    from_ms: int
    to_ms: int
    buckets: list[BookBucket]
    next_cursor: str | None


class ScoreBucket(Struct):
    ts: str
    ts_ms: int
    scope: str
    venue: str | None
    symbol: str | None
    asset: str
    samples: int
    score: Agg
    state: str | None
    components: dict[str, Any] | None


class ScoreHistory(Struct):
    interval_ms: int
    from_ms: int
    to_ms: int
    buckets: list[ScoreBucket]
    next_cursor: str | None


class HealthEvent(Struct):
    ts: str
    ts_ms: int
    venue: str
    event: str
    symbol: str | None
    detail: Any


class HealthEvents(Struct):
    events: list[HealthEvent]
    next_cursor: str | None


class BookAt(Struct):
    venue: str
    symbol: str
    instrument: str
    at: str
    ts: str
    ts_ms: int
    reason: str
    valid: bool
    state: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class Lowest(Struct):
    asset: str
    lowest_venue: str
    lowest_symbol: str
    lowest_usd: float
    second_venue: str | None
    second_usd: float | None
    gap_bps: float | None
    consensus_usd: float | None


class RankedVenue(Struct):
    rank: int
    asset: str
    venue: str
    symbol: str
    ts_ms: int | None
    mid_usd: float | None
    consensus_usd: float | None
    dislocation_bps: float | None


class Ranking(Struct):
    at: str
    ts_ms: int
    lowest: list[Lowest]
    venues: list[RankedVenue]
    next_cursor: str | None


class Health(Struct):
    status: str
    uptime_s: float


class ReadyCheck(Struct):
    name: str
    ok: bool
    detail: str


class Ready(Struct):
    ready: bool
    checks: list[ReadyCheck]


class Info(Struct):
    version: str
    live: bool
    history: bool
    openapi: str


class AlertOut(Struct):
    id: str
    rule: str
    state: str
    severity: str
    venue: str | None
    symbol: str | None
    asset: str | None
    value: float | None
    pending_since: str | None
    firing_since: str | None
    acknowledged_by: str | None
    acknowledged_at: str | None
    resolved_at: str | None = None
    stale: bool = False  # no fresh data: the alert is held as it was


class AlertList(Struct):
    alerts: list[AlertOut]
    next_cursor: str | None


class EvidenceSnapshot(Struct):
    ts: str
    ts_ms: int
    offset_s: float  # from the time the alert fired: negative before, positive after
    venue: str
    symbol: str
    instrument: str
    reason: str  # periodic | evidence
    valid: bool
    state: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class EvidenceFrames(Struct):
    venue: str
    symbols: list[str]  # the frames kept name one of these (empty: all the venue's)
    from_: str = field(name="from")
    to: str
    from_offset_s: float  # from the time the alert fired
    to_offset_s: float
    frames: int
    bytes: int
    truncated: bool  # the oldest were cut (database.evidence_frames_max_bytes)
    download: str  # the recording (JSON lines) for liqmon replay


class Evidence(Struct):
    alert: AlertOut
    at: str  # when the alert fired
    window_s: float
    snapshots: list[EvidenceSnapshot]
    truncated: bool
    frames: list[EvidenceFrames]  # the raw frames stored around it, per venue


class DeliveryAttemptOut(Struct):
    number: int
    at: str | None
    outcome: str  # sent | retry | failed
    status_code: int | None
    error: str | None
    retry_after_s: float | None


class DeliveryOut(Struct):
    subscription: str
    channel: str  # webhook | telegram
    notification_id: str
    status: str  # pending | sent | failed
    attempts: list[DeliveryAttemptOut]


class DeliveryLog(Struct):
    alert_id: str
    deliveries: list[DeliveryOut]


class SilenceOut(Struct):
    id: str
    matchers: dict[str, str]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    active: bool


class SilenceList(Struct):
    silences: list[SilenceOut]
    next_cursor: str | None


class Deleted(Struct):
    deleted: str
