//! The HTTP-level benchmark: one axum app (read a counter, increment it) behind our `SessionLayer` and
//! behind tower-sessions' `SessionManagerLayer` over `tower-sessions-sqlx-store`, each served on loopback,
//! driven by a raw keep-alive HTTP/1.1 client (one connection per concurrent user, each with a session
//! of its own, its cookie sent back on every request).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use axum::Router;
use axum::routing::{get, post};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use wasm_sessions::{SessionHandle, SessionLayer, SessionStore, StoreError};

/// The two stacks under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// axum + `wasm_sessions::SessionLayer` (the component, warm instances).
    Component,
    /// axum + `tower_sessions::SessionManagerLayer` + `tower_sessions_sqlx_store::PostgresStore`.
    TowerSessions,
}

impl Stack {
    pub const ALL: [Stack; 2] = [Stack::Component, Stack::TowerSessions];

    pub fn label(self) -> &'static str {
        match self {
            Stack::Component => "wasm-sessions layer",
            Stack::TowerSessions => "tower-sessions",
        }
    }
}

/// The requests measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// `GET /count`: reads the counter (a load, no write).
    Read,
    /// `POST /increment`: reads the counter and writes it plus one (a load and a save).
    Increment,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::Read, Route::Increment];

    pub fn label(self) -> &'static str {
        match self {
            Route::Read => "read counter",
            Route::Increment => "increment counter",
        }
    }

    fn request_line(self) -> &'static str {
        match self {
            Route::Read => "GET /count HTTP/1.1\r\n",
            Route::Increment => "POST /increment HTTP/1.1\r\n",
        }
    }
}

/// One measured cell.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCell {
    pub route: Route,
    pub concurrency: usize,
    pub stack: Stack,
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// This process's CPU time per request (server and client together: they share the process).
    pub cpu_us_per_request: f64,
}

/// The component's app: `GET /count` and `POST /increment` behind `SessionLayer`.
pub fn component_app(store: SessionStore) -> Router {
    async fn count(session: SessionHandle) -> Result<String, StoreError> {
        Ok(session
            .get::<u64>("counter")
            .await?
            .unwrap_or(0)
            .to_string())
    }
    async fn increment(session: SessionHandle) -> Result<String, StoreError> {
        let n = session.get::<u64>("counter").await?.unwrap_or(0) + 1;
        session.insert("counter", n).await?;
        Ok(n.to_string())
    }
    Router::new()
        .route("/count", get(count))
        .route("/increment", post(increment))
        .layer(SessionLayer::new(store))
}

/// The same app with tower-sessions.
pub fn tower_sessions_app(store: tower_sessions_sqlx_store::PostgresStore) -> Router {
    use axum::http::StatusCode;
    use tower_sessions::Session;
    fn failed(e: tower_sessions::session::Error) -> (StatusCode, String) {
        (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
    async fn count(session: Session) -> Result<String, (StatusCode, String)> {
        let n = session.get::<u64>("counter").await.map_err(failed)?;
        Ok(n.unwrap_or(0).to_string())
    }
    async fn increment(session: Session) -> Result<String, (StatusCode, String)> {
        let n = session
            .get::<u64>("counter")
            .await
            .map_err(failed)?
            .unwrap_or(0)
            + 1;
        session.insert("counter", n).await.map_err(failed)?;
        Ok(n.to_string())
    }
    Router::new()
        .route("/count", get(count))
        .route("/increment", post(increment))
        .layer(tower_sessions::SessionManagerLayer::new(store).with_secure(false))
}

/// Serves `app` on a loopback port of its own (until the runtime stops).
pub async fn serve(app: Router) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("the benchmark server stopped: {error}");
        }
    });
    Ok(addr)
}

