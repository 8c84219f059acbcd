//! The OpenAPI 3.0 document of the service, served at `/openapi.json` (public: it holds no secret, and
//! clients need it to learn how to authenticate). Written by hand, except the error responses: their
//! statuses and codes come from [`StoreError::http_answer`] (the one table the handlers use) and the
//! guard's codes, so the document cannot promise a status the API does not give. The tests check that it
//! names every route of the router and nothing else.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use serde_json::{Map, Value, json};
use wasm_sessions::{SqlError, StoreError};

use super::api::codes;

/// `GET /openapi.json`.
pub(super) async fn serve() -> Json<Value> {
    Json(document())
}

/// A reference to a schema in `components/schemas`.
fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON response with `schema`.
fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// One error an operation may answer: its status, code and a few words.
struct ErrorCase {
    status: u16,
    code: &'static str,
    why: String,
}

/// A store error as the API answers it (the table's status, code and public message).
fn store(error: &StoreError) -> ErrorCase {
    let answer = error.http_answer();
    ErrorCase {
        status: answer.status,
        code: answer.code,
        why: answer.public_message.to_owned(),
    }
}

/// One of the API's own errors.
fn own(status: u16, code: &'static str, why: &str) -> ErrorCase {
    ErrorCase {
        status,
        code,
        why: why.to_owned(),
    }
}

/// The store errors any operation that reaches the database may give.
fn server_errors() -> Vec<StoreError> {
    vec![
        StoreError::Database(SqlError::ConnectionFailed(String::new())),
        StoreError::DeadlineExceeded(Duration::ZERO),
        StoreError::Database(SqlError::QueryFailed(String::new())),
        StoreError::Guest("the component failed".into()),
    ]
}

/// Every store error the API passes on (the client errors first).
fn every_store_error() -> Vec<StoreError> {
    let mut all = vec![
        StoreError::InvalidId(String::new()),
        StoreError::InvalidData(String::new()),
        StoreError::NotFound,
        StoreError::Conflict,
        StoreError::Expired,
    ];
    all.extend(server_errors());
    all
}

/// The API's own client error for a path parameter that does not parse.
fn bad_path() -> ErrorCase {
    own(
        400,
        codes::INVALID_REQUEST,
        "a path parameter does not parse",
    )
}

/// The API's own client errors for a JSON body.
fn bad_body() -> [ErrorCase; 2] {
    [
        own(
            400,
            codes::INVALID_REQUEST,
            "the body does not parse or is contradictory",
        ),
        own(
            415,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "the body is not application/json",
        ),
    ]
}

/// The guard's errors for every API operation (`changes`: a state-changing method, which is also checked
/// for cross-site requests).
fn guard_errors(changes: bool) -> Vec<ErrorCase> {
    let mut errors = vec![
        own(
            401,
            codes::UNAUTHORIZED,
            "no `Authorization: Bearer` header, or not the API's token (with `WWW-Authenticate: Bearer`)",
        ),
        own(
            421,
            codes::MISDIRECTED_REQUEST,
            "the `Host` header names a host this server does not answer for (DNS rebinding defence)",
        ),
        own(400, codes::INVALID_REQUEST, "no valid `Host` header"),
    ];
    if changes {
        errors.push(own(
            403,
            codes::CROSS_SITE_REQUEST,
            "a browser sent this from another site (`Sec-Fetch-Site`, else `Origin`)",
        ));
    }
    errors
}

/// The responses of one operation: `success` (status → response), then every error in `store_errors`,
/// [`server_errors`], `own_errors` and the guard's (`changes`: see [`guard_errors`]), grouped by status
/// with every code of that status named.
fn responses(
    success: Value,
    store_errors: &[StoreError],
    own_errors: Vec<ErrorCase>,
    changes: bool,
) -> Value {
    let mut by_status: BTreeMap<u16, Vec<ErrorCase>> = BTreeMap::new();
    let server = server_errors();
    let cases = store_errors
        .iter()
        .chain(&server)
        .map(store)
        .chain(own_errors)
        .chain(guard_errors(changes));
    for case in cases {
        let list = by_status.entry(case.status).or_default();
        if !list.iter().any(|c| c.code == case.code) {
            list.push(case);
        }
    }
    let mut map: Map<String, Value> = success.as_object().expect("an object").clone();
    for (status, cases) in by_status {
        let text = cases
            .iter()
            .map(|c| format!("`{}`: {}", c.code, c.why))
            .collect::<Vec<_>>()
            .join("; ");
        map.insert(
            status.to_string(),
            json_response(&format!("{text}."), schema("Error")),
        );
    }
    Value::Object(map)
}

