//! The OpenAPI 3.0 document of the service, served at `/openapi.json`. Written by hand; the tests check
//! that it names every route of the router and nothing else.

use axum::Json;
use serde_json::{Value, json};

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

/// The typed error response.
fn error(description: &str) -> Value {
    json_response(description, schema("Error"))
}

/// The responses every database-backed operation may give besides its own.
fn with_common(mut responses: Value) -> Value {
    let map = responses.as_object_mut().expect("an object");
    map.insert(
        "503".into(),
        error("The database is unavailable (`database_unavailable`)."),
    );
    map.insert(
        "500".into(),
        error("The database or the component failed (`database_error`, `internal`)."),
    );
    responses
}

/// The token path parameter.
fn token_param() -> Value {
    json!({
        "name": "token", "in": "path", "required": true,
        "description": "The session token (64 lower-case hex characters), as in the cookie.",
        "schema": { "type": "string" }
    })
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

/// An HTML page of the demo app.
fn html(summary: &str, description: &str, form: Option<Value>) -> Value {
    let mut operation = json!({
        "tags": ["demo"],
        "summary": summary,
        "description": description,
        "responses": {
            "200": { "description": "An HTML page.", "content": { "text/html": { "schema": { "type": "string" } } } },
            "303": { "description": "Redirects to the demo page." },
            "400": { "description": "The form does not parse (HTML page)." }
        }
    });
    if let Some(form) = form {
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/x-www-form-urlencoded": { "schema": form } }
        });
    }
    operation
}

