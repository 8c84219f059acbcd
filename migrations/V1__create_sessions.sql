-- Sessions, keyed by the SHA-256 of the token: the token itself is never stored.
CREATE TABLE sessions (
    id_hash    BYTEA       PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    data       JSONB       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(data) = 'object'),
    user_id    BIGINT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- "All sessions of this user, newest first" and "log out everywhere".
CREATE INDEX sessions_user_id_created_at_idx ON sessions (user_id, created_at DESC) WHERE user_id IS NOT NULL;

-- Cleanup walks expired rows in expiry order.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE FUNCTION sessions_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TRIGGER sessions_updated_at
    BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_touch_updated_at();