/// The session token header (never a path or query parameter: URLs end up in logs).
fn token_header() -> Value {
    json!({
        "name": "X-Session-Token", "in": "header", "required": true,
        "description": "The session token (64 lower-case hex characters), as in the cookie. Missing or repeated: 400 `invalid_request`; malformed: 400 `invalid_id`.",
        "schema": { "type": "string", "pattern": "^[0-9a-f]{64}$" }
    })
}

/// The operation needs the API's bearer token.
fn bearer() -> Value {
    json!([{ "bearerAuth": [] }])
}

/// The user id path parameter.
fn user_param() -> Value {
    json!({
        "name": "user_id", "in": "path", "required": true,
        "description": "The user id.", "schema": { "type": "integer", "format": "int64" }
    })
}

/// A JSON request body.
fn body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema(name) } } })
}

/// An HTML response of the demo app.
fn page(description: &str) -> Value {
    json!({ "description": description, "content": { "text/html": { "schema": { "type": "string" } } } })
}

/// An HTML page of the demo app: `statuses` are the HTML error pages it may answer besides the guard's
/// (421 for a foreign `Host`; 403 for a cross-site form).
fn html(summary: &str, description: &str, form: Option<Value>, statuses: &[u16]) -> Value {
    let mut responses = Map::new();
    if form.is_some() || statuses.contains(&303) {
        responses.insert(
            "303".into(),
            json!({ "description": "Done (or nothing to do): redirects to the demo page, `/?m=CODE`." }),
        );
    } else {
        responses.insert("200".into(), page("The demo page."));
    }
    for status in statuses.iter().filter(|s| **s != 303) {
        let why = match status {
            400 => {
                "The form's values are refused (e.g. a user id that is not a number, an empty key, invalid JSON, data the store refuses): the page with an error line."
            }
            404 => "No such session of the signed-in user to revoke: the page with an error line.",
            409 => "The session was changed by another request meanwhile: reload and retry.",
            413 => "The form is larger than the server accepts (nothing was stored).",
            415 => "The body is not `application/x-www-form-urlencoded`.",
            422 => "A required form field is missing or does not parse.",
            503 => "The database is unavailable or did not answer in time.",
            _ => "Server error (details only in the server's log).",
        };
        responses.insert(status.to_string(), page(why));
    }
    responses.insert(
        "421".into(),
        page("The `Host` header names a host this server does not answer for (DNS rebinding defence)."),
    );
    if form.is_some() || statuses.contains(&303) {
        responses.insert(
            "403".into(),
            page("A browser sent this form from another site (`Sec-Fetch-Site`, else `Origin`): refused, nothing changed (CSRF and login CSRF defence)."),
        );
    }
    let mut operation = json!({
        "tags": ["demo"],
        "summary": summary,
        "description": description,
        "security": [],
        "responses": responses
    });
    if let Some(form) = form {
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/x-www-form-urlencoded": { "schema": form } }
        });
    }
    operation
}

