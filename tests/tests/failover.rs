//! Automatic failover with pg_auto_failover (`wasm_sessions_tests::failover`): a monitor, a primary and a
//! synchronous secondary on this machine; the store connects to both nodes with one multi-host URL
//! (`target_session_attrs=read-write`). Under load (saves and loads at concurrency 16, every
//! acknowledged write recorded with its content) the primary's postmaster and its keeper are killed
//! with SIGKILL; the monitor promotes the secondary and the same store, never rebuilt, carries on
//! against it. Afterwards every acknowledged write must be there with its acknowledged content, every
//! failed call must have failed with a typed database error, and the test prints the window during
//! which calls failed, how many did, and with which errors (`cargo test --test failover -- --nocapture`).
//!
//! What bounds the window: the monitor's failure detection (`MonitorTuning::FAST`: the keeper silent
//! for 3 s and a failed health check, checks every second), then the promotion (`prepare_promotion`,
//! `stop_replication`, the 2 s `primary_demote_timeout`, `wait_primary`), each step waiting for the
//! next one-second round of the keepers; the driver notices within a connection attempt (refused at
//! once here; `connect_timeout` 2 s per host when a machine vanishes without resetting its
//! connections, and `query_timeout` 5 s for a statement in flight).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasm_sessions::{
    PostgresDriver, PostgresOptions, RuntimeRole, Session, SessionStore, SqlError, StoreError,
};
use wasm_sessions_tests::failover::{Formation, MonitorTuning};

const CONCURRENCY: usize = 16;

/// What a failed call waits before the client tries again (a client backing off, not a busy loop).
const BACKOFF: Duration = Duration::from_millis(100);

type Data = BTreeMap<String, Value>;

/// A write that failed: the session's token and every content it may hold now.
type Uncertain = (String, Vec<Data>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    Create,
    Update,
    Load,
}

/// One failed call.
#[derive(Debug)]
struct Failure {
    op: Op,
    started: Instant,
    ended: Instant,
    error: String,
    typed: bool,
}

/// What the workers share.
#[derive(Default)]
struct Record {
    /// Every acknowledged write: the token and the data it acknowledged last.
    acked: HashMap<String, Data>,
    /// Writes that failed: the token and every content it may hold now (a failed create may also be
    /// absent).
    uncertain: HashMap<String, (Op, Vec<Data>)>,
    failures: Vec<Failure>,
    /// Successful calls: when each ended, and whether it wrote.
    successes: Vec<(Instant, Instant, bool)>,
    /// Loads that returned other data than the last acknowledged write.
    stale_loads: Vec<String>,
}

fn describe(error: &StoreError) -> (String, bool) {
    match error {
        StoreError::Database(SqlError::ConnectionFailed(message)) => (
            format!("Database(ConnectionFailed): {}", shorten(message)),
            true,
        ),
        StoreError::DeadlineExceeded(d) => (format!("DeadlineExceeded({d:?})"), true),
        other => (format!("{other:?}"), false),
    }
}

/// The message, cut at 140 characters, for grouping.
fn shorten(message: &str) -> String {
    message.chars().take(140).collect()
}

