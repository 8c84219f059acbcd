//! The statements the guest sends (copied from `guest/src/store.rs`). The test `tests/same_sql.rs`
//! records what the component really sends and fails if any of these drift from it.

/// `save`: one upsert that returns the stored timestamps.
pub const UPSERT: &str = "INSERT INTO sessions (id_hash, data, user_id, created_at, expires_at) \
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_hash) DO UPDATE SET data = EXCLUDED.data, \
user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at RETURNING created_at, updated_at";

/// `load`: one row by token hash.
pub const SELECT_ONE: &str =
    "SELECT data, user_id, created_at, expires_at, updated_at FROM sessions WHERE id_hash = $1";

/// `delete` and `revoke-session`.
pub const DELETE_ONE: &str = "DELETE FROM sessions WHERE id_hash = $1";

/// `regenerate-id` of a saved session: moves the row to the new hash.
pub const MOVE: &str = "UPDATE sessions SET id_hash = $1, data = $2, user_id = $3, expires_at = $4 \
WHERE id_hash = $5 RETURNING created_at, updated_at";

/// `cleanup` / `cleanup-batch`: one bounded batch of expired rows, oldest first.
pub const CLEANUP: &str = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions \
WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// `get-user-sessions`.
pub const SELECT_USER: &str = "SELECT id_hash, data, created_at, expires_at, updated_at FROM sessions \
WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id_hash";

/// `delete-user-sessions`.
pub const DELETE_USER: &str = "DELETE FROM sessions WHERE user_id = $1";

/// `count-expired`.
pub const COUNT_EXPIRED: &str = "SELECT count(*) AS expired FROM sessions WHERE expires_at <= $1";
