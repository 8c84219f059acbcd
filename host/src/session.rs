//! The records an application holds: [`Session`], [`UserSession`], the cookie [`Config`] and the
//! per-session [`Expiry`].
//!
//! Data operations (`get`, `insert`, `remove`, `clear`, `set_user`, ...) are in-memory edits of the
//! record, and the record remembers what they touched: a save sends only what this copy changed, under
//! the condition that what it read is unchanged ([`Concurrency::Merge`]). Everything that is policy (ids,
//! expiry, validation of what is stored, the SQL, cookies) runs in the guest through
//! [`SessionStore`](crate::SessionStore).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::StoreError;

/// When one session ends (as tower-sessions' `Expiry`). Whatever the mode, a session never outlives its
/// absolute deadline (creation + [`Config::max_age`]), and the configured idle timeout still applies to
/// [`AtDateTime`](Expiry::AtDateTime) and [`OnSessionEnd`](Expiry::OnSessionEnd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// Sliding: ends after this long without use (whole seconds, at least one), never past the absolute
    /// deadline. Replaces the configured idle timeout for this session.
    OnInactivity(Duration),
    /// Ends at this time (capped by the absolute deadline); use does not extend it.
    AtDateTime(SystemTime),
    /// Ends with the browser session: the cookie carries no `Max-Age` or `Expires`. On the server the
    /// configured idle timeout and absolute deadline still end it.
    OnSessionEnd,
}

/// A session as the application holds it in memory.
///
/// `Debug` never prints the token or the data.
pub struct Session {
    pub(crate) id: String,
    pub(crate) handle: String,
    pub(crate) data: BTreeMap<String, Value>,
    pub(crate) user_id: Option<i64>,
    pub(crate) label: Option<String>,
    pub(crate) expiry: Option<Expiry>,
    pub(crate) created_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    pub(crate) absolute_expires_at: SystemTime,
    pub(crate) updated_at: SystemTime,
    pub(crate) version: u64,
    pub(crate) is_saved: bool,
    pub(crate) tracking: Tracking,
}

/// What this copy changed and read since it was loaded or saved.
#[derive(Debug, Default)]
pub(crate) struct Tracking {
    /// Keys written (set or removed), each with its value before the first write (`None`: absent).
    pub(crate) originals: BTreeMap<String, Option<Value>>,
    /// All keys were removed (`clear`).
    pub(crate) cleared: bool,
    /// The user before it was first changed.
    pub(crate) user_original: Option<Option<i64>>,
    /// The label changed.
    pub(crate) label_changed: bool,
    /// The expiry mode before it was first changed.
    pub(crate) expiry_original: Option<Option<Expiry>>,
    /// What was read through `&self` accessors.
    pub(crate) reads: Mutex<Reads>,
}

/// What a copy read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reads {
    pub(crate) keys: BTreeSet<String>,
    pub(crate) all: bool,
    pub(crate) user: bool,
    pub(crate) expiry: bool,
}

impl Clone for Tracking {
    fn clone(&self) -> Self {
        Self {
            originals: self.originals.clone(),
            cleared: self.cleared,
            user_original: self.user_original,
            label_changed: self.label_changed,
            expiry_original: self.expiry_original,
            reads: Mutex::new(self.reads_now()),
        }
    }
}

