//! Many hosts, one store: three `wasm-sessions serve` processes (the built binary) on one database, with
//! requests spread over them. What one host writes, the others see at their very next request: a
//! session created through one works through the others, and revoking a device or signing a user out
//! everywhere through one is effective on the others at once (no host keeps session state of its own).
//! Cleanup running on all three at once removes every expired row exactly once and touches no live
//! row.
//!
//! Every request is built by [`Host::request`]: the API's bearer token (given to every `serve` through
//! `WASM_SESSIONS_API_TOKEN`) and a session's token (in the `X-Session-Token` header) are added there, and
//! the `Host` header is the address `serve` bound.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::http;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use wasm_sessions_cli::serve::SESSION_TOKEN_HEADER;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");

/// One `serve` process and a keep-alive HTTP client for it.
struct Host {
    name: String,
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
    process: Child,
}

impl Host {
    /// Starts `serve` on a free port of 127.0.0.1 with the API token `token` and no background cleanup;
    /// returns once it prints its address.
    async fn start(name: &str, db: &TestDb, token: &str) -> Self {
        let mut command = Command::new(BIN);
        command
            .env_remove("DATABASE_URL")
            .env_remove("DATABASE_OWNER_URL")
            .env_remove("RUST_LOG")
            .env(
                "WASM_SESSIONS_CACHE_DIR",
                concat!(env!("CARGO_TARGET_TMPDIR"), "/wasm-cache"),
            )
            .env("WASM_SESSIONS_API_TOKEN", token)
            .args([
                "--database-url",
                &db.url,
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--cleanup-interval", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut process = command.spawn().expect("starting serve");
        let mut lines = BufReader::new(process.stdout.take().expect("piped")).lines();
        let base = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.expect("serve's stdout") {
                if let Some(start) = line.find("http://") {
                    let url = line[start..].split_whitespace().next().unwrap_or_default();
                    return url.trim_end_matches('/').to_owned();
                }
            }
            panic!("{name}: serve ended without printing its address");
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: serve printed no address within 120 s"));
        // The rest of stdout is not needed; draining it keeps the pipe from filling.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            name: name.to_owned(),
            base,
            token: token.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            process,
        }
    }

    /// The one place requests are built: the method, the URL on this host, the API token, the session's
    /// token when the route is about one session, and the body as JSON.
    fn request(
        &self,
        method: &str,
        path: &str,
        session: Option<&str>,
        body: Option<&Value>,
    ) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if let Some(token) = session {
            builder = builder.header(SESSION_TOKEN_HEADER, token);
        }
        match body {
            Some(body) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string()))),
            None => builder.body(Full::new(Bytes::new())),
        }
        .expect("a valid request")
    }

    /// Sends a request; returns the status and the JSON body (`null` when empty).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_on(None, method, path, body).await
    }

    /// Sends a request about the session `session` (its token in the session header).
    async fn call_on(
        &self,
        session: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self
            .client
            .request(self.request(method, path, session, body.as_ref()))
            .await
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name));
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{} {method} {path}: not JSON ({status}): {}",
                    self.name,
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    /// Creates a session; returns its token.
    async fn create(&self, body: Value) -> String {
        let (status, created) = self.call("POST", "/api/sessions", Some(body)).await;
        assert_eq!(status, 201, "{}: {created}", self.name);
        created["token"].as_str().expect("a token").to_owned()
    }

    /// The session's data as this host loads it, or the error code.
    async fn data(&self, token: &str) -> Result<Value, String> {
        match self.call_on(Some(token), "GET", "/api/session", None).await {
            (200, session) => Ok(session["data"].clone()),
            (status, body) => Err(format!(
                "{status} {}",
                body["error"].as_str().unwrap_or("?")
            )),
        }
    }

    /// Stops the process with SIGTERM; returns what it wrote on stderr.
    async fn stop(mut self) -> String {
        let pid = self.process.id().expect("running").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
        assert!(killed.is_ok_and(|s| s.success()));
        let status = tokio::time::timeout(Duration::from_secs(30), self.process.wait())
            .await
            .expect("serve stops within 30 s")
            .expect("its status");
        assert!(status.success(), "{}: {status}", self.name);
        let mut stderr = String::new();
        if let Some(mut pipe) = self.process.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .await
                .expect("serve's stderr");
        }
        stderr
    }
}