/// A raw keep-alive HTTP/1.1 client on one connection, holding one session cookie.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    request: Vec<u8>,
    cookie: Option<String>,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await.context("connecting")?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(512),
            cookie: None,
        })
    }

    /// Sends one request on `route` with the session cookie, reads the whole response, keeps the
    /// cookie the response sets; returns the body.
    pub async fn send(&mut self, route: Route) -> Result<String> {
        self.request.clear();
        self.request
            .extend_from_slice(route.request_line().as_bytes());
        self.request
            .extend_from_slice(b"Host: bench\r\nContent-Length: 0\r\n");
        if let Some(cookie) = &self.cookie {
            self.request.extend_from_slice(b"Cookie: ");
            self.request.extend_from_slice(cookie.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        self.request.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.request).await?;

        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection");
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("a non-UTF-8 head")?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        ensure!(
            status.starts_with("HTTP/1.1 200"),
            "the server answered {status:?}"
        );
        let mut length = None;
        let mut set_cookie = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("set-cookie") {
                set_cookie = Some(value.split(';').next().unwrap_or_default().to_owned());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not expected");
            }
        }
        let length = length.context("a response without Content-Length")?;
        while self.buf.len() < head_end + length {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection mid-body");
            }
        }
        if let Some(cookie) = set_cookie {
            // A removal cookie has an empty value.
            self.cookie = cookie
                .split_once('=')
                .is_some_and(|(_, v)| !v.is_empty())
                .then_some(cookie);
        }
        Ok(String::from_utf8_lossy(&self.buf[head_end..head_end + length]).into_owned())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `concurrency` connections, each with a session (made by one untimed increment), sending `route`
/// back to back for a warm-up of a fifth of `duration` and then for `duration`.
pub async fn measure(
    addr: SocketAddr,
    stack: Stack,
    route: Route,
    concurrency: usize,
    duration: Duration,
) -> Result<HttpCell> {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let mut client = Client::connect(addr).await?;
        let first = client.send(Route::Increment).await?;
        ensure!(
            first == "1",
            "a new session's first increment answered {first:?}"
        );
        ensure!(client.cookie.is_some(), "no session cookie was set");
        // The session is stored and loads: a read answers the counter.
        let read = client.send(Route::Read).await?;
        ensure!(read == "1", "reading the counter answered {read:?}");
        clients.push(client);
    }
    let clients = run(clients, route, duration / 5).await?.0;
    let cpu_before = crate::process_cpu_seconds();
    let started = Instant::now();
    let (_, requests, histogram) = run(clients, route, duration).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::process_cpu_seconds() - cpu_before;
    Ok(HttpCell {
        route,
        concurrency,
        stack,
        requests,
        seconds,
        requests_per_sec: requests as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_us_per_request: cpu * 1e6 / requests.max(1) as f64,
    })
}

async fn run(
    clients: Vec<Client>,
    route: Route,
    duration: Duration,
) -> Result<(Vec<Client>, u64, Histogram<u64>)> {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                let mut requests = 0u64;
                while Instant::now() < deadline {
                    let start = Instant::now();
                    client.send(route).await?;
                    histogram.saturating_record(u64::try_from(start.elapsed().as_nanos())?);
                    requests += 1;
                }
                anyhow::Ok((client, requests, histogram))
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    let mut total = 0;
    let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for task in tasks {
        let (client, requests, histogram) = task.await??;
        clients.push(client);
        total += requests;
        merged.add(&histogram)?;
    }
    Ok((clients, total, merged))
}

/// Per (route, concurrency, stack), the round with the median throughput.
pub fn median_cells(rounds: &[HttpCell]) -> Vec<HttpCell> {
    let mut keys = Vec::new();
    for c in rounds {
        let key = (c.route, c.concurrency, c.stack);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(route, conc, stack)| {
            let mut same: Vec<&HttpCell> = rounds
                .iter()
                .filter(|c| c.route == route && c.concurrency == conc && c.stack == stack)
                .collect();
            same.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
            same[same.len() / 2].clone()
        })
        .collect()
}

/// Prints the table and the ratios (component / tower-sessions).
pub fn print(cells: &[HttpCell]) {
    println!("| route | c | stack | requests/s | p50 µs | p99 µs | process CPU µs/request |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    for c in cells {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            c.route.label(),
            c.concurrency,
            c.stack.label(),
            c.requests_per_sec,
            c.p50_us,
            c.p99_us,
            c.cpu_us_per_request
        );
    }
    println!(
        "\n| route | c | wasm-sessions / tower-sessions (requests/s) | CPU per request ratio |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for ours in cells.iter().filter(|c| c.stack == Stack::Component) {
        if let Some(theirs) = cells.iter().find(|c| {
            c.stack == Stack::TowerSessions
                && c.route == ours.route
                && c.concurrency == ours.concurrency
        }) {
            println!(
                "| {} | {} | {:.3} | {:.3} |",
                ours.route.label(),
                ours.concurrency,
                ours.requests_per_sec / theirs.requests_per_sec,
                ours.cpu_us_per_request / theirs.cpu_us_per_request
            );
        }
    }
}
