-- liqmon history schema: the same tables on plain PostgreSQL and on TimescaleDB.
-- Every sample table has a natural key (time first), so a batch written twice (replayed
-- after a crash) adds nothing: the writer inserts with ON CONFLICT DO NOTHING.

-- One row per changed book per tick: every field of metrics-out ("kind": "book").
-- Each row names its own bands and notionals (layout), so it reads back exactly as it was
-- measured, whatever the configuration was then. Few arrays on purpose: every array value
-- costs a COPY more than twenty numbers do.
CREATE TABLE IF NOT EXISTS book_metrics (
    ts                   timestamptz NOT NULL,
    venue                text        NOT NULL,
    symbol               text        NOT NULL,
    instrument           text        NOT NULL,
    base                 text        NOT NULL,
    quote                text        NOT NULL,
    kind                 text        NOT NULL,   -- spot | perp | future
    valid                boolean     NOT NULL,
    stale                boolean     NOT NULL,
    state                text        NOT NULL,   -- book state: empty | syncing | live | stale
    bid                  float8,
    ask                  float8,
    mid                  float8,
    spread_bps           float8,
    -- depth and slippage: one 2-D array each, [band or notional][side], side 1 = bid (sell),
    -- 2 = ask (buy); "layout" names the bands (%) and notionals (USD) of this row, e.g.
    -- "0.1,0.5,1,2|10000,100000,1000000"; the covered / exhausted flags are bit masks
    -- (bit 2k + side-1, k counted from 0). NULL when the row is not valid.
    layout               text,
    depth_usd            float8[],
    depth_quote          float8[],
    covered_mask         integer,
    slippage_bps         float8[],
    exhausted_mask       integer,
    depth_1pct_bid_usd   float8,                 -- the 1% band, flat, for aggregates
    depth_1pct_ask_usd   float8,
    levels_bid           integer     NOT NULL,
    levels_ask           integer     NOT NULL,
    truncated            boolean     NOT NULL,
    fx_usd               float8,
    fx_assumed           boolean     NOT NULL,
    book_age_s           float8,
    updates              bigint      NOT NULL,
    mark_price           float8,
    index_price          float8,
    funding_rate         float8,
    lvs                  float8,                 -- liquidity-vacuum score (analytics)
    score_state          text,
    components           jsonb,
    UNIQUE (venue, symbol, ts)
);
-- `liqmon query depth --asset`: every book of an asset over a time range
CREATE INDEX IF NOT EXISTS book_metrics_base_ts ON book_metrics (base, ts);

-- One row per asset per tick (metrics-out "kind": "asset").
CREATE TABLE IF NOT EXISTS asset_metrics (
    ts                       timestamptz NOT NULL,
    asset                    text        NOT NULL,
    consensus_usd            float8,
    venues                   jsonb       NOT NULL,  -- [{venue, symbol, type, mid_usd, dislocation_bps, basis_bps, healthy}]
    outlier                  jsonb,                 -- {venue, symbol, dislocation_bps} or null
    depth_1pct_venue_sum     float8,
    depth_1pct_consolidated  float8,
    lvs                      float8,
    state                    text,
    components               jsonb,
    UNIQUE (asset, ts)
);

-- Quote-currency rates (metrics-out "kind": "fx").
CREATE TABLE IF NOT EXISTS fx_rates (
    ts        timestamptz NOT NULL,
    currency  text        NOT NULL,
    usd       float8,
    assumed   boolean     NOT NULL,
    age_s     float8,
    UNIQUE (currency, ts)
);

-- Score samples with their components, per book ('book') or per asset ('asset');
-- venue and symbol are '' for an asset's score (so the key has no NULLs).
CREATE TABLE IF NOT EXISTS score_samples (
    ts          timestamptz NOT NULL,
    scope       text        NOT NULL,
    venue       text        NOT NULL DEFAULT '',
    symbol      text        NOT NULL DEFAULT '',
    asset       text        NOT NULL,
    value       float8,
    state       text        NOT NULL,
    components  jsonb,
    UNIQUE (scope, venue, symbol, asset, ts)
);

-- Venue health: connects, disconnects, gaps, resyncs, staleness, errors.
CREATE TABLE IF NOT EXISTS venue_health (
    ts      timestamptz NOT NULL,
    venue   text        NOT NULL,
    event   text        NOT NULL,
    symbol  text        NOT NULL DEFAULT '',
    detail  jsonb,
    UNIQUE (venue, event, symbol, ts)
);

-- Top-N levels of a book, as the venue writes them: periodic, and dense around score
-- state changes (reason says which).
CREATE TABLE IF NOT EXISTS book_snapshots (
    ts          timestamptz NOT NULL,
    venue       text        NOT NULL,
    symbol      text        NOT NULL,
    instrument  text        NOT NULL,
    reason      text        NOT NULL,   -- periodic | evidence
    valid       boolean     NOT NULL,
    state       text        NOT NULL,
    bids        jsonb       NOT NULL,   -- [[price, size], ...] best first
    asks        jsonb       NOT NULL,
    UNIQUE (venue, symbol, ts)
);

-- Alerting: score state changes and rule events (alerts-out lines).
CREATE TABLE IF NOT EXISTS alert_events (
    id           bigserial,
    ts           timestamptz NOT NULL,
    kind         text        NOT NULL,   -- score | rule
    rule         text        NOT NULL DEFAULT '',
    state        text        NOT NULL,
    severity     text,
    venue        text        NOT NULL DEFAULT '',
    symbol       text        NOT NULL DEFAULT '',
    asset        text        NOT NULL DEFAULT '',
    value        float8,
    components   jsonb,
    fingerprint  text        NOT NULL,   -- rule + scope: groups an alert's events
    PRIMARY KEY (id),
    UNIQUE (fingerprint, ts, state)
);

CREATE TABLE IF NOT EXISTS alert_subscriptions (
    id            bigserial PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    channel       text        NOT NULL,   -- telegram | webhook
    target        text        NOT NULL,   -- chat id or URL (secrets live in the environment)
    rules         text[]      NOT NULL DEFAULT '{}',
    scope         jsonb       NOT NULL DEFAULT '{}',  -- venue/asset/instrument patterns
    min_severity  text        NOT NULL DEFAULT 'warning',
    enabled       boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every notification goes through the outbox first: a crash delays it, never loses it;
-- the idempotency key stops a restart from sending it twice.
CREATE TABLE IF NOT EXISTS alert_outbox (
    id               bigserial PRIMARY KEY,
    event_id         bigint      NOT NULL REFERENCES alert_events (id),
    subscription_id  bigint      NOT NULL REFERENCES alert_subscriptions (id),
    idempotency_key  text        NOT NULL UNIQUE,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',  -- pending | sent | failed
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS alert_delivery_attempts (
    id             bigserial PRIMARY KEY,
    outbox_id      bigint      NOT NULL REFERENCES alert_outbox (id),
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    status_code    integer,
    error          text,
    retry_after_s  float8
);

CREATE TABLE IF NOT EXISTS alert_silences (
    id          bigserial PRIMARY KEY,
    matchers    jsonb       NOT NULL,   -- {"venue": "okx", "asset": "SOL", ...}
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text        NOT NULL DEFAULT '',
    comment     text        NOT NULL DEFAULT '',
    CHECK (ends_at > starts_at)
);
