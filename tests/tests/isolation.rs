//! How the store uses guest instances: warm instances are reused, one whose call trapped or ran past its
//! deadline is discarded and never used again, an error value is not a trap, a fresh instance per call
//! keeps none, and many concurrent calls each get their own. Also cleanup in batches at scale. (The
//! behaviour suite itself runs in both isolation modes in `store.rs` and `values.rs`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasm_sessions::{
    EntropyError, EntropySource, Isolation, MAX_CLEANUP_BATCH, OsEntropy, PostgresDriver,
    PrepareFuture, QueryFuture, SqlDriver, SqlValue, StoreError,
};
use wasm_sessions_tests::TestDb;

use common::{Fixture, REUSE, in_both_modes, secs};

in_both_modes!(
    many_concurrent_calls_each_get_an_instance_of_their_own,
    a_call_past_its_deadline_is_stopped_its_instance_discarded_and_the_store_keeps_serving,
);

async fn many_concurrent_calls_each_get_an_instance_of_their_own(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = fx.store.clone();
            tokio::spawn(async move {
                let mut s = store.new_session().await.unwrap();
                s.insert("i", i).unwrap();
                store.save(&mut s).await.unwrap();
                let loaded = store.load(s.id()).await.unwrap();
                assert_eq!(loaded.get::<i32>("i").unwrap(), Some(i));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(fx.rows().await, 64);
    let stats = fx.store.instance_stats();
    assert_eq!(stats.calls, 64 * 3);
    assert_eq!(stats.discarded, 0);
    match isolation {
        Isolation::FreshInstancePerCall => {
            assert_eq!(stats.instantiated, stats.calls, "one instance per call");
            assert_eq!(stats.idle, 0);
        }
        Isolation::ReuseInstances { max_idle } => {
            assert!(stats.idle <= max_idle, "{stats:?}");
            assert!(stats.idle > 0, "{stats:?}");
            // Sequential calls afterwards run on the warm instances.
            for _ in 0..10 {
                fx.store.generate_session_id().await.unwrap();
            }
            assert_eq!(fx.store.instance_stats().instantiated, stats.instantiated);
        }
        _ => unreachable!(),
    }
}

/// A driver that never answers while `hang` is set (a database that stopped answering mid-statement),
/// and passes every statement to PostgreSQL otherwise.
struct HangingDriver {
    hang: Arc<AtomicBool>,
    inner: PostgresDriver,
}

impl SqlDriver for HangingDriver {
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
        if self.hang.load(Ordering::SeqCst) {
            Box::pin(std::future::pending())
        } else {
            self.inner.query(statement, params)
        }
    }

    fn prepare<'a>(&'a self, statement: &'a str) -> PrepareFuture<'a> {
        self.inner.prepare(statement)
    }
}

/// Runs `op` again while it fails with `DeadlineExceeded`, at most five times: on a loaded machine an
/// ordinary call can take longer than this file's short deadline.
async fn patiently<T>(mut op: impl AsyncFnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut tries = 1;
    loop {
        match op().await {
            Err(StoreError::DeadlineExceeded(_)) if tries < 5 => tries += 1,
            outcome => return outcome,
        }
    }
}

async fn a_call_past_its_deadline_is_stopped_its_instance_discarded_and_the_store_keeps_serving(
    isolation: Isolation,
) {
    const DEADLINE: Duration = Duration::from_millis(200);
    let db = TestDb::new().await;
    let hang = Arc::new(AtomicBool::new(false));
    let store = common::builder(HangingDriver {
        hang: hang.clone(),
        inner: db.driver(),
    })
    .isolation(isolation)
    .call_timeout(DEADLINE)
    .build()
    .await
    .unwrap();
    let mut session = store.new_session().await.unwrap();
    session.set("k", "v");
    patiently(async || store.save(&mut session.clone()).await)
        .await
        .unwrap();
    let token = session.id().to_owned();

    hang.store(true, Ordering::SeqCst);
    let before = store.instance_stats();
    // The outer timeout only keeps a broken deadline from hanging the test; it is not a measurement.
    let outcome = tokio::time::timeout(secs(60), store.load(&token))
        .await
        .expect("the call deadline stops a statement that never answers");
    assert!(
        matches!(outcome, Err(StoreError::DeadlineExceeded(d)) if d == DEADLINE),
        "{outcome:?}"
    );
    let after = store.instance_stats();
    assert_eq!(
        after.discarded,
        before.discarded + 1,
        "the instance is dropped"
    );
    assert!(
        after.idle <= before.idle,
        "and not put back: {before:?} {after:?}"
    );
    assert_eq!(
        outcome.unwrap_err().http_answer().status,
        503,
        "a timeout is the service's problem"
    );
    let mut fresh = store.new_session().await.unwrap();
    fresh.set("k", "never written");
    let outcome = tokio::time::timeout(secs(60), store.save(&mut fresh))
        .await
        .unwrap();
    assert!(
        matches!(outcome, Err(StoreError::DeadlineExceeded(_))),
        "{outcome:?}"
    );
    assert!(!fresh.is_saved());

    hang.store(false, Ordering::SeqCst);
    let loaded = patiently(async || store.load(&token).await).await.unwrap();
    assert_eq!(loaded.get_str("k"), Some("v"));
    let mut loaded = loaded;
    loaded.set("k", "w");
    patiently(async || {
        let mut copy = loaded.clone();
        store.save(&mut copy).await
    })
    .await
    .unwrap();
    assert_eq!(
        patiently(async || store.load(&token).await)
            .await
            .unwrap()
            .get_str("k"),
        Some("w")
    );
    assert_eq!(
        common::row_count(&db).await,
        1,
        "the timed-out save wrote nothing"
    );
}

/// Entropy that can be told to fail, which makes the guest trap mid-call.
struct SwitchableEntropy(Arc<AtomicBool>);

impl EntropySource for SwitchableEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(EntropyError("switched off for the test".into()));
        }
        OsEntropy.fill(buf)
    }
}

