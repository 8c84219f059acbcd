//! `pooler`: the store's save and load throughput on one primary, directly and through PgBouncer in
//! transaction pooling mode, with both statement modes; and the write ceiling with and without durable
//! commits.
//!
//! ```text
//! cargo run --release -p wasm-sessions-bench --bin pooler -- [--durable] [--duration-secs N] [--rounds N]
//! ```
//!
//! Cells (each at `--concurrency`, default 16, one store per cell, `--pool-size` connections):
//! `direct/prepared`, `direct/unnamed`, `pgbouncer/unnamed` (PgBouncer with `--pool-size` server
//! connections), and `direct/prepared/async-commit` (the same database with `synchronous_commit = off`).
//! A save changes one key of one of the task's own sessions (one `UPDATE`, merge concurrency); a load
//! reads a random session. The server is `DATABASE_URL` or the test harness's throwaway cluster (fsync
//! off: no durable commits), or with `--durable` a throwaway cluster with PostgreSQL's durable defaults
//! (fsync, `synchronous_commit = on`). The rounds are interleaved and each cell's median round is
//! reported, with the machine's load average.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use wasm_sessions::{
    PostgresDriver, PostgresOptions, RuntimeRole, Session, SessionStore, StatementMode,
};
use wasm_sessions_tests::pgbouncer::PgBouncer;

/// Save and load throughput directly and through PgBouncer, and the write ceiling.
#[derive(Debug, Parser)]
#[command(name = "pooler")]
struct Args {
    /// Measured seconds per cell and operation.
    #[arg(long, value_name = "N", default_value_t = 8)]
    duration_secs: u64,
    /// Concurrent tasks per cell.
    #[arg(long, value_name = "C", default_value_t = 16)]
    concurrency: usize,
    /// Connections in each store's pool, and PgBouncer's server connections.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pool_size: usize,
    /// Sessions stored before the runs.
    #[arg(long, value_name = "N", default_value_t = 4000)]
    sessions: usize,
    /// Interleaved rounds; each cell's median round (by throughput) is reported.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// Run on a throwaway cluster with durable commits (fsync on, synchronous_commit on).
    #[arg(long)]
    durable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    PgBouncer,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    route: Route,
    mode: StatementMode,
    async_commit: bool,
}

