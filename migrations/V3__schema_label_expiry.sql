-- The table moves into a schema of its own, so that the runtime role can be granted exactly it (USAGE on
-- the schema, row privileges on the table) and every statement names it schema-qualified.
CREATE SCHEMA wasm_sessions;
ALTER TABLE sessions SET SCHEMA wasm_sessions;

-- `updated_at` is written by the statements, from the host's clock (the same clock every expiry decision
-- is taken against), instead of by a trigger reading the database's clock.
DROP TRIGGER sessions_updated_at ON wasm_sessions.sessions;
DROP FUNCTION sessions_touch_updated_at();

-- A label the application sets (e.g. the device); session data cannot overwrite it.
ALTER TABLE wasm_sessions.sessions ADD COLUMN label TEXT;

-- The session's own expiry mode; NULL follows the configuration. `expiry_value` is the idle timeout in
-- seconds for 'on-inactivity' and the deadline in microseconds since 1970 for 'at'.
ALTER TABLE wasm_sessions.sessions ADD COLUMN expiry_mode TEXT
    CHECK (expiry_mode IN ('on-inactivity', 'at', 'on-session-end'));
ALTER TABLE wasm_sessions.sessions ADD COLUMN expiry_value BIGINT;
