//! Printing results: plain lines for people, or one JSON object per line with `--json`. Sessions are
//! printed as [`wasm_sessions_cli::view`] shows them, the same objects the JSON API of `serve` answers.

use std::fmt::Display;
use std::io::Write as _;

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::Value;
use wasm_sessions::{Session, UserSession};
use wasm_sessions_cli::view::{NewSessionView, SessionView, UserSessionView};

/// Where results go: stdout, human-readable or JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
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

    /// Prints a session whose token the caller already has (by handle, never the token): the JSON API's
    /// `Session` object with `--json`.
    pub fn session(self, session: &Session) -> Result<()> {
        let view = SessionView::from(session);
        if self.json {
            return json_line(&view);
        }
        line(describe(&view))
    }

    /// Prints a session whose token is new (create, login, logout): the token alone on the first line,
    /// then the session; with `--json` the JSON API's `NewSession` object (`{"token", "session"}`).
    pub fn new_session(self, session: &Session) -> Result<()> {
        let view = NewSessionView::from(session);
        if self.json {
            return json_line(&view);
        }
        line(format!("{}\n{}", view.token, describe(&view.session)))
    }

    /// Prints one listed session: a line with handle, created, expires, label and key count, or the JSON
    /// API's `UserSession` object.
    pub fn user_session(self, session: &UserSession) -> Result<()> {
        let view = UserSessionView::from(session);
        if self.json {
            return json_line(&view);
        }
        let label = view
            .label
            .as_deref()
            .map_or_else(String::new, |l| format!("  label {l:?}"));
        line(format!(
            "{}  created {}  expires {}  {} key(s){label}",
            view.handle,
            view.created_at,
            view.expires_at,
            view.data.len()
        ))
    }
}

/// A session in lines for people; values are shown as JSON (a string in quotes, a number bare).
fn describe(view: &SessionView) -> String {
    let user = view
        .user_id
        .map_or_else(|| "none".to_owned(), |u| u.to_string());
    let expiry = view
        .expiry
        .as_ref()
        .map_or_else(|| "the configured policy".to_owned(), ToString::to_string);
    let mut text = format!("handle:   {}\nuser:     {user}\n", view.handle);
    if let Some(label) = &view.label {
        text.push_str(&format!("label:    {label}\n"));
    }
    text.push_str(&format!("expiry:   {expiry}\n"));
    text.push_str(&format!("created:  {}\n", view.created_at));
    text.push_str(&format!("expires:  {}\n", view.expires_at));
    text.push_str(&format!("absolute: {}\n", view.absolute_expires_at));
    text.push_str(&format!("updated:  {}\n", view.updated_at));
    text.push_str(&format!("data:     {} key(s)", view.data.len()));
    for (key, value) in &view.data {
        text.push_str(&format!("\n  {key} = {value}"));
    }
    text
}

/// Writes `value` as one JSON line.
fn json_line(value: &impl Serialize) -> Result<()> {
    line(serde_json::to_string(value).context("encoding the result as JSON")?)
}

/// Writes `text` and a newline to stdout.
fn line(text: impl Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
