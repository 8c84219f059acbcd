//! The demo app: server-rendered HTML on [`SessionHandle`]. Sign in as any user id (no passwords: it is
//! a demo), choose whether this browser remembers you, keep data in the session, see your devices with
//! their last activity, sign one out, sign out here or everywhere.
//!
//! - Every form is a same-origin `POST` answered by a redirect (303) to `/?m=CODE`: a fixed message code
//!   mapped to a fixed text ([`Message`]). Codes never carry user data or tokens, and no message is
//!   written into the session (a flash value would make parallel posts conflict on one key, and a
//!   signed-out browser has no session to carry it).
//! - A browser that comes back with a cookie whose session was ended elsewhere (revoked, signed out
//!   everywhere), expired or never existed is told so ([`cookie_ended`]); the layer removes that cookie
//!   with the same response, because the page always touches the session.
//! - Times are relative to the store's clock ("2 minutes ago", "in 23 hours"), with the absolute time in
//!   a `<time datetime>` element; a few lines of inline script show that in the browser's local time.
//!   The page works without JavaScript.
//! - Everything shown is escaped ([`esc`]); long keys and values wrap.
//!
//! Other sites cannot ride on the forms: the guard in front of the router refuses a state-changing request
//! that a browser marks as cross-site (`Sec-Fetch-Site`, else `Origin`), the sign-in form included (login
//! CSRF), and the `SameSite=Strict` cookie is not sent with one anyway. The session id rotates when the
//! user changes (the layer's fixation protection), so a cookie planted before sign-in is dead after it.

mod agent;
mod when;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use wasm_sessions::{Config, Expiry, SessionHandle, StoreError};

use super::{AppState, Routes};
use when::{duration_text, when_html};

/// The demo routes.
pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::GET, "/", page)
        .add(Method::POST, "/login", login)
        .add(Method::POST, "/logout", logout)
        .add(Method::POST, "/logout-everywhere", logout_everywhere)
        .add(Method::POST, "/data", data)
        .add(Method::POST, "/devices/revoke", revoke_device)
}

/// How long "remember me" keeps a session without a visit (never longer than the configured max age,
/// which also caps it as an absolute lifetime).
const REMEMBER_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Displayed keys and values are cut after this many characters (the forms still carry the whole key).
const SHOWN_KEY_CHARS: usize = 300;
const SHOWN_VALUE_CHARS: usize = 2_000;

/// The message after an action: a fixed code in the redirect's query string, a fixed text on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    SignedIn,
    Added,
    Removed,
    Revoked,
    SignedOut,
    SignedOutEverywhere,
    /// The cookie's session was deleted: revoked or signed out from another device.
    Ended,
    /// The cookie's session expired.
    Expired,
    /// The cookie held no well-formed token.
    CookieRefused,
    SignInFirst,
}

impl Message {
    const ALL: [Message; 10] = [
        Message::SignedIn,
        Message::Added,
        Message::Removed,
        Message::Revoked,
        Message::SignedOut,
        Message::SignedOutEverywhere,
        Message::Ended,
        Message::Expired,
        Message::CookieRefused,
        Message::SignInFirst,
    ];

    fn code(self) -> &'static str {
        match self {
            Message::SignedIn => "signed-in",
            Message::Added => "added",
            Message::Removed => "removed",
            Message::Revoked => "revoked",
            Message::SignedOut => "signed-out",
            Message::SignedOutEverywhere => "signed-out-everywhere",
            Message::Ended => "ended",
            Message::Expired => "expired",
            Message::CookieRefused => "cookie-refused",
            Message::SignInFirst => "sign-in-first",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Message::SignedIn => "You are signed in. Your session got a new id at sign-in.",
            Message::Added => "Saved in the session.",
            Message::Removed => "Removed from the session.",
            Message::Revoked => "That device is signed out.",
            Message::SignedOut => "You are signed out on this device.",
            Message::SignedOutEverywhere => {
                "You are signed out everywhere: every session of your user has ended."
            }
            Message::Ended => {
                "This session was ended from another device, so you are signed out here."
            }
            Message::Expired => "Your session expired, so you are signed out.",
            Message::CookieRefused => {
                "Your browser sent a session cookie this server does not accept; it has been removed."
            }
            Message::SignInFirst => "Sign in first.",
        }
    }

    /// The message a query string names (`m=CODE`); unknown codes name none.
    fn from_query(query: &str) -> Option<Self> {
        let code = query.split('&').find_map(|pair| pair.strip_prefix("m="))?;
        Message::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Back to the page, with this message.
    fn redirect(self) -> Redirect {
        Redirect::to(&format!("/?m={}", self.code()))
    }
}