impl Tracking {
    fn record(&self, f: impl FnOnce(&mut Reads)) {
        f(&mut self.reads.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn reads_now(&self) -> Reads {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether anything was changed.
    pub(crate) fn has_changes(&self) -> bool {
        !self.originals.is_empty()
            || self.cleared
            || self.user_original.is_some()
            || self.label_changed
            || self.expiry_original.is_some()
    }
}

impl Clone for Session {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            handle: self.handle.clone(),
            data: self.data.clone(),
            user_id: self.user_id,
            label: self.label.clone(),
            expiry: self.expiry,
            created_at: self.created_at,
            expires_at: self.expires_at,
            absolute_expires_at: self.absolute_expires_at,
            updated_at: self.updated_at,
            version: self.version,
            is_saved: self.is_saved,
            tracking: self.tracking.clone(),
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &"<redacted>")
            .field("handle", &self.handle)
            .field("keys", &self.data.len())
            .field("user_id", &self.user_id)
            .field("expiry", &self.expiry)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("absolute_expires_at", &self.absolute_expires_at)
            .field("updated_at", &self.updated_at)
            .field("version", &self.version)
            .field("is_saved", &self.is_saved)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The secret token (64 lower-case hex characters). It lives in the cookie and in memory only: the
    /// database stores its SHA-256.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The opaque handle: the hex SHA-256 of the token, as [`UserSession::handle`] lists it. It can revoke
    /// the session but cannot be used as a cookie, so it is safe to show (e.g. to mark "this device").
    #[must_use]
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// The value under `key`, deserialized as `T`; `None` when absent.
    ///
    /// # Errors
    /// [`StoreError::InvalidValue`] when the stored value does not deserialize as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.tracking.record(|r| {
            r.keys.insert(key.to_owned());
        });
        self.data
            .get(key)
            .map(T::deserialize)
            .transpose()
            .map_err(StoreError::InvalidValue)
    }

    /// The value under `key` when it is a JSON string.
    #[must_use]
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get_value(key).and_then(Value::as_str)
    }

    /// The value under `key` as JSON.
    #[must_use]
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.tracking.record(|r| {
            r.keys.insert(key.to_owned());
        });
        self.data.get(key)
    }

    /// Stores `value` (anything serde can serialize) under `key`, as real JSON: a number stays a number
    /// in the database. The guest checks the data when it is saved (size, NUL characters).
    ///
    /// # Errors
    /// [`StoreError::InvalidValue`] when `value` cannot be serialized as JSON (nothing changes).
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Serialize,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_value(value).map_err(StoreError::InvalidValue)?;
        self.insert_value(key.into(), value);
        Ok(())
    }

    /// Stores the string `value` under `key` (the seed's string API; the same as `insert` of a string).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.insert_value(key.into(), Value::String(value.into()));
    }

    fn insert_value(&mut self, key: String, value: Value) {
        if self.data.get(&key) == Some(&value) {
            return;
        }
        let old = self.data.insert(key.clone(), value);
        self.tracking.originals.entry(key.clone()).or_insert(old);
        self.forget_if_restored(&key);
    }

    /// A key written back to the value it was loaded with is no change any more (e.g. a handler undoing
    /// a change the store refused), unless all data was cleared meanwhile.
    fn forget_if_restored(&mut self, key: &str) {
        if !self.tracking.cleared
            && self
                .tracking
                .originals
                .get(key)
                .is_some_and(|original| original.as_ref() == self.data.get(key))
        {
            self.tracking.originals.remove(key);
        }
    }

    /// Removes `key`; returns the value it had.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let old = self.data.remove(key)?;
        self.tracking
            .originals
            .entry(key.to_owned())
            .or_insert_with(|| Some(old.clone()));
        self.forget_if_restored(key);
        Some(old)
    }

    /// Removes all data (the user stays).
    pub fn clear(&mut self) {
        if self.data.is_empty() && self.tracking.originals.is_empty() {
            return;
        }
        for (key, value) in std::mem::take(&mut self.data) {
            self.tracking.originals.entry(key).or_insert(Some(value));
        }
        self.tracking.cleared = true;
    }

    /// All data, sorted by key (counts as reading every key).
    #[must_use]
    pub fn data(&self) -> &BTreeMap<String, Value> {
        self.tracking.record(|r| r.all = true);
        &self.data
    }

    /// Whether there is no data.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tracking.record(|r| r.all = true);
        self.data.is_empty()
    }

    /// The authenticated user, if any.
    #[must_use]
    pub fn user_id(&self) -> Option<i64> {
        self.tracking.record(|r| r.user = true);
        self.user_id
    }

    /// Marks the session as authenticated as `user_id`. Through [`SessionLayer`](crate::SessionLayer) the
    /// token rotates in the same write; with the store directly, call
    /// [`SessionStore::regenerate_id`](crate::SessionStore::regenerate_id) at login.
    pub fn set_user(&mut self, user_id: i64) {
        self.change_user(Some(user_id));
    }

    /// Removes the authenticated user.
    pub fn clear_user(&mut self) {
        self.change_user(None);
    }

    fn change_user(&mut self, user: Option<i64>) {
        if self.user_id != user {
            self.tracking.user_original.get_or_insert(self.user_id);
            self.user_id = user;
        }
    }

    /// Whether a user is set.
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        self.user_id().is_some()
    }

    /// The label the application set (e.g. the device), if any.
    #[must_use]
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Sets the label (e.g. "Chrome on Linux"); session data cannot overwrite it. `None` removes it.
    pub fn set_label(&mut self, label: Option<String>) {
        if self.label != label {
            self.label = label;
            self.tracking.label_changed = true;
        }
    }

    /// This session's expiry mode; `None` follows the configuration.
    #[must_use]
    pub fn expiry(&self) -> Option<Expiry> {
        self.tracking.record(|r| r.expiry = true);
        self.expiry
    }

    /// Sets this session's expiry mode (`None`: the configuration's policy); takes effect when saved.
    pub fn set_expiry(&mut self, expiry: Option<Expiry>) {
        if self.expiry != expiry {
            self.tracking.expiry_original.get_or_insert(self.expiry);
            self.expiry = expiry;
        }
    }

    /// When the session was created (the same across [`regenerate_id`](crate::SessionStore::regenerate_id)).
    #[must_use]
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// When the session stops being valid: the earliest of its deadlines, as of the last load or save.
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// The absolute deadline (creation + max-age), which no activity extends.
    #[must_use]
    pub fn absolute_expires_at(&self) -> SystemTime {
        self.absolute_expires_at
    }

    /// When the stored row was last written or its idle deadline extended.
    #[must_use]
    pub fn updated_at(&self) -> SystemTime {
        self.updated_at
    }

    /// The stored version this copy was loaded or saved at; 0 when unsaved.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the session exists in the database (as of the last load or save).
    #[must_use]
    pub fn is_saved(&self) -> bool {
        self.is_saved
    }

    /// Whether this copy has changes a save would write.
    #[must_use]
    pub fn has_changes(&self) -> bool {
        self.tracking.has_changes()
    }
}