async fn worker(
    store: SessionStore,
    index: usize,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let mut mine: Vec<Session> = Vec::new();
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        let op = match step % 3 {
            0 => Op::Create,
            1 if !mine.is_empty() => Op::Update,
            1 => Op::Create,
            _ if !mine.is_empty() => Op::Load,
            _ => Op::Create,
        };
        let started = Instant::now();
        let outcome: Result<bool, (StoreError, Option<Uncertain>)> = match op {
            Op::Create => {
                let mut session = store.new_session().await.expect("a new session (no SQL)");
                session.insert("worker", index).expect("JSON");
                session.insert("n", step).expect("JSON");
                session
                    .insert("note", format!("created by worker {index} at step {step}"))
                    .expect("JSON");
                let data = session.data().clone();
                match store.save(&mut session).await {
                    Ok(()) => {
                        record
                            .lock()
                            .unwrap()
                            .acked
                            .insert(session.id().to_owned(), data);
                        mine.push(session);
                        Ok(true)
                    }
                    Err(e) => Err((e, Some((session.id().to_owned(), vec![data])))),
                }
            }
            Op::Update => {
                let mut session = mine.pop().expect("a session");
                let before = session.data().clone();
                session.insert("n", step).expect("JSON");
                let after = session.data().clone();
                match store.save(&mut session).await {
                    Ok(()) => {
                        record
                            .lock()
                            .unwrap()
                            .acked
                            .insert(session.id().to_owned(), after);
                        mine.push(session);
                        Ok(true)
                    }
                    Err(e) => {
                        // Written or not: the session leaves the acknowledged set.
                        record.lock().unwrap().acked.remove(session.id());
                        Err((e, Some((session.id().to_owned(), vec![before, after]))))
                    }
                }
            }
            Op::Load => {
                let token = mine[usize::try_from(step).unwrap_or(0) % mine.len()]
                    .id()
                    .to_owned();
                match store.load(&token).await {
                    Ok(loaded) => {
                        let mut record = record.lock().unwrap();
                        let acknowledged = record.acked.get(&token);
                        if acknowledged != Some(loaded.data()) {
                            let stale = format!(
                                "{token}: loaded {:?}, acknowledged {acknowledged:?}",
                                loaded.data()
                            );
                            record.stale_loads.push(stale);
                        }
                        Ok(false)
                    }
                    Err(e) => Err((e, None)),
                }
            }
        };
        let ended = Instant::now();
        match outcome {
            Ok(wrote) => record
                .lock()
                .unwrap()
                .successes
                .push((started, ended, wrote)),
            Err((error, maybe)) => {
                let (error, typed) = describe(&error);
                {
                    let mut record = record.lock().unwrap();
                    if let Some((token, candidates)) = maybe {
                        record.uncertain.insert(token, (op, candidates));
                    }
                    record.failures.push(Failure {
                        op,
                        started,
                        ended,
                        error,
                        typed,
                    });
                }
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Signed seconds of `at` after `origin`.
fn after(at: Instant, origin: Instant) -> String {
    if at >= origin {
        format!("+{:.2} s", (at - origin).as_secs_f64())
    } else {
        format!("-{:.2} s", (origin - at).as_secs_f64())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_carries_on_through_a_failover_without_losing_an_acknowledged_write() {
    let setup = Instant::now();
    let mut formation = Formation::start("sessions", MonitorTuning::FAST).await;
    println!(
        "formation up in {} (monitor, primary, synchronous secondary)",
        secs(setup.elapsed())
    );

    // The schema as its owner, the runtime role's grants, through the URL that finds the primary.
    let owner_url = formation.owner_url();
    PostgresDriver::connect(&owner_url, &PostgresOptions::default())
        .expect("a valid URL")
        .migrate()
        .await
        .expect("the migrations apply on the primary");
    let (owner, connection) = tokio_postgres::connect(&owner_url, tokio_postgres::NoTls)
        .await
        .expect("the owner connects to the primary");
    tokio::spawn(connection);
    let role = RuntimeRole::default();
    role.apply(&owner, formation.database())
        .await
        .expect("the runtime role's grants");
    let sync = owner
        .query_one(
            "SELECT current_setting('synchronous_standby_names'), \
             current_setting('synchronous_commit')",
            &[],
        )
        .await
        .expect("the primary's replication settings");
    let (standby_names, commit): (String, String) = (sync.get(0), sync.get(1));
    println!(
        "primary: synchronous_standby_names = {standby_names:?}, synchronous_commit = {commit}"
    );
    assert!(
        !standby_names.is_empty() && commit == "on",
        "the secondary must be synchronous"
    );
    drop(owner);

    let url = role
        .runtime_url(&owner_url)
        .expect("the runtime role's URL");
    assert!(url.contains("target_session_attrs=read-write"), "{url}");
    let options = PostgresOptions {
        pool_size: CONCURRENCY,
        connect_timeout: Duration::from_secs(2),
        wait_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(5),
        ..PostgresOptions::default()
    };
    let store =
        SessionStore::builder(PostgresDriver::connect(&url, &options).expect("a valid URL"))
            .call_timeout(Duration::from_secs(10))
            .build()
            .await
            .expect("the store builds");
    store
        .check_statements()
        .await
        .expect("the statements prepare as the runtime role on the primary");

    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|i| tokio::spawn(worker(store.clone(), i, record.clone(), stop.clone())))
        .collect();

    // Load for a while, then kill the primary.
    let load_started = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "writes acknowledged before the kill",
        || {
            let r = record.lock().unwrap();
            load_started.elapsed() >= Duration::from_secs(3) && r.acked.len() >= 100
        },
    )
    .await;
    let states = formation.states().await.expect("the monitor answers");
    let primary = states
        .iter()
        .position(|s| s.reported == "primary")
        .unwrap_or_else(|| panic!("no primary before the kill: {states:?}"));
    let (acked_before, failed_before) = {
        let r = record.lock().unwrap();
        (r.acked.len(), r.failures.len())
    };
    let killed_at = Instant::now();
    let pid = formation.kill_node(primary);
    println!(
        "killed {} (postmaster pid {pid} and its keeper) after {} of load, {acked_before} sessions acknowledged",
        states[primary].name,
        secs(killed_at - load_started)
    );
    assert_eq!(failed_before, 0, "calls failed before the kill");

    // The monitor promotes the other node; the store finds it (no restart, no new store).
    let other = &states[1 - primary].name;
    let promoted = formation
        .wait_for_states(
            &format!("{other} to be promoted"),
            &[(other.as_str(), "wait_primary")],
        )
        .await;
    let promoted_at = Instant::now();
    println!(
        "monitor: {other} promoted (wait_primary) {} after the kill: {promoted:?}",
        after(promoted_at, killed_at)
    );
    wait_until(
        Duration::from_secs(90),
        "the store to carry on after the failover",
        || {
            let r = record.lock().unwrap();
            let last_failure = r.failures.iter().map(|f| f.ended).max();
            let writes_after = r
                .successes
                .iter()
                .filter(|(started, _, wrote)| *wrote && *started > killed_at)
                .filter(|(started, _, _)| last_failure.is_none_or(|f| *started > f))
                .count();
            writes_after >= 200
                && last_failure.is_none_or(|f| f.elapsed() >= Duration::from_secs(2))
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a worker");
    }
    let record = Arc::try_unwrap(record)
        .ok()
        .expect("the workers are done")
        .into_inner()
        .unwrap();

    // Every acknowledged write, with its acknowledged content, through the same store.
    let mut lost = Vec::new();
    for (token, data) in &record.acked {
        match store.load(token).await {
            Ok(session) if session.data() == data => {}
            other => lost.push(format!("{token}: acknowledged {data:?}, now {other:?}")),
        }
    }
    // The writes that failed: applied or not, but never anything else.
    let (mut applied, mut not_applied, mut wrong) = (0, 0, Vec::new());
    for (token, (op, candidates)) in &record.uncertain {
        match store.load(token).await {
            Ok(session) if candidates.last() == Some(session.data()) => applied += 1,
            Ok(session) if candidates.contains(session.data()) => not_applied += 1,
            Err(StoreError::NotFound) if *op == Op::Create => not_applied += 1,
            other => wrong.push(format!("{token} ({op:?}): {other:?}")),
        }
    }

    // The report.
    let failures = &record.failures;
    let first = failures.iter().map(|f| f.started).min();
    let last = failures.iter().map(|f| f.ended).max();
    let resumed = record
        .successes
        .iter()
        .filter(|(started, _, wrote)| *wrote && last.is_some_and(|l| *started >= l))
        .map(|(_, ended, _)| *ended)
        .min();
    let writes = record.successes.iter().filter(|s| s.2).count();
    let loads = record.successes.len() - writes;
    println!("--- failover report ---");
    println!(
        "calls: {} succeeded ({writes} writes, {loads} loads), {} failed",
        record.successes.len(),
        failures.len()
    );
    if let (Some(first), Some(last)) = (first, last) {
        println!(
            "failing window: {} (first failed call started {} after the kill, last one ended {})",
            secs(last - first),
            after(first, killed_at),
            after(last, killed_at)
        );
    }
    if let Some(resumed) = resumed {
        println!(
            "first acknowledged write after the window: {} after the kill",
            after(resumed, killed_at)
        );
    }
    let mut by_error: BTreeMap<(Op, &str), usize> = BTreeMap::new();
    for failure in failures {
        *by_error.entry((failure.op, &failure.error)).or_default() += 1;
    }
    println!("failed calls by operation and error:");
    for ((op, error), count) in &by_error {
        println!("  {count:5} {op:?}: {error}");
    }
    println!(
        "acknowledged writes: {writes} on {} sessions, each checked at its last acknowledged content: \
         {} lost; failed writes: {applied} applied anyway (committed, but the acknowledgement was \
         lost with the connection), {not_applied} not applied; stale loads during the run: {}",
        record.acked.len(),
        lost.len(),
        record.stale_loads.len()
    );

    assert!(
        lost.is_empty(),
        "lost acknowledged writes:\n{}",
        lost.join("\n")
    );
    assert!(
        record.stale_loads.is_empty(),
        "loads returned other data than acknowledged:\n{}",
        record.stale_loads.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "failed writes in an impossible state:\n{}",
        wrong.join("\n")
    );
    let untyped: Vec<&Failure> = failures.iter().filter(|f| !f.typed).collect();
    assert!(
        untyped.is_empty(),
        "calls failed with other than a connection error or the deadline: {untyped:?}"
    );
    assert!(
        !failures.is_empty(),
        "no call failed: was the primary killed?"
    );
    drop(store);
    drop(formation);
}

/// Polls `done` every 50 ms until it holds.
///
/// # Panics
/// After `timeout`.
async fn wait_until(timeout: Duration, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "waited {timeout:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
