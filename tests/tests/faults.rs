//! Database faults: PostgreSQL is stopped and restarted in the middle of a load test. Calls during the
//! outage fail fast with a connection error, calls after it succeed on the same store, and every save
//! that reported success is in the database afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use embedded_pg::Cluster;
use tokio::sync::Mutex;
use wasm_sessions::{PostgresDriver, PostgresOptions, SessionStore, SqlError, StoreError};

#[derive(Default)]
struct Tally {
    saved: Vec<(String, String)>,
    ok: u64,
    connection_errors: u64,
    slowest_failure: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_recovers_without_a_restart_and_loses_no_acknowledged_write() {
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
    };
    let driver = PostgresDriver::connect(&cluster.url("postgres"), &options).unwrap();
    driver.migrate().await.unwrap();
    let store = SessionStore::builder(driver).build().await.unwrap();

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
                    let mut session = store.new_session(600).await.unwrap();
                    session.set("v", value.clone());
                    let outcome = store.save(&mut session).await;
                    let elapsed = started.elapsed();
                    let mut t = tally.lock().await;
                    match outcome {
                        Ok(()) => {
                            t.ok += 1;
                            t.saved.push((session.id, value));
                        }
                        Err(StoreError::Database(SqlError::ConnectionFailed(_))) => {
                            t.connection_errors += 1;
                            t.slowest_failure = t.slowest_failure.max(elapsed);
                        }
                        Err(other) => panic!("unexpected error during the outage: {other:?}"),
                    }
                    drop(t);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_outage = tally.lock().await.ok;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_now())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let during = {
        let t = tally.lock().await;
        (t.ok, t.connection_errors)
    };
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let t = tally.lock().await;
    assert!(before_outage > 0, "writes succeeded before the outage");
    assert!(
        during.1 > 0,
        "calls during the outage failed with a connection error"
    );
    assert!(
        t.slowest_failure < Duration::from_secs(5),
        "a failing call took {:?}",
        t.slowest_failure
    );
    assert!(
        t.ok > during.0,
        "calls succeed again after the restart, on the same store"
    );
    for (token, value) in &t.saved {
        let stored = store
            .load(token)
            .await
            .expect("an acknowledged write is stored");
        assert_eq!(stored.get("v"), Some(value.as_str()));
    }
    eprintln!(
        "outage test: {} saves acknowledged ({} before the outage), {} failed fast during it \
         (slowest {:?}), 0 acknowledged writes lost",
        t.ok, before_outage, t.connection_errors, t.slowest_failure
    );
}
