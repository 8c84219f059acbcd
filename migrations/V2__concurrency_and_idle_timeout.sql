-- Optimistic concurrency: every save bumps the version it was loaded at.
ALTER TABLE sessions ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- The absolute deadline no activity extends; `expires_at` is then the idle deadline, never later than
-- this. NULL means the same as `expires_at` (no idle timeout).
ALTER TABLE sessions ADD COLUMN absolute_expires_at TIMESTAMPTZ;
ALTER TABLE sessions ADD CONSTRAINT sessions_expiry_within_lifetime
    CHECK (absolute_expires_at IS NULL OR expires_at <= absolute_expires_at);