/// The whole document.
#[must_use]
pub fn document() -> Value {
    let bad_id = || error("The token or handle is malformed (`invalid_id`).");
    let not_found = || error("No such session (`not_found`).");
    let expired = || error("The session has expired (`expired`).");
    let bad_body = || {
        error("The body does not parse (`invalid_request`) or cannot be stored (`invalid_data`).")
    };
    let media = || error("The body is not `application/json` (`unsupported_media_type`).");
    let conflict =
        || error("Another request changed the session meanwhile; reload and retry (`conflict`).");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wasm-sessions",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Server-side sessions whose logic runs in a WebAssembly component, stored in PostgreSQL. The JSON API is an administration interface for trusted callers: tokens travel in the path. Errors are `{\"error\": code, \"message\": text}`; an expired session is 410 Gone."
        },
        "tags": [
            { "name": "sessions", "description": "One session, by token." },
            { "name": "users", "description": "A user's sessions, by revocable handle." },
            { "name": "maintenance", "description": "Housekeeping." },
            { "name": "demo", "description": "The server-rendered demo app (HTML, session cookie)." }
        ],
        "paths": {
            "/openapi.json": {
                "get": {
                    "tags": ["maintenance"],
                    "summary": "This document.",
                    "responses": { "200": json_response("The OpenAPI document.", json!({ "type": "object" })) }
                }
            },
            "/api/sessions": {
                "post": {
                    "tags": ["sessions"], "summary": "Create and save a session.",
                    "requestBody": body("CreateRequest"),
                    "responses": with_common(json!({
                        "201": json_response("The new session and its token.", schema("TokenSession")),
                        "400": bad_body(), "415": media()
                    }))
                }
            },
            "/api/sessions/{token}": {
                "parameters": [token_param()],
                "get": {
                    "tags": ["sessions"], "summary": "Load a session.",
                    "responses": with_common(json!({
                        "200": json_response("The session.", schema("Session")),
                        "400": bad_id(), "404": not_found(), "410": expired()
                    }))
                },
                "delete": {
                    "tags": ["sessions"], "summary": "Delete a session.",
                    "responses": with_common(json!({
                        "204": { "description": "Deleted." },
                        "400": bad_id(), "404": not_found()
                    }))
                }
            },
            "/api/sessions/{token}/data": {
                "parameters": [token_param()],
                "patch": {
                    "tags": ["sessions"], "summary": "Remove the keys in `unset`, then store `set`; one save.",
                    "requestBody": body("UpdateDataRequest"),
                    "responses": with_common(json!({
                        "200": json_response("The updated session.", schema("Session")),
                        "400": bad_body(), "404": not_found(), "409": conflict(), "410": expired(), "415": media()
                    }))
                }
            },
            "/api/sessions/{token}/login": {
                "parameters": [token_param()],
                "post": {
                    "tags": ["sessions"], "summary": "Set the user and rotate the token (the old token stops working).",
                    "requestBody": body("LoginRequest"),
                    "responses": with_common(json!({
                        "200": json_response("The session and its new token.", schema("TokenSession")),
                        "400": bad_body(), "404": not_found(), "409": conflict(), "410": expired(), "415": media()
                    }))
                }
            },
            "/api/sessions/{token}/logout": {
                "parameters": [token_param()],
                "post": {
                    "tags": ["sessions"], "summary": "Clear the user and rotate the token.",
                    "responses": with_common(json!({
                        "200": json_response("The session and its new token.", schema("TokenSession")),
                        "400": bad_id(), "404": not_found(), "409": conflict(), "410": expired()
                    }))
                }
            },
            "/api/users/{user_id}/sessions": {
                "parameters": [user_param()],
                "get": {
                    "tags": ["users"], "summary": "The user's unexpired sessions, newest first.",
                    "responses": with_common(json!({
                        "200": json_response("The sessions.", json!({
                            "type": "object", "required": ["sessions"],
                            "properties": { "sessions": { "type": "array", "items": schema("UserSession") } }
                        })),
                        "400": error("The user id is not an integer (`invalid_request`).")
                    }))
                },
                "delete": {
                    "tags": ["users"], "summary": "Log the user out everywhere.",
                    "responses": with_common(json!({
                        "200": json_response("How many sessions were deleted.", schema("Deleted")),
                        "400": error("The user id is not an integer (`invalid_request`).")
                    }))
                }
            },
            "/api/users/{user_id}/sessions/{handle}": {
                "parameters": [user_param(), {
                    "name": "handle", "in": "path", "required": true,
                    "description": "The session's handle from the listing (not a token).",
                    "schema": { "type": "string" }
                }],
                "delete": {
                    "tags": ["users"], "summary": "Revoke one of the user's sessions by handle.",
                    "responses": with_common(json!({
                        "204": { "description": "Revoked." },
                        "400": bad_id(), "404": error("The handle names no unexpired session of this user (`not_found`).")
                    }))
                }
            },
            "/api/cleanup": {
                "post": {
                    "tags": ["maintenance"], "summary": "Delete expired sessions now (`serve` also does it periodically).",
                    "responses": with_common(json!({
                        "200": json_response("How many sessions were deleted.", schema("Deleted"))
                    }))
                }
            },
            "/": { "get": html("The demo page.", "Sign-in form, or your session data, devices and sign-out buttons.", None) },
            "/login": { "post": html("Sign in as a user (demo: no password).", "Sets the user and rotates the session id.", Some(json!({
                "type": "object", "required": ["user_id"], "properties": { "user_id": { "type": "string" } }
            }))) },
            "/logout": { "post": html("Sign out here.", "Deletes this session and removes the cookie.", None) },
            "/logout-everywhere": { "post": html("Sign out everywhere.", "Deletes every session of the signed-in user.", None) },
            "/data": { "post": html("Store a key/value in the session.", "Saves the session and sets its cookie.", Some(json!({
                "type": "object", "required": ["key", "value"],
                "properties": { "key": { "type": "string" }, "value": { "type": "string" } }
            }))) },
            "/devices/revoke": { "post": html("Revoke one of your sessions by handle.", "Only the signed-in user's own sessions.", Some(json!({
                "type": "object", "required": ["handle"], "properties": { "handle": { "type": "string" } }
            }))) }
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error", "message"],
                    "properties": {
                        "error": { "type": "string", "enum": [
                            "invalid_id", "invalid_data", "invalid_request", "not_found", "method_not_allowed",
                            "expired", "conflict", "unsupported_media_type", "database_unavailable", "database_error", "internal"
                        ] },
                        "message": { "type": "string" }
                    }
                },
                "Session": {
                    "type": "object", "required": ["user_id", "data", "created_at", "expires_at", "updated_at"],
                    "properties": {
                        "user_id": { "type": "integer", "format": "int64", "nullable": true },
                        "data": { "type": "object", "additionalProperties": { "type": "string" } },
                        "created_at": { "type": "string", "format": "date-time" },
                        "expires_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "TokenSession": {
                    "type": "object", "required": ["token", "session"],
                    "properties": { "token": { "type": "string" }, "session": schema("Session") }
                },
                "UserSession": {
                    "type": "object", "required": ["handle", "user_id", "data", "created_at", "expires_at", "updated_at"],
                    "properties": {
                        "handle": { "type": "string", "description": "Revokes this session; not usable as a cookie." },
                        "user_id": { "type": "integer", "format": "int64" },
                        "data": { "type": "object", "additionalProperties": { "type": "string" } },
                        "created_at": { "type": "string", "format": "date-time" },
                        "expires_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" }
                    }
                },
                "CreateRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "max_age": { "type": "integer", "format": "int64", "description": "Seconds; default: the configured max age." },
                        "user_id": { "type": "integer", "format": "int64" },
                        "data": { "type": "object", "additionalProperties": { "type": "string" } }
                    }
                },
                "UpdateDataRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "set": { "type": "object", "additionalProperties": { "type": "string" } },
                        "unset": { "type": "array", "items": { "type": "string" } }
                    }
                },
                "LoginRequest": {
                    "type": "object", "additionalProperties": false, "required": ["user_id"],
                    "properties": { "user_id": { "type": "integer", "format": "int64" } }
                },
                "Deleted": {
                    "type": "object", "required": ["deleted"],
                    "properties": { "deleted": { "type": "integer", "minimum": 0 } }
                }
            }
        }
    })
}
