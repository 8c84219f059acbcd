//! The one JSON view of a session, shared by the CLI's `--json` output and the JSON API of `serve`, so the
//! two cannot drift: [`SessionView`] (a session, by handle), [`NewSessionView`] (a session with its new
//! token: create, login, logout), [`UserSessionView`] (a listed session of a user), [`ExpiryView`] (a
//! session's own expiry mode) and the one timestamp format, [`rfc3339`].
//!
//! A token appears only in [`NewSessionView`]: everywhere else a session is named by its handle, which
//! can revoke it but cannot be used as a cookie.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_sessions::{Expiry, Session, UserSession};

/// `time` as an RFC 3339 UTC timestamp with microseconds (the store's precision), e.g.
/// `2025-01-31T12:00:00.000000Z`.
#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// Parses an RFC 3339 UTC timestamp (`Z`, optional fractional seconds), as [`rfc3339`] writes it.
///
/// # Errors
/// The text is not such a timestamp.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(text).map_err(|e| {
        format!("expected an RFC 3339 UTC timestamp such as 2030-01-31T12:00:00Z: {e}")
    })
}

/// A session's own expiry mode, as JSON: `{"mode": "on_inactivity", "seconds": 600}`,
/// `{"mode": "at", "at": "2030-01-31T12:00:00.000000Z"}` or `{"mode": "on_session_end"}`. A session
/// without one (`null`) follows the store's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExpiryView {
    /// Ends after this many seconds without use (never past the absolute deadline).
    OnInactivity {
        /// The idle period, in seconds.
        seconds: u64,
    },
    /// Ends at this time (capped by the absolute deadline).
    At {
        /// The time, RFC 3339 UTC.
        at: String,
    },
    /// Ends with the browser session: the cookie has no `Max-Age`.
    OnSessionEnd,
    /// A mode this build does not know (shown, never accepted).
    #[serde(skip_deserializing)]
    Unknown,
}

impl From<Expiry> for ExpiryView {
    fn from(expiry: Expiry) -> Self {
        match expiry {
            Expiry::OnInactivity(idle) => Self::OnInactivity {
                seconds: idle.as_secs(),
            },
            Expiry::AtDateTime(at) => Self::At { at: rfc3339(at) },
            Expiry::OnSessionEnd => Self::OnSessionEnd,
            _ => Self::Unknown,
        }
    }
}

impl TryFrom<&ExpiryView> for Expiry {
    type Error = String;

    /// The library's [`Expiry`]; the guest checks the values (an idle period of 1 ..= max-age seconds,
    /// a time in the future) when the session is created or saved.
    fn try_from(view: &ExpiryView) -> Result<Self, String> {
        match view {
            ExpiryView::OnInactivity { seconds } => {
                Ok(Expiry::OnInactivity(Duration::from_secs(*seconds)))
            }
            ExpiryView::At { at } => parse_rfc3339(at).map(Expiry::AtDateTime),
            ExpiryView::OnSessionEnd => Ok(Expiry::OnSessionEnd),
            ExpiryView::Unknown => Err("unknown expiry mode".to_owned()),
        }
    }
}

impl std::fmt::Display for ExpiryView {
    /// In words, for people: "after 600 s without use", "at ...", "with the browser session".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OnInactivity { seconds } => write!(f, "after {seconds} s without use"),
            Self::At { at } => write!(f, "at {at}"),
            Self::OnSessionEnd => f.write_str("with the browser session (cookie without Max-Age)"),
            Self::Unknown => f.write_str("unknown mode"),
        }
    }
}

/// A session as shown to people and programs: named by its handle, never by its token.
///
/// Build it after the last save of a request: reading every key of a [`Session`] counts as reading it
/// for the merge conditions of a later save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    /// The opaque handle (the hex SHA-256 of the token), as the user's session list shows it.
    pub handle: String,
    /// The authenticated user, if any.
    pub user_id: Option<i64>,
    /// The label the application set (e.g. the device), if any.
    pub label: Option<String>,
    /// The data: any JSON value under each key, sorted by key.
    pub data: BTreeMap<String, Value>,
    /// The session's own expiry mode; `null` follows the configuration.
    pub expiry: Option<ExpiryView>,
    /// When it was created.
    pub created_at: String,
    /// When it stops being valid (the earliest of its deadlines).
    pub expires_at: String,
    /// The absolute deadline no activity extends.
    pub absolute_expires_at: String,
    /// When the stored row was last written.
    pub updated_at: String,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        Self {
            handle: s.handle().to_owned(),
            user_id: s.user_id(),
            label: s.label().map(str::to_owned),
            data: s.data().clone(),
            expiry: s.expiry().map(ExpiryView::from),
            created_at: rfc3339(s.created_at()),
            expires_at: rfc3339(s.expires_at()),
            absolute_expires_at: rfc3339(s.absolute_expires_at()),
            updated_at: rfc3339(s.updated_at()),
        }
    }
}

/// A session with its token, where the token is new: after create, login and logout (both rotate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSessionView {
    /// The session token (64 lower-case hex characters): what the cookie carries.
    pub token: String,
    /// The session.
    pub session: SessionView,
}

impl From<&Session> for NewSessionView {
    fn from(s: &Session) -> Self {
        Self {
            token: s.id().to_owned(),
            session: s.into(),
        }
    }
}

/// A stored session of a user, as listed (by handle: tokens are never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSessionView {
    /// The handle: revokes this session; not usable as a cookie.
    pub handle: String,
    /// The user.
    pub user_id: i64,
    /// The label the application set, if any.
    pub label: Option<String>,
    /// The data, sorted by key.
    pub data: BTreeMap<String, Value>,
    /// When it was created.
    pub created_at: String,
    /// When it stops being valid.
    pub expires_at: String,
    /// When the stored row was last written.
    pub updated_at: String,
}

impl From<&UserSession> for UserSessionView {
    fn from(s: &UserSession) -> Self {
        Self {
            handle: s.handle.clone(),
            user_id: s.user_id,
            label: s.label.clone(),
            data: s.data.clone(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_modes_round_trip_through_their_json() {
        let at = humantime::parse_rfc3339("2030-01-31T12:00:00.123456Z").unwrap();
        for expiry in [
            Expiry::OnInactivity(Duration::from_secs(600)),
            Expiry::AtDateTime(at),
            Expiry::OnSessionEnd,
        ] {
            let view = ExpiryView::from(expiry);
            let json = serde_json::to_value(&view).unwrap();
            let back: ExpiryView = serde_json::from_value(json).unwrap();
            assert_eq!(Expiry::try_from(&back).unwrap(), expiry);
        }
        assert_eq!(
            serde_json::to_value(ExpiryView::from(Expiry::OnInactivity(Duration::from_secs(
                60
            ))))
            .unwrap(),
            serde_json::json!({ "mode": "on_inactivity", "seconds": 60 })
        );
        assert!(serde_json::from_str::<ExpiryView>(r#"{"mode": "unknown"}"#).is_err());
        assert!(serde_json::from_str::<ExpiryView>(r#"{"mode": "at", "at": "tomorrow"}"#).is_ok());
        assert!(
            Expiry::try_from(&ExpiryView::At {
                at: "tomorrow".into()
            })
            .is_err()
        );
    }

    #[test]
    fn timestamps_have_microseconds_and_a_z() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_500_000);
        assert_eq!(rfc3339(t), "1970-01-01T00:00:01.500000Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Ok(t));
    }
}
