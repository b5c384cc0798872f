-- Alert rules added through the API (`/api/v1/rules`, `liqmon rules add`): the whole rule
-- as the [[rules]] table writes it. Rules from the config files are not stored; a stored
-- rule may not take the name of a configured one. The same on plain PostgreSQL and
-- TimescaleDB (a small ordinary table).
CREATE TABLE IF NOT EXISTS alert_rules (
    name        text        PRIMARY KEY,
    spec        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
