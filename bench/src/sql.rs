//! The statements the guest sends for the benchmarked operations, copied from `guest/src/store.rs`
//! (module `statements`). The test `tests/same_sql.rs` checks that each of them is one of the statements
//! the component declares (`SessionStore::statements`), and that the component really sends them, with
//! the same kinds of parameters as the native baseline: it fails when they drift.

/// The columns a session is read back with (`load`, insert and update alike).
macro_rules! session_columns {
    () => {
        "data, user_id, label, expiry_mode, expiry_value, created_at, expires_at, \
         absolute_expires_at, updated_at, version"
    };
}

/// What an update returns: the stored data only when another request wrote since the copy's version
/// (`$copy`; null: never), and the columns another request may change.
macro_rules! updated_columns {
    ($copy:literal) => {
        concat!(
            "CASE WHEN ",
            $copy,
            "::bigint IS NULL OR s.version = ",
            $copy,
            "::bigint + 1 THEN NULL ELSE s.data END AS data, s.user_id, s.label, \
             s.expiry_mode, s.expiry_value, s.expires_at, s.updated_at, s.version"
        )
    };
}

/// The data after an update's changes, from the placeholders of: cleared, keys removed, keys set.
macro_rules! merged_data {
    ($cleared:literal, $removed:literal, $set:literal) => {
        concat!(
            "(CASE WHEN ",
            $cleared,
            "::boolean THEN '{}'::jsonb ELSE s.data - ",
            $removed,
            "::text[] END) || ",
            $set,
            "::jsonb"
        )
    };
}

/// `load`: one session by `$1` id hash.
pub const LOAD: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM wasm_sessions.sessions WHERE id_hash = $1::bytea"
);

/// `save` of a new session: the whole row, version 1.
pub const INSERT: &str = concat!(
    "INSERT INTO wasm_sessions.sessions (id_hash, data, user_id, label, expiry_mode, \
     expiry_value, created_at, expires_at, absolute_expires_at, updated_at, version) \
     SELECT $1::bytea, $2::jsonb, $3::bigint, $4::text, $5::text, $6::bigint, \
     $7::timestamptz, $8::timestamptz, $9::timestamptz, $10::timestamptz, 1 \
     WHERE octet_length($2::jsonb::text) <= $11::bigint \
     ON CONFLICT (id_hash) DO NOTHING RETURNING ",
    session_columns!()
);

/// `save` of a saved session: one request's changes (a delta) applied to the stored row.
pub const UPDATE: &str = concat!(
    "UPDATE wasm_sessions.sessions AS s SET id_hash = $2::bytea, data = ",
    merged_data!("$4", "$5", "$6"),
    ", user_id = CASE WHEN $7::boolean THEN $8::bigint ELSE s.user_id END, \
     label = CASE WHEN $9::boolean THEN $10::text ELSE s.label END, \
     expiry_mode = CASE WHEN $11::boolean THEN $12::text ELSE s.expiry_mode END, \
     expiry_value = CASE WHEN $11::boolean THEN $13::bigint ELSE s.expiry_value END, \
     expires_at = CASE \
     WHEN $11::boolean THEN LEAST($14::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at)) \
     WHEN $15::timestamptz IS NOT NULL AND s.expiry_mode IS NOT DISTINCT FROM $16::text \
     AND s.expiry_value IS NOT DISTINCT FROM $17::bigint \
     THEN GREATEST(s.expires_at, LEAST($15::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at))) \
     ELSE s.expires_at END, \
     updated_at = $3::timestamptz, version = s.version + 1 \
     WHERE s.id_hash = $1::bytea AND s.expires_at > $3::timestamptz \
     AND ($18::bigint IS NULL OR s.version = $18::bigint) \
     AND ($20::text[] IS NULL OR NOT (s.data ?| $20::text[])) \
     AND ($19::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($19::jsonb) AS e \
     WHERE s.data -> e.key IS DISTINCT FROM e.value)) \
     AND ($21::jsonb IS NULL OR s.data = $21::jsonb) \
     AND (NOT $22::boolean OR s.user_id IS NOT DISTINCT FROM $23::bigint) \
     AND (NOT $24::boolean OR (s.expiry_mode IS NOT DISTINCT FROM $25::text \
     AND s.expiry_value IS NOT DISTINCT FROM $26::bigint)) \
     AND octet_length((",
    merged_data!("$4", "$5", "$6"),
    ")::text) <= $27::bigint RETURNING ",
    updated_columns!("$28")
);

/// `save` of a saved session whose changes are keys alone, under no condition (the benchmark's
/// last-write-wins): the guest's `update-keys` without its conditions; the data never comes back.
pub const UPDATE_KEYS_UNCONDITIONAL: &str = "UPDATE wasm_sessions.sessions AS s \
     SET data = (s.data - $3::text[]) || $4::jsonb, \
     expires_at = CASE WHEN $5::timestamptz IS NOT NULL \
     AND s.expiry_mode IS NOT DISTINCT FROM $6::text \
     AND s.expiry_value IS NOT DISTINCT FROM $7::bigint \
     THEN GREATEST(s.expires_at, LEAST($5::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at))) \
     ELSE s.expires_at END, \
     updated_at = $2::timestamptz, version = s.version + 1 \
     WHERE s.id_hash = $1::bytea AND s.expires_at > $2::timestamptz \
     AND octet_length(((s.data - $3::text[]) || $4::jsonb)::text) <= $8::bigint \
     RETURNING NULL::jsonb AS data, s.user_id, s.label, s.expiry_mode, s.expiry_value, s.expires_at, \
     s.updated_at, s.version";

/// Every statement the native baseline sends.
pub const USED: [&str; 4] = [LOAD, INSERT, UPDATE, UPDATE_KEYS_UNCONDITIONAL];
