//! `wasm-sessions-bench`: the session component against a native baseline (same SQL, same pool) and
//! against tower-sessions' sqlx PostgreSQL store, on one database with one pool size.
//!
//! ```text
//! cargo run --release -p wasm-sessions-bench -- [--json FILE] [--duration-secs N]
//! cargo run --release -p wasm-sessions-bench -- cleanup [--expired N] [--live N] [--batch-size N]
//! cargo run --release -p wasm-sessions-bench -- [--rounds N] [--async-commit] http   # HTTP level
//! cargo run --release -p wasm-sessions-bench -- loop --operation OP --implementation IMPL --count N
//! ```
//!
//! The database is `DATABASE_URL`, or a throwaway cluster when it is unset; either way the run gets a
//! fresh database of its own (dropped at the end). Speed is measured here only, never asserted in tests.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde::Serialize;
use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_sqlx_store::PostgresStore;
use wasm_sessions::{
    BUNDLED_COMPONENT, Concurrency, Isolation, PostgresDriver, PostgresOptions, Session,
    SessionStore, SqlDriver, SqlxDriver, StoreError,
};
use wasm_sessions_bench::native::{NativeSession, NativeStore};
use wasm_sessions_tests::TestDb;

mod http;

/// Benchmark the session component against native SQL and tower-sessions-sqlx-store.
#[derive(Debug, Parser)]
#[command(name = "wasm-sessions-bench")]
struct Args {
    /// Also write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE", global = true)]
    json: Option<PathBuf>,
    /// Measured seconds per cell (operation × concurrency × implementation), after a warm-up of a fifth.
    #[arg(long, value_name = "N", default_value_t = 5)]
    duration_secs: u64,
    /// Sessions stored per implementation before the runs (load and save pick among them).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    sessions: usize,
    /// Connections in each implementation's pool.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pool_size: usize,
    /// Run only these operations (repeatable; default all), e.g. to profile one cell.
    #[arg(long = "operation", value_name = "OP")]
    operations: Vec<Operation>,
    /// Run only these implementations (repeatable; default all).
    #[arg(long = "implementation", value_name = "IMPL")]
    implementations: Vec<Implementation>,
    /// Run only these concurrencies (repeatable; default 1 and 16).
    #[arg(long = "concurrency", value_name = "C")]
    concurrencies: Vec<usize>,
    /// Run the whole matrix this many times, interleaved, and report each cell's median round (by
    /// throughput): damps bursts of other load on a shared machine.
    #[arg(long, value_name = "N", default_value_t = 1)]
    rounds: usize,
    /// Run the benchmark database with `synchronous_commit = off`, so writes do not wait for the WAL
    /// flush (an fsync, milliseconds on this machine) and the client-side cost of save/create shows.
    #[arg(long)]
    async_commit: bool,
    /// Run this build of the session component instead of the bundled one (e.g. to compare two guests
    /// with the same host).
    #[arg(long, value_name = "FILE", global = true)]
    component: Option<PathBuf>,
    /// The stores' `max_concurrent_calls` (instance slots the pooling allocator reserves); lower it to
    /// run under valgrind, which cannot map the default reservation.
    #[arg(long, value_name = "N", global = true)]
    max_concurrent_calls: Option<u32>,
    /// Skip the per-call and start-up measurements.
    #[arg(long)]
    only_throughput: bool,
    /// What to run (default: the throughput, latency, per-call and start-up benchmark).
    #[command(subcommand)]
    command: Option<Command>,
}

