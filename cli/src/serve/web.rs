//! The demo app: server-rendered HTML on [`SessionHandle`], no JavaScript. Sign in as any user id (no
//! passwords: it is a demo), keep data in the session, see your other devices, revoke one, sign out here
//! or everywhere. Forms are same-origin posts; the `SameSite=Strict` cookie keeps other sites from
//! riding on them.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, http};
use serde::Deserialize;
use wasm_sessions::{SessionHandle, StoreError};

use super::api::rfc3339;
use super::{AppState, Routes};

/// The demo routes.
pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::GET, "/", page)
        .add(Method::POST, "/login", login)
        .add(Method::POST, "/logout", logout)
        .add(Method::POST, "/logout-everywhere", logout_everywhere)
        .add(Method::POST, "/data", add_data)
        .add(Method::POST, "/devices/revoke", revoke_device)
}

/// A page-level failure: the store error as an HTML page with its status.
struct PageError(StoreError);

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let response = self.0.into_response();
        let status = response.status();
        let text = if status == StatusCode::SERVICE_UNAVAILABLE {
            "The database is unavailable; try again in a moment."
        } else {
            "Something went wrong."
        };
        (status, Html(layout(&format!("<p>{text}</p>")))).into_response()
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

/// The page frame.
fn layout(body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wasm-sessions demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
.note {{ background: #fff6d5; padding: .5rem .8rem; border-radius: .3rem; }}
.error {{ color: #a00; }} form.inline {{ display: inline; }} code {{ font-size: .9em; }}
</style></head>
<body>
<h1>wasm-sessions demo</h1>
<p class="note">This is a demo: there are <strong>no passwords</strong>. Anyone can sign in as any user id.
The session lives in PostgreSQL; its policy (ids, expiry, cookies) runs in a WebAssembly component.</p>
{body}
<p><small>JSON API under <code>/api</code>, documented at <a href="/openapi.json">/openapi.json</a>.</small></p>
</body></html>"#
    )
}

/// `GET /`: the sign-in form or the signed-in view, and the session's data.
async fn page(
    State(app): State<AppState>,
    session: SessionHandle,
) -> Result<Html<String>, PageError> {
    Ok(Html(render(&app, &session, None).await?))
}

/// Renders the page, with an optional error message at the top.
async fn render(
    app: &AppState,
    session: &SessionHandle,
    error: Option<&str>,
) -> Result<String, StoreError> {
    let mut body = String::new();
    if let Some(error) = error {
        let _ = writeln!(body, r#"<p class="error" id="error">{}</p>"#, esc(error));
    }
    match session.user_id().await? {
        None => {
            body.push_str(
                r#"<p id="status">You are not signed in.</p>
<form method="post" action="/login"><label>User id <input id="user-id" name="user_id" inputmode="numeric" required></label>
<button id="login" type="submit">Sign in</button></form>
"#,
            );
        }
        Some(user) => {
            let _ = writeln!(
                body,
                r#"<p id="status">Signed in as user <strong id="user">{user}</strong>.</p>
<form class="inline" method="post" action="/logout"><button id="logout" type="submit">Sign out here</button></form>
<form class="inline" method="post" action="/logout-everywhere"><button id="logout-everywhere" type="submit">Sign out everywhere</button></form>
<h2>Your devices</h2>
<table id="devices"><tr><th>session</th><th>signed in from</th><th>created</th><th>expires</th><th></th></tr>"#
            );
            let here = session.created_at().await?;
            for device in app.store.get_user_sessions(user).await? {
                let action = if device.created_at == here {
                    "<strong>this device</strong>".to_owned()
                } else {
                    format!(
                        r#"<form method="post" action="/devices/revoke"><input type="hidden" name="handle" value="{}"><button type="submit">Revoke</button></form>"#,
                        esc(&device.handle)
                    )
                };
                let _ = writeln!(
                    body,
                    r#"<tr class="device"><td><code>{}…</code></td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>"#,
                    esc(&device.handle[..device.handle.len().min(12)]),
                    esc(device.data.get("device").map_or("?", String::as_str)),
                    rfc3339(device.created_at),
                    rfc3339(device.expires_at),
                );
            }
            body.push_str("</table>\n");
        }
    }
    body.push_str(r#"<h2>Session data</h2><table id="data"><tr><th>key</th><th>value</th></tr>"#);
    for (key, value) in session.data().await? {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&key),
            esc(&value)
        );
    }
    body.push_str(
        r#"</table>
<form method="post" action="/data"><label>Key <input id="key" name="key" required></label>
<label>Value <input id="value" name="value"></label> <button id="add" type="submit">Add</button></form>
"#,
    );
    Ok(layout(&body))
}

/// Back to the page after a form.
fn home() -> Redirect {
    Redirect::to("/")
}

/// The sign-in form.
#[derive(Deserialize)]
struct LoginForm {
    user_id: String,
}

/// `POST /login`: sets the user, remembers the browser, and rotates the session id.
async fn login(
    State(app): State<AppState>,
    session: SessionHandle,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let Ok(user) = form.user_id.trim().parse::<i64>() else {
        let page = render(&app, &session, Some("The user id must be a whole number.")).await?;
        return Ok((StatusCode::BAD_REQUEST, Html(page)).into_response());
    };
    session.set_user(user).await?;
    session.set("device", device_label(&headers)).await?;
    session.regenerate_id().await?;
    Ok(home().into_response())
}

/// A short description of the browser, from its `User-Agent`.
fn device_label(headers: &HeaderMap) -> String {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown browser");
    let known = [
        "HeadlessChrome",
        "Edg",
        "Firefox",
        "Chrome",
        "Safari",
        "curl",
    ];
    known.iter().find(|name| agent.contains(*name)).map_or_else(
        || agent.chars().take(40).collect(),
        |name| (*name).to_owned(),
    )
}

/// `POST /logout`: deletes this session and removes the cookie.
async fn logout(session: SessionHandle) -> Result<Redirect, PageError> {
    session.delete_session().await?;
    Ok(home())
}

/// `POST /logout-everywhere`: deletes every session of the signed-in user, this one included.
async fn logout_everywhere(
    State(app): State<AppState>,
    session: SessionHandle,
) -> Result<Redirect, PageError> {
    if let Some(user) = session.user_id().await? {
        app.store.delete_user_sessions(user).await?;
    }
    session.delete_session().await?;
    Ok(home())
}

/// The data form.
#[derive(Deserialize)]
struct DataForm {
    key: String,
    value: String,
}

/// `POST /data`: stores a key/value; a value the store refuses is shown as an error.
async fn add_data(
    State(app): State<AppState>,
    session: SessionHandle,
    Form(form): Form<DataForm>,
) -> Result<Response, PageError> {
    let previous = session.get(&form.key).await?;
    session.set(form.key.clone(), form.value).await?;
    match session.flush().await {
        Ok(()) => Ok(home().into_response()),
        Err(StoreError::InvalidData(reason)) => {
            // Undo the refused change so nothing invalid stays pending.
            match previous {
                Some(value) => session.set(form.key, value).await?,
                None => drop(session.delete(&form.key).await?),
            }
            let page = render(&app, &session, Some(&format!("Not stored: {reason}"))).await?;
            Ok((StatusCode::BAD_REQUEST, Html(page)).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// The revoke form.
#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

/// `POST /devices/revoke`: revokes one of the signed-in user's sessions.
async fn revoke_device(
    State(app): State<AppState>,
    session: SessionHandle,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PageError> {
    let Some(user) = session.user_id().await? else {
        return Ok(home().into_response());
    };
    match super::api::revoke_handle(&app, user, &form.handle).await {
        Ok(()) => Ok(home().into_response()),
        Err(error) if error.status.is_client_error() => {
            let page = render(&app, &session, Some("No such session of yours.")).await?;
            Ok((http::StatusCode::NOT_FOUND, Html(page)).into_response())
        }
        Err(error) => Ok(error.into_response()),
    }
}