/// A line at the top of the page: a message, or an error about the form just sent.
struct Notice {
    error: bool,
    text: String,
}

impl Notice {
    fn message(message: Message) -> Self {
        Self {
            error: false,
            text: message.text().to_owned(),
        }
    }

    fn error(text: impl Into<String>) -> Self {
        Self {
            error: true,
            text: text.into(),
        }
    }
}

/// A store failure as an HTML page: the status from [`StoreError::http_answer`], the public message
/// only (details of server errors stay in the log).
struct PageError(StoreError);

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let answer = self.0.http_answer();
        if answer.status >= 500 {
            tracing::error!(error = %self.0, "demo page: session store error");
        }
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let hint = match answer.status {
            503 => " Try again in a moment.",
            409 => " Go back, reload the page and try again.",
            _ => "",
        };
        let text = format!("{}.{hint}", capitalized(&self.0.public_message()));
        error_page(status, "Something went wrong", &text)
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The HTML 404 for an unknown page outside `/api` (the JSON API keeps its JSON 404): for the router's
/// fallback.
pub(super) fn not_found_page() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
}

/// The HTML 405 for a demo page asked with another method: for the router's method-not-allowed
/// fallback, outside `/api`.
pub(super) fn method_not_allowed_page() -> Response {
    error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not here",
        "This address does not take that kind of request; use the forms on the demo page.",
    )
}

/// A page that only says what went wrong, with a way back.
pub(super) fn error_page(status: StatusCode, heading: &str, text: &str) -> Response {
    let body = format!(
        r#"<h2>{}</h2>
<p class="error" id="error" role="alert">{}</p>
<p><a id="home" href="/">Back to the demo</a></p>
"#,
        esc(heading),
        esc(text)
    );
    (status, Html(layout(&body))).into_response()
}

/// A form the server could not take: too large (413, over axum's body limit), wrong content type, or
/// missing fields.
fn form_error(app: &AppState, rejection: &FormRejection) -> Response {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let limit = app.store.config().max_data_bytes;
        error_page(
            status,
            "The form is too large",
            &format!(
                "The server does not accept a form this large, and nothing was stored. A session holds at most {} of data.",
                bytes_text(limit)
            ),
        )
    } else {
        error_page(status, "The form could not be read", &rejection.body_text())
    }
}

fn bytes_text(bytes: u32) -> String {
    match bytes {
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped, cut after `max` characters with a note of its full length.
fn esc_shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => esc(text),
        Some((cut, _)) => format!(
            r#"{}<span class="more">… ({} characters in all)</span>"#,
            esc(&text[..cut]),
            text.chars().count()
        ),
    }
}