/// The other scenarios.
#[derive(Debug, Subcommand)]
enum Command {
    /// Cleanup at scale: remove the expired rows of a table of expired and live sessions in batches.
    Cleanup {
        /// Expired rows to generate.
        #[arg(long, default_value_t = 1_000_000)]
        expired: u64,
        /// Live rows to generate (they must all survive).
        #[arg(long, default_value_t = 100_000)]
        live: u64,
        /// Rows per cleanup step.
        #[arg(long, default_value_t = wasm_sessions::DEFAULT_CLEANUP_BATCH)]
        batch_size: u32,
    },
    /// HTTP level: an axum app (read a counter, increment it) behind our `SessionLayer` against the same
    /// app behind tower-sessions' `SessionManagerLayer` over tower-sessions-sqlx-store, on loopback with
    /// keep-alive connections (one per concurrent user). Uses the global `--duration-secs`, `--rounds`,
    /// `--concurrency`, `--pool-size`, `--async-commit` and `--json`.
    Http {
        /// Only these routes (repeatable; default both).
        #[arg(long = "route", value_name = "ROUTE")]
        routes: Vec<http::Route>,
        /// Only these stacks (repeatable; default both).
        #[arg(long = "stack", value_name = "STACK")]
        stacks: Vec<http::Stack>,
    },
    /// Internal: `--count` sequential operations of one cell (c=1), for a profiler: run it under
    /// `valgrind --tool=callgrind` with two counts and divide the difference of the instruction counts by
    /// the difference of the counts for the instructions per operation.
    #[command(hide = true)]
    Loop {
        /// The operation.
        #[arg(long)]
        operation: Operation,
        /// The implementation.
        #[arg(long)]
        implementation: Implementation,
        /// Operations to run.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// A compilation cache directory (compiling under a profiler is slow).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Internal: one host start-up to the first served operation, timed in a fresh process.
    #[command(hide = true)]
    StartupProbe {
        /// The compilation cache directory; none means compile.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let started = Instant::now();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.command {
        Some(Command::StartupProbe { ref cache_dir }) => {
            runtime.block_on(startup_probe(started, cache_dir.clone()))
        }
        Some(Command::Cleanup {
            expired,
            live,
            batch_size,
        }) => runtime.block_on(cleanup_at_scale(&args, expired, live, batch_size)),
        Some(Command::Loop {
            operation,
            implementation,
            count,
            ref cache_dir,
        }) => runtime.block_on(run_loop(
            &args,
            operation,
            implementation,
            count,
            cache_dir.as_deref(),
        )),
        Some(Command::Http {
            ref routes,
            ref stacks,
        }) => runtime.block_on(http_benchmark(&args, routes, stacks)),
        None => runtime.block_on(benchmark(&args)),
    }
}

// ---------------------------------------------------------------------------------------------------
// The implementations under test.

/// The three implementations (the component in both isolation modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Implementation {
    /// The component with warm instances reused (the default).
    ComponentReuse,
    /// The component with a fresh instance per call.
    ComponentFresh,
    /// The component with warm instances on `SqlxDriver`, over a sqlx `PgPool` like the peer's.
    ComponentSqlx,
    /// Plain Rust, the same SQL on the same kind of pool.
    Native,
    /// tower-sessions-sqlx-store.
    Peer,
}

impl Implementation {
    const ALL: [Implementation; 5] = [
        Implementation::ComponentReuse,
        Implementation::ComponentFresh,
        Implementation::ComponentSqlx,
        Implementation::Native,
        Implementation::Peer,
    ];

    fn label(self) -> &'static str {
        match self {
            Implementation::ComponentReuse => "component (reuse)",
            Implementation::ComponentFresh => "component (fresh)",
            Implementation::ComponentSqlx => "component (sqlx)",
            Implementation::Native => "native",
            Implementation::Peer => "tower-sessions",
        }
    }
}

/// The measured operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Operation {
    /// Load an existing session.
    Load,
    /// Update an existing session (one key changed) and save it.
    Save,
    /// Create a new session with three keys and save it.
    Create,
    /// 90% load, 10% save.
    Mix,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Load,
        Operation::Save,
        Operation::Create,
        Operation::Mix,
    ];

    fn label(self) -> &'static str {
        match self {
            Operation::Load => "load",
            Operation::Save => "save",
            Operation::Create => "create",
            Operation::Mix => "90/10 load/save",
        }
    }
}

/// Everything the workers share: the stores and the stored sessions they pick from.
struct Targets {
    reuse: SessionStore,
    fresh: SessionStore,
    /// The component on `SqlxDriver` (warm instances), on the same rows as `reuse`.
    sqlx: SessionStore,
    native: NativeStore,
    peer: PostgresStore,
    /// Stored by the component (reuse and fresh share them).
    sessions: Vec<Session>,
    /// Stored by the native baseline.
    native_sessions: Vec<NativeSession>,
    /// Stored by tower-sessions.
    records: Vec<Record>,
}

