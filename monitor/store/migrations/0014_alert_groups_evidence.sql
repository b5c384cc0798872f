-- Alert delivery, issue 12: a Telegram message for a whole group notification is one
-- outbox row whose payload lists every alert and notification it carries (the delivery
-- log per alert and a restart's "was it notified" look them up).
CREATE INDEX IF NOT EXISTS alert_outbox_alert_ids ON alert_outbox USING gin ((payload->'alert_ids'));
CREATE INDEX IF NOT EXISTS alert_outbox_notification_ids ON alert_outbox USING gin ((payload->'notification_ids'));

-- The black box: the raw frames of a firing alert's venue around the time it fired (a
-- recording's JSON lines, zlib-compressed), one row per alert and venue, beside the book
-- snapshots (book_snapshots, reason 'evidence').
CREATE TABLE IF NOT EXISTS alert_evidence_frames (
    alert_id    text        NOT NULL,
    venue       text        NOT NULL,
    fired_at    timestamptz NOT NULL,
    from_ts     timestamptz NOT NULL,
    to_ts       timestamptz NOT NULL,
    symbols     text[]      NOT NULL,
    frames      integer     NOT NULL,
    bytes       bigint      NOT NULL,
    truncated   boolean     NOT NULL,
    body        bytea       NOT NULL,
    PRIMARY KEY (alert_id, venue)
);
CREATE INDEX IF NOT EXISTS alert_evidence_frames_fired ON alert_evidence_frames (fired_at);
