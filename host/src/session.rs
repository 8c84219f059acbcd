//! The records an application holds: [`Session`], [`UserSession`] and the cookie [`Config`].
//!
//! Data operations (`get`, `set`, `delete`, `clear`, `set_user`, `clear_user`, `is_authenticated`) are
//! plain in-memory edits of the record; everything that is policy (ids, expiry, validation of what is
//! stored, the SQL, cookies) runs in the guest through [`SessionStore`](crate::SessionStore).

use std::collections::BTreeMap;
use std::time::SystemTime;

/// A session as the application holds it in memory.
///
/// `Debug` never prints the token or the data.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The secret token (64 lower-case hex characters). It lives in the cookie and in memory only: the
    /// database stores its SHA-256.
    pub id: String,
    /// Key-value data, stored as a JSONB object.
    pub data: BTreeMap<String, String>,
    /// The authenticated user, if any.
    pub user_id: Option<i64>,
    /// When the session was created.
    pub created_at: SystemTime,
    /// When the session stops being valid: the idle deadline or the absolute one, whichever is first.
    pub expires_at: SystemTime,
    /// The absolute deadline (creation + max-age), which no activity extends.
    pub absolute_expires_at: SystemTime,
    /// When the stored row was last written (set by the database).
    pub updated_at: SystemTime,
    /// The stored version this copy was loaded or saved at (optimistic concurrency); 0 when unsaved.
    pub version: u64,
    /// True when the session exists in the database.
    pub is_saved: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &"<redacted>")
            .field("keys", &self.data.len())
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("absolute_expires_at", &self.absolute_expires_at)
            .field("updated_at", &self.updated_at)
            .field("version", &self.version)
            .field("is_saved", &self.is_saved)
            .finish()
    }
}

impl Session {
    /// The value stored under `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// Stores `value` under `key` (checked by the guest when saved).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.data.insert(key.into(), value.into());
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&mut self, key: &str) -> Option<String> {
        self.data.remove(key)
    }

    /// Removes all data (the user stays).
    pub fn clear(&mut self) {
        self.data.clear();
    }

    /// Marks the session as authenticated as `user_id`. Regenerate the id after login
    /// ([`SessionStore::regenerate_id`](crate::SessionStore::regenerate_id)).
    pub fn set_user(&mut self, user_id: i64) {
        self.user_id = Some(user_id);
    }

    /// Removes the authenticated user.
    pub fn clear_user(&mut self) {
        self.user_id = None;
    }

    /// Whether a user is set.
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        self.user_id.is_some()
    }
}

/// A stored session as listed for its user ([`SessionStore::get_user_sessions`](crate::SessionStore::get_user_sessions)).
///
/// Tokens are never stored, so a listed session is named by an opaque `handle` (the hex SHA-256 of its
/// token): it can revoke that one session but cannot be used as a cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSession {
    /// The opaque handle: 64 lower-case hex characters.
    pub handle: String,
    /// Key-value data.
    pub data: BTreeMap<String, String>,
    /// The session's user.
    pub user_id: i64,
    /// When the session was created.
    pub created_at: SystemTime,
    /// When the session stops being valid.
    pub expires_at: SystemTime,
    /// When the stored row was last written.
    pub updated_at: SystemTime,
}

impl std::fmt::Debug for UserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSession")
            .field("handle", &self.handle)
            .field("keys", &self.data.len())
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites.
    Lax,
    /// Never sent on cross-site requests (the default).
    Strict,
    /// Sent on all requests; requires `Secure`.
    None,
}

/// What [`SessionStore::save`](crate::SessionStore::save) does when another writer saved the session
/// since this copy was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// The save fails with [`StoreError::Conflict`](crate::StoreError::Conflict); reload the session and
    /// reapply the change (the default).
    Optimistic,
    /// The later save overwrites the earlier one (the seed's behaviour): a concurrent write can be lost.
    LastWriteWins,
}

/// Cookie, lifetime and storage settings. The defaults come from the guest
/// ([`SessionStore::builder`](crate::SessionStore::builder) starts from them): cookie `varel_session`,
/// 86400 s, `HttpOnly`, `Secure` from the request's scheme, `SameSite=Strict`, path `/`, no domain, no
/// idle timeout, 1 MiB of data, optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cookie's name.
    pub cookie_name: String,
    /// Session lifetime and cookie `Max-Age`, in seconds.
    pub max_age: i64,
    /// Whether the cookie is `HttpOnly`.
    pub http_only: bool,
    /// Whether the cookie is `Secure`; `None` follows the request's scheme.
    pub secure: Option<bool>,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The cookie's `Domain`.
    pub domain: Option<String>,
    /// The cookie's `Path`.
    pub path: String,
    /// Idle timeout in seconds: a session unused this long expires; use extends it (never past the
    /// absolute deadline), written at most once per tenth of the timeout.
    pub idle_timeout: Option<i64>,
    /// The largest serialized session data accepted, in bytes.
    pub max_data_bytes: u32,
    /// What a save does after a concurrent save.
    pub concurrency: Concurrency,
}