/// The data every created session carries (three keys, about 100 bytes of JSON).
fn sample_data(n: u64) -> [(&'static str, String); 3] {
    [
        ("user_name", format!("user-{n}")),
        ("theme", "dark".to_owned()),
        (
            "csrf",
            format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
        ),
    ]
}

fn peer_record(n: u64) -> Record {
    Record {
        id: Id::default(),
        data: sample_data(n)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect::<HashMap<_, _>>(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    }
}

impl Targets {
    /// Runs one operation on one implementation.
    async fn run(&self, which: Implementation, op: Operation, rng: &mut Rng) -> Result<()> {
        let op = match op {
            Operation::Mix if rng.below(10) == 0 => Operation::Save,
            Operation::Mix => Operation::Load,
            other => other,
        };
        match which {
            Implementation::ComponentReuse
            | Implementation::ComponentFresh
            | Implementation::ComponentSqlx => {
                let store = match which {
                    Implementation::ComponentFresh => &self.fresh,
                    Implementation::ComponentSqlx => &self.sqlx,
                    _ => &self.reuse,
                };
                match op {
                    Operation::Load => {
                        let id = self.sessions[rng.below(self.sessions.len())].id();
                        store.load(id).await?;
                    }
                    Operation::Save => {
                        let mut s = self.sessions[rng.below(self.sessions.len())].clone();
                        s.set("counter", rng.next().to_string());
                        store.save(&mut s).await?;
                    }
                    Operation::Create | Operation::Mix => {
                        let mut s = store.new_session().await?;
                        for (k, v) in sample_data(rng.next()) {
                            s.set(k, v);
                        }
                        store.save(&mut s).await?;
                    }
                }
            }
            Implementation::Native => match op {
                Operation::Load => {
                    let id = &self.native_sessions[rng.below(self.native_sessions.len())].id;
                    self.native.load(id).await?;
                }
                Operation::Save => {
                    let mut s = self.native_sessions[rng.below(self.native_sessions.len())].clone();
                    s.set("counter", rng.next().to_string());
                    self.native.save(&mut s).await?;
                }
                Operation::Create | Operation::Mix => {
                    let mut s = self.native.new_session()?;
                    for (k, v) in sample_data(rng.next()) {
                        s.set(k, v);
                    }
                    self.native.save(&mut s).await?;
                }
            },
            Implementation::Peer => match op {
                Operation::Load => {
                    let id = &self.records[rng.below(self.records.len())].id;
                    let found = self.peer.load(id).await?;
                    ensure!(found.is_some(), "tower-sessions lost a record");
                }
                Operation::Save => {
                    let mut record = self.records[rng.below(self.records.len())].clone();
                    record.data.insert(
                        "counter".to_owned(),
                        serde_json::Value::String(rng.next().to_string()),
                    );
                    self.peer.save(&record).await?;
                }
                Operation::Create | Operation::Mix => {
                    let mut record = peer_record(rng.next());
                    self.peer.create(&mut record).await?;
                }
            },
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// The main benchmark.

/// One cell of the table.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    operation: Operation,
    concurrency: usize,
    implementation: Implementation,
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// This process's CPU time (user + system, all threads) per operation, µs: what the client side
    /// costs, independent of how busy the machine is.
    cpu_us_per_op: f64,
}

/// Ratios of the component (reuse and fresh) to the native baseline and to the peer.
#[derive(Debug, Clone, Serialize)]
struct Ratio {
    operation: Operation,
    concurrency: usize,
    reuse_vs_native: f64,
    reuse_vs_peer: f64,
    sqlx_vs_native: f64,
    sqlx_vs_peer: f64,
    fresh_vs_native: f64,
    fresh_vs_peer: f64,
}

/// The cost of one guest call, without the database.
#[derive(Debug, Clone, Serialize)]
struct CallCost {
    /// `generate-session-id` on a fresh instance each time (instantiate + call), mean µs.
    fresh_instance_and_call_us: f64,
    /// `generate-session-id` on a warm instance, mean µs.
    warm_call_us: f64,
    /// The same work natively (32 OS random bytes as hex), mean µs.
    native_us: f64,
    /// `warm_call_us - native_us`.
    warm_overhead_us: f64,
    /// `fresh_instance_and_call_us - native_us`.
    fresh_overhead_us: f64,
    /// `cookie-header` (the config and a session record in, a string out) on a warm instance, mean µs.
    warm_cookie_header_us: f64,
    /// `cookie-header` on a fresh instance, mean µs.
    fresh_cookie_header_us: f64,
}

/// Host start-up to the first served operation (a `load`), each in a fresh process.
#[derive(Debug, Clone, Serialize)]
struct Startup {
    /// No compilation cache: the component is compiled.
    no_cache: ProbeResult,
    /// An empty cache directory: compiled, then written to the cache.
    cold_cache: ProbeResult,
    /// The cache filled by the cold run (median of three runs).
    warm_cache: ProbeResult,
}

/// What one start-up probe measured, in milliseconds from the start of `main`.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
struct ProbeResult {
    /// The store built (engine, component, linker, the builder's two guest calls).
    built_ms: f64,
    /// The first `load` answered (includes opening the first database connection).
    first_operation_ms: f64,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    duration_secs: u64,
    pool_size: usize,
    sessions: usize,
    synchronous_commit: bool,
    component_bytes: usize,
    call_cost: Option<CallCost>,
    startup: Option<Startup>,
    rounds: usize,
    /// Each cell's median round.
    cells: Vec<Cell>,
    ratios: Vec<Ratio>,
    /// Every round of every cell.
    all_rounds: Vec<Cell>,
    /// Peak resident set size (MiB) sampled during each implementation's c=16 runs.
    peak_rss_mib_c16: HashMap<Implementation, f64>,
    /// The process's peak RSS over the whole run (VmHWM), MiB.
    process_peak_rss_mib: f64,
}

/// Where the numbers were taken.
#[derive(Debug, Clone, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    postgres: String,
}

/// The stores under test on `db` (the component as the runtime role; tower-sessions as the owner, for
/// its own schema), each with `sessions_per_implementation` stored sessions of its own.
async fn setup(
    db: &TestDb,
    options: &PostgresOptions,
    sessions_per_implementation: usize,
    cache_dir: Option<&std::path::Path>,
    component: Option<&std::path::Path>,
    max_concurrent_calls: Option<u32>,
) -> Result<Targets> {
    let component = component
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    // "save" writes a copy of a stored session over and over, as tower-sessions does: a blind write,
    // i.e. last-write-wins (under the default optimistic concurrency the stale copy would conflict).
    let builder = |driver: Arc<dyn SqlDriver>, isolation| {
        let mut builder = SessionStore::builder_shared(driver)
            .isolation(isolation)
            .configure(|c| c.concurrency = Concurrency::LastWriteWins);
        if let Some(dir) = cache_dir {
            builder = builder.compilation_cache(dir);
        }
        if let Some(bytes) = &component {
            builder = builder.component(bytes.clone());
        }
        if let Some(max) = max_concurrent_calls {
            builder = builder.max_concurrent_calls(max);
        }
        anyhow::Ok(builder)
    };
    let reuse_instances = Isolation::ReuseInstances {
        max_idle: options.pool_size,
    };
    let postgres = || anyhow::Ok(Arc::new(PostgresDriver::connect(&db.url, options)?));
    let reuse = builder(postgres()?, reuse_instances)?.build().await?;
    let fresh = builder(postgres()?, Isolation::FreshInstancePerCall)?
        .build()
        .await?;
    // The component over sqlx: a pool like the peer's, as the runtime role.
    let runtime_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(options.pool_size)?)
        .connect(&db.url)
        .await
        .context("connecting the runtime role's sqlx pool")?;
    let sqlx = builder(Arc::new(SqlxDriver::new(runtime_pool)), reuse_instances)?
        .build()
        .await?;
    let native = NativeStore::new(
        Arc::new(PostgresDriver::connect(&db.url, options)?),
        reuse.config(),
    );
    // tower-sessions creates its own schema and table: it connects as the database's owner.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(options.pool_size)?)
        .connect(&db.owner_url)
        .await
        .context("connecting the sqlx pool")?;
    let peer = PostgresStore::new(pool);
    peer.migrate().await.context("tower-sessions migrate")?;

    eprintln!(
        "storing {} sessions per implementation",
        sessions_per_implementation
    );
    let mut sessions = Vec::with_capacity(sessions_per_implementation);
    let mut native_sessions = Vec::with_capacity(sessions_per_implementation);
    let mut records = Vec::with_capacity(sessions_per_implementation);
    for n in 0..sessions_per_implementation as u64 {
        let mut s = reuse.new_session().await?;
        for (k, v) in sample_data(n) {
            s.set(k, v);
        }
        reuse.save(&mut s).await?;
        sessions.push(s);
        let mut s = native.new_session()?;
        for (k, v) in sample_data(n) {
            s.set(k, v);
        }
        native.save(&mut s).await?;
        native_sessions.push(s);
        let mut record = peer_record(n);
        record.expiry_date = time::OffsetDateTime::now_utc() + time::Duration::hours(24);
        peer.create(&mut record).await?;
        records.push(record);
    }
    db.client()
        .await
        .batch_execute("VACUUM ANALYZE")
        .await
        .context("VACUUM ANALYZE")?;
    Ok(Targets {
        reuse,
        fresh,
        sqlx,
        native,
        peer,
        sessions,
        native_sessions,
        records,
    })
}

async fn benchmark(args: &Args) -> Result<()> {
    let duration = Duration::from_secs(args.duration_secs.max(1));
    let db = TestDb::new().await;
    let options = PostgresOptions {
        pool_size: args.pool_size,
        ..PostgresOptions::default()
    };
    if args.async_commit {
        async_commit(&db).await?;
    }
    let postgres = db
        .client()
        .await
        .query_one("SHOW server_version", &[])
        .await?
        .get::<_, String>(0);
    let machine = Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpu_model(),
        postgres,
    };
    eprintln!(
        "machine: {} CPUs, {}, PostgreSQL {}",
        machine.cpus, machine.cpu_model, machine.postgres
    );

    let targets = Arc::new(
        setup(
            &db,
            &options,
            args.sessions,
            None,
            args.component.as_deref(),
            args.max_concurrent_calls,
        )
        .await?,
    );

    let (call_cost, startup) = if args.only_throughput {
        (None, None)
    } else {
        eprintln!("per-call costs");
        let call_cost = call_cost(&targets).await?;
        eprintln!("start-up probes");
        (Some(call_cost), Some(startup(&db.url)?))
    };

    let mut all_rounds: Vec<Cell> = Vec::new();
    let mut peak_rss: HashMap<Implementation, f64> = HashMap::new();
    for round in 1..=args.rounds.max(1) {
        eprintln!("round {round} of {}", args.rounds.max(1));
        for op in or_all(&args.operations, &Operation::ALL) {
            for concurrency in or_all(&args.concurrencies, &[1, 16]) {
                for which in or_all(&args.implementations, &Implementation::ALL) {
                    let sampler = (concurrency == 16).then(RssSampler::start);
                    let cell = measure(&targets, which, op, concurrency, duration).await?;
                    if let Some(sampler) = sampler {
                        let peak = sampler.stop();
                        let entry = peak_rss.entry(which).or_insert(0.0);
                        *entry = entry.max(peak);
                    }
                    eprintln!(
                        "{:>16} c={:<2} {:>18}: {:>9.0} ops/s  p50 {:>7.1} µs  p99 {:>7.1} µs  cpu {:>5.1} µs/op",
                        op.label(),
                        concurrency,
                        which.label(),
                        cell.ops_per_sec,
                        cell.p50_us,
                        cell.p99_us,
                        cell.cpu_us_per_op
                    );
                    all_rounds.push(cell);
                }
            }
        }
    }
    let cells = median_cells(&all_rounds);
    let ratios = ratios(&cells);
    let report = Report {
        machine,
        duration_secs: duration.as_secs(),
        pool_size: args.pool_size,
        sessions: args.sessions,
        synchronous_commit: !args.async_commit,
        component_bytes: BUNDLED_COMPONENT.len(),
        call_cost,
        startup,
        rounds: args.rounds.max(1),
        cells,
        ratios,
        all_rounds,
        peak_rss_mib_c16: peak_rss,
        process_peak_rss_mib: proc_status_kib("VmHWM:").map_or(0.0, |k| k as f64 / 1024.0),
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// See [`Command::Loop`].
async fn run_loop(
    args: &Args,
    operation: Operation,
    implementation: Implementation,
    count: u64,
    cache_dir: Option<&std::path::Path>,
) -> Result<()> {
    let db = TestDb::new().await;
    if args.async_commit {
        async_commit(&db).await?;
    }
    let options = PostgresOptions {
        pool_size: args.pool_size,
        ..PostgresOptions::default()
    };
    let targets = setup(
        &db,
        &options,
        args.sessions,
        cache_dir,
        args.component.as_deref(),
        args.max_concurrent_calls,
    )
    .await?;
    let mut rng = Rng::new();
    // One warm-up round trip opens the connection and prepares the statements.
    targets.run(implementation, operation, &mut rng).await?;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    for _ in 0..count {
        targets.run(implementation, operation, &mut rng).await?;
    }
    eprintln!(
        "{count} × {} on {}: {:.1} µs each, {:.1} µs CPU each",
        operation.label(),
        implementation.label(),
        started.elapsed().as_secs_f64() * 1e6 / count.max(1) as f64,
        (process_cpu_seconds() - cpu_before) * 1e6 / count.max(1) as f64
    );
    Ok(())
}

/// `synchronous_commit = off` for the benchmark database (new connections).
async fn async_commit(db: &TestDb) -> Result<()> {
    db.client()
        .await
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', \
             current_database()); END $$",
        )
        .await
        .context("setting synchronous_commit = off")
}

/// The HTTP-level benchmark (see [`Command::Http`]).
async fn http_benchmark(args: &Args, routes: &[http::Route], stacks: &[http::Stack]) -> Result<()> {
    let duration = Duration::from_secs(args.duration_secs.max(1));
    let db = TestDb::new().await;
    if args.async_commit {
        async_commit(&db).await?;
    }
    let options = PostgresOptions {
        pool_size: args.pool_size,
        ..PostgresOptions::default()
    };
    // The default configuration (merging concurrency), as the runtime role.
    let store = SessionStore::builder(PostgresDriver::connect(&db.url, &options)?)
        .isolation(Isolation::ReuseInstances {
            max_idle: args.pool_size,
        })
        .build()
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(args.pool_size)?)
        .connect(&db.owner_url)
        .await
        .context("connecting the sqlx pool")?;
    let peer = PostgresStore::new(pool);
    peer.migrate().await.context("tower-sessions migrate")?;
    let ours = http::serve(http::component_app(store)).await?;
    let theirs = http::serve(http::tower_sessions_app(peer)).await?;

    let mut all_rounds = Vec::new();
    for round in 1..=args.rounds.max(1) {
        eprintln!("round {round} of {}", args.rounds.max(1));
        for route in or_all(routes, &http::Route::ALL) {
            for concurrency in or_all(&args.concurrencies, &[1, 16]) {
                for stack in or_all(stacks, &http::Stack::ALL) {
                    let addr = match stack {
                        http::Stack::Component => ours,
                        http::Stack::TowerSessions => theirs,
                    };
                    let cell = http::measure(addr, stack, route, concurrency, duration).await?;
                    eprintln!(
                        "{:>18} c={:<2} {:>20}: {:>8.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  cpu {:>5.1} µs/req",
                        route.label(),
                        concurrency,
                        stack.label(),
                        cell.requests_per_sec,
                        cell.p50_us,
                        cell.p99_us,
                        cell.cpu_us_per_request
                    );
                    all_rounds.push(cell);
                }
            }
        }
    }
    let cells = http::median_cells(&all_rounds);
    println!(
        "HTTP: {} CPUs ({}); pool size {}; {} s per cell; median of {} round(s); synchronous_commit {}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model(),
        args.pool_size,
        duration.as_secs(),
        args.rounds.max(1),
        if args.async_commit { "off" } else { "on" }
    );
    http::print(&cells);
    if let Some(path) = &args.json {
        let report = serde_json::json!({ "cells": cells, "all_rounds": all_rounds });
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Per (operation, concurrency, implementation), the round with the median throughput, in first-seen
/// order.
fn median_cells(rounds: &[Cell]) -> Vec<Cell> {
    let mut keys = Vec::new();
    for c in rounds {
        let key = (c.operation, c.concurrency, c.implementation);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(op, conc, which)| {
            let mut same: Vec<&Cell> = rounds
                .iter()
                .filter(|c| c.operation == op && c.concurrency == conc && c.implementation == which)
                .collect();
            same.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            same[same.len() / 2].clone()
        })
        .collect()
}

/// `chosen`, or `all` when nothing was chosen.
fn or_all<T: Clone>(chosen: &[T], all: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        all.to_vec()
    } else {
        chosen.to_vec()
    }
}

/// Runs `op` on `which` with `concurrency` workers for a warm-up, then for `duration`.
async fn measure(
    targets: &Arc<Targets>,
    which: Implementation,
    op: Operation,
    concurrency: usize,
    duration: Duration,
) -> Result<Cell> {
    run_workers(targets, which, op, concurrency, duration / 5).await?;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let (ops, histogram) = run_workers(targets, which, op, concurrency, duration).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    Ok(Cell {
        operation: op,
        concurrency,
        implementation: which,
        ops,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_us_per_op: cpu * 1e6 / ops.max(1) as f64,
    })
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in clock ticks of 10 ms).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which is in parentheses and may contain spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// `concurrency` tasks running `op` back to back until `duration` has passed; the operation count and
/// the merged latency histogram (nanoseconds).
async fn run_workers(
    targets: &Arc<Targets>,
    which: Implementation,
    op: Operation,
    concurrency: usize,
    duration: Duration,
) -> Result<(u64, Histogram<u64>)> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let targets = targets.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new();
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            let mut ops = 0u64;
            while Instant::now() < deadline {
                let start = Instant::now();
                targets.run(which, op, &mut rng).await?;
                histogram.saturating_record(u64::try_from(start.elapsed().as_nanos())?);
                ops += 1;
            }
            anyhow::Ok((ops, histogram))
        }));
    }
    let mut total = 0;
    let mut merged = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for task in tasks {
        let (ops, histogram) = task.await??;
        total += ops;
        merged.add(&histogram)?;
    }
    Ok((total, merged))
}