/// The demo app's pages (`web.rs`).
fn demo_paths() -> Value {
    let form_errors = [400, 413, 415, 422, 409, 500, 503];
    json!({
        "/": { "get": html("The demo page.", "Sign-in form, or your session data, devices and sign-out buttons.", None, &[500, 503]) },
        "/login": { "post": html(
            "Sign in as a user (demo: no password).",
            "Sets the user (the session id rotates in the same write), labels the session with the device and chooses its lifetime: without `remember`, a browser-session cookie that also ends after the idle timeout; with it, a persistent cookie with a sliding expiry.",
            Some(json!({
                "type": "object", "required": ["user_id"],
                "properties": {
                    "user_id": { "type": "string", "description": "A whole number (the user id)." },
                    "remember": { "type": "string", "description": "The \"remember me\" checkbox: present (any value, `on` from the form) to keep the session when the browser closes." }
                }
            })),
            &form_errors,
        ) },
        "/logout": { "post": html("Sign out here.", "Deletes this session and removes the cookie.", None, &[303, 500, 503]) },
        "/logout-everywhere": { "post": html("Sign out everywhere.", "Deletes every session of the signed-in user.", None, &[303, 500, 503]) },
        "/data": { "post": html(
            "Store a key/value in the session, or remove a key.",
            "Writes only this key (posts of other keys merge) and sets the session cookie.",
            Some(json!({
                "type": "object", "required": ["key"],
                "properties": {
                    "key": { "type": "string" },
                    "value": { "type": "string", "default": "", "description": "The value: text, or JSON with `json`." },
                    "json": { "type": "string", "description": "The \"value is JSON\" checkbox: present (`on`) to store `value` parsed as JSON." },
                    "action": { "type": "string", "enum": ["remove"], "description": "`remove`: remove `key` instead of storing it." }
                }
            })),
            &form_errors,
        ) },
        "/devices/revoke": { "post": html(
            "Revoke one of your sessions by handle.",
            "Only the signed-in user's own sessions.",
            Some(json!({
                "type": "object", "required": ["handle"], "properties": { "handle": { "type": "string" } }
            })),
            &[400, 404, 413, 415, 422, 500, 503],
        ) }
    })
}

/// The JSON API's paths. Every operation under `/api` needs the bearer token.
fn api_paths() -> Value {
    use StoreError as E;
    let with_body = |mut errors: Vec<ErrorCase>| {
        errors.extend(bad_body());
        errors
    };
    let token = || vec![token_header_error()];
    let token_and_body = || with_body(token());
    json!({
        "/openapi.json": {
            "get": {
                "tags": ["maintenance"],
                "summary": "This document (public: no token needed).",
                "security": [],
                "responses": {
                    "200": json_response("The OpenAPI document.", json!({ "type": "object" })),
                    "421": json_response("The `Host` header names a host this server does not answer for.", schema("Error"))
                }
            }
        },
        "/api/sessions": {
            "post": {
                "tags": ["sessions"], "summary": "Create and save a session.",
                "security": bearer(),
                "requestBody": body("CreateRequest"),
                "responses": responses(
                    json!({ "201": json_response("The new session and its token.", schema("NewSession")) }),
                    &[E::InvalidData(String::new())],
                    with_body(vec![]),
                    true,
                )
            }
        },
        "/api/session": {
            "parameters": [token_header()],
            "get": {
                "tags": ["sessions"], "summary": "Load the session named by `X-Session-Token` (shown by handle; the token is not echoed).",
                "security": bearer(),
                "responses": responses(
                    json!({ "200": json_response("The session.", schema("Session")) }),
                    &[E::InvalidId(String::new()), E::NotFound, E::Expired],
                    token(),
                    false,
                )
            },
            "delete": {
                "tags": ["sessions"], "summary": "Delete the session named by `X-Session-Token`.",
                "security": bearer(),
                "responses": responses(
                    json!({ "204": { "description": "Deleted." } }),
                    &[E::InvalidId(String::new()), E::NotFound],
                    token(),
                    true,
                )
            }
        },
        "/api/session/data": {
            "parameters": [token_header()],
            "patch": {
                "tags": ["sessions"],
                "summary": "Remove the keys in `unset` and store `set`, after checking `expect`; one write of only these keys.",
                "description": "Concurrent PATCHes of other keys merge; a key this request expects or writes that another request changed meanwhile is a 409 `conflict` (reload and retry). `expect` makes a read-modify-write safe: GET the value, PATCH the new one with the value read in `expect`.",
                "security": bearer(),
                "requestBody": body("UpdateDataRequest"),
                "responses": responses(
                    json!({ "200": json_response("The session after the write (with other requests' merged changes).", schema("Session")) }),
                    &[E::InvalidId(String::new()), E::InvalidData(String::new()), E::NotFound, E::Conflict, E::Expired],
                    token_and_body(),
                    true,
                )
            }
        },
        "/api/session/login": {
            "parameters": [token_header()],
            "post": {
                "tags": ["sessions"], "summary": "Set the user and rotate the token in one write (the old token stops working).",
                "security": bearer(),
                "requestBody": body("LoginRequest"),
                "responses": responses(
                    json!({ "200": json_response("The session and its new token.", schema("NewSession")) }),
                    &[E::InvalidId(String::new()), E::InvalidData(String::new()), E::NotFound, E::Conflict, E::Expired],
                    token_and_body(),
                    true,
                )
            }
        },
        "/api/session/logout": {
            "parameters": [token_header()],
            "post": {
                "tags": ["sessions"], "summary": "Clear the user and rotate the token.",
                "security": bearer(),
                "responses": responses(
                    json!({ "200": json_response("The session and its new token.", schema("NewSession")) }),
                    &[E::InvalidId(String::new()), E::NotFound, E::Conflict, E::Expired],
                    token(),
                    true,
                )
            }
        },
        "/api/users/{user_id}/sessions": {
            "parameters": [user_param()],
            "get": {
                "tags": ["users"], "summary": "The user's unexpired sessions, newest first.",
                "security": bearer(),
                "responses": responses(
                    json!({ "200": json_response("The sessions.", json!({
                        "type": "object", "required": ["sessions"],
                        "properties": { "sessions": { "type": "array", "items": schema("UserSession") } }
                    })) }),
                    &[],
                    vec![bad_path()],
                    false,
                )
            },
            "delete": {
                "tags": ["users"], "summary": "Log the user out everywhere.",
                "security": bearer(),
                "responses": responses(
                    json!({ "200": json_response("How many sessions were deleted.", schema("Deleted")) }),
                    &[],
                    vec![bad_path()],
                    true,
                )
            }
        },
        "/api/users/{user_id}/sessions/{handle}": {
            "parameters": [user_param(), {
                "name": "handle", "in": "path", "required": true,
                "description": "The session's handle from the listing (not a token: it can revoke the session, never act as it).",
                "schema": { "type": "string" }
            }],
            "delete": {
                "tags": ["users"], "summary": "Revoke one of the user's sessions by handle (a handle of another user's session revokes nothing: 404).",
                "security": bearer(),
                "responses": responses(
                    json!({ "204": { "description": "Revoked." } }),
                    &[E::InvalidId(String::new()), E::NotFound],
                    vec![bad_path()],
                    true,
                )
            }
        },
        "/api/cleanup": {
            "post": {
                "tags": ["maintenance"], "summary": "Delete expired sessions now, in batches (`serve` also does it periodically).",
                "security": bearer(),
                "responses": responses(
                    json!({ "200": json_response("How many sessions were deleted.", schema("Deleted")) }),
                    &[],
                    vec![],
                    true,
                )
            }
        }
    })
}

