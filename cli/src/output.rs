//! Printing results: plain lines for people, or one JSON object per line with `--json`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write as _;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::Value;
use wasm_sessions::{Session, UserSession};

/// Where results go: stdout, human-readable or JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

/// A session as printed with `--json`.
#[derive(Serialize)]
struct SessionJson<'a> {
    token: &'a str,
    user_id: Option<i64>,
    data: &'a BTreeMap<String, String>,
    created_at: String,
    expires_at: String,
    updated_at: String,
}

/// A listed user session as printed with `--json`.
#[derive(Serialize)]
struct UserSessionJson<'a> {
    handle: &'a str,
    user_id: i64,
    data: &'a BTreeMap<String, String>,
    created_at: String,
    expires_at: String,
    updated_at: String,
}

impl Output {
    /// JSON lines when `json`, plain text otherwise.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether results are printed as JSON.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Prints `human`, or `json` as one line.
    pub fn result(self, human: impl Display, json: Value) -> Result<()> {
        if self.json { line(json) } else { line(human) }
    }

    /// Prints a session; `show_token` puts the token alone on the first human-readable line (JSON
    /// always carries it).
    pub fn session(self, session: &Session, show_token: bool) -> Result<()> {
        if self.json {
            return line(serde_json::to_string(&SessionJson {
                token: &session.id,
                user_id: session.user_id,
                data: &session.data,
                created_at: rfc3339(session.created_at),
                expires_at: rfc3339(session.expires_at),
                updated_at: rfc3339(session.updated_at),
            })?);
        }
        let mut text = String::new();
        if show_token {
            text.push_str(&session.id);
            text.push('\n');
        }
        let user = session
            .user_id
            .map_or_else(|| "none".to_owned(), |u| u.to_string());
        text.push_str(&format!("user:    {user}\n"));
        text.push_str(&format!("created: {}\n", rfc3339(session.created_at)));
        text.push_str(&format!("expires: {}\n", rfc3339(session.expires_at)));
        text.push_str(&format!("updated: {}\n", rfc3339(session.updated_at)));
        text.push_str(&format!("data:    {} key(s)", session.data.len()));
        for (key, value) in &session.data {
            text.push_str(&format!("\n  {key} = {value}"));
        }
        line(text)
    }

    /// Prints one listed session: a line with handle, created, expires and key count, or a JSON object.
    pub fn user_session(self, session: &UserSession) -> Result<()> {
        if self.json {
            return line(serde_json::to_string(&UserSessionJson {
                handle: &session.handle,
                user_id: session.user_id,
                data: &session.data,
                created_at: rfc3339(session.created_at),
                expires_at: rfc3339(session.expires_at),
                updated_at: rfc3339(session.updated_at),
            })?);
        }
        line(format!(
            "{}  created {}  expires {}  {} key(s)",
            session.handle,
            rfc3339(session.created_at),
            rfc3339(session.expires_at),
            session.data.len()
        ))
    }
}

/// `time` as an RFC 3339 UTC timestamp with microseconds (PostgreSQL's precision).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// Writes `text` and a newline to stdout.
fn line(text: impl Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