/// Throughput ratios per operation and concurrency.
fn ratios(cells: &[Cell]) -> Vec<Ratio> {
    let find = |op, c, which| {
        cells
            .iter()
            .find(|x| x.operation == op && x.concurrency == c && x.implementation == which)
            .map_or(f64::NAN, |x| x.ops_per_sec)
    };
    let mut out = Vec::new();
    for op in Operation::ALL {
        for c in [1, 16] {
            let reuse = find(op, c, Implementation::ComponentReuse);
            let fresh = find(op, c, Implementation::ComponentFresh);
            let sqlx = find(op, c, Implementation::ComponentSqlx);
            let native = find(op, c, Implementation::Native);
            let peer = find(op, c, Implementation::Peer);
            out.push(Ratio {
                operation: op,
                concurrency: c,
                reuse_vs_native: reuse / native,
                reuse_vs_peer: reuse / peer,
                sqlx_vs_native: sqlx / native,
                sqlx_vs_peer: sqlx / peer,
                fresh_vs_native: fresh / native,
                fresh_vs_peer: fresh / peer,
            });
        }
    }
    out
}

/// Mean microseconds per call of `f`, over `n` sequential calls after `n / 10` warm-up calls.
async fn mean_micros<F, Fut, T>(n: u32, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    for _ in 0..n / 10 {
        f().await?;
    }
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f().await?);
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(n))
}