/// The API's own client error for a missing or repeated session token header.
fn token_header_error() -> ErrorCase {
    own(
        400,
        codes::INVALID_REQUEST,
        "the `X-Session-Token` header is missing, repeated or not text",
    )
}

/// Any JSON value (a session value).
fn any_value() -> Value {
    json!({ "description": "Any JSON value: string, number, boolean, null, array or object." })
}

/// A timestamp.
fn timestamp(description: &str) -> Value {
    json!({ "type": "string", "format": "date-time", "description": description })
}

/// The data of a session: an object of JSON values.
fn data() -> Value {
    json!({ "type": "object", "additionalProperties": any_value(), "description": "Key → any JSON value, sorted by key." })
}

/// The schemas.
fn schemas() -> Value {
    let mut error_codes: Vec<&str> = every_store_error()
        .iter()
        .map(|e| e.http_answer().code)
        .chain([
            codes::INVALID_REQUEST,
            codes::UNSUPPORTED_MEDIA_TYPE,
            codes::METHOD_NOT_ALLOWED,
            codes::NOT_FOUND,
            codes::UNAUTHORIZED,
            codes::CROSS_SITE_REQUEST,
            codes::MISDIRECTED_REQUEST,
        ])
        .collect();
    error_codes.sort_unstable();
    error_codes.dedup();
    let mode = |name: &str| json!({ "type": "string", "enum": [name] });
    json!({
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "enum": error_codes },
                "message": { "type": "string", "description": "For server errors a generic text: the details stay in the server's log." }
            }
        },
        "Expiry": {
            "description": "The session's own expiry mode. Whatever the mode, a session never outlives its absolute deadline (creation + the configured max age).",
            "oneOf": [
                {
                    "type": "object", "required": ["mode", "seconds"], "additionalProperties": false,
                    "description": "Sliding: ends after this many seconds without use (1 ..= max age).",
                    "properties": { "mode": mode("on_inactivity"), "seconds": { "type": "integer", "minimum": 1 } }
                },
                {
                    "type": "object", "required": ["mode", "at"], "additionalProperties": false,
                    "description": "Ends at this time (in the future; capped by the absolute deadline).",
                    "properties": { "mode": mode("at"), "at": timestamp("RFC 3339, UTC (`Z`).") }
                },
                {
                    "type": "object", "required": ["mode"], "additionalProperties": false,
                    "description": "Ends with the browser session: the cookie has no Max-Age.",
                    "properties": { "mode": mode("on_session_end") }
                }
            ],
            "discriminator": { "propertyName": "mode" }
        },
        "Session": {
            "type": "object",
            "required": ["handle", "user_id", "label", "data", "expiry", "created_at", "expires_at", "absolute_expires_at", "updated_at"],
            "properties": {
                "handle": { "type": "string", "description": "The opaque handle (hex SHA-256 of the token), as the user's listing shows it; not usable as a cookie." },
                "user_id": { "type": "integer", "format": "int64", "nullable": true },
                "label": { "type": "string", "nullable": true },
                "data": data(),
                "expiry": { "nullable": true, "allOf": [schema("Expiry")], "description": "`null`: the configured policy." },
                "created_at": timestamp("When it was created."),
                "expires_at": timestamp("When it stops being valid (the earliest of its deadlines)."),
                "absolute_expires_at": timestamp("The absolute deadline no activity extends."),
                "updated_at": timestamp("When the stored row was last written.")
            }
        },
        "NewSession": {
            "type": "object", "required": ["token", "session"],
            "description": "A session with its token, where the token is new (create, login, logout).",
            "properties": { "token": { "type": "string", "description": "64 lower-case hex characters: the cookie's value." }, "session": schema("Session") }
        },
        "UserSession": {
            "type": "object", "required": ["handle", "user_id", "label", "data", "created_at", "expires_at", "updated_at"],
            "properties": {
                "handle": { "type": "string", "description": "Revokes this session; not usable as a cookie." },
                "user_id": { "type": "integer", "format": "int64" },
                "label": { "type": "string", "nullable": true },
                "data": data(),
                "created_at": timestamp("When it was created."),
                "expires_at": timestamp("When it stops being valid."),
                "updated_at": timestamp("When the stored row was last written.")
            }
        },
        "CreateRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "user_id": { "type": "integer", "format": "int64" },
                "label": { "type": "string" },
                "data": data(),
                "expires_in": { "type": "integer", "minimum": 1, "description": "Ends this many seconds from now (mode `at`, capped by the absolute deadline). Not with `expiry`." },
                "expiry": schema("Expiry")
            }
        },
        "UpdateDataRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "set": data(),
                "unset": { "type": "array", "items": { "type": "string" }, "description": "Keys to remove (not also in `set`)." },
                "expect": {
                    "type": "object", "additionalProperties": any_value(),
                    "description": "The values these keys must hold (`null`: absent or null), now and when the change is written; otherwise 409 `conflict`."
                }
            }
        },
        "LoginRequest": {
            "type": "object", "additionalProperties": false, "required": ["user_id"],
            "properties": {
                "user_id": { "type": "integer", "format": "int64" },
                "label": { "type": "string", "description": "A label for the session, e.g. the device." }
            }
        },
        "Deleted": {
            "type": "object", "required": ["deleted"],
            "properties": { "deleted": { "type": "integer", "minimum": 0 } }
        }
    })
}