/// The page frame. The script only turns the UTC times into local ones and drops the `?m=` message
/// code from the address bar (so a reload does not repeat it).
fn layout(body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wasm-sessions demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; overflow-wrap: anywhere; }}
table {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; overflow-wrap: anywhere; }}
#data .key {{ width: 30%; }} #data .action, #devices .action {{ width: 7rem; }}
.value {{ white-space: pre-wrap; max-height: 12rem; overflow: auto; }}
.value.json {{ font-family: ui-monospace, monospace; font-size: .9em; }}
.more, time.abs {{ color: #666; font-size: .85em; }} time.abs {{ display: block; }}
.note {{ background: #fff6d5; padding: .5rem .8rem; border-radius: .3rem; }}
.message {{ background: #e7f5ea; border: 1px solid #9c9; padding: .5rem .8rem; border-radius: .3rem; }}
.error {{ background: #fdeaea; border: 1px solid #d99; color: #800; padding: .5rem .8rem; border-radius: .3rem; }}
.lifetimes {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); gap: .8rem; margin: 1rem 0; }}
.lifetimes > div {{ border: 1px solid #ccc; border-radius: .3rem; padding: .5rem .8rem; }}
.lifetimes h3 {{ margin: 0 0 .3rem; font-size: 1rem; }} .lifetimes p {{ margin: 0; }}
tr.this-device {{ background: #f0f6ff; }} form.inline {{ display: inline; }} code {{ font-size: .9em; }}
#add-form, #login-form {{ margin: .8rem 0; }}
input:not([type=checkbox]) {{ max-width: 100%; box-sizing: border-box; }}
</style></head>
<body>
<h1><a href="/">wasm-sessions demo</a></h1>
<p class="note">This is a demo: there are <strong>no passwords</strong>. Anyone can sign in as any user id.
The session lives in PostgreSQL; its policy (ids, expiry, cookies) runs in a WebAssembly component.</p>
{body}
<p><small>JSON API under <code>/api</code>, documented at <a href="/openapi.json">/openapi.json</a>.</small></p>
<script>
for (const t of document.querySelectorAll('time.abs')) {{
  const d = new Date(t.getAttribute('datetime'));
  if (!isNaN(d)) t.textContent = d.toLocaleString(undefined, {{ dateStyle: 'medium', timeStyle: 'short' }});
}}
if (/[?&]m=/.test(location.search) && history.replaceState) history.replaceState(null, '', location.pathname);
</script>
</body></html>"#
    )
}

/// The session cookie's value in the request (what the layer's guest reads: the first well-formed
/// token under the configured name, else the first value under it), if the request carried one.
fn request_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut first = None;
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim_ascii().split_once('='));
    for (key, value) in pairs {
        if key.trim_ascii() != name {
            continue;
        }
        let value = value.trim_ascii();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Some(value.to_owned());
        }
        first.get_or_insert_with(|| value.to_owned());
    }
    first
}

/// Why the request's session cookie names no live session, or `None` when it does or there is none.
///
/// The layer answers a stale cookie (unknown, expired, malformed) with a fresh, empty session and removes
/// the cookie after the handler, but does not say so. Every session this demo stores carries a label (the
/// device, set at sign-in or with the first data), so a request that carried our cookie and got a
/// labelled session got the live one; only one without a label (a stale cookie, or a live session made
/// elsewhere without a label) is checked by loading its token, which also tells why: deleted (revoked,
/// signed out everywhere), expired, or not a token. Reading the label touches the session, so the layer
/// sends the removal cookie with this response.
async fn cookie_ended(
    app: &AppState,
    session: &SessionHandle,
    headers: &HeaderMap,
) -> Result<Option<Message>, StoreError> {
    let Some(token) = request_cookie(headers, &app.store.config().cookie_name) else {
        return Ok(None);
    };
    if session.label().await?.is_some() {
        return Ok(None);
    }
    match app.store.load(&token).await {
        Ok(_) => Ok(None),
        Err(StoreError::NotFound) => Ok(Some(Message::Ended)),
        Err(StoreError::Expired) => Ok(Some(Message::Expired)),
        Err(StoreError::InvalidId(_)) => Ok(Some(Message::CookieRefused)),
        Err(other) => Err(other),
    }
}

/// The device label for the request's `User-Agent`.
fn device(headers: &HeaderMap) -> String {
    agent::device_label(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// How long "remember me" keeps a session without a visit under `config`.
fn remember_for(config: &Config) -> Duration {
    REMEMBER_FOR.min(Duration::from_secs(
        u64::try_from(config.max_age).unwrap_or(1),
    ))
}

fn max_age(config: &Config) -> Duration {
    Duration::from_secs(u64::try_from(config.max_age).unwrap_or(1))
}

/// " (or after 30 minutes without activity)" when an idle timeout is configured.
fn idle_text(config: &Config) -> String {
    config
        .idle_timeout
        .and_then(|idle| u64::try_from(idle).ok())
        .map(|idle| format!(" (or after {} without activity)", duration_text(idle)))
        .unwrap_or_default()
}

/// The lifetime of a session that is not remembered, signed in at `now`.
fn browser_session_text(config: &Config, now: SystemTime) -> String {
    format!(
        "Ends when you close the browser{}, or at the latest {}",
        esc(&idle_text(config)),
        when_html(now, now + max_age(config))
    )
}

/// The lifetime of a remembered session, signed in at `now`.
fn remembered_text(config: &Config, now: SystemTime) -> String {
    let remember = remember_for(config);
    if remember < max_age(config) {
        format!(
            "Kept when the browser closes; ends after {} without a visit, at the latest {}",
            duration_text(remember.as_secs()),
            when_html(now, now + max_age(config))
        )
    } else {
        format!(
            "Kept when the browser closes. Expires {}",
            when_html(now, now + remember)
        )
    }
}

/// The two lifetimes side by side: `this` (its title and text) and the other choice.
fn lifetimes(this: (&str, String), other: (&str, String)) -> String {
    format!(
        r#"<div class="lifetimes" id="lifetimes">
<div id="lifetime-this"><h3>{}</h3><p>{}</p></div>
<div id="lifetime-other"><h3>{}</h3><p>{}</p></div>
</div>
"#,
        this.0, this.1, other.0, other.1
    )
}

/// Renders the page, with an optional notice at the top.
async fn render(
    app: &AppState,
    session: &SessionHandle,
    notice: Option<&Notice>,
) -> Result<String, StoreError> {
    let now = app.store.now();
    let mut body = String::new();
    if let Some(notice) = notice {
        let (class, id, role) = if notice.error {
            ("error", "error", "alert")
        } else {
            ("message", "message", "status")
        };
        let _ = writeln!(
            body,
            r#"<p class="{class}" id="{id}" role="{role}">{}</p>"#,
            esc(&notice.text)
        );
    }
    match session.user_id().await? {
        None => sign_in_view(&mut body, app.store.config(), now),
        Some(user) => signed_in_view(&mut body, app, session, user, now).await?,
    }
    data_view(&mut body, &session.data().await?);
    Ok(layout(&body))
}

/// The sign-in form, with what "remember me" changes.
fn sign_in_view(body: &mut String, config: &Config, now: SystemTime) {
    body.push_str(
        r#"<p id="status">You are not signed in.</p>
<form method="post" action="/login" id="login-form">
<label>User id <input id="user-id" name="user_id" inputmode="numeric" required></label>
<label><input type="checkbox" id="remember" name="remember" value="on"> Remember me on this browser</label>
<button id="login" type="submit">Sign in</button>
</form>
"#,
    );
    body.push_str(&lifetimes(
        ("Without “remember me”", browser_session_text(config, now)),
        ("With “remember me”", remembered_text(config, now)),
    ));
}

/// Who is signed in, this session's lifetime, the sign-out buttons and the user's devices.
async fn signed_in_view(
    body: &mut String,
    app: &AppState,
    session: &SessionHandle,
    user: i64,
    now: SystemTime,
) -> Result<(), StoreError> {
    let config = app.store.config();
    let label = session.label().await?;
    let here = session.handle().await?;
    let expires = when_html(now, session.expires_at().await?);
    let _ = writeln!(
        body,
        r#"<p id="status">Signed in as user <strong id="user">{user}</strong> on <span id="device">{}</span>.</p>"#,
        esc(label.as_deref().unwrap_or("an unknown device"))
    );
    let this = match session.expiry().await? {
        Some(Expiry::OnSessionEnd) => (
            "This session: not remembered",
            format!(
                "Ends when you close the browser{}. Expires {expires}",
                esc(&idle_text(config))
            ),
        ),
        Some(Expiry::OnInactivity(idle)) if idle < max_age(config) => (
            "This session: remembered",
            format!(
                "Kept when the browser closes; ends after {} without a visit. Expires {expires}",
                duration_text(idle.as_secs())
            ),
        ),
        Some(Expiry::OnInactivity(_)) => (
            "This session: remembered",
            format!("Kept when the browser closes. Expires {expires}"),
        ),
        _ => ("This session", format!("Expires {expires}")),
    };
    let other = if matches!(session.expiry().await?, Some(Expiry::OnInactivity(_))) {
        (
            "Not remembered (sign in without “remember me”)",
            browser_session_text(config, now),
        )
    } else {
        (
            "Remembered (sign in with “remember me”)",
            remembered_text(config, now),
        )
    };
    body.push_str(&lifetimes(this, other));
    body.push_str(
        r#"<form class="inline" method="post" action="/logout"><button id="logout" type="submit">Sign out here</button></form>
<form class="inline" method="post" action="/logout-everywhere"><button id="logout-everywhere" type="submit">Sign out everywhere</button></form>
<h2>Your devices</h2>
<table id="devices"><thead><tr><th>Device</th><th>Session started</th><th>Last activity</th><th>Expires</th><th class="action"></th></tr></thead><tbody>
"#,
    );
    for device in app.store.get_user_sessions(user).await? {
        let this_device = device.handle == here;
        let action = if this_device {
            r#"<strong class="this">this device</strong>"#.to_owned()
        } else {
            format!(
                r#"<form method="post" action="/devices/revoke"><input type="hidden" name="handle" value="{}"><button class="revoke" type="submit">Sign out</button></form>"#,
                esc(&device.handle)
            )
        };
        let _ = writeln!(
            body,
            r#"<tr class="device{}"><td class="label">{}</td><td>{}</td><td class="activity">{}</td><td class="expires">{}</td><td class="action">{action}</td></tr>"#,
            if this_device { " this-device" } else { "" },
            esc(device.label.as_deref().unwrap_or("Unknown device")),
            when_html(now, device.created_at),
            when_html(now, device.updated_at),
            when_html(now, device.expires_at),
        );
    }
    body.push_str("</tbody></table>\n");
    Ok(())
}

/// The session's data, each with a remove button, and the form that adds a key.
fn data_view(body: &mut String, data: &BTreeMap<String, Value>) {
    body.push_str(
        r#"<h2>Session data</h2>
<table id="data"><thead><tr><th class="key">Key</th><th>Value</th><th class="action"></th></tr></thead><tbody>
"#,
    );
    for (key, value) in data {
        let (class, shown) = match value {
            Value::String(text) => ("value", esc_shortened(text, SHOWN_VALUE_CHARS)),
            other => (
                "value json",
                esc_shortened(&other.to_string(), SHOWN_VALUE_CHARS),
            ),
        };
        let _ = writeln!(
            body,
            r#"<tr class="item"><td class="key">{}</td><td><div class="{class}">{shown}</div></td><td class="action"><form method="post" action="/data"><input type="hidden" name="action" value="remove"><input type="hidden" name="key" value="{}"><button class="remove" type="submit">Remove</button></form></td></tr>"#,
            esc_shortened(key, SHOWN_KEY_CHARS),
            esc(key),
        );
    }
    body.push_str("</tbody></table>\n");
    if data.is_empty() {
        body.push_str("<p id=\"no-data\">Nothing stored in this session yet.</p>\n");
    }
    body.push_str(
        r#"<form method="post" action="/data" id="add-form"><label>Key <input id="key" name="key" required></label>
<label>Value <input id="value" name="value"></label>
<label><input type="checkbox" id="json" name="json" value="on"> value is JSON</label>
<button id="add" type="submit">Add</button></form>
"#,
    );
}

/// The page with an error about the form just sent, with `status`.
async fn page_with_error(
    app: &AppState,
    session: &SessionHandle,
    status: StatusCode,
    text: &str,
) -> Result<Response, PageError> {
    let page = render(app, session, Some(&Notice::error(text))).await?;
    Ok((status, Html(page)).into_response())
}

/// `GET /`: the sign-in form or the signed-in view, and the session's data; the message of the action
/// before, or why this browser's session ended.
async fn page(
    State(app): State<AppState>,
    session: SessionHandle,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Html<String>, PageError> {
    let message = match cookie_ended(&app, &session, &headers).await? {
        Some(ended) => Some(ended),
        None => query.as_deref().and_then(Message::from_query),
    };
    let notice = message.map(Notice::message);
    Ok(Html(render(&app, &session, notice.as_ref()).await?))
}

/// The sign-in form.
#[derive(Deserialize)]
struct LoginForm {
    user_id: String,
    /// The "remember me" checkbox: present when ticked.
    remember: Option<String>,
}

/// `POST /login`: sets the user (the layer rotates the session id in the same write), labels the session
/// with the device, and chooses its lifetime: a browser-session cookie, or remembered.
async fn login(
    State(app): State<AppState>,
    session: SessionHandle,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return Ok(form_error(&app, &rejection)),
    };
    let Ok(user) = form.user_id.trim().parse::<i64>() else {
        return page_with_error(
            &app,
            &session,
            StatusCode::BAD_REQUEST,
            "The user id must be a whole number, such as 42.",
        )
        .await;
    };
    let expiry = if form.remember.is_some() {
        Expiry::OnInactivity(remember_for(app.store.config()))
    } else {
        Expiry::OnSessionEnd
    };
    session.set_user(user).await?;
    session.set_label(Some(device(&headers))).await?;
    session.set_expiry(Some(expiry)).await?;
    session.save().await?;
    Ok(Message::SignedIn.redirect().into_response())
}

/// `POST /logout`: deletes this session and removes the cookie.
async fn logout(session: SessionHandle) -> Result<Redirect, PageError> {
    session.delete().await?;
    Ok(Message::SignedOut.redirect())
}

/// `POST /logout-everywhere`: deletes every session of the signed-in user, this one included.
async fn logout_everywhere(
    State(app): State<AppState>,
    session: SessionHandle,
    headers: HeaderMap,
) -> Result<Redirect, PageError> {
    if let Some(ended) = cookie_ended(&app, &session, &headers).await? {
        return Ok(ended.redirect());
    }
    let Some(user) = session.user_id().await? else {
        return Ok(Message::SignInFirst.redirect());
    };
    app.store.delete_user_sessions(user).await?;
    session.delete().await?;
    Ok(Message::SignedOutEverywhere.redirect())
}

/// The data forms: add (`key`, `value`, `json` when the value is JSON) or remove (`action=remove`).
#[derive(Deserialize)]
struct DataForm {
    key: String,
    #[serde(default)]
    value: String,
    /// The "value is JSON" checkbox: present when ticked.
    json: Option<String>,
    /// `remove` to remove the key.
    action: Option<String>,
}

/// `POST /data`: stores a key (a string, or JSON) or removes one; a value the store refuses is shown as
/// an error. Only the key itself is read and written, so posts of different keys from one session merge
/// instead of conflicting.
async fn data(
    State(app): State<AppState>,
    session: SessionHandle,
    headers: HeaderMap,
    form: Result<Form<DataForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return Ok(form_error(&app, &rejection)),
    };
    if let Some(ended) = cookie_ended(&app, &session, &headers).await? {
        // Do not quietly start a new session for a browser whose session was ended.
        return Ok(ended.redirect().into_response());
    }
    if form.action.as_deref() == Some("remove") {
        session.remove(&form.key).await?;
        return Ok(Message::Removed.redirect().into_response());
    }
    if form.key.is_empty() {
        return page_with_error(
            &app,
            &session,
            StatusCode::BAD_REQUEST,
            "The key must not be empty.",
        )
        .await;
    }
    let value = if form.json.is_some() {
        match serde_json::from_str::<Value>(&form.value) {
            Ok(value) => value,
            Err(error) => {
                let text = format!(
                    "The value is not valid JSON ({error}). Untick “value is JSON” to store it as text."
                );
                return page_with_error(&app, &session, StatusCode::BAD_REQUEST, &text).await;
            }
        }
    } else {
        Value::String(form.value)
    };
    let previous = session.get::<Value>(&form.key).await?;
    if request_cookie(&headers, &app.store.config().cookie_name).is_none()
        && session.label().await?.is_none()
    {
        // A new session: label it with the device as sign-in does (see `cookie_ended`).
        session.set_label(Some(device(&headers))).await?;
    }
    session.insert(form.key.clone(), value).await?;
    match session.save().await {
        Ok(()) => Ok(Message::Added.redirect().into_response()),
        Err(StoreError::InvalidData(reason)) => {
            // Put the refused key back as it was, so that nothing invalid stays pending.
            match previous {
                Some(value) => session.insert(form.key, value).await?,
                None => drop(session.remove(&form.key).await?),
            }
            let text = format!("Not stored: {reason}.");
            page_with_error(&app, &session, StatusCode::BAD_REQUEST, &text).await
        }
        Err(other) => Err(other.into()),
    }
}

/// The revoke form.
#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

/// `POST /devices/revoke`: signs out one of the signed-in user's sessions by its handle (one statement
/// that only matches this user's sessions).
async fn revoke_device(
    State(app): State<AppState>,
    session: SessionHandle,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return Ok(form_error(&app, &rejection)),
    };
    if let Some(ended) = cookie_ended(&app, &session, &headers).await? {
        return Ok(ended.redirect().into_response());
    }
    let Some(user) = session.user_id().await? else {
        return Ok(Message::SignInFirst.redirect().into_response());
    };
    let handle = form.handle.trim();
    if handle == session.handle().await? {
        session.delete().await?;
        return Ok(Message::SignedOut.redirect().into_response());
    }
    match app.store.revoke_session(user, handle).await {
        Ok(true) => Ok(Message::Revoked.redirect().into_response()),
        Ok(false) => {
            page_with_error(
                &app,
                &session,
                StatusCode::NOT_FOUND,
                "That is not one of your sessions, or it has already ended.",
            )
            .await
        }
        Err(StoreError::InvalidId(_)) => {
            page_with_error(
                &app,
                &session,
                StatusCode::BAD_REQUEST,
                "That is not a session handle.",
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_codes_round_trip_and_unknown_codes_show_nothing() {
        for message in Message::ALL {
            let query = format!("x=1&m={}", message.code());
            assert_eq!(Message::from_query(&query), Some(message));
        }
        assert_eq!(Message::from_query("m=%3Cscript%3E"), None);
        assert_eq!(Message::from_query("mm=added"), None);
    }

    #[test]
    fn the_request_cookie_is_read_as_the_guest_reads_it() {
        let token = "ab".repeat(32);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("other=1; s=bad; s=\"{token}\"").parse().unwrap(),
        );
        assert_eq!(request_cookie(&headers, "s"), Some(token));
        headers.insert(header::COOKIE, "s=bad; s=worse".parse().unwrap());
        assert_eq!(request_cookie(&headers, "s").as_deref(), Some("bad"));
        headers.insert(header::COOKIE, "sx=1".parse().unwrap());
        assert_eq!(request_cookie(&headers, "s"), None);
    }

    #[tokio::test]
    async fn the_not_found_page_is_html_with_a_way_home() {
        let response = not_found_page();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains(r#"href="/""#));
        assert_eq!(
            method_not_allowed_page().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn long_text_is_cut_after_escaping_nothing_twice() {
        assert_eq!(esc_shortened("<a>", 5), "&lt;a&gt;");
        let cut = esc_shortened("<é>xyz", 2);
        assert!(cut.starts_with("&lt;é<span"), "{cut}");
        assert!(cut.contains("6 characters in all"), "{cut}");
    }
}