async fn call_cost(targets: &Targets) -> Result<CallCost> {
    const N: u32 = 20_000;
    let fresh = mean_micros(N, || targets.fresh.generate_session_id()).await?;
    let warm = mean_micros(N, || targets.reuse.generate_session_id()).await?;
    let native = mean_micros(N, || async { NativeStore::generate_session_id() }).await?;
    let session = &targets.sessions[0];
    let warm_cookie_header = mean_micros(N, || targets.reuse.cookie_header(session)).await?;
    let fresh_cookie_header = mean_micros(N, || targets.fresh.cookie_header(session)).await?;
    Ok(CallCost {
        fresh_instance_and_call_us: fresh,
        warm_call_us: warm,
        native_us: native,
        warm_overhead_us: warm - native,
        fresh_overhead_us: fresh - native,
        warm_cookie_header_us: warm_cookie_header,
        fresh_cookie_header_us: fresh_cookie_header,
    })
}

// ---------------------------------------------------------------------------------------------------
// Start-up.

/// Times start-ups in fresh processes of this binary: without a cache, with an empty one, with a full one.
fn startup(database_url: &str) -> Result<Startup> {
    let cache = tempfile::tempdir().context("creating a cache directory")?;
    let no_cache = probe(database_url, None)?;
    let cold_cache = probe(database_url, Some(cache.path()))?;
    let mut warm: Vec<ProbeResult> = (0..3)
        .map(|_| probe(database_url, Some(cache.path())))
        .collect::<Result<_>>()?;
    warm.sort_by(|a, b| a.first_operation_ms.total_cmp(&b.first_operation_ms));
    Ok(Startup {
        no_cache,
        cold_cache,
        warm_cache: warm[1],
    })
}