/// A stored session as listed for its user ([`SessionStore::get_user_sessions`](crate::SessionStore::get_user_sessions)).
///
/// Tokens are never stored, so a listed session is named by an opaque `handle` (the hex SHA-256 of its
/// token): it can revoke that one session but cannot be used as a cookie.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct UserSession {
    /// The opaque handle: 64 lower-case hex characters.
    pub handle: String,
    /// The data, sorted by key.
    pub data: BTreeMap<String, Value>,
    /// The session's user.
    pub user_id: i64,
    /// The label the application set, if any.
    pub label: Option<String>,
    /// When the session was created.
    pub created_at: SystemTime,
    /// When the session stops being valid.
    pub expires_at: SystemTime,
    /// When the stored row was last written or its idle deadline extended.
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
            .finish_non_exhaustive()
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

/// What a save does when another request wrote the same session since this copy was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Concurrency {
    /// Key-level (the default): the save writes only what this copy changed, and fails with
    /// [`StoreError::Conflict`] only when a key, the user or the expiry this copy read or wrote was
    /// changed under it. Disjoint changes merge.
    Merge,
    /// Whole-session: any save since this copy was loaded makes the save fail with
    /// [`StoreError::Conflict`].
    Strict,
    /// No check: this copy's changes are applied over whatever is stored; a concurrent change to the
    /// same key is lost. The save does not read other requests' keys back: the copy keeps its own data,
    /// as a blind write does (the stored user, label, expiry and version do come back).
    LastWriteWins,
}