impl Cell {
    fn name(&self) -> String {
        format!(
            "{}/{}{}",
            match self.route {
                Route::Direct => "direct",
                Route::PgBouncer => "pgbouncer",
            },
            match self.mode {
                StatementMode::Unnamed => "unnamed",
                _ => "prepared",
            },
            if self.async_commit {
                "/async-commit"
            } else {
                ""
            }
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    eprintln!("{cores} cores; load average before: {}", load_average());

    // The server, as its owner.
    let durable_cluster = if args.durable {
        Some(
            wasm_sessions_tests::embedded_pg::Cluster::throwaway_durable()
                .context("starting a durable throwaway cluster")?,
        )
    } else {
        None
    };
    let server = match &durable_cluster {
        Some(cluster) => cluster.owner_url("postgres"),
        None => wasm_sessions_tests::server_url(),
    };
    let (owner_url, runtime_url) = database(&server).await?;
    let owner = connect(&owner_url).await?;
    let settings = owner
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'), \
             current_setting('server_version')",
            &[],
        )
        .await?;
    let (fsync, sync_commit, version): (String, String, String) =
        (settings.get(0), settings.get(1), settings.get(2));
    eprintln!("PostgreSQL {version}: fsync = {fsync}, synchronous_commit = {sync_commit}");

    let role = RuntimeRole::default();
    let owner_user = server
        .parse::<tokio_postgres::Config>()?
        .get_user()
        .unwrap_or("postgres")
        .to_owned();
    let bouncer = PgBouncer::start(
        &server,
        &[(&owner_user, None), (role.name(), None)],
        u32::try_from(args.pool_size)?,
    );
    // The async-commit cell's connections set `synchronous_commit = off` in their startup options (the
    // other cells' connections keep the server's setting).
    let async_url = with_option(&runtime_url, "synchronous_commit%3Doff");
    let async_setting: String = connect(&async_url)
        .await?
        .query_one("SELECT current_setting('synchronous_commit')", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        async_setting == "off",
        "the async-commit cell's connections have synchronous_commit = {async_setting}"
    );

    let cells = [
        Cell {
            route: Route::Direct,
            mode: StatementMode::Prepared,
            async_commit: false,
        },
        Cell {
            route: Route::Direct,
            mode: StatementMode::Unnamed,
            async_commit: false,
        },
        Cell {
            route: Route::PgBouncer,
            mode: StatementMode::Unnamed,
            async_commit: false,
        },
        Cell {
            route: Route::Direct,
            mode: StatementMode::Prepared,
            async_commit: true,
        },
    ];
    let mut stores = Vec::new();
    for cell in &cells {
        let url = match (cell.route, cell.async_commit) {
            (Route::Direct, false) => runtime_url.clone(),
            (Route::Direct, true) => async_url.clone(),
            (Route::PgBouncer, _) => bouncer.url_for(&runtime_url),
        };
        let options = PostgresOptions {
            pool_size: args.pool_size,
            statement_mode: cell.mode,
            ..PostgresOptions::default()
        };
        let store = SessionStore::builder(PostgresDriver::connect(&url, &options)?)
            .build()
            .await
            .with_context(|| format!("the store of {}", cell.name()))?;
        stores.push(store);
    }

    // The sessions, saved once; every task updates its own.
    eprintln!("storing {} sessions", args.sessions);
    let mut sessions = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let mut session = stores[0].new_session().await?;
        session.insert("i", i)?;
        session.insert("n", 0)?;
        session.insert("theme", "dark")?;
        stores[0].save(&mut session).await?;
        sessions.push(session);
    }
    let tokens: Arc<Vec<String>> = Arc::new(sessions.iter().map(|s| s.id().to_owned()).collect());
    let mut per_task: Vec<Vec<Session>> = (0..args.concurrency).map(|_| Vec::new()).collect();
    for (i, session) in sessions.into_iter().enumerate() {
        per_task[i % args.concurrency].push(session);
    }

    let duration = Duration::from_secs(args.duration_secs.max(1));
    let mut saves: Vec<Vec<Measured>> = vec![Vec::new(); cells.len()];
    let mut loads: Vec<Vec<Measured>> = vec![Vec::new(); cells.len()];
    for round in 0..args.rounds.max(1) {
        for (index, cell) in cells.iter().enumerate() {
            let store = &stores[index];
            let (measured, back) = run_saves(store, per_task, duration).await;
            per_task = back;
            eprintln!(
                "round {round} {:32} saves {:8.0}/s p50 {:6.2} ms p99 {:6.2} ms errors {}",
                cell.name(),
                measured.per_sec,
                measured.p50_ms,
                measured.p99_ms,
                measured.errors
            );
            saves[index].push(measured);
            if !cell.async_commit {
                let measured = run_loads(store, &tokens, args.concurrency, duration).await;
                eprintln!(
                    "round {round} {:32} loads {:8.0}/s p50 {:6.2} ms p99 {:6.2} ms errors {}",
                    cell.name(),
                    measured.per_sec,
                    measured.p50_ms,
                    measured.p99_ms,
                    measured.errors
                );
                loads[index].push(measured);
            }
        }
    }

    println!(
        "\n{cores} cores, load average after: {}; PostgreSQL {version}, fsync = {fsync}, \
         synchronous_commit = {sync_commit} (async-commit cell: off); c = {}, pool {}, {} s per cell, \
         median of {} rounds",
        load_average(),
        args.concurrency,
        args.pool_size,
        duration.as_secs(),
        args.rounds.max(1)
    );
    println!(
        "| {:32} | {:>10} | {:>16} | {:>10} | {:>16} |",
        "cell", "saves/s", "save p50/p99 ms", "loads/s", "load p50/p99 ms"
    );
    for (index, cell) in cells.iter().enumerate() {
        let save = median(&saves[index]);
        let load = (!loads[index].is_empty()).then(|| median(&loads[index]));
        println!(
            "| {:32} | {:>10.0} | {:>16} | {:>10} | {:>16} |",
            cell.name(),
            save.per_sec,
            format!("{:.2}/{:.2}", save.p50_ms, save.p99_ms),
            load.map_or("-".into(), |l| format!("{:.0}", l.per_sec)),
            load.map_or("-".into(), |l| format!("{:.2}/{:.2}", l.p50_ms, l.p99_ms)),
        );
    }
    drop(bouncer);
    drop(stores);
    drop(owner);
    let name = owner_url.rsplit('/').next().unwrap_or_default().to_owned();
    connect(&server)
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .context("dropping the benchmark's database")?;
    Ok(())
}