#[tokio::test]
async fn warm_instances_are_reused_and_a_trapped_one_is_discarded_never_reused() {
    let db = TestDb::new().await;
    let off = Arc::new(AtomicBool::new(false));
    let store = common::builder(db.driver())
        .entropy(SwitchableEntropy(off.clone()))
        .isolation(Isolation::ReuseInstances { max_idle: 1 })
        .build()
        .await
        .unwrap();
    // The builder's own calls ran on throwaway instances: the store starts with none.
    assert_eq!(store.instance_stats().instantiated, 0);
    store.generate_session_id().await.unwrap();
    let warm = store.instance_stats();
    assert_eq!((warm.instantiated, warm.idle), (1, 1), "{warm:?}");
    for _ in 0..5 {
        store.generate_session_id().await.unwrap();
    }
    assert_eq!(
        store.instance_stats().instantiated,
        1,
        "sequential calls reuse it"
    );

    off.store(true, Ordering::SeqCst);
    let err = store.generate_session_id().await.unwrap_err();
    assert!(matches!(err, StoreError::Guest(_)), "{err:?}");
    let after_trap = store.instance_stats();
    assert_eq!(after_trap.discarded, 1);
    assert_eq!(after_trap.idle, 0, "the trapped instance is not kept");

    off.store(false, Ordering::SeqCst);
    let id = store.generate_session_id().await.unwrap();
    assert_eq!(id.len(), 64);
    let after = store.instance_stats();
    assert_eq!(after.instantiated, 2, "the next call ran on a new instance");
    assert_eq!(after.idle, 1);
    let mut session = store.new_session().await.unwrap();
    store.save(&mut session).await.unwrap();
    assert!(store.load(session.id()).await.is_ok());
    let end = store.instance_stats();
    assert_eq!((end.discarded, end.instantiated), (1, 2), "{end:?}");
}