/// Cookie, lifetime and storage settings. The defaults come from the guest (the store starts from them;
/// change them with [`SessionStoreBuilder::configure`](crate::SessionStoreBuilder::configure)): cookie
/// `varel_session`, 86400 s, `HttpOnly`, `Secure`, `SameSite=Strict`, path `/`, no domain, no idle
/// timeout, 1 MiB of data, merging concurrency. The guest validates the whole configuration once, when the
/// store is built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The cookie's name.
    pub cookie_name: String,
    /// The absolute session lifetime in seconds, and the cookie's `Max-Age`.
    pub max_age: i64,
    /// Whether the cookie is `HttpOnly`.
    pub http_only: bool,
    /// Whether the cookie is `Secure` (default true; browsers accept `Secure` cookies on
    /// `http://localhost`). Turn it off only for plain-HTTP deployments you accept the risk of.
    pub secure: bool,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The cookie's `Domain`.
    pub domain: Option<String>,
    /// The cookie's `Path`.
    pub path: String,
    /// Idle timeout in seconds: a session unused this long expires; use extends it (never past the
    /// absolute deadline), written at most once per tenth of the timeout.
    pub idle_timeout: Option<i64>,
    /// The largest session data accepted, in bytes of its JSONB text.
    pub max_data_bytes: u32,
    /// What a save does after a concurrent write.
    pub concurrency: Concurrency,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            id: "t".into(),
            handle: "h".into(),
            data: BTreeMap::from([
                ("a".to_owned(), Value::from(1)),
                ("b".to_owned(), "x".into()),
            ]),
            user_id: None,
            label: None,
            expiry: None,
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: SystemTime::UNIX_EPOCH,
            absolute_expires_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            version: 1,
            is_saved: true,
            tracking: Tracking::default(),
        }
    }

    #[test]
    fn typed_values_round_trip_and_strings_keep_their_api() {
        let mut s = session();
        assert_eq!(s.get::<i64>("a").unwrap(), Some(1));
        assert_eq!(s.get_str("b"), Some("x"));
        assert_eq!(s.get_str("a"), None);
        assert!(matches!(
            s.get::<String>("a"),
            Err(StoreError::InvalidValue(_))
        ));
        s.insert("list", vec![1, 2]).unwrap();
        assert_eq!(s.get::<Vec<u8>>("list").unwrap(), Some(vec![1, 2]));
        s.set("b", "y");
        assert_eq!(s.get::<String>("b").unwrap().as_deref(), Some("y"));
    }

    #[test]
    fn writes_remember_the_value_before_the_first_write_and_reads_the_keys() {
        let mut s = session();
        let _ = s.get::<i64>("a");
        s.set("b", "1");
        s.set("b", "2");
        s.remove("a");
        s.insert("c", true).unwrap();
        assert_eq!(s.tracking.originals["b"], Some(Value::from("x")));
        assert_eq!(s.tracking.originals["a"], Some(Value::from(1)));
        assert_eq!(s.tracking.originals["c"], None);
        assert!(s.tracking.reads_now().keys.contains("a"));
        assert!(s.has_changes());
    }

    #[test]
    fn setting_the_same_value_is_not_a_change() {
        let mut s = session();
        s.set("b", "x");
        s.insert("a", 1).unwrap();
        s.clear_user();
        s.set_expiry(None);
        assert!(!s.has_changes());
        s.set_user(7);
        s.set_user(8);
        assert_eq!(s.tracking.user_original, Some(None));
    }

    #[test]
    fn a_change_undone_is_no_change() {
        let mut s = session();
        s.set("b", "changed");
        s.set("b", "x");
        s.insert("new", 1).unwrap();
        s.remove("new");
        assert!(!s.has_changes(), "{:?}", s.tracking);
    }

    #[test]
    fn clear_records_every_key_it_removed() {
        let mut s = session();
        s.clear();
        assert!(s.tracking.cleared);
        assert_eq!(s.tracking.originals.len(), 2);
        assert!(s.data.is_empty());
    }

    #[test]
    fn debug_never_shows_the_token_or_data() {
        let s = session();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("\"t\"") && !shown.contains("\"x\""),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
