-- API bearer tokens (monitor.api.auth): only each token's SHA-256 is stored; the token
-- itself is shown once, when `liqmon token create` makes it.
CREATE TABLE IF NOT EXISTS api_tokens (
    id            bigserial   PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    token_sha256  text        NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