/// A random API token (64 hex characters).
fn api_token() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("OS randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The three hosts, started at once on `db`.
async fn three_hosts(db: &TestDb) -> Vec<Host> {
    let token = api_token();
    let (a, b, c) = tokio::join!(
        Host::start("host 0", db, &token),
        Host::start("host 1", db, &token),
        Host::start("host 2", db, &token),
    );
    vec![a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_serve_one_store() {
    let db = TestDb::new().await;
    let hosts = three_hosts(&db).await;

    // Created through one host, the session works through the others; so does each later change.
    let mut tokens = Vec::new();
    for i in 0..6usize {
        let token = hosts[i % 3]
            .create(json!({
                "user_id": 100 + i % 2,
                "label": format!("device {i}"),
                "data": { "i": i },
            }))
            .await;
        for other in [(i + 1) % 3, (i + 2) % 3] {
            assert_eq!(
                hosts[other].data(&token).await,
                Ok(json!({ "i": i })),
                "{i}"
            );
        }
        tokens.push(token);
    }
    for (i, token) in tokens.iter().enumerate() {
        let (status, body) = hosts[(i + 1) % 3]
            .call_on(
                Some(token),
                "PATCH",
                "/api/session/data",
                Some(json!({ "set": { "seen_by": (i + 1) % 3 } })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            hosts[(i + 2) % 3].data(token).await,
            Ok(json!({ "i": i, "seen_by": (i + 1) % 3 }))
        );
    }

    // A login through one host rotates the token for all of them.
    let anonymous = hosts[0].create(json!({ "data": { "cart": 1 } })).await;
    let (status, login) = hosts[1]
        .call_on(
            Some(&anonymous),
            "POST",
            "/api/session/login",
            Some(json!({ "user_id": 102, "label": "laptop" })),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let rotated = login["token"].as_str().expect("a new token");
    assert_eq!(hosts[2].data(&anonymous).await, Err("404 not_found".into()));
    assert_eq!(hosts[0].data(rotated).await, Ok(json!({ "cart": 1 })));

    // Revoking one device of user 100 through host 0: host 1 and host 2 refuse it at their next request.
    let (status, listed) = hosts[1].call("GET", "/api/users/100/sessions", None).await;
    assert_eq!(status, 200, "{listed}");
    let sessions = listed["sessions"].as_array().expect("a list");
    assert_eq!(sessions.len(), 3, "{listed}");
    let device_2 = sessions
        .iter()
        .find(|s| s["label"] == "device 2")
        .expect("device 2 is listed");
    let handle = device_2["handle"].as_str().expect("a handle");
    let (status, body) = hosts[0]
        .call("DELETE", &format!("/api/users/100/sessions/{handle}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    for host in &hosts[1..] {
        assert_eq!(
            host.data(&tokens[2]).await,
            Err("404 not_found".into()),
            "{}",
            host.name
        );
        for i in [0, 4] {
            assert!(
                host.data(&tokens[i]).await.is_ok(),
                "{}: device {i}",
                host.name
            );
        }
    }
    let (_, listed) = hosts[2].call("GET", "/api/users/100/sessions", None).await;
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Signing user 101 out everywhere through host 2: none of its sessions works on host 0 or host 1.
    let (status, body) = hosts[2]
        .call("DELETE", "/api/users/101/sessions", None)
        .await;
    assert_eq!((status, &body["deleted"]), (200, &json!(3)), "{body}");
    for host in &hosts[..2] {
        for i in [1, 3, 5] {
            assert_eq!(
                host.data(&tokens[i]).await,
                Err("404 not_found".into()),
                "{}: session {i}",
                host.name
            );
        }
    }
    let (_, listed) = hosts[0].call("GET", "/api/users/101/sessions", None).await;
    assert_eq!(listed["sessions"], json!([]), "{listed}");

    // Cleanup on all three at once. The expired rows are written beforehand by the owner.
    const EXPIRED: i64 = 20_000;
    let owner = db.client().await;
    owner
        .batch_execute(&format!(
            "INSERT INTO wasm_sessions.sessions (id_hash, data, user_id, created_at, expires_at, \
             updated_at, version) \
             SELECT sha256(('expired ' || g)::bytea), jsonb_build_object('g', g), g % 50, \
             now() - interval '2 days', now() - interval '1 hour' - g * interval '1 millisecond', \
             now() - interval '2 days', 1 FROM generate_series(1, {EXPIRED}) AS g"
        ))
        .await
        .expect("the expired rows");
    let live_query = "SELECT encode(id_hash, 'hex'), data::text, version, updated_at::text \
                      FROM wasm_sessions.sessions WHERE expires_at > now() ORDER BY id_hash";
    let snapshot = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String, i64, String)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    let live_before = snapshot(owner.query(live_query, &[]).await.expect("live rows"));
    // Devices 0 and 4 of user 100, and the session rotated at login.
    assert_eq!(live_before.len(), 3, "{live_before:?}");

    let (r0, r1, r2) = tokio::join!(
        hosts[0].call("POST", "/api/cleanup", None),
        hosts[1].call("POST", "/api/cleanup", None),
        hosts[2].call("POST", "/api/cleanup", None),
    );
    let mut deleted = BTreeMap::new();
    for (host, (status, body)) in hosts.iter().zip([r0, r1, r2]) {
        assert_eq!(status, 200, "{}: {body}", host.name);
        deleted.insert(
            host.name.clone(),
            body["deleted"].as_i64().expect("a count"),
        );
    }
    eprintln!("concurrent cleanup, rows deleted per host: {deleted:?}");
    assert_eq!(
        deleted.values().sum::<i64>(),
        EXPIRED,
        "every expired row deleted exactly once: {deleted:?}"
    );
    let expired_left: i64 = owner
        .query_one(
            "SELECT count(*) FROM wasm_sessions.sessions WHERE expires_at <= now()",
            &[],
        )
        .await
        .expect("a count")
        .get(0);
    assert_eq!(expired_left, 0);
    let live_after = snapshot(owner.query(live_query, &[]).await.expect("live rows"));
    assert_eq!(live_after, live_before, "cleanup touched a live row");
    for host in &hosts {
        let (status, body) = host.call("POST", "/api/cleanup", None).await;
        assert_eq!(
            (status, &body["deleted"]),
            (200, &json!(0)),
            "{}: {body}",
            host.name
        );
        assert!(host.data(&tokens[0]).await.is_ok(), "{}", host.name);
    }

    // No host logged an error.
    for host in hosts {
        let name = host.name.clone();
        let stderr = host.stop().await;
        assert!(
            !stderr.contains("ERROR"),
            "{name} logged an error:\n{stderr}"
        );
    }
}
