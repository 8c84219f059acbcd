//! Database faults: PostgreSQL is stopped and restarted in the middle of a load test. Calls during the
//! outage fail with a typed connection error (not by running into the call's deadline), calls after it
//! succeed on the same store, and every save that reported success is in the database afterwards.
//!
//! The test waits for the server and for the workers' progress by polling with a bound, never for a
//! fixed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use embedded_pg::Cluster;
use tokio::sync::Mutex;
use wasm_sessions::{PostgresDriver, PostgresOptions, SessionStore, SqlError, StoreError};
use wasm_sessions_tests::{connect, runtime_role};

#[derive(Default)]
struct Tally {
    saved: Vec<(String, String)>,
    ok: u64,
    connection_errors: u64,
    slowest_failure: Duration,
}

/// Waits until `done` holds for the tally, checking every 20 ms; fails after a minute (a bound on a
/// broken test, not a measurement).
async fn wait_for(tally: &Mutex<Tally>, what: &str, done: impl Fn(&Tally) -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done(&*tally.lock().await) {
        assert!(Instant::now() < give_up, "waited a minute for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_with_a_connection_error_recovers_without_a_restart_and_loses_no_acknowledged_write()
 {
    // A private cluster of its own, so that the test can stop it.
    let cluster = Arc::new(
        tokio::task::spawn_blocking(Cluster::throwaway_durable)
            .await
            .unwrap()
            .expect("a private PostgreSQL cluster starts"),
    );
    let options = PostgresOptions {
        pool_size: 8,
        connect_timeout: Duration::from_secs(2),
        wait_timeout: Duration::from_secs(2),
        query_timeout: Duration::from_secs(3),
        ..PostgresOptions::default()
    };
    // Migrated by the owner, used as the runtime role, as in production.
    let owner_url = cluster.owner_url("postgres");
    PostgresDriver::connect(&owner_url, &options)
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let role = runtime_role();
    role.apply(&connect(&owner_url).await, "postgres")
        .await
        .unwrap();
    let driver = PostgresDriver::connect(&role.runtime_url(&owner_url).unwrap(), &options).unwrap();
    // A deadline far above the driver's timeouts: a call that hangs shows up as `DeadlineExceeded`.
    let store = SessionStore::builder(driver)
        .call_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (store, tally, stop) = (store.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let value = format!("worker {w} write {n}");
                    let started = Instant::now();
                    let mut session = store.new_session().await.unwrap();
                    session.set("v", value.clone());
                    let outcome = store.save(&mut session).await;
                    let elapsed = started.elapsed();
                    let mut t = tally.lock().await;
                    match outcome {
                        Ok(()) => {
                            t.ok += 1;
                            t.saved.push((session.id().to_owned(), value));
                        }
                        Err(StoreError::Database(SqlError::ConnectionFailed(_))) => {
                            t.connection_errors += 1;
                            t.slowest_failure = t.slowest_failure.max(elapsed);
                        }
                        Err(other) => panic!("unexpected error during the outage: {other:?}"),
                    }
                    drop(t);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    wait_for(&tally, "writes before the outage", |t| t.ok >= 50).await;
    let before_outage = tally.lock().await.ok;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_now())
        .await
        .unwrap()
        .unwrap();
    wait_for(&tally, "connection errors during the outage", |t| {
        t.connection_errors >= 16
    })
    .await;
    let during = tally.lock().await.ok;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again())
        .await
        .unwrap()
        .unwrap();
    wait_for(&tally, "writes after the restart", |t| t.ok >= during + 50).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let t = tally.lock().await;
    assert!(before_outage > 0, "writes succeeded before the outage");
    assert!(
        t.ok > during,
        "calls succeed again after the restart, on the same store"
    );
    for (token, value) in &t.saved {
        let stored = store
            .load(token)
            .await
            .expect("an acknowledged write is stored");
        assert_eq!(stored.get_str("v"), Some(value.as_str()));
    }
    eprintln!(
        "outage test: {} saves acknowledged ({} before the outage), {} failed with a connection \
         error during it (slowest {:?}), 0 acknowledged writes lost",
        t.ok, before_outage, t.connection_errors, t.slowest_failure
    );
}