#[tokio::test]
async fn an_error_value_is_not_a_trap_and_the_warm_instance_is_kept() {
    let fx = Fixture::new(Isolation::ReuseInstances { max_idle: 1 }).await;
    fx.store.generate_session_id().await.unwrap();
    let before = fx.store.instance_stats();
    for id in ["", "abc", &"A".repeat(64), &"g".repeat(64)] {
        assert!(matches!(
            fx.store.load(id).await,
            Err(StoreError::InvalidId(_))
        ));
    }
    let mut session = fx.store.new_session().await.unwrap();
    session.set("nul", "a\0b");
    assert!(matches!(
        fx.store.save(&mut session).await,
        Err(StoreError::InvalidData(_))
    ));
    assert!(matches!(
        fx.store.load(&"0".repeat(64)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        fx.statements(),
        1,
        "only the well-formed unknown id was looked up"
    );
    session.remove("nul");
    fx.store.save(&mut session).await.unwrap();
    assert_eq!(
        fx.store.load(session.id()).await.unwrap().id(),
        session.id()
    );
    let after = fx.store.instance_stats();
    assert_eq!(after.discarded, 0);
    assert_eq!(
        after.instantiated, before.instantiated,
        "one warm instance served them all"
    );
}

#[tokio::test]
async fn fresh_instance_per_call_instantiates_for_every_call_and_keeps_none() {
    let fx = Fixture::new(Isolation::FreshInstancePerCall).await;
    let before = fx.store.instance_stats();
    for _ in 0..3 {
        fx.store.generate_session_id().await.unwrap();
    }
    let after = fx.store.instance_stats();
    assert_eq!(after.instantiated, before.instantiated + 3);
    assert_eq!(after.calls, before.calls + 3);
    assert_eq!(after.idle, 0);
}

// ---------------------------------------------------------------------------------------------------
// Cleanup in batches

/// Inserts `expired` rows that expired about a day before the store's clock (row `g` expires `g` ms
/// after the first, so the order is known) and `live` rows valid for a day after it.
async fn generate_rows(fx: &Fixture, expired: i64, live: i64) {
    fx.db
        .client()
        .await
        .execute(
            "INSERT INTO wasm_sessions.sessions (id_hash, expires_at) \
             SELECT sha256(int8send(g)), CASE WHEN g <= $2::bigint \
             THEN $1::timestamptz - interval '1 day' + g * interval '1 millisecond' \
             ELSE $1::timestamptz + interval '1 day' END \
             FROM generate_series(1, $2::bigint + $3::bigint) AS g",
            &[&fx.now(), &expired, &live],
        )
        .await
        .unwrap();
}

/// The rows expired and live by the store's clock.
async fn counts(fx: &Fixture) -> (i64, i64) {
    let row = fx
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE expires_at <= $1), \
             count(*) FILTER (WHERE expires_at > $1) FROM wasm_sessions.sessions",
            &[&fx.now()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn cleanup_in_batches_removes_exactly_the_expired_rows_and_reports_each_batch() {
    let fx = Fixture::new(REUSE).await;
    generate_rows(&fx, 2_345, 300).await;
    assert_eq!(fx.store.count_expired(fx.now()).await.unwrap(), 2_345);
    fx.statements();
    let mut reports = Vec::new();
    let removed = fx
        .store
        .cleanup_in_batches(1000, |p| reports.push(p))
        .await
        .unwrap();
    assert_eq!(removed, 2_345);
    assert_eq!(fx.statements(), 3, "one statement per batch");
    let per_batch: Vec<u64> = reports.iter().map(|p| p.removed_in_batch).collect();
    assert_eq!(per_batch, [1000, 1000, 345]);
    let totals: Vec<u64> = reports.iter().map(|p| p.removed_total).collect();
    assert_eq!(totals, [1000, 2000, 2_345]);
    assert_eq!(reports.last().unwrap().batches, 3);
    assert_eq!(counts(&fx).await, (0, 300));
    assert_eq!(fx.store.count_expired(fx.now()).await.unwrap(), 0);

    // A day later by the store's clock, the rest has expired too.
    fx.advance(secs(86_400));
    assert_eq!(fx.store.cleanup().await.unwrap(), 300);
    assert_eq!(counts(&fx).await, (0, 0));
}

#[tokio::test]
async fn an_exact_multiple_of_the_batch_size_ends_with_an_empty_batch() {
    let fx = Fixture::new(REUSE).await;
    generate_rows(&fx, 200, 10).await;
    let mut per_batch = Vec::new();
    let removed = fx
        .store
        .cleanup_in_batches(100, |p| per_batch.push(p.removed_in_batch))
        .await
        .unwrap();
    assert_eq!(removed, 200);
    assert_eq!(per_batch, [100, 100, 0]);
    assert_eq!(counts(&fx).await, (0, 10));
}

#[tokio::test]
async fn cleanup_batch_removes_the_oldest_first_up_to_the_limit_and_respects_the_cutoff() {
    let fx = Fixture::new(REUSE).await;
    generate_rows(&fx, 50, 5).await;
    // A cutoff before every expiry matches nothing.
    let past = fx.now() - secs(10 * 86_400);
    assert_eq!(fx.store.cleanup_batch(past, 100).await.unwrap(), 0);
    assert_eq!(fx.store.cleanup_batch(fx.now(), 20).await.unwrap(), 20);
    // The 20 removed were the oldest: the rows numbered 1..=20 by the generator.
    let left: i64 = fx
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM wasm_sessions.sessions WHERE id_hash IN \
             (SELECT sha256(int8send(g)) FROM generate_series(1, 20) AS g)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(counts(&fx).await, (30, 5));
}

#[tokio::test]
async fn the_hosts_max_cleanup_batch_is_the_guests_rule() {
    let fx = Fixture::new(REUSE).await;
    generate_rows(&fx, 3, 1).await;
    fx.statements();
    for limit in [0, MAX_CLEANUP_BATCH + 1, u32::MAX] {
        let err = fx.store.cleanup_batch(fx.now(), limit).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{limit}: {err:?}"
        );
        let err = fx
            .store
            .cleanup_in_batches(limit, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{limit}: {err:?}"
        );
    }
    assert_eq!(fx.statements(), 0, "refused unsent");
    assert_eq!(
        fx.store
            .cleanup_batch(fx.now(), MAX_CLEANUP_BATCH)
            .await
            .unwrap(),
        3
    );
    assert_eq!(fx.store.cleanup_batch(fx.now(), 1).await.unwrap(), 0);
    assert_eq!(
        fx.store
            .cleanup_in_batches(MAX_CLEANUP_BATCH, |_| {})
            .await
            .unwrap(),
        0
    );
    assert_eq!(counts(&fx).await, (0, 1));
}