/// The round with the median throughput.
fn median(rounds: &[Measured]) -> Measured {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
    sorted[sorted.len() / 2]
}

fn summary(histogram: &Histogram<u64>, count: u64, errors: u64, elapsed: Duration) -> Measured {
    #[allow(clippy::cast_precision_loss)]
    let per_sec = count as f64 / elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Measured {
        per_sec,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        errors,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Every task saves its own sessions in turn (one key changed per save) for `duration`.
async fn run_saves(
    store: &SessionStore,
    per_task: Vec<Vec<Session>>,
    duration: Duration,
) -> (Measured, Vec<Vec<Session>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = per_task
        .into_iter()
        .map(|mut sessions| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut histogram = histogram();
                let (mut count, mut errors, mut next) = (0u64, 0u64, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let len = sessions.len();
                    let session = &mut sessions[next % len];
                    next += 1;
                    let n = session.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
                    if session.insert("n", n).is_err() {
                        errors += 1;
                        continue;
                    }
                    let t = Instant::now();
                    match store.save(session).await {
                        Ok(()) => {
                            count += 1;
                            let _ = histogram.record(micros(t.elapsed()).max(1));
                        }
                        Err(_) => errors += 1,
                    }
                }
                (histogram, count, errors, sessions)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = histogram();
    let (mut count, mut errors) = (0, 0);
    let mut back = Vec::new();
    for task in tasks {
        let (h, c, e, sessions) = task.await.expect("a save task");
        total.add(&h).expect("same bounds");
        count += c;
        errors += e;
        back.push(sessions);
    }
    (summary(&total, count, errors, started.elapsed()), back)
}

/// `concurrency` tasks load random sessions for `duration`.
async fn run_loads(
    store: &SessionStore,
    tokens: &Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = store.clone();
            let stop = stop.clone();
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let mut histogram = histogram();
                let (mut count, mut errors) = (0u64, 0u64);
                // A cheap per-task sequence over the tokens (a stride coprime with most sizes).
                let mut next = task * 7919;
                while !stop.load(Ordering::Relaxed) {
                    next = next.wrapping_add(104_729);
                    let token = &tokens[next % tokens.len()];
                    let t = Instant::now();
                    match store.load(token).await {
                        Ok(_) => {
                            count += 1;
                            let _ = histogram.record(micros(t.elapsed()).max(1));
                        }
                        Err(_) => errors += 1,
                    }
                }
                (histogram, count, errors)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = histogram();
    let (mut count, mut errors) = (0, 0);
    for task in tasks {
        let (h, c, e) = task.await.expect("a load task");
        total.add(&h).expect("same bounds");
        count += c;
        errors += e;
    }
    summary(&total, count, errors, started.elapsed())
}

/// `url` with `options=-c <setting>` added (a server setting for its connections; `setting`
/// percent-encoded).
fn with_option(url: &str, setting: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20{setting}")
}

/// A fresh database on `server` (an owner's URL), migrated, with the runtime role's grants; returns the
/// owner's and the runtime role's URLs.
async fn database(server: &str) -> Result<(String, String)> {
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).context("OS randomness")?;
    let name = format!(
        "pooler_{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    connect(server)
        .await?
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .context("CREATE DATABASE")?;
    let owner_url = wasm_sessions_tests::with_database(server, &name);
    PostgresDriver::connect(&owner_url, &PostgresOptions::default())?
        .migrate()
        .await?;
    let role = RuntimeRole::default();
    role.apply(&connect(&owner_url).await?, &name)
        .await
        .context("the runtime role's grants")?;
    Ok((owner_url.clone(), role.runtime_url(&owner_url)?))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}