/// The whole document.
#[must_use]
pub fn document() -> Value {
    let mut paths = api_paths();
    let demo = demo_paths();
    let map = paths.as_object_mut().expect("an object");
    for (path, item) in demo.as_object().expect("an object") {
        map.insert(path.clone(), item.clone());
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wasm-sessions",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Server-side sessions whose logic runs in a WebAssembly component, stored in PostgreSQL. The JSON API under `/api` is an administration interface: every call needs `Authorization: Bearer TOKEN` (the token `serve` was started with: `--api-token` / `WASM_SESSIONS_API_TOKEN`, or the one it generated and printed), and every response says `Cache-Control: no-store`. Session tokens never travel in URLs: the routes of one session take it in the `X-Session-Token` header, and tokens appear in responses only where they are new (create, login, logout); sessions are otherwise named by their handle. Every request must name an allowed host in `Host` (else 421), and a state-changing request a browser marks as cross-site (`Sec-Fetch-Site`, else `Origin`) is refused with 403. `/openapi.json` and the demo pages need no token. Session values are any JSON. Errors are `{\"error\": code, \"message\": text}`, with the status and code of the store's one error table (e.g. an expired session is 410 `expired`)."
        },
        "tags": [
            { "name": "sessions", "description": "One session, by token (in the `X-Session-Token` header)." },
            { "name": "users", "description": "A user's sessions, by revocable handle." },
            { "name": "maintenance", "description": "Housekeeping." },
            { "name": "demo", "description": "The server-rendered demo app (HTML, session cookie)." }
        ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer",
                    "description": "The API token `serve` was started with (`--api-token` / `WASM_SESSIONS_API_TOKEN`), or the one it generated at start (printed once, and written to `$XDG_STATE_HOME/wasm-sessions/api-token`, mode 0600). Missing or wrong: 401 `unauthorized` with `WWW-Authenticate: Bearer`."
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_take_their_status_and_codes_from_the_table() {
        let doc = document();
        let get = &doc["paths"]["/api/session"]["get"]["responses"];
        let expired = StoreError::Expired.http_answer();
        let text = get[expired.status.to_string()]["description"]
            .as_str()
            .unwrap();
        assert!(text.contains("`expired`"), "{text}");
        let unavailable = get["503"]["description"].as_str().unwrap();
        assert!(
            unavailable.contains("`database_unavailable`") && unavailable.contains("`timeout`"),
            "{unavailable}"
        );
        let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
            .as_array()
            .unwrap();
        for code in [
            "conflict",
            "invalid_request",
            "timeout",
            "internal",
            "unauthorized",
            "cross_site_request",
            "misdirected_request",
        ] {
            assert!(codes.iter().any(|c| c == code), "{code}");
        }
    }

    #[test]
    fn every_api_operation_needs_the_bearer_token_and_says_401_and_public_ones_say_so() {
        let doc = document();
        assert_eq!(
            doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let security = &operation["security"];
                if path.starts_with("/api/") {
                    assert_eq!(security, &bearer(), "{method} {path}");
                    let unauthorized = operation["responses"]["401"]["description"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{method} {path} has no 401"));
                    assert!(unauthorized.contains("`unauthorized`"), "{unauthorized}");
                    if method != "get" {
                        assert!(operation["responses"]["403"].is_object(), "{method} {path}");
                    }
                } else {
                    assert_eq!(security, &json!([]), "{method} {path} is public");
                }
                assert!(operation["responses"]["421"].is_object(), "{method} {path}");
                assert!(!path.contains("{token}"), "no token in a path: {path}");
            }
        }
        assert_eq!(
            doc["paths"]["/api/session"]["parameters"][0]["in"],
            "header"
        );
        assert_eq!(
            doc["paths"]["/api/session"]["parameters"][0]["name"],
            "X-Session-Token"
        );
        assert!(super::super::SESSION_TOKEN_HEADER.eq_ignore_ascii_case("X-Session-Token"));
    }

    #[test]
    fn the_demo_forms_document_their_optional_fields_and_error_pages() {
        let doc = document();
        let form = |path: &str| {
            doc["paths"][path]["post"]["requestBody"]["content"]
                ["application/x-www-form-urlencoded"]["schema"]
                .clone()
        };
        let login = form("/login");
        assert_eq!(login["required"], json!(["user_id"]));
        assert!(login["properties"]["remember"].is_object());
        let data = form("/data");
        assert_eq!(data["required"], json!(["key"]));
        assert_eq!(data["properties"]["value"]["default"], "");
        assert!(data["properties"]["json"].is_object());
        assert_eq!(data["properties"]["action"]["enum"], json!(["remove"]));
        let revoke = &doc["paths"]["/devices/revoke"]["post"]["responses"];
        for status in [
            "303", "400", "403", "404", "413", "415", "421", "422", "503",
        ] {
            assert!(revoke[status].is_object(), "{status}");
        }
        assert!(doc["paths"]["/"]["get"]["responses"]["503"].is_object());
    }
}