fn probe(database_url: &str, cache_dir: Option<&std::path::Path>) -> Result<ProbeResult> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("startup-probe")
        .env("DATABASE_URL", database_url);
    if let Some(dir) = cache_dir {
        command.arg("--cache-dir").arg(dir);
    }
    let output = command.output().context("running the start-up probe")?;
    if !output.status.success() {
        bail!(
            "the start-up probe failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The child side: build a store and serve one `load`, then print the times as JSON.
async fn startup_probe(started: Instant, cache_dir: Option<PathBuf>) -> Result<()> {
    let url = std::env::var("DATABASE_URL").context("the probe needs DATABASE_URL")?;
    let driver = PostgresDriver::connect(&url, &PostgresOptions::default())?;
    let mut builder = SessionStore::builder(driver);
    if let Some(dir) = cache_dir {
        builder = builder.compilation_cache(dir);
    }
    let store = builder.build().await?;
    let built = started.elapsed();
    match store.load(&NativeStore::generate_session_id()?).await {
        Err(StoreError::NotFound) => {}
        other => bail!("the probe's load answered {other:?}"),
    }
    let first = started.elapsed();
    let result = ProbeResult {
        built_ms: built.as_secs_f64() * 1e3,
        first_operation_ms: first.as_secs_f64() * 1e3,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Cleanup at scale.

/// The cleanup scenario's figures.
#[derive(Debug, Serialize)]
struct CleanupReport {
    machine_cpus: usize,
    cpu_model: String,
    expired: u64,
    live: u64,
    batch_size: u32,
    generate_seconds: f64,
    count_expired_ms: f64,
    removed: u64,
    batches: u64,
    seconds: f64,
    rows_per_sec: f64,
    batch_p50_ms: f64,
    batch_p99_ms: f64,
    batch_max_ms: f64,
    live_rows_left: i64,
    expired_rows_left: i64,
}

async fn cleanup_at_scale(args: &Args, expired: u64, live: u64, batch_size: u32) -> Result<()> {
    let db = TestDb::new().await;
    let client = db.client().await;
    eprintln!("generating {expired} expired and {live} live sessions");
    let generating = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO wasm_sessions.sessions (id_hash, data, created_at, expires_at) \
             SELECT sha256(int8send(g)), '{{\"k\": \"v\"}}'::jsonb, now() - interval '2 days', \
                    now() - interval '1 day' + g * interval '1 millisecond' \
             FROM generate_series(1, {expired}) AS g; \
             INSERT INTO wasm_sessions.sessions (id_hash, data, created_at, expires_at) \
             SELECT sha256(int8send(g)), '{{\"k\": \"v\"}}'::jsonb, now(), now() + interval '1 day' \
             FROM generate_series({expired} + 1, {expired} + {live}) AS g"
        ))
        .await
        .context("generating the rows")?;
    client
        .batch_execute("VACUUM ANALYZE wasm_sessions.sessions")
        .await
        .context("VACUUM ANALYZE")?;
    let generate_seconds = generating.elapsed().as_secs_f64();

    let options = PostgresOptions {
        pool_size: args.pool_size,
        ..PostgresOptions::default()
    };
    let store = SessionStore::builder(PostgresDriver::connect(&db.url, &options)?)
        .build()
        .await?;
    let counting = Instant::now();
    let total = store.count_expired(SystemTime::now()).await?;
    let count_expired_ms = counting.elapsed().as_secs_f64() * 1e3;
    ensure!(
        total == expired,
        "count-expired said {total}, expected {expired}"
    );

    eprintln!("cleaning up in batches of {batch_size}");
    let mut batch_times = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let started = Instant::now();
    let mut last = started;
    let mut batches = 0;
    let removed = store
        .cleanup_in_batches(batch_size, |progress| {
            let now = Instant::now();
            batch_times.saturating_record(
                u64::try_from(now.duration_since(last).as_nanos()).unwrap_or(u64::MAX),
            );
            last = now;
            batches = progress.batches;
        })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let left = |sql: &'static str| {
        let client = &client;
        async move { anyhow::Ok(client.query_one(sql, &[]).await?.get::<_, i64>(0)) }
    };
    let live_rows_left =
        left("SELECT count(*) FROM wasm_sessions.sessions WHERE expires_at > now()").await?;
    let expired_rows_left =
        left("SELECT count(*) FROM wasm_sessions.sessions WHERE expires_at <= now()").await?;
    let report = CleanupReport {
        machine_cpus: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model: cpu_model(),
        expired,
        live,
        batch_size,
        generate_seconds,
        count_expired_ms,
        removed,
        batches,
        seconds,
        rows_per_sec: removed as f64 / seconds,
        batch_p50_ms: batch_times.value_at_quantile(0.5) as f64 / 1e6,
        batch_p99_ms: batch_times.value_at_quantile(0.99) as f64 / 1e6,
        batch_max_ms: batch_times.max() as f64 / 1e6,
        live_rows_left,
        expired_rows_left,
    };
    println!(
        "cleanup: removed {} of {} expired rows in {} batches of {} in {:.2} s = {:.0} rows/s; \
         per batch p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} live rows kept, {} expired left; \
         count-expired {:.0} ms",
        report.removed,
        report.expired,
        report.batches,
        report.batch_size,
        report.seconds,
        report.rows_per_sec,
        report.batch_p50_ms,
        report.batch_p99_ms,
        report.batch_max_ms,
        report.live_rows_left,
        report.expired_rows_left,
        report.count_expired_ms
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(
        removed == expired && expired_rows_left == 0 && live_rows_left == i64::try_from(live)?,
        "cleanup did not remove exactly the expired rows"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Output and helpers.

fn print_report(r: &Report) {
    println!(
        "machine: {} CPUs ({}), PostgreSQL {}; pool size {} for every implementation; {} s per cell; \
         median of {} round(s); synchronous_commit {}\n",
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.postgres,
        r.pool_size,
        r.duration_secs,
        r.rounds,
        if r.synchronous_commit { "on" } else { "off" }
    );
    println!("| operation | c | implementation | ops/s | p50 µs | p99 µs | client CPU µs/op |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    for c in &r.cells {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            c.operation.label(),
            c.concurrency,
            c.implementation.label(),
            c.ops_per_sec,
            c.p50_us,
            c.p99_us,
            c.cpu_us_per_op
        );
    }
    println!(
        "\n| operation | c | reuse / native | reuse / tower-sessions | sqlx / native | sqlx / tower-sessions | fresh / native | fresh / tower-sessions |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for x in r.ratios.iter().filter(|x| !x.reuse_vs_native.is_nan()) {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            x.operation.label(),
            x.concurrency,
            x.reuse_vs_native,
            x.reuse_vs_peer,
            x.sqlx_vs_native,
            x.sqlx_vs_peer,
            x.fresh_vs_native,
            x.fresh_vs_peer
        );
    }
    if let Some(cc) = &r.call_cost {
        print_call_cost(cc);
    }
    println!(
        "component: {} bytes ({:.0} KiB)",
        r.component_bytes,
        r.component_bytes as f64 / 1024.0
    );
    if let Some(s) = &r.startup {
        print_startup(s);
    }
    let mut rss: Vec<_> = r.peak_rss_mib_c16.iter().collect();
    rss.sort_by_key(|(which, _)| Implementation::ALL.iter().position(|w| w == *which));
    let rss: Vec<String> = rss
        .iter()
        .map(|(which, mib)| format!("{} {mib:.0} MiB", which.label()))
        .collect();
    println!(
        "peak RSS during the c=16 runs (whole process): {}; process peak {:.0} MiB",
        rss.join(", "),
        r.process_peak_rss_mib
    );
}

fn print_call_cost(cc: &CallCost) {
    println!(
        "\nper call (generate-session-id, no database): fresh instance + call {:.2} µs, warm call {:.2} µs, \
         native {:.2} µs → overhead fresh {:.2} µs, warm {:.2} µs; cookie-header fresh {:.2} µs, warm {:.2} µs",
        cc.fresh_instance_and_call_us,
        cc.warm_call_us,
        cc.native_us,
        cc.fresh_overhead_us,
        cc.warm_overhead_us,
        cc.fresh_cookie_header_us,
        cc.warm_cookie_header_us
    );
}

fn print_startup(s: &Startup) {
    println!(
        "start-up to the first served load (fresh process): no cache {:.1} ms (built {:.1}), \
         cold cache {:.1} ms (built {:.1}), warm cache {:.1} ms (built {:.1})",
        s.no_cache.first_operation_ms,
        s.no_cache.built_ms,
        s.cold_cache.first_operation_ms,
        s.cold_cache.built_ms,
        s.warm_cache.first_operation_ms,
        s.warm_cache.built_ms
    );
}

/// A `kB` field of `/proc/self/status` (Linux), e.g. `VmRSS:`.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Samples the process's resident set size every 10 ms until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak_kib) = (stop.clone(), peak_kib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = proc_status_kib("VmRSS:") {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self {
            stop,
            peak_kib,
            thread,
        }
    }

    /// Stops sampling; the peak in MiB.
    fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A small xorshift generator for picking sessions (not for anything secret).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("OS randomness");
        Self(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
