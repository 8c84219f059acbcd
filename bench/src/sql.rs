//! The statements the guest sends (copied from `guest/src/store.rs`). The test `tests/same_sql.rs`
//! records what the component really sends and fails if any of these drift from it.

/// `save` of a new session: one insert that returns the stored timestamps and version.
pub const INSERT: &str = "INSERT INTO sessions \
(id_hash, data, user_id, created_at, expires_at, absolute_expires_at) \
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_hash) DO NOTHING \
RETURNING created_at, updated_at, version";

/// `save` of a saved session and `regenerate-id` (which moves the row to the new hash `$2`): one update,
/// checked against the version it was loaded at (`$7`; NULL for last-write-wins).
pub const UPDATE: &str = "UPDATE sessions SET id_hash = $2, data = $3, user_id = $4, expires_at = $5, \
absolute_expires_at = $6, version = version + 1 \
WHERE id_hash = $1 AND ($7::bigint IS NULL OR version = $7) \
RETURNING created_at, updated_at, version";

/// `load` (without an idle timeout): one row by token hash.
pub const SELECT_ONE: &str = "SELECT data, user_id, created_at, expires_at, absolute_expires_at, \
updated_at, version FROM sessions WHERE id_hash = $1";

/// `delete` and `revoke-session`.
pub const DELETE_ONE: &str = "DELETE FROM sessions WHERE id_hash = $1";

/// `cleanup` / `cleanup-batch`: one bounded batch of expired rows, oldest first.
pub const CLEANUP: &str = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions \
WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// `get-user-sessions`.
pub const SELECT_USER: &str = "SELECT id_hash, data, created_at, expires_at, updated_at FROM sessions \
WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id_hash";

/// `delete-user-sessions`.
pub const DELETE_USER: &str = "DELETE FROM sessions WHERE user_id = $1";

/// `delete-user-sessions-except`.
pub const DELETE_USER_EXCEPT: &str = "DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2";

/// `count-expired`.
pub const COUNT_EXPIRED: &str = "SELECT count(*) AS expired FROM sessions WHERE expires_at <= $1";
